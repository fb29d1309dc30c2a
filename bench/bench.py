"""Bench (not a timed test): evaluate the program under Pulumi mocks for N clusters.

Reports, for N = 2, 8, 32, 64 (full mesh, one worker each, demo and policies on):
evaluation wall time, peak Python memory (tracemalloc, separate pass), resources registered, and the
modelled critical path: the number of slow steps (things that wait on the outside world:
docker network, image pulls, kind create, Helm releases, readiness gates, demo
Deployments) on the longest dependency chain.

    make bench            # or: .venv/bin/python bench/bench.py 2 8 32 64
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.mocks import DYNAMIC, Recording, evaluate  # noqa: E402

SLOW_TYPES = {
    "docker:index/network:Network",
    "kubernetes:helm.sh/v3:Release",
    "kubernetes:apps/v1:Deployment",
    DYNAMIC,  # kind create, host image pulls, rollout and webhook gates
    "command:local:Command",
}


def raw_config(n: int) -> dict:
    return {
        "clusters": [{"name": f"c{i}", "workers": 1} for i in range(n)],
        "network": {"subnet": "172.30.0.0/16"},
        "demo": {"enabled": True, "policy": True},
    }


def critical_path(rec: Recording) -> int:
    by_urn = {r.urn: r for r in rec.resources}
    children: dict[str, list[str]] = {}
    for r in rec.resources:
        children.setdefault(r.parent, []).append(r.urn)

    def expand(urn: str) -> list[str]:
        node = by_urn.get(urn)
        if node is None:
            return []
        if node.custom:
            return [urn]
        out: list[str] = []
        for child in children.get(urn, []):
            out += expand(child)
        return out

    @cache
    def longest(urn: str) -> int:
        node = by_urn[urn]
        deps = [d for dep in node.dependencies for d in expand(dep)]
        own = 1 if node.custom and node.type in SLOW_TYPES else 0
        return own + max((longest(d) for d in deps), default=0)

    return max(longest(r.urn) for r in rec.resources if r.custom)


def main(sizes: list[int]) -> None:
    print("| clusters | eval wall time (s) | peak memory (MiB) | resources | slow steps on critical path |")
    print("|---:|---:|---:|---:|---:|")
    for n in sizes:
        start = time.perf_counter()
        rec = evaluate(raw_config(n), stack="bench")
        wall = time.perf_counter() - start
        # memory in a second pass: tracemalloc slows evaluation several-fold
        tracemalloc.start()
        evaluate(raw_config(n), stack="bench")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"| {n} | {wall:.2f} | {peak / 2**20:.1f} | {len(rec.resources)} | {critical_path(rec)} |")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2, 8, 32, 64])
