"""The gates in the stack graph: each a `local.Command` process, wired, secret only where it must be."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

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
    """Only the quick kind-cluster readers stay in the 4-thread dynamic-provider process."""
    names = {r.name for r in rec.of_type(DYNAMIC)}
    assert names == {f"{c.name}-kind" for c in rec.plan.clusters}


def test_each_gate_is_its_own_process_started_in_the_project_root(rec):
    for c in rec.plan.clusters:
        for suffix, (gate, component, release) in GATES.items():
            r = rec.named(f"{c.name}-{suffix}")
            assert r.type == COMMAND
            run = f"{shlex.quote(sys.executable)} -m kindmesh.deploy.gate_cmd {gate}"
            assert r.inputs["create"] == run and r.inputs["update"] == run  # update: wait again
            assert "delete" not in r.inputs  # nothing to undo
            assert (Path(r.inputs["dir"]) / "kindmesh" / "deploy" / "gate_cmd.py").is_file()
            assert set(r.inputs["environment"]) == {KUBECONFIG_ENV, SPEC_ENV}
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
    """pulumi-command 1.2.1: a changed `triggers` value runs `update` (set here), else replaces."""
    for c in rec.plan.clusters:
        release_status_revision = 1  # what the mocks report for every helm Release
        assert rec.named(f"{c.name}-cilium-rollout").inputs["triggers"] == [release_status_revision]
        assert rec.named(f"{c.name}-metallb-webhook").inputs["triggers"] == [rec.plan.config.metallb.version]


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
