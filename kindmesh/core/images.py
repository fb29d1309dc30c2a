"""Container images kindmesh pre-pulls on the host and loads into every kind cluster.

Which images each chart version uses is in the version catalogue
(:mod:`kindmesh.core.versions`: facts from each chart's own ``values.yaml``, checked by a
test against ``../shared/upstream``); this module is the image reference itself.

Images are pulled on the host *by digest* (integrity), tagged with their plain tag,
and loaded into kind by tag (``kind load docker-image`` re-exports the image, so the
registry's digest does not survive the load). When pre-pulling is on, the Helm values
switch the charts to tag references so the kubelet finds the loaded images
(``pullPolicy: IfNotPresent``). Pure module.

May import: model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kindmesh.core.model import DemoConfig


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


def demo_images(demo: DemoConfig) -> list[str]:
    return [demo.backend_image, demo.client_image]
