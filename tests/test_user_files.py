"""A user's own files never break `make test` (issue 20): tests of the shipped stacks test the
shipped stacks. In a copy of the project with a stack from `make new-stack NAME=lab`, a
half-edited invalid Pulumi.typo.yaml and what `pip install .` leaves (build/, *.egg-info), the
suite collects exactly the same tests as in a clean copy, and the tests that touch those
places pass."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kindmesh.cli import doctor
from tests.helpers import ALL_STACKS, ROOT, SHIPPED_STACKS

TYPO = """\
# half-edited: a cluster without an id, a typo in the namespace, a broken subnet
config:
  pulumi:disable-default-providers:
    - kubernetes
    - docker
  kindmesh:clusters:
    - name: us
      id: 1
    - name: EU
  kindmsh:demo:
    enabled: false
  kindmesh:network:
    subnet: 172.30.0.0/33
"""
IGNORE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                ".pulumi-state", ".kindmesh", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                                ".hypothesis", "Pulumi.*.yaml")


def _copy(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=IGNORE)
    for stack in SHIPPED_STACKS:
        shutil.copy(ROOT / f"Pulumi.{stack}.yaml", dest)
    return dest


def _pollute(project: Path) -> None:
    rc, msg = doctor.new_stack("lab", root=project)  # what `make new-stack NAME=lab` writes
    assert rc == 0, msg
    (project / "Pulumi.typo.yaml").write_text(TYPO)
    (project / "Pulumi.broken.yaml").write_text("config: [\n  kindmesh:clusters: {")  # not even YAML
    lib = project / "build" / "lib"  # what `pip install .` leaves in the project directory
    for name in ("kindmesh", "components", "stacks"):
        shutil.copytree(project / name, lib / ("kindmesh" if name == "kindmesh" else f"kindmesh/{name}"),
                        dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    (lib / "kindmesh" / "test_in_build.py").write_text("def test_never_collected():\n    assert False\n")
    (project / "kindmesh.egg-info").mkdir()
    (project / "kindmesh.egg-info" / "PKG-INFO").write_text("Name: kindmesh\n")


def _pytest(project: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KINDMESH_SKIP_PACKAGING"] = env.get("KINDMESH_SKIP_PACKAGING", "")
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _ids(out: str) -> set[str]:
    return {line.strip() for line in out.splitlines() if "::" in line and not line.startswith(("ERROR", "FAILED"))}


def test_the_suite_collects_the_same_tests_with_a_users_files(tmp_path):
    clean, used = _copy(tmp_path / "clean" / "kindmesh"), _copy(tmp_path / "used" / "kindmesh")
    _pollute(used)
    runs = [_pytest(p, "--collect-only") for p in (clean, used)]
    (clean_out, _), (used_out, _) = (r.communicate(timeout=240) for r in runs)
    assert runs[0].returncode == 0, clean_out[-3000:]
    assert runs[1].returncode == 0, used_out[-3000:]
    clean_ids, used_ids = _ids(clean_out), _ids(used_out)
    assert len(clean_ids) > 500
    assert used_ids == clean_ids, (sorted(used_ids - clean_ids)[:10], sorted(clean_ids - used_ids)[:10])


def test_tests_reading_stack_files_pass_beside_a_users_files(tmp_path):
    """The tests that read the project's stack files or build from it, run in the used copy."""
    used = _copy(tmp_path / "used" / "kindmesh")
    _pollute(used)
    chosen = ["tests/test_program.py", "tests/test_doctor.py", "tests/test_makefile.py", "tests/test_planner.py",
              "tests/test_newcomer.py"]
    if (ROOT / ".venv").exists():
        (used / ".venv").symlink_to(ROOT / ".venv")  # test_makefile needs the project's venv
    run = _pytest(used, *chosen, "-k", "not unprivileged")
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out[-4000:]
    assert " passed" in out and " failed" not in out and " error" not in out


def test_the_shipped_stacks_are_the_tracked_ones():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (a copy of the project): nothing to compare SHIPPED_STACKS with")
    listed = subprocess.run(["git", "-c", f"safe.directory={ROOT}", "ls-files", "Pulumi.*.yaml"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        pytest.skip(f"git cannot list this checkout's files: {listed.stderr.strip()[:200]}")
    tracked = sorted(line[len("Pulumi."):-len(".yaml")] for line in listed.stdout.split())
    assert tracked == sorted(SHIPPED_STACKS) == sorted(ALL_STACKS)
