"""The pure topology planner: stack config -> plan.

Everything that is a *decision* lives here: kind names, Cilium names and ids, pod and
service CIDRs, the per-stack docker network layout, MetalLB pools, the stable
clustermesh-apiserver IP of every cluster, the Hubble UI IP, and the mesh peers.
Deterministic (same config -> equal plan) and local (adding a cluster never changes
an existing cluster's name, CIDRs, pool or mesh IP).

Network layout of the stack's docker subnet (IPv4)::

    network | gateway | node range (lower half: docker hands node IPs out here) ...
    ... | pools (upper half, slot k = id-1 counted from the top) | broadcast

The node range is given to docker as the network's ``ip_range`` so docker can never
hand a node an address inside a pool. The layout depends on the subnet alone, so the
network's inputs do not change when clusters are added or removed.

Pure module: no ``pulumi`` import.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stacks.config import (
    ClusterConfig,
    ConfigError,
    Problem,
    StackConfig,
    parse_config,
)
from stacks.existing import ExistingPlan, check_stack, mesh_addresses, plan_existing
from stacks.images import cilium_images, demo_images, metallb_images

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address

MESH_PORT = 2379
# Default docker subnets are picked among these /16s by a hash of the stack name
# (docker0 is usually 172.17/16 and kind's own network 172.18/16: avoided).
DEFAULT_SUBNETS = tuple(f"172.{n}.0.0/16" for n in range(24, 32))
KIND_NAME_MAX = 48  # keeps "<name>-control-plane" within a 63-character hostname


@dataclass(frozen=True)
class DemoPlan:
    enabled: bool
    policy: bool
    affinity: str | None
    shared: bool


@dataclass(frozen=True)
class ClusterPlan:
    """Everything decided about one cluster."""

    name: str  # Cilium cluster.name, the user's name
    id: int  # Cilium cluster.id
    source: str  # "kind" (later: "kubeconfig" for existing clusters)
    kind_name: str  # kind cluster name (unique per host: includes the stack)
    context: str  # kube context kind writes
    control_plane: str  # control-plane container name = Cilium k8sServiceHost
    node_names: tuple[str, ...]
    workers: int
    pod_subnet: str
    service_subnet: str
    pool_first: str
    pool_last: str
    mesh_ip: str  # clustermesh-apiserver LoadBalancer IP (first of the pool)
    hubble_ui_ip: str | None  # Hubble UI LoadBalancer IP (second of the pool)
    peers: tuple[str, ...]  # names of the clusters this one meshes with
    demo: DemoPlan
    # existing clusters (stacks/existing.py): NodePort endpoints listen on other ports/IPs
    mesh_port: int = MESH_PORT
    mesh_ips: tuple[str, ...] = ()  # () = (mesh_ip,)
    existing: ExistingPlan | None = None

    @property
    def pool(self) -> str:
        """MetalLB address range ``first-last``."""
        return f"{self.pool_first}-{self.pool_last}"

    @property
    def mesh_endpoint(self) -> str:
        """Where peers reach this cluster's clustermesh-apiserver."""
        return f"{self.mesh_ip}:{self.mesh_port}"


@dataclass(frozen=True)
class NetworkPlan:
    name: str
    subnet: str
    gateway: str
    node_range: str  # docker ip_range for node containers
    pool_region: str  # where pools are carved from (upper half)
    pool_size: int


@dataclass(frozen=True)
class MeshLink:
    a: str
    b: str

    def __str__(self) -> str:
        return f"{self.a}<->{self.b}"


@dataclass(frozen=True)
class StackPlan:
    project: str
    stack: str
    config: StackConfig
    network: NetworkPlan
    clusters: tuple[ClusterPlan, ...]
    topology: str
    hub: str | None
    links: tuple[MeshLink, ...]

    def cluster(self, name: str) -> ClusterPlan:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def peer_entries(self, name: str) -> list[dict[str, Any]]:
        """Cilium ``clustermesh.config.clusters`` entries for ``name``'s peers."""
        return [
            {"name": p.name, "port": p.mesh_port, "ips": list(p.mesh_ips or (p.mesh_ip,))}
            for p in (self.cluster(n) for n in self.cluster(name).peers)
        ]

    @property
    def stack_label(self) -> str:
        """Label value naming this stack on docker networks, kind nodes and objects."""
        return f"{slug(self.project)}.{slug(self.stack)}"[:63].strip(".-")

    @property
    def images(self) -> tuple[str, ...]:
        """Images pulled once on the host and loaded into every cluster."""
        return prepull_images(self.config)


def slug(text: str) -> str:
    """Lowercase DNS-label-ish slug of a free-form name (stack names may hold '_', '.')."""
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", s) or "stack"


def kind_name_for(stack: str, cluster: str) -> str:
    """Deterministic kind cluster name; two stacks never collide on one host."""
    name = f"km-{slug(stack)}-{cluster}"
    if len(name) <= KIND_NAME_MAX:
        return name
    digest = hashlib.sha256(f"{stack}/{cluster}".encode()).hexdigest()[:6]
    keep = KIND_NAME_MAX - len(cluster) - len(digest) - 5
    head = slug(stack)[: max(keep, 1)].strip("-") or "s"
    name = f"km-{head}-{digest}-{cluster}"
    return name[:KIND_NAME_MAX].strip("-")


def default_subnet(stack: str) -> str:
    index = int(hashlib.sha256(stack.encode()).hexdigest(), 16) % len(DEFAULT_SUBNETS)
    return DEFAULT_SUBNETS[index]


def default_pod_subnet(cluster_id: int) -> str:
    return f"10.{cluster_id}.0.0/17"


def default_service_subnet(cluster_id: int) -> str:
    return f"10.{cluster_id}.128.0/20"


def prepull_images(config: StackConfig) -> tuple[str, ...]:
    """Images every cluster needs, pulled once on the host (Cilium's first)."""
    images: list[str] = list(cilium_images(config.cilium.version, config.cilium.hubble, config.cilium.hubble_ui))
    images += metallb_images(config.metallb.version)
    if config.demo.enabled:
        images += demo_images(config.demo)
    return tuple(dict.fromkeys(images))  # de-duplicated, order kept


def network_layout(subnet: str) -> tuple[IPv4Net, IPv4Net]:
    """(node range, pool region) of a docker subnet: its lower and upper half."""
    net = ipaddress.IPv4Network(subnet)
    if net.prefixlen >= 31:
        raise ValueError("subnet too small")
    lower, upper = net.subnets(prefixlen_diff=1)
    return lower, upper


def pool_for(subnet: str, pool_size: int, cluster_id: int) -> tuple[IPv4Addr, IPv4Addr]:
    """Pool slot (id-1) counted from the top of the subnet, below the broadcast."""
    net = ipaddress.IPv4Network(subnet)
    last = int(net.broadcast_address) - 1 - (cluster_id - 1) * pool_size
    first = last - pool_size + 1
    # a slot below the address space only happens for configs already reported as too small
    return IPv4Addr(max(first, 0)), IPv4Addr(max(last, 0))


def _links(topology: str, hub: str | None, names: list[str]) -> list[MeshLink]:
    if topology == "none" or len(names) < 2:
        return []
    if topology == "hub":
        if hub not in names:  # already reported by the config parser
            return []
        return [MeshLink(hub, n) for n in names if n != hub]
    return [MeshLink(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def plan(config: StackConfig, *, stack: str, project: str = "kindmesh") -> StackPlan:
    """Plan a parsed config; raises ConfigError with every planning problem."""
    problems: list[Problem] = []
    result = _plan(config, stack=stack, project=project, problems=problems)
    if problems:
        raise ConfigError(problems)
    return result


def load_plan(raw: Mapping[str, Any], *, stack: str, project: str = "kindmesh") -> StackPlan:
    """Raw ``kindmesh:`` keys -> plan, reporting parse *and* plan problems together."""
    problems: list[Problem] = []
    config = parse_config(raw, problems=problems)
    if not config.clusters:
        raise ConfigError(problems)
    result = _plan(config, stack=stack, project=project, problems=problems)
    if problems:
        raise ConfigError(problems)
    return result


def _plan(config: StackConfig, *, stack: str, project: str, problems: list[Problem]) -> StackPlan:
    add = lambda key, msg: problems.append(Problem(key, msg))  # noqa: E731
    subnet_key = "kindmesh:network.subnet"
    subnet = config.network.subnet or default_subnet(stack)
    net = ipaddress.IPv4Network(subnet)
    pool_size = config.network.pool_size
    kind_configs = [c for c in config.clusters if c.source == "kind"]
    total_nodes = sum(1 + c.workers for c in kind_configs)

    layout_ok = net.prefixlen <= 28
    if not kind_configs:  # only existing clusters: no docker network at all
        lower, upper = network_layout(subnet) if layout_ok else (net, net)
    elif not layout_ok:
        add(subnet_key, f"{subnet} is too small; use a /28 or larger (a /24 or /16 is typical)")
        lower = upper = net
    else:
        lower, upper = network_layout(subnet)
        # network + gateway are not node addresses
        node_capacity = lower.num_addresses - 2
        if total_nodes > node_capacity:
            add(
                subnet_key,
                f"{subnet} leaves room for {node_capacity} nodes in its lower half but the "
                f"clusters have {total_nodes}; use a larger subnet (e.g. a /16)",
            )
        max_id = max((c.id for c in kind_configs), default=1)
        pool_capacity = (upper.num_addresses - 1) // pool_size  # broadcast excluded
        if max_id > pool_capacity:
            add(
                subnet_key,
                f"{subnet} fits {pool_capacity} pools of {pool_size} addresses in its upper half, "
                f"but pools are placed by cluster id and the largest id is {max_id}; "
                "use a larger subnet, a smaller network.poolSize, or smaller ids",
            )

    names = [c.name for c in config.clusters]
    links = _links(config.mesh.topology, config.mesh.hub, names)
    peers: dict[str, list[str]] = {n: [] for n in names}
    for link in links:
        peers[link.a].append(link.b)
        peers[link.b].append(link.a)

    clusters: list[ClusterPlan] = []
    kind_names: dict[str, str] = {}
    for index, c in enumerate(config.clusters):
        if c.source == "existing":
            clusters.append(_existing_cluster(index, c, config, peers, add))
            continue
        kname = kind_name_for(stack, c.name)
        if kname in kind_names:
            add(
                f"kindmesh:clusters[{index}].name",
                f"kind name {kname!r} collides with cluster {kind_names[kname]!r}; rename one",
            )
        kind_names[kname] = c.name
        cid = c.id if c.id >= 1 else index + 1
        first, last = pool_for(subnet, pool_size, cid)
        ui_ip = str(first + 1) if config.cilium.hubble_ui else None
        clusters.append(
            ClusterPlan(
                name=c.name,
                id=cid,
                source=c.source,
                kind_name=kname,
                context=f"kind-{kname}",
                control_plane=f"{kname}-control-plane",
                node_names=_node_names(kname, c.workers),
                workers=c.workers,
                pod_subnet=c.pod_subnet or default_pod_subnet(cid),
                service_subnet=c.service_subnet or default_service_subnet(cid),
                pool_first=str(first),
                pool_last=str(last),
                mesh_ip=str(first),
                hubble_ui_ip=ui_ip,
                peers=tuple(peers[c.name]),
                demo=DemoPlan(
                    enabled=config.demo.enabled,
                    policy=config.demo.policy,
                    affinity=c.demo.affinity,
                    shared=c.demo.shared,
                ),
            )
        )

    _check_cidrs(config.clusters, clusters, subnet if kind_configs else None, subnet_key, add)
    check_stack(config, clusters, subnet if kind_configs else None, add)

    network = NetworkPlan(
        name=config.network.name or f"kindmesh-{slug(stack)}",
        subnet=str(net),
        gateway=str(net.network_address + 1),
        node_range=str(lower),
        pool_region=str(upper),
        pool_size=pool_size,
    )
    return StackPlan(
        project=project,
        stack=stack,
        config=config,
        network=network,
        clusters=tuple(clusters),
        topology=config.mesh.topology,
        hub=config.mesh.hub,
        links=tuple(links),
    )


def _existing_cluster(
    index: int, c: ClusterConfig, config: StackConfig, peers: dict[str, list[str]], add: Any
) -> ClusterPlan:
    """ClusterPlan of a ``source: existing`` cluster: nothing kind, everything from the user."""
    ex = plan_existing(index, c, add)
    return ClusterPlan(
        name=c.name,
        id=c.id if c.id >= 1 else index + 1,
        source=c.source,
        kind_name="",
        context=ex.context if ex else "",
        control_plane=ex.api_host if ex else "",
        node_names=(),
        workers=0,
        # required for existing clusters (reported by the parser when missing)
        pod_subnet=c.pod_subnet or default_pod_subnet(c.id if c.id >= 1 else index + 1),
        service_subnet=c.service_subnet or default_service_subnet(c.id if c.id >= 1 else index + 1),
        peers=tuple(peers[c.name]),
        demo=DemoPlan(enabled=config.demo.enabled, policy=config.demo.policy,
                      affinity=c.demo.affinity, shared=c.demo.shared),
        existing=ex,
        **mesh_addresses(c, config.cilium.hubble_ui),
    )


def _node_names(kind_name: str, workers: int) -> tuple[str, ...]:
    names = [f"{kind_name}-control-plane"]
    for i in range(1, workers + 1):
        names.append(f"{kind_name}-worker" if i == 1 else f"{kind_name}-worker{i}")
    return tuple(names)


def _check_cidrs(
    configs: tuple[ClusterConfig, ...],
    clusters: list[ClusterPlan],
    subnet: str | None,
    subnet_key: str,
    add: Any,
) -> None:
    docker = ipaddress.IPv4Network(subnet) if subnet is not None else None
    ranges: list[tuple[str, str, IPv4Net]] = []
    for index, (_cfg, plan_) in enumerate(zip(configs, clusters, strict=True)):
        for field_, kind_, value in (
            ("podSubnet", "pod", plan_.pod_subnet),
            ("serviceSubnet", "service", plan_.service_subnet),
        ):
            key = f"kindmesh:clusters[{index}].{field_}"
            ranges.append((key, f"{plan_.name} {kind_}", ipaddress.IPv4Network(value)))
            net = ipaddress.IPv4Network(value)
            if kind_ == "pod" and net.prefixlen > 24:
                add(key, f"{value} is smaller than one node's /24; use a /24 or larger (a /16 is typical)")
            if kind_ == "service" and (net.prefixlen > 28 or net.prefixlen < 12):
                add(key, f"{value}: Kubernetes service CIDRs must be between /12 and /28")
    for i, (key_a, what_a, a) in enumerate(ranges):
        if docker is not None and a.overlaps(docker):
            add(
                key_a,
                f"{a} ({what_a} CIDR) overlaps the docker subnet {docker}; "
                f"pick a range outside it or change {subnet_key}",
            )
        for key_b, what_b, b in ranges[i + 1 :]:
            if a.overlaps(b):
                add(key_b, f"{b} ({what_b} CIDR) overlaps {a} ({what_a} CIDR at {key_a}); pick a disjoint range")
