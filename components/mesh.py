"""Mesh: a whole kindmesh mesh from one config, for any Pulumi program.

    from kindmesh.components.mesh import Mesh, MeshArgs

    mesh = Mesh("lab", MeshArgs(config={"clusters": [{"name": "a", "id": 1}, {"name": "b", "id": 2}]}))
    pulumi.export("kubeconfigs", mesh.kubeconfigs)

``config`` takes the keys of the ``kindmesh:`` namespace of a stack file (see the README's
configuration table), validated exactly like the stack's: a bad config raises
``pulumi.RunError`` listing every problem before anything is registered. The same
preflight runs (host checks for kind clusters, read-only checks of existing ones).
Everything is registered under this component, with names prefixed ``<name>-`` so two
meshes fit in one program; kind cluster and docker network names derive from
``MeshArgs.stack`` (default ``<pulumi stack>-<name>``), so two meshes never collide on
a host either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi


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
        super().__init__("kindmesh:index:Mesh", name, None, opts)
        # imported here: the composition imports the other components (no import cycle)
        from kindmesh.core.config import ConfigError
        from kindmesh.core.planner import load_plan
        from kindmesh.stacks import composition, preflight_existing

        stack = args.stack or f"{pulumi.get_stack()}-{name}"
        try:
            plan = load_plan(dict(args.config), stack=stack, project=pulumi.get_project())
        except ConfigError as err:
            raise pulumi.RunError(f"Mesh {name!r}: {err}") from None
        self.stack_graph = composition.build(
            plan,
            preflight=preflight_existing.run if args.preflight else None,
            parent=self,
            prefix=f"{name}-",
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
