"""Host preflight against fake docker/kind and a fake /proc."""

from __future__ import annotations

import pytest

from stacks import preflight
from stacks.planner import load_plan
from tests.fakes import FakeBin
from tests.helpers import stack_raw


@pytest.fixture
def plan():
    return load_plan(stack_raw("dev"), stack="dev")


@pytest.fixture
def proc_ok(tmp_path):
    d = tmp_path / "inotify"
    d.mkdir()
    (d / "max_user_watches").write_text("524288\n")
    (d / "max_user_instances").write_text("512\n")
    return d


def host(proc):
    return preflight.Host(proc_sys=proc)


def test_healthy_host_passes(tmp_path, monkeypatch, plan, proc_ok):
    FakeBin(tmp_path, networks=[{"Name": "bridge", "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]}}]).activate(
        monkeypatch)
    assert preflight.check(plan, host(proc_ok)) == []


def test_every_problem_is_reported_at_once(tmp_path, monkeypatch, plan):
    proc = tmp_path / "inotify"
    proc.mkdir()
    (proc / "max_user_watches").write_text("8192\n")
    (proc / "max_user_instances").write_text("128\n")
    FakeBin(
        tmp_path,
        kind_version="kind v0.20.0 go1.20.4 linux/amd64",
        networks=[{"Name": "lab", "Labels": {}, "IPAM": {"Config": [{"Subnet": "172.30.5.0/24"}]}}],
    ).activate(monkeypatch)
    with pytest.raises(preflight.PreflightError) as err:
        preflight.run(plan, host(proc))
    text = str(err.value)
    assert "kind v0.20.0 is too old" in text and "v0.30.0" in text
    assert "sudo sysctl -w fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512" in text
    assert "clashes with docker network 'lab'" in text
    assert len(err.value.problems) == 3


def test_docker_unreachable(tmp_path, monkeypatch, plan, proc_ok):
    FakeBin(tmp_path, docker_down=True).activate(monkeypatch)
    problems = preflight.check(plan, host(proc_ok))
    assert len(problems) == 1 and "docker is not reachable" in problems[0]
    assert "Is the docker daemon running?" in problems[0]


def test_missing_tools(tmp_path, monkeypatch, plan, proc_ok):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    problems = preflight.check(plan, host(proc_ok))
    assert any("docker CLI not found" in p for p in problems)
    assert any("kind not found on PATH" in p for p in problems)


def test_own_network_is_not_a_clash_but_a_foreign_one_with_our_name_is(tmp_path, monkeypatch, plan, proc_ok):
    ours = {"Name": "kindmesh-dev", "Labels": {"kindmesh.io/stack": plan.stack_label},
            "IPAM": {"Config": [{"Subnet": "172.30.0.0/16"}]}}
    FakeBin(tmp_path, networks=[ours]).activate(monkeypatch)
    assert preflight.check(plan, host(proc_ok)) == []

    foreign = dict(ours, Labels={})
    FakeBin(tmp_path, networks=[foreign]).activate(monkeypatch)
    problems = preflight.check(plan, host(proc_ok))
    assert any("exists but is not this stack's" in p for p in problems)


def test_existing_kind_cluster_owned_or_not(tmp_path, monkeypatch, plan, proc_ok):
    FakeBin(tmp_path, clusters=["km-dev-us"],
            containers={"km-dev-us-control-plane": ["kindmesh-dev"]}).activate(monkeypatch)
    assert preflight.check(plan, host(proc_ok)) == []

    FakeBin(tmp_path, clusters=["km-dev-us"],
            containers={"km-dev-us-control-plane": ["kind"]}).activate(monkeypatch)
    problems = preflight.check(plan, host(proc_ok))
    assert len(problems) == 1
    assert "km-dev-us" in problems[0] and "kind delete cluster --name km-dev-us" in problems[0]


def test_single_cluster_skips_inotify(tmp_path, monkeypatch, proc_ok):
    (proc_ok / "max_user_watches").write_text("8192\n")
    FakeBin(tmp_path).activate(monkeypatch)
    one = load_plan({"clusters": [{"name": "solo", "id": 1}], "network": {"subnet": "172.30.0.0/16"}}, stack="dev")
    assert preflight.check(one, host(proc_ok)) == []


def test_kind_version_parsing():
    assert preflight.parse_kind_version("kind v0.30.0 go1.24.6 linux/amd64") == (0, 30, 0)
    assert preflight.parse_kind_version("kind v0.31.1-alpha go1.25") == (0, 31, 1)
    assert preflight.parse_kind_version("nonsense") is None
