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
    "kubernetes:core/v1:Namespace",
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


# ------------------------------------------------------------------ the real graph, modelled (issue 19)

def modelled(n):
    rec = evaluate(raw_config(n), stack="bench")
    graph = steps(rec.resources)
    return rec, graph, simulate(graph)


@pytest.fixture(scope="module")
def two():
    return modelled(2)


def test_modelled_first_up_of_two_clusters_is_under_five_minutes(two):
    _, graph, sched = two
    assert sched.total <= 5.0 * 60, sched.critical
    # what overlaps: kind create runs while the images are pulled ...
    by_name = {s.name: u for u, s in graph.items()}
    start = {s.name: sched.finish[u] - s.seconds for u, s in graph.items()}
    assert start["c0-kind-cluster"] < sched.finish[by_name["host-images-pull"]]
    # ... each cluster loads them once both are done, before any chart starts
    for c in ("c0", "c1"):
        load_done = sched.finish[by_name[f"{c}-image-load"]]
        assert start[f"{c}-image-load"] == max(sched.finish[by_name[f"{c}-kind-cluster"]],
                                               sched.finish[by_name["host-images-pull"]])
        assert start[f"{c}-cilium"] >= load_done and start[f"{c}-metallb"] >= load_done
        # MetalLB is installed while Cilium rolls out; its webhook gate waits for the rollout
        rollout = by_name[f"{c}-cilium-rollout"]
        assert start[f"{c}-metallb"] < sched.finish[rollout]
        assert start[f"{c}-metallb-webhook"] >= sched.finish[rollout]


def test_no_new_serialization_up16_over_up2(two):
    _, _, small = two
    _, _, large = modelled(16)
    assert large.total / small.total <= 1.1, (small.total, large.total, large.critical)


def test_the_old_serial_graph_would_fail_the_figure():
    """The guard has teeth: the chain issue 19 removed (pull -> create, rollout -> MetalLB) is over 5 minutes."""
    graph = [
        res("pull", "command:local:Command", name="host-images-pull"),
        res("kc", "command:local:Command", deps=["pull"], name="a-kind-cluster"),
        res("load", "command:local:Command", deps=["kc"], name="a-image-load"),
        res("cil", "kubernetes:helm.sh/v3:Release", deps=["load"], name="a-cilium"),
        res("roll", "command:local:Command", deps=["cil"], name="a-cilium-rollout"),
        res("mlb", "kubernetes:helm.sh/v3:Release", deps=["roll"], name="a-metallb"),
        res("hook", "command:local:Command", deps=["mlb"], name="a-metallb-webhook"),
    ]
    assert simulate(steps(graph)).total > 5.0 * 60


def test_model_edges_are_exactly_the_registered_ones(two):
    """The model is fed the graph the program registers (under mocks): every registered
    dependency is honoured, and every edge it waits on is one the program registered."""
    rec, graph, _ = two
    by_urn = {r.urn: r for r in rec.resources}

    def customs(urn):
        node = by_urn.get(urn)
        if node is None:
            return set()
        if node.custom:
            return {urn}
        return set().union(*[customs(r.urn) for r in rec.resources if r.parent == urn])

    def reachable(urn):
        seen, todo = set(), list(graph[urn].waits_on)
        while todo:
            u = todo.pop()
            if u not in seen:
                seen.add(u)
                todo.extend(graph[u].waits_on)
        return seen

    customs_all = [r for r in rec.resources if r.custom]
    assert set(graph) == {r.urn for r in customs_all}
    for r in customs_all:
        registered = set(r.dependencies) | {r.deleted_with, r.provider.rsplit("::", 1)[0] if r.provider else ""}
        if r.parent in by_urn and by_urn[r.parent].custom:
            registered.add(r.parent)
        expected = set().union(*[customs(u) for u in registered if u]) - {r.urn}
        assert graph[r.urn].waits_on == expected, r.name
        for other in customs_all:
            if other is not r and rec.depends_on(r, other):
                assert other.urn in reachable(r.urn), (r.name, other.name)


def test_the_edges_issue_19_removed_stay_removed(two):
    rec, graph, _ = two
    name = {u: s.name for u, s in graph.items()}
    waits = {s.name: {name[w] for w in s.waits_on} for s in graph.values()}
    for c in ("c0", "c1"):
        # its presence token (a quick create; it only makes a cluster deleted by hand come back)
        assert waits[f"{c}-kind-cluster"] == {"network", f"{c}-kind-present"}
        assert waits[f"{c}-kind-present"] <= {"network"}
        assert waits[f"{c}-image-load"] == {f"{c}-kind-cluster", "host-images-pull"}
        assert f"{c}-image-load" in waits[f"{c}-cilium"] and f"{c}-image-load" in waits[f"{c}-metallb"]
        assert not {f"{c}-cilium", f"{c}-cilium-rollout"} & waits[f"{c}-metallb"]
        assert {f"{c}-cilium-rollout", f"{c}-metallb"} <= waits[f"{c}-metallb-webhook"]


def test_bench_says_what_is_measured_what_is_modelled_and_on_which_host(capsys):
    import platform

    from bench.bench import host_facts, main

    facts = host_facts()
    assert facts["cpus"] >= 1 and facts["memory_gib"] > 0
    assert facts["python"].endswith(platform.python_version()) and platform.system() in facts["os"]
    assert main(["--runs", "1", "2"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith(f"host: {facts['cpus']} CPUs (nproc), {facts['memory_gib']} GiB memory, ")
    assert "measured on this host:" in out and "modelled, any host:" in out
    assert "(s, measured)" in out and "`up` (min, modelled, make up: --parallel 64)" in out
    assert "pulumi's default here: --parallel" in out
    row = next(line for line in out.splitlines() if line.startswith("| 2 |"))
    assert float(row.rstrip(" |").split("|")[-2]) <= 5.0  # make up's figure
    for rule in RULES:  # every nominal duration is printed with its source
        assert rule.source in out


def test_the_engines_parallel_cap_queues_ready_steps_and_says_so():
    """`pulumi up` runs at most --parallel steps at once (default 4 × CPUs): eight 120 s gates
    ready together take two rounds under a cap of 4; the wait is reported as '--parallel'."""
    cmd = [res(f"g{i}", "command:local:Command", name=f"c{i}-cilium-rollout") for i in range(8)]
    rollout = rule_for("command:local:Command", "c0-cilium-rollout").seconds
    capped = simulate(steps(cmd), parallel=4)
    assert capped.total == pytest.approx(2 * rollout)
    assert capped.busiest_queue["--parallel"] == pytest.approx(rollout)
    assert simulate(steps(cmd), parallel=8).total == pytest.approx(rollout)
    assert "--parallel" not in simulate(steps(cmd)).busiest_queue


def test_make_ups_parallel_leaves_eight_clusters_as_fast_as_two():
    """The engine's default on a 2-CPU host (8) made up(8) about 1.3 × up(2) in the model; the
    --parallel `make up` passes (PULUMI_PARALLEL, 64) keeps the growth within 1.15."""
    _, small, _ = modelled(2)
    _, large, _ = modelled(8)
    assert simulate(large, parallel=8).total / simulate(small, parallel=8).total > 1.15
    assert simulate(large, parallel=64).total / simulate(small, parallel=64).total <= 1.15
