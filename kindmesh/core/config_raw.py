"""The ``kindmesh:`` keys of a Pulumi config, before parsing: namespace, JSON, typos.

``pulumi config`` hands values over as JSON text under ``kindmesh:<key>``; :func:`decode_raw`
decodes them (bounded in depth), :func:`strip_namespace` takes a stack file's mapping, and
:func:`namespace_problems` names keys under a near miss of the namespace (``kindmsh:``), which
no program would read.

Pure module: no ``pulumi`` import.

May import: model, collector.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Mapping
from typing import Any

from kindmesh.core.collector import NESTING_MAX, quote
from kindmesh.core.model import NAMESPACE, PROBLEMS_SHOWN, ConfigError, Problem, clip

NAMESPACE_NEAR_MISS = 0.75  # difflib ratio from which another namespace is taken for a typo of ours


def namespace_typo(namespace: str) -> bool:
    """Whether a config namespace looks like a typo of ``kindmesh`` (``kindmsh``, ``KindMesh``,
    ``kind-mesh``, ``kindmesh `` …): such keys reach no program and would be silently ignored."""
    if namespace == NAMESPACE:
        return False
    folded = re.sub(r"[^a-z0-9]", "", namespace.lower())
    if folded == NAMESPACE:
        return True
    return difflib.SequenceMatcher(None, folded, NAMESPACE).ratio() >= NAMESPACE_NEAR_MISS


def namespace_problems(keys: Any) -> list[Problem]:
    """One problem per config key whose namespace is a near miss of ``kindmesh:`` (bounded)."""
    problems: list[Problem] = []
    for key in keys:
        ns, sep, rest = str(key).partition(":")
        if not sep or not namespace_typo(ns):
            continue
        if len(problems) >= PROBLEMS_SHOWN:
            break
        shown, fixed = clip(f"{ns}:{rest}"), clip(f"{NAMESPACE}:{rest}")
        problems.append(Problem(
            shown,
            f"the namespace {quote(ns)} is not {NAMESPACE!r} (a typo?): no program reads this key, so it would "
            f"be silently ignored. Rename it to `{fixed}` in Pulumi.<stack>.yaml "
            f"(or `pulumi config rm '{shown}'` and set it again as `{fixed}`)",
        ))
    return problems


def strip_namespace(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``{'kindmesh:clusters': …}`` -> ``{'clusters': …}``; other namespaces dropped."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        ns, sep, rest = str(key).partition(":")
        if sep and ns == NAMESPACE:
            out[rest] = value
    return out


def json_depth(text: str) -> int:
    """How deep ``[``/``{`` nest in JSON ``text`` (strings skipped): checked before decoding,
    because ``json.loads`` recurses and raises RecursionError on deep input."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _bounded_int(text: str) -> int | str:
    # int() refuses 4300+ digits; keep such a number as text, reported as far too large
    return int(text) if len(text) <= 4000 else text


def decode_raw(merged: Mapping[str, Any]) -> dict[str, Any]:
    """``kindmesh:`` keys of a Pulumi config (``{'kindmesh:network': '{"subnet": …}'}``) ->
    raw keys with JSON values decoded (what :func:`parse_config` reads).

    A value that is not JSON stays a string. A value nested deeper than NESTING_MAX is a
    ConfigError naming its key (json.loads would raise RecursionError on it)."""
    raw: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in merged.items():
        ns, sep, rest = str(key).partition(":")
        if not sep or ns != NAMESPACE:
            continue
        if isinstance(value, str):
            depth = json_depth(value)
            if depth > NESTING_MAX:
                problems.append(
                    Problem(
                        f"{NAMESPACE}:{clip(rest)}",
                        f"is nested {depth} levels deep; kindmesh config is at most {NESTING_MAX} "
                        "deep: check the value with `pulumi config get` and set it again",
                    )
                )
                continue
            with contextlib.suppress(ValueError, RecursionError):  # not JSON: a plain string
                value = json.loads(value, parse_int=_bounded_int)
        raw[rest] = value
    if problems:
        raise ConfigError(problems)
    return raw
