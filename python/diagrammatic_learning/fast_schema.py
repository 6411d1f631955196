"""A compiled JSON Schema check that only says "valid" or "look closer" (SPEC §1, §10).

``surely_valid(doc)`` runs the format's schema through ``jsonschema_rs`` (Rust,
tens of times faster than the pure-Python ``jsonschema``). It answers True only
when the document is valid and nothing in it could be judged differently by the
two validators; otherwise the caller runs the full pure-Python pass, which
names every problem with its SPEC §10 code and pointer. So the codes and
pointers never depend on this module, only the time a valid document takes.

Whole numbers written with a fraction (``3.0``) are integers to JSON Schema but
not to SPEC §1 (``wrong-type``): the Rust side sees such a number as the next
float above it (``3.0000000000000004``), which is no integer and compares with
every bound of the schema as ``3.0`` does, except where ``3.0`` equals an
exclusive bound (then the full pass runs). Never answered True here: integers
beyond 2^53 − 1 and non-finite numbers (compared as floats on the Rust side),
nesting deeper than any valid diagram has (bounded recursion on the Rust side),
non-finite numbers and lone surrogates (the full pass reports them), and anything
the Rust side cannot convert (non-string keys, mappings that are not dicts).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

from .resources import schema_path

try:  # an optional speed-up: without it every document takes the pure-Python pass
    import jsonschema_rs
except ImportError:  # pragma: no cover - depends on the platform's wheels
    jsonschema_rs = None

MAX_NESTING = 32  # a valid diagram nests about 10 deep (objects → arrow → architecture → inputs → layer → list)
_SAFE_INT = 2 ** 53 - 1  # larger integers are bad-value (SPEC §1): the full pass reports them


@lru_cache(maxsize=1)
def _validator() -> tuple[Any, frozenset[float]]:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    exclusive: set[float] = set()
    todo = [schema]
    while todo:
        x = todo.pop()
        if isinstance(x, dict):
            for k, v in x.items():
                if k in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(v, (int, float)):
                    exclusive.add(float(v))
                todo.append(v)
        elif isinstance(x, list):
            todo.extend(x)
    return jsonschema_rs.validator_for(schema), frozenset(exclusive)


class _Unplain(Exception):
    """The document holds something the two validators may judge differently."""


def _check(doc: Any, exclusive: frozenset[float]) -> bool:
    """Raise ``_Unplain`` (see the module text); else whether ``doc`` holds a whole number written as a float."""
    if type(doc) is not dict:
        raise _Unplain
    whole = False
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        container, depth = stack.pop()
        if depth >= MAX_NESTING:
            raise _Unplain
        if type(container) is dict:
            for k in container:
                if type(k) is not str:
                    raise _Unplain
                if not k.isascii():
                    k.encode("utf-8")  # a lone surrogate raises: not plain
            values = container.values()
        else:
            values = container
        for value in values:
            kind = type(value)
            if kind is str:
                if not value.isascii():
                    value.encode("utf-8")
            elif kind is int:
                if not -_SAFE_INT <= value <= _SAFE_INT:
                    raise _Unplain
            elif kind is dict or kind is list:
                stack.append((value, depth + 1))
            elif kind is float:
                if not math.isfinite(value) or abs(value) >= _SAFE_INT:
                    raise _Unplain
                if value.is_integer():
                    if value in exclusive:
                        raise _Unplain
                    whole = True
            elif kind is not bool and value is not None:
                raise _Unplain
    return whole


def _nudged(value: Any) -> Any:
    """A copy with every whole float replaced by the next float above it (containers copied, rest shared)."""
    if type(value) is float:
        return math.nextafter(value, math.inf) if value.is_integer() else value
    if type(value) is dict:
        return {k: _nudged(v) for k, v in value.items()}
    if type(value) is list:
        return [_nudged(v) for v in value]
    return value


def available() -> bool:
    """Whether the compiled validator is installed."""
    return jsonschema_rs is not None


def surely_valid(doc: Any) -> bool:
    """True only if ``doc`` is valid against the format's schema and both validators would agree."""
    if jsonschema_rs is None:
        return False
    validator, exclusive = _validator()
    try:
        if _check(doc, exclusive):
            doc = _nudged(doc)  # recursion bounded by MAX_NESTING
        return bool(validator.is_valid(doc))
    except Exception:  # _Unplain, or anything the Rust side refuses: the full pass decides
        return False
