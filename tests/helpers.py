"""Shared test helpers: stack files, upstream data location."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kindmesh.core.config_raw import strip_namespace

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "upstream"
# The stacks this repository ships. A user's own stack files (`make new-stack NAME=lab`, a
# half-edited Pulumi.typo.yaml) are never test cases: tests/test_user_files.py checks that, and
# that this list is what git tracks.
SHIPPED_STACKS = ("ci", "dev", "hub", "remote", "trio")
ALL_STACKS = list(SHIPPED_STACKS)


def _has_existing(stack: str) -> bool:
    clusters = (yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()).get("config") or {}).get(
        "kindmesh:clusters") or []
    return any(isinstance(c, dict) and c.get("source") == "existing" for c in clusters)


# stacks of kind clusters only; stacks with existing clusters are tested in test_existing*.py
STACKS = [s for s in ALL_STACKS if not _has_existing(s)]
EXISTING_STACKS = [s for s in ALL_STACKS if _has_existing(s)]


def stack_raw(stack: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return strip_namespace(data.get("config") or {})


def upstream(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"upstream oracle {path} is absent: it lives in ../shared beside the checkout "
            "(CI and developer machines have it; a fresh clone does not)"
        )
    return path


SOURCE_DIRS = ("kindmesh", "components", "stacks")


def copy_sources(dest: Path) -> None:
    """The importable code of the project (what `python -m kindmesh.…` needs) into ``dest``."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in SOURCE_DIRS:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Pulumi.yaml", dest / "Pulumi.yaml")
