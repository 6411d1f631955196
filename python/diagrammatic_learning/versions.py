"""Which format version a feature needs (SPEC §1): a document may only use what its declared version has.

A 1.1 reader reads every 1.0 document unchanged, so a 1.0 document that uses
an op added in 1.1 stays invalid (``bad-value`` at the op, as a 1.0 reader
reports an unknown op). Writers declare the version their content needs:
``Diagram.function`` raises a diagram's ``format_version`` when it adds such
an op, and composing diagrams keeps the latest version of its parts.
"""

from __future__ import annotations

import re

# the version this library reads and writes at most (SPEC's own version)
LATEST = "1.1"
# function ops that a version added, with the version that added them
OP_SINCE: dict[str, str] = {"stop_gradient": "1.1"}


_HUGE = 10 ** 18  # a version part longer than 18 digits (int() refuses over 4300) counts as this


def version_tuple(version: str) -> tuple[int, int]:
    """``"1.10"`` → ``(1, 10)``; a string that is not ``MAJOR.MINOR`` counts as ``(0, 0)`` (validation reports it)."""
    m = re.fullmatch(r"([0-9]+)\.([0-9]+)", version) if isinstance(version, str) else None
    if not m:
        return (0, 0)
    major, minor = m.groups()
    return (int(major) if len(major) <= 18 else _HUGE, int(minor) if len(minor) <= 18 else _HUGE)


def later(a: str, b: str) -> str:
    """The later of two versions (``a`` when equal)."""
    return b if version_tuple(b) > version_tuple(a) else a


def op_allowed(op: str, version: str) -> bool:
    """Whether a document of ``version`` may use function op ``op`` (ops of 1.0 always may)."""
    since = OP_SINCE.get(op)
    return since is None or version_tuple(version) >= version_tuple(since)
