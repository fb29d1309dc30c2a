"""The ``timing`` scenario: the first `up` of N clusters through the engine, measured in a
world timed at the model's figures × 0.1 (tests/integration/durations.py), beside
bench/model.py's figure for the same stack at the same scale.

    make integration SCENARIOS=timing                      # N = 2, 4, 8, one at a time
    KINDMESH_TIMING_SIZES="2 4" make integration SCENARIOS=timing

Each N is a stack of its own (``timing<N>``): N control-plane-only kind clusters, meshed,
the demo and its policies on, as the ``ci`` stack; `up` then `destroy`. The sizes run one
after another, never side by side, so one does not slow another. The result goes to
``.integration/timing.json`` and, with ``--record``, to ``bench/measured-engine.json``, which
``make bench`` shows beside its modelled rows.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

SCALE = 0.1
SIZES_ENV = "KINDMESH_TIMING_SIZES"
GOAL = 1.15  # measured up(8) / up(2)
RECORD = Path(__file__).resolve().parents[2] / "bench" / "measured-engine.json"


def sizes() -> list[int]:
    raw = os.environ.get(SIZES_ENV, "2 4 8").replace(",", " ").split()
    return sorted({int(x) for x in raw if x.isdigit() and 1 <= int(x) <= 16})


MAKE_PARALLEL = 64  # what `make up` runs with (the Makefile's PULUMI_PARALLEL)


def runs() -> list[tuple[int, int | None]]:
    """(clusters, PULUMI_PARALLEL) of each run: every size as `make up` runs it, and the
    largest once more with the engine's own default (None: 4 × CPUs)."""
    ns = sizes()
    return [(n, MAKE_PARALLEL) for n in ns] + ([(ns[-1], None)] if ns else [])


def stack_doc(n: int, charts: str) -> dict[str, Any]:
    """N clusters shaped as the ``ci`` stack's (control plane only, demo and policies on)."""
    clusters: list[dict[str, Any]] = [{"name": f"c{i}", "id": i, "workers": 0} for i in range(1, n + 1)]
    clusters[0]["demo"] = {"affinity": "local"}
    return {"config": {
        "pulumi:disable-default-providers": ["kubernetes", "docker"],
        "kindmesh:clusters": clusters,
        "kindmesh:network": {"subnet": "172.21.0.0/24", "poolSize": 8},
        "kindmesh:cilium": {"hubbleUi": False},
        "kindmesh:demo": {"enabled": True, "policy": True},
        "kindmesh:charts": {"cilium": charts, "metallb": charts},
    }}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per N: measured (the `up` step's wall time, and the engine's own first-to-last step),
    modelled at the same scale, their ratio; and measured up(max N) / up(min N)."""
    ups = [r for r in rows if r["scenario"].startswith("timing:") and r["step"] == "up"]
    if not ups:
        return None
    per_n = []
    for r in ups:
        n, _, variant = r["scenario"].split(":", 1)[1].partition("-")
        order = r.get("engine_order") or {}
        modelled = order.get("modelled_total_s")
        per_n.append({
            "clusters": int(n), "parallel": f"{4 * len(os.sched_getaffinity(0))} (pulumi's default)" if variant
            else str(MAKE_PARALLEL),
            "ok": r["ok"], "measured_s": r["seconds"], "engine_s": order.get("engine_total_s"),
            "modelled_s": None if modelled is None else round(modelled, 1),
            "ratio": None if not modelled else round(r["seconds"] / modelled, 2),
            "edges_missing": order.get("edges_missing"), "edges_not_real": order.get("edges_not_real"),
        })
    done = sorted((p for p in per_n if p["ok"] and p["parallel"] == str(MAKE_PARALLEL)), key=lambda p: p["clusters"])
    growth = None
    if len(done) >= 2:
        growth = round(done[-1]["measured_s"] / done[0]["measured_s"], 2)
    return {
        "scale": SCALE, "rows": per_n,
        "growth": {"of": f"up({done[-1]['clusters']})/up({done[0]['clusters']})", "value": growth, "goal": GOAL}
        if growth is not None else None,
        "host": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                 "machine": platform.machine()},
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
    }


def table(summary: dict[str, Any]) -> str:
    out = [f"timing (world at the model's figures × {summary['scale']}):",
           f"  {'N':>3} {'--parallel':>10} {'measured s':>11} {'engine s':>9} {'modelled s':>11} {'ratio':>6}  "
           "edges missing/not real"]
    for p in summary["rows"]:
        out.append(f"  {p['clusters']:>3} {p['parallel']:>10} {p['measured_s']:>11.1f} {_f(p['engine_s']):>9} {_f(p['modelled_s']):>11} "
                   f"{_f(p['ratio']):>6}  {p['edges_missing']}/{p['edges_not_real']}" + ("" if p["ok"] else "  FAILED"))
    g = summary.get("growth")
    if g:
        verdict = "within" if g["value"] <= g["goal"] else "ABOVE"
        out.append(f"  measured {g['of']} = {g['value']} ({verdict} the goal of {g['goal']})")
    return "\n".join(out)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}" if isinstance(x, float) else str(x)


def write(summary: dict[str, Any], logdir: Path) -> None:
    (logdir / "timing.json").write_text(json.dumps(summary, indent=1) + "\n")
    if os.environ.get("KINDMESH_TIMING_RECORD") == "1":
        RECORD.write_text(json.dumps(summary, indent=1) + "\n")
