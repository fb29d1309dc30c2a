"""KindCluster: one kind cluster, ready for Cilium, as a first-class Pulumi resource.

Three resources per cluster, four with images to load:

* ``<name>-kind-present`` (dynamic, quick): a token that exists while the cluster does,
  made before the command; ``refresh`` drops it when the cluster was deleted by hand, and
  its new id in the command's environment then runs the command's ``update``, which
  recreates the cluster.

* ``<name>-kind-cluster`` (``command:local:Command``): ``python -m kindmesh.deploy.kindctl
  create|update|delete`` in its own process with the cluster spec as JSON in
  ``$KINDMESH_KIND_SPEC``. ``triggers`` holds the hash of what kind cannot change on a
  running cluster and ``replace_on_changes=["triggers"]`` + ``delete_before_replace``
  make such a change delete then recreate it (the name is fixed). Any other input
  change runs ``update``.
* ``<name>-kind`` (dynamic, quick calls only): reads the kubeconfig (secret), context and
  nodes of the cluster, and on refresh notices when it was deleted behind Pulumi's back.
* ``<name>-image-load`` (``command:local:Command``, ``kindctl load``): loads the images into
  the nodes once both the cluster and ``images_after`` (the host's pre-pull) are done, so
  ``kind create`` does not wait for the pull. New images, or a new cluster (the create
  command's id, in its environment, changes on every create), run its ``update``, which
  loads what the cluster's marker lacks. :attr:`KindCluster.ready` is what charts wait for.

:class:`HostImages` pulls each image once on the host (``kindctl prepull``).
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command
from pulumi.dynamic import Resource

from kindmesh import PACKAGE_HOME
from kindmesh.components.cluster_target import After, after_list, check_cidr, check_int, reject_str
from kindmesh.components.kind_provider import KindClusterInfoProvider, KindClusterPresenceProvider
from kindmesh.core.config import KIND_NODE_IMAGE
from kindmesh.core.images import Image
from kindmesh.core.naming import KIND_NAME_MAX, KIND_NAME_RE
from kindmesh.core.render import dump_yaml, kind_config_for
from kindmesh.deploy import kindctl

PROJECT_ROOT = PACKAGE_HOME  # where `python -m kindmesh.deploy.kindctl` resolves


def kindctl_command(action: str) -> str:
    return f"{shlex.quote(sys.executable)} -m kindmesh.deploy.kindctl {action}"


def host_image_specs(images: Sequence[str]) -> list[dict[str, str]]:
    return [{"pinned": Image.parse(i).pinned, "tag": Image.parse(i).by_tag} for i in images]


@dataclass
class KindClusterArgs:
    """Inputs of :class:`KindCluster`.

    Attributes:
        kind_name: the kind cluster's name (unique on the host; ``<name>-control-plane`` is
            the control-plane container and Cilium's ``k8sServiceHost``).
        network: the docker network the nodes join (``KIND_EXPERIMENTAL_DOCKER_NETWORK``);
            create it first and pass it in ``after``.
        pod_subnet / service_subnet: the cluster's CIDRs (distinct across a mesh).
        workers: worker nodes besides the control plane (0: control plane only).
        node_image: ``kindest/node`` image, pinned by digest.
        images: images to load into the nodes (pulled once on the host by :class:`HostImages`).
        labels: Kubernetes labels of every node.
        after: what the create waits for (the docker network): one resource or a sequence.
        images_after: what the image load waits for besides the cluster (the
            :class:`HostImages`), one resource or a sequence; not the create, which runs
            while the images are pulled.

    Validated on construction (``ValueError``/``TypeError`` naming the field).
    """

    kind_name: str
    network: str
    pod_subnet: str
    service_subnet: str
    workers: int = 1
    node_image: str = KIND_NODE_IMAGE
    images: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    after: After = ()
    images_after: After = ()

    def __post_init__(self) -> None:
        if not isinstance(self.kind_name, str):
            raise TypeError(f"KindClusterArgs.kind_name: expected a str, got {type(self.kind_name).__name__}")
        if not KIND_NAME_RE.fullmatch(self.kind_name) or len(self.kind_name) > KIND_NAME_MAX:
            raise ValueError(
                f"KindClusterArgs.kind_name: {self.kind_name[:80]!r} is not a valid kind cluster name; use "
                f"lowercase letters, digits, '-' and '.', at most {KIND_NAME_MAX} characters (so "
                "'<name>-control-plane' stays a valid hostname)")
        if isinstance(self.network, pulumi.Output) or not isinstance(self.network, str):
            raise TypeError(
                f"KindClusterArgs.network: expected the docker network's name as a plain str, got "
                f"{type(self.network).__name__}; pass the name string and create the network with that "
                "name (docker.Network(..., name=NAME)), then put the network in `after`")
        if not self.network:
            raise ValueError("KindClusterArgs.network: give the docker network's name")
        check_cidr(self.pod_subnet, "KindClusterArgs.pod_subnet")
        check_cidr(self.service_subnet, "KindClusterArgs.service_subnet")
        check_int(self.workers, "KindClusterArgs.workers", 0)
        reject_str(self.images, "KindClusterArgs.images", f"images=[{self.images!r}]")
        if not isinstance(self.labels, Mapping):
            raise TypeError(f"KindClusterArgs.labels: expected a mapping, got {type(self.labels).__name__}")
        after_list(self.after, "KindClusterArgs.after")
        after_list(self.images_after, "KindClusterArgs.images_after")


def kind_spec(args: KindClusterArgs) -> dict[str, Any]:
    """The cluster spec ``kindctl`` gets: all derived from the args, nothing random."""
    config = kind_config_for(
        args.kind_name, node_image=args.node_image, workers=args.workers,
        pod_subnet=args.pod_subnet, service_subnet=args.service_subnet, labels=args.labels,
    )
    return {
        "name": args.kind_name,
        "network": args.network,
        "config": dump_yaml(config),
        "node_image": args.node_image,
        "pod_subnet": args.pod_subnet,
        "service_subnet": args.service_subnet,
        "workers": args.workers,
        "images": host_image_specs(args.images),
    }


def cluster_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """What the create command gets: the spec without the images (their own step loads them)."""
    return {k: v for k, v in spec.items() if k != "images"}


def load_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """What the image-load command gets: the cluster's name and network, and the images."""
    return {"name": spec["name"], "network": spec["network"], "images": spec["images"]}


class KindClusterPresence(Resource):
    """The dynamic resource that exists while the kind cluster does (see KindClusterPresenceProvider)."""

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(KindClusterPresenceProvider(), name, props, opts)


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


@dataclass
class HostImagesArgs:
    """Inputs of :class:`HostImages`.

    Attributes:
        images: images to pull once on the host (``repo:tag@sha256:…`` pins the digest; the
            clusters then load them by tag).
    """

    images: Sequence[str]


class HostImages(pulumi.ComponentResource):
    """Images pulled once on the host, in a process of their own (``kindctl prepull``).

    On Docker's containerd image store each is also saved as a single-platform archive
    (``kind load docker-image`` fails there for multi-platform images)."""

    def __init__(self, name: str, args: HostImagesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kindmesh:index:HostImages", name, None, opts)
        spec = json.dumps({"images": host_image_specs(args.images)}, sort_keys=True)
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
    loaded: command.local.Command | None  # the image load (None: no images)
    ready: list[pulumi.Resource]  # what a chart in this cluster waits for

    def __init__(self, name: str, args: KindClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kindmesh:index:KindCluster", name, None, opts)
        spec = kind_spec(args)
        depends = after_list(args.after, "KindClusterArgs.after")
        images_after = after_list(args.images_after, "KindClusterArgs.images_after")
        # A token that exists while the cluster does (refresh drops it when the cluster was
        # deleted by hand): a new one in the command's environment runs its update, which
        # recreates the cluster; its releases and gates follow.
        self.presence = KindClusterPresence(
            f"{name}-kind-present", {"name": args.kind_name, "network": args.network},
            pulumi.ResourceOptions(parent=self, depends_on=depends, delete_before_replace=True))
        self.command = command.local.Command(
            f"{name}-kind-cluster",
            create=kindctl_command("create"),
            update=kindctl_command("update"),
            delete=kindctl_command("delete"),
            dir=str(PROJECT_ROOT),
            environment={kindctl.SPEC_ENV: json.dumps(cluster_spec(spec), sort_keys=True),
                         kindctl.PRESENCE_ENV: self.presence.id},
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
                "name": args.kind_name,
                "network": args.network,
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
        self.loaded = None
        if spec["images"]:
            self.loaded = command.local.Command(
                f"{name}-image-load",
                create=kindctl_command("load"),
                update=kindctl_command("load"),
                dir=str(PROJECT_ROOT),
                # The create command's id is new on every create (pulumi-command: a random
                # suffix) and its stdout names what it did ("recreated" an unfinished cluster
                # on an update): a new cluster changes this environment, an update, which loads
                # what the new cluster's marker lacks (all). Not `triggers`: pulumi-command
                # 1.2.1 marks them replaceOnChanges. Another cluster never changes either.
                environment={
                    kindctl.SPEC_ENV: json.dumps(load_spec(spec), sort_keys=True),
                    kindctl.CLUSTER_ID_ENV: pulumi.Output.all(self.command.id, self.command.stdout).apply(
                        lambda v: json.dumps({"id": v[0], "run": v[1]}, sort_keys=True)),
                },
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[self.command, *images_after],
                    custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m"),
                ),
            )
        self.ready = [self.cluster] + ([self.loaded] if self.loaded is not None else [])
        self.kubeconfig = pulumi.Output.secret(self.cluster.kubeconfig)
        self.kind_name = pulumi.Output.from_input(args.kind_name)
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
