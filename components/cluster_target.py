"""What every in-cluster component needs to place resources into one cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class ClusterTarget:
    """The cluster's explicit Kubernetes provider, its kind resource and its kubeconfig."""

    provider: pulumi.ProviderResource
    # in-cluster resources are deletedWith this; None for an existing cluster (never deleted by us)
    kind_cluster: pulumi.Resource | None
    kubeconfig: pulumi.Input[str]  # secret; for the readiness gates

    def opts(self, parent: pulumi.Resource, *depends: pulumi.Resource | None) -> pulumi.ResourceOptions:
        """Options of a Kubernetes resource in this cluster."""
        return pulumi.ResourceOptions(
            parent=parent, provider=self.provider, deleted_with=self.kind_cluster,
            depends_on=[d for d in depends if d is not None],
        )

    def helm_release(
        self,
        name: str,
        parent: pulumi.Resource,
        *,
        chart: str,
        version: str,
        repo: str,
        namespace: str,
        values: pulumi.Input[dict[str, Any]],
        timeout: int,
        wait: bool,
        after: pulumi.Resource | None,
        create_namespace: bool = False,
    ) -> k8s.helm.v3.Release:
        """A pinned Helm release (embedded Helm, no helm binary) in this cluster."""
        return k8s.helm.v3.Release(
            name,
            k8s.helm.v3.ReleaseArgs(
                name=chart,
                chart=chart,
                version=version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=repo),
                namespace=namespace,
                create_namespace=create_namespace,
                values=values,
                timeout=timeout,
                skip_await=not wait,
                max_history=5,
            ),
            self.opts(parent, after),
        )

    def gate_opts(self, parent: pulumi.Resource, *depends: pulumi.Resource) -> pulumi.ResourceOptions:
        """Options of a readiness gate (a dynamic resource that reads the kubeconfig)."""
        return pulumi.ResourceOptions(
            parent=parent,
            depends_on=[d for d in depends if d is not None],
            deleted_with=self.kind_cluster,
            additional_secret_outputs=["kubeconfig"],
        )


def release_revision(status: object) -> object:
    """The revision in a helm.v3.Release status (typed object or plain dict)."""
    if isinstance(status, dict):
        return status.get("revision")
    return getattr(status, "revision", None)
