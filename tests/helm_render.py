"""The real Cilium chart, rendered by the real ``helm`` with our values: manifest and NOTES.

``helm template`` prints no NOTES (where the chart's warnings are), so this runs ``helm install
--dry-run=client`` against a scripted API server (tests/fake_apiserver.py) that knows the kinds
the chart renders, has none of its objects (a first install: every ``lookup`` finds nothing) and
answers Kubernetes 1.34. Nothing is installed anywhere. Skips when helm or the chart archives
(../shared/upstream/charts) are absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fake_apiserver import FakeApiServer, Reply
from tests.helpers import ROOT, upstream

# apiVersion -> [(kind, namespaced)]: what the Cilium chart renders with kindmesh's values
KINDS: dict[str, list[tuple[str, bool]]] = {
    "v1": [("ConfigMap", True), ("Namespace", False), ("Secret", True), ("Service", True), ("ServiceAccount", True)],
    "apps/v1": [("DaemonSet", True), ("Deployment", True)],
    "rbac.authorization.k8s.io/v1": [("ClusterRole", False), ("ClusterRoleBinding", False), ("Role", True),
                                     ("RoleBinding", True)],
}


def helm_binary() -> str:
    """helm from the tools cache (``make tools``), else from PATH; skip when there is none."""
    for var, sub in (("KINDMESH_TOOLS_BIN", ""), ("KINDMESH_TOOLS_DIR", "bin")):
        if os.environ.get(var):
            candidate = Path(os.environ[var], sub, "helm")
            if candidate.is_file():
                return str(candidate)
    proc = subprocess.run(["make", "-s", "--no-print-directory", "tools-dir"], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=60)
    if proc.returncode == 0 and proc.stdout.strip():
        candidate = Path(proc.stdout.strip(), "bin", "helm")
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("helm")
    if found is None:
        pytest.skip("no helm binary: `make tools` builds one (or put helm on PATH)")
    return found


def _route(method: str, path: str, body: Any) -> Any:
    p = path.split("?")[0]
    if p == "/version":
        return {"major": "1", "minor": "34", "gitVersion": "v1.34.0"}
    if p == "/api":
        return {"kind": "APIVersions", "versions": ["v1"]}
    if p == "/apis":
        groups = sorted({gv.split("/")[0] for gv in KINDS if "/" in gv})
        return {"kind": "APIGroupList", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}} for g in groups]}
    for gv, kinds in KINDS.items():
        if p == ("/api/" if gv == "v1" else "/apis/") + gv:
            return {"kind": "APIResourceList", "groupVersion": gv, "resources": [
                {"name": k.lower() + "s", "singularName": k.lower(), "namespaced": ns, "kind": k,
                 "verbs": ["get", "list", "create"]} for k, ns in kinds]}
    if p.endswith("/secrets") and method == "GET":  # Helm's release storage: no release yet
        return {"kind": "SecretList", "apiVersion": "v1", "items": []}
    return Reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"})


@dataclass
class Rendered:
    objects: list[dict[str, Any]]
    notes: str

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.objects if o.get("kind") == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(o.get("kind") == kind and o["metadata"]["name"] == name for o in self.objects)


def render_cilium(version: str, values: dict[str, Any]) -> Rendered:
    """``helm install --dry-run=client`` of the chart archive of ``version`` with ``values``."""
    archive = upstream("charts", f"cilium-{version}.tgz")
    helm = helm_binary()
    with FakeApiServer(_route) as api, tempfile.TemporaryDirectory(prefix="kindmesh-helm-") as tmp:
        kubeconfig = Path(tmp, "kubeconfig")
        kubeconfig.write_text(api.kubeconfig())
        values_file = Path(tmp, "values.json")
        values_file.write_text(json.dumps(values))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "HELM_CACHE_HOME": tmp,
               "HELM_CONFIG_HOME": tmp, "HELM_DATA_HOME": tmp}
        proc = subprocess.run(
            [helm, "install", "cilium", str(archive), "--namespace", "kube-system", "--values", str(values_file),
             "--dry-run=client", "--disable-openapi-validation", "--kubeconfig", str(kubeconfig)],
            capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    start, notes_at = out.find("MANIFEST:"), out.find("NOTES:")
    assert start >= 0 and notes_at > start, out[:500]
    objects = [d for d in yaml.safe_load_all(out[start + len("MANIFEST:"):notes_at]) if isinstance(d, dict)]
    return Rendered(objects, out[notes_at:])
