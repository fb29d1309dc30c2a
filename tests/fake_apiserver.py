"""A scripted Kubernetes API server on 127.0.0.1 (threaded, in-test), plain HTTP or TLS.

``FakeApiServer(route)``: ``route(method, path, body)`` returns a :class:`Reply` (or a dict:
200 JSON). A reply can be slow, truncated, not JSON, or a watch stream of lines sent with
pauses. Every request is recorded with its time and headers. ``tls=True`` serves HTTPS
with a certificate for 127.0.0.1 made here (``cryptography``) and asks for an optional
client certificate, so tests can check which credentials arrived.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes/str -> as is
    delay: float = 0.0  # before the status line
    truncate_to: int | None = None  # send only this many body bytes, then close
    stream: list[tuple[float, bytes]] | None = None  # chunked: (pause, data) pairs
    hold: float = 0.0  # keep a stream open this long after its last chunk

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body if self.body is not None else {}).encode()


def status(code: int, message: str, reason: str = "") -> Reply:
    return Reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                        "reason": reason, "message": message})


@dataclass
class Seen:
    at: float
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    client_cert: bool = False


@dataclass
class Certs:
    ca_pem: bytes
    server_cert: Path
    server_key: Path
    client_cert_pem: bytes
    client_key_pem: bytes
    tmp: Any = field(repr=False, default=None)


def make_certs() -> Certs:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def cert(subject: str, pub: Any, issuer: str, signer: Any, ca: bool, san: bool = False) -> x509.Certificate:
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(pub).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(hours=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, srv_key, cli_key = key(), key(), key()
    ca = cert("kindmesh-test-ca", ca_key.public_key(), "kindmesh-test-ca", ca_key, True)
    srv = cert("127.0.0.1", srv_key.public_key(), "kindmesh-test-ca", ca_key, False, san=True)
    cli = cert("kindmesh-admin", cli_key.public_key(), "kindmesh-test-ca", ca_key, False)
    pem = serialization.Encoding.PEM

    def key_pem(k: Any) -> bytes:
        return k.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    tmp = tempfile.TemporaryDirectory(prefix="kindmesh-certs-")
    server_cert, server_key = Path(tmp.name) / "srv.pem", Path(tmp.name) / "srv.key"
    server_cert.write_bytes(srv.public_bytes(pem))
    server_key.write_bytes(key_pem(srv_key))
    return Certs(ca.public_bytes(pem), server_cert, server_key, cli.public_bytes(pem), key_pem(cli_key), tmp)


Route = Callable[[str, str, Any], "Reply | dict[str, Any]"]


class FakeApiServer:
    def __init__(self, route: Route, *, tls: bool = False):
        self.route = route
        self.seen: list[Seen] = []
        self.certs = make_certs() if tls else None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                has_cert = bool(isinstance(self.connection, ssl.SSLSocket) and self.connection.getpeercert())
                server.seen.append(Seen(time.monotonic(), method, self.path, body, dict(self.headers), has_cert))
                reply = server.route(method, self.path, body)
                if not isinstance(reply, Reply):
                    reply = Reply(200, reply)
                with contextlib.suppress(OSError):  # the client gave up: fine
                    self._send(reply)

            def _send(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                if reply.stream is not None:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for pause, data in reply.stream:
                        time.sleep(pause)
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                    time.sleep(reply.hold)
                    self.wfile.write(b"0\r\n\r\n")
                    self.close_connection = True
                    return
                data = reply.payload()
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data if reply.truncate_to is None else data[: reply.truncate_to])
                self.wfile.flush()
                self.close_connection = True
                if reply.truncate_to is not None:
                    self.connection.shutdown(socket.SHUT_RDWR)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if self.certs is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.certs.server_cert), str(self.certs.server_key))
            ctx.load_verify_locations(cadata=self.certs.ca_pem.decode())
            ctx.verify_mode = ssl.CERT_OPTIONAL
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        scheme = "https" if self.certs else "http"
        return f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def kubeconfig(self, user: dict[str, Any] | None = None, cluster: dict[str, Any] | None = None) -> str:
        cl: dict[str, Any] = {"server": self.url}
        if self.certs is not None:
            cl["certificate-authority-data"] = base64.b64encode(self.certs.ca_pem).decode()
        return kubeconfig(cl | (cluster or {}), {"token": "s3cr3t-token"} if user is None else user)

    def count(self, method: str | None = None, within: tuple[float, float] | None = None) -> int:
        return sum(1 for s in self.seen if (method is None or s.method == method)
                   and (within is None or within[0] <= s.at <= within[1]))


def kubeconfig(cluster: dict[str, Any], user: dict[str, Any]) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kind-km-dev-us",
        "clusters": [{"name": "kind-km-dev-us", "cluster": cluster}],
        "contexts": [{"name": "kind-km-dev-us", "context": {"cluster": "kind-km-dev-us", "user": "kind-km-dev-us"}}],
        "users": [{"name": "kind-km-dev-us", "user": user}],
    })


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
