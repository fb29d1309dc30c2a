"""Dynamic providers that drive the ``kind`` and ``docker`` CLIs.

The engine pickles these providers (dill) and runs them in a separate process, so this
module imports only the standard library and ``pulumi.dynamic``; every helper it needs
lives here.

* :class:`KindClusterProvider` - one kind cluster: create/read/update/delete/diff.
* :class:`HostImagesProvider` - images pulled once on the host (by digest) and tagged,
  so each cluster can ``kind load docker-image`` them instead of pulling N times.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

# Inputs that kind cannot change on a running cluster: a change replaces it.
REPLACE_KEYS = ("name", "network", "config", "node_image", "pod_subnet", "service_subnet", "workers")
# Inputs that change in place (images are loaded into the running nodes).
UPDATE_KEYS = ("images",)
CREATE_TIMEOUT = 900
CALL_TIMEOUT = 300


class CommandFailed(Exception):
    """A CLI call failed; the message carries the tool's own words."""


def _bin(tool: str) -> str:
    return os.environ.get(f"KINDMESH_{tool.upper()}", tool)


def _run(args: list[str], *, env: dict[str, str] | None = None, timeout: int = CALL_TIMEOUT,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise CommandFailed(f"{args[0]!r} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"{' '.join(args[:4])} did not finish within {timeout}s") from exc
    if check and proc.returncode != 0:
        raise CommandFailed(_explain(args, proc))
    return proc


def _explain(args: list[str], proc: subprocess.CompletedProcess[str]) -> str:
    said = (proc.stderr or proc.stdout or "").strip()
    tail = "\n".join(said.splitlines()[-25:])
    return f"`{' '.join(args[:4])} …` exited {proc.returncode}: {tail or '(no output)'}"


def kind_clusters() -> list[str]:
    out = _run([_bin("kind"), "get", "clusters"]).stdout
    return [line.strip() for line in out.splitlines() if line.strip() and "No kind clusters" not in line]


class KindClusterProvider(ResourceProvider):
    """A kind cluster on the stack's docker network, created from a rendered config."""

    def _kind_env(self, network: str) -> dict[str, str]:
        env = dict(os.environ)
        env["KIND_EXPERIMENTAL_DOCKER_NETWORK"] = network
        return env

    def _details(self, name: str) -> dict[str, Any]:
        kubeconfig = _run([_bin("kind"), "get", "kubeconfig", "--name", name]).stdout
        nodes = _run([_bin("kind"), "get", "nodes", "--name", name]).stdout
        return {
            "kubeconfig": kubeconfig,
            "context": f"kind-{name}",
            "control_plane": f"{name}-control-plane",
            "nodes": sorted(n.strip() for n in nodes.splitlines() if n.strip()),
        }

    def _load_images(self, name: str, images: list[str]) -> None:
        if images:
            _run([_bin("kind"), "load", "docker-image", "--name", name, *images], timeout=CREATE_TIMEOUT)

    def _delete(self, name: str) -> None:
        # Own kubeconfig file: never touches the user's ~/.kube/config; idempotent in kind.
        with tempfile.TemporaryDirectory(prefix="kindmesh-") as tmp:
            _run([_bin("kind"), "delete", "cluster", "--name", name,
                  "--kubeconfig", str(Path(tmp) / "kubeconfig")], timeout=CREATE_TIMEOUT)

    def create(self, props: dict[str, Any]) -> CreateResult:
        name = props["name"]
        if name in kind_clusters():
            raise CommandFailed(
                f"a kind cluster named {name!r} already exists and this stack does not own it; "
                f"delete it (kind delete cluster --name {name}) or rename the stack/cluster"
            )
        with tempfile.TemporaryDirectory(prefix="kindmesh-") as tmp:
            config = Path(tmp) / "kind-config.yaml"
            config.write_text(props["config"])
            # Each cluster has its own kubeconfig file: kind locks the file it writes and
            # clusters are created in parallel.
            kubeconfig = Path(tmp) / "kubeconfig"
            args = [_bin("kind"), "create", "cluster", "--name", name,
                    "--config", str(config), "--kubeconfig", str(kubeconfig)]
            try:
                _run(args, env=self._kind_env(props["network"]), timeout=CREATE_TIMEOUT)
                self._load_images(name, list(props.get("images") or []))
                details = self._details(name)
            except CommandFailed as exc:
                cleanup = ""
                try:
                    self._delete(name)
                except CommandFailed as again:
                    cleanup = f"\ncleanup also failed, run `kind delete cluster --name {name}`: {again}"
                raise CommandFailed(
                    f"creating kind cluster {name!r} failed and was cleaned up: {exc}{cleanup}"
                ) from exc
        return CreateResult(id_=name, outs={**props, **details})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if id_ not in kind_clusters():
            return ReadResult(id_="", outs={})  # deleted outside Pulumi
        return ReadResult(id_=id_, outs={**props, **self._details(id_)})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_KEYS if olds.get(k) != news.get(k)]
        updates = [k for k in UPDATE_KEYS if olds.get(k) != news.get(k)]
        return DiffResult(
            changes=bool(replaces or updates),
            replaces=replaces,
            stables=[k for k in ("name",) if k not in replaces],
            delete_before_replace=True,
        )

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        old_images = set(olds.get("images") or [])
        self._load_images(id_, [i for i in news.get("images") or [] if i not in old_images])
        return UpdateResult(outs={**news, **self._details(id_)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        self._delete(id_)


def _tag_source(pinned: str) -> str:
    """``repo:tag@sha256:x`` -> ``repo@sha256:x`` (what docker stores a digest pull under)."""
    name, sep, digest = pinned.partition("@")
    if not sep:
        return pinned
    slash, colon = name.rfind("/"), name.rfind(":")
    repo = name[:colon] if colon > slash else name
    return f"{repo}@{digest}"


class HostImagesProvider(ResourceProvider):
    """Pull each image once on the host (by digest) and tag it for ``kind load``.

    ``images`` is a list of ``{"pinned": repo:tag@digest, "tag": repo:tag}``. Delete keeps
    the images in the host's cache (they are shared with other stacks and cheap to keep).
    """

    def _pull(self, images: list[dict[str, str]]) -> None:
        for image in images:
            try:
                _run([_bin("docker"), "pull", image["pinned"]], timeout=CREATE_TIMEOUT)
                if image["pinned"] != image["tag"]:
                    _run([_bin("docker"), "tag", _tag_source(image["pinned"]), image["tag"]])
            except CommandFailed as exc:
                raise CommandFailed(f"pre-pulling {image['pinned']} failed: {exc}") from exc

    @staticmethod
    def _id(images: list[dict[str, str]]) -> str:
        return hashlib.sha256("\n".join(i["pinned"] for i in images).encode()).hexdigest()[:16]

    def create(self, props: dict[str, Any]) -> CreateResult:
        images = list(props.get("images") or [])
        self._pull(images)
        return CreateResult(id_=self._id(images), outs=dict(props))

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=olds.get("images") != news.get("images"), replaces=[])

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._pull(list(news.get("images") or []))
        return UpdateResult(outs=dict(news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None
