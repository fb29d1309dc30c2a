"""Test session setup: the end-to-end suite runs only when asked for (it takes minutes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
