"""MeshConnection: the ClusterMesh links of the stack, as Cilium Helm values.

One component for the whole mesh (resource count linear in clusters). It turns the
planner's symmetric peer sets into each member's ``clustermesh.config`` list - the
declarative, GitOps way Cilium documents (no ``cilium clustermesh connect``, which
would helm-upgrade releases behind Pulumi's back). Every member's list is known at plan
time, so no release waits on another cluster: adding a cluster updates its peers'
values and creates nothing but the new cluster's resources.

Everything here is plain data known at plan time and stays plain: wrapping it in
Outputs would cost N×(N−1) deep-wrapped dicts for nothing (see the bench).
"""

from __future__ import annotations

from typing import Any

import pulumi

from kindmesh.core.planner import StackPlan


def summary(plan: StackPlan, name: str) -> str:
    c = plan.cluster(name)
    peers = ", ".join(c.peers) or "no peers"
    return f"{c.name} (id {c.id}) serves clustermesh at {c.mesh_endpoint} and meshes with {peers}"


class MeshConnection(pulumi.ComponentResource):
    peers: dict[str, list[dict[str, Any]]]
    endpoints: dict[str, str]
    summaries: dict[str, str]
    links: list[str]

    def __init__(self, name: str, plan: StackPlan, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kindmesh:index:MeshConnection", name, None, opts)
        self.peers = {c.name: plan.peer_entries(c.name) for c in plan.clusters}
        self.endpoints = {c.name: c.mesh_endpoint for c in plan.clusters}
        self.summaries = {c.name: summary(plan, c.name) for c in plan.clusters}
        self.links = [str(link) for link in plan.links]
        # Component outputs are plain values: serialized as they are, never deep-wrapped.
        self.register_outputs(
            {
                "topology": plan.topology,
                "peers": self.peers,
                "endpoints": self.endpoints,
                "summaries": self.summaries,
                "links": self.links,
            }
        )

    def peers_for(self, cluster: str) -> list[dict[str, Any]]:
        """``clustermesh.config.clusters`` for one member (plain data, known at plan time)."""
        return [dict(p) for p in self.peers[cluster]]
