"""Typed stack configuration for kindmesh.

The raw configuration is the mapping of keys under the ``kindmesh:`` namespace of a
``Pulumi.<stack>.yaml`` file (key without the namespace -> already-decoded value).
:func:`parse_config` turns it into frozen dataclasses and collects *every* problem it
finds into one :class:`ConfigError`, each naming the key and the fix.

Pure module: no ``pulumi`` import.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stacks.existing import (
    EXISTING_KEYS,
    ExistingConfig,
    parse_cilium_extras,
    parse_cluster_cilium,
    parse_existing,
)

NAMESPACE = "kindmesh"

# Cilium's own rule for cluster.name (values.schema.json of chart 1.19.6).
CLUSTER_NAME_RE = re.compile(r"^([a-z0-9][-a-z0-9]*)?[a-z0-9]$")
CLUSTER_NAME_MAX = 32
CLUSTER_ID_MIN, CLUSTER_ID_MAX = 1, 255

TOPOLOGIES = ("full", "hub", "none")
AFFINITIES = ("local", "remote", "none")
ENCRYPTIONS = ("none", "wireguard")
SOURCES = ("kind", "existing")

CILIUM_CHART_VERSION = "1.19.6"
CILIUM_CHART_REPO = "https://helm.cilium.io"
METALLB_CHART_VERSION = "0.15.3"
METALLB_CHART_REPO = "https://metallb.github.io/metallb"
# kind v0.30.0 node image for Kubernetes 1.34, pinned by digest (see README).
KIND_NODE_IMAGE = (
    "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"
)
DEFAULT_POOL_SIZE = 16
POOL_SIZE_MIN, POOL_SIZE_MAX = 4, 1024

# Demo images (pinned by tag and digest) used by the demo workloads.
DEMO_BACKEND_IMAGE = (
    "docker.io/hashicorp/http-echo:1.0.0"
    "@sha256:fcb75f691c8b0414d670ae570240cbf95502cc18a9ba57e982ecac589760a186"
)
DEMO_CLIENT_IMAGE = (
    "docker.io/curlimages/curl:8.11.1"
    "@sha256:c1fe1679c34d9784c1b0d1e5f62ac0a79fca01fb6377cdd33e90473c6f9f9a69"
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration: which key, and what to do."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(ValueError):
    """Raised with every configuration problem at once."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"kindmesh configuration has {len(self.problems)} problem(s):\n{lines}"
        )


@dataclass(frozen=True)
class DemoClusterConfig:
    affinity: str | None = None  # local | remote | none; None = no annotation
    shared: bool = True


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    id: int
    workers: int = 1
    pod_subnet: str | None = None
    service_subnet: str | None = None
    source: str = "kind"
    demo: DemoClusterConfig = field(default_factory=DemoClusterConfig)
    # source: existing (stacks/existing.py); None for kind clusters
    existing: ExistingConfig | None = None
    cilium_values: dict[str, Any] = field(default_factory=dict)  # clusters[].cilium.values


@dataclass(frozen=True)
class MeshConfig:
    topology: str = "full"
    hub: str | None = None
    routable: bool = False  # the user says kind and existing clusters' networks route


@dataclass(frozen=True)
class NetworkConfig:
    subnet: str | None = None  # None = derived from the stack name
    name: str | None = None  # None = kindmesh-<stack>
    pool_size: int = DEFAULT_POOL_SIZE


@dataclass(frozen=True)
class CiliumConfig:
    version: str = CILIUM_CHART_VERSION
    hubble: bool = True
    hubble_ui: bool = True
    encryption: str = "none"
    values: dict[str, Any] = field(default_factory=dict)  # extra Helm values (cilium.values)
    hubble_metrics: tuple[str, ...] = ()  # cilium.hubbleMetrics -> hubble.metrics.enabled


@dataclass(frozen=True)
class MetalLBConfig:
    version: str = METALLB_CHART_VERSION


@dataclass(frozen=True)
class KindConfig:
    node_image: str = KIND_NODE_IMAGE
    prepull: bool = True


@dataclass(frozen=True)
class DemoConfig:
    enabled: bool = True
    policy: bool = False
    backend_image: str = DEMO_BACKEND_IMAGE
    client_image: str = DEMO_CLIENT_IMAGE


@dataclass(frozen=True)
class VerifyConfig:
    on_up: bool = False


@dataclass(frozen=True)
class StackConfig:
    clusters: tuple[ClusterConfig, ...]
    mesh: MeshConfig = field(default_factory=MeshConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    cilium: CiliumConfig = field(default_factory=CiliumConfig)
    metallb: MetalLBConfig = field(default_factory=MetalLBConfig)
    kind: KindConfig = field(default_factory=KindConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)


# Documented keys: top-level key -> allowed sub-keys (None = not a mapping).
TOP_KEYS: dict[str, tuple[str, ...] | None] = {
    "clusters": None,
    "mesh": ("topology", "hub", "routable"),
    "network": ("subnet", "name", "poolSize"),
    "cilium": ("version", "hubble", "hubbleUi", "encryption", "values", "hubbleMetrics"),
    "metallb": ("version",),
    "kind": ("nodeImage", "prePull"),
    "demo": ("enabled", "policy", "backendImage", "clientImage"),
    "verify": ("onUp",),
}
CLUSTER_KEYS = ("name", "id", "workers", "podSubnet", "serviceSubnet", "source", "demo", *EXISTING_KEYS)
CLUSTER_DEMO_KEYS = ("affinity", "shared")


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def unknown_keys(self, key: str, value: Mapping[str, Any], allowed: Sequence[str]) -> None:
        for k in value:
            if k not in allowed:
                hint = _closest(str(k), allowed)
                fix = f"did you mean '{hint}'?" if hint else "remove it"
                self.add(
                    f"{key}.{k}",
                    f"unknown key ({fix}); allowed keys: {', '.join(allowed)}",
                )

    def mapping(self, key: str, value: Any) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(key, f"must be a mapping, got {type(value).__name__}")
            return {}
        return value

    def boolean(self, key: str, value: Any, default: bool) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.add(key, f"must be true or false, got {value!r}")
        return default

    def integer(self, key: str, value: Any) -> int | None:
        if isinstance(value, bool):
            self.add(key, f"must be an integer, got {value!r}")
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        self.add(key, f"must be an integer, got {value!r}")
        return None

    def string(self, key: str, value: Any, default: str | None = None) -> str | None:
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.add(key, f"must be a non-empty string, got {value!r}")
            return default
        return value.strip()

    def choice(self, key: str, value: Any, choices: Sequence[str], default: str) -> str:
        if value is None:
            return default
        if value not in choices:
            self.add(key, f"must be one of {', '.join(choices)}; got {value!r}")
            return default
        return str(value)

    def cidr(self, key: str, value: Any) -> str | None:
        text = self.string(key, value)
        if text is None:
            return None
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            self.add(key, f"{text!r} is not a valid IPv4 CIDR ({exc}); write it like 10.1.0.0/16")
            return None
        if net.version != 4:
            self.add(key, f"{text!r} is IPv6; kindmesh plans IPv4 CIDRs only")
            return None
        return str(net)


def _closest(word: str, options: Sequence[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if match:
        return match[0]
    lowered = {o.lower(): o for o in options}
    return lowered.get(word.lower())


def strip_namespace(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``{'kindmesh:clusters': …}`` -> ``{'clusters': …}``; other namespaces dropped."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        ns, sep, rest = str(key).partition(":")
        if sep and ns == NAMESPACE:
            out[rest] = value
    return out


def validate_cluster_name(name: str) -> str | None:
    """Cilium's rules for ``cluster.name``; returns the problem or None."""
    if len(name) > CLUSTER_NAME_MAX:
        return f"{name!r} is {len(name)} characters; Cilium allows at most {CLUSTER_NAME_MAX}"
    if not CLUSTER_NAME_RE.match(name):
        return (
            f"{name!r} is not a DNS label: use lowercase letters, digits and '-', "
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
    c = _Collector()
    c.unknown_keys("kindmesh", raw, list(TOP_KEYS))

    clusters = _parse_clusters(c, raw.get("clusters"))

    mesh_raw = c.mapping("kindmesh:mesh", raw.get("mesh"))
    c.unknown_keys("kindmesh:mesh", mesh_raw, TOP_KEYS["mesh"] or ())
    topology = c.choice("kindmesh:mesh.topology", mesh_raw.get("topology"), TOPOLOGIES, "full")
    hub = c.string("kindmesh:mesh.hub", mesh_raw.get("hub"))
    names = [cl.name for cl in clusters]
    if topology == "hub":
        if hub is None:
            c.add(
                "kindmesh:mesh.hub",
                "required when topology is hub: set it to the name of the shared-services cluster",
            )
        elif hub not in names:
            c.add(
                "kindmesh:mesh.hub",
                f"{hub!r} is not one of the clusters ({', '.join(names) or 'none'}); "
                "name an existing cluster",
            )
    elif hub is not None and topology != "hub":
        c.add("kindmesh:mesh.hub", f"only used with topology hub (topology is {topology}); remove it")

    net_raw = c.mapping("kindmesh:network", raw.get("network"))
    c.unknown_keys("kindmesh:network", net_raw, TOP_KEYS["network"] or ())
    subnet = c.cidr("kindmesh:network.subnet", net_raw.get("subnet"))
    net_name = c.string("kindmesh:network.name", net_raw.get("name"))
    if net_name is not None and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", net_name):
        c.add("kindmesh:network.name", f"{net_name!r} is not a valid docker network name")
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
        version=c.string("kindmesh:cilium.version", cil_raw.get("version"), CILIUM_CHART_VERSION)
        or CILIUM_CHART_VERSION,
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
        version=c.string("kindmesh:metallb.version", mlb_raw.get("version"), METALLB_CHART_VERSION)
        or METALLB_CHART_VERSION
    )

    kind_raw = c.mapping("kindmesh:kind", raw.get("kind"))
    c.unknown_keys("kindmesh:kind", kind_raw, TOP_KEYS["kind"] or ())
    node_image = (
        c.string("kindmesh:kind.nodeImage", kind_raw.get("nodeImage"), KIND_NODE_IMAGE)
        or KIND_NODE_IMAGE
    )
    if "@sha256:" not in node_image:
        c.add(
            "kindmesh:kind.nodeImage",
            f"{node_image!r} is not pinned by digest; use kindest/node:<tag>@sha256:<digest> "
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
        backend_image=c.string(
            "kindmesh:demo.backendImage", demo_raw.get("backendImage"), DEMO_BACKEND_IMAGE
        )
        or DEMO_BACKEND_IMAGE,
        client_image=c.string(
            "kindmesh:demo.clientImage", demo_raw.get("clientImage"), DEMO_CLIENT_IMAGE
        )
        or DEMO_CLIENT_IMAGE,
    )
    if demo.policy and not demo.enabled:
        c.add("kindmesh:demo.policy", "the policies protect the demo: set demo.enabled to true or policy to false")

    ver_raw = c.mapping("kindmesh:verify", raw.get("verify"))
    c.unknown_keys("kindmesh:verify", ver_raw, TOP_KEYS["verify"] or ())
    verify = VerifyConfig(on_up=c.boolean("kindmesh:verify.onUp", ver_raw.get("onUp"), False))

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
    )
    if problems is not None:
        problems.extend(c.problems)
    elif c.problems:
        raise ConfigError(c.problems)
    return config


def _parse_clusters(c: _Collector, value: Any) -> list[ClusterConfig]:
    key = "kindmesh:clusters"
    if value is None:
        c.add(key, "required: list at least one cluster, e.g. [{name: us}, {name: eu}]")
        return []
    if not isinstance(value, list) or not value:
        c.add(key, "must be a non-empty list of clusters, e.g. [{name: us}, {name: eu}]")
        return []
    out: list[ClusterConfig] = []
    seen_names: dict[str, int] = {}
    seen_ids: dict[int, int] = {}
    for index, entry in enumerate(value):
        ekey = f"{key}[{index}]"
        if not isinstance(entry, Mapping):
            c.add(ekey, f"must be a mapping with at least a name, got {entry!r}")
            continue
        c.unknown_keys(ekey, entry, CLUSTER_KEYS)
        name = c.string(f"{ekey}.name", entry.get("name"))
        if name is None:
            if entry.get("name") is None:
                c.add(f"{ekey}.name", "required: give the cluster a name such as 'us'")
            name = f"cluster{index + 1}"
        else:
            why = validate_cluster_name(name)
            if why:
                c.add(f"{ekey}.name", why)
            if name in seen_names:
                c.add(
                    f"{ekey}.name",
                    f"duplicate cluster name {name!r} (also clusters[{seen_names[name]}]); names must be unique",
                )
            else:
                seen_names[name] = index
        cid: int | None = index + 1
        if entry.get("id") is not None:
            cid = c.integer(f"{ekey}.id", entry.get("id"))
            if cid is not None and not CLUSTER_ID_MIN <= cid <= CLUSTER_ID_MAX:
                c.add(
                    f"{ekey}.id",
                    f"{cid} is out of range; Cilium cluster ids are {CLUSTER_ID_MIN}..{CLUSTER_ID_MAX}",
                )
                cid = None
        if cid is not None:
            if cid in seen_ids:
                c.add(
                    f"{ekey}.id",
                    f"duplicate cluster id {cid} (also clusters[{seen_ids[cid]}]); "
                    "ids must be unique (the default id is position + 1)",
                )
            else:
                seen_ids[cid] = index
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
        out.append(
            ClusterConfig(
                name=name,
                id=cid if cid is not None else 0,
                workers=workers,
                pod_subnet=c.cidr(f"{ekey}.podSubnet", entry.get("podSubnet")),
                service_subnet=c.cidr(f"{ekey}.serviceSubnet", entry.get("serviceSubnet")),
                source=source,
                demo=DemoClusterConfig(affinity=affinity, shared=shared),
                existing=parse_existing(c, ekey, entry, source),
                cilium_values=parse_cluster_cilium(c, ekey, entry),
            )
        )
    return out
