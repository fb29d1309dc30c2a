"""The pure topology planner: stack config -> plan.

Everything that is a *decision* lives here (and in naming and existing below it): kind
names, Cilium names and ids, pod and service CIDRs, the per-stack docker network layout,
MetalLB pools, the stable clustermesh-apiserver IP of every cluster, the Hubble UI IP, the
mesh peers and the images to pre-pull. Deterministic (same config -> equal plan) and local:
every per-cluster decision derives from the cluster's explicit, required ``id`` and its
name, never from its position, and every list (clusters, peers, links) is ordered by id.
So adding, removing or reordering clusters never changes another cluster's names, CIDRs,
pool or mesh IP, and its peers only by the cluster added or removed.

Names are injective: distinct stack names get distinct docker networks and stack labels
(kindmesh.core.model.stack_slug), and distinct (stack, cluster) pairs distinct kind names
(kindmesh.core.naming.kind_name_for). The node range is given to docker as the network's
``ip_range`` so docker can never hand a node an address inside a pool. The layout depends
on the subnet alone, so the network's inputs do not change when clusters are added or
removed.

Pure module: no ``pulumi`` import.

May import: model, images, versions, config, naming, existing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kindmesh.core.config import parse_config
from kindmesh.core.existing import check_stack, mesh_addresses, plan_existing
from kindmesh.core.images import demo_images
from kindmesh.core.model import (
    ClusterConfig,
    ClusterPlan,
    ConfigError,
    DemoPlan,
    MeshLink,
    NetworkPlan,
    Problem,
    Release,
    StackConfig,
    StackPlan,
)
from kindmesh.core.naming import (
    NODE_POD_PREFIX,
    IPv4Net,
    default_pod_subnet,
    default_service_subnet,
    default_subnet,
    kind_name_for,
    network_layout,
    network_name_for,
    node_names,
    pod_prefix_needed,
    pool_for,
)
from kindmesh.core.versions import (
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


def prepull_plan(config: StackConfig) -> dict[str, Any]:
    """The StackPlan fields of what the host pre-pulls: the Cilium images of every Cilium version
    the config uses (ordered by version; versions kindmesh has not validated contribute none),
    then MetalLB's and the demo's."""
    versions = {config.cilium.version, *(config.cilium_version_of(c) for c in config.clusters)}
    cilium = tuple((v, tuple(cilium_images(v, config.cilium.hubble, config.cilium.hubble_ui)))
                   for v in sorted(versions, key=_version_key))
    other = list(metallb_images(config.metallb.version))
    if config.demo.enabled:
        other += demo_images(config.demo)
    return {"cilium_images": cilium, "other_images": tuple(other)}


def _version_key(version: str) -> tuple[Any, ...]:
    parsed = parse_version(version)
    return (parsed[0], parsed[1], version) if parsed else ((0, 0, 0), "", version)


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
                node_names=node_names(kname, c.workers),
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
        **prepull_plan(config),
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
        id=c.id,  # 1..255: the parser leaves clusters without a usable id out
        source=c.source,
        kind_name="",
        context=ex.context if ex else "",
        control_plane=ex.api_host if ex else "",
        node_names=(),
        workers=0,
        # required for existing clusters (reported by the parser when missing)
        pod_subnet=c.pod_subnet or default_pod_subnet(c.id),
        service_subnet=c.service_subnet or default_service_subnet(c.id),
        peers=tuple(peers[c.name]),
        demo=DemoPlan(enabled=config.demo.enabled, policy=config.demo.policy,
                      affinity=c.demo.affinity, shared=c.demo.shared),
        existing=ex,
        cilium_version=config.cilium_version_of(c),
        **mesh_addresses(c, config.cilium.hubble_ui),
    )


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
