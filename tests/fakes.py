"""Fake ``kind`` and ``docker`` executables for process-boundary tests.

Both are one Python script that records every call (argv, the kind network variable,
and the content of any ``--config`` file) to ``calls.jsonl`` and answers from
``state.json`` (clusters that exist, failures to inject, networks, versions).
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
here = Path(__file__).resolve().parent
tool = Path(sys.argv[0]).name
args = sys.argv[1:]
state_path = here / "state.json"
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
        if state.get("fail_create"):
            state["clusters"].append(name)  # kind may leave a half-created cluster
            save()
            print(state["fail_create"], file=sys.stderr); sys.exit(1)
        state["clusters"].append(name); save(); sys.exit(0)
    if args[:2] == ["delete", "cluster"]:
        name = arg("--name")
        state["clusters"] = [c for c in state["clusters"] if c != name]; save()
        print(f"Deleting cluster \"{{name}}\" ..."); sys.exit(0)
    if args[:2] == ["get", "kubeconfig"]:
        name = arg("--name")
        if name not in state["clusters"]:
            print(f"ERROR: could not locate any control plane nodes for cluster named '{{name}}'", file=sys.stderr); sys.exit(1)
        print(f"apiVersion: v1\nkind: Config\ncurrent-context: kind-{{name}}\n"); sys.exit(0)
    if args[:2] == ["get", "nodes"]:
        name = arg("--name")
        for n in state.get("nodes", {{}}).get(name, [f"{{name}}-control-plane"]):
            print(n)
        sys.exit(0)
    if args[:2] == ["load", "docker-image"]:
        if state.get("fail_load"):
            print(state["fail_load"], file=sys.stderr); sys.exit(1)
        sys.exit(0)
    print("unknown kind call", args, file=sys.stderr); sys.exit(2)

if tool == "docker":
    if state.get("docker_down") and args[:1] == ["info"]:
        print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", file=sys.stderr); sys.exit(1)
    if args[:1] == ["info"]:
        print("28.2.2"); sys.exit(0)
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
        print(json.dumps({{n: {{}} for n in nets}})); sys.exit(0)
    if args[:1] == ["pull"]:
        if args[1] in state.get("missing_images", []):
            print(f"Error response from daemon: manifest unknown: {{args[1]}}", file=sys.stderr); sys.exit(1)
        sys.exit(0)
    if args[:1] == ["tag"]:
        sys.exit(0)
    print("unknown docker call", args, file=sys.stderr); sys.exit(2)
'''


class FakeBin:
    def __init__(self, root: Path, **state: Any):
        self.dir = root / "bin"
        self.dir.mkdir(parents=True, exist_ok=True)
        base: dict[str, Any] = {"clusters": []}
        base.update(state)
        (self.dir / "state.json").write_text(json.dumps(base))
        (self.dir / "calls.jsonl").write_text("")
        for tool in ("kind", "docker"):
            path = self.dir / tool
            path.write_text(SCRIPT.format(python=sys.executable))
            path.chmod(0o755)

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.dir / "state.json").read_text())

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        lines = (self.dir / "calls.jsonl").read_text().splitlines()
        calls = [json.loads(line) for line in lines if line.strip()]
        return [c for c in calls if tool is None or c["tool"] == tool]

    def activate(self, monkeypatch: Any) -> None:
        monkeypatch.setenv("PATH", f"{self.dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.delenv("KINDMESH_KIND", raising=False)
        monkeypatch.delenv("KINDMESH_DOCKER", raising=False)
