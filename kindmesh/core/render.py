"""Pure renderers: plan -> kind config, Helm values, Kubernetes manifests, outputs.

No ``pulumi`` import: components call these and wrap the results in resources, so
everything a user could diff is testable (and byte-stable) without Pulumi. Also the
plan-free helpers for programs built from the components alone (``kind_config_for``,
``kind_cilium_values``, ``mesh_values``, ``ip_address_pool_for``, ``l2_advertisement_for``).

May import: model, versions, render_existing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from kindmesh.core.model import STACK_LABEL, ClusterPlan, StackPlan
from kindmesh.core.render_existing import existing_cilium_values, table_extras, with_extras
from kindmesh.core.versions import cilium_image_set

KIND_API_VERSION = "kind.x-k8s.io/v1alpha4"
METALLB_NAMESPACE = "metallb-system"
CILIUM_NAMESPACE = "kube-system"
POOL_NAME = "kindmesh-pool"
RESERVED_POOL_NAME = "kindmesh-reserved"
L2_NAME = "kindmesh-l2"
MESH_LB_ANNOTATION = "metallb.io/loadBalancerIPs"
CLUSTER_LABEL = "kindmesh.io/cluster"


# --------------------------------------------------------------------------- kind
def kind_config_for(
    name: str,
    *,
    node_image: str,
    workers: int,
    pod_subnet: str,
    service_subnet: str,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """kind v1alpha4 Cluster config for Cilium (no CNI, no kube-proxy); only keys kind's
    strict decoder knows. ``labels`` become Kubernetes labels of every node."""
    node_labels = dict(labels or {})
    nodes: list[dict[str, Any]] = [{"role": "control-plane", "image": node_image, "labels": dict(node_labels)}]
    nodes += [{"role": "worker", "image": node_image, "labels": dict(node_labels)} for _ in range(workers)]
    return {
        "kind": "Cluster",
        "apiVersion": KIND_API_VERSION,
        "name": name,
        "networking": {
            "disableDefaultCNI": True,
            "kubeProxyMode": "none",
            "podSubnet": pod_subnet,
            "serviceSubnet": service_subnet,
        },
        "nodes": nodes,
    }


def kind_config(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    """The kind config of a planned cluster."""
    return kind_config_for(
        cluster.kind_name,
        node_image=plan.node_image,
        workers=cluster.workers,
        pod_subnet=cluster.pod_subnet,
        service_subnet=cluster.service_subnet,
        labels=node_labels(plan, cluster),
    )


def node_labels(plan: StackPlan, cluster: ClusterPlan) -> dict[str, str]:
    """Labels naming the stack and cluster (kind nodes, MetalLB objects)."""
    return {STACK_LABEL: plan.stack_label, CLUSTER_LABEL: cluster.name}


def dump_yaml(obj: Any) -> str:
    """Byte-stable YAML (sorted keys, block style)."""
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False)


def kind_config_yaml(plan: StackPlan, cluster: ClusterPlan) -> str:
    return dump_yaml(kind_config(plan, cluster))


def overlay(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` merged over ``base`` the way Helm coalesces values: maps merge, the rest replaces."""
    out = dict(base)
    for key, value in top.items():
        old = out.get(key)
        out[key] = overlay(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


# --------------------------------------------------------------------------- cilium
# Hubble's TLS, the same keys in the 1.19 and 1.20 charts. Every certificate (the agents' Hubble
# servers, the relay's client and server, the UI's client) is made by Helm (``genSignedCert``)
# from the CA in ``tls.ca``, i.e. the mesh's one CA when the composition passes it. The relay
# serves TLS (``hubble.relay.tls.server.enabled``; without it the 1.20 chart's NOTES warn "TLS is
# not enabled for the Hubble Relay server"); mTLS to the relay stays the chart's default (off).
# A second `up` stays empty: helm.v3.Release diffs its inputs (these values), never the
# rendered manifest, so certificates made anew on a render never show in a preview.
def _hubble_tls() -> dict[str, Any]:
    return {"enabled": True, "auto": {"enabled": True, "method": "helm"}}


def _relay_tls() -> dict[str, Any]:
    return {"server": {"enabled": True}}


# The relay's server certificate is for ``*.hubble-relay.cilium.io`` (the chart's fixed name):
# a client names any host under it (``--tls-server-name``).
RELAY_TLS_SERVER_NAME = "verify.hubble-relay.cilium.io"


def relay_access(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """How a client reaches the Hubble Relay the ``values`` install: ``None`` when there is no
    relay, else ``{port, tls, mtls, serverName}`` (the chart's defaults where the values are
    silent: ``hubble.tls.enabled`` true, relay server TLS and mTLS off, port 443 with TLS else 80)."""
    hubble = values.get("hubble") or {}
    relay = hubble.get("relay") or {}
    if not (hubble.get("enabled") and relay.get("enabled")):
        return None
    server = ((relay.get("tls") or {}).get("server")) or {}
    tls = bool((hubble.get("tls") or {}).get("enabled", True)) and bool(server.get("enabled", False))
    port = relay.get("servicePort") or (443 if bool(server.get("enabled", False)) else 80)
    return {"port": int(port), "tls": tls, "mtls": tls and bool(server.get("mtls", False)),
            "serverName": RELAY_TLS_SERVER_NAME if tls else None}


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
    ver = plan.cilium_version(cluster)  # the cluster's own Cilium version (a mesh may mix two minors)
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
            "tls": _hubble_tls(),
            "relay": {"enabled": cfg.hubble, "image": _image("relay", pre, ver), "tls": _relay_tls()},
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


def kind_cilium_values(
    *,
    control_plane: str,
    mesh_ip: str | None = None,
    node_port: int | None = None,
    hubble: bool = True,
    hubble_ui: bool = False,
) -> dict[str, Any]:
    """Cilium values for a kind cluster, without a plan (for components-only programs).

    The same settings :func:`cilium_values` gives kindmesh's kind clusters: kube-proxy
    replaced (``k8sServiceHost`` = ``control_plane``, the ``<kind name>-control-plane``
    container, port 6443), Kubernetes IPAM, VXLAN tunnel, one operator replica, the
    clustermesh-apiserver with Helm-generated TLS behind a LoadBalancer at ``mesh_ip``
    (a MetalLB pool address; see ``kindmesh.core.planner.pool_for``) or, without one, a
    NodePort (``node_port`` when given), and Hubble with its relay (serving TLS). The identity, peers and
    CA come from :class:`CiliumRelease` (``mesh_values``); images are left to the chart.
    """
    if mesh_ip is not None:
        service: dict[str, Any] = {"type": "LoadBalancer", "loadBalancerIP": mesh_ip}
    else:
        service = {"type": "NodePort"}
        if node_port is not None:
            service["nodePort"] = node_port
    return {
        "kubeProxyReplacement": True,
        "k8sServiceHost": control_plane,
        "k8sServicePort": 6443,
        "ipam": {"mode": "kubernetes"},
        "routingMode": "tunnel",
        "tunnelProtocol": "vxlan",
        "operator": {"replicas": 1},
        "clustermesh": {
            "useAPIServer": True,
            "apiserver": {
                "replicas": 1,
                "service": service,
                "tls": {"auto": {"enabled": True, "method": "helm"}},
            },
        },
        "hubble": {
            "enabled": hubble,
            "tls": _hubble_tls(),
            "relay": {"enabled": hubble, "tls": _relay_tls()},
            "ui": {"enabled": hubble and hubble_ui},
        },
    }


def mesh_values(
    cluster_name: str,
    cluster_id: int,
    peers: Sequence[Mapping[str, Any]] = (),
    ca: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """The Cilium values ClusterMesh depends on: identity, peers, shared CA.

    ``peers`` are ``clustermesh.config.clusters`` entries (``{name, port, ips}``); ``ca``
    is ``(cert_b64, key_b64)``, placed as given (Outputs are fine: this module never
    looks inside them)."""
    values: dict[str, Any] = {
        "cluster": {"name": cluster_name, "id": cluster_id},
        "clustermesh": {"useAPIServer": True, "config": {"enabled": True, "clusters": [dict(p) for p in peers]}},
    }
    if ca is not None:
        values["tls"] = {"ca": {"cert": ca[0], "key": ca[1]}}
    return values


def hubble_ui_url(cluster: ClusterPlan) -> str | None:
    return f"http://{cluster.hubble_ui_ip}" if cluster.hubble_ui_ip else None


# --------------------------------------------------------------------------- metallb
def metallb_values() -> dict[str, Any]:
    """MetalLB chart values: L2 only (no FRR), speakers on every node (the same everywhere)."""
    return {
        "speaker": {
            "frr": {"enabled": False},
            # kind labels control-plane nodes node.kubernetes.io/exclude-from-external-load-balancers;
            # control-plane-only clusters must still announce their pool.
            "ignoreExcludeLB": True,
        },
    }


def metallb_workloads(values: Mapping[str, Any], release: str = "metallb") -> list[dict[str, Any]]:
    """The MetalLB Deployment/DaemonSet the webhook gate waits for, named as the chart names
    them (``metallb.fullname``: ``fullnameOverride``, else the release name when it contains
    the chart's name, else ``<release>-<name>``), only those the values enable."""
    override = values.get("fullnameOverride") or ""
    if override:
        full = str(override)[:63].rstrip("-")
    else:
        chart = values.get("nameOverride") or "metallb"
        full = (release if chart in release else f"{release}-{chart}")[:63].rstrip("-")
    items: list[dict[str, Any]] = []
    if (values.get("controller") or {}).get("enabled", True):
        items.append({"kind": "Deployment", "namespace": METALLB_NAMESPACE, "name": f"{full}-controller"})
    if (values.get("speaker") or {}).get("enabled", True):
        items.append({"kind": "DaemonSet", "namespace": METALLB_NAMESPACE, "name": f"{full}-speaker"})
    return items


def _metallb_object(kind: str, name: str, labels: Mapping[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    # No empty `labels`: the API server drops an empty map, so the live object would never match
    # it and every preview would show an update (the engine tier caught it on the example).
    metadata: dict[str, Any] = {"name": name, "namespace": METALLB_NAMESPACE}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "metallb.io/v1beta1", "kind": kind, "metadata": metadata, "spec": spec}


def ip_address_pool_for(addresses: Sequence[str], *, name: str = POOL_NAME,
                        labels: Mapping[str, str] | None = None, auto_assign: bool = True) -> dict[str, Any]:
    """A MetalLB IPAddressPool of ``addresses`` (``first-last`` ranges or CIDRs). With
    ``auto_assign=False`` MetalLB gives its addresses only to Services that ask for one of them
    (``metallb.io/loadBalancerIPs`` or ``spec.loadBalancerIP``)."""
    return _metallb_object("IPAddressPool", name, labels or {},
                           {"addresses": list(addresses), "autoAssign": auto_assign})


def l2_advertisement_for(pool: str | Sequence[str] = POOL_NAME, *, name: str = L2_NAME,
                         labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A MetalLB L2Advertisement of one pool or several."""
    pools = [pool] if isinstance(pool, str) else list(pool)
    return _metallb_object("L2Advertisement", name, labels or {}, {"ipAddressPools": pools})


def _span(entry: str) -> tuple[int, int] | None:
    """``a-b`` or an IPv4 CIDR -> (first, last) as integers; None for anything else (left as given)."""
    import ipaddress

    try:
        if "-" in entry:
            a, b = (ipaddress.IPv4Address(x.strip()) for x in entry.split("-", 1))
            return int(a), int(b)
        net = ipaddress.IPv4Network(entry.strip(), strict=False)
        return int(net.network_address), int(net.broadcast_address)
    except ValueError:
        return None


def _range_text(first: int, last: int) -> str:
    import ipaddress

    a, b = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
    return f"{a}/32" if first == last else f"{a}-{b}"


def pool_contains(addresses: Sequence[str], ip: str) -> bool:
    """Whether one of the ``a-b`` / CIDR entries holds the IPv4 address ``ip``."""
    import ipaddress

    value = int(ipaddress.IPv4Address(ip))
    return any(span is not None and span[0] <= value <= span[1] for span in map(_span, addresses))


def split_pool(addresses: Sequence[str], reserved: Sequence[str]) -> tuple[list[str], list[str]]:
    """(auto-assigned ranges, reserved ranges): ``addresses`` without the ``reserved`` IPs, and
    those IPs as ranges of their own. An entry holding no reserved IP is kept as written."""
    import ipaddress

    keep = sorted({int(ipaddress.IPv4Address(ip)) for ip in reserved})
    auto: list[str] = []
    for entry in addresses:
        span = _span(entry)
        inside = [ip for ip in keep if span is not None and span[0] <= ip <= span[1]]
        if span is None or not inside:
            auto.append(entry)
            continue
        start = span[0]
        for ip in inside:
            if ip > start:
                auto.append(_range_text(start, ip - 1))
            start = ip + 1
        if start <= span[1]:
            auto.append(_range_text(start, span[1]))
    runs: list[list[int]] = []
    for ip in keep:
        if runs and runs[-1][1] == ip - 1:
            runs[-1][1] = ip
        else:
            runs.append([ip, ip])
    return auto, [_range_text(a, b) for a, b in runs]


def reserved_ips(cluster: ClusterPlan) -> list[str]:
    """The planned LoadBalancer IPs of a cluster (mesh, Hubble UI): kept out of auto-assignment.

    The Hubble UI's slot (the pool's second address) stays reserved while the UI is off: turning
    the UI on or off then never moves an address between the two pools. (Moving one would need
    the shrinking pool applied before the growing one, or MetalLB's webhook refuses the growing
    one as overlapping: the engine tier caught exactly that.)
    """
    ips = [ip for ip in (cluster.mesh_ip, cluster.hubble_ui_ip) if ip]
    if cluster.hubble_ui_ip is None and cluster.mesh_ip and cluster.mesh_ip == cluster.pool_first \
            and cluster.pool_last and ipaddress.IPv4Address(cluster.pool_last) > ipaddress.IPv4Address(cluster.pool_first):
        ips.append(str(ipaddress.IPv4Address(cluster.pool_first) + 1))
    return ips


def ip_address_pool(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    """The cluster's auto-assigned pool: its range without the planned mesh and Hubble UI IPs."""
    auto, _ = split_pool([cluster.pool], reserved_ips(cluster))
    return ip_address_pool_for(auto, labels=node_labels(plan, cluster))


def reserved_address_pool(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    """The cluster's reserved pool: the planned IPs, never auto-assigned (so another LoadBalancer
    Service, e.g. k3s' traefik, cannot take them first)."""
    _, kept = split_pool([cluster.pool], reserved_ips(cluster))
    return ip_address_pool_for(kept, name=RESERVED_POOL_NAME, labels=node_labels(plan, cluster), auto_assign=False)


def l2_advertisement(plan: StackPlan, cluster: ClusterPlan) -> dict[str, Any]:
    return l2_advertisement_for([POOL_NAME, RESERVED_POOL_NAME], labels=node_labels(plan, cluster))


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
            "ciliumVersion": plan.cilium_version(c),
            **table_extras(c),
        }
        for c in plan.clusters
    ]


def rollout_workloads(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Cilium DaemonSets/Deployments the rollout gate waits for, from the values Helm gets
    (so extra values that turn Hubble parts off never leave the gate waiting for them)."""
    hubble_values = values.get("hubble") or {}
    on = bool(hubble_values.get("enabled"))
    hubble = on and bool((hubble_values.get("relay") or {}).get("enabled"))
    hubble_ui = on and bool((hubble_values.get("ui") or {}).get("enabled"))
    ns = CILIUM_NAMESPACE
    items: list[dict[str, Any]] = [
        {"kind": "DaemonSet", "namespace": ns, "name": "cilium", "optional": False},
        {"kind": "DaemonSet", "namespace": ns, "name": "cilium-envoy", "optional": True},
        {"kind": "Deployment", "namespace": ns, "name": "cilium-operator", "optional": False},
        {"kind": "Deployment", "namespace": ns, "name": "clustermesh-apiserver", "optional": False},
    ]
    if hubble:
        items.append({"kind": "Deployment", "namespace": ns, "name": "hubble-relay", "optional": False})
    if hubble_ui:
        items.append({"kind": "Deployment", "namespace": ns, "name": "hubble-ui", "optional": False})
    return items


def planned_lb_services(values: Mapping[str, Any]) -> list[dict[str, str]]:
    """The Services of a Cilium release that must get a planned LoadBalancer IP, from the values
    Helm gets: the clustermesh-apiserver (``clustermesh.apiserver.service.loadBalancerIP``) and,
    when enabled, Hubble UI (``metallb.io/loadBalancerIPs`` on ``hubble.ui.service``). What the
    LoadBalancer gate waits for; a Service whose IP is not planned here is not waited on."""
    out: list[dict[str, str]] = []
    mesh = ((values.get("clustermesh") or {}).get("apiserver") or {}).get("service") or {}
    if mesh.get("type") == "LoadBalancer" and isinstance(mesh.get("loadBalancerIP"), str) and mesh["loadBalancerIP"]:
        out.append({"namespace": CILIUM_NAMESPACE, "name": "clustermesh-apiserver", "ip": mesh["loadBalancerIP"]})
    hubble = values.get("hubble") or {}
    ui = hubble.get("ui") or {}
    ui_service = ui.get("service") or {}
    ui_ip = (ui_service.get("annotations") or {}).get(MESH_LB_ANNOTATION)
    if (hubble.get("enabled") and ui.get("enabled") and ui_service.get("type") == "LoadBalancer"
            and isinstance(ui_ip, str) and ui_ip and "," not in ui_ip):
        out.append({"namespace": CILIUM_NAMESPACE, "name": "hubble-ui", "ip": ui_ip})
    return out
