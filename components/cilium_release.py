"""CiliumRelease: Cilium installed by Helm into one cluster, ready for ClusterMesh.

Helm's own ``--wait`` is not used: it also waits for every LoadBalancer Service to get
an ingress IP, and the clustermesh-apiserver's IP comes from MetalLB, which cannot run
before the CNI - a deadlock. Instead a rollout gate waits (watch-based, bounded) for
the Cilium DaemonSets and Deployments to be ready; that gate is :attr:`ready`, the one
dependency everything else in the cluster waits on.

Usage (any Pulumi program)::

    cilium = CiliumRelease("us", CiliumReleaseArgs(
        target=ClusterTarget(provider=k8s_provider, kubeconfig=kubeconfig),
        cluster_name="us", cluster_id=1,
        values={"kubeProxyReplacement": True, "k8sServiceHost": "us-control-plane", "k8sServicePort": 6443},
        peers=mesh.peers_for("us"), ca_cert_b64=ca.cert_b64, ca_key_b64=ca.key_b64))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from kindmesh.components.cluster_target import After, ClusterTarget, after_list, check_int, release_revision
from kindmesh.core.config import (
    CILIUM_CHART_REPO,
    CILIUM_CHART_VERSION,
    CLUSTER_ID_MAX,
    CLUSTER_ID_MIN,
    validate_cluster_name,
)
from kindmesh.core.render import CILIUM_NAMESPACE, mesh_values, overlay, rollout_workloads

RELEASE_TIMEOUT = 900
ROLLOUT_TIMEOUT = 900


@dataclass
class CiliumReleaseArgs:
    """Inputs of :class:`CiliumRelease`.

    Attributes:
        target: the cluster (provider, kubeconfig for the gate, ``deleted_with``).
        cluster_name: Cilium ``cluster.name`` (DNS label, ≤ 32 characters, not ``default``).
        cluster_id: Cilium ``cluster.id``, 1..255, unique in the mesh.
        values: Helm values of the cluster (``k8sServiceHost``, ``kubeProxyReplacement``,
            ``clustermesh.apiserver.service``, hubble…; ``kindmesh.core.render.cilium_values``
            renders kindmesh's). The identity, ``clustermesh.config`` and ``tls.ca`` are
            always set from the fields below, over anything given here.
        peers: ``clustermesh.config.clusters`` entries ``{name, port, ips}`` of the peers
            (``MeshConnection.peers_for``).
        ca_cert_b64 / ca_key_b64: the mesh's shared CA, base64 PEM (``MeshCA``); the key is
            made secret, and is the only secret of the release's inputs.
        chart_version / repo: the Cilium chart.
        after: what the release waits for, one resource or a sequence (default:
            ``target.deleted_with``, the kind cluster).
        rollout_timeout: the bound of the rollout gate, seconds.

    Validated on construction (``ValueError``/``TypeError`` naming the field): values and
    peers must be plain data known at plan time; peers need the shared CA.
    """

    target: ClusterTarget
    cluster_name: str
    cluster_id: int
    values: Mapping[str, Any] = field(default_factory=dict)
    peers: Sequence[Mapping[str, Any]] = ()
    ca_cert_b64: pulumi.Input[str] | None = None
    ca_key_b64: pulumi.Input[str] | None = None
    chart_version: str = CILIUM_CHART_VERSION
    repo: str = CILIUM_CHART_REPO
    after: After = None
    rollout_timeout: int = ROLLOUT_TIMEOUT

    def __post_init__(self) -> None:
        _check(self)


def _check_peers(args: CiliumReleaseArgs) -> None:
    field_ = "CiliumReleaseArgs.peers"
    if isinstance(args.peers, pulumi.Output):
        raise TypeError(f"{field_}: an Output; pass plain entries known at plan time (MeshConnection.peers_for)")
    if isinstance(args.peers, (str, bytes, Mapping)) or not isinstance(args.peers, Sequence):
        raise TypeError(f"{field_}: expected a list of {{name, port, ips}} mappings, got {type(args.peers).__name__}; "
                        "use MeshConnection.peers_for(cluster)")
    for i, peer in enumerate(args.peers):
        if not isinstance(peer, Mapping):
            raise TypeError(f"{field_}[{i}]: expected a mapping {{name, port, ips}}, got {type(peer).__name__}")
        missing = [k for k in ("name", "port", "ips") if k not in peer]
        if missing:
            raise ValueError(f"{field_}[{i}]: missing {', '.join(missing)}; each peer is {{name, port, ips}}")
        if peer["name"] == args.cluster_name:
            raise ValueError(f"{field_}[{i}]: {peer['name']!r} is this cluster itself; a cluster is not its own peer")
    if args.peers and args.ca_cert_b64 is None:
        raise ValueError(
            f"{field_}: peers need the mesh's shared CA (ca_cert_b64/ca_key_b64, e.g. from MeshCA): "
            "without it each chart makes its own CA and the clusters cannot connect")


def _check(args: CiliumReleaseArgs) -> None:
    if not isinstance(args.cluster_name, str):
        raise TypeError(f"CiliumReleaseArgs.cluster_name: expected a str, got {type(args.cluster_name).__name__}")
    problem = validate_cluster_name(args.cluster_name)
    if problem:
        raise ValueError(f"CiliumReleaseArgs.cluster_name: {problem}")
    check_int(args.cluster_id, "CiliumReleaseArgs.cluster_id", CLUSTER_ID_MIN, CLUSTER_ID_MAX)
    if isinstance(args.values, pulumi.Output) or not isinstance(args.values, Mapping):
        raise TypeError(
            f"CiliumReleaseArgs.values: expected a plain mapping, got {type(args.values).__name__}; values must "
            "be plain data known at plan time (render them with kindmesh.core.render.kind_cilium_values), "
            "not an Output")
    if (args.ca_cert_b64 is None) != (args.ca_key_b64 is None):
        raise ValueError("CiliumReleaseArgs: give both ca_cert_b64 and ca_key_b64 (the mesh's shared CA), or neither")
    _check_peers(args)
    check_int(args.rollout_timeout, "CiliumReleaseArgs.rollout_timeout", 1)
    after_list(args.after, "CiliumReleaseArgs.after")


class CiliumRelease(pulumi.ComponentResource):
    """The Cilium Helm release of one cluster plus its rollout gate.

    Outputs: ``release`` (the helm.v3.Release), ``ready`` (the rollout gate: make
    everything else in the cluster depend on it), ``status``, ``revision``, ``values``
    (the values given to Helm; plain except the CA slots).
    """

    release: k8s.helm.v3.Release
    ready: command.local.Command  # the rollout gate (python -m kindmesh.deploy.gate_cmd rollout)
    status: pulumi.Output[Any]
    revision: pulumi.Output[Any]
    values: dict[str, Any]

    def __init__(self, name: str, args: CiliumReleaseArgs, opts: pulumi.ResourceOptions | None = None):
        _check(args)  # again: the args may have been changed since construction
        super().__init__("kindmesh:index:CiliumRelease", name, None, opts)
        ca = None
        if args.ca_cert_b64 is not None and args.ca_key_b64 is not None:
            ca = (args.ca_cert_b64, pulumi.Output.secret(args.ca_key_b64))
        # Plain values known at plan time; only the CA slots hold Outputs. The key is the one
        # secret (so `pulumi preview --diff` shows everything else, e.g. a new peer, in clear).
        self.values = overlay(args.values, mesh_values(args.cluster_name, args.cluster_id, args.peers, ca))
        target = args.target
        self.release = target.helm_release(
            f"{name}-cilium",
            self,
            chart="cilium",
            version=args.chart_version,
            repo=args.repo,
            namespace=CILIUM_NAMESPACE,
            values=self.values,
            timeout=RELEASE_TIMEOUT,
            wait=False,  # see the module docstring: readiness is the rollout gate below
            after=args.after if after_list(args.after, "CiliumReleaseArgs.after") else target.deleted_with,
        )
        self.revision = self.release.status.apply(release_revision)
        workloads = rollout_workloads(self.values)
        self.ready = target.gate(
            f"{name}-cilium-rollout",
            self,
            gate="rollout",
            spec={"cluster": args.cluster_name, "workloads": workloads, "timeout": args.rollout_timeout},
            rerun_on=[self.revision],  # a new Helm revision: wait for the rollout again
            after=self.release,
        )
        self.status = self.release.status
        self.register_outputs({"status": self.status, "revision": self.revision})
