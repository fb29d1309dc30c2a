"""Readiness gates: wait on a condition, bounded, with a clear error when it never holds.

The MetalLB gate replaces the tutorials' fixed four-minute sleep: MetalLB's validating webhook
rejects IPAddressPools ("failed calling webhook … connection refused") until the
controller serves it. The gate asks the API server for a *server-side dry-run* create of
the very pool we are about to apply; that request goes through the webhook, so its
success is the readiness we need. Between attempts it does not sleep: it watches the
webhook service's EndpointSlices and retries when they change (or when the backoff
bound passes). A rejection that is not about reachability (the webhook *denied* the
pool) fails at once with the webhook's own message.

Pure logic with an injectable API and clock; no ``pulumi`` import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stacks.kubeapi import KubeError

WEBHOOK_SERVICE = "metallb-webhook-service"
RETRYABLE_FRAGMENTS = (
    "failed calling webhook",
    "connection refused",
    "no endpoints available",
    "context deadline exceeded",
    "i/o timeout",
    "x509",  # the controller has not injected its serving certificate yet
    "could not find the requested resource",  # CRD not established yet
    "service unavailable",
    "eof",
)


class Api(Protocol):
    def dry_run_create(self, path: str, obj: dict[str, Any]) -> Any: ...

    def wait_for_change(self, path: str, timeout_seconds: int) -> bool: ...


class GateError(RuntimeError):
    pass


@dataclass
class GateResult:
    attempts: int
    waited: float
    errors: list[str] = field(default_factory=list)


def is_retryable(err: KubeError) -> bool:
    if err.status in (0, 404, 429, 500, 502, 503, 504):
        text = err.message.lower()
        return err.status in (0, 429, 502, 503, 504) or any(f in text for f in RETRYABLE_FRAGMENTS)
    return False


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
    max_attempts: int = 60,
    first_backoff: int = 2,
    max_backoff: int = 20,
    clock: Callable[[], float] = time.monotonic,
) -> GateResult:
    """Return once the webhook accepts ``pool`` (dry run); raise GateError naming the cluster."""
    start = clock()
    namespace = pool["metadata"]["namespace"]
    slices = (
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        f"?labelSelector=kubernetes.io%2Fservice-name%3D{WEBHOOK_SERVICE}"
    )
    path = collection_path(pool)
    errors: list[str] = []
    backoff = first_backoff
    attempt = 0
    while True:
        attempt += 1
        try:
            api.dry_run_create(path, pool)
            return GateResult(attempts=attempt, waited=clock() - start, errors=errors)
        except KubeError as err:
            if err.status == 409:  # already exists: the webhook admitted it before
                return GateResult(attempts=attempt, waited=clock() - start, errors=errors)
            errors.append(str(err))
            if not is_retryable(err):
                raise GateError(
                    f"MetalLB in cluster {cluster!r} rejected the address pool {pool['spec']['addresses']}: "
                    f"{err.message}"
                ) from err
        elapsed = clock() - start
        if attempt >= max_attempts or elapsed >= timeout:
            raise GateError(
                f"MetalLB's webhook in cluster {cluster!r} did not accept the address pool after "
                f"{attempt} attempts in {elapsed:.0f}s (limit {timeout:.0f}s); last error: {errors[-1]}. "
                f"Check the controller: kubectl -n {namespace} get pods,endpointslices"
            )
        bound = int(max(1, min(backoff, timeout - elapsed)))
        try:
            api.wait_for_change(slices, bound)
        except KubeError as err:
            errors.append(str(err))
        backoff = min(backoff * 2, max_backoff)


# --------------------------------------------------------------------------- rollouts
WORKLOAD_PATHS = {
    "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
}


class ReadApi(Api, Protocol):
    def get(self, path: str) -> Any: ...


def workload_ready(obj: dict[str, Any]) -> tuple[bool, str]:
    """Rollout readiness of a DaemonSet or Deployment, with a reason when not ready."""
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, "controller has not observed the latest spec yet"
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        ready = status.get("numberReady", 0)
        updated = status.get("updatedNumberScheduled", 0)
        if desired == 0:
            return False, "no pods scheduled yet"
        if updated < desired or ready < desired:
            return False, f"{ready}/{desired} pods ready, {updated}/{desired} updated"
        return True, f"{ready}/{desired} pods ready"
    if kind == "Deployment":
        want = (obj.get("spec") or {}).get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        available = status.get("availableReplicas", 0)
        if updated < want or available < want:
            return False, f"{available}/{want} replicas available, {updated}/{want} updated"
        return True, f"{available}/{want} replicas available"
    return False, f"unsupported kind {kind!r}"


def wait_for_rollouts(
    api: ReadApi,
    cluster: str,
    workloads: list[dict[str, Any]],
    *,
    timeout: float = 900.0,
    first_backoff: int = 5,
    max_backoff: int = 30,
    clock: Callable[[], float] = time.monotonic,
) -> GateResult:
    """Wait until every workload ``{kind, namespace, name, optional}`` is rolled out.

    Between checks it watches the workload's collection (returns on the next change or
    at the backoff bound). An ``optional`` workload that does not exist is skipped.
    """
    start = clock()
    attempts = 0
    errors: list[str] = []
    for w in workloads:
        base = WORKLOAD_PATHS[w["kind"]].format(ns=w["namespace"])
        path = f"{base}/{w['name']}"
        watch = f"{base}?fieldSelector=metadata.name%3D{w['name']}"
        backoff = first_backoff
        while True:
            attempts += 1
            reason = ""
            try:
                obj = api.get(path).body
                ok, reason = workload_ready(obj)
                if ok:
                    break
            except KubeError as err:
                if err.status == 404 and w.get("optional"):
                    break
                reason = str(err)
                if not (err.status == 404 or is_retryable(err)):
                    raise GateError(f"cannot read {w['kind']} {w['namespace']}/{w['name']} in cluster {cluster!r}: {err}") from err
            errors.append(reason)
            elapsed = clock() - start
            if elapsed >= timeout:
                raise GateError(
                    f"{w['kind']} {w['namespace']}/{w['name']} in cluster {cluster!r} was not ready after "
                    f"{elapsed:.0f}s (limit {timeout:.0f}s): {reason}. "
                    f"Look at: kubectl -n {w['namespace']} describe {w['kind'].lower()} {w['name']}"
                )
            try:
                api.wait_for_change(watch, int(max(1, min(backoff, timeout - elapsed))))
            except KubeError as err:
                errors.append(str(err))
            backoff = min(backoff * 2, max_backoff)
    return GateResult(attempts=attempts, waited=clock() - start, errors=errors)
