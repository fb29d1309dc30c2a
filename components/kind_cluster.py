"""KindCluster: one kind cluster, ready for Cilium, as a first-class Pulumi resource.

Two resources per cluster:

* ``<name>-kind-cluster`` (``command:local:Command``): ``python -m kindmesh.deploy.kindctl
  create|update|delete`` in its own process with the cluster spec as JSON in
  ``$KINDMESH_KIND_SPEC``. ``triggers`` holds the hash of what kind cannot change on a
  running cluster and ``replace_on_changes=["triggers"]`` + ``delete_before_replace``
  make such a change delete then recreate it (the name is fixed). Any other input
  change (new pre-pulled images) runs ``update``, which loads what is missing.
* ``<name>-kind`` (dynamic, quick calls only): reads the kubeconfig (secret), context and
  nodes of the cluster, and on refresh notices when it was deleted behind Pulumi's back.

:class:`HostImages` pulls each image once on the host (``kindctl prepull``).
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import pulumi
import pulumi_command as command
from pulumi.dynamic import Resource

from kindmesh import PACKAGE_HOME
from kindmesh.components.kind_provider import KindClusterInfoProvider
from kindmesh.core.images import Image
from kindmesh.core.planner import ClusterPlan, StackPlan
from kindmesh.core.render import kind_config_yaml
from kindmesh.deploy import kindctl

PROJECT_ROOT = PACKAGE_HOME  # where `python -m kindmesh.deploy.kindctl` resolves


def kindctl_command(action: str) -> str:
    return f"{shlex.quote(sys.executable)} -m kindmesh.deploy.kindctl {action}"


def host_image_specs(images: list[str] | tuple[str, ...]) -> list[dict[str, str]]:
    return [{"pinned": Image.parse(i).pinned, "tag": Image.parse(i).by_tag} for i in images]


def cluster_inputs(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    """The cluster spec kindctl gets: all derived from the plan, nothing random."""
    return {
        "name": cluster.kind_name,
        "network": plan.network.name,
        "config": kind_config_yaml(plan, cluster),
        "node_image": plan.config.kind.node_image,
        "pod_subnet": cluster.pod_subnet,
        "service_subnet": cluster.service_subnet,
        "workers": cluster.workers,
        "images": host_image_specs(plan.images) if plan.config.kind.prepull else [],
    }


class KindClusterInfo(Resource):
    """The dynamic resource behind :class:`KindCluster`'s outputs (quick reads)."""

    kubeconfig: pulumi.Output[str]
    context: pulumi.Output[str]
    control_plane: pulumi.Output[str]
    nodes: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            KindClusterInfoProvider(),
            name,
            {**props, "kubeconfig": None, "context": None, "control_plane": None, "nodes": None},
            opts,
        )


class HostImages(pulumi.ComponentResource):
    """Images pulled once on the host, in a process of their own (``kindctl prepull``)."""

    def __init__(self, name: str, images: list[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("kindmesh:index:HostImages", name, None, opts)
        spec = json.dumps({"images": host_image_specs(images)}, sort_keys=True)
        self.command = command.local.Command(
            f"{name}-pull",
            create=kindctl_command("prepull"),
            update=kindctl_command("prepull"),
            dir=str(PROJECT_ROOT),
            environment={kindctl.IMAGES_ENV: spec},
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m")),
        )
        self.register_outputs({})


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
        spec = cluster_inputs(plan, cluster)
        depends: list[pulumi.Resource] = [network] + ([images] if images is not None else [])
        self.command = command.local.Command(
            f"{name}-kind-cluster",
            create=kindctl_command("create"),
            update=kindctl_command("update"),
            delete=kindctl_command("delete"),
            dir=str(PROJECT_ROOT),
            environment={kindctl.SPEC_ENV: json.dumps(spec, sort_keys=True)},
            triggers=[kindctl.spec_hash(spec)],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=depends,
                replace_on_changes=["triggers"],
                delete_before_replace=True,
                custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m", delete="10m"),
            ),
        )
        self.cluster = KindClusterInfo(
            f"{name}-kind",
            {
                "name": cluster.kind_name,
                "network": plan.network.name,
                "cluster": self.command.stdout,
                "command_urn": self.command.urn,
            },
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.command],
                additional_secret_outputs=["kubeconfig"],
                delete_before_replace=True,
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
