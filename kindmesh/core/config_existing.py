"""Parsing the keys of clusters that already exist (``clusters[].source: existing``).

A k3s, kubeadm or any other cluster reachable with a kubeconfig joins the mesh: kindmesh
installs Cilium (and MetalLB when asked for a pool) and the demo into it, never creates
or deletes the cluster itself. What kind clusters get from the planner, the user gives
here: the pod and service CIDRs, the API server the Cilium agents use, and how peers
reach the cluster's clustermesh-apiserver (``meshEndpoint``)::

    meshEndpoint: {nodePort: 32379, nodeIPs: [192.0.2.11]}     # NodePort on those nodes
    meshEndpoint: {loadBalancer: {pool: 192.0.2.240-192.0.2.250}}  # MetalLB installed with it
    meshEndpoint: {loadBalancer: {ip: 192.0.2.240}}            # the cluster's own LB provider

The kubeconfig is read by the planner (kindmesh.core.existing); the read-only checks against
the live cluster are in stacks/preflight_existing.py.

Pure module: no ``pulumi`` import.

May import: model, collector.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from kindmesh.core.collector import Collector, quote, special_range
from kindmesh.core.model import ExistingConfig, MeshEndpointConfig

EXISTING_KEYS = ("kubeconfig", "context", "apiServer", "meshEndpoint", "ipam", "cilium")
ONLY_EXISTING = ("kubeconfig", "context", "apiServer", "meshEndpoint", "ipam")
MESH_ENDPOINT_KEYS = ("nodePort", "nodeIPs", "loadBalancer")
LB_KEYS = ("pool", "ip")
IPAM_MODES = ("auto", "kubernetes", "cluster-pool")
NODEPORT_MIN, NODEPORT_MAX = 30000, 32767  # kube-apiserver's default --service-node-port-range


def _special(first: str, last: str) -> str | None:
    """Why addresses first..last are no place for nodes or LoadBalancer IPs (None when fine)."""
    for net in ipaddress.summarize_address_range(ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)):
        if why := special_range(net):
            return why
    return None


def ipv4(value: Any) -> str | None:
    """The IPv4 address ``value`` names, normalised (None for anything else)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    return str(addr) if addr.version == 4 else None


HOST_RE = re.compile(r"^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")
PORT_RE = re.compile(r"[0-9]{1,5}", re.ASCII)


def parse_host_port(text: Any) -> tuple[str, int] | None:
    """``host:port`` (ASCII digits, port 1..65535) or None; any other input is None."""
    if not isinstance(text, str) or len(text) > 300:
        return None
    host, sep, port = text.strip().rpartition(":")
    if not sep or not PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535:
        return None
    if not (ipv4(host) or HOST_RE.match(host)):
        return None
    return host, int(port)


def parse_existing(c: Collector, ekey: str, entry: Mapping[str, Any], source: str) -> ExistingConfig | None:
    """The ``source: existing`` keys of one cluster (``c`` is config's problem collector)."""
    if source != "existing":
        for k in ONLY_EXISTING:
            if entry.get(k) is not None:
                c.add(f"{ekey}.{k}", "only used with source: existing; remove it or set source: existing")
        return None
    if entry.get("workers") is not None:
        c.add(f"{ekey}.workers", "only for kind clusters (an existing cluster has its own nodes); remove it")
    for k, example in (("podSubnet", "10.42.0.0/16 for k3s, kubeadm's --pod-network-cidr"),
                       ("serviceSubnet", "10.43.0.0/16 for k3s, kubeadm's --service-cidr")):
        if entry.get(k) is None:
            c.add(f"{ekey}.{k}", f"required for source: existing (kindmesh cannot plan it): the cluster's "
                                 f"own range, e.g. {example}")
    kubeconfig = entry.get("kubeconfig")
    if kubeconfig is None or not isinstance(kubeconfig, str) or not kubeconfig.strip():
        c.add(f"{ekey}.kubeconfig", "required for source: existing: a kubeconfig path (~ expanded) or its "
                                    f"content (`pulumi config set --secret --path '{ekey}.kubeconfig' < file`)")
        kubeconfig = ""
    context = c.string(f"{ekey}.context", entry.get("context"))
    api_server = None
    if entry.get("apiServer") is not None:
        api_server = parse_host_port(entry.get("apiServer"))
        if api_server is None:
            c.add(f"{ekey}.apiServer", f"{quote(entry.get('apiServer'))} is not host:port (ASCII digits, port "
                                       "1-65535); write it like 192.0.2.11:6443 (the address Cilium agents use "
                                       "for the API server)")
    ipam = c.choice(f"{ekey}.ipam", entry.get("ipam"), IPAM_MODES, "auto")
    return ExistingConfig(kubeconfig=kubeconfig.strip(), context=context, api_server=api_server,
                          endpoint=_parse_endpoint(c, f"{ekey}.meshEndpoint", entry.get("meshEndpoint")),
                          ipam=ipam)


def _parse_endpoint(c: Collector, key: str, value: Any) -> MeshEndpointConfig | None:
    example = "{nodePort: 32379, nodeIPs: [<node IP>]} or {loadBalancer: {pool: <first>-<last>}} or " \
              "{loadBalancer: {ip: <IP>}}"
    if value is None:
        c.add(key, f"required for source: existing: how peers reach this cluster's clustermesh-apiserver, "
                   f"{example}")
        return None
    raw = c.mapping(key, value)
    c.unknown_keys(key, raw, MESH_ENDPOINT_KEYS)
    has_np, has_lb = raw.get("nodePort") is not None, raw.get("loadBalancer") is not None
    if has_np == has_lb:
        c.add(key, f"give exactly one of nodePort (with nodeIPs) or loadBalancer: {example}")
        return None
    if has_np:
        port = c.integer(f"{key}.nodePort", raw.get("nodePort"))
        if port is not None and not NODEPORT_MIN <= port <= NODEPORT_MAX:
            c.add(f"{key}.nodePort", f"{port} is outside the NodePort range {NODEPORT_MIN}-{NODEPORT_MAX}; "
                                     "pick a free port in it, different in every cluster")
            port = None
        ips_raw = raw.get("nodeIPs")
        if not isinstance(ips_raw, list) or not ips_raw:
            c.add(f"{key}.nodeIPs", "required with nodePort: a non-empty list of node IPv4 addresses the peers "
                                    "can reach, e.g. [192.0.2.11]")
            ips: list[str] = []
        else:
            ips = []
            for i, ip in enumerate(ips_raw):
                parsed = ipv4(ip)
                if parsed is None:
                    c.add(f"{key}.nodeIPs[{i}]", f"{quote(ip)} is not an IPv4 address")
                elif why := _special(parsed, parsed):
                    c.add(f"{key}.nodeIPs[{i}]", f"{parsed} {why}, which peers cannot connect to; give an "
                                                 "address of the node that the other clusters reach")
                elif parsed in ips:
                    c.add(f"{key}.nodeIPs[{i}]", f"{parsed} is listed twice; remove one")
                else:
                    ips.append(parsed)
        if port is None or not ips:
            return None
        return MeshEndpointConfig(node_port=port, node_ips=tuple(ips))
    if raw.get("nodeIPs") is not None:
        c.add(f"{key}.nodeIPs", "only used with nodePort; remove it")
    lb = c.mapping(f"{key}.loadBalancer", raw.get("loadBalancer"))
    c.unknown_keys(f"{key}.loadBalancer", lb, LB_KEYS)
    if (lb.get("pool") is None) == (lb.get("ip") is None):
        c.add(f"{key}.loadBalancer", "give exactly one of pool (<first>-<last>: kindmesh installs MetalLB "
                                     "with it) or ip (the cluster already has a LoadBalancer provider)")
        return None
    if lb.get("pool") is not None:
        pool_key = f"{key}.loadBalancer.pool"
        raw_pool = lb["pool"]
        ends = raw_pool.partition("-") if isinstance(raw_pool, str) else ("", "", "")
        a, b = ipv4(ends[0]), ipv4(ends[2])
        if not ends[1] or a is None or b is None:
            c.add(pool_key, f"{quote(raw_pool)} is not an IPv4 range; write it like 192.0.2.240-192.0.2.250")
            return None
        if ipaddress.IPv4Address(a) > ipaddress.IPv4Address(b):
            c.add(pool_key, f"{a}-{b} starts after it ends; write the lower address first ({b}-{a})")
            return None
        if why := _special(a, b):
            c.add(pool_key, f"{a}-{b} {why}; LoadBalancer IPs there are unusable: pick addresses of the "
                            "cluster's network that the peers reach")
            return None
        return MeshEndpointConfig(pool=(a, b))
    ip = ipv4(lb["ip"])
    if ip is None:
        c.add(f"{key}.loadBalancer.ip", f"{quote(lb['ip'])} is not an IPv4 address")
        return None
    if why := _special(ip, ip):
        c.add(f"{key}.loadBalancer.ip", f"{ip} {why}, which peers cannot connect to; give the LoadBalancer "
                                        "IP the cluster's provider assigns, reachable from the peers")
        return None
    return MeshEndpointConfig(ip=ip)
