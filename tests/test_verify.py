"""Verification: parsing real output formats, decisions, and a full run on a simulated mesh."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from kindmesh.cli import verify
from kindmesh.core.demo import verification_spec
from kindmesh.core.planner import load_plan
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


# `hubble observe -o jsonpb`: one GetFlowsResponse per line (observer.proto: flow, node_name, time).
def flows_of(cluster):
    return [
        {"flow": {"time": "2026-12-07T00:10:00.1Z", "verdict": "FORWARDED", "node_name": f"{cluster}/{node}",
                  "source": {"namespace": "kindmesh-demo", "pod_name": "client-5d8f"},
                  "destination": {"namespace": "kube-system", "pod_name": "coredns-7db6"},
                  "Type": "L3_L4", "traffic_direction": "EGRESS", "Summary": "UDP"},
         "node_name": f"{cluster}/{node}", "time": "2026-12-07T00:10:00.1Z"}
        for node in (f"{cluster}-control-plane", f"{cluster}-worker")
    ]


RELAY_REFUSED = ("failed to connect to '10.96.12.34:443': context deadline exceeded: connection error: "
                 "desc = \"transport: Error while dialing: dial tcp 10.96.12.34:443: connect: connection refused\"")


class FakeMesh:
    """Answers kubectl calls the way a live kindmesh stack would (or a broken one)."""

    def __init__(self, spec, *, not_ready=(), leaky_policy=False, sticky_remote=False, relay_refuses=0):
        self.spec = spec
        self.relay_refuses = relay_refuses  # hubble observe fails this many times first (relay starting)
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
        if args[:5] == ["-n", "kube-system", "get", "service", "hubble-relay"]:
            return verify.Result(0, "10.96.12.34")
        if "hubble" in args and "observe" in args:
            if self.relay_refuses:
                self.relay_refuses -= 1
                return verify.Result(1, "", RELAY_REFUSED)
            return verify.Result(0, "\n".join(json.dumps(f) for f in flows_of(cluster)) + "\n")
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
    """Fake time: every reading advances a little (a kubectl call), sleep() advances by its delay."""

    def __init__(self, tick: float = 1.0):
        self.now = 0.0
        self.tick = tick
        self.sleeps: list[float] = []

    def __call__(self):
        self.now += self.tick
        return self.now

    def sleep(self, seconds):
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def opts(clock=None, **kw):
    clock = clock or Clock()
    return verify.Options(clock=clock, sleep=clock.sleep, **kw)


def test_healthy_dev_mesh_passes_every_check_and_is_left_as_found():
    spec = spec_for("dev")
    mesh = FakeMesh(spec)
    checks = verify.run_checks(spec, mesh, opts())
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
    checks = verify.run_checks(spec, mesh, opts(mesh_timeout=5))
    bad = [c for c in checks if not c.ok]
    assert [(c.cluster, c.name) for c in bad] == [("us", "mesh: remote clusters")]
    assert "not ready eu" in bad[0].detail
    polls = [call for call in mesh.calls if call[0] == "us" and "get" in call[1]]
    assert 1 < len(polls) <= 6


def test_broken_failover_and_leaky_policy_are_reported():
    spec = spec_for("dev")
    mesh = FakeMesh(spec, leaky_policy=True, sticky_remote=True)
    checks = verify.run_checks(spec, mesh, opts(converge_rounds=2))
    failed = {(c.cluster, c.name) for c in checks if not c.ok}
    assert ("us", "affinity local: stays local") in failed
    assert ("us", "policy: intruder dropped") in failed
    assert ("eu", "policy: intruder dropped") in failed
    assert mesh.replicas["us"] == 1


def test_hub_tenants_expect_only_the_hub():
    spec = spec_for("hub")
    checks = verify.run_checks(spec, FakeMesh(spec), opts())
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
    fake_kubectl = tmp_path / "kubectl"
    fake_kubectl.write_text("#!/bin/sh\nexit 0\n")
    fake_kubectl.chmod(0o755)
    monkeypatch.setenv("KINDMESH_KUBECTL", str(fake_kubectl))
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


REFUSED = "The connection to the server 127.0.0.1:40001 was refused - did you specify the right host or port?"


def test_an_unreachable_cluster_is_probed_with_backoff_not_in_a_tight_loop():
    """Against an always-failing kubectl the mesh probe backs off under its one deadline."""
    spec = spec_for("dev")
    calls = []

    def failing(cluster, args, timeout):
        calls.append(args)
        return verify.Result(1, "", f"E1122 memcache.go:265] couldn't get current server API group list\n{REFUSED}\n")

    clock = Clock(tick=0.05)  # kubectl fails fast
    check = verify.check_mesh(failing, spec["clusters"][0], opts(clock, mesh_timeout=300))
    assert not check.ok
    assert REFUSED in check.detail  # kubectl's own words
    assert 295 <= clock.now <= 310  # the deadline bounds the whole wait
    assert len(calls) <= 30  # was ~one call per 50 ms: thousands over 300 s
    growing = clock.sleeps[:5]
    assert all(b > a for a, b in zip(growing, growing[1:], strict=False))  # exponential at first
    assert max(clock.sleeps) <= 20.0  # bounded interval
    assert len(set(clock.sleeps)) == len(clock.sleeps)  # jittered


def test_converge_backs_off_between_rounds_and_shows_kubectl_error():
    spec = spec_for("dev")
    clock = Clock(tick=0.01)

    def failing(cluster, args, timeout):
        return verify.Result(1, "", f"error: {REFUSED}")

    ok, detail = verify._converge(failing, spec["clusters"][0], "kindmesh-demo", ["us"],
                                  opts(clock, converge_rounds=4), all_required=True)
    assert not ok and REFUSED in detail and "kubectl exec deploy/client" in detail
    assert len(clock.sleeps) == 3


def _run_verify(tmp_path, *args, pulumi_body=None, kubectl=True, extra_env=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if pulumi_body is not None:
        (bin_dir / "pulumi").write_text("#!/bin/sh\n" + pulumi_body)
        (bin_dir / "pulumi").chmod(0o755)
    if kubectl:
        (bin_dir / "kubectl").write_text("#!/bin/sh\necho \"$@\" >&2; exit 1\n")
        (bin_dir / "kubectl").chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "kindmesh.cli.verify", *args],
                          cwd=Path(verify.__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("case,pulumi_body,expected", [
    ("no pulumi", None, "pulumi CLI is not on PATH"),
    ("no stack", "echo \"error: no stack named 'typo' found\" >&2; exit 255\n",
     "stack 'typo' does not exist"),
    ("no outputs", "echo '{}'\n", "has no verification or kubeconfigs output: run `make up STACK=typo` first"),
    ("outputs without verification", "echo '{\"kubeconfigs\": {\"us\": \"x\"}}'\n",
     "has no verification output: run `make up STACK=typo` first"),
    ("junk", "echo 'not json'\n", "is not JSON"),
])
def test_verify_fails_in_one_line_without_a_traceback(tmp_path, case, pulumi_body, expected):
    res = _run_verify(tmp_path, "--stack", "typo", pulumi_body=pulumi_body)
    assert res.returncode == 1, case
    assert "Traceback" not in res.stderr, res.stderr
    assert expected in res.stderr, (case, res.stderr)


def test_verify_without_kubectl_says_what_to_install(tmp_path):
    outputs = {"verification": spec_for("ci"), "kubeconfigs": {"alpha": "x", "beta": "y"}}
    res = _run_verify(tmp_path, "--stack", "ci", "--outputs-env", "OUTS", pulumi_body=None, kubectl=False,
                      extra_env={"OUTS": json.dumps(outputs)})
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "kubectl not found: install kubectl" in res.stderr


def test_parse_flows_counts_flows_and_nodes_and_skips_the_rest():
    lines = [json.dumps(f) for f in flows_of("us")]
    lines += [json.dumps({"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": 3}}), "", "garbage"]
    assert verify.parse_flows("\n".join(lines)) == (2, {"us/us-control-plane", "us/us-worker"})
    assert verify.parse_flows("") == (0, set())


def test_observe_reads_through_the_relay_over_tls_checked_against_the_agents_ca():
    relay = spec_for("dev")["clusters"][0]["relay"]
    assert relay == {"port": 443, "tls": True, "mtls": False, "serverName": "verify.hubble-relay.cilium.io"}
    argv = verify.observe_argv(relay, "10.96.12.34", 20)
    assert argv[:4] == ["hubble", "observe", "--server", "10.96.12.34:443"]
    assert argv[argv.index("--tls-ca-cert-files") + 1] == "/var/lib/cilium/tls/hubble/client-ca.crt"
    assert argv[argv.index("--tls-server-name") + 1] == "verify.hubble-relay.cilium.io"
    assert "--tls" in argv and "--tls-allow-insecure" not in argv and "--tls-client-cert-file" not in argv
    mtls = verify.observe_argv(dict(relay, mtls=True), "fd00::12", 5)
    assert mtls[3] == "[fd00::12]:443"
    assert mtls[mtls.index("--tls-client-cert-file") + 1] == "/var/lib/cilium/tls/hubble/server.crt"
    plain = verify.observe_argv({"port": 80, "tls": False, "mtls": False, "serverName": None}, "10.0.0.9", 5)
    assert "--tls" not in plain and plain[3] == "10.0.0.9:80"


def test_flows_are_read_in_the_agent_through_the_relay_service():
    spec = spec_for("dev")
    mesh = FakeMesh(spec)
    checks = verify.run_checks(spec, mesh, opts())
    flows = [c for c in checks if c.name.startswith("hubble: flows")]
    assert [(c.cluster, c.name, c.ok) for c in flows] == [("us", "hubble: flows via relay (TLS)", True),
                                                          ("eu", "hubble: flows via relay (TLS)", True)]
    assert "2 flows from 2 node(s) via 10.96.12.34:443" in flows[0].detail and "mesh CA" in flows[0].detail
    execs = [args for cluster, args in mesh.calls if "observe" in args]
    assert len(execs) == 2  # one per cluster
    assert all(args[:7] == ["-n", "kube-system", "exec", "ds/cilium", "-c", "cilium-agent", "--"] for args in execs)


def test_a_relay_still_starting_is_waited_for_and_one_that_never_answers_fails_with_hubbles_words():
    spec = spec_for("dev")
    clock = Clock()
    check = verify.check_flows(FakeMesh(spec, relay_refuses=3), spec["clusters"][0], opts(clock))
    assert check.ok and len(clock.sleeps) == 3
    clock = Clock()
    check = verify.check_flows(FakeMesh(spec, relay_refuses=10**6), spec["clusters"][0], opts(clock, flows_timeout=60))
    assert not check.ok and "connection refused" in check.detail and "10.96.12.34:443" in check.detail
    assert 55 <= clock.now <= 70 and max(clock.sleeps) <= 20.0


def test_no_relay_no_flows_check():
    spec = spec_for("dev")
    cluster = dict(spec["clusters"][0], relay=None)
    assert verify.check_flows(FakeMesh(spec), cluster, opts()) is None
