"""The version catalogue: what kindmesh supports, validated, and how versions differ.

Per supported Cilium and MetalLB minor: the chart versions validated against the real
chart (values, schema, CRDs in ``../shared/upstream``), the images of each chart version
(repository, tag, digest exactly as that chart's ``values.yaml`` gives them; a test checks
them), the Kubernetes window, and the Helm value paths that moved, disappeared or
appeared between minors. Also the node image each kind release creates by default.

Rules (README / docs/versions.md):

* a catalogued chart version is used as validated (images pre-pulled by digest);
* another patch (or pre-release) of a supported minor is accepted with a warning: values
  are rendered as for that minor, its images are *not* pre-pulled (their digests are
  unknown here; the chart pulls its own images by digest inside the nodes);
* any other minor is a ConfigError naming the key and listing the supported versions;
* clusters of one mesh may differ by one Cilium minor (Cilium's supported skew for
  ClusterMesh upgrades); more is refused.

Pure module: no ``pulumi`` import. The caller detects the installed kind release.

May import: model, images.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kindmesh.core.images import Image

# the default versions live with the types (model); the catalogue re-exports them
from kindmesh.core.model import DEFAULT_CILIUM as DEFAULT_CILIUM
from kindmesh.core.model import DEFAULT_METALLB as DEFAULT_METALLB
from kindmesh.core.model import Release

Minor = tuple[int, int]

_VERSION_RE = re.compile(r"v?(\d{1,9})\.(\d{1,9})\.(\d{1,9})(?:[-+]([0-9A-Za-z.+-]*))?", re.ASCII)


def parse_version(text: str) -> tuple[Release, str] | None:
    """``v1.20.0-rc.1`` -> ((1, 20, 0), "rc.1"); None when it is not a version."""
    m = _VERSION_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))), m.group(4) or ""


def minor_of(text: str) -> Minor | None:
    parsed = parse_version(text)
    return parsed[0][:2] if parsed else None


def fmt_minor(minor: Minor) -> str:
    return f"{minor[0]}.{minor[1]}"


# --------------------------------------------------------------------------- value changes
@dataclass(frozen=True)
class Moved:
    """A Helm value path that is ``new`` from minor ``since`` on (``old`` before it).

    ``new_before``: ``new`` already exists in the minor before ``since`` (so values for an
    older cluster keep it as is); otherwise rendering for an older minor moves it back."""

    old: str
    new: str
    since: Minor
    new_before: bool = False


@dataclass(frozen=True)
class Removed:
    """A value path gone from minor ``since`` on, with what to do instead."""

    path: str
    since: Minor
    advice: str


@dataclass(frozen=True)
class Added:
    """A value path that exists from minor ``since`` on."""

    path: str
    since: Minor


@dataclass(frozen=True)
class ChartLine:
    """One supported minor of a chart."""

    minor: Minor
    # chart version -> images of that chart (key -> Image); the first is the validated default
    charts: Mapping[str, Mapping[str, Image]]
    k8s_window: tuple[Minor, Minor]  # Kubernetes minors tested (low, high), inclusive
    k8s_source: str
    moved: tuple[Moved, ...] = ()
    removed: tuple[Removed, ...] = ()
    added: tuple[Added, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def validated(self) -> tuple[str, ...]:
        return tuple(self.charts)


# Cilium images: from each chart's values.yaml (image, operator.image (generic), envoy.image,
# clustermesh.apiserver.image, hubble.relay.image, hubble.ui.frontend/backend.image).
_CILIUM_1_19_6 = {
    "agent": Image("quay.io/cilium/cilium", "v1.19.6",
                   "sha256:0df5b2750b64c49843aba1d649e9eaf61467cb0645ad3171db6f6962c095ac92"),
    "operator": Image("quay.io/cilium/operator-generic", "v1.19.6",
                      "sha256:0db4ca4e06969d8904ee036617795d0e9c3228cf7b8d902ba74fc2bb98d2d665"),
    "envoy": Image("quay.io/cilium/cilium-envoy", "v1.36.9-1782267392-edeb3f2af56c37c407efa1f63f0b32f595399bbc",
                   "sha256:767101fb8a5e38f055778cb43b7aa8eed80450b37f8121effac3d9de9e06dc99"),
    "clustermesh": Image("quay.io/cilium/clustermesh-apiserver", "v1.19.6",
                         "sha256:accab5fe6ab7134fcd6f916acc9e4c785382a022128ae5495ec4a45fbe18c9a6"),
    "relay": Image("quay.io/cilium/hubble-relay", "v1.19.6",
                   "sha256:6782a49e3f28eba015701c4410a5ec7fa096fe9a562f879b4372dbecd827ea44"),
    "ui": Image("quay.io/cilium/hubble-ui", "v0.13.5",
                "sha256:f7d514fc54d784ed6df9d58cf0e97648b143f92b766dd1780ed3fc845bd4c516"),
    "ui-backend": Image("quay.io/cilium/hubble-ui-backend", "v0.13.5",
                        "sha256:fac0c300ae119274edca11fd89b1ad23c788792d8bc4ea2ba631c709e8d3c688"),
}
_CILIUM_1_20_0 = {
    "agent": Image("quay.io/cilium/cilium", "v1.20.0",
                   "sha256:383968cd5e8873f7976fa76aa6196045643558f4cc9518a207b9335cb24a0e93"),
    "operator": Image("quay.io/cilium/operator-generic", "v1.20.0",
                      "sha256:80744a8cc7c91c2f9e6347629406844eb35d79b30a732c6d41c15b17232a74f3"),
    "envoy": Image("quay.io/cilium/cilium-envoy", "v1.37.5-1782911245-7cffc778c923f68a77954a53b1a98d6b5353f004",
                   "sha256:583057dd4f7d54cd41efff3c413aa0b148ac201f522e2c3336851fa89c78b039"),
    "clustermesh": Image("quay.io/cilium/clustermesh-apiserver", "v1.20.0",
                         "sha256:c791d0c334d4515d40041b2660d50a1b94b0179ef1d3c120bd350aebc9115e92"),
    "relay": Image("quay.io/cilium/hubble-relay", "v1.20.0",
                   "sha256:2ca16981c7eb98df0ba9c9d18896bb9ca628b5cbd40dc9801339f4741f91ee94"),
    "ui": Image("quay.io/cilium/hubble-ui", "v0.13.5",
                "sha256:f7d514fc54d784ed6df9d58cf0e97648b143f92b766dd1780ed3fc845bd4c516"),
    "ui-backend": Image("quay.io/cilium/hubble-ui-backend", "v0.13.5",
                        "sha256:fac0c300ae119274edca11fd89b1ad23c788792d8bc4ea2ba631c709e8d3c688"),
}
# Where each image sits in the chart's values (the catalogue test reads them there).
CILIUM_IMAGE_PATHS = {
    "agent": "image", "operator": "operator.image", "envoy": "envoy.image",
    "clustermesh": "clustermesh.apiserver.image", "relay": "hubble.relay.image",
    "ui": "hubble.ui.frontend.image", "ui-backend": "hubble.ui.backend.image",
}
_TLS_SERVER = "clustermesh.apiserver.tls.server"
_TLS_GONE = ("kindmesh generates ClusterMesh TLS with Helm (tls.auto.method helm) from the stack's CA; "
             "remove it")

CILIUM: dict[Minor, ChartLine] = {
    (1, 19): ChartLine(
        minor=(1, 19),
        charts={"1.19.6": _CILIUM_1_19_6},
        k8s_window=((1, 32), (1, 35)),
        k8s_source="docs.cilium.io v1.19, Kubernetes Compatibility: 1.32, 1.33, 1.34, 1.35",
    ),
    (1, 20): ChartLine(
        minor=(1, 20),
        charts={"1.20.0": _CILIUM_1_20_0},
        k8s_window=((1, 33), (1, 36)),
        k8s_source=("the four Kubernetes minors supported when the 1.20 branch was cut (1.33-1.36), "
                    "Cilium's stated rule; the v1.20 Kubernetes Compatibility page was not reachable "
                    "from the build host: re-check it there"),
        # diff of the 1.19.6 and 1.20.0 values.yaml for the subtrees kindmesh renders
        moved=(
            Moved(f"{_TLS_SERVER}.extraDnsNames", "clustermesh.apiserver.tls.auto.server.extraDnsNames", (1, 20)),
            Moved(f"{_TLS_SERVER}.extraIpAddresses", "clustermesh.apiserver.tls.auto.server.extraIpAddresses",
                  (1, 20)),
            Moved("clustermesh.enableMCSAPISupport", "clustermesh.mcsapi.enabled", (1, 20), new_before=True),
        ),
        removed=(
            Removed(f"{_TLS_SERVER}.cert", (1, 20), _TLS_GONE),
            Removed(f"{_TLS_SERVER}.key", (1, 20), _TLS_GONE),
            Removed("clustermesh.apiserver.tls.admin", (1, 20), _TLS_GONE),
            Removed("clustermesh.apiserver.tls.remote", (1, 20), _TLS_GONE),
            Removed("clustermesh.apiserver.tls.enableSecrets", (1, 20), _TLS_GONE),
        ),
        added=(
            Added("clustermesh.defaultGlobalNamespace", (1, 20)),
            Added("clustermesh.apiserver.tls.auto.privateKey", (1, 20)),
            Added("clustermesh.apiserver.tls.auto.schedule", (1, 20)),
            Added("clustermesh.apiserver.tls.auto.subject", (1, 20)),
            Added("clustermesh.apiserver.etcdQPS", (1, 20)),
            Added("clustermesh.apiserver.kvstoremesh.etcdQPS", (1, 20)),
            Added("hubble.tls.auto.privateKey", (1, 20)),
            Added("hubble.tls.auto.subject", (1, 20)),
        ),
        notes=("clustermesh.apiserver.tls.auto.certValidityDuration default 1095 -> 365 days",),
    ),
}
# MetalLB publishes no digests in its chart: the tag is the chart's appVersion.
METALLB: dict[Minor, ChartLine] = {
    (0, 15): ChartLine(
        minor=(0, 15),
        charts={"0.15.3": {"controller": Image("quay.io/metallb/controller", "v0.15.3"),
                           "speaker": Image("quay.io/metallb/speaker", "v0.15.3")}},
        k8s_window=((1, 19), (99, 0)),
        k8s_source="chart kubeVersion '>= 1.19.0-0'",
    ),
    (0, 16): ChartLine(
        minor=(0, 16),
        charts={"0.16.1": {"controller": Image("quay.io/metallb/controller", "v0.16.1"),
                           "speaker": Image("quay.io/metallb/speaker", "v0.16.1")}},
        k8s_window=((1, 19), (99, 0)),
        k8s_source="chart kubeVersion '>= 1.19.0-0'",
        notes=("speaker.frr.enabled now defaults to false (kindmesh sets false for every version)",),
    ),
}
MAX_CILIUM_SKEW = 1  # minors between the oldest and newest Cilium of one mesh

# kind release -> the node image it creates by default (pkg/apis/config/defaults/image.go at
# each tag). v0.33.0's digest is not known here as a fact: its image is pinned by tag only.
KIND_NODE_IMAGES: dict[Release, str] = {
    (0, 30, 0): "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a",
    (0, 31, 0): "kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f",
    (0, 32, 0): "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5",
    (0, 33, 0): "kindest/node:v1.37.0",
}
MIN_KIND: Release = min(KIND_NODE_IMAGES)
NEWEST_KIND: Release = max(KIND_NODE_IMAGES)
# The image planned when the kind release is not known (Pulumi mocks, a doctor run before kind
# is installed): the newest release whose image is pinned by digest.
DEFAULT_KIND: Release = (0, 32, 0)


def fmt_release(release: Release) -> str:
    return "v" + ".".join(map(str, release))


# --------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class Resolved:
    """A chart version checked against the catalogue."""

    version: str  # as the user wrote it (what Helm gets)
    line: ChartLine
    validated: bool  # one of the catalogued chart versions

    @property
    def images(self) -> Mapping[str, Image]:
        """The images to pre-pull: none for a version kindmesh has not validated."""
        return self.line.charts.get(self.version.lstrip("v"), {}) if self.validated else {}


def _supported(lines: Mapping[Minor, ChartLine]) -> str:
    return ", ".join(v for line in lines.values() for v in line.validated)


def resolve(lines: Mapping[Minor, ChartLine], version: str, key: str, what: str
            ) -> tuple[Resolved | None, str | None, str | None]:
    """(resolved, problem, warning) of ``version`` set at ``key``."""
    parsed = parse_version(version)
    supported = _supported(lines)
    if parsed is None:
        return None, f"{version!r} is not a version; use one of {supported}", None
    line = lines.get(parsed[0][:2])
    if line is None:
        minors = ", ".join(fmt_minor(m) for m in lines)
        return None, (f"{what} {version} is not supported (supported minors: {minors}); set {key} to one of "
                      f"{supported}"), None
    if version.lstrip("v") in line.charts:
        return Resolved(version, line, True), None, None
    warning = (f"{key}: {what} {version} has not been validated by kindmesh (validated for "
               f"{fmt_minor(line.minor)}: {', '.join(line.validated)}); its values are rendered as for "
               f"{fmt_minor(line.minor)} and its images are not pre-pulled (the chart pulls them itself)")
    return Resolved(version, line, False), None, warning


def resolve_cilium(version: str, key: str = "kindmesh:cilium.version"
                   ) -> tuple[Resolved | None, str | None, str | None]:
    return resolve(CILIUM, version, key, "Cilium")


def resolve_metallb(version: str, key: str = "kindmesh:metallb.version"
                    ) -> tuple[Resolved | None, str | None, str | None]:
    return resolve(METALLB, version, key, "MetalLB")


def cilium_line(version: str) -> ChartLine | None:
    minor = minor_of(version)
    return CILIUM.get(minor) if minor else None


def check_skew(versions: Sequence[tuple[str, str]], max_skew: int = MAX_CILIUM_SKEW) -> str | None:
    """``versions``: (key, version) per cluster. A problem when the minors of one mesh are
    more than ``max_skew`` apart (or the majors differ), naming the keys at both ends."""
    minors = [(minor_of(v), key, v) for key, v in versions]
    known = [(m, key, v) for m, key, v in minors if m is not None]
    if len(known) < 2:
        return None
    low = min(known)
    high = max(known)
    if low[0][0] == high[0][0] and high[0][1] - low[0][1] <= max_skew:
        return None
    return (f"Cilium {low[2]} ({low[1]}) and {high[2]} ({high[1]}) are more than {max_skew} minor version apart; "
            "clusters of one mesh may differ by one minor only: upgrade in steps (one minor at a time, "
            "`make upgrade`) or set these keys closer")


# --------------------------------------------------------------------------- values per version
def _get(values: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _pop(values: dict[str, Any], path: str) -> Any:
    parts = path.split(".")
    chain = [values]
    for part in parts[:-1]:
        chain.append(chain[-1][part])
    value = chain[-1].pop(parts[-1])
    for node, part in zip(reversed(chain[:-1]), reversed(parts[:-1]), strict=True):
        if node[part] == {}:
            del node[part]  # no empty mapping left behind where the path was
        else:
            break
    return value


def _put(values: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = values
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = value


def value_problems(values: Mapping[str, Any], version: str) -> list[tuple[str, str]]:
    """(path, problem) for extra values that cannot be rendered for Cilium ``version``:
    paths removed in or before its minor, and paths added after it."""
    minor = minor_of(version)
    if minor is None:
        return []
    out: list[tuple[str, str]] = []
    for line in CILIUM.values():
        for gone in line.removed:
            if gone.since <= minor and _get(values, gone.path)[0]:
                out.append((gone.path, f"is not a value of Cilium {fmt_minor(minor)} (removed in "
                                       f"{fmt_minor(gone.since)}): {gone.advice}"))
        for new in line.added:
            if new.since > minor and _get(values, new.path)[0]:
                out.append((new.path, f"is not a value of Cilium {fmt_minor(minor)} (added in "
                                      f"{fmt_minor(new.since)}): set it for clusters on {fmt_minor(new.since)} "
                                      "or later only (kindmesh:clusters[].cilium.values)"))
        for moved in line.moved:
            both = _get(values, moved.old)[0] and _get(values, moved.new)[0]
            if both:
                out.append((moved.old, f"is {moved.new} since Cilium {fmt_minor(moved.since)} and both are set; "
                                       f"keep {moved.new} only"))
    return out


def adapt_values(values: Mapping[str, Any], version: str) -> dict[str, Any]:
    """Extra values as Cilium ``version`` names them: a path that moved is written where
    that version reads it (forwards for newer clusters, backwards for older ones), so one
    stack-wide ``cilium.values`` serves a mesh of mixed versions. Same input, same output."""
    out = copy.deepcopy(dict(values))
    minor = minor_of(version)
    if minor is None:
        return out
    for line in CILIUM.values():
        for moved in line.moved:
            if moved.since <= minor:
                src, dst = moved.old, moved.new
            elif not moved.new_before:
                src, dst = moved.new, moved.old
            else:
                continue
            present, _ = _get(out, src)
            if present and not _get(out, dst)[0]:
                _put(out, dst, _pop(out, src))
    return out


def moved_paths_in(values: Mapping[str, Any], version: str) -> list[tuple[str, str]]:
    """(old, new) of moved paths ``values`` uses in a form ``version`` does not read (warnings)."""
    minor = minor_of(version)
    out: list[tuple[str, str]] = []
    if minor is None:
        return out
    for line in CILIUM.values():
        for moved in line.moved:
            if moved.since <= minor and _get(values, moved.old)[0]:
                out.append((moved.old, moved.new))
    return out


# --------------------------------------------------------------------------- kind
def kind_node_image(kind: Release | None) -> tuple[str, str | None]:
    """(node image, warning) for the installed kind release (None: unknown).

    A release older than MIN_KIND gets MIN_KIND's image (the host preflight refuses that
    kind); a newer one than kindmesh knows gets NEWEST_KIND's image and a warning (kind runs
    older node images best-effort; the Kubernetes version stays known for the Cilium check)."""
    if kind is None:
        return KIND_NODE_IMAGES[DEFAULT_KIND], None
    if kind in KIND_NODE_IMAGES:
        return KIND_NODE_IMAGES[kind], None
    if kind > NEWEST_KIND:
        image = KIND_NODE_IMAGES[NEWEST_KIND]
        return image, (f"kind {fmt_release(kind)} is newer than kindmesh knows ({fmt_release(NEWEST_KIND)}); "
                       f"using {fmt_release(NEWEST_KIND)}'s node image {image}. For {fmt_release(kind)}'s own "
                       "image set kindmesh:kind.nodeImage (pinned by digest, from its release notes)")
    if kind < MIN_KIND:
        return KIND_NODE_IMAGES[MIN_KIND], None
    # a release between known ones (e.g. v0.31.1): the image of the newest known release before it
    return KIND_NODE_IMAGES[max(r for r in KIND_NODE_IMAGES if r < kind)], None


def node_k8s_minor(image: str) -> Minor | None:
    """Kubernetes minor of a ``kindest/node:v1.35.0[@sha256:…]`` image (None: cannot tell)."""
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon <= slash:
        return None
    parsed = parse_version(name[colon + 1:])
    return parsed[0][:2] if parsed else None


def window_verdict(k8s: Minor, line: ChartLine) -> str | None:
    """"older"/"newer" than the tested window, None inside it."""
    low, high = line.k8s_window
    if k8s < low:
        return "older"
    if k8s > high:
        return "newer"
    return None


def window_text(line: ChartLine) -> str:
    low, high = line.k8s_window
    return f"{fmt_minor(low)}-{fmt_minor(high)}"


# --------------------------------------------------------------------------- images
CILIUM_CORE_IMAGES = ("agent", "operator", "envoy", "clustermesh")


def cilium_image_set(version: str) -> Mapping[str, Image]:
    """The images of a validated Cilium chart version ({} for any other version)."""
    line = cilium_line(version)
    return line.charts.get(version.lstrip("v"), {}) if line is not None else {}


def cilium_images(version: str, hubble: bool, hubble_ui: bool) -> list[str]:
    """Pre-pull references (``repo:tag@digest``) of a validated Cilium version; [] otherwise."""
    imgs = cilium_image_set(version)
    if not imgs:
        return []
    keys = list(CILIUM_CORE_IMAGES)
    if hubble:
        keys.append("relay")
    if hubble_ui:
        keys += ["ui", "ui-backend"]
    return [imgs[k].pinned for k in keys]


def metallb_images(version: str) -> list[str]:
    """Pre-pull references of a validated MetalLB version (by tag: the chart has no digests); []
    for a version kindmesh has not validated."""
    minor = minor_of(version)
    line = METALLB.get(minor) if minor else None
    imgs = line.charts.get(version.lstrip("v"), {}) if line is not None else {}
    return [imgs[k].pinned for k in ("controller", "speaker") if k in imgs]
