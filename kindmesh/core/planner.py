"""The pure topology planner: stack config -> plan.

Everything that is a *decision* lives here: kind names, Cilium names and ids, pod and
service CIDRs, the per-stack docker network layout, MetalLB pools, the stable
clustermesh-apiserver IP of every cluster, the Hubble UI IP, and the mesh peers.
Deterministic (same config -> equal plan) and local: every per-cluster decision derives
from the cluster's explicit, required ``id`` and its name, never from its position, and
every list (clusters, peers, links) is ordered by id. So adding, removing or reordering
clusters never changes another cluster's names, CIDRs, pool or mesh IP, and its peers
only by the cluster added or removed.

Names are injective: distinct stack names get distinct docker networks and stack labels
(:func:`stack_slug`), and distinct (stack, cluster) pairs distinct kind names
(:func:`kind_name_for`).

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kindmesh.core.config import (
    KIND_NAME_MAX,
    ClusterConfig,
    ConfigError,
    Problem,
    StackConfig,
    parse_config,
)
from kindmesh.core.existing import ExistingPlan, check_stack, mesh_addresses, plan_existing
from kindmesh.core.images import demo_images
from kindmesh.core.versions import (
    Release,
    check_skew,
    cilium_images,
    cilium_line,
    fmt_minor,
    kind_node_image,
    metallb_images,
    minor_of,
    moved_paths_in,
    node_k8s_minor,
    parse_version,
    value_problems,
    window_text,
    window_verdict,
)

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address

MESH_PORT = 2379
# Default docker subnets are picked among these /16s by a hash of the stack name
# (docker0 is usually 172.17/16 and kind's own network 172.18/16: avoided).
DEFAULT_SUBNETS = tuple(f"172.{n}.0.0/16" for n in range(24, 32))
NODE_POD_PREFIX = 24  # kube-controller-manager's default IPv4 node CIDR mask (kind keeps it)
STACK_SLUG_MAX = 40  # keeps "kindmesh-<slug>" and "<project>.<slug>" short
LABEL_MAX = 63  # Kubernetes label values and docker label values we set
HASH_LEN = 8
_CLEAN_RE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")  # a DNS label with no '--'


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
    cilium_version: str = ""  # this cluster's Cilium chart version ("" = the stack's cilium.version)

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
    node_image: str = ""  # kind node image: kind.nodeImage, else the installed kind release's
    kind_version: Release | None = None  # the kind release the plan was made for (None: unknown)
    warnings: tuple[str, ...] = ()  # accepted, but worth saying (unvalidated versions, windows)

    def cilium_version(self, cluster: ClusterPlan) -> str:
        return cluster.cilium_version or self.config.cilium.version

    def images_for(self, cluster: ClusterPlan) -> tuple[str, ...]:
        """Images loaded into one kind cluster: its own Cilium version's, MetalLB's, the demo's."""
        return prepull_images(self.config, (self.cilium_version(cluster),))

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
        return stack_label(self.project, self.stack)

    @property
    def images(self) -> tuple[str, ...]:
        """Images pulled once on the host: every kind cluster's (one set per Cilium version in use)."""
        kinds = [c for c in self.clusters if c.source == "kind"] or list(self.clusters)
        return prepull_images(self.config, tuple(self.cilium_version(c) for c in kinds))


def slug(text: str) -> str:
    """Lowercase DNS-label-ish slug of a free-form name (lossy: ``team_a`` = ``team-a``).

    Never contains ``--`` and never starts or ends with ``-``; may be empty."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower())
    return s.strip("-")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:HASH_LEN]


def is_clean(name: str) -> bool:
    """A lowercase DNS label without ``--``: used as-is in names."""
    return _CLEAN_RE.fullmatch(name) is not None


def stack_slug(stack: str, limit: int = STACK_SLUG_MAX) -> str:
    """Injective, DNS-label-safe form of a Pulumi stack (or project) name.

    A clean name (``dev``, ``team-a``) is kept as is. Any other name (``Dev``, ``team_a``,
    ``Team.A``, or a clean name longer than ``limit``) becomes its slug, ``--`` and a hash
    of the exact name: ``team-a--1b2c3d4e``. Clean names never contain ``--``, so the two
    forms never meet, and the hash tells apart names with the same slug.
    """
    if is_clean(stack) and len(stack) <= limit:
        return stack
    head = slug(stack)[: max(limit - HASH_LEN - 2, 1)].strip("-") or "s"
    return f"{head}--{_digest(stack)}"


def stack_label(project: str, stack: str) -> str:
    """``<project>.<stack>`` as a label value (<= 63 characters; injective in the stack)."""
    tail = stack_slug(stack)
    head = stack_slug(project, LABEL_MAX - len(tail) - 1)
    if len(head) + len(tail) + 1 > LABEL_MAX:
        head = head[: LABEL_MAX - len(tail) - 1].strip("-") or "p"
    return f"{head}.{tail}"


def network_name_for(stack: str) -> str:
    return f"kindmesh-{stack_slug(stack)}"


def kind_name_for(stack: str, cluster: str) -> str:
    """Deterministic kind cluster name; distinct (stack, cluster) pairs never share one.

    ``km-<stack>-<cluster>`` when the stack name is lowercase letters and digits only
    (``dev`` -> ``km-dev-us``): such a stack has no '-', so the name splits back into
    (stack, cluster) one way only. Every other pair gets ``km--<slug>-<cluster>-<hash>``,
    the hash over the exact (stack, cluster): the ``km--`` prefix never starts a name of
    the first form. At most 48 characters, so ``<name>-control-plane`` is a valid
    hostname (kind itself allows ``[a-z0-9.-]+``).
    """
    if re.fullmatch(r"[a-z0-9]+", stack):
        name = f"km-{stack}-{cluster}"
        if len(name) <= KIND_NAME_MAX:
            return name
    digest = _digest(stack, cluster)
    tail = f"{cluster[: KIND_NAME_MAX - 4 - HASH_LEN - 1]}-{digest}".strip("-")
    room = KIND_NAME_MAX - len("km--") - len(tail) - 1
    head = slug(stack)[: max(room, 0)].strip("-")
    return f"km--{head}-{tail}" if head else f"km--{tail}"


def free_subnet(name: str, used: Iterable[str | IPv4Net], candidates: Sequence[str]) -> str | None:
    """The first of ``candidates`` overlapping none of ``used``, probing from a slot the name's
    hash picks (names spread out; the same name and ``used`` give the same subnet)."""
    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(candidates)
    for step in range(len(candidates)):
        candidate = candidates[(start + step) % len(candidates)]
        if not any(ipaddress.IPv4Network(candidate).overlaps(t) for t in taken):
            return candidate
    return None


def default_subnet(stack: str, avoid: Iterable[str | IPv4Net] = ()) -> str:
    """The stack's docker subnet when the config sets none: its hashed DEFAULT_SUBNETS slot,
    or the next one that overlaps nothing in ``avoid`` (another mesh of the same program)."""
    hashed = DEFAULT_SUBNETS[int(hashlib.sha256(stack.encode()).hexdigest(), 16) % len(DEFAULT_SUBNETS)]
    return free_subnet(stack, avoid, DEFAULT_SUBNETS) or hashed  # all taken: the caller reports the clash


def default_pod_subnet(cluster_id: int) -> str:
    return f"10.{cluster_id}.0.0/17"


def default_service_subnet(cluster_id: int) -> str:
    return f"10.{cluster_id}.128.0/20"


def prepull_images(config: StackConfig, cilium_versions: Sequence[str] = ()) -> tuple[str, ...]:
    """Images of ``cilium_versions`` (default: the stack's), MetalLB's and the demo's, pulled once
    on the host (Cilium's first; versions kindmesh has not validated contribute none)."""
    images: list[str] = []
    for version in sorted(set(cilium_versions or (config.cilium.version,)), key=_version_key):
        images += cilium_images(version, config.cilium.hubble, config.cilium.hubble_ui)
    images += metallb_images(config.metallb.version)
    if config.demo.enabled:
        images += demo_images(config.demo)
    return tuple(dict.fromkeys(images))  # de-duplicated, order kept


def _version_key(version: str) -> tuple[Any, ...]:
    parsed = parse_version(version)
    return (parsed[0], parsed[1], version) if parsed else ((0, 0, 0), "", version)


def network_layout(subnet: str) -> tuple[IPv4Net, IPv4Net]:
    """(node range, pool region) of a docker subnet: its lower and upper half.

    Public for programs built from the components alone: give docker the node range as the
    network's ``ip_range`` and carve MetalLB pools from the region (:func:`pool_for`), so
    docker never hands a node an address inside a pool."""
    net = ipaddress.IPv4Network(subnet)
    if net.prefixlen >= 31:
        raise ValueError("subnet too small")
    lower, upper = net.subnets(prefixlen_diff=1)
    return lower, upper


def pool_for(subnet: str, pool_size: int, cluster_id: int) -> tuple[IPv4Addr, IPv4Addr]:
    """Pool slot (id-1) counted from the top of the subnet, below the broadcast.

    Public (see :func:`network_layout`): ``(first, last)`` of cluster ``cluster_id``'s pool."""
    net = ipaddress.IPv4Network(subnet)
    last = int(net.broadcast_address) - 1 - (cluster_id - 1) * pool_size
    first = last - pool_size + 1
    # a slot below the address space only happens for configs already reported as too small
    return IPv4Addr(max(first, 0)), IPv4Addr(max(last, 0))


def _links(topology: str, hub: str | None, names: list[str]) -> list[MeshLink]:
    """Mesh links over ``names`` (ordered by cluster id, so the config order never matters)."""
    if topology == "none" or len(names) < 2:
        return []
    if topology == "hub":
        if hub not in names:  # already reported by the config parser
            return []
        return [MeshLink(hub, n) for n in names if n != hub]
    return [MeshLink(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def plan(config: StackConfig, *, stack: str, project: str = "kindmesh",
         kind_version: Release | None = None) -> StackPlan:
    """Plan a parsed config; raises ConfigError with every planning problem."""
    problems: list[Problem] = []
    result = _plan(config, stack=stack, project=project, problems=problems, kind_version=kind_version)
    if problems:
        raise ConfigError(problems)
    return result


def load_plan(raw: Mapping[str, Any], *, stack: str, project: str = "kindmesh",
              avoid_subnets: Iterable[str] = (), kind_version: Release | None = None) -> StackPlan:
    """Raw ``kindmesh:`` keys -> plan, reporting parse *and* plan problems together.

    ``avoid_subnets``: docker subnets already taken (other meshes of the same program); a
    default subnet is then the next free one. An explicit ``network.subnet`` is kept.
    ``kind_version``: the installed kind release (detected by the caller; None = unknown):
    without ``kind.nodeImage`` the kind clusters get that release's node image."""
    problems: list[Problem] = []
    config = parse_config(raw, problems=problems)
    if not config.clusters:
        raise ConfigError(problems)
    result = _plan(config, stack=stack, project=project, problems=problems, avoid_subnets=avoid_subnets,
                   kind_version=kind_version)
    if problems:
        raise ConfigError(problems)
    return result


def _plan(config: StackConfig, *, stack: str, project: str, problems: list[Problem],
          avoid_subnets: Iterable[str] = (), kind_version: Release | None = None) -> StackPlan:
    add = lambda key, msg: problems.append(Problem(key, msg))  # noqa: E731
    warnings: list[str] = list(config.warnings)
    subnet_key = "kindmesh:network.subnet"
    subnet = config.network.subnet or default_subnet(stack, avoid_subnets)
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

    # Every list below is ordered by cluster id, never by position in the config: moving
    # a cluster in kindmesh:clusters changes nothing.
    ordered = sorted(config.clusters, key=lambda c: (c.id, c.name))
    names = [c.name for c in ordered]
    links = _links(config.mesh.topology, config.mesh.hub, names)
    peers: dict[str, list[str]] = {n: [] for n in names}
    for link in links:
        peers[link.a].append(link.b)
        peers[link.b].append(link.a)
    rank = {n: i for i, n in enumerate(names)}

    clusters: list[ClusterPlan] = []
    kind_names: dict[str, str] = {}
    for c in ordered:
        if c.source == "existing":
            clusters.append(_existing_cluster(c.index, c, config, peers, add))
            continue
        kname = kind_name_for(stack, c.name)
        if kname in kind_names:
            add(
                f"kindmesh:clusters[{c.index}].name",
                f"kind name {kname!r} collides with cluster {kind_names[kname]!r}; rename one",
            )
        kind_names[kname] = c.name
        cid = c.id
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
                peers=tuple(sorted(peers[c.name], key=rank.__getitem__)),
                demo=DemoPlan(
                    enabled=config.demo.enabled,
                    policy=config.demo.policy,
                    affinity=c.demo.affinity,
                    shared=c.demo.shared,
                ),
                cilium_version=config.cilium_version_of(c),
            )
        )

    _check_cidrs(ordered, clusters, subnet if kind_configs else None, subnet_key, add)
    check_stack(config, clusters, subnet if kind_configs else None, add)
    _check_versions(config, ordered, add, warnings)
    node_image = config.kind.node_image
    if node_image is None:
        node_image, note = kind_node_image(kind_version)
        if note and kind_configs:
            warnings.append(note)
    if kind_configs:
        _check_node_image(config, kind_configs, node_image, add, warnings)

    network = NetworkPlan(
        name=config.network.name or network_name_for(stack),
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
        node_image=node_image,
        kind_version=kind_version,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _version_key_name(c: ClusterConfig) -> str:
    """The key that sets a cluster's Cilium version (its own, else the stack's)."""
    return f"kindmesh:clusters[{c.index}].cilium.version" if c.cilium_version else "kindmesh:cilium.version"


def _check_versions(config: StackConfig, ordered: Sequence[ClusterConfig], add: Any, warnings: list[str]) -> None:
    """Cilium version skew across the mesh, and extra values each cluster's version cannot take."""
    skew = check_skew([(_version_key_name(c), config.cilium_version_of(c)) for c in ordered])
    if skew:
        keys = sorted({_version_key_name(c) for c in ordered})
        add(keys[0] if len(keys) == 1 else "kindmesh:clusters[].cilium.version", skew)
    stack_values = config.cilium.values
    by_problem: dict[tuple[str, str], list[str]] = {}
    for c in ordered:
        version = config.cilium_version_of(c)
        if cilium_line(version) is None:
            continue  # reported by the parser
        for path, message in value_problems(c.cilium_values, version):
            add(f"kindmesh:clusters[{c.index}].cilium.values.{path}", message)
        for path, message in value_problems(stack_values, version):
            by_problem.setdefault((path, message), []).append(c.name)
        for old, new in moved_paths_in(stack_values, version) + moved_paths_in(c.cilium_values, version):
            warnings.append(f"Cilium {fmt_minor(minor_of(version) or (0, 0))} reads {old} as {new}: kindmesh "
                            f"renders it there for {c.name} (rename it in cilium.values)")
    for (path, message), names in by_problem.items():
        add(f"kindmesh:cilium.values.{path}", f"{message} (clusters {', '.join(names[:4])}"
                                              f"{' …' if len(names) > 4 else ''} run that version)")


def _check_node_image(config: StackConfig, kinds: Sequence[ClusterConfig], image: str, add: Any,
                      warnings: list[str]) -> None:
    """The node image's Kubernetes version against the Cilium window of every kind cluster."""
    k8s = node_k8s_minor(image)
    if k8s is None:
        warnings.append(f"cannot tell the Kubernetes version of node image {image}; not checked against "
                        "Cilium's tested Kubernetes versions")
        return
    seen: set[tuple[int, int]] = set()
    for c in kinds:
        line = cilium_line(config.cilium_version_of(c))
        if line is None or line.minor in seen:
            continue
        seen.add(line.minor)
        verdict = window_verdict(k8s, line)
        if verdict == "older":
            add("kindmesh:kind.nodeImage",
                f"node image {image} runs Kubernetes {fmt_minor(k8s)}, older than Cilium "
                f"{fmt_minor(line.minor)} supports ({window_text(line)}; {_version_key_name(c)}): install a "
                "newer kind (its node image follows) or set kind.nodeImage to a newer kindest/node image")
        elif verdict == "newer":
            warnings.append(f"node image {image} runs Kubernetes {fmt_minor(k8s)}, newer than Cilium "
                            f"{fmt_minor(line.minor)} is tested with ({window_text(line)}); Cilium says newer "
                            "versions depend on Kubernetes' backward compatibility")


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
        cilium_version=config.cilium_version_of(c),
        **mesh_addresses(c, config.cilium.hubble_ui),
    )


def _node_names(kind_name: str, workers: int) -> tuple[str, ...]:
    names = [f"{kind_name}-control-plane"]
    for i in range(1, workers + 1):
        names.append(f"{kind_name}-worker" if i == 1 else f"{kind_name}-worker{i}")
    return tuple(names)


def pod_prefix_needed(nodes: int) -> int:
    """Longest pod CIDR prefix that still gives each of ``nodes`` nodes its own /24."""
    return NODE_POD_PREFIX - max(nodes - 1, 0).bit_length()


def _check_cidrs(
    configs: list[ClusterConfig],
    clusters: list[ClusterPlan],
    subnet: str | None,
    subnet_key: str,
    add: Any,
) -> None:
    """CIDR sizes and overlaps; each overlapping range is reported once (with the first
    range it meets), so one wrong range never turns into a problem per pair."""
    docker = ipaddress.IPv4Network(subnet) if subnet is not None else None
    ranges: list[tuple[str, str, IPv4Net]] = []
    in_docker: list[str] = []
    for cfg, plan_ in zip(configs, clusters, strict=True):
        for field_, kind_, value in (
            ("podSubnet", "pod", plan_.pod_subnet),
            ("serviceSubnet", "service", plan_.service_subnet),
        ):
            key = f"kindmesh:clusters[{cfg.index}].{field_}"
            net = ipaddress.IPv4Network(value)
            ranges.append((key, f"{plan_.name} {kind_}", net))
            nodes = 1 + plan_.workers
            if kind_ == "pod" and net.prefixlen > pod_prefix_needed(nodes):
                add(
                    key,
                    f"{value} cannot give each of the cluster's {nodes} node(s) its own "
                    f"/{NODE_POD_PREFIX}; use a /{pod_prefix_needed(nodes)} or larger (a /16 is typical)",
                )
            if kind_ == "service" and (net.prefixlen > 28 or net.prefixlen < 12):
                add(key, f"{value}: Kubernetes service CIDRs must be between /12 and /28")
            if docker is not None and net.overlaps(docker):
                in_docker.append(key)
    if len(in_docker) > 2:  # one root cause: the docker subnet
        add(
            subnet_key,
            f"{docker} overlaps the pod or service CIDRs at {', '.join(in_docker[:3])}"
            f"{f' and {len(in_docker) - 3} more' if len(in_docker) > 3 else ''}; "
            "pick a docker subnet outside 10.0.0.0/8 (e.g. 172.30.0.0/16) or change those CIDRs",
        )
    else:
        for key in in_docker:
            add(key, f"overlaps the docker subnet {docker}; pick a range outside it or change {subnet_key}")
    # sweep in address order (larger first on a tie): each range is compared with the
    # one reaching furthest so far, O(n log n) even for 255 clusters
    order = sorted(range(len(ranges)), key=lambda i: (int(ranges[i][2].network_address), -ranges[i][2].num_addresses, i))
    reach: tuple[str, str, IPv4Net] | None = None
    for i in order:
        key_b, what_b, b = ranges[i]
        if reach is not None and int(b.network_address) <= int(reach[2].broadcast_address):
            key_a, what_a, a = reach
            add(key_b, f"{b} ({what_b} CIDR) overlaps {a} ({what_a} CIDR at {key_a}); pick a disjoint range")
        if reach is None or int(b.broadcast_address) > int(reach[2].broadcast_address):
            reach = ranges[i]


class PoolOverlapError(ValueError):
    pass


def check_pool_is_own(plan: StackPlan, cluster: ClusterPlan) -> None:
    """Defensive re-check of the plan (the composition runs it before registering MetalLB):
    the cluster's pool overlaps no other pool, and a kind cluster's lies in the docker subnet."""
    first, last = int(ipaddress.ip_address(cluster.pool_first)), int(ipaddress.ip_address(cluster.pool_last))
    subnet = ipaddress.ip_network(plan.network.subnet)
    # an existing cluster's pool is the user's (kindmesh.core.existing checked it against every range)
    if cluster.source == "kind" and not (int(subnet.network_address) < first <= last < int(subnet.broadcast_address)):
        raise PoolOverlapError(
            f"MetalLB pool {cluster.pool} of cluster {cluster.name!r} is not inside the docker subnet {subnet}"
        )
    for other in plan.clusters:
        if other.name == cluster.name or not other.pool_first:
            continue
        o_first = int(ipaddress.ip_address(other.pool_first))
        o_last = int(ipaddress.ip_address(other.pool_last))
        if first <= o_last and o_first <= last:
            raise PoolOverlapError(
                f"MetalLB pool {cluster.pool} of cluster {cluster.name!r} overlaps pool {other.pool} of "
                f"cluster {other.name!r}; both clusters would answer ARP for the same IPs"
            )
