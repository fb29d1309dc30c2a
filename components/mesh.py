"""Mesh: a whole kindmesh mesh from one config, for any Pulumi program.

    from kindmesh.components.mesh import Mesh, MeshArgs

    mesh = Mesh("lab", MeshArgs(config={"clusters": [{"name": "a", "id": 1}, {"name": "b", "id": 2}]}))
    pulumi.export("kubeconfigs", mesh.kubeconfigs)

``config`` takes the keys of the ``kindmesh:`` namespace of a stack file (see the README's
configuration table), validated exactly like the stack's: a bad config raises
``pulumi.RunError`` listing every problem before anything is registered. The same
preflight runs (host checks for kind clusters, read-only checks of existing ones).
Everything is registered under this component, with names prefixed ``<name>.`` (the
name is a DNS label; cluster names never contain a dot, so two meshes never share a
resource name). Kind cluster and docker network names and the kubeconfig file derive
from ``MeshArgs.stack`` (default ``<pulumi stack>-<name>``). The meshes of one program
claim their host resources: a second mesh with the same docker network, kind cluster
name, overlapping subnet or kubeconfig path is a ``pulumi.RunError`` naming both; without
``network.subnet`` a mesh takes the first default /16 no other mesh of the program uses.
"""

from __future__ import annotations

import ipaddress
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.settings import get_root_resource

MESH_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a DNS label
PREFIX_SEPARATOR = "."  # cluster names are DNS labels: they never contain it


@dataclass
class MeshArgs:
    """Inputs of :class:`Mesh`.

    Attributes:
        config: the ``kindmesh:`` keys (``clusters`` required; everything else defaulted).
        stack: the name kind clusters, the docker network and labels derive from (default:
            ``<pulumi stack>-<component name>``).
        preflight: run the host/cluster preflight before registering anything (off in
            tests under mocks anyway).
        kubeconfig_file: write ``.kindmesh/<stack>/kubeconfig`` (contexts named by cluster).
    """

    config: Mapping[str, Any]
    stack: str | None = None
    preflight: bool = True
    kubeconfig_file: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.config, Mapping):
            raise TypeError(
                f"MeshArgs.config: expected a mapping of the kindmesh: keys (e.g. {{'clusters': [...]}}), "
                f"got {type(self.config).__name__}")
        if self.stack is not None and (not isinstance(self.stack, str) or not self.stack):
            raise TypeError("MeshArgs.stack: expected a non-empty str (or None for <pulumi stack>-<name>)")


# Host resources claimed by the meshes of one program: per root stack resource, weakly
# (tests run many programs in one process; each gets a new root).
_CLAIMS: weakref.WeakKeyDictionary[Any, dict[str, dict[Any, str]]] = weakref.WeakKeyDictionary()
_NO_ROOT: dict[str, dict[Any, str]] = {}

_WHAT = {
    "name": ("component name", "give each Mesh its own name"),
    "network": ("docker network", "give one of them another MeshArgs(stack=...)"),
    "kind": ("kind cluster", "give one of them another MeshArgs(stack=...)"),
    "kubeconfig": ("kubeconfig file", "give one of them another MeshArgs(stack=...) or kubeconfig_file=False"),
    "subnet": ("docker subnet", "set a non-overlapping network.subnet in one of their configs"),
}


def _claims() -> dict[str, dict[Any, str]]:
    root = get_root_resource()
    table = _NO_ROOT if root is None else _CLAIMS.setdefault(root, {})
    for kind in _WHAT:
        table.setdefault(kind, {})
    return table


def _overlapping(subnet: str, claimed: Mapping[Any, str]) -> tuple[str, str] | None:
    net = ipaddress.ip_network(subnet, strict=False)
    for other, owner in claimed.items():
        if net.overlaps(ipaddress.ip_network(other, strict=False)):
            return other, owner
    return None


class Mesh(pulumi.ComponentResource):
    """Outputs: ``kubeconfigs`` (secret: cluster -> kubeconfig), ``clusters`` (table),
    ``peers``, ``endpoints``, ``hubble_ui``, ``mermaid``, ``outputs`` (everything the
    kindmesh stack exports), and ``stack_graph`` (the registered parts, for wiring more)."""

    kubeconfigs: pulumi.Output[dict[str, str]]
    clusters: list[dict[str, Any]]
    peers: dict[str, list[dict[str, Any]]]
    endpoints: dict[str, str]
    hubble_ui: dict[str, str | None]
    mermaid: str
    outputs: dict[str, Any]

    def __init__(self, name: str, args: MeshArgs, opts: pulumi.ResourceOptions | None = None):
        # imported here: the composition imports the other components (no import cycle)
        from kindmesh.core.config import ConfigError
        from kindmesh.core.planner import load_plan
        from kindmesh.stacks import composition, preflight_existing

        # Everything is checked and planned before the component registers (nothing half-created).
        if not isinstance(name, str) or not MESH_NAME_RE.fullmatch(name):
            raise ValueError(
                f"Mesh name {str(name)[:80]!r} is not a DNS label: use 1-63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit (e.g. 'lab')")
        if not isinstance(args, MeshArgs):
            raise TypeError(f"Mesh {name!r}: args must be MeshArgs, got {type(args).__name__}")
        args.__post_init__()
        stack = args.stack or f"{pulumi.get_stack()}-{name}"
        project = pulumi.get_project()
        claims = _claims()
        config: Mapping[str, Any] = args.config

        try:  # a default subnet avoids those other meshes of this program took (the planner decides)
            plan = load_plan(dict(config), stack=stack, project=project, avoid_subnets=list(claims["subnet"]),
                             kind_version=composition.detect_kind_version(config) if args.preflight else None)
        except ConfigError as err:
            raise pulumi.RunError(f"Mesh {name!r}: {err}") from None
        has_kind = any(c.source == "kind" for c in plan.clusters)

        wanted: list[tuple[str, Any, str]] = [("name", name, name)]
        if has_kind:
            wanted.append(("network", plan.network.name, plan.network.name))
            wanted.append(("subnet", plan.network.subnet, plan.network.subnet))
            wanted += [("kind", c.kind_name, c.kind_name) for c in plan.clusters if c.source == "kind"]
        if args.kubeconfig_file and plan.clusters:
            path = str(Path.cwd() / ".kindmesh" / plan.stack / "kubeconfig")
            wanted.append(("kubeconfig", path, path))
        clashes = []
        for kind, key, shown in wanted:
            if kind == "subnet":
                hit = _overlapping(key, claims["subnet"])
                other, owner = hit if hit else (None, None)
                shown = f"{key} (overlaps {other})" if other else shown
            else:
                owner = claims[kind].get(key)
            if owner is not None:
                what, fix = _WHAT[kind]
                clashes.append(f"  - {what} {shown}: used by Mesh {owner!r} too; {fix}")
        if clashes:
            raise pulumi.RunError(
                f"Mesh {name!r} would share host resources with another Mesh of this program:\n" + "\n".join(clashes))
        for kind, key, _shown in wanted:
            claims[kind][key] = name

        checked: object = None
        if args.preflight:  # before anything is registered, this component included
            try:
                checked = preflight_existing.run(plan)
            except RuntimeError as err:
                raise pulumi.RunError(f"Mesh {name!r}: {err}") from None

        super().__init__("kindmesh:index:Mesh", name, None, opts)
        self.stack_graph = composition.build(
            plan,
            preflight=(lambda _plan: checked) if args.preflight else None,
            parent=self,
            prefix=f"{name}{PREFIX_SEPARATOR}",
            kubeconfig_file=args.kubeconfig_file,
        )
        self.outputs = composition.outputs(self.stack_graph)
        self.kubeconfigs = self.outputs["kubeconfigs"]
        self.clusters = self.outputs["clusters"]
        self.peers = self.outputs["meshPeers"]
        self.endpoints = self.outputs["meshEndpoints"]
        self.hubble_ui = self.outputs["hubbleUi"]
        self.mermaid = self.outputs["mermaid"]
        self.register_outputs({"clusters": self.clusters, "peers": self.peers, "endpoints": self.endpoints,
                               "hubbleUi": self.hubble_ui, "mermaid": self.mermaid})
