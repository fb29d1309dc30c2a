"""Typed stack configuration for kindmesh.

The raw configuration is the mapping of keys under the ``kindmesh:`` namespace of a
``Pulumi.<stack>.yaml`` file (key without the namespace -> already-decoded value).
:func:`parse_config` turns it into frozen dataclasses and collects *every* problem it
finds into one :class:`ConfigError`, each naming the key and the fix. Any input gives a
config or a ConfigError (never another exception), and the error's size is bounded: input
is quoted up to QUOTE_MAX characters, one mistake shared by many clusters is one problem,
and at most PROBLEMS_SHOWN problems are listed (the rest counted).

Pure module: no ``pulumi`` import.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kindmesh.core.existing import (
    EXISTING_KEYS,
    ExistingConfig,
    parse_cilium_extras,
    parse_cluster_cilium,
    parse_existing,
)
from kindmesh.core.versions import (
    DEFAULT_CILIUM,
    DEFAULT_KIND,
    DEFAULT_METALLB,
    KIND_NODE_IMAGES,
    resolve_cilium,
    resolve_metallb,
)

NAMESPACE = "kindmesh"

# Cilium's own rule for cluster.name (values.schema.json of chart 1.19.6).
CLUSTER_NAME_RE = re.compile(r"^([a-z0-9][-a-z0-9]*)?[a-z0-9]$")
CLUSTER_NAME_MAX = 32
# kind's own rule for cluster names, and our bound: "<name>-control-plane" stays a 63-char hostname
KIND_NAME_RE = re.compile(r"[a-z0-9.-]+")
KIND_NAME_MAX = 48
CLUSTER_ID_MIN, CLUSTER_ID_MAX = 1, 255

TOPOLOGIES = ("full", "hub", "none")
AFFINITIES = ("local", "remote", "none")
ENCRYPTIONS = ("none", "wireguard")
SOURCES = ("kind", "existing")

# Defaults from the version catalogue (kindmesh.core.versions, docs/versions.md).
CILIUM_CHART_VERSION = DEFAULT_CILIUM
CILIUM_CHART_REPO = "https://helm.cilium.io"
METALLB_CHART_VERSION = DEFAULT_METALLB
METALLB_CHART_REPO = "https://metallb.github.io/metallb"
# The node image when the installed kind release is unknown (the plan follows the installed
# kind otherwise: kindmesh.core.versions.kind_node_image).
KIND_NODE_IMAGE = KIND_NODE_IMAGES[DEFAULT_KIND]
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


# Bounds on what an error message may echo, so any input gives a readable message.
QUOTE_MAX = 60  # characters of user input quoted in a message
LINE_MAX = 480  # characters of one reported problem
PROBLEMS_SHOWN = 15  # problems listed in one error; the rest are counted
INDICES_SHOWN = 4  # clusters listed when one mistake is shared by many
INT_DIGITS_MAX = 18  # integers beyond this are out of every range kindmesh has
NESTING_MAX = 32  # deepest JSON nesting accepted from `pulumi config`


def clip(text: str, limit: int = QUOTE_MAX) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(value: Any) -> str:
    """A short, always-bounded description of a user-supplied value for a message."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        bits = abs(value).bit_length()
        if bits > 60:  # repr() of a 4300+ digit int raises; never needed in a message
            return f"an integer of about {int(bits * 0.30103) + 1} digits"
        return repr(value)
    if isinstance(value, float):
        return clip(repr(value))
    if isinstance(value, str):
        return repr(clip(value))
    if isinstance(value, Mapping):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item(s)"
    return f"a {type(value).__name__}"


def indices(positions: Sequence[int]) -> str:
    """``clusters[0], clusters[3] and 998 more`` (bounded)."""
    shown = ", ".join(f"clusters[{i}]" for i in positions[:INDICES_SHOWN])
    more = len(positions) - INDICES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


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
    # versions accepted with a warning (not validated by kindmesh); shown by `up` and the doctor
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def cilium_version_of(self, cluster: ClusterConfig) -> str:
        """The Cilium version of one cluster: its own clusters[].cilium.version, else the stack's."""
        return cluster.cilium_version or self.cilium.version


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
    "charts": ("cilium", "metallb"),
}
CLUSTER_KEYS = ("name", "id", "workers", "podSubnet", "serviceSubnet", "source", "demo", *EXISTING_KEYS)
CLUSTER_DEMO_KEYS = ("affinity", "shared")


# Ranges no pod, service or docker network may use (the fix: a private range).
SPECIAL_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network' (unspecified)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (and broadcast)"),
)
# Networks docker creates itself, and kind's own network: never the stack's network.
FOREIGN_NETWORKS = ("bridge", "host", "none", "kind")
IMAGE_REF_MAX = 512
_IMAGE_RE = re.compile(r"[a-z0-9][a-z0-9._/:-]*(:[\w][\w.-]*)?(@sha256:[0-9a-f]{64})?", re.ASCII)
_VERSION_RE = re.compile(r"v?\d{1,9}\.\d{1,9}\.\d{1,9}([-+][0-9A-Za-z.+-]*)?", re.ASCII)
_PATH_KEY_RE = re.compile(r"^([A-Za-z]+)(?:\[[0-9]*\])?[.\[]", re.ASCII)


def special_range(net: ipaddress.IPv4Network) -> str | None:
    """Why ``net`` is no place for pods, services or nodes (None when it is fine)."""
    for cidr, what in SPECIAL_RANGES:
        if net.overlaps(ipaddress.IPv4Network(cidr)):
            return f"overlaps the {what} range {cidr}"
    return None


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def unknown_keys(self, key: str, value: Mapping[Any, Any], allowed: Sequence[str]) -> None:
        for k in value:
            if k in allowed:
                continue
            name = k if isinstance(k, str) else quote(k)  # str() of a 4300+ digit int raises
            hint = _closest(name, allowed) if len(name) <= QUOTE_MAX else None
            fix = f"did you mean '{hint}'?" if hint else "remove it"
            sep = ":" if key == NAMESPACE else "."
            self.add(
                f"{key}{sep}{clip(name)}",
                f"unknown key ({fix}); allowed keys: {', '.join(allowed)}",
            )

    def top_level_keys(self, raw: Mapping[Any, Any]) -> None:
        unknown = {k: v for k, v in raw.items() if k not in TOP_KEYS}
        for k in list(unknown):
            match = _PATH_KEY_RE.match(k) if isinstance(k, str) else None
            if match and match.group(1) in TOP_KEYS:
                name = clip(k)
                self.add(
                    f"{NAMESPACE}:{name}",
                    "is a flat key that looks like a path: `pulumi config set` without --path "
                    "stores the dots literally. Remove it with "
                    f"`pulumi config rm '{NAMESPACE}:{name}'` and set it with "
                    f"`pulumi config set --path '{NAMESPACE}:{name}' <value>`",
                )
                del unknown[k]
        self.unknown_keys(NAMESPACE, unknown, list(TOP_KEYS))

    def mapping(self, key: str, value: Any) -> Mapping[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(key, f"must be a mapping of keys to values, got {quote(value)}")
            return {}
        return value

    def boolean(self, key: str, value: Any, default: bool) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.add(key, f"must be true or false, got {quote(value)}")
        return default

    def integer(self, key: str, value: Any) -> int | None:
        # ASCII digits only: \d (and int()) also take '١', '１', '²'
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", value, re.ASCII):
            digits = value.strip().lstrip("+-").lstrip("0")
            if len(digits) > INT_DIGITS_MAX:  # never int() a 4300-digit string
                self.add(key, f"{quote(value)} is far too large; write a small whole number")
                return None
            return -int(digits or "0") if value.strip().startswith("-") else int(digits or "0")
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value).bit_length() > 60:
                self.add(key, f"{quote(value)} is far too large; write a small whole number")
                return None
            return value
        self.add(key, f"must be a whole number (an integer), got {quote(value)}")
        return None

    def string(self, key: str, value: Any, default: str | None = None) -> str | None:
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.add(key, f"must be a non-empty string, got {quote(value)}")
            return default
        return value.strip()

    def chart_source(self, key: str, value: Any, chart: str, version: str, default: str) -> str:
        """A repository URL, or a local chart directory/archive that holds ``chart`` at ``version``."""
        from kindmesh.core.charts import ChartSourceError, chart_location

        text = self.string(key, value, default) or default
        try:
            chart_location(text, chart, version)
        except ChartSourceError as err:
            self.add(key, str(err))
        except (OSError, ValueError) as err:  # e.g. a path too long for the file system: never a traceback
            self.add(key, f"{quote(text)} cannot be used as a chart path ({getattr(err, 'strerror', None) or err}); "
                          "give a repository URL or an existing chart directory or archive")
        return text

    def version(self, key: str, value: Any, default: str) -> str:
        """A chart version: semver, optionally with a leading v (``1.19.6``)."""
        text = self.string(key, value, default) or default
        if len(text) > 64 or not _VERSION_RE.fullmatch(text):
            self.add(key, f"{quote(text)} is not a chart version; write it like {default}")
            return default
        return text

    def image(self, key: str, value: Any, default: str) -> str:
        """An image reference (``registry/name:tag@sha256:…``), bounded and without spaces."""
        text = self.string(key, value, default) or default
        if len(text) > IMAGE_REF_MAX or not _IMAGE_RE.fullmatch(text):
            self.add(
                key,
                f"{quote(text)} is not an image reference; write it like {clip(default, 50)} "
                f"(at most {IMAGE_REF_MAX} characters, no spaces)",
            )
            return default
        return text

    def choice(self, key: str, value: Any, choices: Sequence[str], default: str) -> str:
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            self.add(key, f"must be one of {', '.join(choices)}; got {quote(value)}")
            return default
        return value

    def cidr(self, key: str, value: Any) -> str | None:
        text = self.string(key, value)
        if text is None:
            return None
        example = "write it like 10.1.0.0/16"
        if len(text) > 64:  # no IPv4 or IPv6 CIDR is this long
            self.add(key, f"{quote(text)} is not a valid IPv4 CIDR; {example}")
            return None
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            why = clip(str(exc), 120)
            self.add(key, f"{quote(text)} is not a valid IPv4 CIDR ({why}); {example}")
            return None
        if net.version != 4:
            self.add(key, f"{quote(text)} is IPv6; kindmesh plans IPv4 CIDRs only; {example}")
            return None
        assert isinstance(net, ipaddress.IPv4Network)
        why_not = special_range(net)
        if why_not:
            self.add(key, f"{net} {why_not}; use a private range such as 10.0.0.0/8 or 172.16.0.0/12")
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


def json_depth(text: str) -> int:
    """How deep ``[``/``{`` nest in JSON ``text`` (strings skipped): checked before decoding,
    because ``json.loads`` recurses and raises RecursionError on deep input."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _bounded_int(text: str) -> int | str:
    # int() refuses 4300+ digits; keep such a number as text, reported as far too large
    return int(text) if len(text) <= 4000 else text


def decode_raw(merged: Mapping[str, Any]) -> dict[str, Any]:
    """``kindmesh:`` keys of a Pulumi config (``{'kindmesh:network': '{"subnet": …}'}``) ->
    raw keys with JSON values decoded (what :func:`parse_config` reads).

    A value that is not JSON stays a string. A value nested deeper than NESTING_MAX is a
    ConfigError naming its key (json.loads would raise RecursionError on it)."""
    raw: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in merged.items():
        ns, sep, rest = str(key).partition(":")
        if not sep or ns != NAMESPACE:
            continue
        if isinstance(value, str):
            depth = json_depth(value)
            if depth > NESTING_MAX:
                problems.append(
                    Problem(
                        f"{NAMESPACE}:{clip(rest)}",
                        f"is nested {depth} levels deep; kindmesh config is at most {NESTING_MAX} "
                        "deep: check the value with `pulumi config get` and set it again",
                    )
                )
                continue
            with contextlib.suppress(ValueError, RecursionError):  # not JSON: a plain string
                value = json.loads(value, parse_int=_bounded_int)
        raw[rest] = value
    if problems:
        raise ConfigError(problems)
    return raw


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
    c = _Collector()
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
        warnings=tuple(dict.fromkeys(c.warnings)),
    )
    if problems is not None:
        problems.extend(c.problems)
    elif c.problems:
        raise ConfigError(c.problems)
    return config


def _catalogued(c: _Collector, key: str, value: Any, default: str) -> str:
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


def _check_cluster_charts(c: _Collector, clusters: Sequence[ClusterConfig], source: str, stack_version: str) -> None:
    """A local Cilium chart source must hold the chart of every cluster's own version too."""
    from kindmesh.core.charts import REMOTE_SCHEMES, ChartSourceError, chart_location

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


def _parse_clusters(c: _Collector, value: Any) -> tuple[list[ClusterConfig], list[str]]:
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
