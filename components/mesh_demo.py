"""MeshDemo: the demo backend, clients, global Services and policies of one cluster."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from kindmesh.components.cluster_target import ClusterTarget
from kindmesh.components.metallb_pool import custom_resource
from kindmesh.core.demo import manifests
from kindmesh.core.planner import ClusterPlan, StackPlan


def _resource(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    kind = obj["kind"]
    meta, spec = obj["metadata"], obj.get("spec")
    if kind == "Namespace":
        return k8s.core.v1.Namespace(name, metadata=meta, opts=opts)
    if kind == "Deployment":  # pulumi-kubernetes awaits the rollout (ready replicas)
        return k8s.apps.v1.Deployment(name, metadata=meta, spec=spec, opts=opts)
    if kind == "Service":
        return k8s.core.v1.Service(name, metadata=meta, spec=spec, opts=opts)
    return custom_resource(name, obj, opts)


class MeshDemo(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        plan: StackPlan,
        cluster: ClusterPlan,
        *,
        target: ClusterTarget,
        after: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("kindmesh:index:MeshDemo", name, None, opts)
        objs = manifests(plan, cluster)
        namespace_obj, rest = objs[0], objs[1:]

        def child_opts(*depends: pulumi.Resource) -> pulumi.ResourceOptions:
            return target.opts(self, *depends)

        self.namespace = _resource(f"{name}-demo-ns", namespace_obj, child_opts(after))
        # Policies first, so no demo pod ever runs unprotected when policies are on.
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
