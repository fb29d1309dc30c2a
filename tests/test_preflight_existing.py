"""Read-only preflight of existing clusters against loopback API servers (127.0.0.1 only)."""

from __future__ import annotations

import copy
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kindmesh.core.planner import load_plan
from kindmesh.core.render import cilium_values
from kindmesh.stacks import preflight, preflight_existing
from tests.helpers import stack_raw

K3S_GOOD_ARGS = ["server", "--flannel-backend", "none", "--disable-network-policy", "--disable-kube-proxy",
                 "--disable=servicelb,traefik", "--cluster-cidr", "10.11.0.0/16"]


def node(name: str, ip: str, pod_cidr: str | None = None, annotations: dict[str, str] | None = None) -> dict:
    return {
        "metadata": {"name": name, "annotations": annotations or {},
                     "labels": {"kubernetes.io/hostname": name}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]},
    }


def daemonset(ns: str, name: str, labels: dict[str, str] | None = None) -> dict:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels or {}},
            "status": {"desiredNumberScheduled": 1, "numberReady": 1}}


def k3s_api(args: list[str] | None = None, version: str = "v1.33.5+k3s1", **extra: Any) -> dict[str, Any]:
    """Responses as a k3s server with Cilium-ready flags answers them."""
    annotations = {"k3s.io/node-args": json.dumps(args if args is not None else K3S_GOOD_ARGS)}
    routes: dict[str, Any] = {
        "/version": {"major": "1", "minor": "33", "gitVersion": version, "platform": "linux/amd64"},
        "/api/v1/nodes": {"kind": "NodeList", "items": [node("k3s-a", "192.168.56.11", "10.11.0.0/24", annotations)]},
        "/apis/apps/v1/daemonsets": {"kind": "DaemonSetList", "items": []},
        preflight_existing.HELM_SECRETS: {"kind": "SecretList", "items": []},
    }
    routes.update(extra)
    return routes


class LoopbackApi:
    """A Kubernetes API server stand-in on 127.0.0.1 serving recorded responses (GET only)."""

    def __init__(self, routes: dict[str, Any], status: int = 200):
        self.routes = routes
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(("GET", self.path))
                if status != 200:
                    self._send(status, {"kind": "Status", "code": status, "message": "Unauthorized"})
                elif self.path in outer.routes:
                    self._send(200, outer.routes[self.path])
                else:
                    self._send(404, {"kind": "Status", "code": 404, "message": f"{self.path} not found"})

            def _refuse(self) -> None:
                outer.requests.append((self.command, self.path))
                self._send(405, {"kind": "Status", "code": 405, "message": "the preflight is read-only"})

            do_POST = do_PUT = do_PATCH = do_DELETE = _refuse  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def kubeconfig(url: str, token: str = "t0ken") -> str:
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
        f"clusters:\n- name: lab\n  cluster:\n    server: {url}\n"
        "contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n"
        f"users:\n- name: lab\n  user:\n    token: {token}\n"
    )


@pytest.fixture
def servers():
    started: list[LoopbackApi] = []

    def start(routes: dict[str, Any], status: int = 200) -> LoopbackApi:
        api = LoopbackApi(routes, status)
        started.append(api)
        return api

    yield start
    for api in started:
        api.close()


def remote_plan(*urls: str, **changes: Any):
    raw = copy.deepcopy(stack_raw("remote"))
    for cluster, url in zip(raw["clusters"], urls, strict=False):
        cluster["kubeconfig"] = kubeconfig(url)
    for index, extra in changes.items():
        raw["clusters"][int(index[1:])].update(extra)
    return load_plan(raw, stack="remote")


def run(plan):
    return preflight_existing.run(plan, connect_to=preflight_existing.connect).plan


def k3s_b_api() -> dict[str, Any]:
    routes = k3s_api()
    routes["/api/v1/nodes"] = {"items": [node("k3s-b", "192.168.56.12", "10.12.0.0/24", {
        "k3s.io/node-args": json.dumps(K3S_GOOD_ARGS)})]}
    return routes


def test_prepared_k3s_clusters_pass_and_ipam_auto_is_resolved(servers):
    a, b = servers(k3s_api()), servers(k3s_b_api())
    plan = remote_plan(a.url, b.url)
    resolved = run(plan)
    ex = resolved.cluster("k3s-a").existing
    assert ex.ipam == "kubernetes" and "all 1 nodes have spec.podCIDR" in ex.ipam_reason
    values = cilium_values(resolved, resolved.cluster("k3s-a"), [])
    assert values["ipam"] == {"mode": "kubernetes"}
    assert plan.cluster("k3s-a").existing.ipam == "auto"  # the plan itself is not mutated
    for api in (a, b):
        assert {m for m, _ in api.requests} == {"GET"}
        assert {p for _, p in api.requests} == {"/version", "/api/v1/nodes", "/apis/apps/v1/daemonsets",
                                                preflight_existing.HELM_SECRETS}


def test_nodes_without_pod_cidrs_get_cluster_pool(servers):
    routes = k3s_api()
    routes["/api/v1/nodes"]["items"][0]["spec"] = {}
    a, b = servers(routes), servers(k3s_b_api())
    resolved = run(remote_plan(a.url, b.url))
    ex = resolved.cluster("k3s-a").existing
    assert ex.ipam == "cluster-pool" and "10.11.0.0/16" in ex.ipam_reason


def test_every_problem_of_every_cluster_at_once(servers):
    kubeadm = {
        "/version": {"major": "1", "minor": "31", "gitVersion": "v1.31.4"},
        "/api/v1/nodes": {"items": [node("cp", "192.168.56.12", "10.244.0.0/24"), node("w1", "192.168.56.13")]},
        "/apis/apps/v1/daemonsets": {"items": [
            daemonset("kube-system", "kube-proxy"), daemonset("kube-system", "calico-node"),
            daemonset("kube-system", "cilium", {"app.kubernetes.io/part-of": "cilium"})]},
        preflight_existing.HELM_SECRETS: {"items": [{"metadata": {"name": "sh.helm.release.v1.cilium.v2", "labels": {
            "owner": "helm", "name": "cilium", "status": "deployed", "version": "2"}}}]},
    }
    bad_k3s = k3s_api(args=["server", "--cluster-cidr", "10.11.0.0/16"])
    a, b = servers(bad_k3s), servers(kubeadm)
    plan = remote_plan(a.url, b.url, c1={"ipam": "kubernetes"}, c0={"meshEndpoint": {
        "loadBalancer": {"pool": "192.168.57.240-192.168.57.250"}}})
    with pytest.raises(preflight.PreflightError) as err:
        run(plan)
    text = str(err.value)
    expected = [
        ("k3s-a", "k3s runs its embedded flannel", "--flannel-backend=none --disable-network-policy"),
        ("k3s-a", "k3s runs its embedded kube-proxy", "--disable-kube-proxy"),
        ("k3s-a", "servicelb", "--disable=servicelb"),
        ("k3s-b", "Kubernetes v1.31.4 is outside 1.33-1.36", "Cilium 1.20"),
        ("k3s-b", "kube-proxy runs (DaemonSet kube-system/kube-proxy)", "--skip-phases=addon/kube-proxy"),
        ("k3s-b", "another CNI runs: Calico (DaemonSet kube-system/calico-node)", "/etc/cni/net.d"),
        ("k3s-b", "Cilium is already installed and not by this stack", "helm -n kube-system uninstall cilium"),
        ("k3s-b", "Helm release kube-system/cilium revision 2", "does not adopt"),
        ("k3s-b", "node cp has podCIDR 10.244.0.0/24, outside podSubnet 10.12.0.0/16", "--cluster-cidr"),
        ("k3s-b", "ipam is kubernetes but 1 of 2 nodes have no spec.podCIDR", "--allocate-node-cidrs"),
    ]
    lines = text.splitlines()
    for cluster, what, fix in expected:
        hit = [x for x in lines if f"cluster {cluster!r}" in x and what in x]
        assert hit and fix in hit[0], (cluster, what, text)
    assert "t0ken" not in text
    for api in (a, b):
        assert {m for m, _ in api.requests} == {"GET"}


def test_node_ips_must_be_nodes_addresses(servers):
    a, b = servers(k3s_api()), servers(k3s_b_api())
    plan = remote_plan(a.url, b.url, c0={"meshEndpoint": {"nodePort": 32379, "nodeIPs": ["192.168.56.99"]}})
    with pytest.raises(preflight.PreflightError, match=r"nodeIPs lists 192\.168\.56\.99, which no node reports"):
        run(plan)


def test_this_stacks_own_cilium_is_not_a_problem(servers):
    plan = remote_plan("http://127.0.0.1:1", "http://127.0.0.1:1")  # placeholders, replaced below
    routes = k3s_api(**{"/apis/apps/v1/daemonsets": {"items": [
        daemonset("kube-system", "cilium", {"kindmesh.io/stack": plan.stack_label})]}})
    routes[preflight_existing.HELM_SECRETS] = {"items": [{"metadata": {"labels": {"status": "deployed",
                                                                                  "version": "3"}}}]}
    a, b = servers(routes), servers(k3s_b_api())
    run(remote_plan(a.url, b.url))


def test_unreachable_and_rejected_clusters_are_reported(servers):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    rejecting = servers({}, status=401)
    with pytest.raises(preflight.PreflightError) as err:
        run(remote_plan(closed, rejecting.url))
    text = str(err.value)
    assert "cluster 'k3s-a': cannot reach the API server with the kubeconfig (context 'lab')" in text
    assert "cluster 'k3s-b': the API server rejected the kubeconfig's credentials" in text


def test_k3s_without_recorded_flags_falls_back_to_flannel_annotations(servers):
    routes = k3s_api()
    routes["/api/v1/nodes"]["items"][0]["metadata"]["annotations"] = {
        "flannel.alpha.coreos.com/backend-type": "vxlan"}
    a, b = servers(routes), servers(k3s_b_api())
    with pytest.raises(preflight.PreflightError, match="embedded flannel has run on these nodes"):
        run(remote_plan(a.url, b.url))


def test_flag_parsing():
    args = ["server", "--flannel-backend=none", "--disable", "servicelb", "--disable-kube-proxy", "--x", "1"]
    assert preflight_existing.flag_value(args, "--flannel-backend") == "none"
    assert preflight_existing.flag_value(args, "--disable-kube-proxy") == "true"
    assert preflight_existing.flag_value(args, "--nope") is None
    assert preflight_existing.disabled_components(args) == {"servicelb"}
    assert preflight_existing.parse_version("v1.34.1+k3s1") == (1, 34)


def test_no_op_under_mocks_without_a_connector():
    from tests.mocks import evaluate

    evaluate(stack_raw("dev"), "dev")  # leaves the mocked engine installed
    plan = remote_plan("http://127.0.0.1:1", "http://127.0.0.1:1")
    assert preflight_existing.run(plan).plan is plan


def test_exec_plugin_kubeconfigs_are_reported_not_run(tmp_path):
    raw = copy.deepcopy(stack_raw("remote"))
    for c in raw["clusters"]:
        c["kubeconfig"] = kubeconfig("http://127.0.0.1:1").replace(
            "    token: t0ken\n", "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n")
    plan = load_plan(raw, stack="remote")
    with pytest.raises(preflight.PreflightError, match="exec plugin") as err:
        run(plan)
    assert str(err.value).count("exec plugin") == 2


def test_each_existing_cluster_is_checked_against_its_own_cilium_versions_window(servers, capsys):
    # k3s 1.32: inside 1.19's window (1.32-1.35), older than 1.20's (1.33-1.36)
    old_k8s = k3s_api(version="v1.32.9+k3s1")
    a, b = servers(old_k8s), servers(dict(k3s_b_api(), **{"/version": {"gitVersion": "v1.37.1+k3s1"}}))
    plan = remote_plan(a.url, b.url, c0={"cilium": {"version": "1.19.6"}})
    run(plan)  # a on 1.19: fine; b (1.37) is newer than 1.20's window: a note, not a problem
    assert "Kubernetes v1.37.1+k3s1 is newer than 1.33-1.36" in capsys.readouterr().out
    with pytest.raises(preflight.PreflightError) as err:
        run(remote_plan(a.url, b.url))  # a on the stack's 1.20
    assert "cluster 'k3s-a': Kubernetes v1.32.9+k3s1 is outside 1.33-1.36" in str(err.value)
