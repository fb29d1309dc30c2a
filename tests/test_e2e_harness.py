"""The e2e frame without Docker (runs in `make test`): failing destroy, results file, first failure reported."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import run_then_clean_up


def test_destroy_failure_still_removes_the_stack_and_writes_results_and_reports_the_first(tmp_path):
    done = []
    results = tmp_path / "results.json"

    def body():
        raise AssertionError("verify failed: us cannot reach eu")

    def destroy():
        done.append("destroy")
        raise RuntimeError("destroy failed: kind delete timed out")

    def record(failures):
        done.append("record")
        results.write_text(json.dumps({"failures": failures}))

    with pytest.raises(AssertionError, match="us cannot reach eu") as info:
        run_then_clean_up(body, [("destroy", destroy), ("remove_stack", lambda: done.append("remove"))], record)
    assert done == ["destroy", "remove", "record"]
    failures = json.loads(results.read_text())["failures"]
    assert failures[0].startswith("test: AssertionError") and failures[1].startswith("destroy: RuntimeError")
    assert "destroy failed" in "".join(getattr(info.value, "__notes__", []))


def test_a_cleanup_failure_after_a_passing_body_is_reported():
    recorded = []
    with pytest.raises(RuntimeError, match="destroy failed"):
        run_then_clean_up(lambda: None, [("destroy", lambda: (_ for _ in ()).throw(RuntimeError("destroy failed")))],
                          recorded.append)
    assert recorded and recorded[0][0].startswith("destroy:")


def test_interrupt_still_cleans_up_and_records():
    done = []

    def body():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_then_clean_up(body, [("destroy", lambda: done.append("destroy"))], lambda f: done.append(f))
    assert done == ["destroy", ["test: KeyboardInterrupt: "]]


def test_clean_run_records_no_failures():
    recorded = []
    run_then_clean_up(lambda: None, [("destroy", lambda: None)], recorded.append)
    assert recorded == [[]]
