"""Readiness gates: wait on a condition, bounded, with a clear error when it never holds.

The MetalLB gate replaces the tutorials' fixed four-minute sleep: MetalLB's validating webhook
rejects IPAddressPools ("failed calling webhook … connection refused") until the
controller serves it. The gate asks the API server for a *server-side dry-run* create of
the very pool we are about to apply; that request goes through the webhook, so its
success is the readiness we need. A rejection that is not about reachability (the webhook
*denied* the pool) fails at once with the webhook's own message; an authentication or
permission failure fails at once as what it is, never as a MetalLB rejection.

Between attempts a gate waits on a watch (the webhook's EndpointSlices, the workload),
which returns on the next change, bounded by an exponential backoff with jitter; when the
watch itself fails fast (503, refused) the rest of the bound is slept, so a failing API
is never hammered. One deadline bounds the whole wait, every request included.

Pure logic with an injectable API, clock, sleep and randomness; no ``pulumi`` import.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kindmesh.deploy.kubeapi import REQUEST_CAP, KubeError, Response, snippet

WEBHOOK_SERVICE = "metallb-webhook-service"
RETRYABLE_FRAGMENTS = (
    "failed calling webhook",
    "connection refused",
    "no endpoints available",
    "context deadline exceeded",
    "i/o timeout",
    "x509",  # the controller has not injected its serving certificate yet
    "could not find the requested resource",  # CRD not established yet
    "etcdserver: leader changed",
    "service unavailable",
)
MIN_PAUSE = 0.5  # even when a watch reports a change at once, retries are this far apart


class Api(Protocol):
    def dry_run_create(self, path: str, obj: dict[str, Any], *, timeout: float) -> Response: ...

    def get(self, path: str, *, timeout: float) -> Response: ...

    def wait_for_change(self, path: str, timeout: float) -> bool: ...


class GateError(RuntimeError):
    pass


@dataclass
class Clock:
    """Time for the gates; tests inject fakes."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = random.random


@dataclass
class GateResult:
    attempts: int
    waited: float
    errors: list[str] = field(default_factory=list)


def is_retryable(err: KubeError) -> bool:
    """Transient: no reply, throttled, server-side/gateway errors, webhook not reachable yet."""
    if err.status in (0, 408, 429) or err.status >= 500:
        return True
    text = err.message.lower()
    return any(f in text for f in RETRYABLE_FRAGMENTS)


def is_auth_failure(err: KubeError) -> bool:
    """401, or a 403 from authorization (RBAC) rather than from an admission webhook."""
    if err.status == 401:
        return True
    return err.status == 403 and "admission webhook" not in err.message.lower() and "denied" not in err.message.lower()


def auth_error(cluster: str, err: KubeError, doing: str) -> GateError:
    what = "authenticate to" if err.status == 401 else "get permission from"
    return GateError(
        f"cannot {what} the API server of cluster {cluster!r} while {doing}: {err}. "
        "Check the kubeconfig's user (token, client certificate or exec plugin) and its RBAC permissions"
    )


class Backoff:
    """Exponential bounds with equal jitter: each delay lies in [d/2, d], d doubling to ``cap``."""

    def __init__(self, first: float, cap: float, rand: Callable[[], float]):
        self.next_bound, self.cap, self.rand = first, cap, rand

    def delay(self) -> float:
        bound = self.next_bound
        self.next_bound = min(self.cap, bound * 2)
        return bound / 2 + self.rand() * bound / 2


def _pause(api: Api, watch: str, bound: float, clock: Clock) -> str | None:
    """Wait up to ``bound`` seconds, returning early when the watch sees a change.

    Returns the watch's error, if any. A watch that fails or returns at once does not
    shorten the pause below MIN_PAUSE (or the rest of the bound when it failed).
    """
    if bound <= 0:
        return None
    start = clock.now()
    error = None
    changed = False
    try:
        changed = api.wait_for_change(watch, bound)
    except KubeError as err:
        error = str(err)
    spent = clock.now() - start
    rest = (min(bound, MIN_PAUSE) if changed else bound) - spent
    if rest > 0:
        clock.sleep(rest)
    return error


def _watch_note(error: str) -> str:
    return f" (waiting on a watch: {error})" if error else ""


def collection_path(obj: dict[str, Any]) -> str:
    group_version = obj["apiVersion"]
    plural = obj["kind"].lower() + ("es" if obj["kind"].lower().endswith("s") else "s")
    ns = obj["metadata"]["namespace"]
    return f"/apis/{group_version}/namespaces/{ns}/{plural}"


def wait_for_metallb_webhook(
    api: Api,
    cluster: str,
    pool: dict[str, Any],
    *,
    timeout: float = 300.0,
    first_backoff: float = 1.0,
    max_backoff: float = 20.0,
    clock: Clock | None = None,
) -> GateResult:
    """Return once the webhook accepts ``pool`` (dry run); raise GateError naming the cluster."""
    clock = clock or Clock()
    start = clock.now()
    deadline = start + timeout
    namespace = pool["metadata"]["namespace"]
    slices = (
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        f"?labelSelector=kubernetes.io%2Fservice-name%3D{WEBHOOK_SERVICE}"
    )
    path = collection_path(pool)
    errors: list[str] = []
    backoff = Backoff(first_backoff, max_backoff, clock.random)
    attempt = 0
    last = "no attempt finished"
    last_watch = ""
    while True:
        left = deadline - clock.now()
        if left <= 0:
            break
        attempt += 1
        try:
            api.dry_run_create(path, pool, timeout=min(left, REQUEST_CAP))
            return GateResult(attempts=attempt, waited=clock.now() - start, errors=errors)
        except KubeError as err:
            if err.status == 409:  # already exists: the webhook admitted it before
                return GateResult(attempts=attempt, waited=clock.now() - start, errors=errors)
            if is_auth_failure(err):
                raise auth_error(cluster, err, "asking MetalLB's webhook to admit the address pool") from None
            if not is_retryable(err):
                raise GateError(
                    f"MetalLB in cluster {cluster!r} rejected the address pool {pool['spec']['addresses']}: "
                    f"{err.message}"
                ) from None
            last = str(err)
            errors.append(last)
        watch_error = _pause(api, slices, min(backoff.delay(), deadline - clock.now()), clock)
        if watch_error:
            errors.append(watch_error)
            last_watch = watch_error
    elapsed = clock.now() - start
    raise GateError(
        f"MetalLB's webhook in cluster {cluster!r} did not accept the address pool after "
        f"{attempt} attempts in {elapsed:.0f}s (limit {timeout:.0f}s); last seen: {last}"
        f"{_watch_note(last_watch)}. "
        f"Check the controller: kubectl -n {namespace} get pods,endpointslices"
    )


# --------------------------------------------------------------------------- rollouts
WORKLOAD_PATHS = {
    "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def workload_ready(obj: dict[str, Any]) -> tuple[bool, str]:
    """Rollout readiness of a DaemonSet or Deployment, with a reason when not ready."""
    kind = obj.get("kind", "")
    meta = _mapping(obj.get("metadata"))
    status = _mapping(obj.get("status"))
    if _int(status.get("observedGeneration")) < _int(meta.get("generation")):
        return False, "controller has not observed the latest spec yet"
    if kind == "DaemonSet":
        desired = _int(status.get("desiredNumberScheduled"))
        ready = _int(status.get("numberReady"))
        updated = _int(status.get("updatedNumberScheduled"))
        if desired == 0:
            return False, "no pods scheduled yet"
        if updated < desired or ready < desired:
            return False, f"{ready}/{desired} pods ready, {updated}/{desired} updated"
        return True, f"{ready}/{desired} pods ready"
    if kind == "Deployment":
        spec = _mapping(obj.get("spec"))
        want = spec.get("replicas", 1)
        want = want if isinstance(want, int) else 1
        updated = _int(status.get("updatedReplicas"))
        available = _int(status.get("availableReplicas"))
        if updated < want or available < want:
            return False, f"{available}/{want} replicas available, {updated}/{want} updated"
        return True, f"{available}/{want} replicas available"
    return False, f"unexpected object kind {snippet(kind, 60)!r}"


@dataclass(frozen=True)
class _Target:
    """One object a gate waits on: where to read it, where to watch it, when it is done."""

    label: str  # e.g. "DaemonSet kube-system/cilium"
    path: str
    watch: str
    ready: Callable[[dict[str, Any]], tuple[bool, str]]
    not_done: str  # "was not ready", "did not get its planned LoadBalancer IP 10.0.0.1"
    hint: str  # where to look when it never is
    optional: bool = False  # absent (404) counts as done


def _wait_each(api: Api, cluster: str, targets: list[_Target], *, timeout: float, first_backoff: float,
               max_backoff: float, clock: Clock) -> GateResult:
    """Wait until every target is done, one deadline for all; between checks, watch the target
    (returns on its next change or at the backoff bound); report what was last seen."""
    start = clock.now()
    deadline = start + timeout
    attempts = 0
    errors: list[str] = []
    for t in targets:
        backoff = Backoff(first_backoff, max_backoff, clock.random)
        reason = "not read yet"
        last_watch = ""
        while True:
            left = deadline - clock.now()
            if left <= 0:
                elapsed = clock.now() - start
                raise GateError(
                    f"{t.label} in cluster {cluster!r} {t.not_done} after {attempts} checks in {elapsed:.0f}s "
                    f"(limit {timeout:.0f}s); last seen: {reason}{_watch_note(last_watch)}. {t.hint}"
                )
            attempts += 1
            try:
                ok, reason = t.ready(api.get(t.path, timeout=min(left, REQUEST_CAP)).body)
                if ok:
                    break
            except KubeError as err:
                if err.status == 404 and t.optional:
                    break
                if is_auth_failure(err):
                    raise auth_error(cluster, err, f"reading {t.label}") from None
                if not (err.status == 404 or is_retryable(err)):
                    raise GateError(f"cannot read {t.label} in cluster {cluster!r}: {err}") from None
                reason = "not created yet" if err.status == 404 else str(err)
            errors.append(reason)
            watch_error = _pause(api, t.watch, min(backoff.delay(), deadline - clock.now()), clock)
            if watch_error:
                errors.append(watch_error)
                last_watch = watch_error
    return GateResult(attempts=attempts, waited=clock.now() - start, errors=errors)


def wait_for_rollouts(
    api: Api,
    cluster: str,
    workloads: list[dict[str, Any]],
    *,
    timeout: float = 900.0,
    first_backoff: float = 2.0,
    max_backoff: float = 30.0,
    clock: Clock | None = None,
) -> GateResult:
    """Wait until every workload ``{kind, namespace, name, optional}`` is rolled out.

    Between checks it watches the workload (returns on its next change or at the backoff
    bound). An ``optional`` workload that does not exist is skipped. One deadline for all.
    """
    targets = []
    for w in workloads:
        base = WORKLOAD_PATHS[w["kind"]].format(ns=w["namespace"])
        targets.append(_Target(
            label=f"{w['kind']} {w['namespace']}/{w['name']}",
            path=f"{base}/{w['name']}",
            watch=f"{base}?fieldSelector=metadata.name%3D{w['name']}",
            ready=workload_ready,
            not_done="was not ready",
            hint=f"Look at: kubectl -n {w['namespace']} describe {w['kind'].lower()} {w['name']}",
            optional=bool(w.get("optional")),
        ))
    return _wait_each(api, cluster, targets, timeout=timeout, first_backoff=first_backoff,
                      max_backoff=max_backoff, clock=clock or Clock())


# --------------------------------------------------------------------------- LoadBalancer IPs
SERVICES_PATH = "/api/v1/namespaces/{ns}/services"


def lb_ip_assigned(obj: dict[str, Any], ip: str) -> tuple[bool, str]:
    """Whether a Service got ``ip`` as LoadBalancer ingress (``status.loadBalancer.ingress[].ip``)."""
    spec = _mapping(obj.get("spec"))
    if spec.get("type") != "LoadBalancer":
        return False, f"the Service is of type {snippet(str(spec.get('type') or 'ClusterIP'), 40)}, not LoadBalancer"
    ingress = _mapping(_mapping(obj.get("status")).get("loadBalancer")).get("ingress")
    ips = [str(i.get("ip")) for i in ingress if isinstance(i, dict) and i.get("ip")] if isinstance(ingress, list) else []
    if ip in ips:
        return True, f"LoadBalancer IP {ip}"
    if ips:
        return False, f"it got {', '.join(ips[:4])} instead of the planned {ip}"
    return False, f"no LoadBalancer IP yet (planned {ip})"


def _lb_ready(obj: dict[str, Any], *, ip: str) -> tuple[bool, str]:
    return lb_ip_assigned(obj, ip)


def wait_for_lb_ips(
    api: Api,
    cluster: str,
    services: list[dict[str, Any]],
    *,
    timeout: float = 300.0,
    first_backoff: float = 1.0,
    max_backoff: float = 15.0,
    clock: Clock | None = None,
) -> GateResult:
    """Wait until every Service ``{namespace, name, ip}`` has its planned LoadBalancer IP.

    The mesh is only reachable at the IPs its peers were given: a Service that got another IP
    (another LoadBalancer Service took the planned one first) or none never meshes, though
    ``up`` would otherwise succeed. One deadline for all; watches between checks."""
    targets = []
    for svc in services:
        ns, name, ip = svc["namespace"], svc["name"], svc["ip"]
        base = SERVICES_PATH.format(ns=ns)
        targets.append(_Target(
            label=f"Service {ns}/{name}",
            path=f"{base}/{name}",
            watch=f"{base}?fieldSelector=metadata.name%3D{name}",
            ready=functools.partial(_lb_ready, ip=ip),
            not_done=f"did not get its planned LoadBalancer IP {ip}",
            hint=(f"Look at the Service's events (kubectl -n {ns} describe service {name}), at which Service "
                  f"holds {ip} (kubectl get services -A -o wide | grep -F {ip}), and at MetalLB's pools "
                  "(kubectl -n metallb-system get ipaddresspools)"),
        ))
    return _wait_each(api, cluster, targets, timeout=timeout, first_backoff=first_backoff,
                      max_backoff=max_backoff, clock=clock or Clock())


def wait_for_metallb(
    api: Api,
    cluster: str,
    pool: dict[str, Any],
    workloads: list[dict[str, Any]],
    *,
    timeout: float = 300.0,
    clock: Clock | None = None,
) -> GateResult:
    """MetalLB ready, under one deadline: its ``workloads`` rolled out (the controller and
    speakers; the release is installed without Helm's wait), then the webhook admits ``pool``."""
    clock = clock or Clock()
    start = clock.now()
    rolled = wait_for_rollouts(api, cluster, workloads, timeout=timeout, clock=clock) if workloads else None
    left = timeout - (clock.now() - start)
    if left <= 0:
        raise GateError(
            f"MetalLB in cluster {cluster!r} rolled out but no time was left (limit {timeout:.0f}s) to ask its "
            f"webhook to admit the address pool. Check the controller: kubectl -n {pool['metadata']['namespace']} "
            "get pods,endpointslices")
    admitted = wait_for_metallb_webhook(api, cluster, pool, timeout=left, clock=clock)
    before = rolled.attempts if rolled else 0
    return GateResult(attempts=before + admitted.attempts, waited=clock.now() - start,
                      errors=(rolled.errors if rolled else []) + admitted.errors)
