"""Host preflight against fake docker/kind and a fake /proc."""

from __future__ import annotations

import pytest

from kindmesh.core.planner import load_plan
from kindmesh.stacks import preflight
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


def test_mtu_fact_is_read_the_way_kind_reads_it(tmp_path, monkeypatch, plan, proc_ok):
    fake = FakeBin(tmp_path, bridge_mtu=1400)
    fake.activate(monkeypatch)
    facts = preflight.run(plan, host(proc_ok))
    assert facts == preflight.HostFacts(mtu=1400)
    inspect = [c["args"] for c in fake.calls("docker") if c["args"][:3] == ["network", "inspect", "bridge"]]
    assert inspect == [["network", "inspect", "bridge", "-f", '{{ index .Options "com.docker.network.driver.mtu" }}']]

    FakeBin(tmp_path).activate(monkeypatch)  # option not set: "<no value>"
    assert preflight.run(plan, host(proc_ok)) == preflight.HostFacts(mtu=0)


def test_preflight_is_a_no_op_under_mocks_and_returns_no_facts(monkeypatch):
    monkeypatch.setattr(preflight, "under_pulumi_mocks", lambda: True)
    assert preflight.run(load_plan(stack_raw("dev"), stack="dev")) is None


def _exe(path, content, mode=0o755):
    path.write_bytes(content)
    path.chmod(mode)
    return str(path)


def test_tools_that_cannot_run_are_clear_problems_not_tracebacks(tmp_path, monkeypatch, plan, proc_ok):
    FakeBin(tmp_path).activate(monkeypatch)
    docker_dir = tmp_path / "docker-is-a-dir"
    docker_dir.mkdir()
    kind = _exe(tmp_path / "kind-arm", b"\x7fELF\x02\x01\x01not-for-this-cpu")
    problems = preflight.check(plan, preflight.Host(docker=str(docker_dir), kind=kind, proc_sys=proc_ok))
    assert len(problems) == 2
    assert "permission denied" in problems[0] and "docs.docker.com" in problems[0]
    assert "Exec format error" in problems[1] and "uname -m" in problems[1]


def test_invalid_utf8_and_timeouts_in_the_preflight(tmp_path, monkeypatch, plan, proc_ok):
    FakeBin(tmp_path).activate(monkeypatch)
    kind = _exe(tmp_path / "kind-junk", b"#!/bin/sh\nprintf 'garbage \\377\\376\\n'\n")
    docker = _exe(tmp_path / "docker-slow", b"#!/bin/sh\nexec sleep 30\n")
    problems = preflight.check(plan, preflight.Host(docker=docker, kind=kind, proc_sys=proc_ok, timeout=1))
    assert len(problems) == 2
    assert "docker" in problems[0] and "did not finish within 1s" in problems[0]
    assert "`kind version` did not answer as expected: garbage \ufffd" in problems[1]


# ------------------------------------------------------------------ the live network (issue 20)
def _ours(plan, subnet="172.30.0.0/16", **extra):
    return {"Name": plan.network.name, "Labels": {"kindmesh.io/stack": plan.stack_label},
            "IPAM": {"Config": [{"Subnet": subnet, "Gateway": subnet.replace("0.0/16", "0.1")}]}, "Options": {},
            **extra}


def test_a_changed_subnet_on_a_live_stack_is_refused_before_anything_is_registered(tmp_path, monkeypatch, plan,
                                                                                   proc_ok):
    fake = FakeBin(tmp_path, networks=[_ours(plan, "172.29.0.0/16")])
    fake.activate(monkeypatch)
    with pytest.raises(preflight.PreflightError) as err:
        preflight.run(plan, host(proc_ok))
    text = str(err.value)
    assert "kindmesh:network.subnet is 172.30.0.0/16" in text and "'kindmesh-dev' has 172.29.0.0/16" in text
    assert "make destroy STACK=dev" in text and "make new-stack" in text
    assert len(err.value.problems) == 1  # its own network is not also "a clash"


def test_a_changed_daemon_mtu_on_a_live_stack_is_refused(tmp_path, monkeypatch, plan, proc_ok):
    FakeBin(tmp_path, networks=[_ours(plan)], bridge_mtu=1400).activate(monkeypatch)
    problems = preflight.check(plan, host(proc_ok))
    assert len(problems) == 1 and "default MTU is now 1400" in problems[0] and "MTU 1500" in problems[0]
    assert "daemon.json" in problems[0] and "make destroy STACK=dev" in problems[0]
    live_1400 = _ours(plan, Options={"com.docker.network.driver.mtu": "1400"})
    FakeBin(tmp_path, networks=[live_1400], bridge_mtu=1400).activate(monkeypatch)
    assert preflight.check(plan, host(proc_ok)) == []  # unchanged: fine
    FakeBin(tmp_path, networks=[live_1400]).activate(monkeypatch)  # daemon MTU option unset now
    assert preflight.check(plan, host(proc_ok)) == []  # unknown daemon MTU: nothing claimed
    FakeBin(tmp_path, networks=[live_1400], bridge_mtu=1500).activate(monkeypatch)
    assert "default MTU is now 1500" in preflight.check(plan, host(proc_ok))[0]


def test_a_renamed_network_of_a_live_stack_is_refused(tmp_path, monkeypatch, plan, proc_ok):
    FakeBin(tmp_path, networks=[_ours(plan, Name="kindmesh-old")]).activate(monkeypatch)
    problems = preflight.check(plan, host(proc_ok))
    assert len(problems) == 1 and problems[0].startswith("kindmesh:network.name")
    assert "'kindmesh-old'" in problems[0] and "make destroy STACK=dev" in problems[0]


def test_inotify_counts_kind_clusters_only(tmp_path, monkeypatch, proc_ok):
    """Existing clusters run elsewhere: one kind cluster beside them is fine on the defaults."""
    from tests.test_existing import kubeconfig

    (proc_ok / "max_user_watches").write_text("8192\n")
    FakeBin(tmp_path).activate(monkeypatch)
    raw = stack_raw("dev")
    raw["clusters"] = raw["clusters"][:1] + [dict(stack_raw("remote")["clusters"][0], id=11, kubeconfig=kubeconfig())]
    raw["mesh"] = {"topology": "full", "routable": True}
    mixed = load_plan(raw, stack="dev")
    assert [c.source for c in mixed.clusters] == ["kind", "existing"]
    assert not [p for p in preflight.check(mixed, host(proc_ok)) if "inotify" in p]
    two_kind = load_plan(stack_raw("dev"), stack="dev")
    assert [p for p in preflight.check(two_kind, host(proc_ok)) if "inotify" in p]


# ------------------------------------------------------------------ kind releases and node images
@pytest.mark.parametrize("release", ["v0.30.0", "v0.31.0", "v0.32.0", "v0.33.0", "v0.34.1"])
def test_installed_kind_is_read_and_any_release_from_v030_passes(tmp_path, monkeypatch, proc_ok, release):
    FakeBin(tmp_path, kind_version=f"kind {release} go1.25.1 linux/amd64").activate(monkeypatch)
    found = preflight.installed_kind_version(host(proc_ok))
    assert found == tuple(int(x) for x in release[1:].split("."))
    plan = load_plan(stack_raw("dev"), stack="dev", kind_version=found)
    assert preflight.check(plan, host(proc_ok)) == []


def test_a_kind_older_than_v030_is_refused_with_the_fix(tmp_path, monkeypatch, proc_ok, plan):
    FakeBin(tmp_path, kind_version="kind v0.29.0 go1.24.2 linux/amd64").activate(monkeypatch)
    (problem,) = preflight.check(plan, host(proc_ok))
    assert "kind v0.29.0 is too old" in problem and "v0.30.0 or newer" in problem
    assert "https://kind.sigs.k8s.io/docs/user/quick-start/#installation" in problem
    assert "v0.33.0 -> kindest/node:v1.37.0" in problem


def test_a_kind_upgrade_under_running_clusters_is_stopped_before_it_recreates_them(tmp_path, monkeypatch, proc_ok):
    old_image = "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"
    state = dict(clusters=["km-dev-us"], containers={"km-dev-us-control-plane": ["kindmesh-dev"]},
                 node_images={"km-dev-us-control-plane": old_image},
                 kind_version="kind v0.31.0 go1.25.1 linux/amd64")
    FakeBin(tmp_path, **state).activate(monkeypatch)
    plan = load_plan(stack_raw("dev"), stack="dev", kind_version=(0, 31, 0))
    (problem,) = preflight.check(plan, host(proc_ok))
    assert "runs node image " + old_image in problem and "would delete and recreate" in problem
    assert f"pulumi config set --stack dev --path 'kindmesh:kind.nodeImage' '{old_image}'" in problem
    # the same kind release as the cluster's: nothing to say
    same = load_plan(stack_raw("dev"), stack="dev", kind_version=(0, 30, 0))
    FakeBin(tmp_path, **dict(state, kind_version="kind v0.30.0")).activate(monkeypatch)
    assert preflight.check(same, host(proc_ok)) == []
    # a node image the user set is theirs to change
    pinned = load_plan(dict(stack_raw("dev"), kind={"nodeImage": "kindest/node:v1.35.0@sha256:" + "1" * 64}),
                       stack="dev", kind_version=(0, 31, 0))
    FakeBin(tmp_path, **state).activate(monkeypatch)
    assert preflight.check(pinned, host(proc_ok)) == []


def test_the_program_plans_for_the_kind_it_finds(tmp_path, monkeypatch):
    from kindmesh.stacks import composition

    fake = FakeBin(tmp_path, kind_version="kind v0.31.0 go1.25.1 linux/amd64")
    fake.activate(monkeypatch)
    monkeypatch.setattr(preflight, "under_pulumi_mocks", lambda: False)
    assert composition.detect_kind_version(stack_raw("dev")) == (0, 31, 0)
    assert len(fake.calls("kind")) == 1
    existing_only = {"clusters": [{"name": "k3s", "id": 1, "source": "existing"}]}
    assert composition.detect_kind_version(existing_only) is None  # kind is not needed: not asked
    assert len(fake.calls("kind")) == 1
    monkeypatch.setattr(preflight, "under_pulumi_mocks", lambda: True)
    assert composition.detect_kind_version(stack_raw("dev")) is None


def test_a_node_image_is_the_same_by_tag_when_one_side_has_no_digest():
    pinned = "kindest/node:v1.34.0@sha256:" + "7" * 64
    assert preflight.same_image("kindest/node:v1.34.0", pinned)
    assert preflight.same_image(pinned, pinned)
    assert not preflight.same_image(pinned, "kindest/node:v1.34.0@sha256:" + "8" * 64)
    assert not preflight.same_image("kindest/node:v1.35.0", pinned)


def test_a_foreign_network_whose_subnet_contains_the_stacks_is_named():
    """Overlap both ways: a wider foreign subnet around the stack's clashes as much as one inside it."""
    plan = load_plan({"clusters": [{"name": "solo", "id": 1}], "network": {"subnet": "172.30.0.0/16"}}, stack="dev")
    wide = {"Name": "wide", "Labels": {}, "IPAM": {"Config": [{"Subnet": "172.16.0.0/12"}]}}
    (problem,) = preflight.network_problems(plan, [wide], 1500)
    assert "kindmesh:network.subnet 172.30.0.0/16 clashes with docker network 'wide' (172.16.0.0/12)" in problem
    beside = {"Name": "beside", "Labels": {}, "IPAM": {"Config": [{"Subnet": "172.31.0.0/16"}]}}
    assert preflight.network_problems(plan, [beside], 1500) == []
