"""ExistingCluster: a cluster kindmesh did not create, reached through the user's kubeconfig.

Nothing here creates or deletes the cluster. The component holds the (secret) kubeconfig
and the explicit Kubernetes provider built from it:

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

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s


@dataclass
class ExistingClusterArgs:
    """Inputs of :class:`ExistingCluster`.

    Attributes:
        kubeconfig: the kubeconfig's content (made secret).
        cluster_identifier: a stable name of the cluster (e.g. ``<name>/<api host:port>``):
            a new kubeconfig for the same cluster then updates the provider, not replaces it.
        context: the context to use; the kubeconfig's current context when ``None``.
    """

    kubeconfig: pulumi.Input[str]
    cluster_identifier: str
    context: str | None = None


class ExistingCluster(pulumi.ComponentResource):
    kubeconfig: pulumi.Output[str]
    context: pulumi.Output[str | None]
    provider: k8s.Provider

    def __init__(self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kindmesh:index:ExistingCluster", name, None, opts)
        self.kubeconfig = pulumi.Output.secret(args.kubeconfig)
        self.context = pulumi.Output.from_input(args.context)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            context=args.context,
            cluster_identifier=args.cluster_identifier,
            delete_unreachable=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"context": self.context})
