"""The whole stack graph per stack file: topology, providers, deletedWith, locality."""

from __future__ import annotations

import pytest

from tests.helpers import STACKS, stack_raw
from tests.mocks import evaluate

IN_CLUSTER_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:metallb.io/v1beta1:IPAddressPool",
                    "kubernetes:metallb.io/v1beta1:L2Advertisement")


@pytest.fixture(scope="module", params=STACKS)
def rec(request):
    return evaluate(stack_raw(request.param), request.param)


def test_every_cluster_has_its_parts(rec):
    for c in rec.plan.clusters:
        assert rec.named(f"{c.name}-kind").inputs["name"] == c.kind_name
        assert rec.named(f"{c.name}-cilium").inputs["chart"] == "cilium"
        first, last = c.pool.split("-")  # the planned IPs (mesh, Hubble UI) are in the reserved pool
        auto = rec.named(f"{c.name}-pool").inputs["spec"]["addresses"]
        reserved = rec.named(f"{c.name}-reserved-pool").inputs["spec"]["addresses"]
        assert auto[0].endswith(f"-{last}") and reserved[0].startswith(f"{first}")
        assert rec.named(f"{c.name}-k8s").type == "pulumi:providers:kubernetes"
    assert len(rec.of_type("docker:index/network:Network")) == 1


def test_peer_lists_match_the_topology(rec):
    plan = rec.plan
    for c in plan.clusters:
        peers = rec.named(f"{c.name}-cilium").inputs["values"]["clustermesh"]["config"]["clusters"]
        names = {p["name"] for p in peers}
        if plan.topology == "none":
            assert names == set()
        elif plan.topology == "full":
            assert names == {o.name for o in plan.clusters} - {c.name}
        else:
            assert names == ({o.name for o in plan.clusters} - {c.name} if c.name == plan.hub else {plan.hub})
        for p in peers:
            assert p["port"] == 2379 and p["ips"] == [plan.cluster(p["name"]).mesh_ip]
            # symmetric
            back = rec.named(f"{p['name']}-cilium").inputs["values"]["clustermesh"]["config"]["clusters"]
            assert c.name in {b["name"] for b in back}


def test_nothing_uses_a_default_provider(rec):
    for r in rec.resources:
        if not r.custom or r.type.startswith("pulumi:providers:"):
            continue
        if r.type.startswith(("kubernetes:", "docker:")):
            assert r.provider and "::default" not in r.provider, r.name


def test_in_cluster_resources_are_deleted_with_their_cluster(rec):
    names = sorted((c.name for c in rec.plan.clusters), key=len, reverse=True)
    checked = 0
    for r in rec.resources:
        in_cluster = r.type in IN_CLUSTER_TYPES or (
            r.type == "command:local:Command" and "KINDMESH_GATE_KUBECONFIG" in r.inputs.get("environment", {}))
        if in_cluster:
            owner = next(n for n in names if r.name.startswith(f"{n}-"))
            assert r.deleted_with == rec.named(f"{owner}-kind").urn, r.name
            checked += 1
    assert checked >= 6 * len(names)


def test_clusters_are_independent(rec):
    kinds = [rec.named(f"{c.name}-kind") for c in rec.plan.clusters]
    for c in rec.plan.clusters:
        release = rec.named(f"{c.name}-cilium")
        for k in kinds:
            if k.name != f"{c.name}-kind":
                assert not rec.depends_on(release, k), (release.name, k.name)


def test_stack_outputs(rec):
    out = rec.stack_outputs
    assert [row["name"] for row in out["clusters"]] == [c.name for c in rec.plan.clusters]
    row = out["clusters"][0]
    c = rec.plan.clusters[0]
    assert (row["id"], row["podSubnet"], row["serviceSubnet"], row["pool"], row["meshIp"]) == (
        c.id, c.pod_subnet, c.service_subnet, c.pool, c.mesh_ip)
    assert out["contexts"][c.name] == c.context
    assert out["mesh"]["links"] == [str(link) for link in rec.plan.links]
    assert out["mermaid"].startswith("graph LR")
    assert out["mermaid"].count("<-->") == len(rec.plan.links)
    assert set(out["meshSummary"]) == {x.name for x in rec.plan.clusters}
    assert out["meshEndpoints"][c.name] == f"{c.mesh_ip}:2379"
    assert out["network"] == {"name": rec.plan.network.name, "subnet": rec.plan.network.subnet,
                              "nodeRange": rec.plan.network.node_range,
                              "poolRegion": rec.plan.network.pool_region}
    assert "kubeconfigs" in rec.secret_stack_outputs
    assert set(out["kubeconfigs"]) == {x.name for x in rec.plan.clusters}


def test_hub_stack_tenants_do_not_mesh():
    rec = evaluate(stack_raw("hub"), "hub")
    assert rec.stack_outputs["meshPeers"]["tenant-a"] == [
        {"name": "shared", "port": 2379, "ips": [rec.plan.cluster("shared").mesh_ip]}]
    assert "tenant-b" not in rec.stack_outputs["meshSummary"]["tenant-a"]


def inputs_by_name(rec):
    return {(r.type, r.name): r.inputs for r in rec.resources}


def test_same_config_gives_identical_inputs():
    a = inputs_by_name(evaluate(stack_raw("dev"), "dev"))
    b = inputs_by_name(evaluate(stack_raw("dev"), "dev"))
    assert a == b


def test_adding_a_cluster_touches_only_peers_cilium_values():
    raw = stack_raw("dev")
    before = inputs_by_name(evaluate(raw, "dev"))
    grown = dict(raw, clusters=raw["clusters"] + [{"name": "ap", "id": 3, "workers": 0}])
    after_rec = evaluate(grown, "dev")
    after = inputs_by_name(after_rec)

    assert set(before) <= set(after)
    new = set(after) - set(before)
    assert new and all(name == "ap" or name.startswith("ap-") for _, name in new)
    changed = {n for n in before if before[n] != after[n]}
    assert {name for _, name in changed} == {"us-cilium", "eu-cilium"}
    cilium = changed
    for n in cilium:
        old_v, new_v = before[n]["values"], after[n]["values"]
        old_v = dict(old_v, clustermesh=dict(old_v["clustermesh"], config=None))
        new_v = dict(new_v, clustermesh=dict(new_v["clustermesh"], config=None))
        assert old_v == new_v  # only the peer list moved
    # removing it again is the mirror image
    assert inputs_by_name(evaluate(raw, "dev")) == before


def test_resource_count_is_linear_in_clusters():
    def count(n):
        raw = {"clusters": [{"name": f"c{i}", "id": i + 1, "workers": 0} for i in range(n)],
               "network": {"subnet": "172.30.0.0/16"}}
        return len(evaluate(raw, "bench").resources)

    c2, c3, c5 = count(2), count(3), count(5)
    per = c3 - c2
    assert c5 - c3 == 2 * per
    assert per <= 24  # kind, provider, cilium + gate, metallb + gate + pool + l2, demo


def test_verify_on_up_runs_last_with_secret_kubeconfigs():
    raw = dict(stack_raw("dev"), verify={"onUp": True})
    rec = evaluate(raw, "dev")
    cmd = rec.named("verify")
    assert cmd.type == "command:local:Command"
    assert "-m kindmesh.cli.verify --outputs-env KINDMESH_VERIFY_OUTPUTS" in cmd.inputs["create"]
    assert "environment" in cmd.secret_inputs
    payload = __import__("json").loads(cmd.inputs["environment"]["KINDMESH_VERIFY_OUTPUTS"])
    assert set(payload["kubeconfigs"]) == {"us", "eu"}
    assert payload["verification"]["clusters"][0]["expect"]["echo-global"] == ["eu", "us"]
    for c in rec.plan.clusters:
        assert rec.depends_on(cmd, rec.named(f"{c.name}-l2"))
        assert rec.depends_on(cmd, rec.named(f"{c.name}-demo-echo"))
    assert not [r for r in evaluate(stack_raw("dev"), "dev").resources if r.name == "verify"]
