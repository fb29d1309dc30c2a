"""kindctl and the kind providers at the process boundary, loaded the way the engine loads them.

* a fresh interpreter started in the project directory without PYTHONPATH unpickles the
  dynamic providers and runs ``python -m kindmesh.deploy.kindctl`` (what pulumi-command runs);
* two overlapping creates of one name (two processes) never both create, never delete;
* each way a tool can fail to run gives a clear message, never a traceback;
* the lock/temp-dir code works as an unprivileged user (uid 65534) when the suite is root.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from kindmesh.core.planner import load_plan
from kindmesh.deploy import kindctl
from kindmesh.deploy.kindctl import ToolError
from kindmesh.stacks.composition import cluster_inputs
from tests.fakes import FakeBin
from tests.helpers import ROOT, copy_sources, stack_raw

NOBODY = 65534


@pytest.fixture
def spec():
    plan = load_plan(stack_raw("dev"), stack="dev")
    return cluster_inputs(plan, plan.clusters[0])


def kindctl_cli(action, env, spec=None, python=sys.executable, cwd=ROOT, **kw):
    env = dict(env)
    env.pop("PYTHONPATH", None)
    if spec is not None:
        env[kindctl.SPEC_ENV] = json.dumps(spec)
    return subprocess.Popen([python, "-m", "kindmesh.deploy.kindctl", action], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_fresh_interpreter_in_the_project_dir_loads_providers_and_kindctl(tmp_path):
    """The engine dill-pickles providers by module reference and loads them in the project
    directory; pulumi-command runs ``python -m kindmesh.deploy.kindctl`` from there."""
    from pulumi.dynamic.dynamic import serialize_provider

    from kindmesh.components.kind_provider import KindClusterInfoProvider

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = textwrap.dedent(
        """
        import base64, sys, dill
        provider = dill.loads(base64.b64decode(sys.stdin.read()))
        olds = {"name": "a", "network": "n", "cluster": "x", "command_urn": "u", "revision": 1}
        d = provider.diff("a", olds, dict(olds, network="m", cluster="y", revision=2))
        print(type(provider).__module__, type(provider).__name__, d.changes)
        """
    )
    for provider in (KindClusterInfoProvider(),):
        out = subprocess.run([sys.executable, "-c", check], input=serialize_provider(provider), cwd=ROOT,
                             env=env, capture_output=True, text=True, check=True).stdout.split()
        assert out == [type(provider).__module__, type(provider).__name__, "True"]  # it runs, not just loads
    help_ = subprocess.run([sys.executable, "-m", "kindmesh.deploy.kindctl", "--help"], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert "create" in help_ and "prepull" in help_
    # and nowhere else: outside the project directory the module is not importable by name
    far = subprocess.run([sys.executable, "-m", "kindmesh.deploy.kindctl", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert far.returncode != 0


def test_cli_create_and_delete_keep_the_kubeconfig_off_stdout(tmp_path, spec):
    fake = FakeBin(tmp_path)
    proc = kindctl_cli("create", fake.env(), spec)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out) == {"name": "km-dev-us", "action": "created", "hash": kindctl.spec_hash(spec)}
    assert "created kind cluster 'km-dev-us'" in err
    assert "c2VjcmV0" not in out + err  # the fake kubeconfig's key never leaves the process
    proc = kindctl_cli("delete", fake.env(), spec)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and json.loads(out)["action"] == "deleted"
    assert fake.state["clusters"] == []


def test_cli_errors_are_one_clean_line(tmp_path, spec):
    env = FakeBin(tmp_path).env()
    proc = kindctl_cli("create", env)  # no spec
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "KINDMESH_KIND_SPEC is not set" in err and "Traceback" not in err
    env["KINDMESH_KIND"] = str(tmp_path / "nowhere" / "kind")
    proc = kindctl_cli("create", env, spec)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "kind not found on PATH" in err and "kind.sigs.k8s.io" in err
    assert "Traceback" not in err


def test_overlapping_creates_of_one_name_create_once_and_delete_nothing(tmp_path, spec):
    fake = FakeBin(tmp_path, create_seconds=1.0)
    first = kindctl_cli("create", fake.env(), spec)
    time.sleep(0.3)
    second = kindctl_cli("create", fake.env(), spec)
    results = [p.communicate(timeout=60) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], results
    actions = sorted(json.loads(out)["action"] for out, _ in results)
    assert actions == ["adopted", "created"]
    assert any("waiting for another kindmesh run" in err for _, err in results)
    kind = fake.calls("kind")
    assert len([c for c in kind if c["args"][:2] == ["create", "cluster"]]) == 1
    assert not [c for c in kind if c["args"][:2] == ["delete", "cluster"]]
    assert fake.state["clusters"] == ["km-dev-us"]


def test_a_create_losing_the_race_to_a_cluster_on_our_own_network_leaves_the_winner(tmp_path, spec):
    """The process as pulumi-command runs it: the winner (on this stack's network) survives, the
    command fails with one clean paragraph that does not advise deleting it."""
    fake = FakeBin(tmp_path, race_create=True, race_network=spec["network"])
    proc = kindctl_cli("create", fake.env(), spec)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == "" and "Traceback" not in err
    assert "left untouched" in err and "kind delete" not in err and "Run `make up` again" in err
    assert not [c for c in fake.calls("kind") if c["args"][:2] == ["delete", "cluster"]]
    assert fake.state["clusters"] == ["km-dev-us"]


# ------------------------------------------------------------------ tools that cannot run


def _write(path: Path, content: bytes, mode: int) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_permission_denied_tool_without_execute_bit(tmp_path):
    """A tool without the execute bit (even root cannot exec a 0644 file)."""
    kind = _write(tmp_path / "kind", b"#!/bin/sh\nexit 0\n", 0o644)
    with pytest.raises(ToolError, match="permission denied.*chmod"):
        kindctl.run([str(kind), "version"])


def test_permission_denied_tool(tmp_path):
    # A directory on PATH named like the tool cannot be executed even by root (EACCES).
    fake = tmp_path / "kind"
    fake.mkdir()
    with pytest.raises(ToolError) as err:
        kindctl.run([str(fake), "version"])
    assert "kind" in str(err.value) and "permission denied" in str(err.value)


def test_exec_format_error_names_the_tool_and_the_fix(tmp_path):
    kind = _write(tmp_path / "kind", b"\x7fELF\x02\x01\x01garbage-not-for-this-cpu", 0o755)
    with pytest.raises(ToolError) as err:
        kindctl.run([str(kind), "version"])
    text = str(err.value)
    assert "Exec format error" in text and "uname -m" in text and "kind.sigs.k8s.io" in text
    assert isinstance(err.value.__cause__, OSError) and err.value.__cause__.errno == errno.ENOEXEC


def test_invalid_utf8_from_a_tool_is_decoded_with_replacement(tmp_path):
    kind = _write(tmp_path / "kind", b"#!/bin/sh\nprintf 'kind v0.30.0 \\377\\376 go\\n'\nprintf '\\377' >&2\nexit 3\n", 0o755)
    proc = kindctl.run([str(kind), "version"], check=False)
    assert proc.stdout.startswith("kind v0.30.0 \ufffd")
    with pytest.raises(ToolError, match="exited 3"):
        kindctl.run([str(kind), "version"])


def test_timeout_is_bounded_and_named(tmp_path):
    kind = _write(tmp_path / "kind", b"#!/bin/sh\nexec sleep 30\n", 0o755)
    start = time.monotonic()
    with pytest.raises(ToolError) as err:
        kindctl.run([str(kind), "get", "clusters"], timeout=0.5)
    assert time.monotonic() - start < 10
    assert "did not finish within 0.5s" in str(err.value)
    assert "kind version" in str(err.value)


def test_uncreatable_temp_dir_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "sub"))
    with pytest.raises(ToolError) as err, kindctl.private_tempdir():
        pass
    assert "runtime directory" in str(err.value) and "TMPDIR" in str(err.value)


def test_a_squatted_runtime_dir_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    squat = tmp_path / f"kindmesh-{os.getuid()}"
    squat.mkdir(mode=0o777)
    squat.chmod(0o777)  # world-writable: someone else could plant lock files
    with pytest.raises(ToolError, match="not a private directory"):
        kindctl.runtime_dir()


# ------------------------------------------------------------------ as an unprivileged user


def _python_for(uid: int, project: Path) -> str | None:
    """An interpreter the unprivileged user can run that imports PyYAML (kindctl's only
    dependency) in ``project``: ours may sit where that user cannot go (a checkout in a 0700
    directory, an interpreter under /root), so ``project`` holds a copy of the sources and of
    the yaml package (pure Python; its C speedups load only on the same Python version)."""
    for python in (sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3"):
        try:
            ok = subprocess.run([python, "-c", "import yaml"], user=uid, capture_output=True, timeout=30,
                                cwd=project).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return python
    return None


@pytest.fixture
def nobody_dir():
    """(base, python, project): a directory uid 65534 owns, beside a copy of the sources it can
    read, wherever this checkout is (even under a directory that user cannot enter)."""
    if os.geteuid() != 0:
        pytest.skip("runs as root only: drops to uid 65534 to prove the non-root path")
    import yaml

    top = Path(tempfile.mkdtemp(prefix="kindmesh-nobody-"))
    top.chmod(0o755)
    try:
        project = top / "project"
        copy_sources(project)
        shutil.copytree(Path(yaml.__file__).parent, project / "yaml", ignore=shutil.ignore_patterns("__pycache__"))
        for p in [project, *project.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        python = _python_for(NOBODY, project)
        if python is None:
            pytest.skip("no Python that uid 65534 may run on this machine (tried this interpreter, its real path "
                        "and /usr/bin/python3)")
        base = top / "home"
        base.mkdir(mode=0o755)
        os.chown(base, NOBODY, NOBODY)
        yield base, python, project
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _chown_tree(path: Path, uid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, uid, uid)


def test_create_and_delete_as_an_unprivileged_user(nobody_dir, spec):
    base, python, project = nobody_dir
    fake = FakeBin(base / "fake", python=python)
    env = fake.env()
    env.pop("XDG_RUNTIME_DIR")  # a user without a session: falls back to $TMPDIR/kindmesh-<uid>
    env.update(TMPDIR=str(base), HOME=str(base), XDG_CACHE_HOME=str(base / "cache"))
    _chown_tree(base, NOBODY)
    proc = kindctl_cli("create", env, spec, python=python, cwd=project, user=NOBODY, group=NOBODY)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["action"] == "created"
    run = base / f"kindmesh-{NOBODY}"
    st = run.stat()
    assert st.st_uid == NOBODY and st.st_mode & 0o777 == 0o700
    assert (run / "kind-km-dev-us.lock").stat().st_uid == NOBODY
    proc = kindctl_cli("delete", env, spec, python=python, cwd=project, user=NOBODY, group=NOBODY)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and json.loads(out)["action"] == "deleted", err


def test_an_unprivileged_user_refuses_a_runtime_dir_planted_by_root(nobody_dir, spec):
    base, python, project = nobody_dir
    fake = FakeBin(base / "fake", python=python)
    env = fake.env()
    env.pop("XDG_RUNTIME_DIR")
    env.update(TMPDIR=str(base), HOME=str(base), XDG_CACHE_HOME=str(base / "cache"))
    _chown_tree(base, NOBODY)
    planted = base / f"kindmesh-{NOBODY}"
    planted.mkdir(mode=0o755)  # owned by root
    proc = kindctl_cli("create", env, spec, python=python, cwd=project, user=NOBODY, group=NOBODY)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "not a private directory owned by uid 65534" in err
    assert "Traceback" not in err and fake.state["clusters"] == []


def test_a_create_killed_half_way_leaves_no_lock_and_the_next_run_recreates(tmp_path, spec):
    """An interrupted `up` (SIGKILL of the command and its kind) leaves a half-made cluster on
    this stack's network and no marker: the next run says so and recreates it."""
    import signal

    fake = FakeBin(tmp_path, create_seconds=30)
    first = kindctl_cli("create", fake.env(), spec, start_new_session=True)
    deadline = time.monotonic() + 20
    while "km-dev-us" not in fake.state["clusters"] and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    assert fake.state["clusters"] == ["km-dev-us"]  # half-made, on our network, no marker

    fake.update(create_seconds=0)
    second = kindctl_cli("create", fake.env(), spec)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert json.loads(out)["action"] == "recreated"
    assert "recreating kind cluster 'km-dev-us'" in err and "unfinished create" in err
    assert "waiting for another" not in err  # the kernel dropped the dead run's lock
    assert fake.state["clusters"] == ["km-dev-us"] and fake.state["markers"]
