"""Dynamic providers for readiness gates (run in the engine's provider process).

Both gates wait on a condition through the Kubernetes API (watch + bounded backoff, no
fixed sleeps) and fail with an error that names the cluster; see stacks/gates.py. When
what a gate guards changes (a new release revision, another chart version) the gate is
*updated* in place, which waits again; it is replaced only when it points at another
cluster or object.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from stacks.gates import GateResult, wait_for_metallb_webhook, wait_for_rollouts
from stacks.kubeapi import KubeClient

REPLACE_ON = ("kubeconfig", "cluster", "pool", "workloads")
UPDATE_ON = ("revision", "chart_version", "timeout")


class _GateProvider(ResourceProvider):
    suffix = "gate"

    def wait(self, client: KubeClient, props: dict[str, Any]) -> GateResult:
        raise NotImplementedError

    def _wait(self, props: dict[str, Any]) -> dict[str, Any]:
        client = KubeClient(props["kubeconfig"])
        try:
            result = self.wait(client, props)
        finally:
            client.close()
        return {**props, "attempts": result.attempts}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['cluster']}-{self.suffix}", outs=self._wait(props))

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_ON if olds.get(k) != news.get(k)]
        updates = [k for k in UPDATE_ON if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(replaces or updates), replaces=replaces)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """What the gate guards changed (e.g. a new Helm revision): wait for it again."""
        return UpdateResult(outs=self._wait(news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None


class MetalLBWebhookGateProvider(_GateProvider):
    """Created once MetalLB's webhook admits the cluster's pool (server-side dry run)."""

    suffix = "metallb-webhook"

    def wait(self, client: KubeClient, props: dict[str, Any]) -> GateResult:
        return wait_for_metallb_webhook(
            client, props["cluster"], props["pool"], timeout=float(props.get("timeout") or 300)
        )


class RolloutGateProvider(_GateProvider):
    """Created once the listed DaemonSets/Deployments are rolled out and ready.

    Re-runs (replace) whenever the release it guards gets a new revision.
    """

    suffix = "rollout"

    def wait(self, client: KubeClient, props: dict[str, Any]) -> GateResult:
        return wait_for_rollouts(
            client, props["cluster"], list(props["workloads"]), timeout=float(props.get("timeout") or 900)
        )
