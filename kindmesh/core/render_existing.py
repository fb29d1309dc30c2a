"""Rendering what is not the same for every cluster: existing clusters' Cilium values, the extras.

:func:`existing_cilium_values` adjusts the generated values of an existing cluster (its API
server, IPAM, the clustermesh-apiserver Service as NodePort or LoadBalancer, the stack label);
:func:`with_extras` lays Hubble metrics and the extra values (``cilium.values``, then
``clusters[].cilium.values``) over every cluster's values, Helm-style, each written where the
cluster's Cilium version reads it. :func:`table_extras` are the existing cluster's columns
of the clusters output.

Pure module: no ``pulumi`` import.

May import: model, versions.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kindmesh.core.model import STACK_LABEL, ClusterPlan, StackPlan
from kindmesh.core.versions import adapt_values

CLUSTER_POOL_MASK = 24  # per-node pod CIDR size with ipam cluster-pool


def existing_cilium_values(plan: StackPlan, cluster: ClusterPlan, values: dict[str, Any]) -> None:
    """Adjust the generated Cilium values of an existing cluster in place."""
    ex = cluster.existing
    if ex is None:
        return
    values["k8sServiceHost"] = ex.api_host
    values["k8sServicePort"] = ex.api_port
    if ex.ipam == "kubernetes":
        values["ipam"] = {"mode": "kubernetes"}
    else:
        values["ipam"] = {"mode": "cluster-pool", "operator": {
            "clusterPoolIPv4PodCIDRList": [cluster.pod_subnet], "clusterPoolIPv4MaskSize": CLUSTER_POOL_MASK}}
    service: dict[str, Any]
    if ex.endpoint == "nodePort":
        service = {"type": "NodePort", "nodePort": ex.node_port}
    else:
        service = {"type": "LoadBalancer", "loadBalancerIP": cluster.mesh_ip}
    values["clustermesh"]["apiserver"]["service"] = service
    ui = values["hubble"]["ui"]
    if "service" in ui and cluster.hubble_ui_ip is None:  # no pool of ours: no fixed UI address
        ui["service"] = {"type": "LoadBalancer" if ex.endpoint == "ip" else "ClusterIP"}
    values["commonLabels"] = {STACK_LABEL: plan.stack_label}


def merge_values(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Helm-style coalescing: mappings merge, anything else replaces."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge_values(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def with_extras(plan: StackPlan, cluster: ClusterPlan, values: dict[str, Any]) -> dict[str, Any]:
    """Hubble metrics, then ``cilium.values``, then ``clusters[].cilium.values`` over ``values``."""
    cfg = plan.config.cilium
    if cfg.hubble_metrics:
        values["hubble"]["metrics"] = {"enabled": list(cfg.hubble_metrics)}
    own = next((c.cilium_values for c in plan.config.clusters if c.name == cluster.name), {})
    version = plan.cilium_version(cluster)
    for extra in (cfg.values, own):
        if extra:  # paths that moved between Cilium minors are written where this version reads them
            values = merge_values(values, adapt_values(extra, version))
    return values


def table_extras(cluster: ClusterPlan) -> dict[str, Any]:
    """Extra columns of the clusters output for an existing cluster."""
    ex = cluster.existing
    if ex is None:
        return {"source": cluster.source}
    return {"source": cluster.source, "apiServer": f"{ex.api_host}:{ex.api_port}", "ipam": ex.ipam,
            "ipamReason": ex.ipam_reason, "meshEndpoint": ex.endpoint,
            "meshAddresses": [f"{ip}:{cluster.mesh_port}" for ip in cluster.mesh_ips]}
