"""A fake ``kind`` for the engine tier: each cluster is a real API server with kwok nodes.

It names everything exactly as kind does: node containers ``<name>-control-plane``,
``<name>-worker``, ``<name>-worker2`` … on the docker network ``$KIND_EXPERIMENTAL_DOCKER_NETWORK``
(default ``kind``) of the fake Docker Engine, with kind's labels; the kubeconfig's cluster,
user and context are ``kind-<name>``; ``--kubeconfig FILE`` gets the context merged in; an
existing name fails with kind's own message. The node containers hold the simulated
cluster's Node objects (same names, InternalIPs from the docker network).

Commands: ``version``, ``create cluster``, ``delete cluster``, ``get clusters``,
``get nodes``, ``get kubeconfig``, ``load docker-image``, ``load image-archive``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from tests.integration import durations, fake_docker, simcluster

KIND_VERSION = os.environ.get("KINDMESH_FAKE_KIND_VERSION", "v0.30.0")
DEFAULT_IMAGE = {"v0.30.0": "kindest/node:v1.34.0", "v0.31.0": "kindest/node:v1.35.0",
                 "v0.32.0": "kindest/node:v1.36.1", "v0.33.0": "kindest/node:v1.37.0"}
CLUSTER_LABEL = "io.x-k8s.kind.cluster"
ROLE_LABEL = "io.x-k8s.kind.role"


def _q(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


def node_containers(name: str | None = None) -> list[dict[str, Any]]:
    flt = {"label": [f"{CLUSTER_LABEL}={name}" if name else CLUSTER_LABEL]}
    return list(fake_docker.api_json("GET", "/containers/json?all=1&filters=" + _q(json.dumps(flt))))


def cluster_names() -> list[str]:
    return sorted({c["Labels"][CLUSTER_LABEL] for c in node_containers()})


def _node_names(cfg: dict[str, Any], name: str) -> list[tuple[str, str, dict[str, str]]]:
    nodes = cfg.get("nodes") or [{"role": "control-plane"}]
    out, counts = [], {"control-plane": 0, "worker": 0}
    for node in nodes:
        role = node.get("role", "control-plane")
        counts[role] += 1
        suffix = role if counts[role] == 1 else f"{role}{counts[role]}"
        out.append((f"{name}-{suffix}", role, {str(k): str(v) for k, v in (node.get("labels") or {}).items()}))
    return out


def _merge_kubeconfig(path: str, text: str) -> None:
    new = yaml.safe_load(text)
    p = Path(path)
    old = yaml.safe_load(p.read_text()) if p.exists() and p.read_text().strip() else None
    if not isinstance(old, dict):
        old = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": [], "users": [], "contexts": []}
    for key in ("clusters", "users", "contexts"):
        names = {e["name"] for e in new[key]}
        old[key] = [e for e in old.get(key) or [] if e.get("name") not in names] + new[key]
    old["current-context"] = new["current-context"]
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(old, sort_keys=False))
    p.chmod(0o600)


def _remove_from_kubeconfig(path: str, name: str) -> None:
    p = Path(path)
    if not p.exists():
        return
    doc = yaml.safe_load(p.read_text()) or {}
    ctx = f"kind-{name}"
    for key in ("clusters", "users", "contexts"):
        doc[key] = [e for e in doc.get(key) or [] if e.get("name") != ctx]
    if doc.get("current-context") == ctx:
        doc["current-context"] = ""
    p.write_text(yaml.safe_dump(doc, sort_keys=False))


def create(ns: argparse.Namespace) -> int:
    name = ns.name or "kind"
    cfg: dict[str, Any] = {}
    if ns.config:
        cfg = yaml.safe_load(Path(ns.config).read_text()) or {}
        if cfg.get("kind") != "Cluster" or not str(cfg.get("apiVersion", "")).startswith("kind.x-k8s.io/"):
            print("ERROR: failed to create cluster: unknown apiVersion/kind in config", file=sys.stderr)
            return 1
        name = ns.name or cfg.get("name") or "kind"
    node_images = [n.get("image") for n in cfg.get("nodes") or [] if n.get("image")]
    image = ns.image or (node_images[0] if node_images else DEFAULT_IMAGE.get(KIND_VERSION, "kindest/node:v1.34.0"))
    network = os.environ.get("KIND_EXPERIMENTAL_DOCKER_NETWORK") or "kind"
    print(f"Creating cluster \"{name}\" ...", file=sys.stderr)
    started = time.monotonic()
    lock = open(simcluster.world_dir() / "kind.lock", "w")  # kind's own provider is serial per name  # noqa: SIM115 - held across the create
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        if name in cluster_names():
            print(f'ERROR: failed to create cluster: node(s) already exist for a cluster with the name "{name}"',
                  file=sys.stderr)
            return 1
        try:
            fake_docker.api_json("GET", f"/networks/{_q(network)}")
        except fake_docker.ApiError:
            fake_docker.api_json("POST", "/networks/create", {"Name": network, "Driver": "bridge", "Options": {
                "com.docker.network.bridge.enable_ip_masquerade": "true"}})
        nodes = []
        for node_name, role, labels in _node_names(cfg, name):
            created = fake_docker.api_json("POST", f"/containers/create?name={_q(node_name)}", {
                "Image": image, "Labels": {CLUSTER_LABEL: name, ROLE_LABEL: role},
                "NetworkingConfig": {"EndpointsConfig": {network: {}}},
            })
            info = fake_docker.api_json("GET", f"/containers/{created['Id']}/json")
            ip = info["NetworkSettings"]["Networks"][network]["IPAddress"]
            nodes.append(simcluster.NodeSpec(node_name, role, ip, labels))
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    networking = cfg.get("networking") or {}
    state = simcluster.ClusterState(
        name=name, network=network, pod_subnet=networking.get("podSubnet") or "10.244.0.0/16",
        service_subnet=networking.get("serviceSubnet") or "10.96.0.0/16", image=image,
        api_port=simcluster.free_port(), etcd_port=simcluster.free_port(), egress_port=simcluster.free_port(),
        nodes=nodes,
    )
    state.dir.mkdir(parents=True, exist_ok=True)
    (state.dir / "kind-config.yaml").write_text(yaml.safe_dump(cfg))
    try:
        simcluster.start(state)
    except Exception as exc:  # noqa: BLE001 - kind cleans up a failed create
        print(f"ERROR: failed to create cluster: {exc}", file=sys.stderr)
        _delete(name)
        return 1
    kubeconfig = ns.kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    durations.take("kind create", started)  # a timed world: as long as the model says a create takes
    _merge_kubeconfig(kubeconfig.split(os.pathsep)[0], simcluster.kubeconfig(state))
    print(f"Set kubectl context to \"kind-{name}\"", file=sys.stderr)
    return 0


def _delete(name: str) -> None:
    simcluster.stop(name)
    for c in node_containers(name):
        with contextlib.suppress(fake_docker.ApiError):
            fake_docker.api_json("DELETE", f"/containers/{c['Id']}?force=1&v=1")


def delete(ns: argparse.Namespace) -> int:
    name = ns.name or "kind"
    print(f"Deleting cluster \"{name}\" ...", file=sys.stderr)
    _delete(name)
    kubeconfig = ns.kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    _remove_from_kubeconfig(kubeconfig.split(os.pathsep)[0], name)
    return 0


def get(ns: argparse.Namespace) -> int:
    if ns.what == "clusters":
        names = cluster_names()
        if not names:
            print("No kind clusters found.", file=sys.stderr)
        for n in names:
            print(n)
        return 0
    name = ns.name or "kind"
    if ns.what == "nodes":
        found = sorted(c["Names"][0].lstrip("/") for c in node_containers(name))
        if not found:
            print(f"No kind nodes found for cluster \"{name}\".", file=sys.stderr)
        for n in found:
            print(n)
        return 0
    if ns.what == "kubeconfig":
        state = simcluster.ClusterState.load(name)
        if state is None or name not in cluster_names():
            print(f'ERROR: could not locate any control plane nodes for cluster named \'{name}\'. '
                  "Use the --name option to select a different cluster", file=sys.stderr)
            return 1
        sys.stdout.write(simcluster.kubeconfig(state, internal=ns.internal))
        return 0
    return 1


def load(ns: argparse.Namespace) -> int:
    name = ns.name or "kind"
    if name not in cluster_names():
        print(f'ERROR: no nodes found for cluster "{name}"', file=sys.stderr)
        return 1
    started = time.monotonic()
    record = simcluster.world_dir() / "clusters" / name / "loaded-images.jsonl"
    with open(record, "a") as fh:
        for ref in ns.refs:
            if ns.what == "image-archive" and not Path(ref).is_file():
                print(f"ERROR: failed to load image: open {ref}: no such file or directory", file=sys.stderr)
                return 1
            fh.write(json.dumps({"kind": ns.what, "ref": ref}) + "\n")
    durations.take("image load", started, count=len(ns.refs))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["version"] or argv[:1] == ["--version"]:
        print(f"kind {KIND_VERSION} go1.25.5 linux/amd64")
        return 0
    parser = argparse.ArgumentParser(prog="kind")
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb in ("create", "delete"):
        p = sub.add_parser(verb)
        p.add_argument("noun", choices=["cluster"])
        p.add_argument("--name")
        p.add_argument("--kubeconfig")
        if verb == "create":
            p.add_argument("--config")
            p.add_argument("--image")
            p.add_argument("--wait")
            p.add_argument("--retain", action="store_true")
    g = sub.add_parser("get")
    g.add_argument("what", choices=["clusters", "nodes", "kubeconfig"])
    g.add_argument("--name")
    g.add_argument("--internal", action="store_true")
    g.add_argument("--all-clusters", action="store_true")
    ld = sub.add_parser("load")
    ld.add_argument("what", choices=["docker-image", "image-archive"])
    ld.add_argument("refs", nargs="+")
    ld.add_argument("--name")
    ld.add_argument("--nodes")
    ns = parser.parse_args(argv)
    try:
        return {"create": create, "delete": delete, "get": get, "load": load}[ns.verb](ns)
    except fake_docker.ApiError as err:
        print(f"ERROR: {err.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
