"""The README's user is not root: the Makefile's venv handling as uid 65534 with the distro Python.

The interpreter in a venv made from the distro Python is a symlink to a root-owned file;
the Makefile must never touch it. Its stamps live inside .venv and follow the requirements'
contents. (Requirements are emptied here so no package index is needed; `.ci/run` does the
full `make test` as an unprivileged user.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

DISTRO_PYTHON = "/usr/bin/python3"
NOBODY = 65534

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root (run as a normal user already)"),
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
]


def _distro_python_ok() -> bool:
    if not os.access(DISTRO_PYTHON, os.X_OK):
        return False
    probe = subprocess.run([DISTRO_PYTHON, "-c", "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
                           capture_output=True, user=NOBODY, check=False)
    return probe.returncode == 0


def test_make_venv_as_an_unprivileged_user_uses_stamps_not_the_interpreter():
    if not _distro_python_ok():
        pytest.skip(f"{DISTRO_PYTHON} (>= 3.11 with venv/ensurepip) is not runnable by uid {NOBODY}")
    base = Path(tempfile.mkdtemp(prefix="kindmesh-nonroot-"))
    try:
        base.chmod(0o755)
        project = base / "kindmesh"
        project.mkdir()
        shutil.copy(ROOT / "Makefile", project)
        (project / "requirements.txt").write_text("# runtime pins (emptied for this test)\n")
        (project / "requirements-dev.txt").write_text("# dev pins (emptied for this test)\n")
        for p in [project, *project.iterdir()]:
            os.chown(p, NOBODY, NOBODY)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(project), "PIP_NO_INDEX": "1", "LANG": "C.UTF-8"}

        def make(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["make", f"PYTHON={DISTRO_PYTHON}", *args], cwd=project, env=env, user=NOBODY,
                                  capture_output=True, text=True, timeout=180, check=False)

        first = make("venv")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Permission denied" not in first.stderr
        interpreter = project / ".venv" / "bin" / "python"
        assert interpreter.is_symlink() or interpreter.exists()
        assert len(list((project / ".venv").glob(".installed-runtime-*"))) == 1
        assert "pip install" in first.stdout

        again = make("venv")
        assert again.returncode == 0 and "pip install" not in again.stdout  # nothing to do

        with open(project / "requirements.txt", "a") as fh:  # a changed pin reinstalls
            fh.write("# changed\n")
        changed = make("venv")
        assert changed.returncode == 0 and "pip install" in changed.stdout, changed.stderr
        assert len(list((project / ".venv").glob(".installed-runtime-*"))) == 1

        dev = make("dev-venv")
        assert dev.returncode == 0 and len(list((project / ".venv").glob(".installed-dev-*"))) == 1, dev.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
