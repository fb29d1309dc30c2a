"""tests/integration/build-tools.sh (`make tools`) at the process boundary, with a fake `go`
that only answers `go env GOVERSION` and records every call: the cache key follows the pins,
a built set is never rebuilt, and an unbuilt one is reported in one line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")

FAKE_GO = """#!/bin/sh
echo "$*" >> {log}
if [ "$*" = "env GOVERSION" ]; then echo go1.26.8; exit 0; fi
echo "fake go: unexpected call: $*" >&2
exit 99
"""


class Tree:
    """A copy of the script (and the language host it hashes) beside a requirements.txt."""

    def __init__(self, tmp: Path, requirements: str | None = None):
        self.root = tmp / "project"
        (self.root / "tests").mkdir(parents=True)
        shutil.copytree(ROOT / "tests" / "integration", self.root / "tests" / "integration")
        (self.root / "requirements.txt").write_text(
            requirements if requirements is not None else (ROOT / "requirements.txt").read_text())
        self.cache = tmp / "cache"
        self.log = tmp / "go-calls.txt"
        self.go = tmp / "go"
        self.go.write_text(FAKE_GO.format(log=self.log))
        self.go.chmod(0o755)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GO": str(self.go), "KINDMESH_TOOLS_CACHE": str(self.cache)}
        env.pop("KINDMESH_TOOLS_STATUS", None)
        return subprocess.run(["bash", str(self.root / "tests/integration/build-tools.sh"), *args],
                              capture_output=True, text=True, env=env, timeout=60)

    def go_calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def _dir_named_in(message: str) -> Path:
    start = message.index("(") + 1
    return Path(message[start:message.index(")", start)])


def test_print_dir_of_an_unbuilt_set_fails_in_one_line_naming_make_tools(tmp_path):
    tree = Tree(tmp_path)
    r = tree.run("--print-dir")
    assert r.returncode == 1
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    assert "make tools" in r.stderr
    assert _dir_named_in(r.stderr).parent == tree.cache


def test_a_ready_set_is_never_rebuilt_and_its_dir_is_printed(tmp_path):
    tree = Tree(tmp_path)
    ready_dir = _dir_named_in(tree.run("--print-dir").stderr)
    ready_dir.mkdir(parents=True)
    (ready_dir / "READY").write_text("x\n")
    for args in [(), ("--print-dir",)]:
        r = tree.run(*args)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(ready_dir)
    assert set(tree.go_calls()) == {"env GOVERSION"}, "a ready set must build and download nothing"


def test_what_the_proxy_refused_is_named_on_a_ready_set(tmp_path):
    tree = Tree(tmp_path)
    ready_dir = _dir_named_in(tree.run("--print-dir").stderr)
    ready_dir.mkdir(parents=True)
    (ready_dir / "READY").write_text("x\n")
    (ready_dir / "MISSING").write_text("provider-tls: unavailable: 403\n")
    r = tree.run()
    assert r.returncode == 0
    assert "provider-tls" in r.stderr


def test_the_key_follows_every_pin(tmp_path):
    base = (ROOT / "requirements.txt").read_text()
    dirs = {}
    for name, reqs in {
        "same": base,
        "same-again": base,
        "tls-bumped": re.sub(r"(?m)^pulumi-tls==.*$", "pulumi-tls==5.6.3", base),
    }.items():
        tree = Tree(tmp_path / name, reqs)
        dirs[name] = _dir_named_in(tree.run("--print-dir").stderr).name
    assert dirs["same"] == dirs["same-again"]
    assert dirs["tls-bumped"] != dirs["same"]


def test_the_language_host_source_is_part_of_the_key(tmp_path):
    first = Tree(tmp_path / "a")
    second = Tree(tmp_path / "b")
    main = second.root / "tests/integration/langhost/main.go"
    main.write_text(main.read_text() + "\n// changed\n")
    assert _dir_named_in(first.run("--print-dir").stderr).name != \
        _dir_named_in(second.run("--print-dir").stderr).name


@pytest.mark.parametrize("provider", ["command", "kubernetes", "tls", "docker"])
def test_a_provider_sdk_not_pinned_is_refused_by_name(tmp_path, provider):
    reqs = "".join(line + "\n" for line in (ROOT / "requirements.txt").read_text().splitlines()
                   if not line.startswith(f"pulumi-{provider}=="))
    r = Tree(tmp_path, reqs).run("--print-dir")
    assert r.returncode == 1
    assert f"pulumi-{provider}==" in r.stderr


def test_provider_versions_come_from_requirements_only():
    script = (ROOT / "tests/integration/build-tools.sh").read_text()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(("pulumi-command==", "pulumi-kubernetes==", "pulumi-tls==", "pulumi-docker==")):
            assert line.split("==")[1] not in script, f"{line}: version repeated in the script"
