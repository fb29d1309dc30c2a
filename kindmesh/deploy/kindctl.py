"""kind and docker CLI work, run in its own process by ``pulumi-command``.

    python -m kindmesh.deploy.kindctl create|update|delete   (spec: JSON in $KINDMESH_KIND_SPEC)
    python -m kindmesh.deploy.kindctl load                    (spec: JSON {name, network, images} in $KINDMESH_KIND_SPEC)
    python -m kindmesh.deploy.kindctl prepull                 (spec: JSON in $KINDMESH_IMAGES_SPEC)

``create`` makes the cluster (and loads any ``images`` its spec lists); the stack keeps the
images out of the cluster's spec and runs ``load`` as a step of its own once both the
cluster and the host's pre-pull are done, so ``kind create`` overlaps the pull.

Pulumi's Python dynamic-provider host serves every dynamic resource of a stack with four
gRPC threads; a ``kind create`` holds one for minutes. Each ``command:local:Command`` runs
its command in a process of its own, so N clusters are created at once. This module is
also imported by the quick dynamic provider (``kindmesh.components.kind_provider``) and by the
preflight for the shared CLI runner. Standard library + PyYAML only; no ``pulumi`` import.

Safety rules:
* One exclusive lock per kind cluster name (``flock`` on a file in a per-user runtime
  directory): two overlapping runs never create or delete the same name at once.
* Only what this call created is cleaned up after a failure. A cluster that already
  exists is adopted when it is on this stack's network and carries the marker of the
  same config; recreated when it is on this stack's network but unfinished or different
  (the preflight's ownership rule); refused otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SPEC_ENV = "KINDMESH_KIND_SPEC"
IMAGES_ENV = "KINDMESH_IMAGES_SPEC"
# The image load's environment also holds its cluster's create-command id (not read here):
# a recreated cluster changes it, so pulumi-command runs the load's update again.
CLUSTER_ID_ENV = "KINDMESH_KIND_CLUSTER_ID"
# The cluster command's environment holds its presence token (components/kind_provider.py):
# `refresh` drops the token of a cluster deleted by hand, the next `up` makes a new one, the
# command's `update` runs and recreates the cluster. Echoed on stdout, so the image load reruns.
PRESENCE_ENV = "KINDMESH_KIND_PRESENT"
CREATE_TIMEOUT = 900
DOCKER_DOWN = "Cannot connect to the Docker daemon"  # what docker, kind and the Engine's clients say
CALL_TIMEOUT = 120
LOCK_TIMEOUT = 1200
MARKER = "/kind/kindmesh.json"  # inside the control-plane container, written last on create
CONTAINERD_STORE = "io.containerd.snapshotter.v1"
# Inputs kind cannot change on a running cluster (their hash is the replace trigger).
IMMUTABLE = ("name", "network", "config", "node_image", "pod_subnet", "service_subnet", "workers")
INSTALL = {
    "kind": "install kind v0.30.0+ (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)",
    "docker": "install Docker Engine (https://docs.docker.com/engine/install/)",
}
MAX_SAID = 4000


class ToolError(RuntimeError):
    """A CLI call failed; the message names the tool, what it said and the fix."""


class ToolMissing(ToolError):
    """The tool is not on PATH."""


def tool(name: str) -> str:
    return os.environ.get(f"KINDMESH_{name.upper()}", name)


def _tool_name(path: str) -> str:
    base = Path(path).name
    return next((t for t in INSTALL if base.startswith(t)), base)


def run(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = CALL_TIMEOUT,
    check: bool = True,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a CLI; every way it can fail becomes a :class:`ToolError` naming the fix.

    Output is decoded as UTF-8 with replacement (a tool printing invalid bytes is not a
    crash). ``check`` raises on a non-zero exit with the tail of what the tool said.
    """
    args = list(args)
    name = _tool_name(args[0])
    how = INSTALL.get(name, f"install {name} or fix PATH")
    try:
        raw = subprocess.run(
            args, capture_output=True, env=env, timeout=timeout, check=False,
            input=stdin.encode() if stdin is not None else None,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(f"{name} not found on PATH ({args[0]!r}): {how}") from exc
    except PermissionError as exc:
        raise ToolError(
            f"{name} at {args[0]!r} cannot be run by this user (permission denied): make it executable "
            f"(chmod +x) or {how}"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolError(
            f"`{' '.join(args[:4])} …` did not finish within {timeout:g}s: check that {name} works "
            f"(`{name} version`) and the Docker daemon answers (`docker info`)"
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            raise ToolError(
                f"{name} at {args[0]!r} is not a program this machine can run (Exec format error: wrong "
                f"CPU architecture or not a binary): {how} for this machine (`uname -m`)"
            ) from exc
        raise ToolError(f"could not start {name} ({args[0]!r}): {exc.strerror or exc}; {how}") from exc
    proc = subprocess.CompletedProcess(
        args, raw.returncode,
        raw.stdout.decode("utf-8", errors="replace"), raw.stderr.decode("utf-8", errors="replace"),
    )
    if check and proc.returncode != 0:
        raise ToolError(explain(args, proc))
    return proc


def explain(args: Sequence[str], proc: subprocess.CompletedProcess[str]) -> str:
    said = (proc.stderr or proc.stdout or "").strip()
    tail = "\n".join(said.splitlines()[-25:])[-MAX_SAID:]
    return f"`{' '.join(list(args)[:4])} …` exited {proc.returncode}: {tail or '(no output)'}"


def log(message: str) -> None:
    """Progress for the user (the command's stderr is shown by Pulumi)."""
    print(f"kindmesh: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- per-user directories


def runtime_dir() -> Path:
    """A private (0700, ours) directory for locks and temp files: never a root-only path.

    ``$XDG_RUNTIME_DIR/kindmesh`` when the session has one, else ``$TMPDIR/kindmesh-<uid>``.
    """
    uid = os.getuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    candidates = []
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK | os.X_OK):
        candidates.append(Path(xdg) / "kindmesh")
    candidates.append(Path(tempfile.gettempdir()) / f"kindmesh-{uid}")
    problems = []
    for path in candidates:
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            st = os.lstat(path)
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
            problems.append(f"{path}: not a private directory owned by uid {uid}")
            continue
        return path
    raise ToolError(
        "cannot create kindmesh's private runtime directory (" + "; ".join(problems) + "): set TMPDIR "
        "(or XDG_RUNTIME_DIR) to a directory this user can write"
    )


@contextlib.contextmanager
def private_tempdir() -> Iterator[Path]:
    base = runtime_dir()
    try:
        path = Path(tempfile.mkdtemp(prefix="tmp-", dir=base))
    except OSError as exc:
        raise ToolError(
            f"cannot create a temporary directory in {base}: {exc.strerror or exc}; free space or set TMPDIR"
        ) from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kindmesh" / "images"
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ToolError(
            f"cannot create the image archive cache {base}: {exc.strerror or exc}; set XDG_CACHE_HOME to a "
            "writable directory"
        ) from exc
    return base


@contextlib.contextmanager
def cluster_lock(name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[Path]:
    """Exclusive per-kind-name lock shared by every kindmesh run of this user.

    Waits (bounded exponential backoff with jitter, one overall deadline) while another
    run holds it; the kernel drops the lock when a holder dies, so no stale lock files.
    """
    path = runtime_dir() / f"kind-{name}.lock"
    try:
        fh = open(path, "a")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise ToolError(f"cannot open lock file {path}: {exc.strerror or exc}") from exc
    try:
        deadline = time.monotonic() + timeout
        delay = 0.05
        told = False
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    log(f"waiting for another kindmesh run working on kind cluster {name!r} (lock {path})")
                    told = True
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ToolError(
                        f"another kindmesh run held the lock for kind cluster {name!r} for over {timeout:.0f}s "
                        f"({path}); wait for it to finish or stop it, then run again"
                    ) from None
                time.sleep(min(left, delay * random.uniform(0.5, 1.0)))
                delay = min(delay * 2, 2.0)
        yield path
    finally:
        fh.close()


# ---------------------------------------------------------------- facts from the CLIs


def spec_hash(spec: dict[str, Any]) -> str:
    """Hash of what kind cannot change in place: a change replaces the cluster."""
    body = json.dumps({k: spec.get(k) for k in IMMUTABLE}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def kind_env(network: str) -> dict[str, str]:
    env = dict(os.environ)
    env["KIND_EXPERIMENTAL_DOCKER_NETWORK"] = network
    return env


def clusters() -> list[str]:
    out = run([tool("kind"), "get", "clusters"]).stdout
    return [ln.strip() for ln in out.splitlines() if ln.strip() and "No kind clusters" not in ln]


def nodes(name: str) -> list[str]:
    out = run([tool("kind"), "get", "nodes", "--name", name]).stdout
    return sorted(n.strip() for n in out.splitlines() if n.strip() and "No kind nodes" not in n)


def node_networks(container: str) -> set[str] | None:
    proc = run([tool("docker"), "inspect", "--format", "{{json .NetworkSettings.Networks}}", container],
               check=False)
    if proc.returncode != 0:
        return None
    try:
        data = json.loads(proc.stdout or "{}") or {}
    except json.JSONDecodeError:
        return None
    return set(data) if isinstance(data, dict) else None


def on_network(name: str, network: str) -> bool:
    """The preflight's ownership rule: a cluster is this stack's when its nodes are on its network."""
    return any(network in (node_networks(n) or set()) for n in nodes(name))


def read_marker(name: str) -> dict[str, Any]:
    proc = run([tool("docker"), "exec", f"{name}-control-plane", "cat", MARKER], check=False)
    if proc.returncode != 0:
        return {}
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def write_marker(name: str, marker: dict[str, Any]) -> None:
    run([tool("docker"), "exec", "-i", f"{name}-control-plane", "sh", "-c", f"cat > {MARKER}"],
        stdin=json.dumps(marker, sort_keys=True))


def validate_kubeconfig(text: str, name: str) -> str:
    """Reject anything that is not a kubeconfig with context ``kind-<name>`` and a server."""
    context = f"kind-{name}"
    why = None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data, why = None, "it is not YAML"
    if why is None:
        if not isinstance(data, dict) or data.get("kind") != "Config":
            why = "it is not a kubeconfig (no `kind: Config`)"
        else:
            ctxs = {c.get("name"): c.get("context") or {} for c in data.get("contexts") or [] if isinstance(c, dict)}
            cls = {c.get("name"): c.get("cluster") or {} for c in data.get("clusters") or [] if isinstance(c, dict)}
            ctx = ctxs.get(context)
            if not isinstance(ctx, dict):
                why = f"it has no context {context!r}"
            else:
                server = (cls.get(ctx.get("cluster")) or {}).get("server")
                if not isinstance(server, str) or not server.startswith("https://"):
                    why = f"context {context!r} has no cluster with an https server"
    if why:
        # The text itself is not echoed: it may hold credentials.
        raise ToolError(
            f"`kind get kubeconfig --name {name}` exited 0 but printed no usable kubeconfig ({why}); run it by hand to see what it prints "
            "(a wrapper script or an old kind on PATH?)"
        )
    return text


def kubeconfig(name: str) -> str:
    return validate_kubeconfig(run([tool("kind"), "get", "kubeconfig", "--name", name]).stdout, name)


def cluster_info(name: str, network: str) -> dict[str, Any] | None:
    """What the dynamic provider records (quick calls only); None when the cluster is gone
    or is not on this stack's network any more."""
    if name not in clusters() or not on_network(name, network):
        return None
    return {
        "kubeconfig": kubeconfig(name),
        "context": f"kind-{name}",
        "control_plane": f"{name}-control-plane",
        "nodes": nodes(name),
    }


# ---------------------------------------------------------------- images


@dataclass(frozen=True)
class HostDocker:
    store: str  # "containerd" or "classic"
    platform: str  # os/arch of the daemon, e.g. linux/amd64


def image_store() -> str:
    """``containerd`` when Docker keeps images in containerd (DriverStatus driver-type)."""
    out = run([tool("docker"), "info", "--format", "{{json .DriverStatus}}"]).stdout.strip()
    try:
        pairs = json.loads(out or "null") or []
    except json.JSONDecodeError:
        pairs = []
    for pair in pairs if isinstance(pairs, list) else []:
        if isinstance(pair, list) and len(pair) == 2 and pair[0] == "driver-type" and pair[1] == CONTAINERD_STORE:
            return "containerd"
    return "classic"


def host_docker() -> HostDocker:
    store = image_store()
    out = run([tool("docker"), "version", "--format", "{{.Server.Os}}/{{.Server.Arch}}"]).stdout.strip()
    if not re.fullmatch(r"[a-z0-9]+/[a-z0-9]+", out):
        raise ToolError(f"`docker version` did not report the server platform as os/arch (got {out[:80]!r})")
    return HostDocker(store, out)


def tag_source(pinned: str) -> str:
    """``repo:tag@sha256:x`` -> ``repo@sha256:x`` (what docker stores a digest pull under)."""
    name, sep, digest = pinned.partition("@")
    if not sep:
        return pinned
    slash, colon = name.rfind("/"), name.rfind(":")
    repo = name[:colon] if colon > slash else name
    return f"{repo}@{digest}"


def archive_path(image: dict[str, str], platform: str) -> Path:
    key = hashlib.sha256(f"{image['pinned']}|{platform}".encode()).hexdigest()[:24]
    return cache_dir() / f"{key}.tar"


def pull(image: dict[str, str], host: HostDocker) -> None:
    args = [tool("docker"), "pull"]
    if host.store == "containerd":
        args += ["--platform", host.platform]
    try:
        run([*args, image["pinned"]], timeout=CREATE_TIMEOUT)
        if image["pinned"] != image["tag"]:
            run([tool("docker"), "tag", tag_source(image["pinned"]), image["tag"]])
    except ToolError as exc:
        raise ToolError(f"pre-pulling {image['pinned']} failed: {exc}") from exc


def save_archive(image: dict[str, str], host: HostDocker) -> Path:
    """One single-platform archive per image on the host (written atomically)."""
    path = archive_path(image, host.platform)
    if path.exists():
        return path
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        run([tool("docker"), "save", "--platform", host.platform, "-o", str(part), image["tag"]],
            timeout=CREATE_TIMEOUT)
        os.replace(part, path)
    except ToolError as exc:
        hint = ""
        if "--platform" in str(exc) or "unknown flag" in str(exc):
            hint = ("; `docker save --platform` needs Docker 28 (Engine API 1.48) on both the CLI and the daemon: "
                    "upgrade Docker (`make doctor` checks it), or set kindmesh:kind.prePull: false")
        raise ToolError(f"saving {image['tag']} ({host.platform}) for kind failed: {exc}{hint}") from exc
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
    return path


def prepull(images: list[dict[str, str]]) -> dict[str, Any]:
    """Pull each image once; on the containerd store also save one archive per image."""
    host = host_docker()
    archives = []
    for image in images:
        pull(image, host)
        if host.store == "containerd":
            archives.append(save_archive(image, host).name)
    log(f"pre-pulled {len(images)} image(s) ({host.store} image store, {host.platform})")
    return {"store": host.store, "platform": host.platform, "images": len(images), "archives": archives}


def load_images(name: str, images: list[dict[str, str]]) -> None:
    """Load images into every node of ``name``, the way this host's image store allows.

    Classic store: ``kind load docker-image``. Containerd store: ``kind load docker-image``
    fails for multi-platform images (kind #3795, #4066), so each image is loaded from its
    single-platform archive (``kind load image-archive``); a missing archive is re-made.
    """
    if not images:
        return
    host = host_docker()
    if host.store == "classic":
        run([tool("kind"), "load", "docker-image", "--name", name, *[i["tag"] for i in images]],
            timeout=CREATE_TIMEOUT)
        return
    for image in images:
        path = archive_path(image, host.platform)
        if not path.exists():
            pull(image, host)
            path = save_archive(image, host)
        run([tool("kind"), "load", "image-archive", str(path), "--name", name], timeout=CREATE_TIMEOUT)


# ---------------------------------------------------------------- cluster lifecycle


def _delete(name: str) -> None:
    # Own kubeconfig file: never touches the user's ~/.kube/config; idempotent in kind.
    with private_tempdir() as tmp:
        run([tool("kind"), "delete", "cluster", "--name", name, "--kubeconfig", str(tmp / "kubeconfig")],
            timeout=CREATE_TIMEOUT)


def _create(spec: dict[str, Any]) -> None:
    """``kind create`` + image load + marker. Cleans up only a cluster this call created."""
    name = spec["name"]
    created = False
    try:
        with private_tempdir() as tmp:
            config = tmp / "kind-config.yaml"
            config.write_text(spec["config"])
            args = [tool("kind"), "create", "cluster", "--name", name, "--config", str(config),
                    "--kubeconfig", str(tmp / "kubeconfig")]
            proc = run(args, env=kind_env(spec["network"]), timeout=CREATE_TIMEOUT, check=False)
            if proc.returncode != 0:
                said = explain(args, proc)
                if "already exist" in said or "already in use" in said:
                    # Lost a race: the cluster is someone else's. Never delete it, never advise to.
                    raise ToolError(_lost_race(name, spec["network"], said))
                # kind removes its own half-made nodes; this call started the create, so make sure.
                created = True
                raise ToolError(said)
            created = True
            load_images(name, list(spec.get("images") or []))
            write_marker(name, {"hash": spec_hash(spec), "images": [i["pinned"] for i in spec.get("images") or []]})
            kubeconfig(name)
    except ToolError as exc:
        if not created:
            raise
        note = "and was cleaned up"
        try:
            if name in clusters() and not on_network(name, spec["network"]):
                # Whatever holds the name now is on another network: not what this call made.
                raise ToolError(f"kind cluster {name!r} now exists on another network; left untouched")
            _delete(name)
        except ToolError as again:
            if DOCKER_DOWN in str(again):
                note = "and could not be cleaned up"
            else:
                note = f"and cleanup also failed, run `kind delete cluster --name {name}`: {again}"
        if DOCKER_DOWN in str(exc):
            # Nothing to clean up by hand: the next run recreates what this one left unfinished.
            raise ToolError(
                f"creating kind cluster {name!r} failed: the Docker daemon is not reachable. Start Docker and run "
                f"`pulumi up` again (it recreates the cluster this run left unfinished). {exc}") from exc
        raise ToolError(f"creating kind cluster {name!r} failed {note}: {exc}") from exc



def _lost_race(name: str, network: str, said: str) -> str:
    """Why ``kind create`` found the name taken, and what to do: the winner is left as it is."""
    try:
        ours = on_network(name, network)
    except ToolError:
        ours = False
    if ours:
        return (f"kind cluster {name!r} was created on this stack's network {network!r} by another run while this "
                f"one was starting (another `pulumi up` of this stack, or a `kind create` on that network); it was "
                f"left untouched. Run `make up` again when that run has finished: a cluster on this stack's network "
                f"is adopted (or recreated when its config differs). {said}")
    return (f"kind cluster {name!r} was created by someone else while this run was starting (another `pulumi up`, "
            f"another stack or a manual `kind create`); it was left untouched. {said}")


def ensure(spec: dict[str, Any], *, updating: bool = False) -> str:
    """Create the cluster, or adopt/recreate one found on this stack's network; returns the action."""
    name, network = spec["name"], spec["network"]
    with cluster_lock(name):
        if name in clusters():
            if not on_network(name, network):
                raise ToolError(
                    f"kind cluster {name!r} already exists and is not this stack's (its nodes are not on docker "
                    f"network {network!r}); delete it with `kind delete cluster --name {name}` or rename the cluster"
                )
            marker = read_marker(name)
            if marker.get("hash") == spec_hash(spec):
                have = set(marker.get("images") or [])
                missing = [i for i in spec.get("images") or [] if i["pinned"] not in have]
                load_images(name, missing)
                if missing:
                    write_marker(name, dict(marker, images=sorted(have | {i["pinned"] for i in missing})))
                kubeconfig(name)
                if updating:
                    log(f"kind cluster {name!r} is up to date ({len(missing)} image(s) loaded)")
                    return "updated"
                log(f"adopted kind cluster {name!r}: already on network {network!r} with this config "
                    "(left by an earlier, interrupted run)")
                return "adopted"
            why = "an unfinished create" if not marker else "another config"
            log(f"recreating kind cluster {name!r}: it is on this stack's network {network!r} but from {why}")
            _delete(name)
            _create(spec)
            return "recreated"
        _create(spec)
        if updating:  # recorded as created, but gone (deleted by hand): made again
            log(f"recreated kind cluster {name!r} on network {network!r}: it was gone (deleted outside Pulumi?)")
            return "recreated"
        log(f"created kind cluster {name!r} on network {network!r}")
        return "created"


def load(spec: dict[str, Any]) -> str:
    """Load the spec's images that the cluster's marker does not list yet; returns what it did.

    Runs after ``create`` (the marker, written last on create, must be there): a cluster that
    is missing, not on this stack's network or unfinished is an error naming the fix, never
    created or deleted here.
    """
    name, network = spec["name"], spec["network"]
    images = list(spec.get("images") or [])
    with cluster_lock(name):
        if name not in clusters() or not on_network(name, network):
            raise ToolError(
                f"cannot load images into kind cluster {name!r}: it does not exist on docker network {network!r} "
                "(deleted by hand?); run `pulumi up` again, or `pulumi up --replace` the cluster's "
                "`-kind-cluster` resource")
        marker = read_marker(name)
        if not marker:
            raise ToolError(
                f"cannot load images into kind cluster {name!r}: its create never finished (no marker "
                f"{MARKER}); run `pulumi up` again (the create recreates an unfinished cluster)")
        have = set(marker.get("images") or [])
        missing = [i for i in images if i["pinned"] not in have]
        load_images(name, missing)
        if missing:
            write_marker(name, dict(marker, images=sorted(have | {i["pinned"] for i in missing})))
        log(f"kind cluster {name!r}: {len(missing)} image(s) loaded, {len(images) - len(missing)} already there")
        return "loaded" if missing else "present"


def delete(spec: dict[str, Any]) -> str:
    """Delete the stack's cluster; idempotent; never deletes a cluster not on this stack's network."""
    name, network = spec["name"], spec["network"]
    with cluster_lock(name):
        if name not in clusters():
            log(f"kind cluster {name!r} is already gone")
            return "absent"
        if not on_network(name, network):
            log(f"NOT deleting kind cluster {name!r}: it is not on this stack's network {network!r} "
                "(someone else's cluster with the same name)")
            return "foreign"
        _delete(name)
        log(f"deleted kind cluster {name!r}")
        return "deleted"


# ---------------------------------------------------------------- CLI


def _spec(env: str) -> dict[str, Any]:
    raw = os.environ.get(env)
    if not raw:
        raise ToolError(f"${env} is not set: this command is run by the kindmesh program, not by hand")
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ToolError(f"${env} is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise ToolError(f"${env} must be a JSON object")
    return spec


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kindmesh.deploy.kindctl",
        description="kind and docker CLI work for kindmesh, run by pulumi-command (spec in the environment)",
    )
    parser.add_argument("action", choices=["create", "update", "delete", "load", "prepull"])
    ns = parser.parse_args(argv)
    try:
        if ns.action == "prepull":
            result: dict[str, Any] = prepull(list(_spec(IMAGES_ENV).get("images") or []))
        else:
            spec = _spec(SPEC_ENV)
            if ns.action == "load":
                result = {"name": spec["name"], "action": load(spec), "images": len(spec.get("images") or [])}
            else:
                action = delete(spec) if ns.action == "delete" else ensure(spec, updating=ns.action == "update")
                result = {"name": spec["name"], "action": action, "hash": spec_hash(spec)}
                if os.environ.get(PRESENCE_ENV):
                    result["present"] = os.environ[PRESENCE_ENV]
    except ToolError as exc:
        print(f"kindmesh: error: {exc}", file=sys.stderr)
        return 1
    # Never the kubeconfig: stdout is recorded in the state and shown in logs.
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
