"""`make diagnose` at the process boundaries: the dev stack's two clusters as scripted API servers
on 127.0.0.1, fake docker/kind/kubectl on PATH, faults put in one at a time. Each fault must be
named at its layer with its fix, the exit code must say what happened, the run must stay within
its deadline, and the archive must hold no secret."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import yaml

from kindmesh.cli import diagnose, doctor
from tests.fake_apiserver import FakeApiServer, Reply, closed_port, make_certs, status
from tests.fakes import FakeBin
from tests.helpers import ROOT

CERTS = make_certs()
CA_KEY_PEM = CERTS.client_key_pem.decode()  # stands in for the mesh CA key (a PEM private key)
CA_KEY_BODY = CA_KEY_PEM.splitlines()[1]
US_TOKEN = "us-kubeconfig-token-4f9a1c"
NETWORK = "kindmesh-dev"
NODES = {"us": ["km-dev-us-control-plane", "km-dev-us-worker"], "eu": ["km-dev-eu-control-plane", "km-dev-eu-worker"]}
PEERS = {"us": ["eu"], "eu": ["us"]}
LB = {"us": ("172.30.255.239", "172.30.255.240"), "eu": ("172.30.255.223", "172.30.255.224")}
CNI_DOWN = ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
            "message:Network plugin returns error: cni plugin not initialized")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def ready_ds(name: str, n: int = 2) -> dict[str, Any]:
    return {"kind": "DaemonSet", "metadata": {"name": name, "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": name}}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": n, "numberReady": n,
                       "updatedNumberScheduled": n}}


def deploy(name: str, available: int = 1) -> dict[str, Any]:
    conditions = [] if available else [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                                        "message": "Deployment does not have minimum availability."}]
    return {"kind": "Deployment", "metadata": {"name": name, "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}},
            "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": available,
                       "conditions": conditions}}


def lst(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": f"{kind}List", "metadata": {"resourceVersion": "1"}, "items": items}


def crashing_pod(name: str, container: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": container, "ready": False, "restartCount": 7,
                               "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                     "message": "back-off 5m0s restarting failed container"}},
                               "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}


class FakeCluster:
    """One cluster of the dev stack as the API server shows it, healthy unless a fault is set."""

    def __init__(self, name: str, faults: set[str] | None = None, *, nodes: list[str] | None = None,
                 lb: tuple[str, str] | None = None):
        self.name = name
        self.faults = faults or set()
        self.nodes = nodes or NODES[name]
        self.lb = lb or LB.get(name, ("", ""))
        self.paths: list[str] = []

    def helm(self, release: str) -> dict[str, Any]:
        # the release secret holds the values, the CA key among them: never in the archive
        return lst("Secret", [{"metadata": {"name": f"sh.helm.release.v1.{release}.v1", "labels": {
            "name": release, "owner": "helm", "status": "deployed", "version": "1"}},
            "type": "helm.sh/release.v1", "data": {"release": b64(f"tls:\n  ca:\n    key: |\n{CA_KEY_PEM}")}}])

    def route(self, method: str, full: str, body: Any) -> Reply | dict[str, Any]:
        self.paths.append(full)
        url = urlparse(full)
        path, query = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
        f = self.faults
        if path == "/version":
            return {"gitVersion": "v1.34.0"}
        if path == "/api/v1/nodes":
            nodes = []
            for n in self.nodes:
                bad = "node-not-ready" in f and n.endswith("worker")
                cond = ({"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": CNI_DOWN} if bad
                        else {"type": "Ready", "status": "True", "reason": "KubeletReady"})
                nodes.append({"metadata": {"name": n}, "status": {"conditions": [cond]}})
            return lst("Node", nodes)
        if path.endswith("/events"):
            target = query.get("fieldSelector", "")
            if "metallb-controller" in target or "cilium-operator" in target:
                return lst("Event", [{"type": "Warning", "reason": "BackOff", "count": 40,
                                      "lastTimestamp": "2026-12-06T21:00:00Z",
                                      "message": "Back-off restarting failed container"}])
            if "clustermesh-apiserver" in target:
                return lst("Event", [{"type": "Warning", "reason": "AllocationFailed", "count": 3,
                                      "lastTimestamp": "2026-12-06T21:00:00Z",
                                      "message": "Failed to allocate IP for \"kube-system/clustermesh-apiserver\": "
                                                 "no available IPs"}])
            return lst("Event", [])
        if path.endswith("/secrets") and query.get("labelSelector", "").startswith("owner=helm"):
            return self.helm("cilium" if "/kube-system/" in path else "metallb")
        m = re.fullmatch(r"/apis/apps/v1/namespaces/([^/]+)/(daemonsets|deployments)/([^/]+)", path)
        if m:
            ns, plural, name = m.groups()
            if name == "cilium-envoy":
                return status(404, 'daemonsets.apps "cilium-envoy" not found', "NotFound")
            if plural == "daemonsets":
                return ready_ds(name)
            down = (name == "cilium-operator" and "operator-down" in f) or (
                name == "metallb-controller" and "metallb-down" in f)
            if name == "cilium-operator" and "operator-scaled-to-0" in f:  # `kubectl scale --replicas=0`
                obj = deploy(name, 0)
                obj["spec"]["replicas"], obj["status"]["updatedReplicas"], obj["status"]["conditions"] = 0, 0, []
                return obj
            return deploy(name, 0 if down else 1)
        if path.endswith("/pods") and "labelSelector" in query:
            sel = query["labelSelector"]
            if sel == "k8s-app=cilium":
                pods = []
                for x, node in zip("ab", self.nodes * 2, strict=False):
                    pod = {"metadata": {"name": f"cilium-{self.name}-{x}"}, "spec": {"nodeName": node},
                           "status": {"phase": "Running"}}
                    if "node-not-ready" in f and node.endswith("worker"):
                        pod = crashing_pod(f"cilium-{self.name}-{x}", "cilium-agent")
                    pods.append(pod)
                node = query.get("fieldSelector", "").removeprefix("spec.nodeName=")
                return lst("Pod", [p for p in pods if not node or p.get("spec", {}).get("nodeName", node) == node])
            if sel == "k8s-app=clustermesh-apiserver":
                return lst("Pod", [{"metadata": {"name": "clustermesh-apiserver-7d"}, "status": {
                    "phase": "Running", "containerStatuses": [{"name": n, "ready": True}
                                                              for n in ("etcd", "apiserver", "kvstoremesh")]}}])
            if sel in ("app=cilium-operator", "app=metallb-controller"):
                return lst("Pod", [crashing_pod(sel.split("=")[1] + "-5f6d", sel.split("=")[1])])
            return lst("Pod", [])
        if path.endswith("/log"):
            return Reply(200, "level=info msg=starting\nlevel=fatal msg=\"failed to start: unable to connect "
                              "to the API\"\n")
        if path.endswith("/endpointslices"):
            ready = "metallb-down" not in f and "webhook-down" not in f
            eps = [{"addresses": ["10.1.0.17"], "conditions": {"ready": True}}] if ready else []
            return lst("EndpointSlice", [{"metadata": {"name": "metallb-webhook-service-x"}, "endpoints": eps}])
        if path.endswith("/ipaddresspools"):
            return lst("IPAddressPool", [{"metadata": {"name": n}} for n in ("kindmesh-pool", "kindmesh-reserved")])
        if path.endswith("/l2advertisements"):
            return lst("L2Advertisement", [{"metadata": {"name": "kindmesh-l2"}}])
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/services/([^/]+)", path)
        if m:
            ns, name = m.groups()
            svc: dict[str, Any] = {"kind": "Service", "metadata": {"name": name, "namespace": ns},
                                   "spec": {"type": "LoadBalancer" if ns == "kube-system" else "ClusterIP"},
                                   "status": {}}
            if ns == "kube-system":
                ip = self.lb[0 if name == "clustermesh-apiserver" else 1]
                if not (name == "clustermesh-apiserver" and "no-lb-ip" in f):
                    svc["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
            return svc
        if path == "/api/v1/services":
            return lst("Service", [])
        m = re.fullmatch(r"/api/v1/namespaces/kube-system/secrets/(cilium-clustermesh|cilium-kvstoremesh)", path)
        if m:
            peers = [] if "missing-peer" in f else PEERS[self.name]  # PEERS: every cluster's planned peers
            data = {p: b64("endpoints:\n- https://clustermesh-apiserver.kube-system.svc:2379\n") for p in peers}
            if m.group(1) == "cilium-kvstoremesh":
                data.update({f"{p}.etcd-client.key": b64(CA_KEY_PEM) for p in peers})
            return {"kind": "Secret", "metadata": {"name": m.group(1), "namespace": "kube-system"}, "data": data}
        return status(404, f"{unquote(path)} not found", "NotFound")


KUBECTL = r'''#!{python}
import json, sys
from pathlib import Path
here = Path(__file__).resolve().parent
state = json.loads((here / "kubectl.json").read_text())
args = sys.argv[1:]
with open(here / "kubectl-calls.jsonl", "a") as fh:
    fh.write(json.dumps(args) + "\n")
if state.get("hang"):  # an exec that never returns (a wedged agent)
    import time
    time.sleep(state["hang"])
if "exec" in args and "json" in args:  # cilium-dbg status -o json: the remote clusters
    pod = args[args.index("exec") + 1]
    cluster = pod[len("cilium-"):-len("-a")]
    down = state.get("mesh_down", {{}}).get(cluster, [])
    clusters = [{{"name": p, "ready": p not in down, "num-failures": 3 if p in down else 0,
                 "status": "Waiting for initial connection to be established" if p in down else "ready"}}
                for p in state.get("peers", {{}}).get(cluster, [])]
    print(json.dumps({{"cluster-mesh": {{"clusters": clusters}}}})); sys.exit(0)
if "exec" in args:
    pod = args[args.index("exec") + 1]
    rc, out = state.get(pod, [0, "OK"])
    print(out, file=sys.stdout if rc == 0 else sys.stderr); sys.exit(rc)
print("unknown kubectl call", args, file=sys.stderr); sys.exit(2)
'''


class Stack:
    """The dev stack on this machine: project dir, kubeconfig, two fake API servers, fake tools."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, *, faults: dict[str, set[str]] | None = None,
                 up: bool = True, agents: dict[str, list[Any]] | None = None):
        self.root = tmp / "project"
        self.root.mkdir()
        shutil.copy(ROOT / "Pulumi.dev.yaml", self.root / "Pulumi.dev.yaml")
        self.clusters = {n: FakeCluster(n, (faults or {}).get(n)) for n in ("us", "eu")}
        self.servers = {"us": FakeApiServer(lambda m, p, b: self.clusters["us"].route(m, p, b)),
                        "eu": FakeApiServer(lambda m, p, b: self.clusters["eu"].route(m, p, b), tls=True)}
        nodes = [n for ns in NODES.values() for n in ns]
        self.fake = FakeBin(tmp / "tools",
                            clusters=["km-dev-us", "km-dev-eu"] if up else [],
                            containers={n: [NETWORK] for n in nodes} if up else {},
                            networks=[{"Name": NETWORK, "IPAM": {"Config": [{"Subnet": "172.30.0.0/16"}]}}] if up else [],
                            log_text=f"kubelet: started\nAuthorization: Bearer {US_TOKEN}\n{CA_KEY_PEM}")
        kubectl = self.fake.dir / "kubectl"
        kubectl.write_text(KUBECTL.format(python=sys.executable))
        kubectl.chmod(0o755)
        (self.fake.dir / "kubectl.json").write_text(json.dumps({"peers": PEERS, **(agents or {})}))
        self.fake.activate(monkeypatch)
        for var in ("KINDMESH_KUBECTL", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.delenv(var, raising=False)
        self.up = up

    def __enter__(self) -> Stack:
        for s in self.servers.values():
            s.__enter__()
        if self.up:
            self.write_kubeconfig()
        return self

    def __exit__(self, *exc: Any) -> None:
        for s in self.servers.values():
            s.__exit__(*exc)

    @property
    def kubeconfig(self) -> Path:
        return self.root / ".kindmesh" / "dev" / "kubeconfig"

    def write_kubeconfig(self, servers: dict[str, str] | None = None) -> None:
        servers = servers or {n: s.url for n, s in self.servers.items()}
        eu_tls = self.servers["eu"]
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "us", "clusters": [
            {"name": "kind-km-dev-us", "cluster": {"server": servers["us"]}},
            {"name": "kind-km-dev-eu", "cluster": {"server": servers["eu"],
                                                   "certificate-authority-data": b64(eu_tls.certs.ca_pem.decode())}}],
            "users": [{"name": "kind-km-dev-us", "user": {"token": US_TOKEN}},
                      {"name": "kind-km-dev-eu", "user": {
                          "client-certificate-data": b64(eu_tls.certs.client_cert_pem.decode()),
                          "client-key-data": b64(eu_tls.certs.client_key_pem.decode())}}],
            "contexts": [{"name": n, "context": {"cluster": f"kind-km-dev-{n}", "user": f"kind-km-dev-{n}"}}
                         for n in ("us", "eu")] + [
                {"name": f"kind-km-dev-{n}", "context": {"cluster": f"kind-km-dev-{n}", "user": f"kind-km-dev-{n}"}}
                for n in ("us", "eu")]}
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.kubeconfig.write_text(yaml.safe_dump(cfg))
        self.kubeconfig.chmod(0o600)

    def run(self, timeout: float = 30.0) -> tuple[diagnose.Report, float]:
        start = time.monotonic()
        report = diagnose.diagnose("dev", root=self.root, timeout=timeout, host_check=healthy_host)
        return report, time.monotonic() - start


def healthy_host(stack: str, root: Path) -> list[doctor.Finding]:
    return [doctor.Finding("docker", "ok", "Engine 29.1.2"), doctor.Finding("kind", "ok", "v0.30.0"),
            doctor.Finding("memory", "FAIL", "1024 MiB available; estimate 4608 MiB", "free memory")]


def rows_of(report: diagnose.Report, cluster: str) -> list[diagnose.Row]:
    return [r for r in report.rows if r.cluster == cluster]


def failure(report: diagnose.Report, cluster: str) -> diagnose.Row:
    failed = [r for r in rows_of(report, cluster) if r.state == "FAIL"]
    assert len(failed) == 1, diagnose.render(report.rows, "dev")
    return failed[0]


def layers_ok(report: diagnose.Report, cluster: str) -> list[str]:
    return [r.layer for r in rows_of(report, cluster) if r.state == "ok"]


ALL_LAYERS = ["kind nodes", "kubernetes API", "nodes", "cilium", "metallb", "clustermesh", "demo"]


def archive_text(report: diagnose.Report) -> dict[str, str]:
    assert report.archive_path is not None and report.archive_path.is_file()
    assert report.archive_path.stat().st_mode & 0o777 == 0o600
    out = {}
    with tarfile.open(report.archive_path) as tar:
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            if fh is not None:
                out[m.name.split("/", 1)[1]] = fh.read().decode()
    return out


def assert_no_secret(files: dict[str, str], stack: Stack) -> None:
    eu_key = stack.servers["eu"].certs.client_key_pem.decode()
    secrets = [eu_key.splitlines()[1], b64(eu_key)[:60], CA_KEY_BODY, US_TOKEN, b64(CA_KEY_PEM), b64(CA_KEY_PEM)[:60], "BEGIN PRIVATE KEY",
               b64(f"tls:\n  ca:\n    key: |\n{CA_KEY_PEM}")[:60]]
    for name, text in files.items():
        for secret in secrets:
            assert secret not in text, f"{secret[:20]}… in {name}"


# ----------------------------------------------------------------------------- scenarios
def test_a_healthy_stack_is_healthy_exit_0_and_everything_read_is_archived_without_secrets(tmp_path, monkeypatch):
    with Stack(tmp_path, monkeypatch) as s:
        report, took = s.run()
    text = diagnose.render(report.rows, "dev")
    assert report.exit_code == 0, text
    for c in ("us", "eu"):
        assert layers_ok(report, c) == ALL_LAYERS, text
    assert took < 20
    assert "every layer healthy" in text
    # the memory estimate counts nodes that already run: a warning, not a finding
    assert any(r.layer == "host: memory" and r.state == "warn" for r in report.rows)
    files = archive_text(report)
    assert report.archive_path.name.startswith("diagnose-") and report.archive_path.parent == s.kubeconfig.parent
    assert any(n.startswith("kind-logs/km-dev-us/") and n.endswith("kubelet.log") for n in files)
    assert any(n.startswith("clusters/eu/api/api/v1/nodes") for n in files)
    assert any("cilium-dbg-status" in n for n in files) and "report.txt" in files
    kubeconfig = yaml.safe_load(files["kubeconfig.redacted.yaml"])
    assert [u["user"] for u in kubeconfig["users"]] == [
        {"token": "<redacted>"}, {"client-certificate-data": "<redacted>", "client-key-data": "<redacted>"}]
    assert kubeconfig["clusters"][0]["cluster"]["server"] == s.servers["us"].url
    helm = next(v for n, v in files.items() if n.startswith("clusters/us/") and "sh.helm.release.v1.cilium" in v)
    assert '"status": "deployed"' in helm and "<redacted>" in helm
    assert_no_secret(files, s)
    assert (s.root / ".kindmesh" / ".gitignore").read_text() == "# written by kindmesh: credentials, never to be committed\n*\n"
    # kubectl was given the stack's kubeconfig and the cluster's context, and a bound
    calls = [json.loads(x) for x in (s.fake.dir / "kubectl-calls.jsonl").read_text().splitlines()]
    assert len(calls) == 6 and all(c[:4] == ["--kubeconfig", str(s.kubeconfig), "--context", c[3]] for c in calls)
    assert sum("--brief" in c for c in calls) == 4 and sum("json" in c for c in calls) == 2  # each agent; one per cluster
    assert all(any(a.startswith("--request-timeout=") for a in c) for c in calls)


def test_a_node_not_ready_is_named_at_the_nodes_layer_with_the_cni_as_the_next_look(tmp_path, monkeypatch):
    with Stack(tmp_path, monkeypatch, faults={"us": {"node-not-ready"}}) as s:
        report, _ = s.run()
    row = failure(report, "us")
    assert report.exit_code == 1
    assert row.layer == "nodes" and "km-dev-us-worker is not Ready" in row.evidence and "cni plugin" in row.evidence
    # the agent on that node is what to look at
    assert "its Cilium agent cilium-us-b: container cilium-agent waiting: CrashLoopBackOff" in row.evidence
    assert "logs cilium-us-b -c cilium-agent --previous" in row.fix
    # it stops there: nothing below is read for us; eu is healthy all the way down
    assert layers_ok(report, "us") == ["kind nodes", "kubernetes API"]
    assert any(r.state == "skip" and "cilium" in r.layer for r in rows_of(report, "us"))
    assert not any("/deployments/" in p or "ipaddresspools" in p for p in s.clusters["us"].paths)
    assert layers_ok(report, "eu") == ALL_LAYERS


def test_a_node_not_ready_for_another_reason_points_at_its_kubelet(tmp_path, monkeypatch):
    class Stopped(FakeCluster):
        def route(self, method, full, body):
            reply = super().route(method, full, body)
            if full == "/api/v1/nodes":
                reply["items"][0]["status"]["conditions"] = [{"type": "Ready", "status": "Unknown",
                                                              "reason": "NodeStatusUnknown",
                                                              "message": "Kubelet stopped posting node status."}]
            return reply

    with Stack(tmp_path, monkeypatch) as s:
        s.clusters["eu"] = Stopped("eu")
        report, _ = s.run()
    row = failure(report, "eu")
    assert row.layer == "nodes" and "km-dev-eu-control-plane is not Ready: NodeStatusUnknown" in row.evidence
    assert row.fix.startswith("docker exec km-dev-eu-control-plane journalctl -u kubelet")


def test_a_peer_the_agents_do_not_reach_is_named_at_the_clustermesh_layer(tmp_path, monkeypatch):
    with Stack(tmp_path, monkeypatch, agents={"mesh_down": {"us": ["eu"]}}) as s:
        report, _ = s.run()
    row = failure(report, "us")
    assert row.layer == "clustermesh"
    assert "agent cilium-us-a sees: eu not ready (Waiting for initial connection to be established; 3 failures)" \
        in row.evidence
    assert "cilium --context us clustermesh status" in row.fix and "-c kvstoremesh" in row.fix
    assert layers_ok(report, "eu") == ALL_LAYERS


def test_cilium_operator_unavailable_is_named_at_the_cilium_layer_with_its_pod_events_and_log(tmp_path, monkeypatch):
    with Stack(tmp_path, monkeypatch, faults={"eu": {"operator-down"}}) as s:
        report, _ = s.run()
    row = failure(report, "eu")
    assert report.exit_code == 1 and row.layer == "cilium"
    assert "Deployment kube-system/cilium-operator: 0/1 replicas available" in row.evidence
    assert "CrashLoopBackOff" in row.evidence and "7 restarts" in row.evidence
    assert "Back-off restarting failed container" in row.evidence  # the last event
    assert "unable to connect to the API" in row.evidence  # the log's last lines
    assert "kubectl --context eu -n kube-system logs cilium-operator-5f6d -c cilium-operator --previous" in row.fix
    assert layers_ok(report, "us") == ALL_LAYERS
    assert_no_secret(archive_text(report), s)


def test_cilium_operator_scaled_to_0_is_named_at_the_cilium_layer_though_its_rollout_is_done(tmp_path, monkeypatch):
    # 0/0 replicas available is a finished rollout to the gates; for diagnose nothing runs
    with Stack(tmp_path, monkeypatch, faults={"eu": {"operator-scaled-to-0"}}) as s:
        report, _ = s.run()
    row = failure(report, "eu")
    assert report.exit_code == 1 and row.layer == "cilium"
    assert "Deployment kube-system/cilium-operator is scaled to 0 replicas" in row.evidence
    assert "kubectl --context eu -n kube-system scale deployment cilium-operator --replicas=1" in row.fix
    assert layers_ok(report, "us") == ALL_LAYERS


EXEC_UNREACHABLE = ('error: Internal error occurred: error sending request: Post "https://km-dev-us-worker:10250/exec/'
                    'kube-system/cilium-us-b/cilium-agent?command=cilium-dbg": proxy error from 127.0.0.1:8132 while '
                    'dialing km-dev-us-worker:10250, code 502: 502 Bad Gateway')


def test_an_exec_that_never_reaches_the_agent_is_a_warning_not_a_broken_cilium(tmp_path, monkeypatch):
    # the API server cannot open the exec stream to the kubelet: the agent's state is unknown
    with Stack(tmp_path, monkeypatch, agents={"cilium-us-a": [1, EXEC_UNREACHABLE]}) as s:
        report, _ = s.run()
    text = diagnose.render(report.rows, "dev")
    assert report.exit_code == 0, text
    assert layers_ok(report, "us") == ALL_LAYERS and layers_ok(report, "eu") == ALL_LAYERS
    warn = [r for r in rows_of(report, "us") if r.state == "warn"]
    assert len(warn) == 1 and warn[0].layer == "cilium", text
    assert warn[0].evidence.startswith("cilium-dbg status not read: kubectl exec did not reach agent cilium-us-a")
    assert "kubelet (port 10250)" in warn[0].fix
    calls = [json.loads(x) for x in (s.fake.dir / "kubectl-calls.jsonl").read_text().splitlines()]
    assert sum("cilium-us-a" in c or "cilium-us-b" in c for c in calls) == 1  # no exec after the first failed


def test_a_cilium_dbg_that_ran_and_failed_stays_a_broken_cilium(tmp_path, monkeypatch):
    agents = {"cilium-us-b": [1, "error: kvstore unreachable\ncommand terminated with exit code 1"]}
    with Stack(tmp_path, monkeypatch, agents=agents) as s:
        report, _ = s.run()
    row = failure(report, "us")
    assert report.exit_code == 1 and row.layer == "cilium" and "agent cilium-us-b" in row.evidence


@pytest.mark.parametrize("fault,expect", [
    ("metallb-down", "Deployment metallb-system/metallb-controller: 0/1 replicas available"),
    ("webhook-down", "MetalLB's webhook (metallb-system/metallb-webhook-service) has no ready endpoint"),
])
def test_metallb_controller_or_webhook_down_is_named_at_the_metallb_layer(tmp_path, monkeypatch, fault, expect):
    with Stack(tmp_path, monkeypatch, faults={"us": {fault}}) as s:
        report, _ = s.run()
    row = failure(report, "us")
    assert report.exit_code == 1 and row.layer == "metallb" and expect in row.evidence
    assert "metallb-controller" in row.fix
    assert layers_ok(report, "us") == ["kind nodes", "kubernetes API", "nodes", "cilium"]


def test_a_loadbalancer_ip_never_assigned_is_named_with_the_service_events(tmp_path, monkeypatch):
    with Stack(tmp_path, monkeypatch, faults={"us": {"no-lb-ip"}}) as s:
        report, _ = s.run()
    row = failure(report, "us")
    assert row.layer == "metallb"
    assert "Service kube-system/clustermesh-apiserver: no LoadBalancer IP yet (planned 172.30.255.239)" in row.evidence
    assert "AllocationFailed" in row.evidence
    assert "describe service clustermesh-apiserver" in row.fix


def test_a_peer_missing_from_one_clusters_mesh_config_is_named_at_the_clustermesh_layer(tmp_path, monkeypatch):
    with Stack(tmp_path, monkeypatch, faults={"eu": {"missing-peer"}}) as s:
        report, _ = s.run()
    row = failure(report, "eu")
    assert report.exit_code == 1 and row.layer == "clustermesh"
    assert "Secret kube-system/cilium-clustermesh (mesh config): missing us" in row.evidence
    assert "make up STACK=dev" in row.fix
    assert layers_ok(report, "us") == ALL_LAYERS


def test_an_agent_whose_status_is_not_ok_is_named_at_the_cilium_layer(tmp_path, monkeypatch):
    agents = {"cilium-us-b": [1, "error: kvstore: connection refused"]}
    with Stack(tmp_path, monkeypatch, agents=agents) as s:
        report, _ = s.run()
    row = failure(report, "us")
    assert row.layer == "cilium" and "agent cilium-us-b" in row.evidence and "connection refused" in row.evidence
    assert "cilium-dbg status --verbose" in row.fix


def test_a_hanging_kubectl_exec_is_cut_at_the_deadline_and_named(tmp_path, monkeypatch):
    with Stack(tmp_path, monkeypatch, agents={"hang": 60}) as s:
        report, took = s.run(timeout=4)
    assert took < 4 + diagnose.GRACE + 2
    assert report.exit_code == 1
    for c in ("us", "eu"):
        row = failure(report, c)
        assert row.layer == "cilium" and "did not finish within" in row.evidence, row


def test_the_kubeconfig_file_deleted_is_named_at_the_api_layer_of_every_cluster(tmp_path, monkeypatch):
    with Stack(tmp_path, monkeypatch) as s:
        s.kubeconfig.unlink()
        report, _ = s.run()
    assert report.exit_code == 1
    for c in ("us", "eu"):
        row = failure(report, c)
        assert row.layer == "kubernetes API" and "kubeconfig does not exist" in row.evidence
        assert "make kubeconfig STACK=dev" in row.fix
    assert not s.clusters["us"].paths and not s.clusters["eu"].paths


def test_an_unreachable_api_server_is_a_finding_within_the_timeout(tmp_path, monkeypatch):
    slow = FakeApiServer(lambda m, p, b: Reply(200, {"gitVersion": "v1.34.0"}, delay=30))
    with Stack(tmp_path, monkeypatch) as s, slow:
        s.write_kubeconfig({"us": f"https://127.0.0.1:{closed_port()}", "eu": slow.url})
        report, took = s.run(timeout=4)
    assert took < 4 + diagnose.GRACE + 2  # the deadline, not the 30 s the server takes
    assert report.exit_code == 1
    us, eu = failure(report, "us"), failure(report, "eu")
    assert us.layer == "kubernetes API" and "does not answer" in us.evidence and "ConnectionRefused" in us.evidence
    assert "docker logs --tail 50 km-dev-us-control-plane" in us.fix
    assert eu.layer == "kubernetes API" and "does not answer" in eu.evidence


def test_a_stack_never_brought_up_stops_at_the_docker_network(tmp_path, monkeypatch):
    with Stack(tmp_path, monkeypatch, up=False) as s:
        report, took = s.run()
    text = diagnose.render(report.rows, "dev")
    assert report.exit_code == 1 and took < 10
    net = next(r for r in report.rows if r.layer == "docker network")
    assert net.state == "FAIL" and "kindmesh-dev does not exist" in net.evidence and "make up STACK=dev" in net.fix
    assert [r.state for r in rows_of(report, "us")] == ["skip"], text
    assert not s.fake.calls("docker") or all(c["args"][:1] != ["inspect"] for c in s.fake.calls("docker"))
    assert not any(c["args"][:2] == ["export", "logs"] for c in s.fake.calls("kind"))
    assert report.archive_path is not None  # what it read (kind, docker) is kept all the same


def test_a_cluster_deleted_by_hand_is_named_at_kind_nodes_and_a_stopped_node_too(tmp_path, monkeypatch):
    with Stack(tmp_path, monkeypatch) as s:
        s.fake.update(clusters=["km-dev-us"], container_state={
            "km-dev-us-worker": {"Status": "exited", "Running": False, "ExitCode": 137}})
        report, _ = s.run()
    eu, us = failure(report, "eu"), failure(report, "us")
    assert eu.layer == "kind nodes" and "kind has no cluster km-dev-eu" in eu.evidence
    assert "make refresh STACK=dev" in eu.fix
    assert us.layer == "kind nodes" and "km-dev-us-worker is exited (exit code 137" in us.evidence
    assert us.fix.startswith("docker start km-dev-us-worker")


def test_docker_down_on_the_host_stops_the_kind_clusters_at_the_host(tmp_path, monkeypatch):
    def host(stack: str, root: Path) -> list[doctor.Finding]:
        return [doctor.Finding("docker", "FAIL", "Docker daemon not reachable", "sudo systemctl start docker")]

    with Stack(tmp_path, monkeypatch) as s:
        report = diagnose.diagnose("dev", root=s.root, timeout=20, host_check=host)
    assert report.exit_code == 1
    assert [(r.layer, r.state) for r in report.rows if r.cluster == "all"] == [("host: docker", "FAIL")]
    assert [r.state for r in rows_of(report, "us")] == ["skip"]


def test_the_cli_exit_codes_and_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(diagnose, "_doctor_check", healthy_host)
    with Stack(tmp_path, monkeypatch, faults={"us": {"metallb-down"}}) as s:
        monkeypatch.chdir(s.root)
        rc = diagnose.main(["--stack", "dev", "--timeout", "30"])
    out = capsys.readouterr().out
    assert rc == 1
    assert re.search(r"^CLUSTER\s+LAYER\s+STATE\s+EVIDENCE", out, re.M)
    assert re.search(r"^us\s+metallb\s+FAIL\s+Deployment metallb-system/metallb-controller", out, re.M)
    assert "fix: kubectl --context us -n metallb-system logs metallb-controller-5f6d" in out
    assert "1 problem(s): us at metallb" in out and "everything read (secrets redacted): " in out
    # no stack file, a bad name, bad usage: could not run
    assert diagnose.main(["--stack", "nosuch"]) == 2
    assert "no Pulumi.nosuch.yaml" in capsys.readouterr().out
    assert diagnose.main(["--stack", "../x"]) == 2
    assert diagnose.main(["--timeout", "0"]) == 2
    assert diagnose.main(["--bogus"]) == 2


def test_an_existing_cluster_stack_has_no_kind_layers_and_no_metallb_of_ours(tmp_path, monkeypatch):
    root = tmp_path / "project"
    root.mkdir()
    data = yaml.safe_load((ROOT / "Pulumi.remote.yaml").read_text())
    names = [c["name"] for c in data["config"]["kindmesh:clusters"]]
    for i, c in enumerate(data["config"]["kindmesh:clusters"]):  # the kubeconfigs as content: no ~/.kube here
        c["kubeconfig"] = yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "default",
            "clusters": [{"name": "c", "cluster": {"server": f"https://192.168.56.1{i + 1}:6443"}}],
            "contexts": [{"name": "default", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": f"token-{i}"}}]})
    (root / "Pulumi.remote.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setitem(PEERS, names[0], [names[1]])
    monkeypatch.setitem(PEERS, names[1], [names[0]])
    clusters = {n: FakeCluster(n, nodes=[f"{n}-server"]) for n in names}
    fake = FakeBin(tmp_path / "tools")
    kubectl = fake.dir / "kubectl"
    kubectl.write_text(KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)
    (fake.dir / "kubectl.json").write_text(json.dumps({"peers": PEERS}))
    fake.activate(monkeypatch)
    servers = {n: FakeApiServer(clusters[n].route) for n in names}
    with servers[names[0]], servers[names[1]]:
        path = root / ".kindmesh" / "remote" / "kubeconfig"
        path.parent.mkdir(parents=True)
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": names[0],
            "clusters": [{"name": n, "cluster": {"server": servers[n].url}} for n in names],
            "users": [{"name": n, "user": {"token": f"{n}-token-123456"}} for n in names],
            "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in names]}))
        report = diagnose.diagnose("remote", root=root, timeout=20, host_check=healthy_host)
    text = diagnose.render(report.rows, "remote")
    assert report.exit_code == 0, text
    for n in names:
        layers = layers_ok(report, n)
        assert layers[:5] == ["kubernetes API", "nodes", "cilium", "metallb", "clustermesh"], text
        metallb = next(r for r in rows_of(report, n) if r.layer == "metallb")
        assert metallb.evidence == "MetalLB is not installed here (mesh endpoint: nodePort)"
        assert not any("metallb" in p for p in clusters[n].paths)
    assert fake.calls() == []  # neither kind nor docker: these clusters live elsewhere
    assert not any(r.layer == "docker network" for r in report.rows)


# ----------------------------------------------------------------------------- redaction
def test_scrub_removes_private_keys_tokens_and_kubeconfig_credentials():
    text = (f"client-key-data: {b64(CA_KEY_PEM)}\n  token: abcdefgh12345678\n"
            f'{{"client-certificate-data": "{b64("x" * 40)}", "other": 1}}\n'
            f"Authorization: Bearer {US_TOKEN}\nkey:\n{CA_KEY_PEM}\nescaped: {json.dumps(CA_KEY_PEM)}\n"
            f"b64: {b64(CA_KEY_PEM)}\njwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlX3g\n")
    out = diagnose.scrub(text)
    for secret in (CA_KEY_BODY, b64(CA_KEY_PEM)[:40], "abcdefgh12345678", US_TOKEN, b64("x" * 40), "eyJhbGciOiJSUzI1NiJ9"):
        assert secret not in out
    assert '"other": 1' in out and "Authorization: Bearer <redacted>" in out
    # a key cut off at either end (a log's tail, a line limit) loses its lines all the same
    lines = CA_KEY_PEM.strip().splitlines()
    head, tail = "\n".join(lines[:-1]), "\n".join(lines[1:])
    for cut in (head, tail):
        out = diagnose.scrub(f"before\n{cut}\nafter\n")
        assert out.startswith("before\n") and out.endswith("after\n") and "PRIVATE KEY" not in out
        assert not any(line in out for line in lines[1:-1]), out


def test_redact_object_keeps_secret_names_and_drops_values():
    obj = {"kind": "SecretList", "items": [{"metadata": {"name": "s", "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"k":"djE="}}'}}, "data": {"k": "djE="}}]}
    out = diagnose.redact_object(obj)
    assert out["items"][0]["data"] == {"k": "<redacted> (4 characters)"}
    assert out["items"][0]["metadata"]["annotations"] == {}
    assert obj["items"][0]["data"] == {"k": "djE="}  # a copy
