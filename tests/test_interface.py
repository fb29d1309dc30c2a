"""The stable interface: what stack state stores must not change without a migration.

Resource type tokens of the components, the dynamic provider's module path and class, and
the `python -m` module paths in command resources are written into every stack's state;
the engine loads the provider by that path on refresh and destroy, and command resources
re-run their stored command on delete. This test fails when any of them changes, and
when a component's constructor starts taking planner types again.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import inspect
import re
import typing
from dataclasses import fields, is_dataclass

import pytest

from tests.helpers import ROOT, STACKS, stack_raw
from tests.mocks import DYNAMIC, evaluate, run_file

TYPE_TOKENS = {
    "kindmesh:index:KindCluster",
    "kindmesh:index:HostImages",
    "kindmesh:index:ExistingCluster",
    "kindmesh:index:CiliumRelease",
    "kindmesh:index:MetalLBPool",
    "kindmesh:index:MeshCA",
    "kindmesh:index:MeshConnection",
    "kindmesh:index:MeshDemo",
    "kindmesh:index:Mesh",
}
DYNAMIC_PROVIDERS = {"kindmesh.components.kind_provider": {"KindClusterInfoProvider", "KindClusterPresenceProvider"}}
COMMAND_MODULES = {
    "kindmesh.deploy.kindctl", "kindmesh.deploy.gate_cmd", "kindmesh.deploy.context_file", "kindmesh.cli.verify",
}
COMPONENTS = {
    "kindmesh.components.kind_cluster": ("KindCluster", "HostImages"),
    "kindmesh.components.existing_cluster": ("ExistingCluster",),
    "kindmesh.components.cilium_release": ("CiliumRelease",),
    "kindmesh.components.metallb_pool": ("MetalLBPool",),
    "kindmesh.components.mesh_ca": ("MeshCA",),
    "kindmesh.components.mesh_connection": ("MeshConnection",),
    "kindmesh.components.mesh_demo": ("MeshDemo",),
    "kindmesh.components.mesh": ("Mesh",),
}


@pytest.fixture(scope="module")
def recordings():
    recs = [evaluate(dict(stack_raw(s), verify={"onUp": True}), s) for s in STACKS]
    recs.append(run_file(ROOT / "examples" / "two-cluster-mesh" / "__main__.py", stack="example"))
    return recs


def _resources(rec):
    return rec.registered if hasattr(rec, "registered") else rec.resources


def test_component_type_tokens_are_the_documented_ones(recordings):
    seen = {r.type for rec in recordings for r in _resources(rec) if r.type.startswith("kindmesh:")}
    assert seen <= TYPE_TOKENS, seen - TYPE_TOKENS
    assert seen >= TYPE_TOKENS - {"kindmesh:index:ExistingCluster"}  # existing: see test_existing
    doc = (ROOT / "docs" / "components.md").read_text()
    stable = doc[doc.index("## Stable interface"):]
    missing = [t for t in TYPE_TOKENS if t not in stable]
    assert not missing, f"the stable interface section of docs/components.md lacks {missing}"


def test_dynamic_providers_are_pickled_by_their_documented_path(recordings):
    seen: set[str] = set()
    for rec in recordings:
        for r in _resources(rec):
            if r.type != DYNAMIC:
                continue
            blob = base64.b64decode(r.inputs["__provider"])
            assert any(mod.encode() in blob and any(c.encode() in blob for c in classes)
                       for mod, classes in DYNAMIC_PROVIDERS.items()), r.name
            seen.update(c for classes in DYNAMIC_PROVIDERS.values() for c in classes if c.encode() in blob)
    assert seen == set().union(*DYNAMIC_PROVIDERS.values())  # every documented provider is the one pickled
    for mod, classes in DYNAMIC_PROVIDERS.items():
        module = importlib.import_module(mod)
        for cls in classes:
            assert getattr(module, cls).__module__ == mod


def test_commands_run_only_documented_modules(recordings):
    used = set()
    for rec in recordings:
        for r in _resources(rec):
            if r.type != "command:local:Command":
                continue
            for key in ("create", "update", "delete"):
                if key in r.inputs:
                    found = re.findall(r" -m ([\w.]+)", r.inputs[key])
                    assert found and found[0] in COMMAND_MODULES, (r.name, r.inputs[key])
                    used.add(found[0])
    assert used == COMMAND_MODULES
    for mod in COMMAND_MODULES:
        assert importlib.util.find_spec(mod) is not None, mod


def _annotations(obj) -> list[str]:
    hints = typing.get_type_hints(obj) if not is_dataclass(obj) else {f.name: f.type for f in fields(obj)}
    return [str(v) for v in hints.values()]


def test_no_component_takes_planner_types():
    for mod, names in COMPONENTS.items():
        module = importlib.import_module(mod)
        source = inspect.getsource(module)
        if mod != "kindmesh.components.mesh":  # Mesh takes a whole config: it runs the planner inside
            assert "kindmesh.core.planner" not in source, f"{mod} imports the planner"
        for name in names:
            cls = getattr(module, name)
            params = inspect.signature(cls.__init__).parameters
            assert list(params)[:3] == ["self", "name", "args"], (name, list(params))
            args_cls = getattr(module, f"{name}Args")
            assert is_dataclass(args_cls), name
            text = " ".join(_annotations(args_cls)) + str(inspect.signature(cls.__init__))
            assert "Plan" not in text, (name, text)
            assert args_cls.__doc__ and "Attributes:" in args_cls.__doc__, f"{name}Args is not documented"


def test_public_components_and_their_args_import_from_kindmesh_components():
    """`from kindmesh.components import Mesh` (issue 20): every public component and its Args."""
    import subprocess
    import sys

    import kindmesh.components as package

    expected = {name for names in COMPONENTS.values() for cls in names for name in (cls, f"{cls}Args")}
    expected |= {"MeshMember", "ClusterTarget"}
    assert set(package.__all__) == expected == set(package._EXPORTS)
    for name in sorted(expected):
        obj = getattr(package, name)
        assert obj is getattr(importlib.import_module(f"kindmesh.components.{package._EXPORTS[name]}"), name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        package.Nope  # noqa: B018
    # in a fresh interpreter (outside the checkout's test session): the documented one-liner, and
    # the dynamic provider's module alone does not drag in every component and provider SDK
    code = ("import sys\nimport kindmesh.components.kind_provider\n"
            "assert 'kindmesh.components.mesh' not in sys.modules\n"
            "from kindmesh.components import Mesh, MeshArgs, CiliumRelease, CiliumReleaseArgs\n"
            "print(Mesh.__module__, MeshArgs.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["kindmesh.components.mesh", "MeshArgs"]
