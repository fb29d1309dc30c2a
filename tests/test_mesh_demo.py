"""MeshDemo: valid manifests, policies against the CNP CRD, wiring, expectations."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from kindmesh.core.demo import expected_backends, manifests, verification_spec
from kindmesh.core.planner import load_plan
from tests.helpers import STACKS, stack_raw
from tests.mocks import evaluate
from tests.upstream import crd_errors

K8S_VERSION = "1.34"  # the pinned kindest/node


@pytest.mark.parametrize("stack", STACKS)
def test_core_objects_validate_and_policies_match_the_crd(stack):
    plan = load_plan(stack_raw(stack), stack=stack)
    for c in plan.clusters:
        objs = manifests(plan, c)
        assert objs[0]["kind"] == "Namespace"
        for obj in objs:
            if obj["kind"] == "CiliumNetworkPolicy":
                assert crd_errors(obj, "cilium-crds/ciliumnetworkpolicies.yaml") == [], obj["metadata"]["name"]
            else:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_invalid_policy_is_caught_by_the_crd_check():
    plan = load_plan(stack_raw("dev"), stack="dev")
    cnp = copy.deepcopy([o for o in manifests(plan, plan.clusters[0]) if o["kind"] == "CiliumNetworkPolicy"][1])
    cnp["spec"]["ingress"][0]["toPorts"][0]["ports"][0]["protocol"] = "TCPX"
    assert crd_errors(cnp, "cilium-crds/ciliumnetworkpolicies.yaml")


def test_backend_reply_names_its_cluster_and_services_are_global():
    plan = load_plan(stack_raw("dev"), stack="dev")
    us = plan.cluster("us")
    objs = {(o["kind"], o["metadata"]["name"]): o for o in manifests(plan, us)}
    echo = objs[("Deployment", "echo")]["spec"]["template"]["spec"]["containers"][0]
    assert "-text=kindmesh-demo cluster=us" in echo["args"]
    assert echo["image"] == "docker.io/hashicorp/http-echo:1.0.0"  # pre-loaded by tag
    svc = objs[("Service", "echo")]["metadata"]["annotations"]
    assert svc == {"service.cilium.io/global": "true", "service.cilium.io/shared": "true",
                   "service.cilium.io/affinity": "local"}
    glob = objs[("Service", "echo-global")]["metadata"]["annotations"]
    assert glob == {"service.cilium.io/global": "true", "service.cilium.io/shared": "true"}


def test_images_are_digest_pinned_without_prepull():
    raw = dict(stack_raw("dev"), kind={"prePull": False})
    plan = load_plan(raw, stack="dev")
    for o in manifests(plan, plan.clusters[0]):
        if o["kind"] == "Deployment":
            assert "@sha256:" in o["spec"]["template"]["spec"]["containers"][0]["image"]


def test_policies_select_mesh_clusters_by_cluster_label():
    plan = load_plan(dict(stack_raw("hub"), demo={"policy": True}), stack="hub")
    tenant = plan.cluster("tenant-a")
    cnps = {o["metadata"]["name"]: o for o in manifests(plan, tenant) if o["kind"] == "CiliumNetworkPolicy"}
    rule = cnps["echo-from-client"]["spec"]["ingress"][0]["fromEndpoints"][0]
    # every cluster this one is meshed with (a selector without the label is local-only since 1.19)
    assert rule["matchExpressions"] == [{"key": "io.cilium.k8s.policy.cluster", "operator": "Exists"}]
    assert rule["matchLabels"] == {"app": "client"}
    egress = cnps["client-to-echo"]["spec"]["egress"][0]["toEndpoints"][0]
    assert egress["matchExpressions"] == rule["matchExpressions"] and egress["matchLabels"] == {"app": "echo"}
    deny = cnps["default-deny"]["spec"]
    assert deny["endpointSelector"] == {} and deny["ingress"] == [{}]
    dns = deny["egress"][0]
    assert dns["toEndpoints"][0]["matchLabels"]["k8s:k8s-app"] == "kube-dns"
    assert dns["toPorts"][0]["ports"] == [{"port": "53", "protocol": "ANY"}]


def test_no_policy_objects_when_policy_is_off():
    plan = load_plan(stack_raw("trio"), stack="trio")
    kinds = {o["kind"] for o in manifests(plan, plan.clusters[0])}
    names = {o["metadata"]["name"] for o in manifests(plan, plan.clusters[0])}
    assert "CiliumNetworkPolicy" not in kinds and "intruder" not in names


def test_expected_backends_follow_topology_affinity_and_sharing():
    raw = {
        "clusters": [{"name": "hq", "id": 1, "demo": {"affinity": "remote"}}, {"name": "a", "id": 2, "demo": {"affinity": "local"}},
                     {"name": "b", "id": 3, "demo": {"shared": False}}, {"name": "c", "id": 4}],
        "mesh": {"topology": "hub", "hub": "hq"},
        "network": {"subnet": "172.30.0.0/16"},
    }
    plan = load_plan(raw, stack="x")
    c = plan.cluster
    assert expected_backends(plan, c("a"), "echo") == ["a"]
    assert expected_backends(plan, c("a"), "echo-global") == ["a", "hq"]
    assert expected_backends(plan, c("hq"), "echo") == ["a", "c"]  # remote, b does not share
    assert expected_backends(plan, c("b"), "echo") == ["b", "hq"]
    assert expected_backends(plan, c("hq"), "echo-global") == ["a", "b", "c", "hq"]
    spec = verification_spec(plan)
    assert [x["failover"] for x in spec["clusters"]] == [["a", "c"], ["hq"], ["hq"], ["hq"]]


def test_demo_wiring_under_mocks():
    rec = evaluate(stack_raw("dev"), "dev")
    for c in rec.plan.clusters:
        gate = rec.named(f"{c.name}-cilium-rollout")
        kind = rec.named(f"{c.name}-kind")
        provider = rec.named(f"{c.name}-k8s")
        ns = rec.named(f"{c.name}-demo-ns")
        assert gate.urn in ns.dependencies
        demo = [r for r in rec.resources if r.name.startswith(f"{c.name}-demo-")]
        assert {r.type for r in demo} >= {"kubernetes:core/v1:Namespace", "kubernetes:apps/v1:Deployment",
                                          "kubernetes:core/v1:Service", "kubernetes:cilium.io/v2:CiliumNetworkPolicy"}
        policies = [r for r in demo if r.type.endswith("CiliumNetworkPolicy")]
        for r in demo:
            assert r.provider.startswith(provider.urn) and r.deleted_with == kind.urn
            assert rec.depends_on(r, gate)
            if r.type == "kubernetes:apps/v1:Deployment":
                assert all(p.urn in r.dependencies for p in policies)
    assert rec.stack_outputs["verification"]["policy"] is True


def test_demo_off_registers_no_demo():
    raw = dict(stack_raw("trio"), demo={"enabled": False})
    rec = evaluate(raw, "trio")
    assert not [r for r in rec.resources if "-demo-" in r.name]
    assert not any("http-echo" in i for i in rec.plan.images)
