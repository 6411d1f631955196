"""Parsing JSON text as SPEC §1 reads it: no NaN/Infinity literals, no key twice in one object, exact integers.

``strict_loads(text)`` parses with Python's C scanner and Python hooks that
raise ``NotJSON`` at the first literal or repeated key (the hooks run for
every object and integer, which is slow on large files). ``fast_loads(text,
limit)`` first tries the C scanner without the object hook and proves
afterwards, in linear time, that the hooks would have changed nothing: no
``NaN``/``Infinity`` in the text at all, nesting within ``limit``, and no
repeated key, because every key ends with a ``"`` followed by optional
whitespace and ``:`` (so counting those marks in the text counts at least every
key) and the parsed objects hold exactly that many keys. When it cannot prove
it (a mark inside a string, a literal's name inside a string, deep nesting, an
error of any kind) it answers None and the caller parses strictly, so every
message stays the strict parser's.
"""

from __future__ import annotations

import json
import re
from typing import Any


class HugeInt(int):
    """An integer literal too long for Python's int conversion (over 4300 digits), kept as a stand-in.

    It is an integer beyond ±(2^53 − 1), so it is ``bad-value`` at its place (SPEC §1); the
    stand-in's value is ±10^400 and it prints as what it stands for.
    """

    digits: int

    def __new__(cls, text: str) -> "HugeInt":
        value = super().__new__(cls, -10 ** 400 if text.startswith("-") else 10 ** 400)
        value.digits = len(text.lstrip("-"))
        return value

    def __repr__(self) -> str:
        return f"{'-' if self < 0 else ''}<an integer of {self.digits} digits>"

    __str__ = __repr__


def parse_int(text: str) -> int:
    """An integer literal as an int, read exactly (SPEC §1), or a ``HugeInt`` beyond Python's 4300-digit limit."""
    return int(text) if len(text) <= 4000 else HugeInt(text)


class NotJSON(Exception):
    """What SPEC §1 rejects beyond Python's json: NaN/Infinity literals, a key given twice."""


def _no_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not a JSON value (SPEC §1)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise NotJSON(f"the key {key!r} appears twice in one object (SPEC §1)")
    return d


def strict_loads(text: str) -> Any:
    """Parse ``text``; ``json.JSONDecodeError``, ``NotJSON`` or ``RecursionError`` if SPEC §1 rejects it."""
    return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys, parse_int=parse_int)


_KEY_END_SPACED = re.compile(r'"[ \t\n\r]*:')


def _key_marks(text: str) -> int:
    """At least the number of keys in a valid JSON text: ``"`` then optional whitespace then ``:``."""
    if '" ' in text or '"\t' in text or '"\n' in text or '"\r' in text:
        return sum(1 for _ in _KEY_END_SPACED.finditer(text))
    return text.count('":')


def shape(doc: Any, limit: int) -> tuple[int, int]:
    """(nesting depth, number of keys) of a document made of dicts and lists; the walk stops once the
    depth passes ``limit`` (then the keys are those of the levels walked)."""
    D, L = dict, list
    level = [doc] if type(doc) is D or type(doc) is L else []
    depth = keys = 0
    while level:
        depth += 1
        if depth > limit:
            break
        dicts = [c for c in level if type(c) is D]
        keys += sum(map(len, dicts))
        values = [v for c in dicts for v in c.values()]
        if len(dicts) != len(level):
            values += [v for c in level if type(c) is L for v in c]
        level = [v for v in values if type(v) is D or type(v) is L]
    return depth, keys


def fast_loads(text: str, limit: int) -> tuple[Any, int] | None:
    """(document, nesting depth ≤ ``limit``) when ``text`` is surely what ``strict_loads`` accepts, with the same
    document; None when the strict parse must decide (see the module text)."""
    if "NaN" in text or "Infinity" in text:
        return None
    try:
        doc = json.loads(text, parse_int=parse_int)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None
    depth, keys = shape(doc, limit)
    if depth > limit or _key_marks(text) != keys:
        return None
    return doc, depth
