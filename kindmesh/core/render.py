"""Pure renderers: plan -> kind config, Helm values, Kubernetes manifests.

No ``pulumi`` import: components call these and wrap the results in resources, so
everything a user could diff is testable (and byte-stable) without Pulumi.
"""

from __future__ import annotations

from typing import Any

import yaml

from kindmesh.core.existing import existing_cilium_values, table_extras, with_extras
from kindmesh.core.images import cilium_image_set
from kindmesh.core.planner import ClusterPlan, StackPlan

KIND_API_VERSION = "kind.x-k8s.io/v1alpha4"
METALLB_NAMESPACE = "metallb-system"
CILIUM_NAMESPACE = "kube-system"
POOL_NAME = "kindmesh-pool"
L2_NAME = "kindmesh-l2"
MESH_LB_ANNOTATION = "metallb.io/loadBalancerIPs"
STACK_LABEL = "kindmesh.io/stack"
CLUSTER_LABEL = "kindmesh.io/cluster"


# --------------------------------------------------------------------------- kind
def kind_config(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    """kind v1alpha4 Cluster config (only keys kind's strict decoder knows)."""
    image = plan.config.kind.node_image
    labels = {STACK_LABEL: plan.stack_label, CLUSTER_LABEL: cluster.name}
    nodes: list[dict[str, Any]] = [{"role": "control-plane", "image": image, "labels": dict(labels)}]
    nodes += [{"role": "worker", "image": image, "labels": dict(labels)} for _ in range(cluster.workers)]
    return {
        "kind": "Cluster",
        "apiVersion": KIND_API_VERSION,
        "name": cluster.kind_name,
        "networking": {
            "disableDefaultCNI": True,
            "kubeProxyMode": "none",
            "podSubnet": cluster.pod_subnet,
            "serviceSubnet": cluster.service_subnet,
        },
        "nodes": nodes,
    }


def kind_config_yaml(plan: StackPlan, cluster: ClusterPlan) -> str:
    return yaml.safe_dump(kind_config(plan, cluster), sort_keys=True, default_flow_style=False)


# --------------------------------------------------------------------------- cilium
def _image(key: str, prepull: bool, version: str) -> dict[str, Any]:
    """Image values: tag references when pre-loaded (the loaded copy has no registry digest)."""
    values: dict[str, Any] = {"pullPolicy": "IfNotPresent"}
    if prepull and cilium_image_set(version):
        values["useDigest"] = False
    return values


def cilium_values(
    plan: StackPlan,
    cluster: ClusterPlan,
    peers: list[dict[str, Any]] | None = None,
    ca: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Helm values for Cilium in one cluster.

    ``peers`` is the ``clustermesh.config.clusters`` list (from MeshConnection);
    ``ca`` is ``(cert_b64, key_b64)`` of the stack's shared CA, placed as given (the
    composition passes Outputs there: the one place of the values that is not plain).
    """
    cfg = plan.config.cilium
    pre = plan.config.kind.prepull and cluster.source == "kind"  # images are loaded into kind nodes only
    ver = cfg.version
    values: dict[str, Any] = {
        "cluster": {"name": cluster.name, "id": cluster.id},
        "kubeProxyReplacement": True,
        "k8sServiceHost": cluster.control_plane,
        "k8sServicePort": 6443,
        "ipam": {"mode": "kubernetes"},
        # one datapath for every cluster of the mesh
        "routingMode": "tunnel",
        "tunnelProtocol": "vxlan",
        "image": _image("agent", pre, ver),
        "operator": {"replicas": 1, "image": _image("operator", pre, ver)},
        "envoy": {"image": _image("envoy", pre, ver)},
        "clustermesh": {
            "useAPIServer": True,
            "apiserver": {
                "image": _image("clustermesh", pre, ver),
                "replicas": 1,
                "service": {"type": "LoadBalancer", "loadBalancerIP": cluster.mesh_ip},
                "tls": {"auto": {"enabled": True, "method": "helm"}},
            },
            "config": {"enabled": True, "clusters": list(peers or [])},
        },
        "hubble": {
            "enabled": cfg.hubble,
            "tls": {"auto": {"enabled": True, "method": "helm"}},
            "relay": {"enabled": cfg.hubble, "image": _image("relay", pre, ver)},
            "ui": {"enabled": cfg.hubble_ui},
        },
    }
    if cfg.hubble_ui:
        values["hubble"]["ui"].update(
            {
                "service": {
                    "type": "LoadBalancer",
                    "annotations": {MESH_LB_ANNOTATION: cluster.hubble_ui_ip},
                },
                "frontend": {"image": _image("ui", pre, ver)},
                "backend": {"image": _image("ui-backend", pre, ver)},
            }
        )
    if cfg.encryption == "wireguard":
        values["encryption"] = {"enabled": True, "type": "wireguard"}
    if ca is not None:
        values["tls"] = {"ca": {"cert": ca[0], "key": ca[1]}}
    if cluster.existing is not None:
        existing_cilium_values(plan, cluster, values)
    return with_extras(plan, cluster, values)


def hubble_ui_url(cluster: ClusterPlan) -> str | None:
    return f"http://{cluster.hubble_ui_ip}" if cluster.hubble_ui_ip else None


# --------------------------------------------------------------------------- metallb
def metallb_values(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    """MetalLB chart values: L2 only (no FRR), speakers on every node."""
    del plan, cluster  # the same values everywhere; kept for symmetry with cilium_values
    return {
        "speaker": {
            "frr": {"enabled": False},
            # kind labels control-plane nodes node.kubernetes.io/exclude-from-external-load-balancers;
            # control-plane-only clusters must still announce their pool.
            "ignoreExcludeLB": True,
        },
    }


def _metallb_object(plan: StackPlan, cluster: ClusterPlan, kind: str, name: str,
                    spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": METALLB_NAMESPACE,
            "labels": {STACK_LABEL: plan.stack_label, CLUSTER_LABEL: cluster.name},
        },
        "spec": spec,
    }


def ip_address_pool(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    return _metallb_object(plan, cluster, "IPAddressPool", POOL_NAME,
                           {"addresses": [cluster.pool], "autoAssign": True})


def l2_advertisement(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    return _metallb_object(plan, cluster, "L2Advertisement", L2_NAME, {"ipAddressPools": [POOL_NAME]})


# --------------------------------------------------------------------------- outputs
def mermaid(plan: StackPlan) -> str:
    """Mermaid flowchart of the mesh: one node per cluster, one edge per link."""
    lines = ["graph LR"]
    for c in plan.clusters:
        role = " (hub)" if plan.hub == c.name else ""
        lines.append(f'  {_mid(c.name)}["{c.name}{role}<br/>id {c.id} · mesh {c.mesh_ip}"]')
    for link in plan.links:
        lines.append(f"  {_mid(link.a)} <-->|clustermesh| {_mid(link.b)}")
    return "\n".join(lines)


def _mid(name: str) -> str:
    return "c_" + name.replace("-", "_")


def cluster_table(plan: StackPlan) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "id": c.id,
            "kindName": c.kind_name or None,
            "context": c.context,
            "podSubnet": c.pod_subnet,
            "serviceSubnet": c.service_subnet,
            "pool": c.pool if c.pool_first else None,
            "meshIp": c.mesh_ip,
            "hubbleUi": hubble_ui_url(c),
            "peers": list(c.peers),
            **table_extras(c),
        }
        for c in plan.clusters
    ]


def cilium_workloads(plan: StackPlan) -> list[dict[str, Any]]:
    """What must be rolled out before anything else may run in the cluster."""
    ns = CILIUM_NAMESPACE
    items: list[dict[str, Any]] = [
        {"kind": "DaemonSet", "namespace": ns, "name": "cilium", "optional": False},
        {"kind": "DaemonSet", "namespace": ns, "name": "cilium-envoy", "optional": True},
        {"kind": "Deployment", "namespace": ns, "name": "cilium-operator", "optional": False},
        {"kind": "Deployment", "namespace": ns, "name": "clustermesh-apiserver", "optional": False},
    ]
    if plan.config.cilium.hubble:
        items.append({"kind": "Deployment", "namespace": ns, "name": "hubble-relay", "optional": False})
    if plan.config.cilium.hubble_ui:
        items.append({"kind": "Deployment", "namespace": ns, "name": "hubble-ui", "optional": False})
    return items
