"""MetalLBPool: MetalLB (L2) in one cluster with the pool the planner carved for it."""

from __future__ import annotations

import ipaddress
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from kindmesh.components.cluster_target import ClusterTarget
from kindmesh.core.config import METALLB_CHART_REPO
from kindmesh.core.planner import ClusterPlan, StackPlan
from kindmesh.core.render import METALLB_NAMESPACE, ip_address_pool, l2_advertisement, metallb_values

RELEASE_TIMEOUT = 600
GATE_TIMEOUT = 300


def custom_resource(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        name, api_version=obj["apiVersion"], kind=obj["kind"], metadata=obj["metadata"],
        spec=obj.get("spec"), opts=opts,
    )


class PoolOverlapError(ValueError):
    pass


def check_pool_is_own(plan: StackPlan, cluster: ClusterPlan) -> None:
    """Defensive: the cluster's pool overlaps no other pool and lies in the docker subnet."""
    first, last = int(ipaddress.ip_address(cluster.pool_first)), int(ipaddress.ip_address(cluster.pool_last))
    subnet = ipaddress.ip_network(plan.network.subnet)
    # an existing cluster's pool is the user's (stacks/existing.py checked it against every range)
    if cluster.source == "kind" and not (int(subnet.network_address) < first <= last < int(subnet.broadcast_address)):
        raise PoolOverlapError(
            f"MetalLB pool {cluster.pool} of cluster {cluster.name!r} is not inside the docker subnet {subnet}"
        )
    for other in plan.clusters:
        if other.name == cluster.name or not other.pool_first:
            continue
        o_first = int(ipaddress.ip_address(other.pool_first))
        o_last = int(ipaddress.ip_address(other.pool_last))
        if first <= o_last and o_first <= last:
            raise PoolOverlapError(
                f"MetalLB pool {cluster.pool} of cluster {cluster.name!r} overlaps pool {other.pool} of "
                f"cluster {other.name!r}; both clusters would answer ARP for the same IPs"
            )


class MetalLBPool(pulumi.ComponentResource):
    """MetalLB release -> webhook gate -> IPAddressPool -> L2Advertisement."""

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
        super().__init__("kindmesh:index:MetalLBPool", name, None, opts)
        check_pool_is_own(plan, cluster)

        self.release = target.helm_release(
            f"{name}-metallb",
            self,
            chart="metallb",
            version=plan.config.metallb.version,
            repo=METALLB_CHART_REPO,
            namespace=METALLB_NAMESPACE,
            create_namespace=True,
            values=metallb_values(plan, cluster),
            timeout=RELEASE_TIMEOUT,
            wait=True,  # no LoadBalancer Services in this chart: Helm's wait is the readiness
            after=after,
        )
        pool = ip_address_pool(plan, cluster)
        adv = l2_advertisement(plan, cluster)
        self.gate = target.gate(
            f"{name}-metallb-webhook",
            self,
            gate="metallb-webhook",
            spec={"cluster": cluster.name, "pool": pool, "timeout": GATE_TIMEOUT},
            triggers=[plan.config.metallb.version],  # another chart version: probe the webhook again
            after=self.release,
        )
        self.pool = custom_resource(f"{name}-pool", pool, target.opts(self, self.gate))
        self.advertisement = custom_resource(f"{name}-l2", adv, target.opts(self, self.pool))
        self.pool_range = pulumi.Output.from_input(cluster.pool)
        self.register_outputs({"pool": self.pool_range})
