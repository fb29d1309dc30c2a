"""Typed stack configuration: :func:`parse_config` turns the raw ``kindmesh:`` keys into the
frozen dataclasses of kindmesh.core.model.

The raw configuration is the mapping of keys under the ``kindmesh:`` namespace of a
``Pulumi.<stack>.yaml`` file (key without the namespace -> already-decoded value;
kindmesh.core.config_raw decodes and strips it). :func:`parse_config` collects *every*
problem it finds into one :class:`ConfigError`, each naming the key and the fix. Any input
gives a config or a ConfigError (never another exception), and the error's size is bounded:
input is quoted up to QUOTE_MAX characters, one mistake shared by many clusters is one
problem, and at most PROBLEMS_SHOWN problems are listed (the rest counted). Chart versions
are checked against the version catalogue; the keys of existing clusters and the extra Helm
values are parsed by config_existing and config_values.

Pure module: no ``pulumi`` import.

May import: model, charts, versions, collector, config_values, config_existing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kindmesh.core.charts import REMOTE_SCHEMES, ChartSourceError, chart_location
from kindmesh.core.collector import TOP_KEYS, Collector, indices, quote
from kindmesh.core.config_existing import EXISTING_KEYS, parse_existing
from kindmesh.core.config_values import parse_cilium_extras, parse_cluster_cilium
from kindmesh.core.model import (
    CILIUM_CHART_REPO,
    DEFAULT_CILIUM,
    DEFAULT_METALLB,
    DEFAULT_POOL_SIZE,
    DEMO_BACKEND_IMAGE,
    DEMO_CLIENT_IMAGE,
    METALLB_CHART_REPO,
    NAMESPACE,
    PROBLEMS_SHOWN,
    ChartsConfig,
    CiliumConfig,
    ClusterConfig,
    ConfigError,
    DemoClusterConfig,
    DemoConfig,
    KindConfig,
    MeshConfig,
    MetalLBConfig,
    NetworkConfig,
    Problem,
    StackConfig,
    TimeoutsConfig,
    VerifyConfig,
)
from kindmesh.core.versions import DEFAULT_KIND, KIND_NODE_IMAGES, resolve_cilium, resolve_metallb

# Cilium's own rule for cluster.name (values.schema.json of chart 1.19.6).
CLUSTER_NAME_RE = re.compile(r"^([a-z0-9][-a-z0-9]*)?[a-z0-9]$")
CLUSTER_NAME_MAX = 32
CLUSTER_ID_MIN, CLUSTER_ID_MAX = 1, 255
TOPOLOGIES = ("full", "hub", "none")
AFFINITIES = ("local", "remote", "none")
ENCRYPTIONS = ("none", "wireguard")
SOURCES = ("kind", "existing")
# Defaults from the version catalogue (kindmesh.core.versions, docs/versions.md).
CILIUM_CHART_VERSION = DEFAULT_CILIUM
METALLB_CHART_VERSION = DEFAULT_METALLB
# The node image when the installed kind release is unknown (the plan follows the installed
# kind otherwise: kindmesh.core.versions.kind_node_image).
KIND_NODE_IMAGE = KIND_NODE_IMAGES[DEFAULT_KIND]
POOL_SIZE_MIN, POOL_SIZE_MAX = 4, 1024
CLUSTER_KEYS = ("name", "id", "workers", "podSubnet", "serviceSubnet", "source", "demo", *EXISTING_KEYS)
CLUSTER_DEMO_KEYS = ("affinity", "shared")
# Networks docker creates itself, and kind's own network: never the stack's network.
FOREIGN_NETWORKS = ("bridge", "host", "none", "kind")
# docker0, the default bridge, on a default Docker install (daemon.json "bip" moves it): a stack
# network overlapping it clashes with every container on the default bridge.
DOCKER0_SUBNET = "172.17.0.0/16"


def validate_cluster_name(name: str) -> str | None:
    """Cilium's rules for ``cluster.name``; returns the problem or None."""
    if len(name) > CLUSTER_NAME_MAX:
        return f"{quote(name)} is {len(name)} characters; Cilium allows at most {CLUSTER_NAME_MAX}"
    if not CLUSTER_NAME_RE.match(name):
        return (
            f"{quote(name)} is not a DNS label: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    if name == "default":
        return "'default' is reserved by Cilium for an unmeshed cluster; pick another name"
    return None


def parse_config(raw: Mapping[str, Any], *, problems: list[Problem] | None = None) -> StackConfig:
    """Parse the ``kindmesh:`` keys (namespace already stripped).

    When ``problems`` is given, problems are appended to it and a best-effort config is
    returned (so the planner can report its own problems in the same message);
    otherwise a :class:`ConfigError` is raised if anything is wrong.
    """
    c = Collector()
    if not isinstance(raw, Mapping):
        raise ConfigError([Problem(f"{NAMESPACE}:", f"the configuration must be a mapping, got {quote(raw)}")])
    c.top_level_keys(raw)

    clusters, names = _parse_clusters(c, raw.get("clusters"))

    mesh_raw = c.mapping("kindmesh:mesh", raw.get("mesh"))
    c.unknown_keys("kindmesh:mesh", mesh_raw, TOP_KEYS["mesh"] or ())
    topology = c.choice("kindmesh:mesh.topology", mesh_raw.get("topology"), TOPOLOGIES, "full")
    hub = c.string("kindmesh:mesh.hub", mesh_raw.get("hub"))
    if topology == "hub":
        if hub is None:
            c.add(
                "kindmesh:mesh.hub",
                "required when topology is hub: set it to the name of the shared-services cluster",
            )
        elif hub not in names:
            shown = ", ".join(names[:8]) + (", …" if len(names) > 8 else "")
            c.add(
                "kindmesh:mesh.hub",
                f"{quote(hub)} is not one of the clusters ({shown or 'none'}); "
                "name an existing cluster",
            )
    elif hub is not None and topology != "hub":
        c.add("kindmesh:mesh.hub", f"only used with topology hub (topology is {topology}); remove it")

    net_raw = c.mapping("kindmesh:network", raw.get("network"))
    c.unknown_keys("kindmesh:network", net_raw, TOP_KEYS["network"] or ())
    subnet = c.cidr("kindmesh:network.subnet", net_raw.get("subnet"))
    if subnet is not None and ipaddress.IPv4Network(subnet).overlaps(ipaddress.IPv4Network(DOCKER0_SUBNET)):
        c.add(
            "kindmesh:network.subnet",
            f"{subnet} overlaps {DOCKER0_SUBNET}, the subnet of Docker's default bridge (docker0) on a default "
            "install: the stack's network would clash with it. Pick another private range, e.g. 172.30.0.0/16 "
            "(`make new-stack` picks one no other stack uses; `make doctor` lists the docker networks in use)",
        )
        subnet = None
    net_name = c.string("kindmesh:network.name", net_raw.get("name"))
    if net_name is not None and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}", net_name):
        c.add(
            "kindmesh:network.name",
            f"{quote(net_name)} is not a valid docker network name: use up to 128 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit (or remove it for kindmesh-<stack>)",
        )
        net_name = None
    elif net_name in FOREIGN_NETWORKS:
        c.add(
            "kindmesh:network.name",
            f"{quote(net_name)} is a network docker or kind creates for itself; kindmesh needs its "
            "own: pick another name or remove the key (default kindmesh-<stack>)",
        )
        net_name = None
    pool_size = DEFAULT_POOL_SIZE
    if net_raw.get("poolSize") is not None:
        ps = c.integer("kindmesh:network.poolSize", net_raw.get("poolSize"))
        if ps is not None:
            if not POOL_SIZE_MIN <= ps <= POOL_SIZE_MAX:
                c.add(
                    "kindmesh:network.poolSize",
                    f"{ps} is out of range; use {POOL_SIZE_MIN}..{POOL_SIZE_MAX} addresses per cluster",
                )
            else:
                pool_size = ps

    cil_raw = c.mapping("kindmesh:cilium", raw.get("cilium"))
    c.unknown_keys("kindmesh:cilium", cil_raw, TOP_KEYS["cilium"] or ())
    hubble = c.boolean("kindmesh:cilium.hubble", cil_raw.get("hubble"), True)
    hubble_ui = c.boolean("kindmesh:cilium.hubbleUi", cil_raw.get("hubbleUi"), hubble)
    if hubble_ui and not hubble:
        c.add("kindmesh:cilium.hubbleUi", "needs Hubble: set cilium.hubble to true or hubbleUi to false")
    cilium = CiliumConfig(
        version=_catalogued(c, "kindmesh:cilium.version", cil_raw.get("version"), CILIUM_CHART_VERSION),
        hubble=hubble,
        hubble_ui=hubble_ui,
        encryption=c.choice(
            "kindmesh:cilium.encryption", cil_raw.get("encryption"), ENCRYPTIONS, "none"
        ),
        **parse_cilium_extras(c, cil_raw, hubble),
    )

    mlb_raw = c.mapping("kindmesh:metallb", raw.get("metallb"))
    c.unknown_keys("kindmesh:metallb", mlb_raw, TOP_KEYS["metallb"] or ())
    metallb = MetalLBConfig(
        version=_catalogued(c, "kindmesh:metallb.version", mlb_raw.get("version"), METALLB_CHART_VERSION)
    )

    kind_raw = c.mapping("kindmesh:kind", raw.get("kind"))
    c.unknown_keys("kindmesh:kind", kind_raw, TOP_KEYS["kind"] or ())
    node_image = None
    if kind_raw.get("nodeImage") is not None:  # else the planner takes the installed kind's image
        node_image = c.image("kindmesh:kind.nodeImage", kind_raw.get("nodeImage"), KIND_NODE_IMAGE)
    if node_image is not None and "@sha256:" not in node_image:
        c.add(
            "kindmesh:kind.nodeImage",
            f"{quote(node_image)} is not pinned by digest; use kindest/node:<tag>@sha256:<digest> "
            "from the kind release notes",
        )
    kind = KindConfig(
        node_image=node_image,
        prepull=c.boolean("kindmesh:kind.prePull", kind_raw.get("prePull"), True),
    )

    demo_raw = c.mapping("kindmesh:demo", raw.get("demo"))
    c.unknown_keys("kindmesh:demo", demo_raw, TOP_KEYS["demo"] or ())
    demo = DemoConfig(
        enabled=c.boolean("kindmesh:demo.enabled", demo_raw.get("enabled"), True),
        policy=c.boolean("kindmesh:demo.policy", demo_raw.get("policy"), False),
        backend_image=c.image(
            "kindmesh:demo.backendImage", demo_raw.get("backendImage"), DEMO_BACKEND_IMAGE
        )
        or DEMO_BACKEND_IMAGE,
        client_image=c.image(
            "kindmesh:demo.clientImage", demo_raw.get("clientImage"), DEMO_CLIENT_IMAGE
        )
        or DEMO_CLIENT_IMAGE,
    )
    if demo.policy and not demo.enabled:
        c.add("kindmesh:demo.policy", "the policies protect the demo: set demo.enabled to true or policy to false")

    ver_raw = c.mapping("kindmesh:verify", raw.get("verify"))
    c.unknown_keys("kindmesh:verify", ver_raw, TOP_KEYS["verify"] or ())
    verify = VerifyConfig(on_up=c.boolean("kindmesh:verify.onUp", ver_raw.get("onUp"), False))

    to_raw = c.mapping("kindmesh:timeouts", raw.get("timeouts"))
    c.unknown_keys("kindmesh:timeouts", to_raw, TOP_KEYS["timeouts"] or ())
    defaults = TimeoutsConfig()
    timeouts = TimeoutsConfig(
        rollout=_seconds(c, "kindmesh:timeouts.rollout", to_raw.get("rollout"), defaults.rollout),
        webhook=_seconds(c, "kindmesh:timeouts.webhook", to_raw.get("webhook"), defaults.webhook),
        load_balancer=_seconds(c, "kindmesh:timeouts.loadBalancer", to_raw.get("loadBalancer"),
                               defaults.load_balancer),
    )

    charts_raw = c.mapping("kindmesh:charts", raw.get("charts"))
    c.unknown_keys("kindmesh:charts", charts_raw, TOP_KEYS["charts"] or ())
    charts = ChartsConfig(
        cilium=c.chart_source("kindmesh:charts.cilium", charts_raw.get("cilium"), "cilium", cilium.version,
                              CILIUM_CHART_REPO),
        metallb=c.chart_source("kindmesh:charts.metallb", charts_raw.get("metallb"), "metallb", metallb.version,
                               METALLB_CHART_REPO),
    )
    _check_cluster_charts(c, clusters, charts.cilium, cilium.version)

    config = StackConfig(
        clusters=tuple(clusters),
        mesh=MeshConfig(
            topology=topology,
            hub=hub if topology == "hub" else None,
            routable=c.boolean("kindmesh:mesh.routable", mesh_raw.get("routable"), False),
        ),
        network=NetworkConfig(subnet=subnet, name=net_name, pool_size=pool_size),
        cilium=cilium,
        metallb=metallb,
        kind=kind,
        demo=demo,
        verify=verify,
        charts=charts,
        timeouts=timeouts,
        warnings=tuple(dict.fromkeys(c.warnings)),
    )
    if problems is not None:
        problems.extend(c.problems)
    elif c.problems:
        raise ConfigError(c.problems)
    return config


TIMEOUT_MIN, TIMEOUT_MAX = 10, 86400


def _seconds(c: Collector, key: str, value: Any, default: int) -> int:
    """A gate's bound in whole seconds, TIMEOUT_MIN..TIMEOUT_MAX."""
    if value is None:
        return default
    n = c.integer(key, value)
    if n is None:
        return default
    if not TIMEOUT_MIN <= n <= TIMEOUT_MAX:
        c.add(key, f"{n} is out of range; use {TIMEOUT_MIN}..{TIMEOUT_MAX} seconds")
        return default
    return n


def _catalogued(c: Collector, key: str, value: Any, default: str) -> str:
    """A chart version checked against the version catalogue (problem or warning recorded)."""
    text = c.version(key, value, default)
    resolve = resolve_cilium if "cilium" in key else resolve_metallb
    resolved, problem, warning = resolve(text, key)
    if problem:
        c.add(key, problem)
        return default
    if warning:
        c.warnings.append(warning)
    return resolved.version if resolved else default


def _check_cluster_charts(c: Collector, clusters: Sequence[ClusterConfig], source: str, stack_version: str) -> None:
    """A local Cilium chart source must hold the chart of every cluster's own version too."""
    if source.startswith(REMOTE_SCHEMES):
        return
    try:
        chart_location(source, "cilium", stack_version)
    except (ChartSourceError, OSError, ValueError):
        return  # kindmesh:charts.cilium itself is reported
    for cluster in clusters:
        version = cluster.cilium_version
        if version is None or version == stack_version:
            continue
        try:
            chart_location(source, "cilium", version)
        except (ChartSourceError, OSError, ValueError) as err:
            c.add(f"kindmesh:clusters[{cluster.index}].cilium.version", f"{err} (kindmesh:charts.cilium)")


def free_ids(used: set[int], count: int) -> list[int]:
    """The ``count`` lowest cluster ids not in ``used``."""
    out: list[int] = []
    for cid in range(CLUSTER_ID_MIN, CLUSTER_ID_MAX + 1):
        if len(out) == count:
            break
        if cid not in used:
            out.append(cid)
    return out


def _free_text(free: list[int]) -> str:
    if not free:
        return "no id is free: at most 255 clusters"
    return "free ids: " + ", ".join(map(str, free[:3])) + ("…" if len(free) > 3 else "")


def _parse_clusters(c: Collector, value: Any) -> tuple[list[ClusterConfig], list[str]]:
    """(usable clusters, every name given); clusters with an unusable name or id are
    reported and left out, so the planner never plans them."""
    key = "kindmesh:clusters"
    example = "e.g. [{name: us, id: 1}, {name: eu, id: 2}]"
    if value is None:
        c.add(key, f"required: list at least one cluster, {example}")
        return [], []
    if not isinstance(value, list) or not value:
        c.add(key, f"must be a non-empty list of clusters, {example}; got {quote(value)}")
        return [], []
    if len(value) > CLUSTER_ID_MAX:
        c.add(
            key,
            f"lists {len(value)} clusters; a mesh has at most {CLUSTER_ID_MAX} "
            f"(Cilium cluster ids are {CLUSTER_ID_MIN}..{CLUSTER_ID_MAX}): remove some",
        )
    entries: list[tuple[int, ClusterConfig, bool, bool]] = []  # (index, config, name ok, id ok)
    by_name: dict[str, list[int]] = {}
    by_id: dict[int, list[int]] = {}
    missing_ids: list[int] = []
    for index, entry in enumerate(value):
        ekey = f"{key}[{index}]"
        if not isinstance(entry, Mapping):
            c.add(ekey, f"must be a mapping with at least a name and an id, got {quote(entry)}")
            continue
        c.unknown_keys(ekey, entry, CLUSTER_KEYS)
        name_ok = True
        name = c.string(f"{ekey}.name", entry.get("name"))
        if name is None:
            if entry.get("name") is None:
                c.add(f"{ekey}.name", "required: give the cluster a name such as 'us'")
            name, name_ok = f"cluster{index + 1}", False
        else:
            why = validate_cluster_name(name)
            if why:
                c.add(f"{ekey}.name", why)
                name_ok = False
            else:
                by_name.setdefault(name, []).append(index)
        cid = 0
        if entry.get("id") is None:
            missing_ids.append(index)
        else:
            parsed = c.integer(f"{ekey}.id", entry.get("id"))
            if parsed is not None and not CLUSTER_ID_MIN <= parsed <= CLUSTER_ID_MAX:
                c.add(
                    f"{ekey}.id",
                    f"{parsed} is out of range; Cilium cluster ids are {CLUSTER_ID_MIN}..{CLUSTER_ID_MAX}",
                )
            elif parsed is not None:
                cid = parsed
                by_id.setdefault(cid, []).append(index)
        workers = 1
        if entry.get("workers") is not None:
            w = c.integer(f"{ekey}.workers", entry.get("workers"))
            if w is not None:
                if w < 0:
                    c.add(f"{ekey}.workers", f"{w} is negative; use 0 for a control-plane-only cluster")
                elif w > 64:
                    c.add(f"{ekey}.workers", f"{w} workers is more than kindmesh supports on one host (64)")
                else:
                    workers = w
        source = c.choice(f"{ekey}.source", entry.get("source"), SOURCES, "kind")
        demo_raw = c.mapping(f"{ekey}.demo", entry.get("demo"))
        c.unknown_keys(f"{ekey}.demo", demo_raw, CLUSTER_DEMO_KEYS)
        affinity = None
        if demo_raw.get("affinity") is not None:
            affinity = c.choice(f"{ekey}.demo.affinity", demo_raw.get("affinity"), AFFINITIES, "none")
        shared = c.boolean(f"{ekey}.demo.shared", demo_raw.get("shared"), True)
        own_cilium = entry.get("cilium")
        cilium_version = None
        if isinstance(own_cilium, Mapping) and own_cilium.get("version") is not None:
            cilium_version = _catalogued(c, f"{ekey}.cilium.version", own_cilium.get("version"),
                                         CILIUM_CHART_VERSION)
        config = ClusterConfig(
            name=name,
            id=cid,
            workers=workers,
            pod_subnet=c.cidr(f"{ekey}.podSubnet", entry.get("podSubnet")),
            service_subnet=c.cidr(f"{ekey}.serviceSubnet", entry.get("serviceSubnet")),
            source=source,
            demo=DemoClusterConfig(affinity=affinity, shared=shared),
            existing=parse_existing(c, ekey, entry, source),
            cilium_values=parse_cluster_cilium(c, ekey, entry),
            cilium_version=cilium_version,
            index=index,
        )
        entries.append((index, config, name_ok, cid != 0))

    for name, where in by_name.items():
        if len(where) > 1:  # one problem per shared name, however many clusters share it
            c.add(
                f"{key}[{where[1]}].name",
                f"duplicate cluster name {quote(name)}: {indices(where)} all use it; names must be unique",
            )
    duplicates = {cid: where for cid, where in by_id.items() if len(where) > 1}
    # suggest distinct free ids, lowest first: one per cluster that needs a new id
    needed = len(missing_ids) + sum(len(w) - 1 for w in duplicates.values())
    suggestions = iter(free_ids(set(by_id), min(needed, CLUSTER_ID_MAX)) + [0] * needed)
    stable = (
        "ids are stable: they fix the cluster's pod and service CIDRs, pool and mesh IP, "
        "so never renumber a cluster"
    )
    for shown, index in enumerate(missing_ids):
        if shown >= PROBLEMS_SHOWN:  # the rest would only repeat the same advice
            c.add(
                f"{key}[{index}].id",
                f"required here and in {len(missing_ids) - shown - 1} more clusters: give each an unused "
                f"id {CLUSTER_ID_MIN}..{CLUSTER_ID_MAX}",
            )
            break
        nxt = next(suggestions)
        free = _free_text(free_ids(set(by_id), 4 + shown)[shown:])
        fix = f"add `id: {nxt}` ({free})" if nxt else "remove clusters: every id 1..255 is taken"
        c.add(f"{key}[{index}].id", f"required: {fix}; {stable}")
    for cid, where in duplicates.items():
        nxt = next(suggestions)
        fix = f"give {indices(where[1:])} another id, e.g. `id: {nxt}`" if nxt else "remove clusters"
        c.add(
            f"{key}[{where[1]}].id",
            f"duplicate cluster id {cid}: {indices(where)} all use it; ids must be unique: {fix}",
        )
    bad_ids = {i for where in duplicates.values() for i in where[1:]}
    dup_names = {i for where in by_name.values() for i in where[1:]}
    usable = [
        config
        for index, config, name_ok, id_ok in entries
        if name_ok and id_ok and index not in bad_ids and index not in dup_names
    ]
    return usable, [config.name for _, config, name_ok, _ in entries if name_ok]
