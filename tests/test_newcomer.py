"""A newcomer's mistakes get clear errors (issue 20): a near miss of the ``kindmesh:`` namespace,
docker0's subnet, and the public import names of the components."""

from __future__ import annotations

import json
import re
import runpy

import pulumi
import pytest
import yaml
from pulumi.runtime import config as rconfig
from pulumi.runtime.settings import ROOT as ROOT_RESOURCE

from kindmesh.cli import doctor
from kindmesh.core.config_raw import namespace_problems, namespace_typo
from kindmesh.core.model import ConfigError
from kindmesh.core.planner import load_plan
from tests.helpers import ROOT, stack_raw
from tests.mocks import Mocks, Recorder


@pytest.mark.parametrize("ns", ["kindmsh", "kindmes", "kindmeshh", "KindMesh", "kind-mesh", "kind_mesh", "kinmesh",
                                "kindmesh ", "Kindmesh"])
def test_near_misses_of_our_namespace_are_typos(ns):
    assert namespace_typo(ns)


@pytest.mark.parametrize("ns", ["kindmesh", "pulumi", "kubernetes", "docker", "command", "tls", "kind", "mesh",
                                "aws", "myproject", "kindnet"])
def test_other_namespaces_are_not(ns):
    assert not namespace_typo(ns)


def test_a_typo_namespace_key_is_named_with_its_fix():
    problems = namespace_problems({"kindmsh:demo": {"enabled": False}, "kindmesh:clusters": [],
                                   "pulumi:disable-default-providers": ["docker"]})
    assert [p.key for p in problems] == ["kindmsh:demo"]
    assert "`kindmesh:demo`" in problems[0].message and "silently ignored" in problems[0].message
    assert len(namespace_problems({f"kindmsh:k{i}": 1 for i in range(1000)})) <= 15  # bounded


def _program(config: dict[str, object], recorder: Recorder) -> None:
    ROOT_RESOURCE.set(None)
    pulumi.runtime.set_mocks(Mocks(), project="kindmesh", stack="dev", preview=False, monitor=recorder)
    rconfig.set_all_config({k: json.dumps(v) for k, v in config.items()})

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    try:
        program()
    finally:
        rconfig.set_all_config({})


def test_the_program_refuses_a_typo_namespace_before_any_resource(monkeypatch):
    monkeypatch.setattr("kindmesh.stacks.preflight.run", lambda plan: None)
    config: dict[str, object] = {f"kindmesh:{k}": v for k, v in stack_raw("dev").items()}
    config["kindmsh:demo"] = {"enabled": False}
    config["kindmesh:network"] = {"subnet": "172.17.0.0/16"}  # and another problem: both reported
    recorder = Recorder(Mocks())
    with pytest.raises(pulumi.RunError) as err:
        _program(config, recorder)
    text = str(err.value)
    assert "kindmsh:demo" in text and "`kindmesh:demo`" in text
    assert "kindmesh:network.subnet" in text and "docker0" in text
    assert recorder.registered == []


def test_the_doctor_stack_row_fails_on_a_typo_namespace(tmp_path):
    data = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    data["config"]["kindmsh:demo"] = {"enabled": False}
    (tmp_path / "Pulumi.lab.yaml").write_text(yaml.safe_dump(data))
    plan, finding = doctor.load_stack_plan("lab", tmp_path)
    assert plan is None and finding.status == "FAIL"
    assert "kindmsh:demo" in finding.detail and "`kindmesh:demo`" in finding.detail


@pytest.mark.parametrize("subnet", ["172.17.0.0/16", "172.17.5.0/24", "172.16.0.0/12"])
def test_docker0s_subnet_is_refused(subnet):
    raw = dict(stack_raw("dev"), network={"subnet": subnet})
    with pytest.raises(ConfigError) as err:
        load_plan(raw, stack="dev")
    assert [p.key for p in err.value.problems] == ["kindmesh:network.subnet"]
    assert "docker0" in str(err.value) and "172.30.0.0/16" in str(err.value)


def test_a_subnet_beside_docker0_is_fine():
    assert load_plan(dict(stack_raw("dev"), network={"subnet": "172.16.0.0/16"}), stack="dev")


# --------------------------------------------------------------------------- the README's path
def test_the_readme_opens_with_the_newcomers_path():
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) < 150, "the reference belongs in docs/"
    first = "\n".join(lines[:75])
    steps = ["git clone", "docs.docker.com/engine/install", "usermod -aG docker", "v0.30.0+", "sysctl -w fs.inotify",
             "sysctl -w fs.inotify", "cgroup v2", "5.10", "```bash\nmake up", "make -s env", "kubectl --context us",
             "```bash\nmake test"]
    where = [first.find(s) for s in steps]
    assert -1 not in where, [s for s, w in zip(steps, where, strict=True) if w == -1]
    assert where == sorted(where), "clone, prerequisites, make up, kubectl, then make test"
    assert "make doctor" in first


def test_no_test_counts_that_differ_between_root_and_other_users():
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        found = re.findall(r"\b\d+ (?:passed|failed|skipped|tests?)\b", path.read_text())
        assert not found, (path.name, found)


def test_every_local_link_of_the_docs_resolves():
    import re as _re

    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").glob("*/README.md")]:
        for target in _re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), (path.relative_to(ROOT), target)


def test_each_example_has_a_readme_for_running_it():
    for example in sorted(p for p in (ROOT / "examples").iterdir() if (p / "__main__.py").exists()):
        text = (example / "README.md").read_text()
        for needed in ("python3 -m venv venv", "pip install -r requirements.txt", "PULUMI_BACKEND_URL=",
                       "PULUMI_CONFIG_PASSPHRASE", "pulumi up", "pulumi destroy", "Without a Docker host",
                       "tests/test_examples.py"):
            assert needed in text, (example.name, needed)
        assert "virtualenv: venv" in (example / "Pulumi.yaml").read_text()
