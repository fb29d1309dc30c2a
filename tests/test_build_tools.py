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

from tests.helpers import ROOT, upstream

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")

FAKE_GO = """#!/bin/sh
echo "$*" >> {log}
if [ "$*" = "env GOVERSION" ]; then echo go1.26.8; exit 0; fi
echo "fake go: unexpected call: $*" >&2
exit 99
"""


PROVIDERS = ("command", "kubernetes", "tls", "docker")


def pins(requirements: str) -> dict[str, str]:
    return {p: m.group(1) for p in PROVIDERS
            if (m := re.search(rf"(?m)^pulumi-{p}==(\S+)\s*$", requirements))}


class Tree:
    """A copy of the script beside a requirements.txt and a source folder shaped like
    ../shared/upstream/src (an archive per provider at the pinned version, SHA256SUMS)."""

    def __init__(self, tmp: Path, requirements: str | None = None, archives: dict[str, str] | None = None):
        self.root = tmp / "project"
        (self.root / "tests").mkdir(parents=True)
        shutil.copytree(ROOT / "tests" / "integration", self.root / "tests" / "integration")
        reqs = requirements if requirements is not None else (ROOT / "requirements.txt").read_text()
        (self.root / "requirements.txt").write_text(reqs)
        self.src = tmp / "upstream-src"
        self.src.mkdir()
        versions = archives if archives is not None else pins(reqs)
        for name in [*(f"pulumi-{p}-{v}" for p, v in versions.items()), "pulumi-language-python-3.259.0"]:
            (self.src / f"{name}.tar.gz").write_bytes(name.encode())
        self.write_sums()
        self.cache = tmp / "cache"
        self.log = tmp / "go-calls.txt"
        self.go = tmp / "go"
        self.go.write_text(FAKE_GO.format(log=self.log))
        self.go.chmod(0o755)

    def write_sums(self) -> None:
        subprocess.run("sha256sum *.tar.gz > SHA256SUMS", shell=True, cwd=self.src, check=True)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GO": str(self.go), "KINDMESH_TOOLS_CACHE": str(self.cache),
               "KINDMESH_UPSTREAM_SRC": str(self.src)}
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


def test_the_key_follows_the_source_archives_checksums(tmp_path):
    first, same, changed = Tree(tmp_path / "a"), Tree(tmp_path / "b"), Tree(tmp_path / "c")
    archive = changed.src / f"pulumi-tls-{pins((ROOT / 'requirements.txt').read_text())['tls']}.tar.gz"
    archive.write_bytes(b"another source")
    changed.write_sums()
    keys = [_dir_named_in(t.run("--print-dir").stderr).name for t in (first, same, changed)]
    assert keys[0] == keys[1]
    assert keys[2] != keys[0]


def test_a_pin_without_its_source_archive_is_refused_naming_both(tmp_path):
    base = (ROOT / "requirements.txt").read_text()
    bumped = re.sub(r"(?m)^pulumi-tls==.*$", "pulumi-tls==5.6.3", base)
    r = Tree(tmp_path, bumped, archives=pins(base)).run("--print-dir")
    assert r.returncode == 1
    assert "pulumi-tls==5.6.3" in r.stderr
    assert f"pulumi-tls-{pins(base)['tls']}.tar.gz" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_tampered_archive_stops_the_build_before_any_go_call(tmp_path):
    tree = Tree(tmp_path)
    (tree.src / f"pulumi-command-{pins((ROOT / 'requirements.txt').read_text())['command']}.tar.gz").write_bytes(b"x")
    r = tree.run()
    assert r.returncode == 1
    assert "do not match" in r.stderr
    assert set(tree.go_calls()) <= {"env GOVERSION"}


def test_an_archive_not_listed_in_the_checksums_is_refused(tmp_path):
    tree = Tree(tmp_path)
    (tree.src / "extra-1.0.tar.gz").write_bytes(b"x")
    r = tree.run()
    assert r.returncode == 1
    assert "extra-1.0.tar.gz is not listed" in r.stderr


def test_without_the_source_folder_the_script_names_it(tmp_path):
    tree = Tree(tmp_path)
    shutil.rmtree(tree.src)
    r = tree.run("--print-dir")
    assert r.returncode == 1
    assert "SHA256SUMS" in r.stderr and "KINDMESH_UPSTREAM_SRC" in r.stderr


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


def test_sdk_pins_equal_the_plugin_sources_in_shared_and_the_wheels_plugin_versions():
    """The engine runs exactly what ships: each provider SDK pin is the version of the source
    archive `make tools` builds its plugin from, and of the plugin the installed SDK requests."""
    src = upstream("src", "SHA256SUMS").parent
    wanted = pins((ROOT / "requirements.txt").read_text())
    assert set(wanted) == set(PROVIDERS)
    for p, v in wanted.items():
        assert (src / f"pulumi-{p}-{v}.tar.gz").is_file(), f"pulumi-{p}=={v} has no source archive in {src}"
        assert f"pulumi-{p}-{v}.tar.gz" in (src / "SHA256SUMS").read_text()
    import importlib.metadata as md
    import json as _json
    for p, v in wanted.items():
        try:
            files = md.distribution(f"pulumi-{p}").files or []
        except md.PackageNotFoundError:
            continue
        plugin = next((f for f in files if f.name == "pulumi-plugin.json"), None)
        assert plugin is not None, f"the installed pulumi-{p} ships no pulumi-plugin.json"
        assert _json.loads(plugin.read_text())["version"] == v, f"the installed pulumi-{p} requests another plugin"
