"""The vocabulary as the JSON Schema declares it: layer types, function ops, distances and their defaults.

The schema (``schema/learning-diagram.schema.json``) is the one place that
lists each vocabulary entry and gives each optional parameter its default
(a ``default`` keyword beside the parameter's type). Python reads them from
here and Julia from the same file (``julia/src/vocabulary.jl``); neither keeps
a table of its own. One default is a rule rather than a value: a pool's
``stride`` defaults to its ``kernel_size`` (``layers.full_params``).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any, Mapping

from .resources import schema_path


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The format's JSON Schema, parsed once (callers must not modify it)."""
    return json.loads(schema_path().read_text(encoding="utf-8"))


def _cases(definition: Mapping[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """The ``then.properties`` of each ``if {key: const NAME}`` case of a definition's ``allOf``, by NAME."""
    return {case["if"]["properties"][key]["const"]: case["then"]["properties"] for case in definition["allOf"]}


def _function_arrow() -> dict[str, Any]:
    arrow = schema()["$defs"]["arrow"]
    return next(case["then"] for case in arrow["allOf"] if case["if"]["properties"]["kind"]["const"] == "function")


def _defaults(cases: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {param: copy.deepcopy(spec["default"]) for param, spec in props.items()
                   if isinstance(spec, Mapping) and "default" in spec}
            for name, props in cases.items()}


def layer_types() -> tuple[str, ...]:
    """Every layer type (``$defs/layer``), in the schema's order."""
    return tuple(schema()["$defs"]["layer"]["properties"]["type"]["enum"])


def function_ops() -> tuple[str, ...]:
    """Every function op (``$defs/arrow``, kind ``function``), in the schema's order."""
    return tuple(_function_arrow()["properties"]["op"]["enum"])


def distance_names() -> tuple[str, ...]:
    """Every distance (``$defs/distance``), in the schema's order."""
    return tuple(schema()["$defs"]["distance"]["properties"]["name"]["enum"])


def combines() -> tuple[str, ...]:
    """Every combine step of a product model (``$defs/architecture``)."""
    return tuple(schema()["$defs"]["architecture"]["properties"]["combine"]["enum"])


def layer_defaults() -> dict[str, dict[str, Any]]:
    """Layer type → {parameter: default} for every layer type (empty for a layer without optional parameters)."""
    return _defaults(_cases(schema()["$defs"]["layer"], "type"))


def function_defaults() -> dict[str, dict[str, Any]]:
    """Function op → {parameter: default} for every op."""
    return _defaults(_cases(_function_arrow(), "op"))


def distance_defaults() -> dict[str, dict[str, Any]]:
    """Distance → {parameter: default} for every distance."""
    return _defaults(_cases(schema()["$defs"]["distance"], "name"))


_function_defaults = lru_cache(maxsize=1)(function_defaults)


def function_params(op: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A function arrow's parameters with every default filled in (SPEC §3.2); ``x-`` keys left out."""
    full = copy.deepcopy(_function_defaults().get(op, {}))
    full.update({k: v for k, v in params.items() if not k.startswith("x-")})
    return full
