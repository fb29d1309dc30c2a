"""Kubernetes API access for the readiness gates, over the official ``kubernetes`` client.

The library reads the kubeconfig (client certificates as data or files, bearer tokens,
exec plugins, ``insecure-skip-tls-verify``, a named or the current context) and builds
TLS and auth. This module adds only what a gate needs on top:

- a kubeconfig check first, so a malformed one is one clear :class:`KubeconfigError`
  (never ``StopIteration``/``KeyError``/``binascii.Error``/``SSLError``);
- the proxy choice kubectl makes: loopback API servers (``127.0.0.0/8``, ``::1``,
  ``localhost``) are reached directly even when ``HTTPS_PROXY`` is set; other servers
  honour ``HTTPS_PROXY``/``HTTP_PROXY`` and ``NO_PROXY``; a kubeconfig ``proxy-url`` wins;
- every request bounded by the caller's timeout (connect and each read), the reply by
  size, and no hidden retries (the gates own retrying: backoff, jitter, one deadline);
- every failure as :class:`KubeError` (``status`` 0 when there was no complete HTTP reply).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import urllib3
import yaml
from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import should_bypass_proxies

MAX_BODY = 8 * 1024 * 1024  # a reply larger than this is a fault, not data
MAX_WATCH_LINE = 4 * 1024 * 1024  # one watch event
REQUEST_CAP = 30.0  # no single request waits longer than this
SNIPPET = 300


def snippet(text: object, limit: int = SNIPPET) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class KubeconfigError(ValueError):
    """The kubeconfig cannot be used; the message names the fault (never a secret)."""


class ClientSetupError(ValueError):
    """The connection cannot be set up (e.g. an unusable proxy setting); names the fault."""


class KubeError(Exception):
    """An API call failed. ``status`` is the HTTP code, or 0 when no complete reply came."""

    def __init__(self, status: int, message: str, reason: str = ""):
        self.status = status
        self.message = message
        self.reason = reason
        super().__init__(f"HTTP {status}: {message}" if status else message)


@dataclass
class Response:
    status: int
    body: dict[str, Any]


# --------------------------------------------------------------------------- kubeconfig
def _named(cfg: Mapping[str, Any], section: str, name: object, inner: str) -> dict[str, Any] | None:
    entries = cfg.get(section)
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise KubeconfigError(f"'{section}' is not a list")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(inner)
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise KubeconfigError(f"{section[:-1]} {snippet(name, 80)!r}: '{inner}' is not a mapping")
            return value
    return None


def _check_data(owner: str, entry: Mapping[str, Any], key: str) -> bytes | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise KubeconfigError(f"{owner}: '{key}' is not a string")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigError(f"{owner}: '{key}' is not valid base64") from None


def _check_file(owner: str, entry: Mapping[str, Any], key: str) -> bytes | None:
    value = entry.get(key)
    if value is None or key + "-data" in entry:
        return None
    if not isinstance(value, str):
        raise KubeconfigError(f"{owner}: '{key}' is not a path")
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise KubeconfigError(f"{owner}: cannot read '{key}' {snippet(value, 120)!r}: {exc.strerror}") from None


def check_kubeconfig(text: str, context: str | None = None) -> tuple[dict[str, Any], str]:
    """Parse and check a kubeconfig; return it and the context to use."""
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise KubeconfigError(f"is not valid YAML{at}") from None
    if not isinstance(cfg, dict):
        raise KubeconfigError(f"is not a mapping (got {type(cfg).__name__})")
    contexts = cfg.get("contexts")
    if not isinstance(contexts, list) or not contexts:
        raise KubeconfigError("has no contexts")
    name = context or cfg.get("current-context")
    if not name:
        raise KubeconfigError("has no current-context and no context was named")
    ctx = _named(cfg, "contexts", name, "context")
    if ctx is None:
        known = ", ".join(sorted(snippet(c.get("name"), 60) for c in contexts if isinstance(c, dict)))
        raise KubeconfigError(f"has no context {snippet(name, 80)!r} (it has: {known or 'none'})")
    cluster_name = ctx.get("cluster")
    cluster = _named(cfg, "clusters", cluster_name, "cluster")
    if not cluster_name or cluster is None:
        raise KubeconfigError(f"context {snippet(name, 80)!r} names cluster {snippet(cluster_name, 80)!r}, "
                              "which the kubeconfig does not define")
    server = cluster.get("server")
    if not isinstance(server, str) or urlparse(server).scheme not in ("http", "https") or not urlparse(server).hostname:
        raise KubeconfigError(f"cluster {snippet(cluster_name, 80)!r} has no valid 'server' URL")
    owner = f"cluster {snippet(cluster_name, 80)!r}"
    ca = _check_data(owner, cluster, "certificate-authority-data") or _check_file(owner, cluster, "certificate-authority")
    if ca is not None:
        try:
            ssl.create_default_context().load_verify_locations(cadata=ca.decode("ascii", errors="replace"))
        except (ssl.SSLError, ValueError):
            raise KubeconfigError(f"{owner}: the certificate authority is not a PEM certificate") from None
    user_name = ctx.get("user")
    if user_name:
        user = _named(cfg, "users", user_name, "user")
        if user is None:
            raise KubeconfigError(f"context {snippet(name, 80)!r} names user {snippet(user_name, 80)!r}, "
                                  "which the kubeconfig does not define")
        _check_user(f"user {snippet(user_name, 80)!r}", user)
    return cfg, str(name)


def _check_user(owner: str, user: Mapping[str, Any]) -> None:
    cert = _check_data(owner, user, "client-certificate-data") or _check_file(owner, user, "client-certificate")
    key = _check_data(owner, user, "client-key-data") or _check_file(owner, user, "client-key")
    if (cert is None) != (key is None):
        raise KubeconfigError(f"{owner}: a client certificate needs both the certificate and its key")
    if cert is not None and key is not None:
        with tempfile.TemporaryDirectory(prefix="kindmesh-kube-") as tmp:
            cert_path, key_path = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
            cert_path.write_bytes(cert)
            key_path.touch(mode=0o600)
            key_path.write_bytes(key)
            try:
                ssl.create_default_context().load_cert_chain(str(cert_path), str(key_path))
            except (ssl.SSLError, ValueError):
                raise KubeconfigError(f"{owner}: the client certificate and key are not a valid PEM pair") from None
    token = user.get("token")
    if token is not None and not isinstance(token, str):
        raise KubeconfigError(f"{owner}: 'token' is not a string")
    exec_ = user.get("exec")
    if exec_ is not None and (
        not isinstance(exec_, dict) or not isinstance(exec_.get("command"), str) or not exec_.get("apiVersion")
    ):
        raise KubeconfigError(f"{owner}: 'exec' needs 'command' and 'apiVersion'")


# --------------------------------------------------------------------------- proxy
def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env(environ: Mapping[str, str], *names: str) -> str:
    for name in names:  # kubectl (Go) reads the upper-case name first
        value = environ.get(name) or environ.get(name.lower())
        if value:
            return value
    return ""


def proxy_for(server: str, proxy_url: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy kubectl would use for ``server`` (None: connect directly)."""
    if proxy_url:
        return proxy_url
    url = urlparse(server)
    if not url.hostname or is_loopback(url.hostname):
        return None
    env = os.environ if environ is None else environ
    proxy = _env(env, "HTTPS_PROXY") if url.scheme == "https" else _env(env, "HTTP_PROXY")
    if not proxy or should_bypass_proxies(server, _env(env, "NO_PROXY")):
        return None
    return proxy


# --------------------------------------------------------------------------- client
class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(snippet(record.getMessage()))


def _status_message(status: int, raw: bytes) -> tuple[str, str]:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return snippet(doc["message"], 1000), str(doc.get("reason") or "")
    text = raw.decode("utf-8", errors="replace").strip()
    return (f"non-JSON reply: {snippet(text)}" if text else "empty reply"), ""


class KubeClient:
    """One API server from a kubeconfig.

    Credentials given as data are written by the library to private (0600) temporary files
    that it reuses and removes when the process exits; a gate is a short process of its own.
    """

    def __init__(self, kubeconfig: str, context: str | None = None, environ: Mapping[str, str] | None = None):
        cfg, ctx_name = check_kubeconfig(kubeconfig, context)
        conf = kclient.Configuration()
        capture = _Capture()
        root = logging.getLogger()
        # The library logs (not raises) exec-plugin failures, on the root logger: collect them
        # for the one error message instead of printing them a second time.
        saved = root.handlers[:]
        root.handlers = [capture]
        try:
            kconfig.load_kube_config_from_dict(
                cfg, context=ctx_name, client_configuration=conf, persist_config=False
            )
        except Exception as exc:  # the library raises several kinds; none may escape raw
            raise KubeconfigError(f"cannot be loaded: {type(exc).__name__}: {snippet(exc)}") from None
        finally:
            root.handlers = saved
        ctx = _named(cfg, "contexts", ctx_name, "context") or {}
        user = _named(cfg, "users", ctx.get("user"), "user") or {}
        cluster = _named(cfg, "clusters", ctx.get("cluster"), "cluster") or {}
        if user.get("exec") and not conf.api_key and not conf.cert_file:
            why = "; ".join(capture.messages) or "no token or client certificate in its output"
            raise KubeconfigError(f"exec plugin {snippet(user['exec']['command'], 80)!r} gave no credentials: {why}")
        self.server = conf.host
        conf.proxy = proxy_for(conf.host, cluster.get("proxy-url"), environ)
        conf.no_proxy = ""  # decided above, the kubectl way
        conf.retries = False  # no hidden urllib3 retries: the gates retry with backoff
        if not conf.verify_ssl:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        try:
            self.api = kclient.ApiClient(conf)
        except Exception as exc:  # a bad proxy URL, a SOCKS proxy without PySocks, unusable TLS files …
            via = f" through proxy {snippet(conf.proxy, 120)!r}" if conf.proxy else ""
            raise ClientSetupError(
                f"cannot set up a connection to {self.server}{via}: {type(exc).__name__}: {snippet(exc)}"
            ) from None
        self.proxy = conf.proxy

    def close(self) -> None:
        self.api.close()

    # -- one request -------------------------------------------------------------
    def _open(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> Any:
        timeout = max(0.05, min(timeout, REQUEST_CAP))
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            m, url, hdrs, data, post = self.api.param_serialize(
                method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
            )
            return self.api.call_api(m, url, hdrs, data, post, _request_timeout=(timeout, timeout)).response
        except ApiException as exc:  # the library's wrapper of transport errors (TLS, …)
            cause = exc.__context__ or exc.__cause__
            why = _transport(cause) if cause is not None else snippet(exc.reason)
            raise KubeError(0, f"cannot reach {self.server}: {why}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, f"cannot reach {self.server}: {_transport(exc)}") from None

    def _read(self, resp: Any, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BODY:
                    raise KubeError(0, f"reply from {self.server} is larger than {MAX_BODY} bytes")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise KubeError(0, f"reply from {self.server} did not finish in time")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, f"reply from {self.server} was cut off: {_transport(exc)}") from None
        finally:
            resp.release_conn()
        return b"".join(chunks)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float) -> Response:
        """One request, bounded by ``timeout`` seconds overall; 2xx JSON object or KubeError."""
        deadline = time.monotonic() + timeout
        resp = self._open(method, path, body, timeout)
        raw = self._read(resp, deadline)
        if not 200 <= resp.status <= 299:
            message, reason = _status_message(resp.status, raw)
            raise KubeError(resp.status, message, reason)
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            raise KubeError(0, f"non-JSON reply from {self.server}: {snippet(raw.decode('utf-8', 'replace'))}") from None
        if not isinstance(doc, dict):
            raise KubeError(0, f"unexpected reply from {self.server}: {snippet(doc)}")
        return Response(resp.status, doc)

    def get(self, path: str, *, timeout: float = REQUEST_CAP) -> Response:
        return self.request("GET", path, timeout=timeout)

    def get_text(self, path: str, *, timeout: float = REQUEST_CAP) -> str:
        """A GET whose reply is text (a pod's log), bounded like :meth:`request`; KubeError otherwise."""
        deadline = time.monotonic() + timeout
        resp = self._open("GET", path, None, timeout)
        raw = self._read(resp, deadline)
        if not 200 <= resp.status <= 299:
            message, reason = _status_message(resp.status, raw)
            raise KubeError(resp.status, message, reason)
        return raw.decode("utf-8", errors="replace")

    def dry_run_create(self, path: str, obj: dict[str, Any], *, timeout: float = REQUEST_CAP) -> Response:
        sep = "&" if "?" in path else "?"
        return self.request("POST", f"{path}{sep}dryRun=All", obj, timeout=timeout)

    def wait_for_change(self, path: str, timeout: float) -> bool:
        """List ``path``, then watch it from that version; True on the first event.

        Returns False when ``timeout`` seconds pass with no event (the server ends the
        watch at ``timeoutSeconds``; the client's read timeout backs that up).
        """
        deadline = time.monotonic() + timeout
        listed = self.request("GET", path, timeout=timeout)
        version = (listed.body.get("metadata") or {}).get("resourceVersion") or ""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sep = "&" if "?" in path else "?"
        watch = f"{path}{sep}watch=true&resourceVersion={version}&timeoutSeconds={max(1, int(left))}"
        resp = self._open("GET", watch, None, left)
        if not 200 <= resp.status <= 299:
            message, reason = _status_message(resp.status, self._read(resp, deadline))
            raise KubeError(resp.status, message, reason)
        line = b""
        try:
            while b"\n" not in line:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    break
                line += chunk
                if len(line) > MAX_WATCH_LINE and b"\n" not in line[:MAX_WATCH_LINE]:
                    raise KubeError(0, f"watch event from {self.server} is larger than {MAX_WATCH_LINE} bytes")
        except urllib3.exceptions.ReadTimeoutError:
            return False
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, f"watch on {self.server} was cut off: {_transport(exc)}") from None
        finally:
            resp.close()  # an unfinished stream: never hand its connection back for reuse
            resp.release_conn()
        return bool(line.strip())


def _transport(exc: BaseException) -> str:
    """The root cause of a urllib3/socket error, short (e.g. 'ConnectionRefusedError: …')."""
    seen = exc
    for _ in range(5):
        inner = getattr(seen, "reason", None) or seen.__context__
        if not isinstance(inner, BaseException) or inner is seen:
            break
        seen = inner
    return f"{type(seen).__name__}: {snippet(seen, 200)}"
