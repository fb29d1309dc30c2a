"""Behaviour pinned across refactors: the plan and everything the core renders, for every
shipped stack (and the example and variants in tests/golden.py), byte for byte as recorded."""

from __future__ import annotations

import pytest

from tests.golden import PROBLEMS, canonical, cases, path_of, problems_snapshot, snapshot

HINT = "behaviour changed; if intended, record again with `.venv/bin/python -m tests.golden` and review the diff"


@pytest.mark.parametrize("name", list(cases()))
def test_plan_and_rendered_values_are_byte_identical_to_the_golden_file(name):
    assert canonical(snapshot(name)) == path_of(name).read_text(), f"{name}: {HINT}"


def test_problems_of_bad_configs_are_identical_to_the_golden_file():
    assert canonical(problems_snapshot()) == path_of(PROBLEMS).read_text(), HINT


def test_every_shipped_stack_has_a_golden_file():
    from tests.helpers import SHIPPED_STACKS

    assert set(SHIPPED_STACKS) <= set(cases())
    for name in [*cases(), PROBLEMS]:
        assert path_of(name).is_file(), name
