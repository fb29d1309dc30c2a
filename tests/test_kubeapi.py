"""The stdlib Kubernetes client of the readiness gates, against a loopback HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stacks.gates import wait_for_metallb_webhook
from stacks.kubeapi import KubeClient, KubeError
from stacks.planner import load_plan
from stacks.render import ip_address_pool
from tests.helpers import stack_raw

REFUSED = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "reason": "InternalError",
           "message": 'Internal error occurred: failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io": '
                      "failed to call webhook: connect: connection refused"}


class FakeApiServer:
    def __init__(self, refuse_first: int = 0):
        self.requests: list[tuple[str, str, dict | None]] = []
        self.refuse = refuse_first
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code, body, stream=False):
                data = json.dumps(body).encode() + (b"\n" if stream else b"")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                server.requests.append(("GET", self.path, None))
                if "watch=true" in self.path:
                    self._send(200, {"type": "MODIFIED", "object": {"kind": "EndpointSlice"}}, stream=True)
                elif self.path.startswith("/apis/apps/v1/namespaces/kube-system/daemonsets/missing"):
                    self._send(404, {"kind": "Status", "code": 404, "message": 'daemonsets.apps "missing" not found'})
                else:
                    self._send(200, {"kind": "EndpointSliceList", "metadata": {"resourceVersion": "4711"}, "items": []})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(("POST", self.path, body))
                if server.refuse > 0:
                    server.refuse -= 1
                    self._send(500, REFUSED)
                else:
                    self._send(201, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def kubeconfig(self) -> str:
        port = self.httpd.server_address[1]
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: kind-km-dev-us\n"
            f"clusters:\n- name: kind-km-dev-us\n  cluster:\n    server: http://127.0.0.1:{port}\n"
            "contexts:\n- name: kind-km-dev-us\n  context:\n    cluster: kind-km-dev-us\n    user: kind-km-dev-us\n"
            "users:\n- name: kind-km-dev-us\n  user:\n    token: abc123\n"
        )


@pytest.fixture
def pool():
    plan = load_plan(stack_raw("dev"), stack="dev")
    return ip_address_pool(plan, plan.clusters[0])


def test_dry_run_create_and_errors(pool):
    with FakeApiServer(refuse_first=1) as api:
        client = KubeClient(api.kubeconfig)
        try:
            path = "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools"
            with pytest.raises(KubeError) as err:
                client.dry_run_create(path, pool)
            assert err.value.status == 500 and "connection refused" in err.value.message
            assert client.dry_run_create(path, pool).status == 201
            method, sent_path, body = api.requests[-1]
            assert method == "POST" and sent_path == f"{path}?dryRun=All" and body == pool
            assert client.headers["Authorization"] == "Bearer abc123"
            with pytest.raises(KubeError) as err:
                client.get("/apis/apps/v1/namespaces/kube-system/daemonsets/missing")
            assert err.value.status == 404 and "not found" in err.value.message
        finally:
            client.close()


def test_watch_lists_then_watches_from_the_listed_version():
    with FakeApiServer() as api:
        client = KubeClient(api.kubeconfig)
        try:
            assert client.wait_for_change("/apis/discovery.k8s.io/v1/namespaces/metallb-system/endpointslices", 5)
        finally:
            client.close()
    list_req, watch_req = api.requests[-2:]
    assert "watch" not in list_req[1]
    assert "watch=true" in watch_req[1] and "resourceVersion=4711" in watch_req[1] and "timeoutSeconds=5" in watch_req[1]


def test_webhook_gate_end_to_end_over_http(pool):
    with FakeApiServer(refuse_first=2) as api:
        client = KubeClient(api.kubeconfig)
        try:
            result = wait_for_metallb_webhook(client, "us", pool, timeout=30)
        finally:
            client.close()
    assert result.attempts == 3
    assert sum(1 for r in api.requests if r[0] == "POST") == 3


def test_unreachable_server_is_a_retryable_error():
    client = KubeClient(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n"
        "    server: http://127.0.0.1:9\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
        "users:\n- name: u\n  user: {}\n"
    )
    try:
        with pytest.raises(KubeError) as err:
            client.get("/version")
        assert err.value.status == 0 and "cannot reach" in err.value.message
    finally:
        client.close()
