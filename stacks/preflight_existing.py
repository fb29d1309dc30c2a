"""Read-only preflight of existing clusters, before anything is installed into them.

Per ``source: existing`` cluster, through its kubeconfig (GET requests only):

* reachable and the credentials accepted (``/version``);
* the Kubernetes version is inside the window Cilium e2e-tests for the cluster's own Cilium
  version (the version catalogue, ``kindmesh.core.versions``): older is refused (Cilium does
  not support it), newer is a note (Cilium: it depends on Kubernetes' backward compatibility);
* no other CNI runs: flannel / calico / canal / weave / kube-router / antrea DaemonSets,
  or k3s' embedded flannel (k3s records its server flags in the node annotation
  ``k3s.io/node-args``);
* kube-proxy is absent (kindmesh always enables kube-proxy replacement): the kube-proxy
  DaemonSet (kubeadm), or k3s without ``--disable-kube-proxy``;
* k3s' servicelb is off when kindmesh installs MetalLB (``meshEndpoint.loadBalancer.pool``);
* a Cilium that is not this stack's (no ``kindmesh.io/stack`` label of this stack on the
  ``cilium`` DaemonSet, or a Helm release ``cilium``) is reported: kindmesh does not adopt it;
* the given ``meshEndpoint.nodeIPs`` are addresses of the cluster's nodes, and node
  ``spec.podCIDR``s lie in ``podSubnet``;
* ``ipam: auto`` is resolved: ``kubernetes`` when every node has a ``spec.podCIDR``
  (the cluster allocates node CIDRs), ``cluster-pool`` with ``podSubnet`` when none has.

Every problem of every cluster is reported at once (together with the host preflight of
the kind clusters). The API is reached through a tiny read-only protocol
(:class:`ReadApi`), so tests serve recorded responses from a loopback HTTP server.
No ``pulumi`` import.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kindmesh.core.model import STACK_LABEL, ClusterPlan, StackPlan
from kindmesh.core.versions import cilium_line, window_text, window_verdict
from kindmesh.deploy.kubeapi import ClientSetupError, KubeClient, KubeconfigError, KubeError
from kindmesh.stacks import preflight

OTHER_CNIS = {  # DaemonSet name fragment -> what it is
    "flannel": "flannel",
    "calico-node": "Calico",
    "canal": "Canal",
    "weave-net": "Weave Net",
    "kube-router": "kube-router",
    "antrea-agent": "Antrea",
    "kindnet": "kindnet",
}
K3S_ARGS = "k3s.io/node-args"
FLANNEL_ANNOTATION = "flannel.alpha.coreos.com/backend-type"
HELM_SECRETS = "/api/v1/namespaces/kube-system/secrets?labelSelector=owner%3Dhelm%2Cname%3Dcilium"


class ApiReadError(Exception):
    """A GET that failed: ``status`` 0 when the server was not reached at all."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}" if status else message)


class ReadApi(Protocol):
    def get_json(self, path: str) -> dict[str, Any]: ...


class KubeClientReader:
    """:class:`ReadApi` over kindmesh.deploy.kubeapi.KubeClient (short timeout: this is a preflight).

    The client is the gates' own (the official Kubernetes client): client certificates,
    tokens and exec plugins; loopback servers reached directly even behind a proxy."""

    def __init__(self, kubeconfig: str, timeout: float = 15.0):
        try:
            self.client = KubeClient(kubeconfig)
        except (KubeconfigError, ClientSetupError) as err:
            raise ValueError(str(err)) from None
        self.timeout = timeout
        self.server = self.client.server

    def get_json(self, path: str) -> dict[str, Any]:
        try:
            return self.client.get(path, timeout=self.timeout).body
        except KubeError as err:
            raise ApiReadError(err.status, err.message) from err

    def close(self) -> None:
        self.client.close()


Connect = Callable[[ClusterPlan], ReadApi]


def connect(cluster: ClusterPlan) -> ReadApi:
    assert cluster.existing is not None
    return KubeClientReader(cluster.existing.kubeconfig)


@dataclass
class Facts:
    """What the preflight found in one existing cluster."""

    cluster: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    version: str | None = None
    ipam: str | None = None  # resolved mode for ipam: auto
    ipam_reason: str = ""


def parse_version(git_version: str) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)", git_version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def k3s_args(nodes: list[dict[str, Any]]) -> list[str] | None:
    """The k3s server flags recorded on a server node (None: not k3s or not recorded)."""
    for node in nodes:
        raw = ((node.get("metadata") or {}).get("annotations") or {}).get(K3S_ARGS)
        if not raw:
            continue
        try:
            args = json.loads(raw)
        except ValueError:
            continue
        if isinstance(args, list) and args and args[0] == "server":
            return [str(a) for a in args]
    return None


def flag_value(args: list[str], flag: str) -> str | None:
    """``--flag=value`` or ``--flag value``; "true" for a bare boolean flag; None when absent."""
    values: list[str] = []
    for i, a in enumerate(args):
        if a == flag:
            nxt = args[i + 1] if i + 1 < len(args) else ""
            values.append(nxt if nxt and not nxt.startswith("--") else "true")
        elif a.startswith(flag + "="):
            values.append(a.split("=", 1)[1])
    return values[-1] if values else None


def disabled_components(args: list[str]) -> set[str]:
    out: set[str] = set()
    for i, a in enumerate(args):
        if a == "--disable" and i + 1 < len(args):
            out.update(args[i + 1].split(","))
        elif a.startswith("--disable="):
            out.update(a.split("=", 1)[1].split(","))
    return out


def check_cluster(plan: StackPlan, cluster: ClusterPlan, api: ReadApi) -> Facts:
    ex = cluster.existing
    assert ex is not None
    facts = Facts(cluster.name)
    bad = facts.problems.append
    try:
        version = api.get_json("/version")
    except ApiReadError as err:
        if err.status in (401, 403):
            bad(f"the API server rejected the kubeconfig's credentials (context {ex.context!r}): {err.message}; "
                "give a kubeconfig with cluster-admin rights")
        else:
            bad(f"cannot reach the API server with the kubeconfig (context {ex.context!r}): {err}; check its "
                "server address, that this host can reach it, and the certificate")
        return facts
    git = str(version.get("gitVersion", ""))
    facts.version = git
    _check_version(plan.cilium_version(cluster), git, bad, facts.notes)

    try:
        nodes = list(api.get_json("/api/v1/nodes").get("items") or [])
        daemonsets = list(api.get_json("/apis/apps/v1/daemonsets").get("items") or [])
    except ApiReadError as err:
        bad(f"cannot list nodes and DaemonSets ({err}); kindmesh needs cluster-admin rights in this cluster")
        return facts
    if not nodes:
        bad("the cluster has no nodes")
        return facts
    k3s = "+k3s" in git
    args = k3s_args(nodes) if k3s else None
    _check_cnis(daemonsets, nodes, k3s, args, bad)
    _check_kube_proxy(daemonsets, k3s, args, bad, facts.notes)
    if k3s and args is not None and ex.endpoint == "pool" and "servicelb" not in disabled_components(args):
        bad("k3s' servicelb (klipper-lb) is on, and kindmesh installs MetalLB for meshEndpoint.loadBalancer.pool: "
            "start the k3s server with --disable=servicelb")
    _check_cilium(plan, cluster, daemonsets, api, bad)
    _check_nodes(cluster, nodes, bad)
    _resolve_ipam(cluster, nodes, facts)
    return facts


def _check_version(cilium_version: str, git: str, bad: Callable[[str], None], notes: list[str]) -> None:
    have = parse_version(git)
    line = cilium_line(cilium_version)
    if have is None or line is None:
        notes.append(f"could not compare Kubernetes {git!r} with Cilium {cilium_version}")
        return
    verdict = window_verdict(have, line)
    cilium = _fmt(line.minor)
    if verdict == "older":
        bad(f"Kubernetes {git} is outside {window_text(line)}, the versions Cilium {cilium} is tested with "
            f"({line.k8s_source}): older ones are not supported; upgrade the cluster or pick a Cilium version "
            "(kindmesh:cilium.version or kindmesh:clusters[].cilium.version) that lists it")
    elif verdict == "newer":
        notes.append(f"Kubernetes {git} is newer than {window_text(line)}, the versions Cilium {cilium} is tested "
                     "with: Cilium says this depends on Kubernetes' backward compatibility")


def _names(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _check_cnis(daemonsets: list[dict[str, Any]], nodes: list[dict[str, Any]], k3s: bool,
                args: list[str] | None, bad: Callable[[str], None]) -> None:
    for ds in daemonsets:
        ns, name = _names(ds)
        what = next((label for frag, label in OTHER_CNIS.items() if frag in name), None)
        if what is not None:
            bad(f"another CNI runs: {what} (DaemonSet {ns}/{name}); remove it (kubectl -n {ns} delete daemonset "
                f"{name}, and its manifests) and its config from /etc/cni/net.d on every node, then reboot or "
                "restart the nodes' pods")
    if not k3s:
        return
    if args is not None:
        backend = flag_value(args, "--flannel-backend")
        if backend != "none":
            bad(f"k3s runs its embedded flannel (flannel-backend {backend or 'vxlan, the default'}); restart every "
                "k3s server with --flannel-backend=none --disable-network-policy")
        elif flag_value(args, "--disable-network-policy") is None:
            bad("k3s runs its embedded network policy controller; restart the k3s servers with "
                "--disable-network-policy (Cilium enforces the policies)")
    elif any(FLANNEL_ANNOTATION in ((n.get("metadata") or {}).get("annotations") or {}) for n in nodes):
        bad("k3s' embedded flannel has run on these nodes (flannel annotations) and the server flags are not "
            "recorded; make sure every k3s server runs with --flannel-backend=none --disable-network-policy")


def _check_kube_proxy(daemonsets: list[dict[str, Any]], k3s: bool, args: list[str] | None,
                      bad: Callable[[str], None], notes: list[str]) -> None:
    for ds in daemonsets:
        ns, name = _names(ds)
        if name == "kube-proxy":
            bad(f"kube-proxy runs (DaemonSet {ns}/{name}) but kindmesh enables Cilium's kube-proxy replacement: "
                f"kubectl -n {ns} delete daemonset kube-proxy (kubeadm: init with --skip-phases=addon/kube-proxy) "
                "and flush its rules on every node (iptables-save | grep -v KUBE | iptables-restore)")
    if k3s:
        if args is None:
            notes.append("k3s server flags not recorded on the nodes: could not check --disable-kube-proxy")
        elif flag_value(args, "--disable-kube-proxy") in (None, "false"):
            bad("k3s runs its embedded kube-proxy but kindmesh enables Cilium's kube-proxy replacement: restart "
                "every k3s server with --disable-kube-proxy")


def _check_cilium(plan: StackPlan, cluster: ClusterPlan, daemonsets: list[dict[str, Any]], api: ReadApi,
                  bad: Callable[[str], None]) -> None:
    ours = False
    found: list[str] = []
    for ds in daemonsets:
        ns, name = _names(ds)
        if name == "cilium":
            labels = (ds.get("metadata") or {}).get("labels") or {}
            ours = labels.get(STACK_LABEL) == plan.stack_label
            found.append(f"DaemonSet {ns}/{name}")
    try:
        releases = list(api.get_json(HELM_SECRETS).get("items") or [])
    except ApiReadError:
        releases = []  # secrets may be off limits: the DaemonSet is the evidence then
    for r in releases:
        labels = (r.get("metadata") or {}).get("labels") or {}
        if labels.get("status") == "deployed":
            found.append(f"Helm release kube-system/cilium revision {labels.get('version', '?')}")
    if found and not ours:
        bad(f"Cilium is already installed and not by this stack ({', '.join(found)}); kindmesh installs its own "
            "release and does not adopt one: uninstall it first (helm -n kube-system uninstall cilium, or "
            "cilium uninstall) or mesh another cluster")


def _node_addresses(node: dict[str, Any]) -> set[str]:
    return {str(a.get("address")) for a in (node.get("status") or {}).get("addresses") or []
            if a.get("type") in ("InternalIP", "ExternalIP")}


def _check_nodes(cluster: ClusterPlan, nodes: list[dict[str, Any]], bad: Callable[[str], None]) -> None:
    ex = cluster.existing
    assert ex is not None
    if ex.endpoint == "nodePort":
        known = set().union(*(_node_addresses(n) for n in nodes))
        for ip in cluster.mesh_ips:
            if ip not in known:
                bad(f"meshEndpoint.nodeIPs lists {ip}, which no node reports (nodes have "
                    f"{', '.join(sorted(known)) or 'no addresses'}); list node addresses the peers can reach")
    pods = ipaddress.IPv4Network(cluster.pod_subnet)
    for n in nodes:
        cidr = (n.get("spec") or {}).get("podCIDR")
        if not cidr:
            continue
        try:
            net = ipaddress.ip_network(cidr)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and not net.subnet_of(pods):
            bad(f"node {_names(n)[1]} has podCIDR {cidr}, outside podSubnet {cluster.pod_subnet}; set podSubnet "
                "to the cluster's --cluster-cidr")


def _resolve_ipam(cluster: ClusterPlan, nodes: list[dict[str, Any]], facts: Facts) -> None:
    ex = cluster.existing
    assert ex is not None
    with_cidr = [n for n in nodes if (n.get("spec") or {}).get("podCIDR")]
    if ex.ipam != "auto":
        if ex.ipam == "kubernetes" and len(with_cidr) < len(nodes):
            facts.problems.append(
                f"ipam is kubernetes but {len(nodes) - len(with_cidr)} of {len(nodes)} nodes have no spec.podCIDR; "
                "enable node CIDR allocation (kube-controller-manager --allocate-node-cidrs) or set ipam: cluster-pool")
        return
    if len(with_cidr) == len(nodes):
        facts.ipam = "kubernetes"
        facts.ipam_reason = f"auto: all {len(nodes)} nodes have spec.podCIDR (the cluster allocates node CIDRs)"
    elif not with_cidr:
        facts.ipam = "cluster-pool"
        facts.ipam_reason = f"auto: no node has spec.podCIDR; Cilium allocates from podSubnet {cluster.pod_subnet}"
    else:
        facts.problems.append(
            f"ipam auto cannot decide: {len(with_cidr)} of {len(nodes)} nodes have spec.podCIDR; set "
            "clusters[].ipam to kubernetes (after fixing node CIDR allocation) or cluster-pool")


def check(plan: StackPlan, connect_to: Connect = connect) -> list[Facts]:
    out: list[Facts] = []
    for cluster in plan.clusters:
        if cluster.existing is None:
            continue
        try:
            api = connect_to(cluster)
        except (ValueError, KeyError, OSError) as err:  # kubeconfig the stdlib client cannot use
            out.append(Facts(cluster.name, problems=[f"cannot use the kubeconfig (context "
                                                     f"{cluster.existing.context!r}): {err}"]))
            continue
        try:
            out.append(check_cluster(plan, cluster, api))
        finally:
            close = getattr(api, "close", None)
            if close is not None:
                close()
    return out


def resolve(plan: StackPlan, facts: list[Facts]) -> StackPlan:
    """The plan with ``ipam: auto`` replaced by what the preflight found."""
    by_name = {f.cluster: f for f in facts if f.ipam is not None}
    if not by_name:
        return plan
    clusters = []
    for c in plan.clusters:
        f = by_name.get(c.name)
        if f is not None and c.existing is not None and f.ipam is not None:
            c = dataclasses.replace(c, existing=dataclasses.replace(c.existing, ipam=f.ipam,
                                                                    ipam_reason=f.ipam_reason))
        clusters.append(c)
    return dataclasses.replace(plan, clusters=tuple(clusters))


def run(plan: StackPlan, host: preflight.Host | None = None,
        connect_to: Connect | None = None) -> preflight.Preflighted:
    """Host preflight (kind clusters) + existing clusters' preflight; every problem at once.

    Returns the plan with the existing clusters' facts resolved (no-op under Pulumi mocks)
    and the host's facts (the daemon MTU) when there are kind clusters.
    """
    problems: list[str] = []
    host_facts: preflight.HostFacts | None = None
    kinds = tuple(c for c in plan.clusters if c.source == "kind")
    if kinds:  # the host checks (docker, kind, inotify) concern kind clusters only
        kind_plan = plan if len(kinds) == len(plan.clusters) else dataclasses.replace(plan, clusters=kinds)
        try:
            host_facts = preflight.run(kind_plan) if host is None else preflight.run(kind_plan, host)
        except preflight.PreflightError as err:
            problems += err.problems
    facts: list[Facts] = []
    if connect_to is not None or not preflight.under_pulumi_mocks():  # a mocked engine reaches no cluster
        facts = check(plan, connect_to or connect)
    for f in facts:
        problems += [f"cluster {f.cluster!r}: {p}" for p in f.problems]
        for note in f.notes:
            print(f"kindmesh preflight: cluster {f.cluster!r}: {note}")
    if problems:
        raise preflight.PreflightError(problems)
    return preflight.Preflighted(resolve(plan, facts), host_facts)
