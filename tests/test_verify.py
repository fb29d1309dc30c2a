"""Verification: parsing real output formats, decisions, and a full run on a simulated mesh."""

from __future__ import annotations

import json
import re
import stat
from collections import Counter
from pathlib import Path

import pytest

from stacks import verify
from stacks.demo import verification_spec
from stacks.planner import load_plan
from tests.helpers import stack_raw

# Shape of `cilium-dbg status -o json` (StatusResponse in Cilium's api/v1/openapi.yaml:
# "cluster-mesh" -> ClusterMeshStatus{clusters: [RemoteCluster{name, ready, status, ...}]}).
AGENT_STATUS = {
    "kvstore": {"state": "Disabled"},
    "kubernetes": {"state": "Ok", "msg": "1.34 (v1.34.0) [linux/amd64]"},
    "cluster-mesh": {
        "clusters": [
            {"name": "eu", "ready": True, "status": "ready", "num-nodes": 2, "num-shared-services": 4,
             "num-identities": 9, "num-failures": 0},
            {"name": "ap", "ready": False, "status": "Waiting for initial connection to be established",
             "num-nodes": 0, "num-failures": 3, "last-failure": "2026-11-22T11:00:00.000Z"},
        ],
        "num-global-services": 2,
    },
}


def test_parse_mesh_status():
    assert verify.parse_mesh_status(json.dumps(AGENT_STATUS)) == {"eu": True, "ap": False}
    assert verify.parse_mesh_status(json.dumps({"kubernetes": {}})) == {}
    with pytest.raises(ValueError):
        verify.parse_mesh_status("Error: cannot reach agent")


def test_parse_replies():
    out = "kindmesh-demo cluster=us\n\nkindmesh-demo cluster=eu\nCURL_FAILED rc=28\n\nkindmesh-demo cluster=us\n"
    counts, failed = verify.parse_replies(out)
    assert counts == Counter({"us": 2, "eu": 1}) and failed == 1
    assert verify.parse_replies("<html>502 Bad Gateway</html>\n")[1] == 1


def test_judges():
    ok, _ = verify.judge_mesh(["eu"], {"cilium-a": {"eu": True}, "cilium-b": {"eu": True}})
    assert ok
    ok, detail = verify.judge_mesh(["eu", "ap"], {"cilium-a": {"eu": True, "ap": False}, "cilium-b": {"eu": True}})
    assert not ok and "not ready ap" in detail and "cilium-b: missing ap" in detail
    ok, detail = verify.judge_mesh(["shared"], {"cilium-a": {"shared": True, "tenant-b": True}})
    assert not ok and "unexpected tenant-b" in detail
    assert not verify.judge_mesh(["eu"], {})[0]
    assert verify.judge_spread(Counter(us=5, eu=5), 0, ["eu", "us"], all_required=True)[0]
    assert not verify.judge_spread(Counter(us=10), 0, ["eu", "us"], all_required=True)[0]
    assert not verify.judge_spread(Counter(us=9), 1, ["us"], all_required=True)[0]
    assert not verify.judge_spread(Counter(us=9, eu=1), 0, ["us"], all_required=True)[0]
    assert verify.judge_spread(Counter(eu=10), 0, ["eu", "ap"], all_required=False)[0]


class FakeMesh:
    """Answers kubectl calls the way a live kindmesh stack would (or a broken one)."""

    def __init__(self, spec, *, not_ready=(), leaky_policy=False, sticky_remote=False):
        self.spec = spec
        self.by_name = {c["name"]: c for c in spec["clusters"]}
        self.replicas = {c["name"]: 1 for c in spec["clusters"]}
        self.not_ready = set(not_ready)
        self.leaky_policy = leaky_policy
        self.sticky_remote = sticky_remote
        self.calls = []
        self.rr = 0

    def _serve(self, backends, n):
        lines = []
        for _ in range(n):
            if not backends:
                lines.append("CURL_FAILED rc=7")
            else:
                lines.append(f"kindmesh-demo cluster={backends[self.rr % len(backends)]}")
                self.rr += 1
            lines.append("")
        return "\n".join(lines)

    def __call__(self, cluster, args, timeout):
        self.calls.append((cluster, args))
        c = self.by_name[cluster]
        if args[:4] == ["-n", "kube-system", "get", "pods"]:
            return verify.Result(0, f"cilium-{cluster}-a cilium-{cluster}-b")
        if "cilium-dbg" in args:
            status = {"cluster-mesh": {"clusters": [
                {"name": p, "ready": (cluster, p) not in self.not_ready, "status": "ready"} for p in c["peers"]]}}
            return verify.Result(0, json.dumps(status))
        if "scale" in args:
            self.replicas[cluster] = int(args[-1].split("=")[1])
            return verify.Result(0, "deployment.apps/echo scaled")
        if "wait" in args or "rollout" in args:
            return verify.Result(0, "")
        if "exec" in args and args[3].startswith("deploy/"):
            source = args[3].split("/")[1]
            script = args[-1]
            n = int(re.search(r"-lt (\d+)", script).group(1))
            service = re.search(r"http://([a-z-]+)\.", script).group(1)
            peers = [p for p in c["peers"]]
            if source == "intruder" and not self.leaky_policy:
                return verify.Result(0, "\n".join(["CURL_FAILED rc=28"] * n))
            if service == "echo-global":
                backends = [cluster, *peers]
            else:
                local = [cluster] if self.replicas[cluster] else []
                if c["affinity"] == "local" and not self.sticky_remote:
                    backends = local or c["failover"]
                elif c["affinity"] == "remote":
                    backends = c["failover"] or local
                else:
                    backends = local + c["failover"]
            return verify.Result(0, self._serve(sorted(backends), n))
        return verify.Result(1, "", f"unexpected call {args}")


def spec_for(stack, **demo):
    raw = stack_raw(stack)
    if demo:
        raw = dict(raw, demo=dict(raw.get("demo") or {}, **demo))
    return verification_spec(load_plan(raw, stack=stack))


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


def test_healthy_dev_mesh_passes_every_check_and_is_left_as_found():
    spec = spec_for("dev")
    mesh = FakeMesh(spec)
    checks = verify.run_checks(spec, mesh, verify.Options(clock=Clock()))
    table = verify.render(checks)
    assert all(c.ok for c in checks), table
    names = {(c.cluster, c.name) for c in checks}
    assert ("us", "affinity local: fails over when local is 0") in names
    assert ("us", "affinity local: back to local when restored") in names
    assert ("eu", "policy: intruder dropped") in names
    assert mesh.replicas == {"us": 1, "eu": 1}
    assert table.splitlines()[-1] == f"{len(checks)} passed, 0 failed"
    glob = next(c for c in checks if c.cluster == "us" and c.name.startswith("global"))
    assert "eu=" in glob.detail and "us=" in glob.detail


def test_mesh_not_ready_fails_after_the_bound_with_detail():
    spec = spec_for("dev")
    mesh = FakeMesh(spec, not_ready={("us", "eu")})
    checks = verify.run_checks(spec, mesh, verify.Options(clock=Clock(), mesh_timeout=5))
    bad = [c for c in checks if not c.ok]
    assert [(c.cluster, c.name) for c in bad] == [("us", "mesh: remote clusters")]
    assert "not ready eu" in bad[0].detail
    polls = [call for call in mesh.calls if call[0] == "us" and "get" in call[1]]
    assert 1 < len(polls) <= 6


def test_broken_failover_and_leaky_policy_are_reported():
    spec = spec_for("dev")
    mesh = FakeMesh(spec, leaky_policy=True, sticky_remote=True)
    checks = verify.run_checks(spec, mesh, verify.Options(clock=Clock(), converge_rounds=2))
    failed = {(c.cluster, c.name) for c in checks if not c.ok}
    assert ("us", "affinity local: stays local") in failed
    assert ("us", "policy: intruder dropped") in failed
    assert ("eu", "policy: intruder dropped") in failed
    assert mesh.replicas["us"] == 1


def test_hub_tenants_expect_only_the_hub():
    spec = spec_for("hub")
    checks = verify.run_checks(spec, FakeMesh(spec), verify.Options(clock=Clock()))
    assert all(c.ok for c in checks), verify.render(checks)
    tenant = next(c for c in checks if c.cluster == "tenant-a" and c.name.startswith("global"))
    assert "tenant-b" not in tenant.detail and "shared=" in tenant.detail
    remote = next(c for c in checks if c.cluster == "tenant-a" and c.name.startswith("affinity remote"))
    assert "shared=" in remote.detail and "tenant-a=" not in remote.detail


def test_kubectl_wrapper_uses_private_kubeconfig_files(tmp_path, monkeypatch):
    fake = tmp_path / "kubectl"
    fake.write_text("#!/bin/sh\necho \"$@\"\n")
    fake.chmod(0o755)
    kubectl = verify.Kubectl({"us": "apiVersion: v1\nkind: Config\n"}, binary=str(fake))
    try:
        res = kubectl("us", ["get", "pods"], 10)
        path = Path(kubectl.paths["us"])
        assert res.rc == 0 and res.out.split()[:2] == ["--kubeconfig", str(path)]
        assert "get pods" in res.out
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        kubectl.close()
    assert not path.exists()


def test_main_reads_outputs_and_exits_nonzero_on_failure(tmp_path, monkeypatch, capsys):
    spec = spec_for("ci")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"verification": spec, "kubeconfigs": {"alpha": "x", "beta": "y"}}))
    monkeypatch.setattr(verify, "Kubectl", lambda kubeconfigs: _Closing(FakeMesh(spec, leaky_policy=True)))
    assert verify.main(["--outputs", str(outputs), "--requests", "10"]) == 1
    assert "FAIL" in capsys.readouterr().out
    monkeypatch.setattr(verify, "Kubectl", lambda kubeconfigs: _Closing(FakeMesh(spec)))
    assert verify.main(["--outputs", str(outputs), "--requests", "10"]) == 0


class _Closing:
    def __init__(self, mesh):
        self.mesh = mesh

    def __call__(self, *a):
        return self.mesh(*a)

    def close(self):
        pass
