"""KindCluster: one kind cluster, ready for Cilium, as a first-class Pulumi resource."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import Resource

from components.kind_provider import HostImagesProvider, KindClusterProvider
from stacks.images import Image
from stacks.planner import ClusterPlan, StackPlan
from stacks.render import kind_config_yaml


class KindClusterResource(Resource):
    """The dynamic resource behind :class:`KindCluster` (driven by the kind CLI)."""

    kubeconfig: pulumi.Output[str]
    context: pulumi.Output[str]
    control_plane: pulumi.Output[str]
    nodes: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            KindClusterProvider(),
            name,
            {**props, "kubeconfig": None, "context": None, "control_plane": None, "nodes": None},
            opts,
        )


class HostImages(Resource):
    """Images pulled once on the host and tagged for ``kind load docker-image``."""

    images: pulumi.Output[list[dict[str, str]]]

    def __init__(self, name: str, images: list[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__(HostImagesProvider(), name, {"images": host_image_specs(images)}, opts)


def host_image_specs(images: list[str] | tuple[str, ...]) -> list[dict[str, str]]:
    return [{"pinned": Image.parse(i).pinned, "tag": Image.parse(i).by_tag} for i in images]


def cluster_inputs(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    """The dynamic resource's inputs: all derived from the plan, nothing random."""
    return {
        "name": cluster.kind_name,
        "network": plan.network.name,
        "config": kind_config_yaml(plan, cluster),
        "node_image": plan.config.kind.node_image,
        "pod_subnet": cluster.pod_subnet,
        "service_subnet": cluster.service_subnet,
        "workers": cluster.workers,
        "images": [s["tag"] for s in host_image_specs(plan.images)] if plan.config.kind.prepull else [],
    }


class KindCluster(pulumi.ComponentResource):
    """A kind cluster on the stack's docker network (no CNI, no kube-proxy)."""

    kubeconfig: pulumi.Output[str]
    kind_name: pulumi.Output[str]
    context: pulumi.Output[str]
    control_plane: pulumi.Output[str]
    nodes: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        plan: StackPlan,
        cluster: ClusterPlan,
        *,
        network: pulumi.Resource,
        images: pulumi.Resource | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("kindmesh:index:KindCluster", name, None, opts)
        depends: list[pulumi.Resource] = [network] + ([images] if images is not None else [])
        self.cluster = KindClusterResource(
            f"{name}-kind",
            cluster_inputs(plan, cluster),
            pulumi.ResourceOptions(
                parent=self,
                depends_on=depends,
                additional_secret_outputs=["kubeconfig"],
                delete_before_replace=True,
                custom_timeouts=pulumi.CustomTimeouts(create="20m", delete="10m"),
            ),
        )
        self.kubeconfig = pulumi.Output.secret(self.cluster.kubeconfig)
        self.kind_name = pulumi.Output.from_input(cluster.kind_name)
        self.context = self.cluster.context
        self.control_plane = self.cluster.control_plane
        self.nodes = self.cluster.nodes
        self.register_outputs(
            {
                "kubeconfig": self.kubeconfig,
                "kind_name": self.kind_name,
                "context": self.context,
                "control_plane": self.control_plane,
                "nodes": self.nodes,
            }
        )
