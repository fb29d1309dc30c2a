"""`make upgrade`: the staged Cilium upgrade, with a fake `pulumi` on PATH (process boundary)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kindmesh.cli import upgrade
from kindmesh.core.config_raw import strip_namespace
from kindmesh.core.planner import load_plan
from tests.fake_apiserver import FakeApiServer, Reply, status
from tests.fake_pulumi import FakePulumi
from tests.helpers import ROOT

OLD, NEW = "1.19.6", "1.20.0"


def project(tmp_path: Path, stack: str = "trio", version: str | None = OLD, **per_cluster: str) -> Path:
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config = data["config"]
    if version is not None:
        config["kindmesh:cilium"] = {**(config.get("kindmesh:cilium") or {}), "version": version}
    for c in config["kindmesh:clusters"]:
        if c["name"] in per_cluster:
            c["cilium"] = {"version": per_cluster[c["name"]]}
    path = tmp_path / "proj"
    path.mkdir()
    (path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def config_of(proj: Path, stack: str = "trio") -> dict[str, Any]:
    return yaml.safe_load((proj / f"Pulumi.{stack}.yaml").read_text())["config"]


class FakeChecks:
    """Records what every check round expected; fails the rounds listed (1-based)."""

    def __init__(self, fail: dict[int, list[str]] | None = None):
        self.rounds: list[dict[str, str | None]] = []
        self.fail = fail or {}

    def __call__(self, expected, deadline):
        self.rounds.append(dict(expected))
        return self.fail.get(len(self.rounds), [])


@pytest.fixture
def fake(tmp_path, monkeypatch):
    def make(**state: Any) -> FakePulumi:
        f = FakePulumi(tmp_path, **state)
        monkeypatch.setenv("PULUMI", str(f.path))
        return f
    return make


def run(proj: Path, *args: str, checks: Any = None, stack: str = "trio") -> int:
    return upgrade.main(["--stack", stack, "--cwd", str(proj), *args], checks=checks)


def ups(f: FakePulumi) -> list[dict[str, Any]]:
    return [c["versions"] for c in f.calls() if c["args"][:1] == ["up"]]


def test_one_cluster_per_step_then_the_version_once(tmp_path, fake, capsys):
    proj, f, checks = project(tmp_path), fake(), FakeChecks()
    assert run(proj, "--cilium", NEW, checks=checks) == 0
    assert f.commands() == [
        ["config", "set", "--path", "kindmesh:clusters[0].cilium.version", NEW], ["up", "--yes"],
        ["config", "set", "--path", "kindmesh:clusters[1].cilium.version", NEW], ["up", "--yes"],
        ["config", "set", "--path", "kindmesh:clusters[2].cilium.version", NEW], ["up", "--yes"],
        ["config", "set", "--path", "kindmesh:cilium.version", NEW],
        ["config", "rm", "--path", "kindmesh:clusters[0].cilium.version"],
        ["config", "rm", "--path", "kindmesh:clusters[0].cilium"],
        ["config", "rm", "--path", "kindmesh:clusters[1].cilium.version"],
        ["config", "rm", "--path", "kindmesh:clusters[1].cilium"],
        ["config", "rm", "--path", "kindmesh:clusters[2].cilium.version"],
        ["config", "rm", "--path", "kindmesh:clusters[2].cilium"],
        ["preview", "--expect-no-changes"],
    ]
    # each `up` saw exactly one more cluster on the new version
    assert ups(f) == [{"stack": OLD, "clusters": [NEW, None, None]}, {"stack": OLD, "clusters": [NEW, NEW, None]},
                      {"stack": OLD, "clusters": [NEW, NEW, NEW]}]
    # every cluster checked after every step, each at the version it is configured for
    assert checks.rounds == [
        {"eu": OLD, "ap": OLD},  # before: the clusters the first step leaves alone
        {"us": NEW, "eu": OLD, "ap": OLD}, {"us": NEW, "eu": NEW, "ap": OLD}, {"us": NEW, "eu": NEW, "ap": NEW}]
    config = config_of(proj)
    assert config["kindmesh:cilium"] == {"version": NEW}
    assert all("cilium" not in c for c in config["kindmesh:clusters"])
    plan = load_plan(strip_namespace(config), stack="trio")
    assert {c.cilium_version for c in plan.clusters} == {NEW}


def test_waves_move_several_clusters_in_one_step(tmp_path, fake):
    proj, f = project(tmp_path), fake()
    assert run(proj, "--cilium", NEW, "--waves", "1;eu,3", checks=FakeChecks()) == 0
    assert ups(f) == [{"stack": OLD, "clusters": [NEW, None, None]}, {"stack": OLD, "clusters": [NEW, NEW, NEW]}]


def test_a_failed_up_stops_in_a_valid_mixed_state_and_says_how_to_go_on_or_back(tmp_path, fake, capsys):
    proj, f = project(tmp_path), fake(fail_ups=[2])
    assert run(proj, "--cilium", NEW, checks=FakeChecks()) == 1
    out = capsys.readouterr().out
    assert len(ups(f)) == 2 and f.commands()[-1] == ["up", "--yes"]  # nothing after the failure
    assert 'continue:  make upgrade CILIUM=1.20.0 STACK=trio CLUSTERS="2 3"' in out
    assert 'roll back: make upgrade CILIUM=1.19.6 STACK=trio CLUSTERS="2 1"' in out
    assert "us=1.20.0, eu=1.20.0, ap=1.19.6" in out
    load_plan(strip_namespace(config_of(proj)), stack="trio")  # a valid mesh as it stands

    # the printed rollback, run as printed, brings every cluster back and the file to one version
    f2 = fake()
    assert run(proj, "--cilium", OLD, "--clusters", "2 1", checks=FakeChecks()) == 0
    assert ups(f2) == [{"stack": OLD, "clusters": [NEW, OLD, None]}, {"stack": OLD, "clusters": [OLD, OLD, None]}]
    config = config_of(proj)
    assert config["kindmesh:cilium"] == {"version": OLD}
    assert all("cilium" not in c for c in config["kindmesh:clusters"])


def test_the_printed_continue_command_finishes_the_upgrade(tmp_path, fake, capsys):
    proj = project(tmp_path)
    fake(fail_ups=[2])
    assert run(proj, "--cilium", NEW, checks=FakeChecks()) == 1
    f = fake()
    assert run(proj, "--cilium", NEW, "--clusters", "2 3", checks=FakeChecks()) == 0
    assert ups(f) == [{"stack": OLD, "clusters": [NEW, NEW, None]}, {"stack": OLD, "clusters": [NEW, NEW, NEW]}]
    assert config_of(proj)["kindmesh:cilium"] == {"version": NEW}


def test_an_unhealthy_mesh_after_a_step_stops_the_same_way(tmp_path, fake, capsys):
    proj, f = project(tmp_path), fake()
    checks = FakeChecks(fail={2: ["eu: cilium-clustermesh lists ap (expected ap, us)"]})
    assert run(proj, "--cilium", NEW, checks=checks) == 1
    out = capsys.readouterr().out
    assert len(ups(f)) == 1 and "left the mesh unhealthy" in out and "cilium-clustermesh lists ap" in out
    assert 'continue:  make upgrade CILIUM=1.20.0 STACK=trio CLUSTERS="1 2 3"' in out
    assert 'roll back: make upgrade CILIUM=1.19.6 STACK=trio CLUSTERS="1"' in out


def test_a_downgrade_works_the_same_way(tmp_path, fake):
    proj, f = project(tmp_path, version=NEW), fake()
    assert run(proj, "--cilium", OLD, "--clusters", "3 2 1", checks=FakeChecks()) == 0
    assert ups(f) == [{"stack": NEW, "clusters": [None, None, OLD]}, {"stack": NEW, "clusters": [None, OLD, OLD]},
                      {"stack": NEW, "clusters": [OLD, OLD, OLD]}]
    assert config_of(proj)["kindmesh:cilium"] == {"version": OLD}


def test_nothing_changes_when_the_mesh_is_unhealthy_or_drifted_before_the_first_step(tmp_path, fake, capsys):
    proj, f = project(tmp_path, version=None), fake()  # relies on the default (now 1.20.0)
    checks = FakeChecks(fail={1: ["eu: cilium agents run 1.19.6 (expected 1.20.0)"]})
    assert run(proj, "--cilium", NEW, "--clusters", "1", checks=checks) == 1
    out = capsys.readouterr().out
    assert f.calls() == []
    assert "pulumi config set --stack trio --path 'kindmesh:cilium.version' <running version>" in out


@pytest.mark.parametrize("args,said", [
    (["--cilium", "1.18.0"], "Cilium 1.18.0 is not supported"),
    (["--cilium", NEW, "--clusters", "9"], "no cluster '9'"),
    (["--cilium", NEW, "--clusters", "1 1"], "listed twice"),
    (["--cilium", NEW, "--clusters", "1", "--waves", "2"], "not both"),
])
def test_bad_requests_change_nothing(tmp_path, fake, capsys, args, said):
    proj, f = project(tmp_path), fake()
    assert run(proj, *args, checks=FakeChecks()) == 2
    assert said in capsys.readouterr().err and f.calls() == []


def test_a_path_through_too_much_skew_is_refused_up_front(tmp_path, fake, capsys, monkeypatch):
    from kindmesh.core import versions

    monkeypatch.setitem(versions.CILIUM, (1, 21), versions.ChartLine(
        minor=(1, 21), charts={"1.21.0": {}}, k8s_window=((1, 34), (1, 37)), k8s_source="test"))
    proj, f = project(tmp_path), fake()
    assert run(proj, "--cilium", "1.21.0", checks=FakeChecks()) == 2
    err = capsys.readouterr().err
    assert "step 1 would leave the mesh invalid" in err and "kindmesh:clusters[0].cilium.version" in err
    assert f.calls() == []


def test_a_rewrite_that_would_change_something_is_reported(tmp_path, fake, capsys):
    proj = project(tmp_path)
    fake(preview_rc=1)
    assert run(proj, "--cilium", NEW, checks=FakeChecks()) == 1
    assert "--expect-no-changes` saw changes" in capsys.readouterr().out


def test_already_there_only_rewrites_the_file(tmp_path, fake):
    proj, f = project(tmp_path, us=NEW, eu=NEW, ap=NEW), fake()
    assert run(proj, "--cilium", NEW, checks=FakeChecks()) == 0
    assert ["up", "--yes"] not in f.commands() and f.commands()[-1] == ["preview", "--expect-no-changes"]
    assert config_of(proj)["kindmesh:cilium"] == {"version": NEW}


# ------------------------------------------------------------------ the checks, against API servers
def ds(version: str) -> dict[str, Any]:
    return {"kind": "DaemonSet", "metadata": {"generation": 1}, "spec": {"template": {"spec": {"containers": [
        {"name": "cilium-agent", "image": f"quay.io/cilium/cilium:v{version}"}]}}},
        "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "numberReady": 2,
                   "updatedNumberScheduled": 2}}


def deployment(name: str, version: str) -> dict[str, Any]:
    image = "quay.io/cilium/clustermesh-apiserver" if name == "clustermesh-apiserver" else f"quay.io/cilium/{name}"
    return {"kind": "Deployment", "metadata": {"generation": 1}, "spec": {"replicas": 1, "template": {"spec": {
        "containers": [{"name": "apiserver", "image": f"{image}:v{version}@sha256:{'0' * 64}"}]}}},
        "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1}}


def cluster_api(version_of, peers: list[str]):
    """A cluster's API as the checks read it; ``version_of()`` says what it runs right now."""
    def route(method: str, path: str, body: Any) -> Any:
        base = path.split("?")[0]
        v = version_of()
        if base == "/apis/apps/v1/namespaces/kube-system/daemonsets/cilium":
            return ds(v)
        if base.startswith("/apis/apps/v1/namespaces/kube-system/deployments/"):
            name = base.rsplit("/", 1)[1]
            if name.startswith("hubble"):
                return status(404, "not found", "NotFound")
            return deployment(name, v)
        if base == "/api/v1/namespaces/kube-system/secrets/cilium-clustermesh":
            return {"data": {p: "Zm9v" for p in peers}}
        if base.startswith("/apis/apps/v1/namespaces/kube-system/daemonsets"):
            return status(404, "not found", "NotFound")
        return Reply(404, {"kind": "Status", "code": 404, "message": f"no route {path}"})
    return route


def test_kube_checks_pass_when_every_cluster_runs_its_version_with_its_peers():
    with FakeApiServer(cluster_api(lambda: NEW, ["eu"])) as us, \
            FakeApiServer(cluster_api(lambda: OLD, ["us"])) as eu:
        checks = upgrade.KubeChecks({"us": us.kubeconfig(), "eu": eu.kubeconfig()},
                                    {"us": ["eu"], "eu": ["us"]}, log=lambda m: None)
        import time
        assert checks({"us": NEW, "eu": OLD}, time.monotonic() + 20) == []


def test_kube_checks_name_what_they_last_saw_when_the_deadline_passes():
    import time
    with FakeApiServer(cluster_api(lambda: OLD, ["ap"])) as us:
        checks = upgrade.KubeChecks({"us": us.kubeconfig()}, {"us": ["eu", "ap"]}, backoff=(0.05, 0.1),
                                    log=lambda m: None)
        start = time.monotonic()
        (problem,) = checks({"us": NEW}, start + 0.6)
        assert time.monotonic() - start < 5
    assert problem.startswith("us: cilium agents run 1.19.6 (expected 1.20.0)")
    assert "clustermesh-apiserver run 1.19.6" in problem
    assert "cilium-clustermesh lists ap (expected ap, eu)" in problem and "deadline reached" in problem


def test_the_command_end_to_end_against_simulated_api_servers(tmp_path):
    """`python -m kindmesh.cli.upgrade` with only a fake `pulumi` on PATH and the kubeconfigs the
    stack exports pointing at simulated API servers that run what the stack file says."""
    proj = project(tmp_path, stack="dev")

    def running(name: str):
        def now() -> str:
            config = config_of(proj, "dev")
            own = next(c for c in config["kindmesh:clusters"] if c["name"] == name).get("cilium") or {}
            return own.get("version") or (config.get("kindmesh:cilium") or {}).get("version") or NEW
        return now

    with FakeApiServer(cluster_api(running("us"), ["eu"])) as us, \
            FakeApiServer(cluster_api(running("eu"), ["us"])) as eu:
        outputs = {"kubeconfigs": {"us": us.kubeconfig(), "eu": eu.kubeconfig()},
                   "verification": {"clusters": [{"name": "us", "peers": ["eu"]}, {"name": "eu", "peers": ["us"]}]}}
        f = FakePulumi(tmp_path, outputs=outputs)
        env = dict(os.environ, PULUMI=str(f.path), PYTHONPATH=str(ROOT))
        res = subprocess.run([sys.executable, "-m", "kindmesh.cli.upgrade", "--stack", "dev", "--cwd", str(proj),
                              "--cilium", NEW, "--timeout", "30"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [c["versions"] for c in f.calls() if c["args"][:1] == ["up"]] == [
        {"stack": OLD, "clusters": [NEW, None]}, {"stack": OLD, "clusters": [NEW, NEW]}]
    assert "us: ready, Cilium 1.20.0, ClusterMesh peers eu" in res.stderr
    assert config_of(proj, "dev")["kindmesh:cilium"] == {"version": NEW}


def test_a_kubeconfig_the_client_cannot_use_is_a_problem_not_a_traceback():
    import time
    checks = upgrade.KubeChecks({"us": "not: a kubeconfig"}, {"us": []}, log=lambda m: None)
    (problem,) = checks({"us": NEW}, time.monotonic() + 5)
    assert problem.startswith("us: cannot use its kubeconfig from the stack's outputs")
    assert checks({"eu": NEW}, time.monotonic() + 5) == ["eu: no kubeconfig in the stack's outputs"]


def test_a_stack_on_the_old_default_is_not_rewritten_to_the_new_one(tmp_path, fake, capsys):
    """No pinned version, clusters running 1.19.6 (the old default), CILIUM=1.20.0 (the new
    default): nothing to step, but the file must not be pinned to what the clusters do not run."""
    proj, f = project(tmp_path, version=None), fake()
    checks = FakeChecks(fail={1: ["us: cilium agents run 1.19.6 (expected 1.20.0)",
                                  "eu: cilium agents run 1.19.6 (expected 1.20.0)"]})
    assert run(proj, "--cilium", NEW, checks=checks) == 1
    assert checks.rounds == [{"us": NEW, "eu": NEW, "ap": NEW}]
    assert f.calls() == [] and "kindmesh:cilium" not in config_of(proj)
    assert "pulumi config set --stack trio --path 'kindmesh:cilium.version' <running version>" in \
        capsys.readouterr().out


def test_a_cluster_running_other_than_its_own_pin_is_named_with_its_key(tmp_path, fake, capsys):
    proj, f = project(tmp_path, us=NEW), fake()
    checks = FakeChecks(fail={1: ["us: cilium agents run 1.19.6 (expected 1.20.0)"]})
    assert run(proj, "--cilium", NEW, "--clusters", "2", checks=checks) == 1
    out = capsys.readouterr().out
    assert f.calls() == []
    assert "us runs another version than Pulumi.trio.yaml says" in out
    assert "--path 'kindmesh:clusters[0].cilium.version' <running version>" in out


# ------------------------------------------------------------------ boundaries (issue 25: unpinned mutants)
def test_finishing_removes_only_the_version_and_keeps_a_clusters_own_values(tmp_path, fake):
    """The rewrite removes ``clusters[i].cilium.version``; the whole ``cilium`` section only when the
    version was all it held: a cluster's ``cilium.values`` survive in the user's stack file."""
    proj = project(tmp_path, us=OLD)
    path = proj / "Pulumi.trio.yaml"
    data = yaml.safe_load(path.read_text())
    us = next(c for c in data["config"]["kindmesh:clusters"] if c["name"] == "us")
    us["cilium"] = {"version": OLD, "values": {"operator": {"replicas": 2}}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    f = fake()
    assert run(proj, "--cilium", NEW, checks=FakeChecks()) == 0
    assert ["config", "rm", "--path", "kindmesh:clusters[0].cilium.version"] in f.commands()
    assert ["config", "rm", "--path", "kindmesh:clusters[0].cilium"] not in f.commands()
    config = config_of(proj)
    us_after = next(c for c in config["kindmesh:clusters"] if c["name"] == "us")
    assert us_after["cilium"] == {"values": {"operator": {"replicas": 2}}}
    assert config["kindmesh:cilium"]["version"] == NEW


class _Api:
    """The three objects ``mesh_state`` reads, as the Kubernetes API would return them."""

    def __init__(self, version: str, secret_keys: list[str]):
        self.objects = {upgrade.DS_PATH: ds(version), upgrade.APISERVER_PATH: deployment("clustermesh-apiserver", version),
                        upgrade.MESH_SECRET_PATH: {"data": {k: "Zm9v" for k in secret_keys}}}

    def get(self, path: str) -> Any:
        return type("Reply", (), {"body": self.objects[path]})()


def test_an_extra_unplanned_peer_in_the_mesh_config_is_reported():
    assert upgrade.mesh_state(_Api(NEW, ["eu"]), NEW, ["eu"]) is None  # exactly the planned peers
    problem = upgrade.mesh_state(_Api(NEW, ["eu", "rogue"]), NEW, ["eu"])
    assert problem == "cilium-clustermesh lists eu, rogue (expected eu)"
    assert upgrade.mesh_state(_Api(NEW, ["rogue"]), NEW, []) == "cilium-clustermesh lists rogue (expected none)"
