"""The stack graph: plan -> components, wired.

    docker provider -> docker network -> KindCluster xN (in parallel, while the host pulls
      the images) -> image load per cluster (after its cluster and the pull)
      -> Kubernetes provider per cluster -> CiliumRelease (+ rollout gate)
                                         -> MetalLB release (while Cilium rolls out)
      -> MetalLBPool's webhook gate (after the release and Cilium's rollout) -> pools -> L2
      -> LoadBalancer gate (the planned mesh / Hubble UI IPs were assigned)
      -> MeshDemo (optional, after Cilium's rollout)
    MeshCA and MeshConnection feed every CiliumRelease. Every chart waits for its cluster
    and that cluster's image load (KindCluster.ready), so no pod starts before its images
    are in the nodes.

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
from kindmesh.components.cilium_release import CiliumRelease, CiliumReleaseArgs
from kindmesh.components.cluster_target import GATE_RERUN_ENV, ClusterTarget, rerun_json, reverted
from kindmesh.components.existing_cluster import ExistingCluster, ExistingClusterArgs
from kindmesh.components.kind_cluster import (
    HostImages,
    HostImagesArgs,
    KindCluster,
    KindClusterArgs,
    kind_spec,
)
from kindmesh.components.mesh_ca import MeshCA, MeshCAArgs
from kindmesh.components.mesh_connection import MeshConnection, MeshConnectionArgs, MeshMember
from kindmesh.components.mesh_demo import MeshDemo, MeshDemoArgs
from kindmesh.components.metallb_pool import MetalLBPool, MetalLBPoolArgs
from kindmesh.core.config_raw import decode_raw, namespace_problems
from kindmesh.core.demo import manifests, verification_spec
from kindmesh.core.model import ClusterPlan, ConfigError, StackPlan
from kindmesh.core.planner import check_pool_is_own, load_plan
from kindmesh.core.render import (
    STACK_LABEL,
    cilium_values,
    cluster_table,
    hubble_ui_url,
    mermaid,
    node_labels,
    planned_lb_services,
    reserved_ips,
)
from kindmesh.stacks.preflight import MTU_OPTION, Preflighted, planned_mtu

PROJECT_ROOT = PACKAGE_HOME  # where `python -m kindmesh.…` resolves (the checkout, or site-packages)
# The driver options Docker 28+ reports for every bridge network, asked or not (moby
# daemon/network.go: IPv4 on, IPv6 off unless asked). Asking for them explicitly makes the
# state pulumi-docker reads back equal to the configuration on any Docker version.
DOCKER_REPORTED_OPTIONS = {"com.docker.network.enable_ipv4": "true", "com.docker.network.enable_ipv6": "false"}


@dataclass
class ClusterParts:
    kind: KindCluster | ExistingCluster  # both offer .kubeconfig (secret) and .context
    provider: k8s.Provider
    cilium: CiliumRelease
    metallb: MetalLBPool | None  # None: an existing cluster whose LoadBalancer is not ours
    demo: Any = None
    lb_ips: command.local.Command | None = None  # gate: the planned LoadBalancer IPs were assigned


@dataclass
class Stack:
    plan: StackPlan
    network: docker.Network | None  # None when every cluster is an existing one
    ca: MeshCA
    mesh: MeshConnection
    images: HostImages | None
    clusters: dict[str, ClusterParts] = field(default_factory=dict)
    verify: Any = None
    kubeconfig_files: list[command.local.Command] = field(default_factory=list)
    kubeconfig_path: str | None = None


# Python's default GC thresholds (700, 10, 10) make the collector rescan the program's
# growing heap of resources and Outputs over and over: at 64 clusters 45% of evaluation
# time (1.7 of 3.8 s), growing ~N² (bench: 16 -> 64 clusters, GC 0.16 -> 1.73 s). These
# cut evaluation by about a third for +10 MiB peak (measured with bench/bench.py).
GC_THRESHOLD = (50_000, 20, 100)


def tune_gc() -> None:
    """GC thresholds suited to a one-shot program that mostly allocates long-lived objects."""
    import gc

    gc.set_threshold(*GC_THRESHOLD)


def _stack_config() -> dict[str, Any]:
    """Every config key of the running stack (all namespaces), values as Pulumi passes them."""
    from pulumi.runtime import config as rconfig

    merged: dict[str, Any] = dict(rconfig.get_config_env())
    merged.update(rconfig.CONFIG.get())
    return merged


def read_raw_config() -> dict[str, Any]:
    """Every ``kindmesh:`` key of the running stack, JSON values decoded."""
    return decode_raw(_stack_config())  # bounded: deep nesting is a ConfigError, never RecursionError


def plan_from_pulumi(raw: Mapping[str, Any] | None = None) -> StackPlan:
    """Plan the running stack; a bad config becomes a clean RunError (no traceback). A key in a
    near miss of the ``kindmesh:`` namespace (``kindmsh:demo``) is one of the problems."""
    problems = namespace_problems(_stack_config()) if raw is None else []
    raw = raw if raw is not None else read_raw_config()
    try:
        plan = load_plan(raw, stack=pulumi.get_stack(), project=pulumi.get_project(),
                         kind_version=detect_kind_version(raw))
    except ConfigError as err:
        problems += err.problems
    if problems:
        raise pulumi.RunError(str(ConfigError(problems))) from None
    for warning in plan.warnings:
        pulumi.log.warn(f"kindmesh: {warning}")
    return plan


def detect_kind_version(raw: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """The installed kind release (`kind version`) when the stack has kind clusters and runs on
    a real engine; None otherwise (the plan then uses the catalogue's default node image).
    A missing or broken kind is reported by the host preflight, with the fix."""
    from kindmesh.stacks import preflight

    clusters = raw.get("clusters")
    has_kind = not isinstance(clusters, list) or any(
        not isinstance(c, Mapping) or c.get("source", "kind") != "existing" for c in clusters)
    if not has_kind or preflight.under_pulumi_mocks():
        return None
    return preflight.installed_kind_version()


def build(
    plan: StackPlan,
    *,
    preflight: Callable[[StackPlan], object] | None = None,
    parent: pulumi.Resource | None = None,
    prefix: str = "",
    kubeconfig_file: bool = True,
) -> Stack:
    """Register the whole stack graph for ``plan``; returns the parts (for tests/outputs).

    ``parent``/``prefix`` place the graph under a component (``Mesh``) with names that do
    not collide with another mesh of the same program.
    """
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
    for cluster in plan.clusters:
        if cluster.source == "kind" or (cluster.existing is not None and cluster.existing.endpoint == "pool"):
            check_pool_is_own(plan, cluster)
    wire = _Wiring(plan, parent, prefix)
    network = images = None
    if any(c.source == "kind" for c in plan.clusters):
        network, images = wire.host(facts)
    stack = wire.clusters(network, images)
    if kubeconfig_file:
        stack.kubeconfig_files = kubeconfig_files(stack, prefix)
    if plan.config.verify.on_up:
        stack.verify = verify_on_up(stack, wire.opts(), prefix)
    return stack


def kind_cluster_args(plan: StackPlan, cluster: ClusterPlan, after: list[pulumi.Resource],
                      images_after: list[pulumi.Resource] | None = None) -> KindClusterArgs:
    return KindClusterArgs(
        kind_name=cluster.kind_name,
        network=plan.network.name,
        pod_subnet=cluster.pod_subnet,
        service_subnet=cluster.service_subnet,
        workers=cluster.workers,
        node_image=plan.node_image,
        images=list(plan.images_for(cluster)) if plan.config.kind.prepull else [],
        labels=node_labels(plan, cluster),
        after=after,
        images_after=images_after or [],
    )


def cluster_inputs(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    """The spec kindctl gets for a planned kind cluster."""
    return kind_spec(kind_cluster_args(plan, cluster, []))


def mesh_members(plan: StackPlan) -> MeshConnectionArgs:
    """The planner's mesh as MeshConnection's args (members in plan order: by id)."""
    return MeshConnectionArgs(
        members=[MeshMember(c.name, list(c.mesh_ips or (c.mesh_ip,)), c.mesh_port, c.id) for c in plan.clusters],
        links=[(link.a, link.b) for link in plan.links],
        topology=plan.topology,
    )


class _Wiring:
    """Plan -> component args, one cluster at a time (names prefixed, all under ``parent``)."""

    def __init__(self, plan: StackPlan, parent: pulumi.Resource | None, prefix: str):
        self.plan, self.parent, self.prefix = plan, parent, prefix

    def opts(self, **kw: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self.parent, **kw)

    def host(self, facts: object) -> tuple[docker.Network, HostImages | None]:
        plan, n = self.plan, self.prefix
        docker_provider = docker.Provider(f"{n}docker", opts=self.opts())
        old_defect = reverted("network-options")  # the engine tier's proof that it catches it
        options = {"com.docker.network.bridge.enable_ip_masquerade": "true",
                   **({} if old_defect else DOCKER_REPORTED_OPTIONS)}
        mtu = getattr(facts, "mtu", 0)  # the daemon's MTU, as kind does (None under mocks: no option)
        mtu_option = planned_mtu(mtu) if isinstance(mtu, int) else None
        if mtu_option is not None:
            options[MTU_OPTION] = mtu_option
        network = docker.Network(
            f"{n}network",
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
            # Every field of the network forces a replace (pulumi-docker), and `options` is also
            # computed: whatever else a daemon reports (its default-network-opts) must not
            # replace a network the kind nodes are attached to. Live changes the network cannot
            # take (subnet, MTU) are refused before anything is registered instead.
            opts=self.opts(provider=docker_provider, ignore_changes=[] if old_defect else ["options"]),
        )
        images = None
        if plan.config.kind.prepull and plan.images:
            images = HostImages(f"{n}host-images", HostImagesArgs(images=list(plan.images)), opts=self.opts())
        return network, images

    def clusters(self, network: docker.Network | None, images: HostImages | None) -> Stack:
        plan, n = self.plan, self.prefix
        ca = MeshCA(f"{n}mesh-ca", MeshCAArgs(common_name=f"kindmesh {plan.stack} ClusterMesh CA"), opts=self.opts())
        mesh = MeshConnection(f"{n}mesh", mesh_members(plan), opts=self.opts())
        stack = Stack(plan=plan, network=network, ca=ca, mesh=mesh, images=images)
        for cluster in plan.clusters:
            stack.clusters[cluster.name] = self.cluster(cluster, network, images, ca, mesh)
        return stack

    def cluster(self, cluster: ClusterPlan, network: docker.Network | None, images: HostImages | None,
                ca: MeshCA, mesh: MeshConnection) -> ClusterParts:
        plan, name = self.plan, f"{self.prefix}{cluster.name}"
        access: KindCluster | ExistingCluster
        charts_after: list[pulumi.Resource]
        if cluster.source == "existing":
            # no kind, no docker; nothing in it is deletedWith the cluster (destroy deletes our objects)
            ex = cluster.existing
            assert ex is not None
            access = ExistingCluster(name, ExistingClusterArgs(
                kubeconfig=ex.kubeconfig, context=ex.context,
                cluster_identifier=f"kindmesh-existing/{cluster.name}/{ex.api_host}:{ex.api_port}",
            ), opts=self.opts())
            provider = access.provider
            target = ClusterTarget(provider=provider, kubeconfig=access.kubeconfig)
            with_metallb = ex.endpoint == "pool"  # else the LoadBalancer (or NodePort) is not ours
            charts_after = []
        else:
            assert network is not None  # kind clusters always get the network
            # the create waits for the network only; the image load for the cluster and the pull
            pulled: list[pulumi.Resource] = [images] if images is not None else []
            access = KindCluster(name, kind_cluster_args(plan, cluster, [network], pulled), opts=self.opts())
            charts_after = access.ready
            provider = k8s.Provider(
                f"{name}-k8s",
                kubeconfig=access.kubeconfig,
                delete_unreachable=True,
                opts=pulumi.ResourceOptions(parent=access),
            )
            target = ClusterTarget(provider=provider, kubeconfig=access.kubeconfig, deleted_with=access.cluster)
            with_metallb = True
        cilium = CiliumRelease(name, CiliumReleaseArgs(
            target=target,
            cluster_name=cluster.name,
            cluster_id=cluster.id,
            values=cilium_values(plan, cluster),
            peers=mesh.peers_for(cluster.name),
            ca_cert_b64=ca.cert_b64,
            ca_key_b64=ca.key_b64,
            chart_version=plan.cilium_version(cluster),
            repo=plan.config.charts.cilium,
            after=charts_after or None,
            rollout_timeout=plan.config.timeouts.rollout,
        ), opts=self.opts())
        metallb = None
        if with_metallb:
            metallb = MetalLBPool(name, MetalLBPoolArgs(
                target=target,
                cluster_name=cluster.name,
                addresses=[cluster.pool],
                reserved=reserved_ips(cluster),  # the planned IPs: never auto-assigned to another Service
                labels=node_labels(plan, cluster),
                chart_version=plan.config.metallb.version,
                repo=plan.config.charts.metallb,
                after=charts_after or None,
                cni=cilium.ready,  # only the webhook gate waits for Cilium's rollout
                gate_timeout=plan.config.timeouts.webhook,
            ), opts=self.opts())
        parts = ClusterParts(kind=access, provider=provider, cilium=cilium, metallb=metallb)
        services = planned_lb_services(cilium.values)
        if services:  # `up` fails unless the mesh (and Hubble UI) got the IPs the peers were given
            parts.lb_ips = target.gate(
                f"{name}-lb-ips", self.parent, gate="loadbalancer",
                spec={"cluster": cluster.name, "services": services, "timeout": plan.config.timeouts.load_balancer},
                rerun_on=[cilium.revision], after=[cilium.ready] + ([metallb] if metallb is not None else []),
            )
        if plan.config.demo.enabled:
            parts.demo = MeshDemo(name, MeshDemoArgs(
                target=target, manifests=manifests(plan, cluster), after=cilium.ready,
            ), opts=self.opts())
        return parts


VERIFY_ENV = "KINDMESH_VERIFY_OUTPUTS"


def verify_on_up(stack: Stack, opts: pulumi.ResourceOptions | None = None, prefix: str = "") -> command.local.Command:
    """Run the verification as the last step of `pulumi up` (opt-in: verify.onUp)."""
    plan = stack.plan
    last: list[pulumi.Resource] = []
    for parts in stack.clusters.values():
        last += [parts.cilium.ready] + ([parts.metallb.advertisement] if parts.metallb is not None else [])
        last += [parts.lb_ips] if parts.lb_ips is not None else []
        if parts.demo is not None:
            last += parts.demo.resources
    # The kubeconfigs are secret outputs, so the payload (and the command's state) is too.
    payload: pulumi.Output[str] = pulumi.Output.all(
        **{n: p.kind.kubeconfig for n, p in stack.clusters.items()}
    ).apply(lambda kubeconfigs: json.dumps({"verification": verification_spec(plan), "kubeconfigs": kubeconfigs}))
    return command.local.Command(
        f"{prefix}verify",
        create=f"{shlex.quote(sys.executable)} -m kindmesh.cli.verify --outputs-env {VERIFY_ENV}",
        update=f"{shlex.quote(sys.executable)} -m kindmesh.cli.verify --outputs-env {VERIFY_ENV}",
        dir=str(PROJECT_ROOT),
        # new Helm revisions: verify again (an update of this command, never a replace)
        environment={VERIFY_ENV: payload, GATE_RERUN_ENV: rerun_json([p.cilium.revision for p in stack.clusters.values()])},
        opts=pulumi.ResourceOptions.merge(opts or pulumi.ResourceOptions(), pulumi.ResourceOptions(depends_on=last)),
    )


KUBECONFIG_ENV = "KINDMESH_KUBECONFIG"


def kubeconfig_files(stack: Stack, prefix: str = "") -> list[command.local.Command]:
    """`.kindmesh/<stack>/kubeconfig` (0600): each cluster added by `pulumi up`, dropped by destroy.

    One command per cluster (so adding/removing a cluster touches no other cluster's
    resource); its context is the cluster's name, plus kind's own context name (see
    kindmesh/deploy/context_file.py). Only the environment (the cluster's kubeconfig) is secret.
    """
    base = f"{shlex.quote(sys.executable)} -m kindmesh.deploy.context_file"
    project = Path.cwd()  # the Pulumi project directory: the program runs there
    commands = []
    for name, parts in stack.clusters.items():
        args = (f"--stack {shlex.quote(stack.plan.stack)} --cluster {shlex.quote(name)} "
                f"--root {shlex.quote(str(project))}")
        commands.append(command.local.Command(
            f"{prefix}{name}-kubeconfig",
            create=f"{base} add {args}",
            update=f"{base} add {args}",
            delete=f"{base} drop {args}",
            dir=str(PROJECT_ROOT),
            environment={KUBECONFIG_ENV: parts.kind.kubeconfig},
            opts=pulumi.ResourceOptions(parent=parts.kind),
        ))
    stack.kubeconfig_path = str(project / ".kindmesh" / stack.plan.stack / "kubeconfig")
    return commands


def outputs(stack: Stack) -> dict[str, Any]:
    """The stack's outputs: plain plan data, plus the few real Outputs (kubeconfigs: secret)."""
    plan = stack.plan
    out: dict[str, Any] = {}
    if stack.kubeconfig_path is not None:
        out["kubeconfigFile"] = stack.kubeconfig_path
    if stack.network is not None:
        out["network"] = {"name": plan.network.name, "subnet": plan.network.subnet,
                          "nodeRange": plan.network.node_range, "poolRegion": plan.network.pool_region}
    out["clusters"] = cluster_table(plan)
    out["contexts"] = {name: parts.kind.context for name, parts in stack.clusters.items()}
    out["kubeconfigs"] = pulumi.Output.secret(
        pulumi.Output.all(**{name: parts.kind.kubeconfig for name, parts in stack.clusters.items()})
    )
    out["mesh"] = {"topology": plan.topology, "links": [str(link) for link in plan.links]}
    out["meshPeers"] = stack.mesh.peers
    out["meshEndpoints"] = stack.mesh.endpoints
    out["meshSummary"] = stack.mesh.summaries
    out["hubbleUi"] = {c.name: hubble_ui_url(c) for c in plan.clusters}
    out["mermaid"] = mermaid(plan)
    out["caCertificate"] = stack.ca.cert_pem
    out["verification"] = verification_spec(plan)
    return out


def export(stack: Stack) -> None:
    for key, value in outputs(stack).items():
        pulumi.export(key, value)
