"""MetalLBPool: MetalLB (L2) in one cluster with its address pool.

MetalLB release -> webhook gate -> IPAddressPool(s) -> L2Advertisement. The release only
writes API objects, so it is installed without Helm's wait and without waiting for the CNI
(its pods start once the CNI is up). The webhook gate (its own process, see
``kindmesh.deploy.gates``) waits for what needs the CNI: it waits after ``cni`` (the CNI's
readiness) until MetalLB's controller and speakers are rolled out and the validating
webhook admits a server-side dry-run create of the very pool, so the pool is applied
exactly when the webhook admits it - no fixed sleep.

``reserved`` IPs (the planned mesh and Hubble UI IPs) leave the auto-assigned pool for a pool
of their own with ``autoAssign: false``: MetalLB gives them only to a Service that asks for one
of them (``metallb.io/loadBalancerIPs`` / ``spec.loadBalancerIP``), so another LoadBalancer
Service (k3s' traefik, say) cannot take them first. The reserved pool is applied after the
auto-assigned one (on a stack made before it existed, the auto pool first shrinks: two pools
must never overlap).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from kindmesh.components.cluster_target import After, ClusterTarget, after_list, reject_str
from kindmesh.core.config import METALLB_CHART_REPO, METALLB_CHART_VERSION
from kindmesh.core.render import (
    L2_NAME,
    METALLB_NAMESPACE,
    POOL_NAME,
    RESERVED_POOL_NAME,
    ip_address_pool_for,
    l2_advertisement_for,
    metallb_values,
    metallb_workloads,
    pool_contains,
    split_pool,
)

RELEASE_TIMEOUT = 600
GATE_TIMEOUT = 600  # the rollout of controller and speakers (once under Helm's 600 s wait) + the webhook


def custom_resource(name: str, obj: Mapping[str, Any], opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        name, api_version=obj["apiVersion"], kind=obj["kind"], metadata=obj["metadata"],
        spec=obj.get("spec"), opts=opts,
    )


@dataclass
class MetalLBPoolArgs:
    """Inputs of :class:`MetalLBPool`.

    Attributes:
        target: the cluster (provider, kubeconfig for the gate, ``deleted_with``).
        cluster_name: names the cluster in the gate's messages.
        addresses: the pool: ``first-last`` ranges or CIDRs that no other pool or host uses.
        labels: labels of the pool and advertisement objects.
        chart_version / repo / values: the MetalLB chart (default: L2 only, no FRR,
            speakers on control planes too).
        after: what the release waits for (the cluster, and its images loaded:
            ``KindCluster.ready``), one resource or a sequence.
        cni: what the webhook gate waits for besides the release: the CNI's readiness
            (``CiliumRelease.ready``; MetalLB's controller needs the pod network). The release
            does not wait for it.
        gate_timeout: the bound of the webhook gate, seconds.
        pool_name / advertisement_name: the IPAddressPool and L2Advertisement names.
        reserved: IPv4 addresses inside ``addresses`` that no Service gets unless it asks for
            that IP (the planned mesh / Hubble UI IPs): a pool of their own, ``autoAssign: false``.
        reserved_pool_name: the name of that pool.
    """

    target: ClusterTarget
    cluster_name: str
    addresses: Sequence[str]
    labels: Mapping[str, str] = field(default_factory=dict)
    chart_version: str = METALLB_CHART_VERSION
    repo: str = METALLB_CHART_REPO
    values: Mapping[str, Any] = field(default_factory=metallb_values)
    after: After = None
    cni: After = None
    gate_timeout: int = GATE_TIMEOUT
    pool_name: str = POOL_NAME
    advertisement_name: str = L2_NAME
    reserved: Sequence[str] = ()
    reserved_pool_name: str = RESERVED_POOL_NAME

    def __post_init__(self) -> None:
        reject_str(self.addresses, "MetalLBPoolArgs.addresses", f"addresses=[{self.addresses!r}]")
        if not self.addresses:
            raise ValueError("MetalLBPoolArgs.addresses: give at least one range, e.g. 172.30.255.240-172.30.255.254")
        for i, a in enumerate(self.addresses):
            if not isinstance(a, str) or not a:
                raise TypeError(f"MetalLBPoolArgs.addresses[{i}]: expected a 'first-last' range or CIDR string")
        after_list(self.after, "MetalLBPoolArgs.after")
        after_list(self.cni, "MetalLBPoolArgs.cni")
        reject_str(self.reserved, "MetalLBPoolArgs.reserved", f"reserved=[{self.reserved!r}]")
        for i, ip in enumerate(self.reserved):
            try:
                if not isinstance(ip, str) or ipaddress.ip_address(ip).version != 4:
                    raise ValueError
            except ValueError:
                raise ValueError(f"MetalLBPoolArgs.reserved[{i}]: {ip!r} is not an IPv4 address") from None
            if not pool_contains(self.addresses, ip):
                raise ValueError(f"MetalLBPoolArgs.reserved[{i}]: {ip} is not inside addresses {list(self.addresses)}")
        if self.reserved and self.reserved_pool_name == self.pool_name:
            raise ValueError("MetalLBPoolArgs.reserved_pool_name: must differ from pool_name")


class MetalLBPool(pulumi.ComponentResource):
    """Outputs: ``release``, ``gate``, ``pool`` (the auto-assigned pool, or the reserved one when
    every address is reserved), ``reserved_pool`` (None without ``reserved``), ``advertisement``
    (resources) and ``addresses`` (plain)."""

    addresses: list[str]

    def __init__(self, name: str, args: MetalLBPoolArgs, opts: pulumi.ResourceOptions | None = None):
        args.__post_init__()  # again: the args may have been changed since construction
        super().__init__("kindmesh:index:MetalLBPool", name, None, opts)
        target = args.target
        self.release = target.helm_release(
            f"{name}-metallb",
            self,
            chart="metallb",
            version=args.chart_version,
            repo=args.repo,
            namespace=METALLB_NAMESPACE,
            create_namespace=True,
            values=dict(args.values),
            timeout=RELEASE_TIMEOUT,
            wait=False,  # its pods need the CNI: the webhook gate below waits for them
            after=args.after,
        )
        auto, kept = split_pool(args.addresses, args.reserved)
        pools = []  # (resource name, object): the auto-assigned pool first, then the reserved one
        if auto:
            pools.append((f"{name}-pool", ip_address_pool_for(auto, name=args.pool_name, labels=args.labels)))
        if kept:
            pools.append((f"{name}-reserved-pool", ip_address_pool_for(
                kept, name=args.reserved_pool_name, labels=args.labels, auto_assign=False)))
        adv = l2_advertisement_for([obj["metadata"]["name"] for _, obj in pools], name=args.advertisement_name,
                                   labels=args.labels)
        self.gate = target.gate(
            f"{name}-metallb-webhook",
            self,
            gate="metallb-webhook",
            spec={"cluster": args.cluster_name, "pool": pools[0][1], "timeout": args.gate_timeout,
                  "workloads": metallb_workloads(args.values)},
            rerun_on=[args.chart_version],  # another chart version: probe the webhook again
            after=[self.release, *after_list(args.cni, "MetalLBPoolArgs.cni")],
        )
        previous: pulumi.Resource = self.gate
        created = []
        for resource_name, obj in pools:  # one after the other: pools must never overlap, even mid-update
            previous = custom_resource(resource_name, obj, target.opts(self, previous))
            created.append(previous)
        self.pool = created[0]
        self.reserved_pool = created[-1] if kept else None
        self.advertisement = custom_resource(f"{name}-l2", adv, target.opts(self, previous))
        self.addresses = list(args.addresses)
        self.register_outputs({"addresses": self.addresses})
