"""What a ``Diagram`` holds, in a form cheap to compare: so that work done on it is not done twice.

A ``Diagram`` is a mutable container of frozen parts (objects, arrows,
explicit equations). Reading it, validating it and building its equations
cost time linear in its size with a large constant; compiling a diagram that
was just loaded would do all of it again. ``fingerprint(d)`` captures
everything those results depend on: the parts by identity (they are frozen,
and the fingerprint keeps them alive, so an identity is never reused) and,
by value, the diagram's own fields and the contents of the few mutable
mappings inside parts (layer, function and distance parameters, frozen
recursively). Two fingerprints are equal exactly when nothing that
validation or the equations read has changed.

``remember(d, key, value)`` stores a result on the diagram with the current
fingerprint; ``recall(d, key)`` returns it only while the fingerprint is
unchanged. Inside ``with unchanged(d):`` (compiling, where nothing edits the
diagram) the fingerprint is taken once for all the recalls of the block
instead of once per recall.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from .diagram import Diagram, FunctionArrow, ModelArrow

_ATTRIBUTE = "_remembered"
_HELD = "_held_fingerprint"  # set only inside ``unchanged``


def _frozen(value: Any) -> Any:
    """A parameter value with every list and mapping in it turned into a tuple (compared by value)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in value.items())
    return value


def _params(params: Any) -> tuple:
    return tuple((k, _frozen(v)) for k, v in params.items())


def _mutable_contents(d: Diagram) -> list:
    """The parameters inside the frozen parts: plain dicts, which can change in place."""
    out: list = []
    for o in d.objects.values():
        dist = getattr(o, "distance", None)
        if dist is not None:
            out.append(_params(dist.params))
    for a in d.arrows.values():
        if isinstance(a, FunctionArrow):
            out.append(_params(a.params))
        elif isinstance(a, ModelArrow) and a.architecture is not None:
            arch = a.architecture
            out.extend(_params(x.params) for x in arch.layers)
            if arch.inputs is not None:
                out.extend(_params(x.params) for branch in arch.inputs for x in branch)
    for e in d.explicit:
        if e.distance is not None:
            out.append(_params(e.distance.params))
    return out


def fingerprint(d: Diagram) -> tuple[tuple, tuple]:
    """``(parts, values)``: the parts themselves (compared by identity) and every value (compared by ``==``)."""
    parts = (*d.objects.values(), *d.arrows.values(), *d.explicit)
    values = (d.name, d.description, d.format_version, tuple(d.objects), tuple(d.arrows), d.automatic,
              d.max_terms, d.max_term_size, d.max_equations, d.max_total_terms, _mutable_contents(d))
    return parts, values


def same(a: tuple[tuple, tuple], b: tuple[tuple, tuple]) -> bool:
    """Whether two fingerprints describe the same contents."""
    return len(a[0]) == len(b[0]) and all(p is q for p, q in zip(a[0], b[0])) and a[1] == b[1]


@contextlib.contextmanager
def unchanged(d: Diagram) -> Iterator[None]:
    """A block that does not edit ``d``: every ``recall`` and ``remember`` in it uses one fingerprint.

    For the caller to promise; an edit inside the block would go unseen by the
    block's recalls (never by later ones: the fingerprint is taken afresh after
    the block). Blocks nest.
    """
    if getattr(d, _HELD, None) is not None:
        yield
        return
    setattr(d, _HELD, fingerprint(d))
    try:
        yield
    finally:
        delattr(d, _HELD)


def _now(d: Diagram) -> tuple[tuple, tuple]:
    held = getattr(d, _HELD, None)
    return held if held is not None else fingerprint(d)


def recall(d: Diagram, key: str) -> Any:
    """What ``remember`` stored under ``key`` on this diagram, or None if it changed since (or never was)."""
    memo = getattr(d, _ATTRIBUTE, None)
    if memo is None or key not in memo[1]:
        return None
    now = _now(d)
    if memo[0] is not now and not same(memo[0], now):
        return None
    return memo[1][key]


def remember(d: Diagram, key: str, value: Any) -> None:
    """Store ``value`` under ``key``, valid while the diagram's contents stay as they are now."""
    now = _now(d)
    memo = getattr(d, _ATTRIBUTE, None)
    results = memo[1] if memo is not None and (memo[0] is now or same(memo[0], now)) else {}
    results[key] = value
    setattr(d, _ATTRIBUTE, (now, results))


def carry(source: Diagram, copy: Diagram) -> None:
    """Give ``copy`` (the same parts in new containers) what ``source`` remembered."""
    memo = getattr(source, _ATTRIBUTE, None)
    if memo is not None:
        setattr(copy, _ATTRIBUTE, (memo[0], dict(memo[1])))
