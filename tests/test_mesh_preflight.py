"""Mesh runs the preflight before registering anything, itself included."""

from __future__ import annotations

import textwrap

import pulumi
import pytest

from tests.mocks import Recorder, run_file


def test_a_failing_preflight_registers_nothing(tmp_path, monkeypatch):
    from kindmesh.stacks import preflight, preflight_existing

    def failing(plan, *args, **kwargs):
        raise preflight.PreflightError(["docker is not reachable: try `docker info`"])

    monkeypatch.setattr(preflight_existing, "run", failing)
    seen: list[Recorder] = []
    original = Recorder.__init__

    def keep(self, *a, **kw):
        original(self, *a, **kw)
        seen.append(self)

    monkeypatch.setattr(Recorder, "__init__", keep)
    program = tmp_path / "__main__.py"
    program.write_text(textwrap.dedent("""
        from kindmesh.components.mesh import Mesh, MeshArgs
        Mesh("lab", MeshArgs(config={"clusters": [{"name": "a", "id": 1}, {"name": "b", "id": 2}]}))
    """))
    with pytest.raises(pulumi.RunError, match="docker is not reachable") as err:
        run_file(program, stack="example")
    assert "Mesh 'lab'" in str(err.value)
    assert seen and seen[-1].registered == []
