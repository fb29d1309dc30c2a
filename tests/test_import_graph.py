"""The import graph of kindmesh, read from the source with ``ast`` (nothing is imported).

Every import counts: module level, inside functions, under ``if TYPE_CHECKING:``; relative
imports are resolved. The graph covers ``kindmesh/`` and the two packages mapped into it
(``components/`` as ``kindmesh.components``, ``stacks/`` as ``kindmesh.stacks``).

* no cycle anywhere (the failure names one);
* ``kindmesh.core`` imports none of ``kindmesh.deploy``, ``kindmesh.cli``, the components, the
  stacks or Pulumi (``pulumi``, ``pulumi_*``);
* inside ``kindmesh.core`` every module imports only the modules its docstring allows
  (``May import: …``), and those lie in lower layers (docs/how-it-works.md, "The core's layers").
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"kindmesh": ROOT / "kindmesh", "kindmesh.components": ROOT / "components",
            "kindmesh.stacks": ROOT / "stacks"}
CORE = "kindmesh.core"
# The core's layers, lowest first (docs/how-it-works.md, "The core's layers"): a module imports only
# modules listed before it.
CORE_LAYERS = (
    ("types", ("model", "charts")),
    ("catalogue", ("images", "versions")),
    ("parsing", ("collector", "config_values", "config_existing", "config_raw", "config")),
    ("planning", ("naming", "existing", "planner")),
    ("rendering", ("render_existing", "render", "demo")),
)
FORBIDDEN_IN_CORE = ("kindmesh.deploy", "kindmesh.cli", "kindmesh.components", "kindmesh.stacks",
                     "components", "stacks", "pulumi")


@functools.cache
def module_files() -> dict[str, Path]:
    """module name -> file, for every module of the graph (packages by their ``__init__``)."""
    out: dict[str, Path] = {}
    for prefix, base in PACKAGES.items():
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Absolute names of every module ``path`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            for alias in node.names:  # `from kindmesh.core import versions` imports a module
                if f"{module}.{alias.name}" in known:
                    found.add(f"{module}.{alias.name}")
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def internal(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if t in edges and t != m} for m, targets in edges.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, …, a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if state.get(start):
            continue
        path: list[str] = [start]
        todo: list[list[str]] = [sorted(edges[start])]
        state[start] = 1
        while todo:
            if not todo[-1]:
                state[path.pop()] = 2
                todo.pop()
                continue
            nxt = todo[-1].pop(0)
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                todo.append(sorted(edges[nxt]))
    return None


def test_the_graph_reads_every_kind_of_import(tmp_path):
    pkg = tmp_path / "kindmesh" / "core"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from kindmesh.core.b import X\n"
        "def f():\n    from .c import y\n    from . import d\n    import kindmesh.core.e\n")
    known = {f"kindmesh.core.{m}" for m in "abcde"}
    assert imports_of("kindmesh.core.a", pkg / "a.py", known) >= known - {"kindmesh.core.a"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_there_is_no_import_cycle():
    cycle = find_cycle(internal(graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_core_imports_no_deploy_cli_components_stacks_or_pulumi():
    bad = []
    for module, targets in graph().items():
        if module == CORE or module.startswith(CORE + "."):
            bad += [f"{module} imports {t}" for t in sorted(targets)
                    if any(t == f or t.startswith(f + ".") for f in FORBIDDEN_IN_CORE) or t.startswith("pulumi_")]
    assert not bad, "\n".join(bad)


def core_modules() -> dict[str, Path]:
    return {m: p for m, p in module_files().items() if m.startswith(CORE + ".")}


def declared(path: Path) -> set[str] | None:
    """The core modules a file's docstring allows (``May import: model, versions.``; ``nothing``)."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    match = re.search(r"May import:\s*(.+?)(?:\.\s*$|\.\s*\n|\n\n|$)", doc, re.S | re.M)
    if match is None:
        return None
    text = match.group(1)
    if text.strip().startswith("nothing"):
        return set()
    return {f"{CORE}.{w}" for w in re.findall(r"``?(\w+)``?", text) or re.findall(r"\b(\w+)\b", text)}


@pytest.mark.parametrize("module", sorted(core_modules()))
def test_each_core_module_says_what_it_holds_and_imports_only_what_it_may(module):
    path = core_modules()[module]
    allowed = declared(path)
    assert allowed is not None, f"{path.name}: its docstring has no 'May import: …' line"
    used = {t for t in graph()[module] if t.startswith(CORE + ".")}
    assert used <= allowed, f"{path.name} imports {sorted(used - allowed)}, not in its 'May import' line"


def test_every_core_module_imports_only_downward():
    order = [f"{CORE}.{m}" for _, modules in CORE_LAYERS for m in modules]
    assert sorted(order) == sorted(core_modules()), "CORE_LAYERS must list every kindmesh.core module once"
    rank = {m: i for i, m in enumerate(order)}
    edges = graph()
    upward = [f"{m} imports {t}" for m in order for t in sorted(edges[m]) if t in rank and rank[t] >= rank[m]]
    assert not upward, "\n".join(upward)


def test_core_files_stay_small():
    big = {p.name: n for p in core_modules().values() if (n := len(p.read_text().splitlines())) > 500}
    assert not big, f"kindmesh/core files over 500 lines: {big}"
