"""The gates in the stack graph: each a `local.Command` process, wired, secret only where it must be."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from kindmesh.components.cluster_target import GATE_RERUN_ENV
from kindmesh.deploy.gate_cmd import KUBECONFIG_ENV, SPEC_ENV, read_spec
from tests.helpers import STACKS, stack_raw
from tests.mocks import DYNAMIC, FAKE_KUBECONFIG, evaluate

COMMAND = "command:local:Command"
GATES = {"cilium-rollout": ("rollout", "kindmesh:index:CiliumRelease", "cilium"),
         "metallb-webhook": ("metallb-webhook", "kindmesh:index:MetalLBPool", "metallb")}


@pytest.fixture(scope="module", params=STACKS)
def rec(request):
    return evaluate(stack_raw(request.param), request.param)


def test_no_gate_is_a_dynamic_resource(rec):
    """Only the quick kind-cluster readers and presence tokens stay in the 4-thread
    dynamic-provider process."""
    names = {r.name for r in rec.of_type(DYNAMIC)}
    assert names == {f"{c.name}-{suffix}" for c in rec.plan.clusters for suffix in ("kind", "kind-present")}


def test_each_gate_is_its_own_process_started_in_the_project_root(rec):
    for c in rec.plan.clusters:
        for suffix, (gate, component, release) in GATES.items():
            r = rec.named(f"{c.name}-{suffix}")
            assert r.type == COMMAND
            run = f"{shlex.quote(sys.executable)} -m kindmesh.deploy.gate_cmd {gate}"
            assert r.inputs["create"] == run and r.inputs["update"] == run  # update: wait again
            assert "delete" not in r.inputs  # nothing to undo
            assert (Path(r.inputs["dir"]) / "kindmesh" / "deploy" / "gate_cmd.py").is_file()
            assert set(r.inputs["environment"]) == {KUBECONFIG_ENV, SPEC_ENV, GATE_RERUN_ENV}
            assert r.inputs["environment"][KUBECONFIG_ENV] == FAKE_KUBECONFIG.format(name=c.kind_name)
            # the kubeconfig is secret, and nothing else
            assert r.secret_paths == {f"environment.{KUBECONFIG_ENV}"}
            # the spec is exactly what the gate process accepts
            kubeconfig, spec = read_spec(gate, r.inputs["environment"])
            assert spec["cluster"] == c.name
            # wiring: child of its component, after its release, removed with its kind cluster
            assert r.parent.endswith(f"{component}::{c.name}")
            assert rec.named(f"{c.name}-{release}").urn in r.dependencies
            assert r.deleted_with == rec.named(f"{c.name}-kind").urn


def test_gates_wait_again_on_a_new_revision_or_chart_version(rec):
    """pulumi-command 1.2.1 marks `triggers` replaceOnChanges: what makes a gate run again is
    in its environment instead (a changed environment is an update, which runs `update`)."""
    for c in rec.plan.clusters:
        release_status_revision = 1  # what the mocks report for every helm Release
        rollout, webhook = rec.named(f"{c.name}-cilium-rollout"), rec.named(f"{c.name}-metallb-webhook")
        assert "triggers" not in rollout.inputs and "triggers" not in webhook.inputs
        assert json.loads(rollout.inputs["environment"][GATE_RERUN_ENV]) == [release_status_revision]
        assert json.loads(webhook.inputs["environment"][GATE_RERUN_ENV]) == [rec.plan.config.metallb.version]
        assert rollout.inputs["update"] == rollout.inputs["create"]


def test_everything_in_the_cluster_waits_for_the_gates(rec):
    for c in rec.plan.clusters:
        rollout = rec.named(f"{c.name}-cilium-rollout")
        webhook = rec.named(f"{c.name}-metallb-webhook")
        metallb = rec.named(f"{c.name}-metallb")
        # MetalLB is installed while Cilium rolls out; what needs the CNI (its pods, the
        # webhook) is the gate's to wait for, and the gate waits for Cilium's rollout
        assert not rec.depends_on(metallb, rollout)
        assert not rec.depends_on(metallb, rec.named(f"{c.name}-cilium"))
        assert {rollout.urn, metallb.urn} <= set(webhook.dependencies)
        assert webhook.urn in rec.named(f"{c.name}-pool").dependencies
        assert rec.depends_on(rec.named(f"{c.name}-l2"), webhook)
        for r in rec.resources:
            if r.name.startswith(f"{c.name}-demo") and r.custom:
                assert rec.depends_on(r, rollout), r.name


def test_gate_specs_are_plain_and_stable():
    a = evaluate(stack_raw("dev"), "dev")
    b = evaluate(stack_raw("dev"), "dev")
    for name in ("us-cilium-rollout", "eu-metallb-webhook"):
        env_a, env_b = a.named(name).inputs["environment"], b.named(name).inputs["environment"]
        assert env_a == env_b
        assert json.loads(env_a[SPEC_ENV])["timeout"] in (600, 900)


def test_only_the_kind_cluster_command_can_be_replaced(monkeypatch):
    """Adding a cluster gives peers a new Helm revision: their gates and the verify command
    must be *updated*. Only a kind cluster whose immutable spec changed is replaced."""
    import tests.mocks as mocks

    seen: dict[str, tuple[list[str], list[str]]] = {}

    class Recorder(mocks.Recorder):
        def RegisterResource(self, request):  # noqa: N802 - gRPC method name
            seen[request.name] = (list(request.replaceOnChanges), list(request.ignoreChanges))
            return super().RegisterResource(request)

    monkeypatch.setattr(mocks, "Recorder", Recorder)
    raw = stack_raw("dev")
    raw["verify"] = {"onUp": True}
    rec = mocks.evaluate(raw, "dev")
    commands = [r for r in rec.resources if r.type == "command:local:Command"]
    assert {r.name for r in commands} >= {"verify", "us-cilium-rollout", "eu-metallb-webhook", "us-kubeconfig"}
    for r in commands:
        # the SDK itself adds replaceOnChanges triggers[*] to every Command: harmless without triggers
        replace_on = seen[r.name][0]
        assert replace_on and all(p.startswith("triggers") for p in replace_on), r.name
        if r.name.endswith("-kind-cluster"):
            assert r.inputs["triggers"]
        else:
            assert "triggers" not in r.inputs, r.name


def test_network_options_match_what_docker_reports(monkeypatch):
    """Docker 28+ reports enable_ipv4/6 in a bridge network's options; pulumi-docker copies
    them into its state, and every network field forces a replace: ask for them explicitly,
    and never let an option the daemon adds replace the network."""
    import tests.mocks as mocks

    ignored: dict[str, list[str]] = {}

    class Recorder(mocks.Recorder):
        def RegisterResource(self, request):  # noqa: N802 - gRPC method name
            ignored[request.name] = list(request.ignoreChanges)
            return super().RegisterResource(request)

    monkeypatch.setattr(mocks, "Recorder", Recorder)
    rec = mocks.evaluate(stack_raw("dev"), "dev")
    net = rec.named("network")
    assert net.inputs["options"]["com.docker.network.enable_ipv4"] == "true"
    assert net.inputs["options"]["com.docker.network.enable_ipv6"] == "false"
    assert ignored["network"] == ["options"]
