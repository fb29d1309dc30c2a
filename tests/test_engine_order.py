"""bench/engine_order.py: the engine's own order of steps (its event log) against the model."""

from __future__ import annotations

import json

import pytest

from bench.bench import raw_config
from bench.engine_order import compare, main, read_events, runs, step_key, table
from bench.model import simulate, steps
from tests.mocks import evaluate
from tests.test_bench_model import res

T0 = 1_780_000_000  # unix seconds
STACK_URN = "urn:pulumi:lab::kindmesh::pulumi:pulumi:Stack::kindmesh-lab"


def urn(name, type_="command:local:Command", stack="lab", project="kindmesh"):
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


class Log:
    """Writes engine events as `pulumi up --event-log` does (apitype.EngineEvent, one JSON a line)."""

    def __init__(self):
        self.events = []

    def add(self, ts, **payload):
        self.events.append({"sequence": len(self.events), "timestamp": T0 + ts, **payload})

    def step(self, urn_, type_, start, end, op="create", failed=False, planning=False):
        meta = {"op": op, "urn": urn_, "type": type_, "old": None, "new": {"urn": urn_, "type": type_},
                "detailedDiff": None, "provider": ""}
        pre = {"metadata": meta}
        if planning:
            pre["planning"] = True
        self.add(start, resourcePreEvent=pre)
        if failed:
            self.add(end, resOpFailedEvent={"metadata": meta, "status": 1, "steps": 0})
        else:
            post = {"metadata": meta}
            if planning:
                post["planning"] = True
            self.add(end, resOutputsEvent=post)

    def lines(self):
        # written out of order: the reader sorts by `sequence`
        return [json.dumps(e) for e in reversed(self.events)] + [""]


# A small graph: the model's idea of it (old, serial: MetalLB after Cilium's rollout).
CMD, REL = "command:local:Command", "kubernetes:helm.sh/v3:Release"
MODEL_GRAPH = [
    res(urn("host-images-pull", stack="bench"), CMD, name="host-images-pull"),
    res(urn("a-kind-cluster", stack="bench"), CMD, name="a-kind-cluster"),
    res(urn("a-image-load", stack="bench"), CMD, deps=[urn("a-kind-cluster", stack="bench"),
                                                      urn("host-images-pull", stack="bench")], name="a-image-load"),
    res(urn("a-cilium", REL, stack="bench"), REL, deps=[urn("a-image-load", stack="bench")], name="a-cilium"),
    res(urn("a-cilium-rollout", stack="bench"), CMD, deps=[urn("a-cilium", REL, stack="bench")],
        name="a-cilium-rollout"),
    res(urn("a-metallb", REL, stack="bench"), REL, deps=[urn("a-cilium-rollout", stack="bench")], name="a-metallb"),
]


def synthetic_log():
    """A known schedule (a different stack name than the model's): kind create and the pull
    overlap as modelled; MetalLB starts while Cilium rolls out (the model's edge is not real);
    Cilium starts 30 s after the load, right after an unmodelled step (a missing edge)."""
    log = Log()
    log.add(-5, preludeEvent={"config": {}})
    # the preview pass first: planning events, then its summary - all ignored
    log.step(urn("a-kind-cluster"), CMD, -4, -4, planning=True)
    log.add(-3, summaryEvent={"isPreview": True, "durationSeconds": 1, "resourceChanges": {}})
    log.step(STACK_URN, "pulumi:pulumi:Stack", 0, 400)
    log.step(urn("host-images-pull"), CMD, 1, 91)
    log.step(urn("a-kind-cluster"), CMD, 1, 61)
    log.step(urn("a-image-load"), CMD, 91, 106)
    log.step(urn("x-slow-thing", "example:index:Thing"), "example:index:Thing", 100, 136)
    log.step(urn("a-cilium", REL), REL, 136, 156)
    log.step(urn("a-metallb", REL), REL, 160, 180)
    log.step(urn("a-cilium-rollout"), CMD, 156, 276, failed=True)
    log.add(401, summaryEvent={"isPreview": False, "durationSeconds": 401, "resourceChanges": {"create": 7}})
    return log


def test_urns_match_across_stacks_and_projects():
    assert step_key(urn("a", stack="dev", project="p")) == step_key(urn("a", stack="bench", project="p"))
    assert step_key("urn:pulumi:s::p::kindmesh:index:KindCluster$command:local:Command::us-image-load") == (
        "kindmesh:index:KindCluster$command:local:Command::us-image-load")


def test_reader_orders_by_sequence_and_skips_the_preview():
    ran = runs(read_events(synthetic_log().lines()))
    kc = ran[step_key(urn("a-kind-cluster"))]
    assert (kc.start, kc.end, kc.ops) == (T0 + 1, T0 + 61, ["create"])  # not the preview's -4
    assert ran[step_key(urn("a-cilium-rollout"))].failed


def test_bad_lines_name_their_number():
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_events(['{"sequence": 1}', "{oops"])


def test_compare_finds_the_edge_that_was_not_real_and_the_one_the_model_lacks():
    report = compare(read_events(synthetic_log().lines()), steps(MODEL_GRAPH))
    rows = {r.name: r for r in report.rows}
    assert (rows["a-kind-cluster"].start, rows["a-kind-cluster"].end) == (1, 61)  # from the first step (the stack)
    assert rows["a-image-load"].ready == 91 and rows["a-image-load"].note == ""  # as modelled: after both
    assert report.edges_not_real == [{"step": "a-metallb", "waits_on": "a-cilium-rollout",
                                      "started": 160.0, "predecessor_finished": 276.0}]
    (gap,) = report.edges_missing
    assert gap["step"] == "a-cilium" and gap["ready"] == 106 and gap["started"] == 136 and gap["waited"] == 30
    assert gap["finished_just_before"] == ["urn:pulumi:lab::kindmesh::example:index:Thing::x-slow-thing"]
    assert report.failed == ["a-cilium-rollout"]
    assert report.unmodelled == sorted([STACK_URN, urn("x-slow-thing", "example:index:Thing")])
    assert report.not_in_log == []
    assert report.modelled_total == simulate(steps(MODEL_GRAPH)).total
    assert report.actual_total == 276
    assert report.actual_chain == ["host-images-pull", "a-image-load", "a-cilium", "a-cilium-rollout"]
    text = table(report)
    assert "| a-metallb | create | 20 |" in text and "started before a-cilium-rollout finished" in text
    assert "a-metallb <- a-cilium-rollout" in text and "a-cilium (+30s, after " in text
    json.dumps(report.as_json())  # serialisable as is


def test_a_step_waiting_for_a_provider_slot_is_not_a_missing_edge():
    dyn = "pulumi-python:dynamic:Resource"
    graph = [res(urn(f"c{i}-kind", dyn, stack="bench"), dyn, name=f"c{i}-kind") for i in range(5)]
    log = Log()
    for i in range(4):
        log.step(urn(f"c{i}-kind", dyn), dyn, 0, 10)
    log.step(urn("c4-kind", dyn), dyn, 10, 11)  # the 4-thread dynamic-provider host was full
    report = compare(read_events(log.lines()), steps(graph))
    assert report.edges_missing == [] and report.edges_not_real == []
    assert {r.name: r.note for r in report.rows}["c4-kind"] == "queued for a dynamic slot"


def schedule_log(model, stack="lab", project="kindmesh", skip=()):
    """The model's own schedule written as an event log of another stack."""
    sched = simulate(model)
    log = Log()
    for u, s in sorted(model.items(), key=lambda kv: sched.finish[kv[0]] - kv[1].seconds):
        if s.name in skip:
            continue
        real = u.replace("urn:pulumi:bench::kindmesh::", f"urn:pulumi:{stack}::{project}::")
        log.step(real, s.type_, int(sched.finish[u] - s.seconds), int(sched.finish[u]))
    return log


def test_the_programs_graph_run_as_modelled_reports_no_difference():
    model = steps(evaluate(raw_config(2), stack="bench").resources)
    report = compare(read_events(schedule_log(model).lines()), model)
    assert report.edges_not_real == [] and report.edges_missing == [] and report.unmodelled == []
    assert report.actual_total == report.modelled_total
    assert report.actual_chain[0] == "host-images-pull" and report.actual_chain[-1].endswith("-lb-ips")
    assert all(r.start == r.modelled_start and r.end == r.modelled_end for r in report.rows)


def test_command_line_on_a_stack(tmp_path, capsys):
    model = steps(evaluate(raw_config(2), stack="bench").resources)
    log = tmp_path / "events.jsonl"
    log.write_text("\n".join(schedule_log(model, skip={"c1-l2"}).lines()))
    raw = tmp_path / "config.json"
    raw.write_text(json.dumps({"config": {f"kindmesh:{k}": v for k, v in raw_config(2).items()}}))
    out = tmp_path / "report.json"
    assert main([str(log), "--raw", str(raw), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| c0-kind-cluster | create | 60 |" in printed
    assert "modelled but not in the log: c1-l2" in printed
    data = json.loads(out.read_text())
    assert data["not_in_log"] == ["c1-l2"] and data["edges_missing"] == []


def test_command_line_on_a_runs_stack_file_with_local_charts(tmp_path, capsys, monkeypatch):
    """The real-engine tier's work directory: a stack file whose chart paths are relative to it."""
    import os

    import yaml

    from kindmesh.core.config import CILIUM_CHART_VERSION, METALLB_CHART_VERSION

    work = tmp_path / "project"
    (work / "charts").mkdir(parents=True)
    for chart, version in (("cilium", CILIUM_CHART_VERSION), ("metallb", METALLB_CHART_VERSION)):
        (work / "charts" / f"{chart}-{version}.tgz").write_bytes(b"")
    config = {f"kindmesh:{k}": v for k, v in raw_config(2).items()}
    config["kindmesh:charts"] = {"cilium": "charts", "metallb": "charts"}
    (work / "Pulumi.lab.yaml").write_text(yaml.safe_dump({"config": config}))
    log = tmp_path / "events.jsonl"
    log.write_text("")
    monkeypatch.chdir(tmp_path)
    assert main([str(log), "--raw", str(work / "Pulumi.lab.yaml")]) == 0
    assert os.getcwd() == str(tmp_path)  # back where it was
    assert "modelled up: 298 s" in capsys.readouterr().out
