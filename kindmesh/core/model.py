"""The config and plan types of kindmesh: what the parser returns and what the planner decides.

Frozen dataclasses only, plus :class:`Problem` and :class:`ConfigError` (every problem at
once, bounded in size), the defaults the types carry (chart versions and repositories, demo
images, pool size, the mesh port) and the naming rule of the stack label, which a plan
carries as a property. No parsing, no planning, no rendering: those are the layers above
(docs/how-it-works.md, "The core's layers").

Pure module: no ``pulumi`` import.

May import: nothing (no module of kindmesh).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "kindmesh"  # the config namespace: kindmesh:<key> in Pulumi.<stack>.yaml
# The default chart versions (the version catalogue, kindmesh.core.versions, supports them and others).
DEFAULT_CILIUM = "1.20.0"
DEFAULT_METALLB = "0.16.1"
Release = tuple[int, int, int]  # a kind release, (0, 31, 0)

CILIUM_CHART_REPO = "https://helm.cilium.io"
METALLB_CHART_REPO = "https://metallb.github.io/metallb"
DEFAULT_POOL_SIZE = 16
# Demo images (pinned by tag and digest) used by the demo workloads.
DEMO_BACKEND_IMAGE = (
    "docker.io/hashicorp/http-echo:1.0.0"
    "@sha256:fcb75f691c8b0414d670ae570240cbf95502cc18a9ba57e982ecac589760a186"
)
DEMO_CLIENT_IMAGE = (
    "docker.io/curlimages/curl:8.11.1"
    "@sha256:c1fe1679c34d9784c1b0d1e5f62ac0a79fca01fb6377cdd33e90473c6f9f9a69"
)


MESH_PORT = 2379
STACK_LABEL = "kindmesh.io/stack"  # the label key naming the stack on networks, nodes and objects


# Bounds on what an error message may echo, so any input gives a readable message.
QUOTE_MAX = 60  # characters of user input quoted in a message
LINE_MAX = 480  # characters of one reported problem
PROBLEMS_SHOWN = 15  # problems listed in one error; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration: which key, and what to do."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def clip(text: str, limit: int = QUOTE_MAX) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConfigError(ValueError):
    """Raised with every configuration problem at once (the message is bounded in size)."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        shown = [clip(f"  - {p}", LINE_MAX) for p in self.problems[:PROBLEMS_SHOWN]]
        omitted = len(self.problems) - len(shown)
        if omitted > 0:
            shown.append(f"  … and {omitted} more problem(s) not shown; fix these and run again")
        lines = "\n".join(shown)
        super().__init__(f"kindmesh configuration has {len(self.problems)} problem(s):\n{lines}")


# --------------------------------------------------------------------------- config
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
    # source: existing (kindmesh.core.config_existing); None for kind clusters
    existing: ExistingConfig | None = None
    cilium_values: dict[str, Any] = field(default_factory=dict)  # clusters[].cilium.values
    cilium_version: str | None = None  # clusters[].cilium.version (None: the stack's cilium.version)
    # position in kindmesh:clusters, for messages only: never part of any decision
    index: int = field(default=0, compare=False, repr=False)


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
    version: str = DEFAULT_CILIUM
    hubble: bool = True
    hubble_ui: bool = True
    encryption: str = "none"
    values: dict[str, Any] = field(default_factory=dict)  # extra Helm values (cilium.values)
    hubble_metrics: tuple[str, ...] = ()  # cilium.hubbleMetrics -> hubble.metrics.enabled


@dataclass(frozen=True)
class MetalLBConfig:
    version: str = DEFAULT_METALLB


@dataclass(frozen=True)
class ChartsConfig:
    """Where each chart comes from: a Helm repository URL, or a local directory of chart
    archives (``<chart>-<version>.tgz``, e.g. the released archives on an air-gapped host)
    or one chart archive/directory. Local paths are taken relative to the project."""

    cilium: str = CILIUM_CHART_REPO
    metallb: str = METALLB_CHART_REPO


@dataclass(frozen=True)
class KindConfig:
    node_image: str | None = None  # None: the image of the installed kind release (the planner decides)
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
class TimeoutsConfig:
    """The bounds of the readiness gates, seconds (``kindmesh:timeouts``)."""

    rollout: int = 900  # Cilium's DaemonSets and Deployments rolled out
    webhook: int = 600  # MetalLB rolled out and its webhook admitting the pool
    load_balancer: int = 300  # the planned LoadBalancer IPs assigned


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
    charts: ChartsConfig = field(default_factory=ChartsConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    # versions accepted with a warning (not validated by kindmesh); shown by `up` and the doctor
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def cilium_version_of(self, cluster: ClusterConfig) -> str:
        """The Cilium version of one cluster: its own clusters[].cilium.version, else the stack's."""
        return cluster.cilium_version or self.cilium.version


# --------------------------------------------------------------------------- config: existing clusters
@dataclass(frozen=True)
class MeshEndpointConfig:
    node_port: int | None = None
    node_ips: tuple[str, ...] = ()
    pool: tuple[str, str] | None = None  # (first, last)
    ip: str | None = None

    @property
    def kind(self) -> str:
        if self.node_port is not None:
            return "nodePort"
        return "pool" if self.pool is not None else "ip"


@dataclass(frozen=True)
class ExistingConfig:
    kubeconfig: str = field(repr=False)  # a path or the content (may be a secret)
    context: str | None = None
    api_server: tuple[str, int] | None = None
    endpoint: MeshEndpointConfig | None = None
    ipam: str = "auto"


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class ExistingPlan:
    """What the planner decided for one existing cluster (the kubeconfig is secret downstream)."""

    kubeconfig: str = field(repr=False)  # only the chosen context, current-context set
    context: str
    api_host: str
    api_port: int
    endpoint: str  # nodePort | pool | ip
    node_port: int | None
    ipam: str  # kubernetes | cluster-pool | auto (resolved by the preflight)
    ipam_reason: str


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
    # existing clusters (kindmesh.core.existing): NodePort endpoints listen on other ports/IPs
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


DERIVED = {"derived": True}  # metadata of plan fields computed from the others


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
    # What the host pre-pulls, decided by the planner from the version catalogue: the Cilium images
    # of every Cilium version of the plan (ordered by version; none for an unvalidated version),
    # then MetalLB's and the demo's. Derived from the fields above (DERIVED: not a decision of its own).
    cilium_images: tuple[tuple[str, tuple[str, ...]], ...] = field(default=(), compare=False, metadata=DERIVED)
    other_images: tuple[str, ...] = field(default=(), compare=False, metadata=DERIVED)

    def cilium_version(self, cluster: ClusterPlan) -> str:
        return cluster.cilium_version or self.config.cilium.version

    def images_for(self, cluster: ClusterPlan) -> tuple[str, ...]:
        """Images loaded into one kind cluster: its own Cilium version's, MetalLB's, the demo's."""
        return self._prepull((self.cilium_version(cluster),))

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
        return self._prepull(tuple(self.cilium_version(c) for c in kinds))

    def _prepull(self, versions: Sequence[str]) -> tuple[str, ...]:
        """The images of ``versions`` (default: the stack's), Cilium's first, then MetalLB's and the demo's."""
        wanted = set(versions or (self.config.cilium.version,))
        cilium = [ref for version, refs in self.cilium_images if version in wanted for ref in refs]
        return tuple(dict.fromkeys([*cilium, *self.other_images]))  # de-duplicated, order kept


# --------------------------------------------------------------------------- the stack label
STACK_SLUG_MAX = 40  # keeps "kindmesh-<slug>" and "<project>.<slug>" short
LABEL_MAX = 63  # Kubernetes label values and docker label values we set
HASH_LEN = 8
_CLEAN_RE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")  # a DNS label with no '--'


def slug(text: str) -> str:
    """Lowercase DNS-label-ish slug of a free-form name (lossy: ``team_a`` = ``team-a``).

    Never contains ``--`` and never starts or ends with ``-``; may be empty."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower())
    return s.strip("-")


def digest(*parts: str) -> str:
    """A short hash of the exact ``parts``: tells apart names whose slugs are equal."""
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
    return f"{head}--{digest(stack)}"


def stack_label(project: str, stack: str) -> str:
    """``<project>.<stack>`` as a label value (<= 63 characters; injective in the stack)."""
    tail = stack_slug(stack)  # at most STACK_SLUG_MAX (40) characters
    head = stack_slug(project, LABEL_MAX - len(tail) - 1)  # at most the room left (>= 22): never longer
    return f"{head}.{tail}"
