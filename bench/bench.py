"""Bench (not a timed test): evaluation cost and a model of `pulumi up` for N clusters.

For each N (full mesh, one worker each, demo and policies on) a *fresh process*
evaluates the program under Pulumi mocks several times and reports:

* evaluation wall and CPU time of the program alone (imports and a warm-up evaluation
  excluded), min and median over the runs;
* Output objects created per registered resource (deterministic; guarded by a test);
* peak traced Python memory (tracemalloc, in a separate pass: it slows evaluation);
* resources registered, and the modelled `up` wall time (bench/model.py: nominal step
  durations, every edge the engine waits on, each provider process's concurrency limit).

The output says which figures are *measured* (on this host, which it describes: CPUs,
memory, Python, OS) and which are *modelled* (the same on any host: nominal durations).

    make bench                    # N = 2 4 8 16 32 64
    .venv/bin/python bench/bench.py --runs 5 2 16
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.model import RULES  # noqa: E402 - after the path set-up (pure: no pulumi import)

MAKE_PARALLEL = 64  # the Makefile's PULUMI_PARALLEL: what `make up` runs with


def host_facts() -> dict[str, Any]:
    """The host the measured figures hold for: CPUs this process may use, memory, Python, OS."""
    import platform

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 0
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        memory = 0
    if not memory:
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            memory = 0
    name = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        name = ""
    return {
        "cpus": cpus,
        "memory_gib": round(memory / 2**30, 1),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{name or platform.system()} ({platform.system()} {platform.release()}, {platform.machine()})",
    }


def describe_host(facts: dict[str, Any]) -> str:
    return (f"host: {facts['cpus']} CPUs (nproc), {facts['memory_gib']} GiB memory, {facts['python']}, "
            f"{facts['os']}")


def raw_config(n: int) -> dict[str, Any]:
    return {
        "clusters": [{"name": f"c{i}", "id": i + 1, "workers": 1} for i in range(n)],
        "network": {"subnet": "172.30.0.0/16"},
        "demo": {"enabled": True, "policy": True},
    }


def count_outputs() -> Any:
    """Patch the SDK so every Output created is counted; returns (counter, undo)."""
    from pulumi.output import Output

    counter = [0]
    original = Output._track

    def track(self: Any) -> None:
        counter[0] += 1
        original(self)

    Output._track = track  # type: ignore[method-assign]

    def undo() -> None:
        Output._track = original  # type: ignore[method-assign]

    return counter, undo


def measure(n: int, runs: int, gc_threshold: int | None) -> dict[str, Any]:
    """Run inside a fresh process: imports done once, then a warm-up, then timed runs."""
    from bench.model import simulate, steps
    from tests.mocks import evaluate

    if gc_threshold is None:  # what the program does (__main__.py)
        from kindmesh.stacks.composition import tune_gc

        tune_gc()
    elif gc_threshold:
        gc.set_threshold(gc_threshold, 10, 10)
    evaluate(raw_config(2), stack="bench")  # warm-up: lazy imports, caches
    walls, cpus = [], []
    rec = None
    for _ in range(runs):
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        rec = evaluate(raw_config(n), stack="bench")
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    assert rec is not None
    counter, undo = count_outputs()
    try:
        counted = evaluate(raw_config(n), stack="bench")
    finally:
        undo()
    tracemalloc.start()
    evaluate(raw_config(n), stack="bench")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    graph = steps(rec.resources)
    schedule = simulate(graph, parallel=MAKE_PARALLEL)
    engine_default = simulate(graph, parallel=4 * host_facts()["cpus"])
    return {
        "n": n,
        "resources": len(rec.resources),
        "wall_min": min(walls),
        "wall_median": statistics.median(walls),
        "cpu_min": min(cpus),
        "cpu_median": statistics.median(cpus),
        "outputs": counter[0],
        "outputs_per_resource": counter[0] / len(counted.resources),
        "peak_mib": peak / 2**20,
        "up_minutes": schedule.total / 60,
        "up_minutes_engine_default": engine_default.total / 60,
        "critical": schedule.critical,
        "queued": schedule.busiest_queue,
    }


MEASURED_ENGINE = ROOT / "bench" / "measured-engine.json"


def print_measured_engine(path: Path = MEASURED_ENGINE) -> None:
    """The first `up` measured through the real engine (tests/integration/timing.py), beside
    the model of the same stack at the same scale: a world whose slow operations take the
    model's figures × its scale."""
    if not path.exists():
        print("\nmeasured through the engine: no record (make integration SCENARIOS=timing KINDMESH_TIMING_RECORD=1)")
        return
    rec = json.loads(path.read_text())
    host = rec.get("host", {})
    print(f"\nmeasured through the real engine, recorded {rec.get('date', '?')} on {host.get('cpus', '?')} CPUs "
          f"(`make integration SCENARIOS=timing`): a world at the model's figures × {rec['scale']}; "
          "modelled = bench/model.py for the same stack at the same scale")
    print("| clusters | --parallel | `up` (s, measured) | engine first-to-last step (s) | `up` (s, modelled) "
          "| measured/modelled |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rec["rows"]:
        print(f"| {r['clusters']} | {r.get('parallel', '?')} | {r['measured_s']:.1f} | {r['engine_s'] if r['engine_s'] is not None else '-'} | "
              f"{r['modelled_s'] if r['modelled_s'] is not None else '-'} | {r['ratio'] if r['ratio'] is not None else '-'} |")
    growth = rec.get("growth")
    if growth:
        print(f"measured {growth['of']} = {growth['value']} (goal ≤ {growth['goal']})")


def run_fresh(n: int, runs: int, gc_threshold: int | None) -> dict[str, Any]:
    args = [sys.executable, str(Path(__file__).resolve()), "--one", str(n), "--runs", str(runs)]
    if gc_threshold is not None:
        args += ["--gc-threshold", str(gc_threshold)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench for N={n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[2, 4, 8, 16, 32, 64])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gc-threshold", type=int, default=None,
                        help="gen-0 GC threshold (default: the program's own, see tune_gc; 700 = Python's)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.runs, args.gc_threshold)))
        return 0
    rows = [run_fresh(n, args.runs, args.gc_threshold) for n in args.sizes]
    print(describe_host(host_facts()))
    print("measured on this host: evaluation wall/CPU time and peak memory (vary with the host); "
          "Outputs per resource and resources (deterministic)")
    print("modelled, any host: `up` time, critical path, provider-slot waits (bench/model.py: nominal "
          "durations below, not a measurement; the Docker host's `make e2e` measures real runs)")
    print(f"runs per N: {args.runs} (fresh process per N; times exclude imports and a warm-up run)")
    print("| clusters | resources | eval wall min / median (s, measured) | eval CPU min (s, measured) "
          f"| Outputs per resource | peak memory (MiB, measured) | `up` (min, modelled, make up: --parallel {MAKE_PARALLEL}) "
          f"| `up` (min, modelled, pulumi's default here: --parallel {4 * host_facts()['cpus']}) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']} | {r['resources']} | {r['wall_min']:.2f} / {r['wall_median']:.2f} | "
              f"{r['cpu_min']:.2f} | {r['outputs_per_resource']:.1f} | {r['peak_mib']:.1f} | "
              f"{r['up_minutes']:.2f} | {r['up_minutes_engine_default']:.2f} |")
    by_n = {r["n"]: r for r in rows}
    if 16 in by_n and 64 in by_n:
        print(f"\nt(64)/t(16) = {by_n[64]['wall_min'] / by_n[16]['wall_min']:.1f} (linear: about 4)")
    if 2 in by_n and 16 in by_n:
        print(f"modelled up(16)/up(2) = {by_n[16]['up_minutes'] / by_n[2]['up_minutes']:.2f}")
    print_measured_engine()
    last = rows[-1]
    print(f"\ncritical path at N={last['n']}: " + " -> ".join(last["critical"]))
    waits = {p: round(s) for p, s in last["queued"].items() if s}
    print("longest wait for a provider slot at N={}: {}".format(last["n"], waits or "none"))
    print("\nnominal step durations of the model (seconds; first match wins):")
    for rule in RULES:
        what = f"{rule.type_ or 'any'} {rule.name}"
        print(f"  {rule.seconds:>4.0f}  {what:55s} {rule.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
