"""Planning clusters that already exist (``clusters[].source: existing``).

The planner's part for existing clusters: the kubeconfig is read (a path or the content;
only the chosen context is kept, relative file references made absolute; no network), the
API server the Cilium agents use is decided (``apiServer``, else the kubeconfig's server,
never a loopback address), the mesh endpoint becomes the ClusterPlan's addresses, and the
cross-cluster checks of what the user gave (routability, CIDRs, endpoints, NodePorts)
report every clash with its key. Parsing the keys is kindmesh.core.config_existing; their
Helm values are kindmesh.core.render_existing.

Pure module: no ``pulumi`` import.

May import: model, collector, config_existing.
"""

from __future__ import annotations

import copy
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from kindmesh.core.collector import quote
from kindmesh.core.config_existing import PORT_RE, ipv4
from kindmesh.core.model import (
    MESH_PORT,
    ClusterConfig,
    ClusterPlan,
    ExistingPlan,
    StackConfig,
    clip,
)

Add = Callable[[str, str], None]  # records one problem: (key, message)
KUBECONFIG_NESTING_MAX = 32  # a kubeconfig is ~5 levels deep; deeper YAML is never one


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    ip = ipv4(host)
    return ip is not None and ipaddress.ip_address(ip).is_loopback


def load_kubeconfig(value: str, context: str | None, key: str, ctx_key: str,
                    add: Add) -> tuple[str, str, str] | None:
    """(minimal kubeconfig text, context name, server URL) from a path or content; no network."""
    is_content = "\n" in value or value.lstrip().startswith(("apiVersion", "{", "clusters:", "kind:"))
    base: Path | None = None
    if is_content:
        text = value
    else:
        try:
            path = Path(os.path.expanduser(value))
            is_file = path.is_file()
        except (OSError, ValueError) as exc:  # name too long, NUL byte, ...
            why = getattr(exc, "strerror", None) or "not a usable file name"
            add(key, f"is not a readable kubeconfig path ({clip(str(why), 80)}); give the path of the "
                     "cluster's kubeconfig or its content")
            return None
        if not is_file:
            add(key, f"{quote(value)}: no such file ({clip(str(path), 120)}); give the path of the cluster's "
                     "kubeconfig (e.g. a copy of k3s' /etc/rancher/k3s/k3s.yaml or kubeadm's admin.conf) or "
                     "its content")
            return None
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            add(key, f"cannot read {path} ({getattr(exc, 'strerror', None) or exc.__class__.__name__}); "
                     "make it readable by this user (chmod 600, owned by you)")
            return None
        base = path.resolve().parent
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader bounded in depth
    except _TooDeep:
        add(key, f"is nested more than {KUBECONFIG_NESTING_MAX} levels deep, so it is no kubeconfig; give one "
                 "(kubectl config view --raw --minify)")
        return None
    except RecursionError:  # belt and braces: never a traceback, never the content
        add(key, "is nested too deeply to read, so it is no kubeconfig; give one (kubectl config view --raw --minify)")
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        add(key, f"is not valid YAML{where}; give a kubeconfig (kubectl config view --raw --minify)")
        return None
    except (ValueError, OverflowError, TypeError):  # e.g. a 4300+ digit integer, a date out of range
        add(key, "has a value YAML cannot convert (a huge number or an impossible date), so it is no "
                 "kubeconfig; give one (kubectl config view --raw --minify)")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("contexts"), list):
        add(key, "is not a kubeconfig (no contexts); give one (kubectl config view --raw --minify)")
        return None
    names = [quote(x.get("name")) for x in data["contexts"][:10] if isinstance(x, dict)]
    name = context or data.get("current-context")
    if name and not isinstance(name, str):
        add(ctx_key, f"the kubeconfig's current-context is {quote(name)}, not a name; set {ctx_key}")
        return None
    if not name:
        add(ctx_key, f"the kubeconfig has no current-context; set {ctx_key} to one of {', '.join(names)}")
        return None
    ctx = next((x for x in data["contexts"] if isinstance(x, dict) and x.get("name") == name), None)
    if ctx is None or not isinstance(ctx.get("context"), dict):
        add(ctx_key, f"the kubeconfig has no context {quote(name)}; it has: {', '.join(names) or 'none'}")
        return None
    inner = ctx["context"]
    cluster = next((x for x in data.get("clusters") or [] if isinstance(x, dict)
                    and x.get("name") == inner.get("cluster")), None)
    user = next((x for x in data.get("users") or [] if isinstance(x, dict)
                 and x.get("name") == inner.get("user")), None)
    body = cluster.get("cluster") if cluster is not None else None
    server = body.get("server") if isinstance(body, dict) else None
    if cluster is None or not server or not isinstance(server, str):
        add(key, f"context {quote(name)} names cluster {quote(inner.get('cluster'))}, which has no server in "
                 "the kubeconfig")
        return None
    cluster, user = copy.deepcopy(cluster), copy.deepcopy(user)
    if base is not None:  # relative file references are relative to the kubeconfig's directory
        _absolute(cluster.get("cluster"), ("certificate-authority",), base)
        if user is not None:
            _absolute(user.get("user"), ("client-certificate", "client-key", "tokenFile"), base)
    minimal: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "contexts": [copy.deepcopy(ctx)],
        "users": [user] if user is not None else [],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(minimal, sort_keys=True, default_flow_style=False), str(name), str(server)


class _TooDeep(yaml.YAMLError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than KUBECONFIG_NESTING_MAX (composing recurses)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > KUBECONFIG_NESTING_MAX:
                raise _TooDeep("too deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _absolute(section: Any, keys: tuple[str, ...], base: Path) -> None:
    if not isinstance(section, dict):
        return
    for k in keys:
        v = section.get(k)
        if isinstance(v, str) and v and not os.path.isabs(os.path.expanduser(v)):
            section[k] = str(base / v)
        elif isinstance(v, str) and v.startswith("~"):
            section[k] = os.path.expanduser(v)


def server_host_port(server: str) -> tuple[str, int] | None:
    """(host, port) of a kubeconfig server URL; the port in ASCII digits 1..65535 (urlsplit's own
    parsing takes other digits on some Python versions), else the scheme's default."""
    try:
        parts = urlsplit(server)
        hostname = parts.hostname
    except ValueError:
        return None
    if not hostname:
        return None
    hostport = parts.netloc.rpartition("@")[2]
    head, sep, port_text = hostport.rpartition(":")
    if sep and "]" not in port_text and head:
        if not PORT_RE.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
            return None
        return hostname, int(port_text)
    return hostname, 443 if parts.scheme == "https" else 80


def plan_existing(index: int, cfg: ClusterConfig, add: Add) -> ExistingPlan | None:
    ex = cfg.existing
    if ex is None or not ex.kubeconfig:
        return None
    key = f"kindmesh:clusters[{index}].kubeconfig"
    loaded = load_kubeconfig(ex.kubeconfig, ex.context, key, f"kindmesh:clusters[{index}].context", add)
    if loaded is None:
        return None
    text, context, server = loaded
    api = ex.api_server
    if api is None:
        derived = server_host_port(server)
        if derived is None:
            add(key, f"the server {quote(server)} of context {quote(context)} is not a URL; set "
                     f"kindmesh:clusters[{index}].apiServer to host:port")
            return None
        if is_loopback_host(derived[0]):
            add(f"kindmesh:clusters[{index}].apiServer",
                f"required here: the kubeconfig's server is {server} (k3s writes 127.0.0.1), which Cilium agents "
                "on other nodes cannot use; set it to an address every node reaches, e.g. <server node IP>:6443")
            return None
        api = derived
    endpoint = ex.endpoint.kind if ex.endpoint else "nodePort"
    if ex.ipam == "auto":
        reason = "auto: not resolved yet (the preflight reads the nodes' spec.podCIDR); cluster-pool until then"
    else:
        reason = f"set by kindmesh:clusters[{index}].ipam"
    return ExistingPlan(kubeconfig=text, context=context, api_host=api[0], api_port=api[1], endpoint=endpoint,
                        node_port=ex.endpoint.node_port if ex.endpoint else None, ipam=ex.ipam,
                        ipam_reason=reason)


def mesh_addresses(cfg: ClusterConfig, hubble_ui: bool) -> dict[str, Any]:
    """ClusterPlan fields of an existing cluster's mesh endpoint (and pool, when MetalLB is ours)."""
    ep = cfg.existing.endpoint if cfg.existing else None
    out: dict[str, Any] = {"pool_first": "", "pool_last": "", "mesh_ip": "", "hubble_ui_ip": None,
                           "mesh_port": MESH_PORT, "mesh_ips": ()}
    if ep is None:
        return out
    if ep.kind == "nodePort":
        out.update(mesh_ip=ep.node_ips[0], mesh_port=ep.node_port, mesh_ips=ep.node_ips)
    elif ep.kind == "pool" and ep.pool is not None:
        first, last = ep.pool
        ui = None
        if hubble_ui and ipaddress.IPv4Address(last) > ipaddress.IPv4Address(first):
            ui = str(ipaddress.IPv4Address(first) + 1)
        out.update(pool_first=first, pool_last=last, mesh_ip=first, mesh_ips=(first,), hubble_ui_ip=ui)
    elif ep.ip is not None:
        out.update(mesh_ip=ep.ip, mesh_ips=(ep.ip,))
    return out


def _range(first: str, last: str) -> tuple[int, int]:
    return int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))


def check_stack(config: StackConfig, clusters: list[ClusterPlan], docker_subnet: str | None, add: Add) -> None:
    """Cross-cluster checks of what the user gave for existing clusters (all problems, keys named)."""
    kinds = [c for c in clusters if c.source == "kind"]
    by_name = {cfg.name: cfg for cfg in config.clusters}
    # (position in kindmesh:clusters, plan): plans are ordered by id, keys name the config position
    existing = [(by_name[c.name].index, c) for c in clusters if c.source == "existing"]
    if not existing:
        return
    if kinds and not config.mesh.routable:
        add("kindmesh:mesh.routable",
            f"clusters {', '.join(c.name for c in kinds)} are kind clusters on a docker bridge of this host and "
            f"{', '.join(c.name for _, c in existing)} exist elsewhere: their nodes and pods must reach each other "
            "for ClusterMesh. Route the docker subnet and the existing clusters' networks both ways, then set "
            "mesh.routable: true (or mesh only existing clusters)")
    cidrs: list[tuple[str, ipaddress.IPv4Network]] = []
    for c in clusters:
        cidrs += [(f"{c.name} pod CIDR", ipaddress.IPv4Network(c.pod_subnet)),
                  (f"{c.name} service CIDR", ipaddress.IPv4Network(c.service_subnet))]
    if docker_subnet is not None:
        cidrs.append(("the docker subnet of the kind clusters", ipaddress.IPv4Network(docker_subnet)))
    # address ranges that carry LoadBalancer IPs or mesh endpoints, per owner
    taken: list[tuple[str, str, int, int]] = []  # (owner cluster, what, first, last)
    for c in kinds:
        taken.append((c.name, f"{c.name}'s MetalLB pool {c.pool}", *_range(c.pool_first, c.pool_last)))
    seen_ports: dict[int, str] = {}
    for i, c in existing:
        ex_cfg = by_name[c.name].existing
        ep = ex_cfg.endpoint if ex_cfg is not None else None
        if ep is None:
            continue
        key = f"kindmesh:clusters[{i}].meshEndpoint"
        if ep.kind == "nodePort":
            port = ep.node_port or 0
            if port in seen_ports:
                add(f"{key}.nodePort", f"{port} is also {seen_ports[port]}'s mesh NodePort; use a different "
                                       "port in every cluster (with kube-proxy replacement an agent connecting "
                                       "to that port on a peer's node is served by its own cluster)")
            else:
                seen_ports[port] = c.name
            items = [(f"{key}.nodeIPs[{j}]", f"{c.name}'s node IP {ip}", ip, ip) for j, ip in enumerate(ep.node_ips)]
        elif ep.kind == "pool" and ep.pool is not None:
            items = [(f"{key}.loadBalancer.pool", f"{c.name}'s pool {ep.pool[0]}-{ep.pool[1]}", *ep.pool)]
        else:
            items = [(f"{key}.loadBalancer.ip", f"{c.name}'s LoadBalancer IP {ep.ip}", ep.ip or "", ep.ip or "")]
        for item_key, what, first, last in items:
            lo, hi = _range(first, last)
            for label, net in cidrs:
                if lo <= int(net.broadcast_address) and int(net.network_address) <= hi:
                    add(item_key, f"{what} lies in {label} {net}; pick addresses outside every cluster's "
                                  "pod/service CIDRs and the docker subnet")
            for owner, other, o_lo, o_hi in taken:
                if lo <= o_hi and o_lo <= hi and not (owner == c.name and ep.kind == "nodePort"):
                    add(item_key, f"{what} overlaps {other}; every cluster needs its own addresses")
        for _item_key, what, first, last in items:
            taken.append((c.name, what, *_range(first, last)))
