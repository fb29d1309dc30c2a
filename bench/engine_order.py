"""What the Pulumi engine actually ran, and when, next to the model of `pulumi up`.

Input: the engine event log of one run, ``pulumi up --event-log FILE``: JSON lines, one
``EngineEvent`` each (``sdk/go/common/apitype/events.go``): ``sequence`` (total order),
``timestamp`` (unix seconds, an integer) and one payload; the ones read here are
``resourcePreEvent`` (a step starts), ``resOutputsEvent`` (it finished) and
``resOpFailedEvent`` (it failed), whose ``metadata`` (``StepEventMetadata``) holds ``op``,
``urn`` and ``type``. Preview events are left out: those marked ``planning: true``, and
everything up to a ``summaryEvent`` with ``isPreview: true`` (``pulumi up`` without
``--skip-preview`` logs its preview first).

A step is matched to the model (``bench/model.py``, fed the graph the program registers
under mocks) by its URN without the stack and project (``<type chain>::<name>``), so a log
of any stack of the same config matches. Reported:

* per step: the modelled start/end and the engine's (seconds from the run's first step);
* **edges that were not real**: a step started before a modelled predecessor finished (the
  engine did not wait for it: the model is stricter than the program). With whole-second
  timestamps, ``start < end`` proves it;
* **edges the model lacks**: a step started more than ``slack`` seconds after its last
  modelled predecessor finished, with no provider slot to wait for: something the model
  does not know held it (the steps that finished just before it are listed as suspects);
* steps in the log the model does not have (default providers, the stack), and model
  steps the log does not have (not run, e.g. a targeted update).

Pure (no ``pulumi`` import); the command line builds the model under the mocks::

    python bench/engine_order.py EVENTS.jsonl --stack dev [--json report.json] [--slack 2]
    python bench/engine_order.py EVENTS.jsonl --raw config.json   # the `kindmesh:` keys of the run
    python bench/engine_order.py EVENTS.jsonl --raw WORKDIR/Pulumi.<stack>.yaml   # a run's stack file
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.model import POOLS, Schedule, Step, simulate  # noqa: E402 - after the path set-up

PRE, OUTPUTS, FAILED = "resourcePreEvent", "resOutputsEvent", "resOpFailedEvent"


def step_key(urn: str) -> str:
    """``urn:pulumi:<stack>::<project>::<type chain>::<name>`` -> ``<type chain>::<name>``."""
    parts = urn.split("::", 2)
    return parts[2] if len(parts) == 3 else urn


def read_events(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The engine events of a log (JSON lines; blank lines skipped), in ``sequence`` order."""
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"event log line {number} is not JSON: {exc}") from None
        if not isinstance(event, dict):
            raise ValueError(f"event log line {number} is not an engine event (a JSON object)")
        events.append(event)
    return sorted(events, key=lambda e: int(e.get("sequence", 0)))


def update_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the update itself: no preview pass, no planning events."""
    last_preview = -1
    for i, e in enumerate(events):
        if (e.get("summaryEvent") or {}).get("isPreview"):
            last_preview = i
    out = []
    for e in events[last_preview + 1:]:
        payload = e.get(PRE) or e.get(OUTPUTS) or {}
        if payload.get("planning"):
            continue
        out.append(e)
    return out


@dataclass
class Run:
    """One resource as the engine ran it (times: unix seconds)."""

    urn: str
    type_: str
    ops: list[str] = field(default_factory=list)
    start: int | None = None
    end: int | None = None
    failed: bool = False


def runs(events: list[dict[str, Any]]) -> dict[str, Run]:
    """Per resource (by :func:`step_key`): first start, last finish, ops, failure."""
    out: dict[str, Run] = {}
    for e in update_events(events):
        for kind in (PRE, OUTPUTS, FAILED):
            payload = e.get(kind)
            if not payload:
                continue
            meta = payload.get("metadata") or {}
            urn = meta.get("urn") or ""
            if not urn:
                continue
            run = out.setdefault(step_key(urn), Run(urn=urn, type_=meta.get("type", "")))
            ts = int(e.get("timestamp", 0))
            if kind == PRE:
                run.start = ts if run.start is None else min(run.start, ts)
                if meta.get("op"):
                    run.ops.append(str(meta["op"]))
            else:
                run.end = ts if run.end is None else max(run.end, ts)
                run.failed = run.failed or kind == FAILED
    return out


@dataclass
class Row:
    name: str
    type: str
    op: str
    nominal: float
    modelled_start: float
    modelled_end: float
    start: float | None  # seconds from the run's first step
    end: float | None
    ready: float | None  # when its last modelled predecessor finished (engine times)
    note: str = ""


@dataclass
class Report:
    modelled_total: float
    actual_total: float | None
    rows: list[Row]
    edges_not_real: list[dict[str, Any]]
    edges_missing: list[dict[str, Any]]
    unmodelled: list[str]
    not_in_log: list[str]
    failed: list[str]
    actual_chain: list[str]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _busy(runs_: Mapping[str, Run], keys: Iterable[str], at: float) -> int:
    return sum(1 for k in keys if (r := runs_[k]).start is not None and r.start <= at
               and (r.end is None or r.end > at))


def compare(events: list[dict[str, Any]], model: Mapping[str, Step], *, slack: float = 2.0,
            pools: Mapping[str, int | None] | None = None, parallel: int | None = None) -> Report:
    """The engine's order against the model's (see the module docstring); ``parallel`` is the
    run's ``--parallel`` (the engine's default: 4 × CPUs)."""
    limits = dict(POOLS if pools is None else pools)
    schedule: Schedule = simulate(dict(model), dict(limits), parallel=parallel)
    ran = runs(events)
    keys = {step_key(u): u for u in model}  # model key -> model urn
    starts = [r.start for r in ran.values() if r.start is not None]
    t0: int = min(starts) if starts else 0

    def rel(ts: int | None) -> float | None:
        return None if ts is None else float(ts - t0)

    rows: list[Row] = []
    not_real: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    by_pool: dict[str, list[str]] = {}
    for key, urn in keys.items():
        if key in ran:
            by_pool.setdefault(model[urn].pool, []).append(key)
    for key, urn in sorted(keys.items(), key=lambda kv: (schedule.finish[kv[1]], model[kv[1]].name)):
        step = model[urn]
        m_end = schedule.finish[urn]
        run = ran.get(key)
        if run is None or run.start is None:
            continue
        preds = [step_key(p) for p in step.waits_on if p in model]
        pred_ends = [end for p in preds if p in ran and (end := ran[p].end) is not None]
        ready: int = max(pred_ends, default=t0)
        notes = []
        for p in preds:
            pe = ran[p].end if p in ran else None
            if pe is not None and run.start < pe:
                not_real.append({"step": step.name, "waits_on": model[keys[p]].name,
                                 "started": rel(run.start), "predecessor_finished": rel(pe)})
                notes.append(f"started before {model[keys[p]].name} finished")
        extra = run.start - ready
        if extra > slack:
            cap = limits.get(step.pool)
            if cap is not None and _busy(ran, by_pool.get(step.pool, []), ready) >= cap:
                notes.append(f"queued for a {step.pool} slot")
            else:
                pred_keys = set(preds)
                suspects = sorted(
                    (model[keys[k]].name if k in keys else r.urn
                     for k, r in ran.items()
                     if k != key and k not in pred_keys and r.end is not None and ready < r.end <= run.start
                     and r.end >= run.start - slack),
                )
                missing.append({"step": step.name, "ready": rel(ready), "started": rel(run.start),
                                "waited": float(extra), "finished_just_before": suspects})
                notes.append(f"waited {extra:.0f}s after its modelled predecessors"
                             + (f" (just after {', '.join(suspects)})" if suspects else ""))
        if run.failed:
            notes.append("failed")
        rows.append(Row(name=step.name, type=step.type_, op="/".join(dict.fromkeys(run.ops)) or "?",
                        nominal=step.seconds, modelled_start=m_end - step.seconds, modelled_end=m_end,
                        start=rel(run.start), end=rel(run.end), ready=rel(ready), note="; ".join(notes)))
    ends = [r.end for k, r in ran.items() if k in keys and r.end is not None]
    actual_total = float(max(ends) - t0) if ends else None
    return Report(
        modelled_total=schedule.total,
        actual_total=actual_total,
        rows=rows,
        edges_not_real=not_real,
        edges_missing=missing,
        unmodelled=sorted(r.urn for k, r in ran.items() if k not in keys),
        not_in_log=sorted(model[u].name for k, u in keys.items() if k not in ran or ran[k].start is None),
        failed=sorted(model[keys[k]].name if k in keys else r.urn for k, r in ran.items() if r.failed),
        actual_chain=_chain(ran, model, keys),
    )


def _chain(ran: Mapping[str, Run], model: Mapping[str, Step], keys: Mapping[str, str]) -> list[str]:
    """The chain that decided the run's length: from the last step to finish, back through the
    modelled predecessor that finished last before each step started."""
    done = {k: r for k, r in ran.items() if k in keys and r.end is not None and r.start is not None}
    if not done:
        return []
    current: str | None = max(done, key=lambda k: (done[k].end or 0, model[keys[k]].name))
    chain: list[str] = []
    while current is not None and current not in chain:
        chain.append(current)
        start = done[current].start or 0
        preds = [step_key(p) for p in model[keys[current]].waits_on]
        before = [p for p in preds if p in done and (done[p].end or 0) <= start]
        current = max(before, key=lambda p: (done[p].end or 0, model[keys[p]].name)) if before else None
    return [model[keys[k]].name for k in reversed(chain)]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def table(report: Report) -> str:
    """A Markdown table and the lists, for a terminal or a PR."""
    out = ["| step | op | nominal (s) | modelled start-end | engine start-end | note |",
           "|---|---|---:|---:|---:|---|"]
    for r in report.rows:
        out.append(f"| {r.name} | {r.op} | {r.nominal:.0f} | {r.modelled_start:.0f}-{r.modelled_end:.0f} | "
                   f"{_fmt(r.start)}-{_fmt(r.end)} | {r.note} |")
    out.append("")
    out.append(f"modelled up: {report.modelled_total:.0f} s; engine: {_fmt(report.actual_total)} s "
               "(from its first step to the last modelled step's end)")
    out.append("edges the engine did not wait for (model stricter than the program): "
               + (", ".join(f"{e['step']} <- {e['waits_on']}" for e in report.edges_not_real) or "none"))
    out.append("waits the model does not explain (an edge it lacks?): "
               + (", ".join(f"{e['step']} (+{e['waited']:.0f}s"
                            + (f", after {', '.join(e['finished_just_before'])}" if e["finished_just_before"] else "")
                            + ")" for e in report.edges_missing) or "none"))
    out.append("engine's chain: " + (" -> ".join(report.actual_chain) or "-"))
    if report.failed:
        out.append("failed: " + ", ".join(report.failed))
    if report.not_in_log:
        out.append("modelled but not in the log: " + ", ".join(report.not_in_log))
    if report.unmodelled:
        out.append(f"in the log, not modelled: {len(report.unmodelled)} (providers, the stack, components)")
    return "\n".join(out)


def _model_for(raw: dict[str, Any], stack: str) -> dict[str, Step]:
    """The model of the program's graph for ``raw`` (evaluated under the Pulumi mocks)."""
    from bench.model import steps
    from tests.mocks import evaluate

    return steps(evaluate(raw, stack=stack).resources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("event_log", type=Path, help="the file `pulumi up --event-log FILE` wrote")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--stack", help="model the config of Pulumi.<STACK>.yaml")
    which.add_argument("--raw", type=Path, help="model this config (JSON or YAML: the `kindmesh:` keys)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the model's durations (a world timed at the model's figures × 0.1: 0.1)")
    parser.add_argument("--parallel", type=int, default=None,
                        help="the run's `--parallel` (PULUMI_PARALLEL; the engine's default is 4 × CPUs); default: unbounded")
    parser.add_argument("--slack", type=float, default=2.0,
                        help="seconds a step may start after its predecessors before it counts as waiting (2)")
    args = parser.parse_args(argv)
    if args.stack:
        from tests.helpers import stack_raw

        raw, stack = stack_raw(args.stack), args.stack
    else:
        import yaml

        from kindmesh.core.config_raw import strip_namespace

        data = yaml.safe_load(args.raw.read_text()) or {}
        cfg = data.get("config", data) if isinstance(data, dict) else {}
        namespaced = any(str(k).startswith("kindmesh:") for k in cfg)
        raw, stack = (strip_namespace(cfg) if namespaced else dict(cfg)), "run"
    events = read_events(args.event_log.read_text().splitlines())
    # relative paths in the config (kindmesh:charts) are the project's: resolve them where the file is
    project = args.raw.resolve().parent if args.raw else ROOT
    here = Path.cwd()
    os.chdir(project)
    try:
        model = _model_for(raw, stack)
    finally:
        os.chdir(here)
    if args.scale != 1.0:
        model = {u: replace(st, seconds=st.seconds * args.scale) for u, st in model.items()}
    report = compare(events, model, slack=args.slack, parallel=args.parallel)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
