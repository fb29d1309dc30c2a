"""Fake ``kind`` and ``docker`` executables for process-boundary tests.

Both are one Python script that records every call (argv, the kind network variable,
and the content of any ``--config`` file) to ``calls.jsonl`` and answers from
``state.json`` (clusters that exist, failures to inject, networks, versions).

Docker flavours: ``store="classic"`` (default) or ``"containerd"`` (``docker info``
reports DriverStatus ``driver-type io.containerd.snapshotter.v1``; then ``kind load
docker-image`` fails for multi-platform images the way kind #3795/#4066 describe, and
``kind load image-archive`` works). ``bridge_mtu`` sets the default network's MTU.
``kind export logs DIR --name X`` writes one node file (``log_text``); ``docker inspect`` with a
``.State`` format answers ``container_state`` (default running) and the networks.
State is updated under an flock so concurrent fake calls do not lose writes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

SCRIPT = r'''#!{python}
import json, os, sys
from pathlib import Path
import fcntl, time
here = Path(__file__).resolve().parent
tool = Path(sys.argv[0]).name
args = sys.argv[1:]
state_path = here / "state.json"
_lock = open(here / "state.lock", "a")
fcntl.flock(_lock, fcntl.LOCK_EX)
state = json.loads(state_path.read_text())
call = {{"tool": tool, "args": args, "network": os.environ.get("KIND_EXPERIMENTAL_DOCKER_NETWORK")}}
if "--config" in args:
    call["config"] = Path(args[args.index("--config") + 1]).read_text()
if "--kubeconfig" in args:
    call["kubeconfig"] = args[args.index("--kubeconfig") + 1]
with open(here / "calls.jsonl", "a") as fh:
    fh.write(json.dumps(call) + "\n")

def save():
    state_path.write_text(json.dumps(state))

def reload():
    global state
    fcntl.flock(_lock, fcntl.LOCK_EX)
    state = json.loads(state_path.read_text())

def slow():
    # Simulate a long kind create without holding the fake's state lock.
    if state.get("create_seconds"):
        fcntl.flock(_lock, fcntl.LOCK_UN)
        time.sleep(state["create_seconds"])
        reload()

MULTI = "ERROR: failed to load image: command \"docker save {{img}}\" failed: content digest sha256:4f1e0f9c not found"

def arg(flag, default=None):
    return args[args.index(flag) + 1] if flag in args else default

if tool == "kind":
    if args[:1] == ["version"]:
        print(state.get("kind_version", "kind v0.30.0 go1.24.6 linux/amd64")); sys.exit(0)
    if args[:2] == ["get", "clusters"]:
        if not state["clusters"]:
            print("No kind clusters found.", file=sys.stderr)
        for c in state["clusters"]:
            print(c)
        sys.exit(0)
    if args[:2] == ["create", "cluster"]:
        name = arg("--name")
        if state.get("race_create"):
            # someone else (another run, a manual `kind create`) made it meanwhile
            winner = state.get("race_network", "kind")  # the network the winner's nodes are on
            state["clusters"].append(name); state.setdefault("containers", {{}})[name + "-control-plane"] = [winner]
            save()
            print(f"ERROR: failed to create cluster: node(s) already exist for a cluster with the name \"{{name}}\"", file=sys.stderr); sys.exit(1)
        if name in state["clusters"]:
            print(f"ERROR: failed to create cluster: node(s) already exist for a cluster with the name \"{{name}}\"", file=sys.stderr); sys.exit(1)
        # Like kind: the node containers exist early; the slow part (kubeadm) comes after.
        state["clusters"].append(name)
        state.setdefault("containers", {{}})[name + "-control-plane"] = [call["network"] or "kind"]
        save()
        slow()
        if state.get("fail_create"):
            print(state["fail_create"], file=sys.stderr); sys.exit(1)  # half-created cluster left
        state["creates"] = state.get("creates", 0) + 1
        save(); sys.exit(0)
    if args[:2] == ["delete", "cluster"]:
        name = arg("--name")
        state["clusters"] = [c for c in state["clusters"] if c != name]
        state.get("containers", {{}}).pop(name + "-control-plane", None)
        state.get("markers", {{}}).pop(name + "-control-plane", None)
        save()
        print(f"Deleting cluster \"{{name}}\" ..."); sys.exit(0)
    if args[:2] == ["get", "kubeconfig"]:
        name = arg("--name")
        if name not in state["clusters"]:
            print(f"ERROR: could not locate any control plane nodes for cluster named '{{name}}'", file=sys.stderr); sys.exit(1)
        if state.get("junk_kubeconfig"):
            print(state["junk_kubeconfig"]); sys.exit(0)
        print(f"apiVersion: v1\nkind: Config\ncurrent-context: kind-{{name}}\n"
              f"clusters:\n- name: kind-{{name}}\n  cluster:\n    server: https://127.0.0.1:6443\n"
              f"contexts:\n- name: kind-{{name}}\n  context:\n    cluster: kind-{{name}}\n    user: kind-{{name}}\n"
              f"users:\n- name: kind-{{name}}\n  user:\n    client-key-data: c2VjcmV0\n"); sys.exit(0)
    if args[:2] == ["get", "nodes"]:
        name = arg("--name")
        if name not in state["clusters"]:
            print(f"No kind nodes found for cluster \"{{name}}\".", file=sys.stderr); sys.exit(0)
        for n in state.get("nodes", {{}}).get(name, [f"{{name}}-control-plane"]):
            print(n)
        sys.exit(0)
    if args[:2] == ["export", "logs"]:
        name = arg("--name")
        if name not in state["clusters"]:
            print(f"ERROR: unknown cluster \"{{name}}\"", file=sys.stderr); sys.exit(1)
        node_dir = Path(args[2]) / f"{{name}}-control-plane"
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "kubelet.log").write_text(state.get("log_text", "kubelet: started\n"))
        print(f"Exporting logs for cluster \"{{name}}\" to:\n{{args[2]}}"); sys.exit(0)
    if args[:2] == ["load", "docker-image"]:
        if state.get("fail_load"):
            print(state["fail_load"], file=sys.stderr); sys.exit(1)
        if state.get("store") == "containerd":
            print(MULTI.format(img=args[4]), file=sys.stderr); sys.exit(1)
        sys.exit(0)
    if args[:2] == ["load", "image-archive"]:
        if not Path(args[2]).is_file():
            print(f"ERROR: failed to load image: open {{args[2]}}: no such file or directory", file=sys.stderr); sys.exit(1)
        sys.exit(0)
    print("unknown kind call", args, file=sys.stderr); sys.exit(2)

if tool == "docker":
    if state.get("docker_down") and args[:1] == ["info"]:
        print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", file=sys.stderr); sys.exit(1)
    if args[:1] == ["info"]:
        if "{{{{json .DriverStatus}}}}" in args:
            if state.get("store") == "containerd":
                print(json.dumps([["driver-type", "io.containerd.snapshotter.v1"]]))
            else:
                print(json.dumps([["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]))
            sys.exit(0)
        print(state.get("docker_version", "29.1.2")); sys.exit(0)
    if args[:1] == ["version"]:
        print(state.get("platform", "linux/amd64")); sys.exit(0)
    if args[:3] == ["network", "inspect", "bridge"] and "-f" in args:
        if "bridge_mtu" in state:
            print(state["bridge_mtu"])
        else:
            print("<no value>")
        sys.exit(0)
    if args[:1] == ["exec"]:
        container = args[2] if args[1] == "-i" else args[1]
        if container not in state.get("containers", {{}}):
            print(f"Error response from daemon: No such container: {{container}}", file=sys.stderr); sys.exit(1)
        markers = state.setdefault("markers", {{}})
        if args[1] == "-i":
            markers[container] = sys.stdin.read(); save(); sys.exit(0)
        if container not in markers:
            print("cat: /kind/kindmesh.json: No such file or directory", file=sys.stderr); sys.exit(1)
        print(markers[container]); sys.exit(0)
    if args[:1] == ["save"]:
        if state.get("save_error"):
            print(state["save_error"], file=sys.stderr); sys.exit(1)
        out = arg("-o")
        if state.get("store") == "containerd" and "--platform" not in args:
            print(MULTI.format(img=args[-1]), file=sys.stderr); sys.exit(1)
        Path(out).write_text(json.dumps({{"image": args[-1], "platform": arg("--platform")}}))
        sys.exit(0)
    if args[:2] == ["network", "ls"]:
        for n in state.get("networks", []):
            print(n["Name"])
        sys.exit(0)
    if args[:2] == ["network", "inspect"]:
        names = args[2:]
        print(json.dumps([n for n in state.get("networks", []) if n["Name"] in names])); sys.exit(0)
    if args[:1] == ["inspect"]:
        container = args[-1]
        nets = state.get("containers", {{}}).get(container)
        if nets is None:
            print(f"Error: No such object: {{container}}", file=sys.stderr); sys.exit(1)
        if "{{{{.Config.Image}}}}" in args:
            print(state.get("node_images", {{}}).get(container, "")); sys.exit(0)
        if any(".State" in a for a in args):  # {{{{json .State}}}} {{{{json .NetworkSettings.Networks}}}}
            st = state.get("container_state", {{}}).get(container, {{"Status": "running", "Running": True, "ExitCode": 0}})
            print(json.dumps(st) + " " + json.dumps({{n: {{}} for n in nets}})); sys.exit(0)
        print(json.dumps({{n: {{}} for n in nets}})); sys.exit(0)
    if args[:1] == ["pull"]:
        if args[-1] in state.get("missing_images", []):
            print(f"Error response from daemon: manifest unknown: {{args[-1]}}", file=sys.stderr); sys.exit(1)
        sys.exit(0)
    if args[:1] == ["tag"]:
        sys.exit(0)
    print("unknown docker call", args, file=sys.stderr); sys.exit(2)
'''


class FakeBin:
    def __init__(self, root: Path, python: str = sys.executable, **state: Any):
        self.root = root
        self.dir = root / "bin"
        self.dir.mkdir(parents=True, exist_ok=True)
        base: dict[str, Any] = {"clusters": []}
        base.update(state)
        (self.dir / "state.json").write_text(json.dumps(base))
        (self.dir / "calls.jsonl").write_text("")
        for tool in ("kind", "docker"):
            path = self.dir / tool
            path.write_text(SCRIPT.format(python=python))
            path.chmod(0o755)

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.dir / "state.json").read_text())

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        lines = (self.dir / "calls.jsonl").read_text().splitlines()
        calls = [json.loads(line) for line in lines if line.strip()]
        return [c for c in calls if tool is None or c["tool"] == tool]

    def update(self, **changes: Any) -> None:
        state = self.state
        state.update(changes)
        (self.dir / "state.json").write_text(json.dumps(state))

    def env(self) -> dict[str, str]:
        """The environment of a child process using these fakes (private runtime and cache dirs)."""
        run = self.root / "run"
        run.mkdir(mode=0o700, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("KINDMESH_KIND", "KINDMESH_DOCKER", "PYTHONPATH")}
        env.update(PATH=f"{self.dir}{os.pathsep}{os.environ['PATH']}", XDG_RUNTIME_DIR=str(run),
                   XDG_CACHE_HOME=str(self.root / "cache"))
        return env

    def activate(self, monkeypatch: Any) -> None:
        for key, value in self.env().items():
            if os.environ.get(key) != value:
                monkeypatch.setenv(key, value)
        monkeypatch.delenv("KINDMESH_KIND", raising=False)
        monkeypatch.delenv("KINDMESH_DOCKER", raising=False)
