"""The Pulumi program itself (__main__.py) under mocks: config in, clean errors, preflight first."""

from __future__ import annotations

import json
import runpy

import pulumi
import pytest
from pulumi.runtime import config as rconfig
from pulumi.runtime.settings import ROOT as ROOT_RESOURCE

from tests.helpers import ROOT, stack_raw
from tests.mocks import Mocks, Recorder


def run_program(raw: dict, monkeypatch, preflight_problems=None, seen=None, fake_preflight=True):
    calls = []
    mocks = Mocks()
    recorder = Recorder(mocks)
    if seen is not None:
        seen["recorder"] = recorder

    def record_preflight(plan):
        calls.append((plan.stack, len(recorder.registered)))
        if preflight_problems:
            from kindmesh.stacks.preflight import PreflightError

            raise PreflightError(preflight_problems)

    if fake_preflight:
        monkeypatch.setattr("kindmesh.stacks.preflight.run", record_preflight)
    ROOT_RESOURCE.set(None)
    pulumi.runtime.set_mocks(mocks, project="kindmesh", stack="dev", preview=False, monitor=recorder)
    rconfig.set_all_config({f"kindmesh:{k}": json.dumps(v) for k, v in raw.items()})

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    try:
        program()
    finally:
        rconfig.set_all_config({})
    return recorder, calls


def test_program_reads_stack_config_runs_preflight_first_and_builds(monkeypatch):
    recorder, calls = run_program(stack_raw("dev"), monkeypatch)
    assert calls == [("dev", 0)]  # preflight ran before any resource was registered
    names = {r.name for r in recorder.registered}
    assert {"network", "us-kind", "eu-kind", "us-cilium", "eu-pool"} <= names


def test_bad_config_is_a_clean_run_error_before_any_resource(monkeypatch):
    raw = {"clusters": [{"name": "us", "id": 0}, {"name": "us"}], "mesh": {"topology": "hub"}}
    seen = {}
    with pytest.raises(pulumi.RunError) as err:
        run_program(raw, monkeypatch, seen=seen)
    assert seen["recorder"].registered == []
    text = str(err.value)
    assert "kindmesh:clusters[0].id" in text and "kindmesh:clusters[1].name" in text
    assert "kindmesh:mesh.hub" in text
    assert "Traceback" not in text


def test_preflight_failure_is_a_clean_run_error_and_creates_nothing(monkeypatch):
    seen = {}
    with pytest.raises(pulumi.RunError, match="docker is not reachable"):
        run_program(stack_raw("dev"), monkeypatch, ["docker is not reachable: try docker info"], seen)
    assert seen["recorder"].registered == []


def test_real_preflight_is_a_no_op_under_mocks(tmp_path, monkeypatch):
    """A mocked engine creates nothing on this host, so the host checks do not run."""
    from tests.fakes import FakeBin

    fake = FakeBin(tmp_path, docker_down=True)
    fake.activate(monkeypatch)
    recorder, _ = run_program(stack_raw("dev"), monkeypatch, fake_preflight=False)
    assert fake.calls() == []
    assert any(r.name == "us-kind" for r in recorder.registered)
