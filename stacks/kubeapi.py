"""A minimal Kubernetes API client on the standard library (no kubectl, no extra package).

Used by the readiness gates that run inside Pulumi's dynamic-provider process: it reads
a kubeconfig (kind's: client certificate + key, CA data), speaks HTTPS to the API server,
and supports the two things a gate needs: a server-side dry-run create, and a bounded
watch that returns on the next change.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class KubeError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")


@dataclass
class Response:
    status: int
    body: dict[str, Any]


def _context_parts(kubeconfig: str, context: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = yaml.safe_load(kubeconfig) or {}
    ctx_name = context or cfg.get("current-context")
    ctx = next((c["context"] for c in cfg.get("contexts", []) if c.get("name") == ctx_name), None)
    if ctx is None:
        raise ValueError(f"kubeconfig has no context {ctx_name!r}")
    cluster = next(c["cluster"] for c in cfg.get("clusters", []) if c.get("name") == ctx["cluster"])
    user: dict[str, Any] = next(
        (u["user"] for u in cfg.get("users", []) if u.get("name") == ctx.get("user")), {}
    )
    return cluster, user or {}


class KubeClient:
    def __init__(self, kubeconfig: str, context: str | None = None, timeout: float = 30.0):
        cluster, user = _context_parts(kubeconfig, context)
        self.server = cluster["server"].rstrip("/")
        self.timeout = timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="kindmesh-kube-")
        ctx = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            ctx.load_verify_locations(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
            )
        elif cluster.get("certificate-authority"):
            ctx.load_verify_locations(cafile=cluster["certificate-authority"])
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if user.get("client-certificate-data") and user.get("client-key-data"):
            cert = Path(self._tmp.name) / "client.crt"
            key = Path(self._tmp.name) / "client.key"
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            key.chmod(0o600)
            ctx.load_cert_chain(str(cert), str(key))
        elif user.get("client-certificate") and user.get("client-key"):
            ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        if user.get("token"):
            self.headers["Authorization"] = f"Bearer {user['token']}"
        self.ssl = ctx

    def close(self) -> None:
        self._tmp.cleanup()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float | None = None) -> Response:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
                return Response(resp.status, json.loads(raw) if raw else {})
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
                message = payload.get("message", raw.decode(errors="replace"))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")
            raise KubeError(exc.code, message) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise KubeError(0, f"cannot reach {self.server}: {exc}") from exc

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def dry_run_create(self, path: str, obj: dict[str, Any]) -> Response:
        sep = "&" if "?" in path else "?"
        return self.request("POST", f"{path}{sep}dryRun=All", obj)

    def wait_for_change(self, path: str, timeout_seconds: int) -> bool:
        """List ``path`` then watch it; True when something changed within the bound."""
        listed = self.request("GET", path)
        version = (listed.body.get("metadata") or {}).get("resourceVersion", "")
        sep = "&" if "?" in path else "?"
        watch = f"{path}{sep}watch=true&resourceVersion={version}&timeoutSeconds={int(timeout_seconds)}"
        req = urllib.request.Request(self.server + watch, method="GET", headers=self.headers)
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=timeout_seconds + 5) as resp:
                return bool(resp.readline().strip())  # first event, or EOF at the server's timeout
        except (urllib.error.URLError, OSError):
            return False
