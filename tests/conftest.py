"""Test session setup.

* The end-to-end suite runs only when asked for (it takes minutes).
* A memory guard: a test that grows the process by more than ``KINDMESH_TEST_MEMORY_MIB``
  (default 4096) fails alone with :class:`MemoryGuardError` instead of the kernel killing the
  whole run (a gate regression looping under the fake clock once grew pytest to 24 GB). The
  time limit is pytest-timeout's (``timeout`` in pyproject.toml).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

MEMORY_ENV = "KINDMESH_TEST_MEMORY_MIB"
MEMORY_DEFAULT_MIB = 4096
CHECK_EVERY = 0.05  # seconds between two looks at the process's resident memory


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = os.environ.get("KINDMESH_E2E") == "1" or any(
        "e2e" in Path(str(arg)).parts for arg in config.args
    )
    if asked:
        return
    skip = pytest.mark.skip(
        reason="end-to-end suite runs only when asked: `make e2e` or `pytest tests/e2e` on a Docker host"
    )
    for item in items:
        if "e2e" in Path(str(item.fspath)).parts:
            item.add_marker(skip)


class MemoryGuardError(Exception):
    """The running test grew the test process beyond the memory guard's limit."""


def resident_mib() -> float | None:
    """Resident memory of this process (Linux ``/proc/self/statm``); None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_limit_mib() -> float:
    try:
        return float(os.environ.get(MEMORY_ENV, MEMORY_DEFAULT_MIB))
    except ValueError:
        return float(MEMORY_DEFAULT_MIB)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Watch the test's memory from a thread; past the limit, interrupt the test (SIGUSR1 raises
    MemoryGuardError in the main thread, where the test runs) - again while it stays above."""
    base = resident_mib()
    if base is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    limit = memory_limit_mib()
    seen: dict[str, float] = {}
    done = threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        raise MemoryGuardError(
            f"{item.nodeid} grew the test process by {seen.get('grown', 0):.0f} MiB (limit {limit:.0f} MiB, "
            f"${MEMORY_ENV}): stopped so that the rest of the run goes on"
        )

    def watch() -> None:
        while not done.wait(CHECK_EVERY):
            now = resident_mib()
            if now is not None and now - base > limit:
                seen["grown"] = now - base
                os.kill(os.getpid(), signal.SIGUSR1)
                done.wait(1.0)  # give the test a second to unwind before asking again

    previous = signal.signal(signal.SIGUSR1, interrupt)
    watcher = threading.Thread(target=watch, name="kindmesh-memory-guard", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        signal.signal(signal.SIGUSR1, previous)
