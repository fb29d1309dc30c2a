"""The stack graph: plan -> components, wired.

    docker provider -> docker network -> (host images) -> KindCluster xN (in parallel)
      -> Kubernetes provider per cluster -> CiliumRelease (+ rollout gate)
      -> MetalLBPool (release -> webhook gate -> pool -> L2 advertisement)
      -> MeshDemo (optional)
    MeshCA and MeshConnection feed every CiliumRelease.

Clusters never wait on each other: every peer's mesh IP is known at plan time, so the
longest chain of slow steps is the same for 2 clusters or 64.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from kindmesh import PACKAGE_HOME
from kindmesh.components.cilium_release import CiliumRelease
from kindmesh.components.cluster_target import ClusterTarget
from kindmesh.components.existing_cluster import ExistingCluster
from kindmesh.components.kind_cluster import HostImages, KindCluster
from kindmesh.components.mesh_ca import MeshCA
from kindmesh.components.mesh_connection import MeshConnection
from kindmesh.components.mesh_demo import MeshDemo
from kindmesh.components.metallb_pool import MetalLBPool
from kindmesh.core.config import ConfigError, decode_raw
from kindmesh.core.demo import verification_spec
from kindmesh.core.planner import ClusterPlan, StackPlan, load_plan
from kindmesh.core.render import STACK_LABEL, cluster_table, mermaid
from kindmesh.stacks.preflight import Preflighted

PROJECT_ROOT = PACKAGE_HOME  # where `python -m kindmesh.…` resolves (the checkout, or site-packages)
DEFAULT_MTU = 1500


@dataclass
class ClusterParts:
    kind: KindCluster | ExistingCluster  # both offer .kubeconfig (secret) and .context
    provider: k8s.Provider
    cilium: CiliumRelease
    metallb: MetalLBPool | None  # None: an existing cluster whose LoadBalancer is not ours
    demo: Any = None


@dataclass
class Stack:
    plan: StackPlan
    network: docker.Network | None  # None when every cluster is an existing one
    ca: MeshCA
    mesh: MeshConnection
    images: HostImages | None
    clusters: dict[str, ClusterParts] = field(default_factory=dict)
    verify: Any = None


def read_raw_config() -> dict[str, Any]:
    """Every ``kindmesh:`` key of the running stack, JSON values decoded."""
    from pulumi.runtime import config as rconfig

    merged: dict[str, Any] = dict(rconfig.get_config_env())
    merged.update(rconfig.CONFIG.get())
    return decode_raw(merged)  # bounded: deep nesting is a ConfigError, never RecursionError


def plan_from_pulumi(raw: Mapping[str, Any] | None = None) -> StackPlan:
    """Plan the running stack; a bad config becomes a clean RunError (no traceback)."""
    try:
        return load_plan(
            raw if raw is not None else read_raw_config(),
            stack=pulumi.get_stack(),
            project=pulumi.get_project(),
        )
    except ConfigError as err:
        raise pulumi.RunError(str(err)) from None


def build(plan: StackPlan, *, preflight: Callable[[StackPlan], object] | None = None) -> Stack:
    """Register the whole stack graph for ``plan``; returns the parts (for tests/outputs)."""
    facts: object = None
    if preflight is not None:
        try:
            checked = preflight(plan)
        except RuntimeError as err:
            raise pulumi.RunError(str(err)) from None
        # a Preflighted result carries the plan with existing clusters' facts resolved
        # (ipam auto) and the host's facts (MTU); a bare HostFacts only the latter
        if isinstance(checked, Preflighted):
            plan, facts = checked.plan, checked.facts
        else:
            facts = checked
    if not any(c.source == "kind" for c in plan.clusters):
        return _build_clusters(plan, None, None)

    docker_provider = docker.Provider("docker")
    options = {"com.docker.network.bridge.enable_ip_masquerade": "true"}
    mtu = getattr(facts, "mtu", 0)  # the daemon's MTU, as kind does (None under mocks: no option)
    if isinstance(mtu, int) and mtu > 0 and mtu != DEFAULT_MTU:
        options["com.docker.network.driver.mtu"] = str(mtu)
    network = docker.Network(
        "network",
        name=plan.network.name,
        driver="bridge",
        ipam_configs=[
            docker.NetworkIpamConfigArgs(
                subnet=plan.network.subnet,
                gateway=plan.network.gateway,
                ip_range=plan.network.node_range,
            )
        ],
        options=options,
        labels=[docker.NetworkLabelArgs(label=STACK_LABEL, value=plan.stack_label)],
        opts=pulumi.ResourceOptions(provider=docker_provider),
    )
    images = None
    if plan.config.kind.prepull and plan.images:
        images = HostImages("host-images", list(plan.images))
    return _build_clusters(plan, network, images)


def _build_clusters(plan: StackPlan, network: docker.Network | None, images: HostImages | None) -> Stack:
    ca = MeshCA("mesh-ca", common_name=f"kindmesh {plan.stack} ClusterMesh CA")
    mesh = MeshConnection("mesh", plan)
    stack = Stack(plan=plan, network=network, ca=ca, mesh=mesh, images=images)

    for cluster in plan.clusters:
        if cluster.source == "existing":
            stack.clusters[cluster.name] = _existing_parts(plan, cluster, ca, mesh)
            continue
        assert network is not None  # kind clusters always get the network
        kind = KindCluster(cluster.name, plan, cluster, network=network, images=images)
        provider = k8s.Provider(
            f"{cluster.name}-k8s",
            kubeconfig=kind.kubeconfig,
            delete_unreachable=True,
            opts=pulumi.ResourceOptions(parent=kind),
        )
        target = ClusterTarget(provider=provider, kind_cluster=kind.cluster, kubeconfig=kind.kubeconfig)
        cilium = CiliumRelease(
            cluster.name,
            plan,
            cluster,
            target=target,
            ca_cert_b64=ca.cert_b64,
            ca_key_b64=ca.key_b64,
            peers=mesh.peers_for(cluster.name),
        )
        metallb = MetalLBPool(cluster.name, plan, cluster, target=target, after=cilium.ready)
        parts = ClusterParts(kind=kind, provider=provider, cilium=cilium, metallb=metallb)
        if plan.config.demo.enabled:
            parts.demo = MeshDemo(cluster.name, plan, cluster, target=target, after=cilium.ready)
        stack.clusters[cluster.name] = parts
    if plan.config.verify.on_up:
        stack.verify = verify_on_up(stack)
    return stack


def _existing_parts(plan: StackPlan, cluster: ClusterPlan, ca: MeshCA, mesh: MeshConnection) -> ClusterParts:
    """An existing cluster: no kind, no docker; nothing in it is deletedWith the cluster."""
    existing = ExistingCluster(cluster.name, cluster)
    target = ClusterTarget(provider=existing.provider, kind_cluster=None, kubeconfig=existing.kubeconfig)
    cilium = CiliumRelease(cluster.name, plan, cluster, target=target, ca_cert_b64=ca.cert_b64,
                           ca_key_b64=ca.key_b64, peers=mesh.peers_for(cluster.name))
    metallb = None
    if cluster.existing is not None and cluster.existing.endpoint == "pool":  # MetalLB is ours
        metallb = MetalLBPool(cluster.name, plan, cluster, target=target, after=cilium.ready)
    parts = ClusterParts(kind=existing, provider=existing.provider, cilium=cilium, metallb=metallb)
    if plan.config.demo.enabled:
        parts.demo = MeshDemo(cluster.name, plan, cluster, target=target, after=cilium.ready)
    return parts


VERIFY_ENV = "KINDMESH_VERIFY_OUTPUTS"


def verify_on_up(stack: Stack) -> command.local.Command:
    """Run the verification as the last step of `pulumi up` (opt-in: verify.onUp)."""
    plan = stack.plan
    last: list[pulumi.Resource] = []
    for parts in stack.clusters.values():
        last += [parts.cilium.ready] + ([parts.metallb.advertisement] if parts.metallb is not None else [])
        if parts.demo is not None:
            last += parts.demo.resources
    # The kubeconfigs are secret outputs, so the payload (and the command's state) is too.
    payload: pulumi.Output[str] = pulumi.Output.all(
        **{n: p.kind.kubeconfig for n, p in stack.clusters.items()}
    ).apply(lambda kubeconfigs: json.dumps({"verification": verification_spec(plan), "kubeconfigs": kubeconfigs}))
    return command.local.Command(
        "verify",
        create=f"{shlex.quote(sys.executable)} -m kindmesh.cli.verify --outputs-env {VERIFY_ENV}",
        update=f"{shlex.quote(sys.executable)} -m kindmesh.cli.verify --outputs-env {VERIFY_ENV}",
        dir=str(PROJECT_ROOT),
        environment={VERIFY_ENV: payload},
        triggers=[p.cilium.revision for p in stack.clusters.values()],
        opts=pulumi.ResourceOptions(depends_on=last),
    )


KUBECONFIG_ENV = "KINDMESH_KUBECONFIG"


def kubeconfig_files(stack: Stack) -> list[command.local.Command]:
    """`.kindmesh/<stack>/kubeconfig` (0600): each cluster added by `pulumi up`, dropped by destroy.

    One command per cluster (so adding/removing a cluster touches no other cluster's
    resource); its context is the cluster's name, plus kind's own context name (see
    kindmesh/deploy/kubeconfig.py). Only the environment (the cluster's kubeconfig) is secret.
    """
    base = f"{shlex.quote(sys.executable)} -m kindmesh.deploy.kubeconfig"
    project = Path.cwd()  # the Pulumi project directory: the program runs there
    commands = []
    for name, parts in stack.clusters.items():
        args = (f"--stack {shlex.quote(stack.plan.stack)} --cluster {shlex.quote(name)} "
                f"--root {shlex.quote(str(project))}")
        commands.append(command.local.Command(
            f"{name}-kubeconfig",
            create=f"{base} add {args}",
            update=f"{base} add {args}",
            delete=f"{base} drop {args}",
            dir=str(PROJECT_ROOT),
            environment={KUBECONFIG_ENV: parts.kind.kubeconfig},
            opts=pulumi.ResourceOptions(parent=parts.kind),
        ))
    pulumi.export("kubeconfigFile", str(project / ".kindmesh" / stack.plan.stack / "kubeconfig"))
    return commands


def export(stack: Stack) -> None:
    plan = stack.plan
    kubeconfig_files(stack)
    if stack.network is not None:
        pulumi.export("network", {"name": plan.network.name, "subnet": plan.network.subnet,
                                  "nodeRange": plan.network.node_range, "poolRegion": plan.network.pool_region})
    pulumi.export("clusters", cluster_table(plan))
    pulumi.export("contexts", {name: parts.kind.context for name, parts in stack.clusters.items()})
    pulumi.export(
        "kubeconfigs",
        pulumi.Output.secret(
            pulumi.Output.all(**{name: parts.kind.kubeconfig for name, parts in stack.clusters.items()})
        ),
    )
    pulumi.export("mesh", {"topology": plan.topology, "links": [str(link) for link in plan.links]})
    pulumi.export("meshPeers", stack.mesh.peers)
    pulumi.export("meshEndpoints", stack.mesh.endpoints)
    pulumi.export("meshSummary", stack.mesh.summaries)
    pulumi.export("hubbleUi", {c.name: stack.clusters[c.name].cilium.hubble_ui_url for c in plan.clusters})
    pulumi.export("mermaid", mermaid(plan))
    pulumi.export("caCertificate", stack.ca.cert_pem)
    pulumi.export("verification", verification_spec(plan))
