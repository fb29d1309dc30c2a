"""Dynamic providers for readiness gates (run in the engine's provider process).

Both gates wait on a condition through the Kubernetes API (watch + bounded backoff, no
fixed sleeps) and fail with an error that names the cluster; see stacks/gates.py.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from stacks.gates import wait_for_metallb_webhook, wait_for_rollouts
from stacks.kubeapi import KubeClient

REPLACE_ON = ("kubeconfig", "cluster", "pool", "workloads", "revision")


def _diff(olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
    replaces = [k for k in REPLACE_ON if k in news and olds.get(k) != news.get(k)]
    changed = bool(replaces) or olds.get("timeout") != news.get("timeout")
    return DiffResult(changes=changed, replaces=replaces)


class MetalLBWebhookGateProvider(ResourceProvider):
    """Created once MetalLB's webhook admits the cluster's pool (server-side dry run)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = KubeClient(props["kubeconfig"])
        try:
            result = wait_for_metallb_webhook(
                client, props["cluster"], props["pool"], timeout=float(props.get("timeout") or 300)
            )
        finally:
            client.close()
        return CreateResult(id_=f"{props['cluster']}-metallb-webhook", outs={**props, "attempts": result.attempts})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return _diff(olds, news)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**olds, **news})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None


class RolloutGateProvider(ResourceProvider):
    """Created once the listed DaemonSets/Deployments are rolled out and ready.

    Re-runs (replace) whenever the release it guards gets a new revision.
    """

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = KubeClient(props["kubeconfig"])
        try:
            result = wait_for_rollouts(
                client, props["cluster"], list(props["workloads"]), timeout=float(props.get("timeout") or 900)
            )
        finally:
            client.close()
        return CreateResult(id_=f"{props['cluster']}-{props['name']}-rollout", outs={**props, "attempts": result.attempts})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return _diff(olds, news)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**olds, **news})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None
