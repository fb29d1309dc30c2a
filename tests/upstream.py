"""Validation helpers against ../shared/upstream (skip when it is absent)."""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import jsonschema
import yaml

from tests.helpers import upstream


@cache
def _load_yaml(*parts: str) -> Any:
    return yaml.safe_load(upstream(*parts).read_text())


@cache
def _load_json(*parts: str) -> Any:
    return json.loads(upstream(*parts).read_text())


def merged(defaults: Any, ours: Any) -> Any:
    """Helm's coalescing of user values over the chart's defaults (maps merge, rest replaces)."""
    if isinstance(defaults, dict) and isinstance(ours, dict):
        out = dict(defaults)
        for key, value in ours.items():
            out[key] = merged(defaults.get(key), value) if key in defaults else value
        return out
    return ours


def schema_errors(values: dict[str, Any], chart: str) -> list[str]:
    """Errors of the chart's JSON schema on the values Helm would validate (defaults + ours)."""
    schema = _load_json(chart, "values.schema.json")
    validator = jsonschema.Draft7Validator(schema)
    final = merged(copy.deepcopy(_load_yaml(chart, "values.yaml")), values)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(final)]


def unknown_key_paths(values: dict[str, Any], chart: str) -> list[str]:
    """Key paths set in ``values`` that the chart's values.yaml does not define.

    Descends while the chart's default is a non-empty mapping; an empty mapping (e.g.
    ``annotations: {}``) or a list holds free-form content.
    """
    defaults = _load_yaml(chart, "values.yaml")
    missing: list[str] = []

    def walk(ours: Any, theirs: Any, path: str) -> None:
        if not isinstance(ours, dict):
            return
        for key, value in ours.items():
            here = f"{path}.{key}" if path else key
            if not isinstance(theirs, dict) or key not in theirs:
                missing.append(here)
                continue
            default = theirs[key]
            if isinstance(value, dict) and isinstance(default, dict) and default:
                walk(value, default, here)

    walk(values, defaults, "")
    return missing


def crd_errors(obj: dict[str, Any], crd_file: str) -> list[str]:
    crd = _load_yaml(*crd_file.split("/"))
    version = obj["apiVersion"].split("/")[1]
    spec = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema = spec["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
