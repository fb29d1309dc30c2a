"""MetalLBPool: MetalLB (L2) in one cluster with one address pool.

MetalLB release -> webhook gate -> IPAddressPool -> L2Advertisement. The release only
writes API objects, so it is installed without Helm's wait and without waiting for the CNI
(its pods start once the CNI is up). The webhook gate (its own process, see
``kindmesh.deploy.gates``) waits for what needs the CNI: it waits after ``cni`` (the CNI's
readiness) until MetalLB's controller and speakers are rolled out and the validating
webhook admits a server-side dry-run create of the very pool, so the pool is applied
exactly when the webhook admits it - no fixed sleep.
"""

from __future__ import annotations

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
    ip_address_pool_for,
    l2_advertisement_for,
    metallb_values,
    metallb_workloads,
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

    def __post_init__(self) -> None:
        reject_str(self.addresses, "MetalLBPoolArgs.addresses", f"addresses=[{self.addresses!r}]")
        if not self.addresses:
            raise ValueError("MetalLBPoolArgs.addresses: give at least one range, e.g. 172.30.255.240-172.30.255.254")
        for i, a in enumerate(self.addresses):
            if not isinstance(a, str) or not a:
                raise TypeError(f"MetalLBPoolArgs.addresses[{i}]: expected a 'first-last' range or CIDR string")
        after_list(self.after, "MetalLBPoolArgs.after")
        after_list(self.cni, "MetalLBPoolArgs.cni")


class MetalLBPool(pulumi.ComponentResource):
    """Outputs: ``release``, ``gate``, ``pool``, ``advertisement`` (resources) and
    ``addresses`` (plain)."""

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
        pool = ip_address_pool_for(args.addresses, name=args.pool_name, labels=args.labels)
        adv = l2_advertisement_for(args.pool_name, name=args.advertisement_name, labels=args.labels)
        self.gate = target.gate(
            f"{name}-metallb-webhook",
            self,
            gate="metallb-webhook",
            spec={"cluster": args.cluster_name, "pool": pool, "timeout": args.gate_timeout,
                  "workloads": metallb_workloads(args.values)},
            rerun_on=[args.chart_version],  # another chart version: probe the webhook again
            after=[self.release, *after_list(args.cni, "MetalLBPoolArgs.cni")],
        )
        self.pool = custom_resource(f"{name}-pool", pool, target.opts(self, self.gate))
        self.advertisement = custom_resource(f"{name}-l2", adv, target.opts(self, self.pool))
        self.addresses = list(args.addresses)
        self.register_outputs({"addresses": self.addresses})
