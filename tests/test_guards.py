"""The suite's own limits (issue 20): one test that loops forever, or grows memory without
bound, fails alone with a clear reason; the tests around it still run and pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

from tests.helpers import ROOT

RUNAWAYS = textwrap.dedent(
    """
    import time

    def test_before():
        assert True

    def test_loops_forever_under_a_fake_clock():
        now = 0.0
        while True:  # a gate whose deadline never comes
            now += 0.0

    def test_grows_without_bound():
        hoard = []
        for _ in range(256):  # at most 2 GiB, should the guard itself ever break
            hoard.append(bytearray(8 * 2**20))
            time.sleep(0.01)
        raise AssertionError("the memory guard did not stop this test")

    def test_after():
        assert True
    """
)


def test_a_looping_or_growing_test_fails_alone(tmp_path):
    (tmp_path / "test_runaways.py").write_text(RUNAWAYS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KINDMESH_TEST_MEMORY_MIB"] = "256"
    # this project's settings (pyproject: timeout) and conftest (memory guard), another test file
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
         "-p", "tests.conftest", "-o", "timeout=5", str(tmp_path / "test_runaways.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert re.search(r"\b2 failed, 2 passed\b", out), out
    failed = set(re.findall(r"^FAILED \S+::(\w+)", out, re.M))
    assert failed == {"test_loops_forever_under_a_fake_clock", "test_grows_without_bound"}, out
    assert "Failed: Timeout (>5.0s) from pytest-timeout" in out
    assert "MemoryGuardError: test_runaways.py::test_grows_without_bound grew the test process by" in out
    assert "(limit 256 MiB, $KINDMESH_TEST_MEMORY_MIB)" in out


def test_the_limits_are_configured_and_pinned():
    import tomllib

    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < options["timeout"] <= 600 and options["timeout_method"] == "signal"
    assert "pytest-timeout==" in (ROOT / "requirements-dev.txt").read_text()
