"""The stack's kubeconfig file: ``.kindmesh/<stack>/kubeconfig``, one context per cluster.

    python -m kindmesh.deploy.context_file add --stack dev --cluster us   (kind kubeconfig in $KINDMESH_KUBECONFIG)
    python -m kindmesh.deploy.context_file drop --stack dev --cluster us
    python -m kindmesh.deploy.context_file write --stack dev --stdin      (all: `pulumi stack output kubeconfigs`)
    python -m kindmesh.deploy.context_file remove --stack dev

`pulumi up` adds each cluster and `pulumi destroy` drops it: one ``command:local:Command``
per cluster in the stack graph runs this module (so plain ``pulumi`` commands do it too, and
adding or removing a cluster touches no other cluster's resource). Concurrent updates of
the one file are serialised with ``flock`` on the stack's directory; the last cluster
dropped removes the file and its (empty) directories.
Each cluster gets a context named by its cluster name (``us``) and keeps kind's own context
name (``kind-km-dev-us``, unique per host, what the ``contexts`` stack output names), so
``kubectl --context us`` and ``cilium --context us`` work once ``KUBECONFIG`` points here
(``eval "$(make -s env)"``). The file is 0600 in 0700 directories, git-ignored, written
atomically; the user's ``~/.kube/config`` is never touched.

No ``pulumi`` import.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ENV = "KINDMESH_KUBECONFIG"
DIRNAME = ".kindmesh"
STACK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class KubeconfigError(ValueError):
    pass


def path_for(stack: str, root: Path | None = None) -> Path:
    if not STACK_RE.match(stack) or ".." in stack:
        raise KubeconfigError(f"not a stack name: {stack[:100]!r}")
    return (root or Path.cwd()) / DIRNAME / stack / "kubeconfig"


def _one(items: Any, name: str | None, what: str, cluster: str) -> dict[str, Any]:
    if not isinstance(items, list):
        raise KubeconfigError(f"kubeconfig of cluster {cluster!r} has no {what} list")
    for item in items:
        if isinstance(item, dict) and (name is None or item.get("name") == name):
            return item
    raise KubeconfigError(f"kubeconfig of cluster {cluster!r} has no {what} named {name!r}")


def empty() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [], "users": [], "contexts": [], "current-context": ""}


def _parse(name: str, text: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """One kind kubeconfig -> (cluster entry, user entry, kind's context name)."""
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise KubeconfigError(f"kubeconfig of cluster {name!r} is not YAML: {str(err)[:200]}") from None
    if not isinstance(cfg, dict):
        raise KubeconfigError(f"kubeconfig of cluster {name!r} is not a mapping")
    ctx = _one(cfg.get("contexts"), cfg.get("current-context"), "context", name)
    ref = ctx.get("context") or {}
    cluster = _one(cfg.get("clusters"), ref.get("cluster"), "cluster", name)
    user = _one(cfg.get("users"), ref.get("user"), "user", name)
    return cluster, user, str(ctx.get("name") or f"kind-{name}")


def without(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """``cfg`` minus cluster ``name``'s context, its kind context, cluster and user entries."""
    ctx = next((c for c in cfg.get("contexts") or [] if c.get("name") == name), None)
    if ctx is None:
        return cfg
    ref = ctx.get("context") or {}
    gone_cluster, gone_user = ref.get("cluster"), ref.get("user")
    out = dict(cfg)
    out["contexts"] = [c for c in cfg.get("contexts") or []
                       if (c.get("context") or {}).get("cluster") != gone_cluster]
    out["clusters"] = [c for c in cfg.get("clusters") or [] if c.get("name") != gone_cluster]
    out["users"] = [u for u in cfg.get("users") or [] if u.get("name") != gone_user]
    if out.get("current-context") not in {c["name"] for c in out["contexts"]}:
        out["current-context"] = out["contexts"][0]["name"] if out["contexts"] else ""
    return out


def with_cluster(cfg: dict[str, Any], name: str, text: str) -> dict[str, Any]:
    """``cfg`` with cluster ``name`` (re)placed: contexts ``name`` and kind's own name."""
    cluster, user, kind_ctx = _parse(name, text)
    out = without(cfg, name)
    taken = {c.get("name") for c in out["contexts"]}
    out["clusters"] = [c for c in out["clusters"] if c.get("name") != cluster["name"]] + [cluster]
    out["users"] = [u for u in out["users"] if u.get("name") != user["name"]] + [user]
    for ctx_name in dict.fromkeys((name, kind_ctx)):
        if ctx_name not in taken:
            out["contexts"].append({"name": ctx_name, "context": {"cluster": cluster["name"], "user": user["name"]}})
    if not out.get("current-context"):
        out["current-context"] = name
    return out


def merge(kubeconfigs: Mapping[str, str]) -> dict[str, Any]:
    """{cluster name: kind kubeconfig text} -> one kubeconfig with a context per cluster."""
    cfg = empty()
    for name, text in kubeconfigs.items():
        cfg = with_cluster(cfg, name, text)
    return cfg


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


class _Locked:
    """flock on the stack's directory (re-taken if the directory was replaced meanwhile)."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.fd = -1

    def __enter__(self) -> _Locked:
        while True:
            _private_dir(self.dir.parent)
            _private_dir(self.dir)
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(self.dir).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return self
            os.close(fd)  # removed by a concurrent drop of the last cluster: lock the new one

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _load(target: Path) -> dict[str, Any]:
    if not target.exists():
        return empty()
    try:
        cfg = yaml.safe_load(target.read_text())
    except yaml.YAMLError:
        cfg = None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("contexts"), list):
        raise KubeconfigError(f"{target} is not a kubeconfig; remove it and run `make up` again")
    return cfg


def _store(target: Path, cfg: dict[str, Any]) -> None:
    if not cfg["contexts"]:
        target.unlink(missing_ok=True)
        return
    fd, tmp = tempfile.mkstemp(prefix=".kubeconfig-", dir=target.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(yaml.safe_dump(cfg, sort_keys=False))
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


IGNORE_ALL = "# written by kindmesh: credentials, never to be committed\n*\n"


def ignore_all(base: Path) -> None:
    """``.kindmesh/.gitignore`` ignoring everything: a project that uses the Mesh component
    (not this repository's .gitignore) never commits the client keys (or diagnose's archives)
    by accident."""
    marker = base / ".gitignore"
    if not marker.exists():
        marker.write_text(IGNORE_ALL)


def _prune(directory: Path) -> None:
    try:
        directory.rmdir()  # only when empty: never removes anything else
    except OSError:
        return
    base = directory.parent
    marker = base / ".gitignore"
    if marker.is_file() and marker.read_text() == IGNORE_ALL and [p.name for p in base.iterdir()] == [".gitignore"]:
        marker.unlink()  # ours, and the last thing left
    with contextlib.suppress(OSError):
        base.rmdir()


def add(stack: str, name: str, text: str, root: Path | None = None) -> Path:
    target = path_for(stack, root)
    with _Locked(target.parent):
        ignore_all(target.parent.parent)
        _store(target, with_cluster(_load(target), name, text))
    return target


def drop(stack: str, name: str, root: Path | None = None) -> Path:
    target = path_for(stack, root)
    if not target.parent.exists():
        return target
    with _Locked(target.parent):
        try:
            cfg = _load(target)
        except KubeconfigError:
            cfg = empty()  # unreadable: nothing of ours to keep
            target.unlink(missing_ok=True)
        _store(target, without(cfg, name))
        if not target.exists():
            _prune(target.parent)
    return target


def write(stack: str, kubeconfigs: Mapping[str, str], root: Path | None = None) -> Path:
    target = path_for(stack, root)
    cfg = merge(kubeconfigs)
    with _Locked(target.parent):
        ignore_all(target.parent.parent)
        _store(target, cfg)
    return target


def remove(stack: str, root: Path | None = None) -> Path:
    target = path_for(stack, root)
    target.unlink(missing_ok=True)
    _prune(target.parent)
    return target


def _read_payload(raw: str, source: str) -> dict[str, str]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise KubeconfigError(f"{source} is not JSON") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise KubeconfigError(f"{source} must be a JSON object of cluster name -> kubeconfig text")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Maintain .kindmesh/<stack>/kubeconfig")
    parser.add_argument("action", choices=["add", "drop", "write", "remove"])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--cluster", help="cluster name (add, drop)")
    parser.add_argument("--stdin", action="store_true", help="write: read {cluster: kubeconfig} JSON from stdin")
    parser.add_argument("--root", type=Path, default=None, help="the Pulumi project directory (default: here)")
    args = parser.parse_args(argv)
    root = args.root
    try:
        if args.action in ("add", "drop") and not args.cluster:
            raise KubeconfigError(f"{args.action} needs --cluster")
        if args.action == "remove":
            path = remove(args.stack, root)
        elif args.action == "drop":
            path = drop(args.stack, args.cluster, root)
        elif args.action == "add":
            if ENV not in os.environ:
                raise KubeconfigError(f"no kubeconfig given in ${ENV}")
            path = add(args.stack, args.cluster, os.environ[ENV], root)
        else:
            if not args.stdin:
                raise KubeconfigError("write reads the kubeconfigs JSON from stdin: pass --stdin")
            path = write(args.stack, _read_payload(sys.stdin.read(), "stdin"), root)
    except (KubeconfigError, OSError) as err:
        print(f"kindmesh: cannot {args.action} the kubeconfig file: {err}", file=sys.stderr)
        return 1
    if args.action in ("add", "write"):
        print(f"{path} updated; use it with: export KUBECONFIG={path}")
    else:
        print(f"{path}: {args.cluster or 'all'} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
