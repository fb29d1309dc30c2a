"""The examples: programs outside the stack composition, built from the components alone
or with Mesh; run under mocks from the checkout, and from an installed copy of the
package outside the repository."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kindmesh.core.planner import kind_name_for
from tests.helpers import ROOT
from tests.mocks import DYNAMIC, run_file

EXAMPLES = ROOT / "examples"
COMMAND = "command:local:Command"


def test_single_cluster_from_the_components_alone():
    rec = run_file(EXAMPLES / "single-cluster" / "__main__.py", stack="example")
    by_name = {r.name: r for r in rec.registered}
    assert by_name["solo-kind-cluster"].type == COMMAND
    spec = json.loads(by_name["solo-kind-cluster"].inputs["environment"]["KINDMESH_KIND_SPEC"])
    assert spec["name"] == "solo" and spec["network"] == "solo-net" and spec["workers"] == 0
    assert by_name["solo-kind"].type == DYNAMIC
    release = by_name["solo-cilium"]
    values = release.inputs["values"]
    assert values["cluster"] == {"name": "solo", "id": 1}
    assert values["kubeProxyReplacement"] is True and values["clustermesh"]["config"]["clusters"] == []
    assert release.secret_paths == {"values.tls.ca.key"}
    gate = by_name["solo-cilium-rollout"]
    assert gate.type == COMMAND and release.urn in gate.dependencies
    # node IPs (docker ip_range) and the MetalLB pool never meet; Cilium's mesh IP is in the pool
    ipam = by_name["network"].inputs["ipamConfigs"][0]
    assert ipam == {"subnet": "172.27.0.0/24", "ipRange": "172.27.0.0/25", "gateway": "172.27.0.1"}
    pool = by_name["solo-pool"].inputs["spec"]["addresses"]
    assert pool == ["172.27.0.248-172.27.0.254"]  # the mesh IP .247 is reserved: a pool of its own
    reserved = by_name["solo-reserved-pool"].inputs["spec"]
    assert reserved == {"addresses": ["172.27.0.247/32"], "autoAssign": False}
    service = values["clustermesh"]["apiserver"]["service"]
    assert service == {"type": "LoadBalancer", "loadBalancerIP": "172.27.0.247"}
    assert rec.registered and by_name["solo-metallb"].type == "kubernetes:helm.sh/v3:Release"
    # MetalLB installed while Cilium rolls out; its webhook gate after Cilium is ready
    assert gate.urn not in by_name["solo-metallb"].dependencies
    # no images given: no load step, and KindCluster.ready is the cluster itself
    assert "solo-image-load" not in by_name
    assert by_name["solo-kind"].urn in by_name["solo-metallb"].dependencies
    assert {gate.urn, by_name["solo-metallb"].urn} <= set(by_name["solo-metallb-webhook"].dependencies)
    assert not any(r.type == "kindmesh:index:Mesh" for r in rec.registered)


def test_two_cluster_mesh_in_three_lines():
    rec = run_file(EXAMPLES / "two-cluster-mesh" / "__main__.py", stack="example")
    by_name = {r.name: r for r in rec.registered}
    mesh = by_name["lab"]
    assert mesh.type == "kindmesh:index:Mesh"
    for cluster, peer in (("east", "west"), ("west", "east")):
        release = by_name[f"lab.{cluster}-cilium"]
        peers = release.inputs["values"]["clustermesh"]["config"]["clusters"]
        assert [p["name"] for p in peers] == [peer]
        spec = json.loads(by_name[f"lab.{cluster}-kind-cluster"].inputs["environment"]["KINDMESH_KIND_SPEC"])
        assert spec["name"] == kind_name_for("example-lab", cluster)  # from <stack>-<component name>
        assert by_name[f"lab.{cluster}-pool"].inputs["spec"]["addresses"]
    # everything lives under the Mesh component
    top = [r for r in rec.registered if r.parent.endswith("::kindmesh-example") or not r.parent]
    assert {r.name for r in top} == {"lab"}, {r.name for r in top}


def test_mesh_reports_a_bad_config_before_registering_anything(tmp_path):
    program = tmp_path / "__main__.py"
    program.write_text(textwrap.dedent("""
        from kindmesh.components.mesh import Mesh, MeshArgs
        Mesh("bad", MeshArgs(config={"clusters": [{"name": "A_B"}]}))
    """))
    import pulumi

    with pytest.raises(pulumi.RunError) as err:
        run_file(program, stack="example")
    text = str(err.value)
    assert "kindmesh:clusters[0].name" in text and "kindmesh:clusters[0].id" in text


DRIVER = textwrap.dedent('''
    import json, runpy, sys
    import pulumi
    from pulumi.runtime import mocks

    class M(mocks.Mocks):
        def new_resource(self, args):
            state = dict(args.inputs)
            if args.name.endswith("-kind"):
                state.update(kubeconfig="apiVersion: v1\\nkind: Config\\n", context="kind-x",
                             control_plane="x-control-plane", nodes=["x-control-plane"])
            if args.typ == "kubernetes:helm.sh/v3:Release":
                state["status"] = {"revision": 1}
            return f"{args.name}-id", state
        def call(self, args):
            return {}, None

    seen = []
    class Rec(mocks.MockMonitor):
        def RegisterResource(self, request):
            seen.append([request.type, request.name])
            return super().RegisterResource(request)

    m = M()
    pulumi.runtime.set_mocks(m, project="example", stack="ci", preview=False, monitor=Rec(m))

    @pulumi.runtime.test
    def program():
        runpy.run_path(sys.argv[1], run_name="__main__")

    program()
    import kindmesh
    print(json.dumps({"kindmesh": kindmesh.__file__, "resources": seen}))
''')


@pytest.mark.skipif(os.environ.get("KINDMESH_SKIP_PACKAGING") == "1", reason="KINDMESH_SKIP_PACKAGING=1")
def test_installed_package_runs_both_examples_outside_the_repository(tmp_path):
    """`pip install` of the repository gives importable, unambiguous kindmesh.* names."""
    had_build = (ROOT / "build").exists()  # a user's own `pip install .` may have left one
    site = tmp_path / "site"
    # from a clean copy (a checkout or not): building in the project directory would leave
    # build/ there, and a later wheel would ship whatever build/lib holds
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pulumi-state", ".kindmesh",
        ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"))
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                          str(source)], capture_output=True, text=True, timeout=300, check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]
    installed = sorted(p.relative_to(site).as_posix() for p in (site / "kindmesh").rglob("*.py"))
    assert "kindmesh/components/mesh.py" in installed and "kindmesh/core/planner.py" in installed
    assert not (site / "components").exists() and not (site / "stacks").exists()  # no generic top-level names
    assert (site / "kindmesh" / "py.typed").is_file()  # typed for users' mypy
    assert (ROOT / "build").exists() == had_build  # this test builds from its copy, never in the project
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    for example in ("single-cluster", "two-cluster-mesh"):
        program = outside / f"{example}.py"
        program.write_text((EXAMPLES / example / "__main__.py").read_text())
        run = subprocess.run([sys.executable, "driver.py", str(program)], cwd=outside, env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert Path(result["kindmesh"]).is_relative_to(site)
        names = {name for _, name in result["resources"]}
        assert ("solo-cilium" in names) if example == "single-cluster" else ("lab.east-cilium" in names)


def test_documented_three_cluster_sketch_runs_from_the_components_alone(tmp_path):
    doc = (ROOT / "docs" / "components.md").read_text()
    section = doc[doc.index("# Components (use them in any Pulumi program)"):]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    sketch = next(b for b in blocks if "MeshConnection(" in b)
    program = tmp_path / "__main__.py"
    program.write_text(sketch)
    rec = run_file(program, stack="example")
    by_name = {r.name: r for r in rec.registered}
    assert not any(r.type == "kindmesh:index:Mesh" for r in rec.registered)
    mesh_ips = {}
    for n in "abc":
        values = by_name[f"{n}-cilium"].inputs["values"]
        assert values["cluster"]["name"] == n and values["tls"]["ca"]["key"]
        assert sorted(p["name"] for p in values["clustermesh"]["config"]["clusters"]) == sorted(set("abc") - {n})
        mesh_ips[n] = values["clustermesh"]["apiserver"]["service"]["loadBalancerIP"]
        first, last = by_name[f"{n}-pool"].inputs["spec"]["addresses"][0].split("-")
        assert by_name[f"{n}-reserved-pool"].inputs["spec"]["addresses"] == [f"{mesh_ips[n]}/32"]
        assert ipaddress.ip_address(first) == ipaddress.ip_address(mesh_ips[n]) + 1  # the rest is auto-assigned
    assert len(set(mesh_ips.values())) == 3
