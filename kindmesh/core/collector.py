"""The parser's toolkit: the problem collector and its typed readers, bounded quoting.

:class:`Collector` gathers every problem of a configuration (key and fix) instead of stopping
at the first, and reads typed values from raw input (booleans, bounded integers, strings,
chart versions and sources, image references, choices, IPv4 CIDRs): a wrong value is a
problem and the reader returns a default. :func:`quote` describes any user value in a
bounded way (never ``str()`` of a 4300-digit integer). Used by every ``config*`` module.

Pure module: no ``pulumi`` import.

May import: model, charts.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kindmesh.core.charts import ChartSourceError, chart_location
from kindmesh.core.model import NAMESPACE, QUOTE_MAX, Problem, clip

INDICES_SHOWN = 4  # clusters listed when one mistake is shared by many
INT_DIGITS_MAX = 18  # integers beyond this are out of every range kindmesh has
NESTING_MAX = 32  # deepest JSON nesting accepted from `pulumi config`


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
    "timeouts": ("rollout", "webhook", "loadBalancer"),
}

# Ranges no pod, service or docker network may use (the fix: a private range).
SPECIAL_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network' (unspecified)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (and broadcast)"),
)
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


class Collector:
    """Every problem of one configuration, and typed readers that record one when a value is wrong."""

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
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if match:
        return match[0]
    lowered = {o.lower(): o for o in options}
    return lowered.get(word.lower())
