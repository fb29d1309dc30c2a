"""What real controllers do in a cluster and kwok does not — the one documented place.

The engine tier runs kindmesh against real API servers whose nodes and pods are simulated
(kwok marks pods Running/Ready; kube-controller-manager and kube-scheduler are real). Three
things the program depends on come from controllers that do not run there; this process
plays them, per cluster, and nothing else does (never the program under test):

1. **Cilium's operator installs Cilium's CRDs** (the chart ships none): once a
   ``cilium-operator`` Deployment exists, the CRDs are created — CiliumNetworkPolicy with
   its real schema from ``../shared/upstream/cilium-crds/`` when present, the others with an
   open schema.
2. **MetalLB's controller serves its validating webhook**: the API server's egress
   selector (``cluster`` egress → HTTP CONNECT to this process on 127.0.0.1) sends every
   webhook call here; the CONNECT target is the service's DNS name, so nothing is ever
   dialled. Only once the ``controller`` Deployment of MetalLB is available does this
   process (like MetalLB's cert rotation) put its CA into the webhook configuration's
   ``caBundle`` and answer: before that, pools are rejected as on a real cluster
   ("failed calling webhook"). Pools are validated the way MetalLB does the basics
   (each address a CIDR or an ``a-b`` range, no overlap with another pool).
3. **MetalLB's controller assigns LoadBalancer IPs**: a LoadBalancer Service gets the IPs
   in ``metallb.io/loadBalancerIPs`` (or ``spec.loadBalancerIP``, which MetalLB honours too)
   when they lie in a pool and are free, else the lowest
   free IP of an auto-assign pool (``metallb.io/address-pool`` picks the pool); only while
   MetalLB's controller is available.

Knobs (the tier's fault scenarios turn a cluster's world against the program; each is a file
in the cluster's state directory ``$KINDMESH_WORLD/clusters/<kind name>/``, read on every
pass of the loop, so creating or removing it takes effect within a second):

* ``hold-cilium-not-ready``: Cilium's agent pods (``k8s-app=cilium``) are held not ready —
  their ``Ready`` and ``ContainersReady`` conditions patched to ``False`` (reason
  ``KindmeshWorldHeld``), as a crash-looping agent would be; the DaemonSet controller then
  counts them unready, so the Cilium rollout gate never passes. kwok sets a pod's status
  once (while it has no pod IP) and does not put it back. Removing the file puts the held
  conditions back to ``True`` (the agent recovered).
* ``pause-lb-assignment``: while it exists, no LoadBalancer IP is assigned (MetalLB's
  controller up but assigning nothing: a Service whose status is cleared stays without an IP);
  removed, assignment resumes on the next loop.

Run as ``python -m tests.integration.world --cluster NAME`` (fake kind starts it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.server
import ipaddress
import json
import logging
import random
import socket
import socketserver
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.integration import simcluster

log = logging.getLogger("world")
PAUSE_LB = "pause-lb-assignment"  # a knob (module docstring)
SHARED = Path(__file__).resolve().parents[3] / "shared" / "upstream"
CILIUM_CRDS = (  # (plural, kind, scope); the operator registers these
    ("ciliumnetworkpolicies", "CiliumNetworkPolicy", "Namespaced"),
    ("ciliumclusterwidenetworkpolicies", "CiliumClusterwideNetworkPolicy", "Cluster"),
    ("ciliumendpoints", "CiliumEndpoint", "Namespaced"),
    ("ciliumidentities", "CiliumIdentity", "Cluster"),
    ("ciliumnodes", "CiliumNode", "Cluster"),
    ("ciliumnodeconfigs", "CiliumNodeConfig", "Namespaced"),
    ("ciliumcidrgroups", "CiliumCIDRGroup", "Cluster"),
    ("ciliumloadbalancerippools", "CiliumLoadBalancerIPPool", "Cluster"),
    ("ciliumlocalredirectpolicies", "CiliumLocalRedirectPolicy", "Namespaced"),
    ("ciliuml2announcementpolicies", "CiliumL2AnnouncementPolicy", "Cluster"),
    ("ciliumpodippools", "CiliumPodIPPool", "Cluster"),
    ("ciliumendpointslices", "CiliumEndpointSlice", "Cluster"),
)


HOLD_CILIUM = "hold-cilium-not-ready"
HELD_REASON = "KindmeshWorldHeld"
HELD_CONDITIONS = ("Ready", "ContainersReady")


def held_ready_patch(pod: dict[str, Any], hold: bool) -> dict[str, Any] | None:
    """The status patch that holds a pod not ready (``hold``) or lets a held one go; None when
    the pod already is as wanted (a pod not held by the world is never touched on release)."""
    conditions = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    if hold:
        if all(conditions.get(t, {}).get("status") == "False" for t in HELD_CONDITIONS):
            return None
        status, reason, message = "False", HELD_REASON, "held not ready by the engine tier's world (hold-cilium-not-ready)"
    else:
        if not any(conditions.get(t, {}).get("reason") == HELD_REASON for t in HELD_CONDITIONS):
            return None
        status, reason, message = "True", "", ""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"status": {"conditions": [{"type": t, "status": status, "reason": reason, "message": message,
                                       "lastTransitionTime": now} for t in HELD_CONDITIONS]}}


class World:
    def __init__(self, name: str):
        self.state = simcluster.ClusterState.load(name)
        if self.state is None:
            raise SystemExit(f"no simulated cluster {name!r}")
        self.name = name
        self.dir = self.state.dir
        pki = self.dir / "pki"
        self.ca = simcluster.make_ca("metallb-webhook-ca (world)")
        simcluster.write_pair(pki, "world-ca", self.ca)
        self.ca_pem = (pki / "world-ca.crt").read_bytes()
        self.api_client: client.ApiClient | None = None
        self.metallb_ready = False
        self.metallb_namespace = ""
        self.crds_done = False
        self.holding = False
        self.events = open(self.dir / "world-events.jsonl", "a", buffering=1)  # noqa: SIM115 - open for the process lifetime

    def record(self, what: str, **kw: Any) -> None:
        self.events.write(json.dumps({"t": time.time(), "what": what, **kw}, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ kubernetes access
    def api(self) -> client.ApiClient:
        if self.api_client is None:
            self.api_client = config.new_client_from_config(str(self.dir / "admin.kubeconfig"))
        return self.api_client

    # ------------------------------------------------------------------ 1. Cilium's CRDs
    def ensure_cilium_crds(self) -> None:
        if self.crds_done:
            return
        apps = client.AppsV1Api(self.api())
        deps = apps.list_deployment_for_all_namespaces(field_selector="metadata.name=cilium-operator").items
        if not deps:
            return
        ext = client.ApiextensionsV1Api(self.api())
        have = {c.metadata.name for c in ext.list_custom_resource_definition().items}
        real = SHARED / "cilium-crds" / "ciliumnetworkpolicies.yaml"
        for plural, kind, scope in CILIUM_CRDS:
            name = f"{plural}.cilium.io"
            if name in have:
                continue
            if plural == "ciliumnetworkpolicies" and real.exists():
                body = yaml.safe_load(real.read_text())
            else:
                body = {
                    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                    "metadata": {"name": name},
                    "spec": {"group": "cilium.io", "scope": scope,
                             "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                                       "listKind": f"{kind}List"},
                             "versions": [{"name": "v2", "served": True, "storage": True,
                                           "subresources": {"status": {}},
                                           "schema": {"openAPIV3Schema": {"type": "object",
                                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
                }
            try:
                ext.create_custom_resource_definition(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        self.crds_done = True
        self.record("cilium-crds", namespace=deps[0].metadata.namespace)

    # ------------------------------------------------------------------ 2. MetalLB's webhook
    def check_metallb(self) -> None:
        apps = client.AppsV1Api(self.api())
        ready = False
        for dep in apps.list_deployment_for_all_namespaces(label_selector="app.kubernetes.io/name=metallb").items:
            if (dep.metadata.labels or {}).get("app.kubernetes.io/component") == "controller":
                self.metallb_namespace = dep.metadata.namespace
                ready = bool(dep.status and (dep.status.available_replicas or 0) >= 1)
        if ready and not self.metallb_ready:
            self.record("metallb-controller-available", namespace=self.metallb_namespace)
        self.metallb_ready = ready
        if not ready:
            return
        adm = client.AdmissionregistrationV1Api(self.api())
        ca = base64.b64encode(self.ca_pem).decode()
        for cfg in adm.list_validating_webhook_configuration().items:
            patch, changed = [], False
            for hook in cfg.webhooks or []:
                svc = hook.client_config.service
                own = svc is not None and svc.namespace == self.metallb_namespace and "metallb" in (svc.name or "")
                if own and hook.client_config.ca_bundle != ca:
                    changed = True
                patch.append({"name": hook.name, "clientConfig": {"caBundle": ca}} if own else {"name": hook.name})
            if changed:
                body = {"webhooks": [dict(p, **{"admissionReviewVersions": h.admission_review_versions,
                                                "sideEffects": h.side_effects})
                                     for p, h in zip(patch, cfg.webhooks, strict=True)]}
                adm.patch_validating_webhook_configuration(cfg.metadata.name, body)
                self.record("webhook-cabundle", configuration=cfg.metadata.name)

    def service_host(self, target: str) -> str:
        """``<svc>.<ns>.svc`` for a CONNECT target: the API server resolves a webhook's
        service to its ClusterIP before it dials; the IP is only looked up, never dialled."""
        try:
            ipaddress.ip_address(target)
        except ValueError:
            return target
        core = client.CoreV1Api(self.api())
        for svc in core.list_service_for_all_namespaces().items:
            if svc.spec.cluster_ip == target:
                return f"{svc.metadata.name}.{svc.metadata.namespace}.svc"
        return target

    def serving_cert(self, host: str) -> ssl.SSLContext:
        cert, key = simcluster.issue(self.ca, host, dns=(host,), server=True)
        tmp = self.dir / "pki"
        simcluster.write_pair(tmp, "webhook-serving", (cert, key))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tmp / "webhook-serving.crt"), str(tmp / "webhook-serving.key"))
        return ctx

    def pools(self) -> list[dict[str, Any]]:
        co = client.CustomObjectsApi(self.api())
        try:
            return list(co.list_cluster_custom_object("metallb.io", "v1beta1", "ipaddresspools").get("items", []))
        except ApiException:
            return []

    def admit(self, review: dict[str, Any]) -> dict[str, Any]:
        req = review.get("request") or {}
        obj = req.get("object") or {}
        allowed, message = True, ""
        if obj.get("kind") == "IPAddressPool":
            try:
                mine = _ranges(obj.get("spec", {}).get("addresses") or [])
            except ValueError as exc:
                allowed, message = False, str(exc)
            else:
                for other in self.pools():
                    if other["metadata"]["name"] == obj.get("metadata", {}).get("name"):
                        continue
                    for a in mine:
                        for b in _ranges(other.get("spec", {}).get("addresses") or []):
                            if a[0] <= b[1] and b[0] <= a[1]:
                                allowed = False
                                message = (f"CIDR {a[0]}-{a[1]} in pool {obj['metadata'].get('name')} overlaps with "
                                           f"already defined CIDR in pool {other['metadata']['name']}")
        self.record("webhook-review", kind=obj.get("kind"), name=(obj.get("metadata") or {}).get("name"),
                    allowed=allowed, dry_run=bool(req.get("dryRun")))
        resp: dict[str, Any] = {"uid": req.get("uid"), "allowed": allowed}
        if not allowed:
            resp["status"] = {"code": 403, "message": message}
        return {"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"), "kind": "AdmissionReview",
                "response": resp}

    # ------------------------------------------------------------------ 3. LoadBalancer IPs
    def assign_load_balancers(self) -> None:
        if not self.metallb_ready or (self.dir / PAUSE_LB).exists():
            return
        core = client.CoreV1Api(self.api())
        pools = self.pools()
        if not pools:
            return
        services = core.list_service_for_all_namespaces().items
        used: set[str] = set()
        for svc in services:
            for ing in (svc.status.load_balancer.ingress or []) if svc.status and svc.status.load_balancer else []:
                used.add(ing.ip)
        for svc in services:
            if svc.spec.type != "LoadBalancer":
                continue
            if svc.status and svc.status.load_balancer and svc.status.load_balancer.ingress:
                continue
            ann = svc.metadata.annotations or {}
            wanted = [x.strip() for x in ann.get("metallb.io/loadBalancerIPs", "").split(",") if x.strip()]
            if not wanted and svc.spec.load_balancer_ip:  # MetalLB honours the (deprecated) spec field too
                wanted = [svc.spec.load_balancer_ip]
            candidates = [p for p in pools if p["metadata"]["name"] == ann.get("metallb.io/address-pool")] \
                if ann.get("metallb.io/address-pool") else pools
            ips: list[str] = []
            if wanted:
                if all(ip not in used and any(_contains(p, ip) for p in candidates) for ip in wanted):
                    ips = wanted
            else:
                for pool in sorted(candidates, key=lambda p: p["metadata"]["name"]):
                    if pool.get("spec", {}).get("autoAssign") is False and not ann.get("metallb.io/address-pool"):
                        continue
                    ip = _first_free(pool, used)
                    if ip:
                        ips = [ip]
                        break
            if not ips:
                continue
            body = {"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ips]}}}
            core.patch_namespaced_service_status(svc.metadata.name, svc.metadata.namespace, body)
            used.update(ips)
            self.record("loadbalancer-ip", service=f"{svc.metadata.namespace}/{svc.metadata.name}", ips=ips)

    # ------------------------------------------------------------------ knob: Cilium held not ready
    def hold_cilium(self) -> None:
        hold = (self.dir / HOLD_CILIUM).exists()
        if not hold and not self.holding:
            return
        core = client.CoreV1Api(self.api())
        resp = core.list_pod_for_all_namespaces(label_selector="k8s-app=cilium", _preload_content=False)
        for pod in json.loads(resp.data).get("items") or []:
            patch = held_ready_patch(pod, hold)
            if patch is None:
                continue
            meta = pod["metadata"]
            core.patch_namespaced_pod_status(meta["name"], meta["namespace"], patch)
            self.record("cilium-held" if hold else "cilium-released", pod=f"{meta['namespace']}/{meta['name']}")
        self.holding = hold

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        sock = simcluster.egress_socket(self.state)
        if sock.exists():
            sock.unlink()
        proxy = EgressProxy(str(sock), self)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        (self.dir / "world.ready").write_text(f"{time.time()}\n")  # simcluster.start waits for it
        delay = 0.1
        while True:
            try:
                self.ensure_cilium_crds()
                self.check_metallb()
                self.assign_load_balancers()
                self.hold_cilium()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - the API server may be starting or stopping
                log.warning("world loop: %s: %s", type(exc).__name__, exc)
                delay = min(delay * 2, 2.0)
            time.sleep(delay * (0.8 + 0.4 * random.random()))


def _ranges(addresses: list[str]) -> list[tuple[int, int]]:
    out = []
    for addr in addresses:
        if "-" in addr:
            lo_s, hi_s = addr.split("-", 1)
            lo, hi = ipaddress.ip_address(lo_s.strip()), ipaddress.ip_address(hi_s.strip())
            if int(hi) < int(lo):
                raise ValueError(f"invalid IP range {addr!r}: start is after end")
            out.append((int(lo), int(hi)))
        else:
            try:
                net = ipaddress.ip_network(addr, strict=False)
            except ValueError:
                raise ValueError(f"invalid CIDR {addr!r} in pool") from None
            out.append((int(net.network_address), int(net.broadcast_address)))
    return out


def _contains(pool: dict[str, Any], ip: str) -> bool:
    value = int(ipaddress.ip_address(ip))
    return any(lo <= value <= hi for lo, hi in _ranges(pool.get("spec", {}).get("addresses") or []))


def _first_free(pool: dict[str, Any], used: set[str]) -> str | None:
    for lo, hi in _ranges(pool.get("spec", {}).get("addresses") or []):
        for value in range(lo, min(hi, lo + 4096) + 1):
            ip = str(ipaddress.ip_address(value))
            if ip not in used:
                return ip
    return None


class EgressProxy(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """HTTP CONNECT for the API server's ``cluster`` egress: webhook calls end here."""

    daemon_threads = True

    def __init__(self, addr: str, world: World):
        self.world = world
        super().__init__(addr, ConnectHandler)


class ConnectHandler(socketserver.StreamRequestHandler):
    server: EgressProxy

    def handle(self) -> None:
        line = self.rfile.readline(8192).decode("latin-1").strip()
        while self.rfile.readline(8192).strip():
            pass
        parts = line.split()
        world = self.server.world
        if len(parts) < 2 or parts[0] != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        host = world.service_host(parts[1].rsplit(":", 1)[0])
        svc_ns = host.split(".")[:2]
        world.record("egress-connect", target=parts[1])
        if not (world.metallb_ready and len(svc_ns) == 2 and svc_ns[1] == world.metallb_namespace
                and "metallb" in svc_ns[0]):
            # nothing listens there yet (or at all): the API server sees a refused connection
            self.wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        try:
            tls = world.serving_cert(host).wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            world.record("webhook-tls-failed", error=str(exc))
            return
        handler = type("Bound", (WebhookHandler,), {"world": world})
        try:
            handler(tls, ("egress", 0), _NoServer())
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                tls.close()


class _NoServer:
    pass


class WebhookHandler(http.server.BaseHTTPRequestHandler):
    world: World
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        review = json.loads(self.rfile.read(length) or b"{}")
        data = json.dumps(self.world.admit(review)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="world")
    parser.add_argument("--cluster", required=True)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    socket.setdefaulttimeout(30)
    World(ns.cluster).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
