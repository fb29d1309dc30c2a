"""MeshConnection: the ClusterMesh links of a mesh, as Cilium Helm values.

One component for the whole mesh (resource count linear in clusters). It turns members
(each with the endpoint its peers reach its clustermesh-apiserver at) and the links
between them into each member's ``clustermesh.config.clusters`` list - the declarative,
GitOps way Cilium documents (no ``cilium clustermesh connect``, which would
helm-upgrade releases behind Pulumi's back). Every list is known at plan time, so no
release waits on another cluster: adding a cluster updates its peers' values and
creates nothing but the new cluster's resources.

Everything here is plain data and stays plain: wrapping it in Outputs would cost
N×(N−1) deep-wrapped dicts for nothing (see the bench).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from kindmesh.components.cluster_target import check_int, reject_str
from kindmesh.core.config import validate_cluster_name

MESH_PORT = 2379  # clustermesh-apiserver's port behind a LoadBalancer


@dataclass(frozen=True)
class MeshMember:
    """A cluster of the mesh and where its peers reach its clustermesh-apiserver.

    Attributes:
        name: Cilium cluster name.
        ips: addresses of the clustermesh-apiserver (a LoadBalancer IP, or node IPs).
        port: its port (2379 behind a LoadBalancer; the NodePort otherwise).
        id: Cilium cluster id (for the summaries only).
    """

    name: str
    ips: Sequence[str]
    port: int = MESH_PORT
    id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"MeshMember.name: expected a str, got {type(self.name).__name__}")
        problem = validate_cluster_name(self.name)
        if problem:
            raise ValueError(f"MeshMember.name: {problem}")
        reject_str(self.ips, f"MeshMember({self.name!r}).ips", f"ips=[{self.ips!r}]")
        if isinstance(self.ips, pulumi.Output) or not isinstance(self.ips, Sequence):
            raise TypeError(f"MeshMember({self.name!r}).ips: expected a list of IP strings known at plan time, "
                            f"got {type(self.ips).__name__}")
        if not self.ips:
            raise ValueError(f"MeshMember({self.name!r}).ips: give at least one address its peers can reach")
        for i, ip in enumerate(self.ips):
            try:
                if not isinstance(ip, str):
                    raise ValueError(ip)  # ip_address() would take an int as an address
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"MeshMember({self.name!r}).ips[{i}]: {str(ip)[:80]!r} is not an IP address") from None
        check_int(self.port, f"MeshMember({self.name!r}).port", 1, 65535)
        if self.id is not None:
            check_int(self.id, f"MeshMember({self.name!r}).id", 1, 255)
        object.__setattr__(self, "ips", tuple(self.ips))

    @property
    def endpoint(self) -> str:
        return f"{self.ips[0]}:{self.port}" if self.ips else f"?:{self.port}"


@dataclass
class MeshConnectionArgs:
    """Inputs of :class:`MeshConnection`.

    Attributes:
        members: every cluster of the mesh; peers are listed in this order.
        links: undirected pairs of member names that mesh with each other (a full mesh is
            every pair; a hub topology is hub ↔ each spoke). ``None``: a full mesh.
        topology: a name for the shape of ``links`` (informational output).
    """

    members: Sequence[MeshMember]
    links: Sequence[tuple[str, str]] | None = None
    topology: str = "full"
    _peers: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        reject_str(self.members, "MeshConnectionArgs.members", "members=[MeshMember(...), ...]")
        if not isinstance(self.members, Sequence):
            raise TypeError(f"MeshConnectionArgs.members: expected a list of MeshMember, got {type(self.members).__name__}")
        for i, m in enumerate(self.members):
            if not isinstance(m, MeshMember):
                raise TypeError(f"MeshConnectionArgs.members[{i}]: expected a MeshMember, got {type(m).__name__}; "
                                "write MeshMember(name, ips=[...], port=..., id=...)")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"MeshConnectionArgs.members: duplicate names in {names}")
        ids = [m.id for m in self.members if m.id is not None]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"MeshConnectionArgs.members: cluster id(s) {dup} used twice; Cilium needs unique ids")
        if self.links is not None:
            reject_str(self.links, "MeshConnectionArgs.links", "links=[('a', 'b')]")
        links = self.links if self.links is not None else [
            (a, b) for i, a in enumerate(names) for b in names[i + 1:]
        ]
        linked: dict[str, set[str]] = {n: set() for n in names}
        for i, link in enumerate(links):
            if isinstance(link, str) or not isinstance(link, Sequence) or len(link) != 2:
                hint = f" (write ({link.split('<->')[0]!r}, {link.split('<->')[-1]!r}))" if isinstance(
                    link, str) and "<->" in link else ""
                raise ValueError(f"MeshConnectionArgs.links[{i}]: {link!r} is not a pair of member names{hint}; "
                                 "each link is a 2-tuple like ('a', 'b')")
            a, b = link
            if a not in linked or b not in linked or a == b:
                raise ValueError(f"MeshConnectionArgs.links: ({a!r}, {b!r}) does not join two members")
            linked[a].add(b)
            linked[b].add(a)
        self._peers = {n: [m for m in names if m in linked[n]] for n in names}
        self.links = [(a, b) for a, b in links]


class MeshConnection(pulumi.ComponentResource):
    """Each member's ClusterMesh peers, as plain data (no cloud resources).

    Outputs (plain attributes, also registered): ``peers`` (member -> its
    ``clustermesh.config.clusters`` entries), ``endpoints`` (member -> ``ip:port``),
    ``summaries`` (member -> one line), ``links`` (``a<->b``).
    """

    peers: dict[str, list[dict[str, Any]]]
    endpoints: dict[str, str]
    summaries: dict[str, str]
    links: list[str]

    def __init__(self, name: str, args: MeshConnectionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kindmesh:index:MeshConnection", name, None, opts)
        by_name = {m.name: m for m in args.members}
        self.peers = {
            m.name: [{"name": p, "port": by_name[p].port, "ips": list(by_name[p].ips)} for p in args._peers[m.name]]
            for m in args.members
        }
        self.endpoints = {m.name: m.endpoint for m in args.members}
        self.summaries = {
            m.name: f"{m.name}{f' (id {m.id})' if m.id is not None else ''} serves clustermesh at {m.endpoint} "
                    f"and meshes with {', '.join(args._peers[m.name]) or 'no peers'}"
            for m in args.members
        }
        self.links = [f"{a}<->{b}" for a, b in args.links or []]
        # Component outputs are plain values: serialized as they are, never deep-wrapped.
        self.register_outputs(
            {
                "topology": args.topology,
                "peers": self.peers,
                "endpoints": self.endpoints,
                "summaries": self.summaries,
                "links": self.links,
            }
        )

    def peers_for(self, cluster: str) -> list[dict[str, Any]]:
        """``clustermesh.config.clusters`` for one member (plain data, known at plan time)."""
        if cluster not in self.peers:
            raise ValueError(f"MeshConnection.peers_for: {cluster!r} is not a member; members: {', '.join(self.peers)}")
        return [dict(p) for p in self.peers[cluster]]
