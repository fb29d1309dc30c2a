"""End-to-end acceptance on a Docker host (Automation API), on the `ci` stack config.

up -> verify -> no-op up (zero changes) -> add a cluster -> verify -> destroy -> nothing
of the stack left (kind clusters, containers, docker network, kubeconfig file). Cleanup
always runs, the results file is always written, the first failure is the one reported. Per-phase wall times go to
``$KINDMESH_E2E_RESULTS`` (default ``tests/e2e/results/e2e-ci.json``).

Runs against a copy of the project in a temp dir with its own file backend, so it never
touches your own stacks or state. Skips unless docker (reachable), kind, kubectl and
pulumi are on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import run_then_clean_up

ROOT = Path(__file__).resolve().parents[2]
STACK = "ci"
TOOLS = ("docker", "kind", "kubectl", "pulumi")


def _missing() -> str | None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"end-to-end needs {', '.join(missing)} on PATH (docker, kind, kubectl, pulumi)"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "end-to-end needs a reachable Docker daemon (`docker info` failed)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def _copy_project(dst: Path) -> Path:
    ignore = shutil.ignore_patterns(".venv", ".pulumi-state", ".git", "__pycache__", ".pytest_cache",
                                   ".mypy_cache", ".ruff_cache", ".hypothesis", "results")
    shutil.copytree(ROOT, dst, ignore=ignore)
    venv = ROOT / ".venv"
    if venv.exists():
        (dst / ".venv").symlink_to(venv)
    return dst


def _stack_leftovers(kind_names: list[str], network: str) -> list[str]:
    left = []
    clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, check=False).stdout.split()
    left += [f"kind cluster {n}" for n in kind_names if n in clusters]
    for n in kind_names:
        ps = subprocess.run(["docker", "ps", "-a", "--filter", f"label=io.x-k8s.kind.cluster={n}",
                             "--format", "{{.Names}}"], capture_output=True, text=True, check=False).stdout.split()
        left += [f"container {c}" for c in ps]
    if subprocess.run(["docker", "network", "inspect", network], capture_output=True, check=False).returncode == 0:
        left.append(f"docker network {network}")
    return left


def _only_same(summary: dict[str, int]) -> bool:
    return all(op == "same" for op, count in summary.items() if count)


def test_ci_stack_lifecycle(tmp_path: Path) -> None:
    from pulumi import automation as auto

    from kindmesh.cli.verify import Kubectl, Options, render, run_checks

    project = _copy_project(tmp_path / "kindmesh")
    state = tmp_path / "state"
    state.mkdir()
    env = {
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": "kindmesh-e2e",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    stack = auto.create_or_select_stack(
        stack_name=STACK, work_dir=str(project), opts=auto.LocalWorkspaceOptions(env_vars=env)
    )
    times: dict[str, float] = {}
    results = Path(os.environ.get("KINDMESH_E2E_RESULTS", ROOT / "tests/e2e/results/e2e-ci.json"))

    def phase(name: str, fn):
        start = time.monotonic()
        try:
            return fn()
        finally:
            times[name] = round(time.monotonic() - start, 1)

    def verify() -> None:
        outs = {k: v.value for k, v in stack.outputs().items()}
        kubectl = Kubectl(outs["kubeconfigs"])
        try:
            checks = run_checks(outs["verification"], kubectl, Options(log=print))
        finally:
            kubectl.close()
        table = render(checks)
        print(table)
        assert checks and all(c.ok for c in checks), table

    config = yaml.safe_load((project / f"Pulumi.{STACK}.yaml").read_text())["config"]
    clusters = config["kindmesh:clusters"]
    network = f"kindmesh-{STACK}"
    kind_names: list[str] = []
    left: list[str] = []

    def lifecycle() -> None:
        up = phase("up", lambda: stack.up(on_output=print))
        assert up.summary.result == "succeeded"
        kind_names[:] = [row["kindName"] for row in stack.outputs()["clusters"].value]
        kubeconfig = project / ".kindmesh" / STACK / "kubeconfig"
        assert kubeconfig.exists() and (kubeconfig.stat().st_mode & 0o777) == 0o600
        phase("verify", verify)

        again = phase("noop_up", lambda: stack.up(on_output=print))
        assert _only_same(again.summary.resource_changes or {}), again.summary.resource_changes

        grown = clusters + [{"name": "gamma", "id": 3, "workers": 0}]
        stack.set_config("kindmesh:clusters", auto.ConfigValue(json.dumps(grown)))
        added = phase("add_cluster_up", lambda: stack.up(on_output=print))
        changes = added.summary.resource_changes or {}
        assert changes.get("create", 0) > 0 and not changes.get("replace") and not changes.get("delete")
        kind_names[:] = [row["kindName"] for row in stack.outputs()["clusters"].value]
        assert len(kind_names) == len(clusters) + 1
        phase("verify_after_add", verify)

    def leftovers() -> None:
        left[:] = _stack_leftovers(kind_names or [f"km-{STACK}-{c['name']}" for c in clusters], network)
        if (project / ".kindmesh" / STACK / "kubeconfig").exists():
            left.append("kubeconfig file")

    def record(failures: list[str]) -> None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps({"stack": STACK, "seconds": times, "leftovers": left,
                                       "failures": failures}, indent=2))

    run_then_clean_up(
        lifecycle,
        [("destroy", lambda: phase("destroy", lambda: stack.destroy(on_output=print))),
         ("leftovers", leftovers),
         ("remove_stack", lambda: stack.workspace.remove_stack(STACK))],
        record,
    )
    assert left == [], left
