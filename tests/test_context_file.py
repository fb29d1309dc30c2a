"""The stack's kubeconfig file: contexts by cluster name, private modes, written/removed by the
stack graph (under mocks) and by the module at the process boundary."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from kindmesh.deploy import context_file as kc
from tests.helpers import ROOT, copy_sources, stack_raw
from tests.mocks import evaluate


def kind_kubeconfig(kind_name: str, port: int) -> str:
    ctx = f"kind-{kind_name}"
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": ctx, "preferences": {},
        "clusters": [{"name": ctx, "cluster": {"server": f"https://127.0.0.1:{port}",
                                               "certificate-authority-data": "Q0E="}}],
        "users": [{"name": ctx, "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}],
        "contexts": [{"name": ctx, "context": {"cluster": ctx, "user": ctx}}],
    })


TWO = {"us": kind_kubeconfig("km-dev-us", 40001), "eu": kind_kubeconfig("km-dev-eu", 40002)}


def test_add_gives_a_private_file_with_a_context_per_cluster_name_and_kind_name(tmp_path):
    for name, text in TWO.items():
        path = kc.add("dev", name, text, root=tmp_path)
    assert path == tmp_path / ".kindmesh" / "dev" / "kubeconfig"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    cfg = yaml.safe_load(path.read_text())
    contexts = {c["name"]: c["context"] for c in cfg["contexts"]}
    assert set(contexts) == {"us", "eu", "kind-km-dev-us", "kind-km-dev-eu"}
    servers = {c["name"]: c["cluster"]["server"] for c in cfg["clusters"]}
    assert servers[contexts["us"]["cluster"]] == "https://127.0.0.1:40001"
    assert servers[contexts["eu"]["cluster"]] == "https://127.0.0.1:40002"
    users = {u["name"] for u in cfg["users"]}
    assert all(c["user"] in users for c in contexts.values())
    assert cfg["current-context"] == "us"
    assert [p.name for p in path.parent.iterdir()] == ["kubeconfig"]  # no temp file left
    assert cfg == kc.merge(TWO)


def test_add_again_replaces_drop_removes_one_cluster_and_the_last_drop_cleans_up(tmp_path):
    for name, text in TWO.items():
        kc.add("dev", name, text, root=tmp_path)
    kc.add("dev", "us", kind_kubeconfig("km-dev-us", 41001), root=tmp_path)  # recreated cluster
    cfg = yaml.safe_load((tmp_path / ".kindmesh/dev/kubeconfig").read_text())
    assert len(cfg["clusters"]) == 2 and len(cfg["contexts"]) == 4
    assert "https://127.0.0.1:41001" in {c["cluster"]["server"] for c in cfg["clusters"]}
    kc.add("trio", "us", TWO["us"], root=tmp_path)
    path = kc.drop("dev", "us", root=tmp_path)
    cfg = yaml.safe_load(path.read_text())
    assert {c["name"] for c in cfg["contexts"]} == {"eu", "kind-km-dev-eu"}
    assert [c["name"] for c in cfg["clusters"]] == ["kind-km-dev-eu"] and cfg["current-context"] == "eu"
    kc.drop("dev", "eu", root=tmp_path)
    assert not (tmp_path / ".kindmesh" / "dev").exists()
    assert (tmp_path / ".kindmesh" / "trio" / "kubeconfig").exists()  # another stack's file stays
    kc.drop("trio", "us", root=tmp_path)
    assert not (tmp_path / ".kindmesh").exists()
    kc.drop("trio", "us", root=tmp_path)  # idempotent
    kc.write("dev", TWO, root=tmp_path)
    kc.remove("dev", root=tmp_path)
    assert not (tmp_path / ".kindmesh").exists()


def test_concurrent_adds_and_drops_lose_nothing(tmp_path):
    """The engine runs the per-cluster commands in parallel processes."""
    project = _project(tmp_path)
    names = [f"c{i}" for i in range(5)]
    procs = [subprocess.Popen([sys.executable, "-m", "kindmesh.deploy.context_file", "add", "--stack", "dev", "--cluster", n],
                              cwd=project, env=dict(os.environ, **{kc.ENV: kind_kubeconfig(f"km-dev-{n}", 1)}))
             for n in names]
    assert all(p.wait(60) == 0 for p in procs)
    cfg = yaml.safe_load((project / ".kindmesh/dev/kubeconfig").read_text())
    assert {c["name"] for c in cfg["contexts"]} >= set(names)
    procs = [subprocess.Popen([sys.executable, "-m", "kindmesh.deploy.context_file", "drop", "--stack", "dev", "--cluster", n],
                              cwd=project) for n in names]
    assert all(p.wait(60) == 0 for p in procs)
    assert not (project / ".kindmesh").exists()


def test_bad_input_is_a_clear_error():
    with pytest.raises(kc.KubeconfigError, match="cluster 'us'"):
        kc.merge({"us": "just some junk"})
    with pytest.raises(kc.KubeconfigError, match="cluster 'us'"):
        kc.merge({"us": "apiVersion: v1\ncontexts: []\n"})
    with pytest.raises(kc.KubeconfigError):
        kc.path_for("../escape")


def _project(tmp_path):
    project = tmp_path / "p"
    copy_sources(project)
    return project


def test_module_cli_adds_drops_and_fails_cleanly(tmp_path):
    project = _project(tmp_path)
    run = lambda *a, **kw: subprocess.run([sys.executable, "-m", "kindmesh.deploy.context_file", *a], cwd=project,  # noqa: E731
                                          capture_output=True, text=True, check=False, **kw)
    res = run("add", "--stack", "dev", "--cluster", "us", env=dict(os.environ, **{kc.ENV: TWO["us"]}))
    assert res.returncode == 0, res.stderr
    assert "client-key-data" not in res.stdout + res.stderr
    assert (project / ".kindmesh/dev/kubeconfig").exists()
    bad = run("add", "--stack", "dev", "--cluster", "eu", env=dict(os.environ, **{kc.ENV: "junk"}))
    assert bad.returncode == 1 and "cluster 'eu'" in bad.stderr and "Traceback" not in bad.stderr
    res = run("write", "--stack", "dev", "--stdin", input=json.dumps(TWO))
    assert res.returncode == 0
    bad = run("write", "--stack", "dev", "--stdin", input="{not json")
    assert bad.returncode == 1 and "not JSON" in bad.stderr
    assert run("remove", "--stack", "dev").returncode == 0
    assert not (project / ".kindmesh").exists()


def test_the_stack_registers_one_file_command_per_cluster_with_only_the_kubeconfig_secret():
    rec = evaluate(stack_raw("dev"), "dev")
    for c in rec.plan.clusters:
        cmd = rec.named(f"{c.name}-kubeconfig")
        assert cmd.type == "command:local:Command"
        where = f"--root {ROOT}"  # the Pulumi project directory (the program's working directory)
        assert cmd.inputs["create"].endswith(f"-m kindmesh.deploy.context_file add --stack dev --cluster {c.name} {where}")
        assert cmd.inputs["update"] == cmd.inputs["create"]
        assert cmd.inputs["delete"].endswith(f"-m kindmesh.deploy.context_file drop --stack dev --cluster {c.name} {where}")
        assert cmd.inputs["dir"] == str(ROOT)
        assert cmd.secret_inputs == {"environment"}
        assert cmd.inputs["environment"] == {kc.ENV: rec.outputs["kubeconfigs"][c.name]}
        assert rec.depends_on(cmd, rec.named(f"{c.name}-kind"))
    # every context the `contexts` output names exists in the file written from kind's kubeconfigs
    contexts = {c["name"] for c in kc.merge({c.name: kind_kubeconfig(c.kind_name, 1) for c in rec.plan.clusters})[
        "contexts"]}
    assert set(rec.stack_outputs["contexts"].values()) <= contexts
    assert {c.name for c in rec.plan.clusters} <= contexts
    assert rec.stack_outputs["kubeconfigFile"] == str(ROOT / ".kindmesh" / "dev" / "kubeconfig")


def test_the_directory_ignores_itself_for_projects_without_our_gitignore(tmp_path):
    """A program using the Mesh component writes keys into *its* project: never committable."""
    kc.add("dev", "us", TWO["us"], tmp_path)
    assert (tmp_path / ".kindmesh" / ".gitignore").read_text().splitlines()[-1] == "*"
    kc.drop("dev", "us", tmp_path)
    assert not (tmp_path / ".kindmesh").exists()  # the marker goes with the last stack
    (tmp_path / ".kindmesh").mkdir()
    (tmp_path / ".kindmesh" / ".gitignore").write_text("mine\n")
    kc.add("dev", "us", TWO["us"], tmp_path)
    kc.drop("dev", "us", tmp_path)
    assert (tmp_path / ".kindmesh" / ".gitignore").read_text() == "mine\n"  # never touch the user's
