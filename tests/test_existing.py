"""Existing clusters (issue 13) under mocks: graph, secrets, values against the real chart, peers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from kindmesh.core.config import ConfigError
from kindmesh.core.planner import load_plan
from kindmesh.core.render import cilium_values
from kindmesh.core.versions import CILIUM, DEFAULT_CILIUM
from tests.helpers import EXISTING_STACKS, stack_raw
from tests.mocks import DYNAMIC, evaluate
from tests.upstream import schema_errors, unknown_key_paths

RELEASE = "kubernetes:helm.sh/v3:Release"
CHARTS = tuple(f"cilium-{v}" for line in CILIUM.values() for v in line.validated)
CHART = f"cilium-{DEFAULT_CILIUM}"  # what the stacks render by default


def kubeconfig(server: str = "https://192.0.2.1:6443", context: str = "default", token: str = "s3cr3t") -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": "ca.crt"}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}},
                     {"name": "elsewhere", "context": {"cluster": "c", "user": "other"}}],
        "users": [{"name": "u", "user": {"token": token}}, {"name": "other", "user": {"token": "not-mine"}}],
    })


@pytest.fixture
def remote_raw(tmp_path):
    """Pulumi.remote.yaml with its kubeconfigs on this machine: one a path, one the content."""
    raw = copy.deepcopy(stack_raw("remote"))
    path = tmp_path / "k3s-a.yaml"
    path.write_text(kubeconfig(token="token-a"))
    raw["clusters"][0]["kubeconfig"] = str(path)
    raw["clusters"][1]["kubeconfig"] = kubeconfig(token="token-b")
    return raw


@pytest.fixture
def remote(remote_raw):
    return evaluate(remote_raw, "remote")


def test_the_example_stack_is_the_existing_one():
    assert EXISTING_STACKS == ["remote"]
    raw = stack_raw("remote")
    assert [c["id"] for c in raw["clusters"]] == [11, 12]


def test_existing_only_stack_registers_no_kind_docker_or_host_images(remote):
    types = {r.type for r in remote.resources}
    assert not [t for t in types if t.startswith(("docker:", "pulumi:providers:docker"))]
    assert not [r for r in remote.resources if r.name.endswith("-kind") or r.name == "host-images"]
    assert not [r for r in remote.resources if r.type.startswith("kubernetes:metallb")]  # NodePort: no MetalLB
    assert "network" not in remote.stack_outputs
    for c in remote.plan.clusters:
        assert remote.named(f"{c.name}-cilium").type == RELEASE


def test_providers_come_from_the_kubeconfig_as_secret_and_never_drop_state(remote):
    for c in remote.plan.clusters:
        p = remote.named(f"{c.name}-k8s")
        assert p.type == "pulumi:providers:kubernetes"
        assert "kubeconfig" in p.secret_inputs
        assert p.inputs["deleteUnreachable"] in (False, "false")
        assert p.inputs["context"] == "default"
        kc = yaml.safe_load(p.inputs["kubeconfig"])
        # only the chosen context travels: the other user's token is not in the stack
        assert [x["name"] for x in kc["contexts"]] == ["default"] and kc["current-context"] == "default"
        assert "not-mine" not in p.inputs["kubeconfig"]
        assert p.inputs["clusterIdentifier"].startswith(f"kindmesh-existing/{c.name}/")


def test_relative_kubeconfig_files_are_resolved_next_to_the_kubeconfig(remote, remote_raw):
    kc = yaml.safe_load(remote.named("k3s-a-k8s").inputs["kubeconfig"])
    base = remote_raw["clusters"][0]["kubeconfig"].rsplit("/", 1)[0]
    assert kc["clusters"][0]["cluster"]["certificate-authority"] == f"{base}/ca.crt"


def test_nothing_in_an_existing_cluster_is_deleted_with_anything(remote):
    checked = 0
    for r in remote.resources:
        if r.custom and (r.type.startswith("kubernetes:") or r.type in (DYNAMIC, "command:local:Command")):
            assert r.deleted_with == "", r.name
            checked += 1
        if r.custom and r.type.startswith("kubernetes:") and not r.type.startswith("pulumi:providers"):
            assert r.provider and "::default" not in r.provider
    assert checked >= 6


def test_gates_get_the_kubeconfig_as_secret(remote):
    from kindmesh.components.cluster_target import GATE_KUBECONFIG_ENV

    for suffix in ("cilium-rollout",):
        gate = remote.named(f"k3s-a-{suffix}")
        assert gate.type == "command:local:Command"
        assert gate.secret_paths == {f"environment.{GATE_KUBECONFIG_ENV}"}
        assert "token-a" in gate.inputs["environment"][GATE_KUBECONFIG_ENV]


def test_kubeconfigs_are_secret_stack_outputs_with_the_chosen_context(remote):
    assert "kubeconfigs" in remote.secret_stack_outputs
    out = remote.stack_outputs["kubeconfigs"]
    assert set(out) == {"k3s-a", "k3s-b"}
    assert yaml.safe_load(out["k3s-b"])["current-context"] == "default"
    # nothing else carries a token
    plain = json.dumps({k: v for k, v in remote.stack_outputs.items() if k != "kubeconfigs"})
    assert "token-a" not in plain and "token-b" not in plain


@pytest.mark.parametrize("chart", CHARTS)
def test_values_validate_against_the_chart(remote, chart):
    for c in remote.plan.clusters:
        values = remote.named(f"{c.name}-cilium").inputs["values"]
        assert schema_errors(values, chart) == []
        assert unknown_key_paths(values, chart) == []


def test_values_carry_the_existing_cluster(remote):
    v = remote.named("k3s-a-cilium").inputs["values"]
    assert (v["k8sServiceHost"], v["k8sServicePort"]) == ("192.168.56.11", 6443)
    assert v["clustermesh"]["apiserver"]["service"] == {"type": "NodePort", "nodePort": 32379}
    assert v["clustermesh"]["config"]["clusters"] == [{"name": "k3s-b", "port": 32380, "ips": ["192.168.56.12"]}]
    back = remote.named("k3s-b-cilium").inputs["values"]["clustermesh"]["config"]["clusters"]
    assert back == [{"name": "k3s-a", "port": 32379, "ips": ["192.168.56.11"]}]
    # auto ipam unresolved (no preflight under mocks): cluster-pool with the given podSubnet
    assert v["ipam"] == {"mode": "cluster-pool", "operator": {"clusterPoolIPv4PodCIDRList": ["10.11.0.0/16"],
                                                              "clusterPoolIPv4MaskSize": 24}}
    assert v["hubble"]["metrics"] == {"enabled": ["dns", "drop", "tcp", "flow", "icmp", "httpV2"]}
    assert "useDigest" not in v["image"]  # nothing is pre-loaded into an existing cluster
    assert v["commonLabels"] == {"kindmesh.io/stack": remote.plan.stack_label}
    demo = remote.named("k3s-a-demo-echo").inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert "@sha256:" in demo


def test_outputs_and_verification_describe_existing_clusters(remote):
    row = remote.stack_outputs["clusters"][0]
    assert row["source"] == "existing" and row["apiServer"] == "192.168.56.11:6443"
    assert row["meshAddresses"] == ["192.168.56.11:32379"] and row["kindName"] is None and row["pool"] is None
    assert "preflight" in row["ipamReason"]
    assert remote.stack_outputs["meshEndpoints"]["k3s-b"] == "192.168.56.12:32380"
    spec = remote.stack_outputs["verification"]
    assert [c["source"] for c in spec["clusters"]] == ["existing", "existing"]
    assert spec["clusters"][0]["context"] == "default" and spec["clusters"][0]["peers"] == ["k3s-b"]
    assert remote.stack_outputs["contexts"] == {"k3s-a": "default", "k3s-b": "default"}


def test_same_config_twice_gives_identical_inputs(remote_raw):
    def inputs(rec):
        return {(r.type, r.name): r.inputs for r in rec.resources}

    assert inputs(evaluate(remote_raw, "remote")) == inputs(evaluate(remote_raw, "remote"))


# --------------------------------------------------------------------------- mixed
@pytest.fixture
def mixed_raw(remote_raw):
    raw = copy.deepcopy(stack_raw("dev"))
    lb = dict(remote_raw["clusters"][1], name="edge", id=7,
              meshEndpoint={"loadBalancer": {"pool": "192.168.60.240-192.168.60.250"}})
    ext = dict(remote_raw["clusters"][0], id=11)
    raw["clusters"] = raw["clusters"] + [ext, lb]
    raw["mesh"] = {"topology": "full", "routable": True}
    return raw


def test_mixed_stack_needs_routable(mixed_raw):
    raw = dict(mixed_raw, mesh={"topology": "full"})
    with pytest.raises(ConfigError) as err:
        load_plan(raw, stack="dev")
    assert "kindmesh:mesh.routable" in str(err.value) and "docker bridge" in str(err.value)


def test_mixed_stack_graph(mixed_raw):
    rec = evaluate(mixed_raw, "dev")
    assert len(rec.of_type("docker:index/network:Network")) == 1
    kinds = {r.name for r in rec.resources if r.name.endswith("-kind")}
    assert kinds == {"us-kind", "eu-kind"}
    for name in ("us", "eu"):
        assert rec.named(f"{name}-cilium").deleted_with == rec.named(f"{name}-kind").urn
        assert rec.named(f"{name}-k8s").inputs["deleteUnreachable"] in (True, "true")
    for name in ("k3s-a", "edge"):
        assert rec.named(f"{name}-cilium").deleted_with == ""
        assert rec.named(f"{name}-k8s").inputs["deleteUnreachable"] in (False, "false")
    # MetalLB only where the pool is ours: kind clusters and the pool endpoint
    assert rec.named("edge-pool").inputs["spec"]["addresses"] == ["192.168.60.240-192.168.60.250"]
    assert not [r for r in rec.resources if r.name == "k3s-a-pool"]
    # peers: kind's LB IP on 2379, NodePort on node IPs, the existing pool's first IP
    us = rec.named("us-cilium").inputs["values"]["clustermesh"]["config"]["clusters"]
    assert {"name": "k3s-a", "port": 32379, "ips": ["192.168.56.11"]} in us
    assert {"name": "edge", "port": 2379, "ips": ["192.168.60.240"]} in us
    k3s = rec.named("k3s-a-cilium").inputs["values"]["clustermesh"]["config"]["clusters"]
    assert {"name": "us", "port": 2379, "ips": [rec.plan.cluster("us").mesh_ip]} in k3s
    edge = rec.named("edge-cilium").inputs["values"]
    assert edge["clustermesh"]["apiserver"]["service"] == {"type": "LoadBalancer", "loadBalancerIP": "192.168.60.240"}
    assert edge["hubble"]["ui"]["service"]["annotations"] == {"metallb.io/loadBalancerIPs": "192.168.60.241"}
    for name in ("us", "k3s-a", "edge"):
        values = rec.named(f"{name}-cilium").inputs["values"]
        assert schema_errors(values, CHART) == []
        assert unknown_key_paths(values, CHART) == []
    # kind clusters are unchanged by the existing ones: same values but the peer list
    alone = evaluate(stack_raw("dev"), "dev").named("us-cilium").inputs["values"]
    mine = rec.named("us-cilium").inputs["values"]
    strip = lambda v: dict(v, clustermesh=dict(v["clustermesh"], config=None))  # noqa: E731
    assert strip(alone) == strip(mine)


def test_lb_ip_endpoint_without_metallb(remote_raw):
    raw = copy.deepcopy(remote_raw)
    raw["clusters"][1]["meshEndpoint"] = {"loadBalancer": {"ip": "192.168.57.10"}}
    rec = evaluate(raw, "remote")
    v = rec.named("k3s-b-cilium").inputs["values"]
    assert v["clustermesh"]["apiserver"]["service"] == {"type": "LoadBalancer", "loadBalancerIP": "192.168.57.10"}
    assert {"name": "k3s-b", "port": 2379, "ips": ["192.168.57.10"]} in \
        rec.named("k3s-a-cilium").inputs["values"]["clustermesh"]["config"]["clusters"]
    assert not [r for r in rec.resources if "metallb" in r.name]
    assert schema_errors(v, CHART) == []


# --------------------------------------------------------------------------- extra values
def test_extra_values_merge_and_validate(remote_raw):
    raw = copy.deepcopy(remote_raw)
    raw["cilium"] = dict(raw["cilium"], values={"operator": {"replicas": 2}, "bpf": {"masquerade": True}})
    raw["clusters"][0]["cilium"] = {"values": {"operator": {"replicas": 3}, "devices": ["eth1"]}}
    plan = load_plan(raw, stack="remote")
    a = cilium_values(plan, plan.cluster("k3s-a"), plan.peer_entries("k3s-a"))
    b = cilium_values(plan, plan.cluster("k3s-b"), plan.peer_entries("k3s-b"))
    assert a["operator"]["replicas"] == 3 and b["operator"]["replicas"] == 2
    assert a["operator"]["image"] == {"pullPolicy": "IfNotPresent"}  # merged, not replaced
    assert a["devices"] == ["eth1"] and "devices" not in b and b["bpf"] == {"masquerade": True}
    for v in (a, b):
        assert schema_errors(v, CHART) == []


def test_extra_values_are_checked_by_the_chart_schema_in_tests(remote_raw):
    raw = dict(copy.deepcopy(remote_raw), cilium={"values": {"operator": {"replicas": "two"}}})
    plan = load_plan(raw, stack="remote")
    assert schema_errors(cilium_values(plan, plan.clusters[0], []), CHART)


# --------------------------------------------------------------------------- errors
def errors(raw):
    with pytest.raises(ConfigError) as err:
        load_plan(raw, stack="remote")
    return str(err.value)


def with_cluster(remote_raw, index, **changes):
    raw = copy.deepcopy(remote_raw)
    for k, v in changes.items():
        if v is None:
            raw["clusters"][index].pop(k, None)
        else:
            raw["clusters"][index][k] = v
    return raw


@pytest.mark.parametrize("changes,key,fragment", [
    ({"podSubnet": None}, "kindmesh:clusters[0].podSubnet", "required for source: existing"),
    ({"serviceSubnet": None}, "kindmesh:clusters[0].serviceSubnet", "required for source: existing"),
    ({"meshEndpoint": None}, "kindmesh:clusters[0].meshEndpoint", "required for source: existing"),
    ({"kubeconfig": None}, "kindmesh:clusters[0].kubeconfig", "required for source: existing"),
    ({"kubeconfig": "/nonexistent/kindmesh/k.yaml"}, "kindmesh:clusters[0].kubeconfig", "no such file"),
    ({"kubeconfig": "apiVersion: v1\nclusters: [\n"}, "kindmesh:clusters[0].kubeconfig", "not valid YAML"),
    ({"context": "nope"}, "kindmesh:clusters[0].context", "no context 'nope'"),
    ({"apiServer": "192.168.56.11"}, "kindmesh:clusters[0].apiServer", "host:port"),
    ({"workers": 2}, "kindmesh:clusters[0].workers", "only for kind clusters"),
    ({"ipam": "multi-pool"}, "kindmesh:clusters[0].ipam", "must be one of"),
    ({"meshEndpoint": {"nodePort": 32379}}, "kindmesh:clusters[0].meshEndpoint.nodeIPs", "required with nodePort"),
    ({"meshEndpoint": {"nodePort": 8080, "nodeIPs": ["192.168.56.11"]}},
     "kindmesh:clusters[0].meshEndpoint.nodePort", "30000-32767"),
    ({"meshEndpoint": {"nodePort": 32379, "nodeIPs": ["192.168.56.12"]}},
     "kindmesh:clusters[1].meshEndpoint.nodePort", "also k3s-a's mesh NodePort"),
    ({"meshEndpoint": {"nodePort": 32379, "nodeIPs": ["10.12.0.5"]}},
     "kindmesh:clusters[0].meshEndpoint.nodeIPs[0]", "lies in k3s-b pod CIDR"),
    ({"meshEndpoint": {"nodePort": 32379, "nodeIPs": ["192.168.56.11"], "loadBalancer": {"ip": "192.168.57.1"}}},
     "kindmesh:clusters[0].meshEndpoint", "exactly one of nodePort"),
    ({"meshEndpoint": {"loadBalancer": {"pool": "10.112.0.10-10.112.0.20"}}},
     "kindmesh:clusters[0].meshEndpoint.loadBalancer.pool", "lies in k3s-b service CIDR"),
    ({"meshEndpoint": {"loadBalancer": {"pool": "192.168.57.20-192.168.57.10"}}},
     "kindmesh:clusters[0].meshEndpoint.loadBalancer.pool", "starts after it ends"),
    ({"meshEndpoint": {"loadBalancer": {}}}, "kindmesh:clusters[0].meshEndpoint.loadBalancer", "exactly one of pool"),
    ({"cilium": {"values": {"cluster": {"id": 3}}}}, "kindmesh:clusters[0].cilium.values.cluster.id",
     "cannot be overridden"),
    ({"cilium": {"values": {"clustermesh": {"config": {"enabled": False}}}}},
     "kindmesh:clusters[0].cilium.values.clustermesh.config", "cannot be overridden"),
    ({"cilium": {"values": {"tls": "x"}}}, "kindmesh:clusters[0].cilium.values.tls", "cannot be overridden"),
    ({"cilium": {"values": {"k8sServiceHost": "x"}}}, "kindmesh:clusters[0].cilium.values.k8sServiceHost",
     "apiServer instead"),
    ({"cilium": {"values": {"clustermesh": {"apiserver": {"service": {"type": "NodePort"}}}}}},
     "kindmesh:clusters[0].cilium.values.clustermesh.apiserver.service", "meshEndpoint instead"),
    ({"cilium": {"values": ["a"]}}, "kindmesh:clusters[0].cilium.values", "must be a mapping"),
])
def test_each_existing_cluster_error_names_its_key(remote_raw, changes, key, fragment):
    index = 1 if key.startswith("kindmesh:clusters[1]") else 0
    text = errors(with_cluster(remote_raw, index, **changes))
    line = next((x for x in text.splitlines() if f"- {key}:" in x), None)
    assert line is not None, text
    assert fragment in line, line
    assert "s3cr3t" not in text and "token-" not in text  # never echo a kubeconfig


@pytest.mark.parametrize("changes,key,fragment", [
    ({"meshEndpoint": {"nodePort": 32379, "nodeIPs": ["192.168.56.12"]}},
     "kindmesh:clusters[1].meshEndpoint.nodeIPs[0]", "overlaps k3s-a's node IP 192.168.56.12"),
    ({"meshEndpoint": {"loadBalancer": {"ip": "192.168.56.12"}}},
     "kindmesh:clusters[1].meshEndpoint.nodeIPs[0]", "overlaps k3s-a's LoadBalancer IP"),
    # CIDR overlaps are reported once, on the range later in address order, naming the other key
    ({"podSubnet": "10.12.0.0/17"}, "kindmesh:clusters[0].podSubnet", "kindmesh:clusters[1].podSubnet"),
])
def test_clashes_with_another_cluster_are_reported_on_the_later_one(remote_raw, changes, key, fragment):
    text = errors(with_cluster(remote_raw, 0, **changes))
    line = next((x for x in text.splitlines() if f"- {key}:" in x), None)
    assert line is not None and fragment in line, text


def test_loopback_server_needs_an_api_server(remote_raw, tmp_path):
    path = tmp_path / "k3s.yaml"
    path.write_text(kubeconfig(server="https://127.0.0.1:6443"))
    text = errors(with_cluster(remote_raw, 0, kubeconfig=str(path), apiServer=None))
    assert "kindmesh:clusters[0].apiServer: required here" in text and "127.0.0.1" in text
    # with the kubeconfig's server reachable, apiServer is derived
    path.write_text(kubeconfig(server="https://k3s-a.example.test:6443"))
    plan = load_plan(with_cluster(remote_raw, 0, kubeconfig=str(path), apiServer=None), stack="remote")
    assert (plan.clusters[0].existing.api_host, plan.clusters[0].existing.api_port) == ("k3s-a.example.test", 6443)


def test_unreadable_kubeconfig(remote_raw):
    """As the user would run it: not root (privileges dropped in a forked child when root)."""
    import os
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="kindmesh-perm-"))
    path = shared / "locked.yaml"
    try:
        shared.chmod(0o755)
        path.write_text(kubeconfig())
        path.chmod(0o000)
        raw = with_cluster(remote_raw, 0, kubeconfig=str(path))
        raw["clusters"][1]["kubeconfig"] = kubeconfig()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: drop to nobody, plan, report, exit without running pytest's teardown
            try:
                os.close(read_end)
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                try:
                    load_plan(raw, stack="remote")
                    out = "NO ERROR"
                except ConfigError as err:
                    out = str(err)
                os.write(write_end, out.encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            text = pipe.read()
        os.waitpid(pid, 0)
        assert "kindmesh:clusters[0].kubeconfig: cannot read" in text, text
        assert "Permission denied" in text
    finally:
        path.chmod(0o600)
        path.unlink()
        shared.rmdir()


def test_kind_only_keys_and_existing_only_keys(remote_raw):
    raw = copy.deepcopy(remote_raw)
    raw["clusters"].append({"name": "k", "id": 3, "apiServer": "192.0.2.1:6443", "meshEndpoint": {}})
    text = errors(raw)
    assert "kindmesh:clusters[2].apiServer: only used with source: existing" in text
    assert "kindmesh:clusters[2].meshEndpoint: only used with source: existing" in text


@pytest.mark.parametrize("cilium,key,fragment", [
    ({"hubbleMetrics": ["dns", "bogus"]}, "kindmesh:cilium.hubbleMetrics[1]", "not a Hubble metric"),
    ({"hubbleMetrics": "dns"}, "kindmesh:cilium.hubbleMetrics", "must be a list"),
    ({"hubble": False, "hubbleUi": False, "hubbleMetrics": ["dns"]}, "kindmesh:cilium.hubbleMetrics",
     "need Hubble"),
    ({"values": {"cluster": {"name": "x"}}}, "kindmesh:cilium.values.cluster.name", "cannot be overridden"),
    ({"values": {"ipam": {"mode": "kubernetes"}}}, "kindmesh:cilium.values.ipam.mode", "ipam instead"),
])
def test_stack_cilium_errors(remote_raw, cilium, key, fragment):
    text = errors(dict(remote_raw, cilium=cilium))
    line = next((x for x in text.splitlines() if f"- {key}:" in x), None)
    assert line is not None and fragment in line, text


def test_all_problems_at_once(remote_raw):
    raw = copy.deepcopy(remote_raw)
    raw["clusters"][0].pop("podSubnet")
    raw["clusters"][1]["meshEndpoint"] = {"nodePort": 1}
    raw["cilium"] = {"hubbleMetrics": ["nope"]}
    text = errors(raw)
    for key in ("clusters[0].podSubnet", "clusters[1].meshEndpoint.nodePort", "clusters[1].meshEndpoint.nodeIPs",
                "cilium.hubbleMetrics[0]"):
        assert f"kindmesh:{key}:" in text, text


def test_hubble_metrics_on_kind_clusters_validate():
    raw = dict(stack_raw("dev"), cilium={"hubbleMetrics": ["dns:query;ignoreAAAA", "drop", "port-distribution"]})
    rec = evaluate(raw, "dev")
    v = rec.named("us-cilium").inputs["values"]
    assert v["hubble"]["metrics"]["enabled"] == ["dns:query;ignoreAAAA", "drop", "port-distribution"]
    assert schema_errors(v, CHART) == [] and unknown_key_paths(v, CHART) == []


# --------------------------------------------------------------------------- verify
def test_make_verify_runs_unchanged_on_existing_clusters(remote, tmp_path, monkeypatch):
    from kindmesh.cli import verify
    from tests.test_verify import FakeMesh, _Closing

    spec = remote.stack_outputs["verification"]
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({k: remote.stack_outputs[k] for k in ("verification", "kubeconfigs")}))
    seen = {}

    def kubectl(kubeconfigs):
        seen.update(kubeconfigs)
        return _Closing(FakeMesh(spec))

    monkeypatch.setattr(verify, "Kubectl", kubectl)
    assert verify.main(["--outputs", str(outputs), "--requests", "10"]) == 0
    # kubectl gets each cluster's kubeconfig with the chosen context current (verify passes no --context)
    assert {n: yaml.safe_load(t)["current-context"] for n, t in seen.items()} == {"k3s-a": "default",
                                                                                "k3s-b": "default"}


def test_verify_on_up_covers_existing_clusters(remote_raw):
    rec = evaluate(dict(remote_raw, verify={"onUp": True}), "remote")
    cmd = rec.named("verify")
    assert "environment" in cmd.secret_inputs
    payload = json.loads(cmd.inputs["environment"]["KINDMESH_VERIFY_OUTPUTS"])
    assert set(payload["kubeconfigs"]) == {"k3s-a", "k3s-b"}
    for name in ("k3s-a", "k3s-b"):
        assert rec.depends_on(cmd, rec.named(f"{name}-cilium-rollout"))
        assert rec.depends_on(cmd, rec.named(f"{name}-demo-echo"))
