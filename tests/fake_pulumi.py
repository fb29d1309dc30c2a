"""A fake ``pulumi`` executable for process-boundary tests of ``kindmesh.cli.upgrade``.

It records every call (argv, and the ``kindmesh:`` Cilium versions of the stack file at that
moment) to ``calls.jsonl``, edits ``Pulumi.<stack>.yaml`` for ``config set/rm --path`` the
way the real CLI does, answers ``stack output`` from ``outputs.json``, and fails the
``up`` calls listed in ``state.json`` (``fail_ups``: 1-based) or a ``preview`` when asked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCRIPT = r'''#!{python}
import json, re, sys
from pathlib import Path
import yaml

here = Path(__file__).resolve().parent
args = sys.argv[1:]
state = json.loads((here / "state.json").read_text())
stack = args[args.index("--stack") + 1] if "--stack" in args else "dev"
path = Path.cwd() / f"Pulumi.{{stack}}.yaml"

def versions():
    config = (yaml.safe_load(path.read_text()) or {{}}).get("config") or {{}}
    own = [((c.get("cilium") or {{}}).get("version")) for c in config.get("kindmesh:clusters") or []]
    return {{"stack": (config.get("kindmesh:cilium") or {{}}).get("version"), "clusters": own}}

calls = here / "calls.jsonl"
n_up = sum(1 for line in calls.read_text().splitlines() if json.loads(line)["args"][:1] == ["up"])
with open(calls, "a") as fh:
    fh.write(json.dumps({{"args": args, "versions": versions() if path.exists() else None}}) + "\n")

def parts(key):
    head = re.match(r"[^.\[]+", key).group(0)
    rest = re.findall(r"\.([^.\[]+)|\[(\d+)\]", key[len(head):])
    return [head] + [int(i) if i else name for name, i in rest]

def edit(key, value=None, remove=False):
    data = yaml.safe_load(path.read_text()) or {{}}
    node = data.setdefault("config", {{}})
    keys = parts(key)
    for k, nxt in zip(keys, keys[1:]):
        if isinstance(k, str) and k not in node:
            node[k] = [] if isinstance(nxt, int) else {{}}
        node = node[k]
    if remove:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))

if args[:2] == ["config", "set"] and "--path" in args:
    rest = [a for a in args[2:] if a != "--path"]
    edit(rest[0], rest[1]); sys.exit(0)
if args[:2] == ["config", "rm"] and "--path" in args:
    rest = [a for a in args[2:] if a != "--path"]
    edit(rest[0], remove=True); sys.exit(0)
if args[:1] == ["up"]:
    if n_up + 1 in state.get("fail_ups", []):
        print("error: update failed (injected)", file=sys.stderr); sys.exit(255)
    print("Update succeeded"); sys.exit(0)
if args[:1] == ["preview"]:
    sys.exit(state.get("preview_rc", 0))
if args[:2] == ["stack", "output"]:
    outputs = json.loads((here / "outputs.json").read_text())
    print(json.dumps(outputs.get(args[2]))); sys.exit(0)
print("fake pulumi: unexpected call", args, file=sys.stderr); sys.exit(2)
'''


class FakePulumi:
    def __init__(self, root: Path, outputs: dict[str, Any] | None = None, python: str = sys.executable,
                 **state: Any):
        self.dir = root / "fake-pulumi"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "state.json").write_text(json.dumps(state))
        (self.dir / "outputs.json").write_text(json.dumps(outputs or {}))
        (self.dir / "calls.jsonl").write_text("")
        self.path = self.dir / "pulumi"
        self.path.write_text(SCRIPT.format(python=python))
        self.path.chmod(0o755)

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.dir / "calls.jsonl").read_text().splitlines() if line.strip()]

    def commands(self) -> list[list[str]]:
        """Calls without the trailing ``--stack S`` (what the user would type)."""
        out = []
        for c in self.calls():
            args = list(c["args"])
            if "--stack" in args:
                i = args.index("--stack")
                del args[i:i + 2]
            out.append(args)
        return out
