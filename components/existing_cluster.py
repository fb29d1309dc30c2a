"""ExistingCluster: a cluster kindmesh did not create, reached through the user's kubeconfig.

Nothing here creates or deletes the cluster. The component holds the (secret) minimal
kubeconfig of the chosen context and the explicit Kubernetes provider built from it:

* ``delete_unreachable=False``: when the cluster cannot be reached, `pulumi destroy` or
  `refresh` fails with the provider's error instead of silently dropping the state of
  what the stack installed there (kind clusters keep the fast path: their cluster is
  deleted with them anyway);
* ``cluster_identifier``: a re-issued kubeconfig (rotated token, new file) updates the
  provider instead of replacing it - replacing would re-create every release in the
  cluster.

It offers the same ``kubeconfig``/``context`` outputs as KindCluster, so the stack
outputs and `make verify` treat both alike.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from kindmesh.core.planner import ClusterPlan


class ExistingCluster(pulumi.ComponentResource):
    kubeconfig: pulumi.Output[str]
    context: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, cluster: ClusterPlan, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kindmesh:index:ExistingCluster", name, None, opts)
        ex = cluster.existing
        if ex is None:
            raise ValueError(f"cluster {cluster.name!r} is not an existing cluster")
        self.kubeconfig = pulumi.Output.secret(ex.kubeconfig)
        self.context = pulumi.Output.from_input(ex.context)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            context=ex.context,
            cluster_identifier=f"kindmesh-existing/{cluster.name}/{ex.api_host}:{ex.api_port}",
            delete_unreachable=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"context": self.context})
