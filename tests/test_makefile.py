"""The README's bring-up command, to the process boundary: `make up` with a fake pulumi."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

FAKE_PULUMI = """#!{python}
import json, os, sys
with open({log!r}, "a") as fh:
    fh.write(json.dumps({{"args": sys.argv[1:], "backend": os.environ.get("PULUMI_BACKEND_URL"),
                         "passphrase": bool(os.environ.get("PULUMI_CONFIG_PASSPHRASE"))}}) + "\\n")
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(),
                    reason="needs the project's .venv (created by `make test`/`make venv`)")
@pytest.mark.parametrize("target,expected", [
    ("up", ["up", "--yes", "--stack", "dev"]),
    ("preview", ["preview", "--diff", "--stack", "dev"]),
    ("destroy", ["destroy", "--yes", "--stack", "dev"]),
])
def test_make_targets_use_a_local_backend_and_the_dev_stack(tmp_path, target, expected):
    log = tmp_path / "calls.jsonl"
    fake = tmp_path / "pulumi"
    fake.write_text(FAKE_PULUMI.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env["PATH"] = f"{tmp_path}{os.pathsep}{env['PATH']}"
    # -o: never rebuild the venv from inside the test run
    proc = subprocess.run(["make", "-s", "-o", ".venv/bin/python", target], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0]["args"] == ["stack", "select", "--create", "--secrets-provider", "passphrase", "dev"]
    assert calls[-1]["args"] == expected
    for call in calls:
        assert call["backend"] == f"file://{ROOT}/.pulumi-state"
        assert call["passphrase"] is True
