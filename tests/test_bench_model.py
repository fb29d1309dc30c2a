"""The bench's cost guard and its `up` model: Outputs per resource stay flat; the model
honours every edge and every provider's concurrency limit."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.bench import count_outputs, raw_config
from bench.model import DYNAMIC, RULES, rule_for, simulate, steps
from tests.mocks import evaluate

# Resource types that are quick single API calls (the model's default rule is right for them).
QUICK = {
    "pulumi:providers:kubernetes", "pulumi:providers:docker", "pulumi:providers:command",
    "tls:index/privateKey:PrivateKey", "tls:index/selfSignedCert:SelfSignedCert",
    "kubernetes:core/v1:Namespace", "kubernetes:core/v1:Service",
    "kubernetes:metallb.io/v1beta1:IPAddressPool", "kubernetes:metallb.io/v1beta1:L2Advertisement",
    "kubernetes:cilium.io/v2:CiliumNetworkPolicy",
}


def outputs_per_resource(n: int) -> float:
    evaluate(raw_config(1), stack="bench")  # warm the SDK's lazy paths
    counter, undo = count_outputs()
    try:
        rec = evaluate(raw_config(n), stack="bench")
    finally:
        undo()
    return counter[0] / len(rec.resources)


def test_outputs_per_resource_do_not_grow_with_the_mesh():
    """Plan-time data stays plain: a quadratic deep-wrap (N×(N−1) peer dicts) cannot come back."""
    small, large = outputs_per_resource(2), outputs_per_resource(12)
    assert 5 <= small <= 40, small  # counted at all (the SDK still tracks Outputs), and few
    assert large <= small * 1.15, (small, large)


def res(urn, type_="t", deps=(), parent="", provider="", deleted_with="", custom=True, name=None):
    return SimpleNamespace(urn=urn, name=name or urn, type=type_, dependencies=list(deps), parent=parent,
                           provider=provider, deleted_with=deleted_with, custom=custom)


def test_model_caps_the_dynamic_provider_at_four_and_leaves_commands_unbounded():
    dyn = [res(f"g{i}", DYNAMIC, name=f"c{i}-kind") for i in range(8)]
    sched = simulate(steps(dyn))
    assert sched.total == pytest.approx(2 * rule_for(DYNAMIC, "c0-kind").seconds)  # 8 calls, 4 at a time
    cmd = [res(f"g{i}", "command:local:Command", name=f"c{i}-cilium-rollout") for i in range(8)]
    assert simulate(steps(cmd)).total == pytest.approx(rule_for("command:local:Command", "c0-cilium-rollout").seconds)


def test_model_follows_dependencies_parents_providers_and_components():
    graph = [
        res("net", "docker:index/network:Network"),
        res("comp", "kindmesh:index:KindCluster", custom=False),
        res("kind", "command:local:Command", deps=["net"], parent="comp", name="a-kind-cluster"),
        res("prov", "pulumi:providers:kubernetes", parent="comp"),  # waits on nothing but its parent component
        res("rel", "kubernetes:helm.sh/v3:Release", deps=["comp"], provider="prov::id", name="a-cilium"),
        res("gate", DYNAMIC, deps=["rel"], deleted_with="kind", name="a-cilium-rollout"),
    ]
    sched = simulate(steps(graph))
    assert sched.critical == ["net", "a-kind-cluster", "a-cilium", "a-cilium-rollout"]
    expected = sum(rule_for(t, n).seconds for t, n in [
        ("docker:index/network:Network", "net"), ("command:local:Command", "a-kind-cluster"),
        ("kubernetes:helm.sh/v3:Release", "a-cilium"), (DYNAMIC, "a-cilium-rollout")])
    assert sched.total == pytest.approx(expected)


def test_every_slow_step_of_the_real_graph_has_a_stated_duration():
    rec = evaluate(raw_config(2), stack="bench")
    default = RULES[-1]
    for r in rec.resources:
        if not r.custom:
            continue
        rule = rule_for(r.type, r.name)
        assert rule is not default or r.type in QUICK, f"no nominal duration for {r.type} {r.name}"
        assert rule.source
