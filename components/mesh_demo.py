"""MeshDemo: demo workloads, global Services and policies applied to one cluster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from kindmesh.components.cluster_target import After, ClusterTarget, after_list
from kindmesh.components.metallb_pool import custom_resource


def _resource(name: str, obj: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    kind = obj["kind"]
    meta, spec = obj["metadata"], obj.get("spec")
    if kind == "Namespace":
        return k8s.core.v1.Namespace(name, metadata=meta, opts=opts)
    if kind == "Deployment":  # pulumi-kubernetes awaits the rollout (ready replicas)
        return k8s.apps.v1.Deployment(name, metadata=meta, spec=spec, opts=opts)
    if kind == "Service":
        return k8s.core.v1.Service(name, metadata=meta, spec=spec, opts=opts)
    return custom_resource(name, obj, opts)


@dataclass
class MeshDemoArgs:
    """Inputs of :class:`MeshDemo`.

    Attributes:
        target: the cluster.
        manifests: the objects, the Namespace first (``kindmesh.core.demo.manifests``
            renders kindmesh's: an echo backend naming its cluster behind global Services,
            a client, and with policies a default-deny + cross-cluster allow rules).
        after: what they wait for (the CNI: ``CiliumRelease.ready``), one resource or a sequence.
    """

    target: ClusterTarget
    manifests: Sequence[Mapping[str, Any]]
    after: After = None

    def __post_init__(self) -> None:
        after_list(self.after, "MeshDemoArgs.after")


class MeshDemo(pulumi.ComponentResource):
    """Policies first, so no demo pod ever runs unprotected when policies are on.

    Outputs: ``namespace`` and ``resources`` (every object, the namespace first).
    """

    def __init__(self, name: str, args: MeshDemoArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kindmesh:index:MeshDemo", name, None, opts)
        if not args.manifests or args.manifests[0].get("kind") != "Namespace":
            raise ValueError("MeshDemoArgs.manifests: the first object must be the Namespace")
        target = args.target
        namespace_obj, rest = args.manifests[0], list(args.manifests[1:])

        def child_opts(*depends: pulumi.Resource | None) -> pulumi.ResourceOptions:
            return target.opts(self, *depends)

        self.namespace = _resource(f"{name}-demo-ns", namespace_obj, child_opts(*after_list(args.after, "MeshDemoArgs.after")))
        ordered = sorted(rest, key=lambda o: o["kind"] != "CiliumNetworkPolicy")
        policies = [
            _resource(f"{name}-demo-{o['metadata']['name']}", o, child_opts(self.namespace))
            for o in ordered if o["kind"] == "CiliumNetworkPolicy"
        ]
        self.resources: list[pulumi.CustomResource] = [self.namespace, *policies]
        for o in ordered:
            if o["kind"] == "CiliumNetworkPolicy":
                continue
            suffix = o["metadata"]["name"] + ("-svc" if o["kind"] == "Service" else "")
            self.resources.append(
                _resource(f"{name}-demo-{suffix}", o, child_opts(self.namespace, *policies))
            )
        self.register_outputs({})
