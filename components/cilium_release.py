"""CiliumRelease: Cilium installed by Helm into one cluster, ready for ClusterMesh.

Helm's own ``--wait`` is not used: it also waits for every LoadBalancer Service to get
an ingress IP, and the clustermesh-apiserver's IP comes from MetalLB, which cannot run
before the CNI - a deadlock. Instead a rollout gate waits (watch-based, bounded) for
the Cilium DaemonSets and Deployments to be ready; that gate is :attr:`ready`, the one
dependency everything else in the cluster waits on.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from kindmesh.components.cluster_target import ClusterTarget, release_revision
from kindmesh.core.config import CILIUM_CHART_REPO
from kindmesh.core.planner import ClusterPlan, StackPlan
from kindmesh.core.render import CILIUM_NAMESPACE, cilium_values, cilium_workloads, hubble_ui_url

RELEASE_TIMEOUT = 900
ROLLOUT_TIMEOUT = 900


class CiliumRelease(pulumi.ComponentResource):
    """The Cilium Helm release of one cluster plus its rollout gate."""

    release: k8s.helm.v3.Release
    ready: command.local.Command  # the rollout gate (python -m kindmesh.deploy.gate_cmd rollout)
    status: pulumi.Output[Any]
    revision: pulumi.Output[Any]
    hubble_ui_url: pulumi.Output[str | None]
    mesh_endpoint: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        plan: StackPlan,
        cluster: ClusterPlan,
        *,
        target: ClusterTarget,
        ca_cert_b64: pulumi.Input[str],
        ca_key_b64: pulumi.Input[str],
        peers: list[dict[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("kindmesh:index:CiliumRelease", name, None, opts)
        # Plain values known at plan time; only the CA slots hold Outputs. The key is the one
        # secret (so `pulumi preview --diff` shows everything else, e.g. a new peer, in clear).
        values = cilium_values(plan, cluster, peers, (ca_cert_b64, pulumi.Output.secret(ca_key_b64)))
        self.release = target.helm_release(
            f"{name}-cilium",
            self,
            chart="cilium",
            version=plan.config.cilium.version,
            repo=CILIUM_CHART_REPO,
            namespace=CILIUM_NAMESPACE,
            values=values,
            timeout=RELEASE_TIMEOUT,
            wait=False,  # see the module docstring: readiness is the rollout gate below
            after=target.kind_cluster,
        )
        self.revision = self.release.status.apply(release_revision)
        self.ready = target.gate(
            f"{name}-cilium-rollout",
            self,
            gate="rollout",
            spec={"cluster": cluster.name, "workloads": cilium_workloads(plan), "timeout": ROLLOUT_TIMEOUT},
            triggers=[self.revision],  # a new Helm revision: wait for the rollout again
            after=self.release,
        )
        self.status = self.release.status
        self.hubble_ui_url = pulumi.Output.from_input(hubble_ui_url(cluster))
        self.mesh_endpoint = pulumi.Output.from_input(cluster.mesh_endpoint)
        self.register_outputs(
            {"status": self.status, "hubble_ui_url": self.hubble_ui_url, "mesh_endpoint": self.mesh_endpoint}
        )
