"""Container images kindmesh pre-pulls on the host and loads into every kind cluster.

The Cilium references are facts from the chart's own ``values.yaml`` (1.19.6); a test
checks them against ``../shared/upstream`` when it is present.

Images are pulled on the host *by digest* (integrity), tagged with their plain tag,
and loaded into kind by tag (``kind load docker-image`` re-exports the image, so the
registry's digest does not survive the load). When pre-pulling is on, the Helm values
switch the charts to tag references so the kubelet finds the loaded images
(``pullPolicy: IfNotPresent``). Pure module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kindmesh.core.config import DemoConfig


@dataclass(frozen=True)
class Image:
    repository: str
    tag: str
    digest: str | None = None

    @property
    def by_tag(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def pinned(self) -> str:
        """What the host pulls: ``repo:tag@sha256:…`` when a digest is known."""
        return f"{self.by_tag}@{self.digest}" if self.digest else self.by_tag

    @classmethod
    def parse(cls, ref: str) -> Image:
        name, _, digest = ref.partition("@")
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            repo, tag = name[:colon], name[colon + 1 :]
        else:
            repo, tag = name, "latest"
        return cls(repo, tag, digest or None)


CILIUM_IMAGES: dict[str, dict[str, Image]] = {
    "1.19.6": {
        "agent": Image(
            "quay.io/cilium/cilium",
            "v1.19.6",
            "sha256:0df5b2750b64c49843aba1d649e9eaf61467cb0645ad3171db6f6962c095ac92",
        ),
        "operator": Image(
            "quay.io/cilium/operator-generic",
            "v1.19.6",
            "sha256:0db4ca4e06969d8904ee036617795d0e9c3228cf7b8d902ba74fc2bb98d2d665",
        ),
        "envoy": Image(
            "quay.io/cilium/cilium-envoy",
            "v1.36.9-1782267392-edeb3f2af56c37c407efa1f63f0b32f595399bbc",
            "sha256:767101fb8a5e38f055778cb43b7aa8eed80450b37f8121effac3d9de9e06dc99",
        ),
        "clustermesh": Image(
            "quay.io/cilium/clustermesh-apiserver",
            "v1.19.6",
            "sha256:accab5fe6ab7134fcd6f916acc9e4c785382a022128ae5495ec4a45fbe18c9a6",
        ),
        "relay": Image(
            "quay.io/cilium/hubble-relay",
            "v1.19.6",
            "sha256:6782a49e3f28eba015701c4410a5ec7fa096fe9a562f879b4372dbecd827ea44",
        ),
        "ui": Image(
            "quay.io/cilium/hubble-ui",
            "v0.13.5",
            "sha256:f7d514fc54d784ed6df9d58cf0e97648b143f92b766dd1780ed3fc845bd4c516",
        ),
        "ui-backend": Image(
            "quay.io/cilium/hubble-ui-backend",
            "v0.13.5",
            "sha256:fac0c300ae119274edca11fd89b1ad23c788792d8bc4ea2ba631c709e8d3c688",
        ),
    }
}


def cilium_image_set(version: str) -> dict[str, Image]:
    return CILIUM_IMAGES.get(version, {})


def cilium_images(version: str, hubble: bool, hubble_ui: bool) -> list[str]:
    imgs = cilium_image_set(version)
    if not imgs:  # an unknown chart version: nothing pre-pulled, the chart pulls itself
        return []
    keys = ["agent", "operator", "envoy", "clustermesh"]
    if hubble:
        keys.append("relay")
    if hubble_ui:
        keys += ["ui", "ui-backend"]
    return [imgs[k].pinned for k in keys]


def metallb_images(version: str) -> list[str]:
    tag = version if version.startswith("v") else f"v{version}"
    # The chart's values leave the tag to its appVersion and publish no digests.
    return [f"quay.io/metallb/controller:{tag}", f"quay.io/metallb/speaker:{tag}"]


def demo_images(demo: DemoConfig) -> list[str]:
    return [demo.backend_image, demo.client_image]
