"""Dynamic providers for kind clusters: quick calls only.

The engine pickles these providers by reference to this module and runs them in the
Python dynamic-provider host, which serves every dynamic resource of the stack with four
gRPC threads. Nothing here may hold a thread for long: ``kind create`` and the image
pre-pull run in their own processes (``python -m kindmesh.deploy.kindctl`` under
``command:local:Command``, see components/kind_cluster.py).

* :class:`KindClusterInfoProvider` - reads a cluster the command created: kubeconfig
  (validated), context, nodes. Its ``read`` returns an empty id when the cluster is gone
  (or is no longer on this stack's network), so ``pulumi refresh`` notices a cluster
  deleted behind Pulumi's back.
* :class:`KindClusterPresenceProvider` - a token that exists while the cluster does, made
  before the cluster's command: ``refresh`` drops it when the cluster is gone, the next
  ``up`` makes a new one, and its new id in the command's environment runs the command's
  ``update``, which recreates a missing cluster (then its releases and gates follow).

This module's path (``kindmesh.components.kind_provider``) and the class name are stored
in every stack's state: a stable interface (README, "Stable interface").
"""

from __future__ import annotations

import uuid
from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from kindmesh.deploy import kindctl

# Another cluster (or network) is another resource.
REPLACE_KEYS = ("name", "network")
# What the command reported changed (created, recreated, updated): read the cluster again.
UPDATE_KEYS = ("cluster", "command_urn")

CommandFailed = kindctl.ToolError


def _gone(props: dict[str, Any]) -> kindctl.ToolError:
    name = props["name"]
    urn = props.get("command_urn") or f"<urn of {name}'s kind-cluster command>"
    return kindctl.ToolError(
        f"kind cluster {name!r} does not exist (deleted outside Pulumi?) although the command that creates it "
        f"is recorded as done; recreate it with: pulumi up --replace '{urn}'"
    )


class KindClusterInfoProvider(ResourceProvider):
    """Kubeconfig, context and nodes of a kind cluster created by its command."""

    def _outs(self, props: dict[str, Any]) -> dict[str, Any]:
        info = kindctl.cluster_info(props["name"], props["network"])
        if info is None:
            raise _gone(props)
        return {**props, **info}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=props["name"], outs=self._outs(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        info = kindctl.cluster_info(id_, props.get("network") or "")
        if info is None:
            return ReadResult(id_="", outs={})  # gone (or someone else's now): refresh drops it
        return ReadResult(id_=id_, outs={**props, **info})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_KEYS if olds.get(k) != news.get(k)]
        updates = [k for k in UPDATE_KEYS if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(replaces or updates), replaces=replaces, delete_before_replace=True)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._outs(news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None  # the command deletes the cluster


class KindClusterPresenceProvider(ResourceProvider):
    """A token per kind cluster: present while the cluster is (on this stack's network)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=uuid.uuid4().hex, outs=dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if kindctl.cluster_info(props.get("name") or "", props.get("network") or "") is None:
            return ReadResult(id_="", outs={})  # the cluster is gone: refresh drops the token
        return ReadResult(id_=id_, outs=dict(props))

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_KEYS if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=True)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None
