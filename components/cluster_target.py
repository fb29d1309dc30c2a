"""ClusterTarget: what every in-cluster component needs to place resources into one cluster."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from kindmesh import PACKAGE_HOME
from kindmesh.core.charts import chart_location

PROJECT_ROOT = PACKAGE_HOME  # where `python -m kindmesh.deploy.gate_cmd` resolves
GATE_KUBECONFIG_ENV = "KINDMESH_GATE_KUBECONFIG"  # = kindmesh.deploy.gate_cmd.KUBECONFIG_ENV
GATE_SPEC_ENV = "KINDMESH_GATE_SPEC"  # = kindmesh.deploy.gate_cmd.SPEC_ENV

# What every ``after`` field takes: nothing, one resource, or a sequence of them.
After = pulumi.Resource | Sequence[pulumi.Resource] | None


def after_list(after: object, field: str) -> list[pulumi.Resource]:
    """``after`` normalised: ``None`` -> ``[]``, one resource -> ``[it]``, a sequence -> a list.

    Anything else (a string, an Output, a resource name) is a ``TypeError`` naming ``field``."""
    if after is None:
        return []
    if isinstance(after, pulumi.Resource):
        return [after]
    if isinstance(after, (str, bytes)) or not isinstance(after, Sequence):
        raise TypeError(
            f"{field}: {type(after).__name__} is not a resource; pass a resource or a list of "
            "resources (e.g. after=[network]), not a name or an Output")
    items = list(after)
    for i, item in enumerate(items):
        if not isinstance(item, pulumi.Resource):
            raise TypeError(f"{field}[{i}]: {type(item).__name__} is not a resource; pass the resource object itself")
    return items


def check_cidr(value: object, field: str) -> None:
    """An IPv4 CIDR (kindmesh.core.collector's rule), else a ``ValueError``/``TypeError`` naming ``field``."""
    from kindmesh.core.collector import Collector  # the config's own validator

    if not isinstance(value, str):
        raise TypeError(f"{field}: expected an IPv4 CIDR string like '10.1.0.0/16', got {type(value).__name__}")
    c = Collector()
    c.cidr(field, value)
    if c.problems:
        raise ValueError(str(c.problems[0]))


def check_int(value: object, field: str, low: int, high: int | None = None) -> None:
    """An ``int`` (not ``bool``, not a numeric string) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field}: expected an int, got {type(value).__name__} {value!r}; write it as a number")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{field}: {value} is not in {bound}")


def reject_str(value: object, field: str, example: str) -> None:
    """A plain ``str`` where a sequence is expected would be split into characters: refuse it."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{field}: got the string {value!r}, expected a list; wrap it: {example}")


@dataclass(frozen=True)
class ClusterTarget:
    """One cluster as seen by the components that install into it.

    Attributes:
        provider: the cluster's explicit Kubernetes provider.
        kubeconfig: the cluster's kubeconfig (secret); the readiness gates use it.
        deleted_with: a resource whose deletion takes the cluster's contents with it (a kind
            cluster: destroy deletes the cluster, not object by object); ``None`` for a
            cluster that outlives the stack (an existing cluster: its objects are deleted).
    """

    provider: pulumi.ProviderResource
    kubeconfig: pulumi.Input[str]
    deleted_with: pulumi.Resource | None = None

    def opts(self, parent: pulumi.Resource, *depends: pulumi.Resource | None) -> pulumi.ResourceOptions:
        """Options of a Kubernetes resource in this cluster."""
        return pulumi.ResourceOptions(
            parent=parent, provider=self.provider, deleted_with=self.deleted_with,
            depends_on=[d for d in depends if d is not None],
        )

    def helm_release(
        self,
        name: str,
        parent: pulumi.Resource,
        *,
        chart: str,
        version: str,
        repo: str,
        namespace: str,
        values: pulumi.Input[dict[str, Any]],
        timeout: int,
        wait: bool,
        after: After,
        create_namespace: bool = False,
    ) -> k8s.helm.v3.Release:
        """A pinned Helm release (embedded Helm, no helm binary) in this cluster.

        ``repo``: a repository URL, or a local chart directory/archive (see
        :func:`kindmesh.core.charts.chart_location`).
        """
        where = chart_location(repo, chart, version)
        return k8s.helm.v3.Release(
            name,
            k8s.helm.v3.ReleaseArgs(
                name=chart,
                chart=where.chart,
                version=version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=where.repo) if where.repo else None,
                namespace=namespace,
                create_namespace=create_namespace,
                values=values,
                timeout=timeout,
                skip_await=not wait,
                max_history=5,
            ),
            self.opts(parent, *after_list(after, "after")),
        )

    def gate(
        self,
        name: str,
        parent: pulumi.Resource | None,
        *,
        gate: str,
        spec: dict[str, Any],
        rerun_on: list[pulumi.Input[Any]],
        after: After,
    ) -> command.local.Command:
        """A readiness gate in its own process: ``python -m kindmesh.deploy.gate_cmd <gate>``.

        The kubeconfig goes in a secret environment variable, the plain ``spec`` (cluster,
        what to wait for, timeout) as JSON in another. ``rerun_on`` (a new Helm revision,
        another chart version) goes into the environment too, as JSON: a changed environment
        is an *update* of the command, which runs ``update`` (the same gate) — whereas
        pulumi-command 1.2.1 marks ``triggers`` replaceOnChanges, so a trigger would
        *replace* the gate. Nothing changed, no diff. No delete command: a gate leaves
        nothing behind. ``after``: one resource or a sequence.
        """
        run = f"{shlex.quote(sys.executable)} -m kindmesh.deploy.gate_cmd {gate}"
        environment: dict[str, pulumi.Input[str]] = {
            GATE_KUBECONFIG_ENV: pulumi.Output.secret(self.kubeconfig),
            GATE_SPEC_ENV: json.dumps(spec, sort_keys=True, separators=(",", ":")),
        }
        triggers = None
        if reverted("gate-triggers"):  # the engine tier's proof that it catches the old defect
            triggers = [rerun_json(rerun_on)]
        else:
            environment[GATE_RERUN_ENV] = rerun_json(rerun_on)
        return command.local.Command(
            name,
            create=run,
            update=run,
            dir=str(PROJECT_ROOT),
            environment=environment,
            triggers=triggers,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=after_list(after, "after"),
                                        deleted_with=self.deleted_with),
        )


GATE_RERUN_ENV = "KINDMESH_GATE_RERUN"
# The engine tier (docs/integration.md) proves that it catches the two defects fixed in the past by
# putting each fix back out: KINDMESH_TIER_REVERT=gate-triggers,network-options. Never the default;
# nothing but the tier sets it.
TIER_REVERT_ENV = "KINDMESH_TIER_REVERT"


def reverted(fix: str) -> bool:
    """True when the engine tier asks for the named fix to be reverted (see TIER_REVERT_ENV)."""
    return fix in os.environ.get(TIER_REVERT_ENV, "").split(",")


def rerun_json(values: Sequence[pulumi.Input[Any]]) -> pulumi.Output[str]:
    """What makes a command run again, as one JSON string for its environment (an update,
    never a replace: see :meth:`ClusterTarget.gate`)."""
    return pulumi.Output.all(*values).apply(lambda vs: json.dumps(list(vs), sort_keys=True, separators=(",", ":")))


def release_revision(status: object) -> object:
    """The revision in a helm.v3.Release status (typed object or plain dict)."""
    if isinstance(status, dict):
        return status.get("revision")
    return getattr(status, "revision", None)
