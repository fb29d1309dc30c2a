"""Legacy: only so stacks created before the gates became commands can drop their old gates.

Until then the readiness gates were dynamic resources served by these providers. The engine
loads a dynamic provider by module path and class name from the state, also to *delete* a
resource the program no longer declares; without this module the first ``up`` after the
change could not remove an old gate. Nothing in the program uses these classes: the gates
are ``local.Command`` processes now (see ``ClusterTarget.gate`` and ``stacks/gate_cmd.py``).
Deleting an old gate does nothing (a gate never left anything behind).
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import DiffResult, ReadResult, ResourceProvider


class _RetiredGateProvider(ResourceProvider):
    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None


class MetalLBWebhookGateProvider(_RetiredGateProvider):
    pass


class RolloutGateProvider(_RetiredGateProvider):
    pass
