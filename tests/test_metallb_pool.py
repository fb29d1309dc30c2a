"""MetalLBPool: chart values, CRD-valid pool/advertisement, order, defensive pool check."""

from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest

from kindmesh.core.planner import PoolOverlapError, check_pool_is_own, load_plan
from kindmesh.core.render import (
    ip_address_pool,
    l2_advertisement,
    metallb_values,
    metallb_workloads,
    reserved_address_pool,
    split_pool,
)
from kindmesh.core.versions import DEFAULT_METALLB, METALLB
from tests.helpers import STACKS, stack_raw, upstream
from tests.mocks import evaluate
from tests.upstream import crd_errors, schema_errors, unknown_key_paths

CHART = f"metallb-{DEFAULT_METALLB}"
VERSIONS = [v for line in METALLB.values() for v in line.validated]


@pytest.fixture(scope="module")
def dev():
    return evaluate(stack_raw("dev"), "dev")


def test_release_chart_version_repo_and_values(dev):
    for c in dev.plan.clusters:
        r = dev.named(f"{c.name}-metallb")
        assert r.type == "kubernetes:helm.sh/v3:Release"
        assert (r.inputs["chart"], r.inputs["version"]) == ("metallb", DEFAULT_METALLB)
        assert r.inputs["repositoryOpts"] == {"repo": "https://metallb.github.io/metallb"}
        assert r.inputs["namespace"] == "metallb-system" and r.inputs["createNamespace"] is True
        assert r.inputs["values"]["speaker"]["frr"]["enabled"] is False
        # no Helm wait: the pods need the CNI, so the webhook gate waits for them instead
        assert r.inputs["skipAwait"] is True
        assert schema_errors(r.inputs["values"], CHART) == []
        assert unknown_key_paths(r.inputs["values"], CHART) == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("stack", STACKS)
def test_pools_and_advertisement_validate_against_crds(stack, version):
    plan = load_plan(stack_raw(stack), stack=stack)
    for c in plan.clusters:
        pool, reserved = ip_address_pool(plan, c), reserved_address_pool(plan, c)
        adv = l2_advertisement(plan, c)
        for obj in (pool, reserved):
            assert crd_errors(obj, f"metallb-{version}/crd-ipaddresspools.yaml") == []
        assert crd_errors(adv, f"metallb-{version}/crd-l2advertisements.yaml") == []
        assert adv["spec"]["ipAddressPools"] == [pool["metadata"]["name"], reserved["metadata"]["name"]]
        assert schema_errors(metallb_values(), f"metallb-{version}") == []
        assert unknown_key_paths(metallb_values(), f"metallb-{version}") == []


def _ints(entries):
    out = set()
    for e in entries:
        if "-" in e:
            a, b = (int(ipaddress.ip_address(x)) for x in e.split("-"))
        else:
            net = ipaddress.ip_network(e)
            a, b = int(net.network_address), int(net.broadcast_address)
        out |= set(range(a, b + 1))
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_the_planned_ips_are_reserved_and_never_auto_assigned(stack):
    """The auto-assigned pool and the reserved one partition the planned range; the reserved
    one holds exactly the mesh IP and the Hubble UI's slot (the pool's second address, on or off)
    and is never auto-assigned (issue 20: a k3s traefik LoadBalancer Service must not take the
    mesh IP first)."""
    plan = load_plan(stack_raw(stack), stack=stack)
    for c in plan.clusters:
        pool, reserved = ip_address_pool(plan, c), reserved_address_pool(plan, c)
        auto, kept = _ints(pool["spec"]["addresses"]), _ints(reserved["spec"]["addresses"])
        assert auto | kept == _ints([c.pool]) and not auto & kept
        ui_slot = str(ipaddress.IPv4Address(c.mesh_ip) + 1)
        assert c.hubble_ui_ip in (None, ui_slot)
        assert kept == _ints([c.mesh_ip + "/32", ui_slot + "/32"])
        assert pool["spec"]["autoAssign"] is True and reserved["spec"]["autoAssign"] is False


@pytest.mark.parametrize("stack", STACKS)
def test_turning_hubble_ui_on_or_off_moves_no_address_between_the_pools(stack):
    """MetalLB refuses a pool that overlaps another whichever is applied first, so an address
    moving between the two pools on a toggle would fail the update (the engine tier saw it)."""
    raw = stack_raw(stack)
    pools = []
    for on in (True, False):
        doc = {**raw, "cilium": {**(raw.get("cilium") or {}), "hubbleUi": on}}
        plan = load_plan(doc, stack=stack)
        pools.append([(ip_address_pool(plan, c)["spec"], reserved_address_pool(plan, c)["spec"]) for c in plan.clusters])
    assert pools[0] == pools[1]


@pytest.mark.parametrize("addresses,reserved,auto,kept", [
    (["10.0.0.0-10.0.0.15"], ["10.0.0.0", "10.0.0.1"], ["10.0.0.2-10.0.0.15"], ["10.0.0.0-10.0.0.1"]),
    (["10.0.0.0/28"], ["10.0.0.5"], ["10.0.0.0-10.0.0.4", "10.0.0.6-10.0.0.15"], ["10.0.0.5/32"]),
    (["10.0.0.1-10.0.0.1"], ["10.0.0.1"], [], ["10.0.0.1/32"]),
    (["10.0.0.0/30", "10.0.1.0/30"], ["10.0.1.3"], ["10.0.0.0/30", "10.0.1.0-10.0.1.2"], ["10.0.1.3/32"]),
    (["10.0.0.0/30"], [], ["10.0.0.0/30"], []),
])
def test_split_pool(addresses, reserved, auto, kept):
    assert split_pool(addresses, reserved) == (auto, kept)


def test_crd_check_is_not_toothless():
    plan = load_plan(stack_raw("dev"), stack="dev")
    pool = ip_address_pool(plan, plan.clusters[0])
    pool["spec"]["addresses"] = "172.30.255.239-172.30.255.254"  # must be a list
    assert crd_errors(pool, f"{CHART}/crd-ipaddresspools.yaml")


def test_pools_hold_exactly_the_planned_range_with_the_mesh_ip_reserved(dev):
    for c in dev.plan.clusters:
        pool, reserved = dev.named(f"{c.name}-pool"), dev.named(f"{c.name}-reserved-pool")
        for r in (pool, reserved):
            assert r.type == "kubernetes:metallb.io/v1beta1:IPAddressPool"
            assert r.inputs["metadata"]["namespace"] == "metallb-system"
        assert pool.inputs["spec"] == ip_address_pool(dev.plan, c)["spec"]
        assert reserved.inputs["spec"] == reserved_address_pool(dev.plan, c)["spec"]
        assert reserved.inputs["spec"]["addresses"] == [f"{c.mesh_ip}-{c.hubble_ui_ip}"]
        assert reserved.inputs["spec"]["autoAssign"] is False
        assert dev.named(f"{c.name}-l2").inputs["spec"]["ipAddressPools"] == ["kindmesh-pool", "kindmesh-reserved"]


def test_order_cilium_metallb_gate_pool_advertisement(dev):
    for c in dev.plan.clusters:
        cilium = dev.named(f"{c.name}-cilium-rollout")
        release = dev.named(f"{c.name}-metallb")
        gate = dev.named(f"{c.name}-metallb-webhook")
        pool = dev.named(f"{c.name}-pool")
        adv = dev.named(f"{c.name}-l2")
        # installed while Cilium rolls out, after the cluster and its images
        assert not dev.depends_on(release, cilium)
        assert dev.named(f"{c.name}-image-load").urn in release.dependencies
        assert {release.urn, cilium.urn} <= set(gate.dependencies) and gate.type == "command:local:Command"
        reserved = dev.named(f"{c.name}-reserved-pool")
        assert gate.urn in pool.dependencies
        assert pool.urn in reserved.dependencies  # the auto pool shrinks before the reserved one exists
        assert reserved.urn in adv.dependencies
        assert not dev.depends_on(release, pool)
        kind = dev.named(f"{c.name}-kind")
        provider = dev.named(f"{c.name}-k8s")
        for r in (release, pool, reserved, adv):
            assert r.provider.startswith(provider.urn)
            assert r.deleted_with == kind.urn
        assert gate.deleted_with == kind.urn
        spec = json.loads(gate.inputs["environment"]["KINDMESH_GATE_SPEC"])
        assert spec["pool"] == ip_address_pool(dev.plan, c)  # the gate probes the very pool that is applied
        assert spec["pool"]["spec"] == pool.inputs["spec"] and spec["timeout"] == 600
        # what Helm's wait used to cover: the controller and the speakers rolled out
        assert spec["workloads"] == [
            {"kind": "Deployment", "namespace": "metallb-system", "name": "metallb-controller"},
            {"kind": "DaemonSet", "namespace": "metallb-system", "name": "metallb-speaker"}]
        assert gate.secret_paths == {"environment.KINDMESH_GATE_KUBECONFIG"}


def test_defensive_overlap_check_names_both_clusters():
    plan = load_plan(stack_raw("trio"), stack="trio")
    us, eu = plan.cluster("us"), plan.cluster("eu")
    bad = dataclasses.replace(eu, pool_first=us.pool_first, pool_last=us.pool_last)
    broken = dataclasses.replace(plan, clusters=(us, bad, plan.cluster("ap")))
    with pytest.raises(PoolOverlapError, match="'us'.*overlaps.*'eu'"):
        check_pool_is_own(broken, us)
    outside = dataclasses.replace(us, pool_first="10.0.0.1", pool_last="10.0.0.9")
    with pytest.raises(PoolOverlapError, match="not inside the docker subnet"):
        check_pool_is_own(plan, outside)
    for c in plan.clusters:
        check_pool_is_own(plan, c)


def test_gate_workloads_follow_the_charts_naming():
    """metallb.fullname: fullnameOverride, else the release name when it contains the chart's name."""
    names = [w["name"] for w in metallb_workloads(metallb_values())]
    assert names == ["metallb-controller", "metallb-speaker"]
    assert [w["name"] for w in metallb_workloads({"fullnameOverride": "lb-"})] == ["lb-controller", "lb-speaker"]
    # sprig's `contains $name .Release.Name`: "lb" is inside "metallb"
    assert [w["name"] for w in metallb_workloads({"nameOverride": "lb"})] == ["metallb-controller",
                                                                              "metallb-speaker"]
    assert [w["name"] for w in metallb_workloads({"nameOverride": "ip"})] == ["metallb-ip-controller",
                                                                              "metallb-ip-speaker"]
    assert [w["kind"] for w in metallb_workloads({"speaker": {"enabled": False}})] == ["Deployment"]
    assert metallb_workloads({"controller": {"enabled": False}, "speaker": {"enabled": False}}) == []


def test_gate_workload_names_are_the_charts(tmp_path):
    """The released chart names them '<fullname>-controller' / '<fullname>-speaker'."""
    import tarfile

    archive = upstream("charts", f"{CHART}.tgz")
    with tarfile.open(archive) as tar:
        texts = {m.name.rsplit("/", 1)[-1]: tar.extractfile(m).read().decode()
                 for m in tar.getmembers() if m.name.endswith(("controller.yaml", "speaker.yaml"))}
    assert 'name: {{ template "metallb.fullname" . }}-controller' in texts["controller.yaml"]
    assert 'name: {{ template "metallb.fullname" . }}-speaker' in texts["speaker.yaml"]


def test_objects_without_labels_carry_no_empty_labels_map():
    """The API server drops an empty ``labels`` map: asking for one would be a diff on every
    preview (the engine tier saw the single-cluster example update its pools on each run)."""
    from kindmesh.core.render import ip_address_pool_for, l2_advertisement_for
    for obj in (ip_address_pool_for(["10.0.0.0-10.0.0.7"]), l2_advertisement_for("p")):
        assert "labels" not in obj["metadata"]
    assert ip_address_pool_for(["10.0.0.0/29"], labels={"a": "b"})["metadata"]["labels"] == {"a": "b"}
