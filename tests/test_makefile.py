"""The README's commands at the process boundary: make targets against a fake pulumi that
records its calls and keeps a list of stacks, on a copy of the project (never this checkout's
state), with fake docker/kind/kubectl and /proc for the doctor that `make up` runs first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, SHIPPED_STACKS, copy_sources
from tests.test_doctor import make_host

FAKE_PULUMI = """#!{python}
import json, os, sys
state = {state!r}
stacks = json.load(open(state)) if os.path.exists(state) else []
args = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(json.dumps({{"args": args, "backend": os.environ.get("PULUMI_BACKEND_URL"),
                         "passphrase": bool(os.environ.get("PULUMI_CONFIG_PASSPHRASE")),
                         "parallel": os.environ.get("PULUMI_PARALLEL")}}) + "\\n")
if args[:2] == ["stack", "select"]:
    name = args[-1]
    if name not in stacks:
        if "--create" not in args:
            sys.exit(f"error: no stack named '{{name}}' found")
        stacks.append(name)
        json.dump(stacks, open(state, "w"))
elif "--stack" in args and args[args.index("--stack") + 1] not in stacks:
    sys.exit("error: no stack named " + args[args.index("--stack") + 1])
"""

pytestmark = [
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
    pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(),
                       reason="needs the project's .venv (created by `make test`/`make venv`)"),
]


class Project:
    def __init__(self, tmp: Path, *, stacks: list[str] | None = None, **host):
        self.dir = tmp / "project"
        self.dir.mkdir()
        for name in ["Makefile", "requirements.txt", "requirements-dev.txt", "Pulumi.yaml",
                     *[f"Pulumi.{stack}.yaml" for stack in SHIPPED_STACKS]]:
            shutil.copy(ROOT / name, self.dir / name)
        copy_sources(self.dir)
        (self.dir / ".venv").symlink_to(ROOT / ".venv")
        (tmp / "host").mkdir()
        self.bin, self.proc = make_host(tmp / "host", pulumi=False, **host)
        self.log = tmp / "calls.jsonl"
        self.state = tmp / "stacks.json"
        self.state.write_text(json.dumps(stacks or []))
        fake = self.bin / "pulumi"
        fake.write_text(FAKE_PULUMI.format(python=sys.executable, log=str(self.log), state=str(self.state)))
        fake.chmod(0o755)

    def make(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "KUBECONFIG"))}
        env["PATH"] = f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin"
        env["KINDMESH_PROC_ROOT"] = str(self.proc)
        # The venv is the shared one: pretend it is installed (never rebuild it from a test).
        venv = [".venv/bin/python"] * 2
        return subprocess.run(["make", "-s", "-o", venv[0], f"RUNTIME={venv[0]}", f"DEV={venv[1]}", *args],
                              cwd=self.dir, env=env, capture_output=True, text=True, check=False, timeout=120)

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [c for c in calls if c["args"] != ["version"]]  # the doctor's probe

    def stacks(self) -> list[str]:
        return json.loads(self.state.read_text())


def test_make_up_runs_the_doctor_then_creates_the_dev_stack_in_a_local_backend(tmp_path):
    p = Project(tmp_path)
    res = p.make("up")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 problem(s)" in res.stdout
    assert 'eval "$(make -s env STACK=dev)"' in res.stdout  # the one step to kubectl
    args = [c["args"] for c in p.calls()]
    assert args == [["stack", "select", "--create", "--secrets-provider", "passphrase", "dev"],
                    ["up", "--yes", "--stack", "dev"]]
    for call in p.calls():
        assert call["backend"] == f"file://{p.dir}/.pulumi-state" and call["passphrase"] is True


def test_make_up_stops_before_pulumi_when_the_doctor_fails(tmp_path):
    p = Project(tmp_path, docker=None, kind=None)
    res = p.make("up")
    assert res.returncode != 0
    assert "docker CLI not found" in res.stdout and "kind not found" in res.stdout
    assert p.calls() == [] and p.stacks() == []


@pytest.mark.parametrize("target", ["destroy", "preview", "refresh", "outputs", "verify"])
def test_targets_refuse_a_stack_that_does_not_exist_and_create_nothing(tmp_path, target):
    p = Project(tmp_path, stacks=["dev"])
    res = p.make(target, "STACK=typo")
    assert res.returncode != 0
    assert "stack 'typo' does not exist" in res.stderr and "nothing was done" in res.stderr
    assert "Traceback" not in res.stderr
    assert p.stacks() == ["dev"]
    assert not any("--create" in c["args"] for c in p.calls())
    assert not any(c["args"][0] in ("destroy", "preview", "refresh") for c in p.calls())


@pytest.mark.parametrize("target,expected", [
    ("preview", ["preview", "--diff", "--stack", "dev"]),
    ("destroy", ["destroy", "--yes", "--stack", "dev"]),
    ("refresh", ["refresh", "--yes", "--stack", "dev"]),
])
def test_targets_act_on_an_existing_stack(tmp_path, target, expected):
    p = Project(tmp_path, stacks=["dev"])
    res = p.make(target)
    assert res.returncode == 0, res.stderr
    assert [c["args"] for c in p.calls()] == [["stack", "select", "dev"], expected]


def test_make_up_refuses_a_stack_without_a_stack_file(tmp_path):
    p = Project(tmp_path)
    res = p.make("up", "STACK=typo")
    assert res.returncode != 0
    assert "no Pulumi.typo.yaml" in res.stdout + res.stderr and "make new-stack NAME=typo" in res.stdout + res.stderr
    assert p.stacks() == [] and not any(c["args"][0] == "up" for c in p.calls())


def test_new_stack_then_up(tmp_path):
    p = Project(tmp_path)
    res = p.make("new-stack", "NAME=lab")
    assert res.returncode == 0, res.stderr
    config = yaml.safe_load((p.dir / "Pulumi.lab.yaml").read_text())["config"]
    assert config["pulumi:disable-default-providers"] == ["kubernetes", "docker"]
    again = p.make("new-stack", "NAME=lab")
    assert again.returncode != 0 and "not overwriting" in again.stderr
    assert p.make("new-stack").returncode != 0
    res = p.make("up", "STACK=lab")
    assert res.returncode == 0, res.stdout + res.stderr
    assert p.calls()[-1]["args"] == ["up", "--yes", "--stack", "lab"]


def test_make_env_gives_plain_pulumi_and_kubectl_their_settings(tmp_path):
    p = Project(tmp_path)
    res = p.make("env", "STACK=trio")
    assert res.returncode == 0
    script = res.stdout + 'echo "$PULUMI_BACKEND_URL|$PULUMI_CONFIG_PASSPHRASE|$KUBECONFIG|$PULUMI_PARALLEL"\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"file://{p.dir}/.pulumi-state|kindmesh-local-lab|{p.dir}/.kindmesh/trio/kubeconfig|64"
    assert "does not exist yet" in res.stderr


def test_venv_stamps_never_touch_the_interpreter():
    text = (ROOT / "Makefile").read_text()
    assert "touch $(PY)" not in text and "touch .venv/bin" not in text
    assert "PY_MIN := 3.11" in text


def test_an_old_python_is_refused_up_front_with_the_floor_named(tmp_path):
    p = Project(tmp_path)
    (p.dir / ".venv").unlink()
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\ncase \"$*\" in *print*) echo 3.10 ;; *) exit 1 ;; esac\n")
    old.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    res = subprocess.run(["make", "-s", f"PYTHON={old}", "test"], cwd=p.dir, env=env, capture_output=True,
                         text=True, check=False, timeout=60)
    assert res.returncode != 0
    assert "Python 3.10 found" in res.stderr and "needs Python >= 3.11" in res.stderr
    assert not (p.dir / ".venv").exists()
    res = subprocess.run(["make", "-s", "PYTHON=no-such-python3", "venv"], cwd=p.dir, env=env, capture_output=True,
                         text=True, check=False, timeout=60)
    assert res.returncode != 0 and "python3-venv" in res.stderr and not (p.dir / ".venv").exists()


def test_make_upgrade_runs_the_staged_upgrade_with_the_makefiles_environment(tmp_path):
    p = Project(tmp_path, stacks=["dev"])
    res = p.make("upgrade", "STACK=dev")
    assert res.returncode == 2 and "make upgrade CILIUM=1.20.0 STACK=dev" in res.stderr
    res = p.make("upgrade", "CILIUM=1.17.0", "STACK=dev", 'WAVES=1;2')
    # the command ran (with the Makefile's backend) and refused the version before any change
    assert res.returncode == 2 and "Cilium 1.17.0 is not supported" in res.stderr, res.stderr
    assert [c["args"] for c in p.calls()] == [["stack", "select", "dev"]] * 2
    assert all(c["backend"] == f"file://{p.dir}/.pulumi-state" for c in p.calls())
    res = p.make("upgrade", "CILIUM=1.20.0", "STACK=typo")
    assert res.returncode != 0 and "stack 'typo' does not exist" in res.stderr


def test_a_failed_up_keeps_pulumis_exit_code_and_points_at_make_diagnose(tmp_path):
    p = Project(tmp_path)
    fake = p.bin / "pulumi"
    fake.write_text(fake.read_text() + 'if args[:1] == ["up"]:\n'
                    '    print("error: the rollout gate of cluster \'us\' failed", file=sys.stderr); sys.exit(255)\n')
    res = p.make("up", "STACK=trio")
    assert res.returncode != 0
    assert "'pulumi up' failed (exit 255)" in res.stderr
    lines = res.stderr.strip().splitlines()  # the hint last, then make's own line with the recipe's (pulumi's) code
    assert lines[-2].endswith("make diagnose STACK=trio") and lines[-1].endswith("up] Error 255")
    assert "pulumi up --yes --stack trio" in res.stdout


def test_make_diagnose_walks_a_stack_that_was_never_brought_up_without_pulumi(tmp_path):
    p = Project(tmp_path)
    res = p.make("diagnose")
    # the doctor's host rows pass; kind knows no cluster of the stack and its docker network is missing
    assert res.returncode != 0, res.stdout + res.stderr  # make's 2; the module's own 1 is tested in test_diagnose
    assert "all      docker network  FAIL" in res.stdout
    assert "docker network kindmesh-dev does not exist" in res.stdout and "fix: never brought up" in res.stdout
    assert "make up STACK=dev" in res.stdout and "Traceback" not in res.stderr
    assert list((p.dir / ".kindmesh" / "dev").glob("diagnose-*.tar.gz"))
    assert p.calls() == [] and p.stacks() == []  # no pulumi call, no stack made
    res = p.make("diagnose", "STACK=typo")
    assert res.returncode != 0 and "no Pulumi.typo.yaml" in res.stdout


def test_the_engine_may_run_a_meshs_waits_side_by_side_and_the_user_can_say_otherwise(tmp_path):
    """The engine's default --parallel is 4 × CPUs: on a 2-CPU host a mesh of more than two
    clusters queued its gates behind one another (docs/performance.md)."""
    p = Project(tmp_path, stacks=["dev"])
    assert p.make("up").returncode == 0
    ups = [c for c in p.calls() if c["args"][:1] == ["up"]]
    assert ups and int(ups[-1]["parallel"]) >= 32
    assert p.make("up", "PULUMI_PARALLEL=6").returncode == 0
    assert [c for c in p.calls() if c["args"][:1] == ["up"]][-1]["parallel"] == "6"
