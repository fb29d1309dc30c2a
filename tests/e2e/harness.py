"""The e2e lifecycle's frame: cleanup always runs, results are always written, the first
failure is the one reported (a failing destroy never hides the failure that came before)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def run_then_clean_up(
    body: Callable[[], Any],
    cleanup: list[tuple[str, Callable[[], Any]]],
    record: Callable[[list[str]], None],
) -> None:
    """Run ``body``; then every cleanup step in order, each even when an earlier one failed;
    then ``record`` (given every failure, labelled); then re-raise the first failure."""
    failures: list[tuple[str, BaseException]] = []
    try:
        body()
    except BaseException as err:  # noqa: BLE001 - also KeyboardInterrupt: clean up, then re-raise
        failures.append(("test", err))
    for label, step in cleanup:
        try:
            step()
        except BaseException as err:  # noqa: BLE001
            failures.append((label, err))
    try:
        record([f"{label}: {type(err).__name__}: {err}" for label, err in failures])
    except BaseException as err:  # noqa: BLE001
        failures.append(("results", err))
    if failures:
        label, first = failures[0]
        later = [f"{lbl}: {type(e).__name__}: {e}" for lbl, e in failures[1:]]
        if later and hasattr(first, "add_note"):
            first.add_note("later failures during cleanup: " + "; ".join(later))
        raise first
