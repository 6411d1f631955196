"""Weights files as first-class files: what one holds, renaming arrow prefixes, merging several (SPEC §8).

A weights file's keys are ``arrow.layers.0.weight``: the part before the first
dot is the arrow. These functions work on the key → array mappings that
``tensorfiles.read_safetensors`` returns; they check names and clashes, never
shapes against a diagram (that is ``check_weights``). NumPy only, no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .errors import DiagramError, Problem, UsageError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class ArrowSummary:
    """One arrow's tensors in a weights file: key → (shape, dtype), and the parameter count."""

    tensors: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    parameters: int = 0


def arrow_of(key: str) -> str:
    """The arrow a canonical key belongs to: the part before the first dot (the whole key if none)."""
    return key.partition(".")[0]


def summarize(tensors: Mapping[str, np.ndarray]) -> dict[str, ArrowSummary]:
    """Per arrow (in key order), its tensors' shapes and dtypes and how many numbers they hold."""
    out: dict[str, ArrowSummary] = {}
    for key in sorted(tensors):
        t = tensors[key]
        s = out.setdefault(arrow_of(key), ArrowSummary())
        s.tensors[key] = (tuple(int(n) for n in t.shape), str(t.dtype))
        s.parameters += int(np.prod(t.shape, dtype=np.int64))
    return out


def parse_renames(pairs: Sequence[str], option: str = "OLD=NEW") -> dict[str, str]:
    """``["classifier=teacher", …]`` as ``{"classifier": "teacher"}``; ``UsageError`` naming the pair otherwise."""
    renames: dict[str, str] = {}
    for pair in pairs:
        old, eq, new = pair.partition("=")
        if not eq or not NAME.fullmatch(old) or not NAME.fullmatch(new):
            raise UsageError(f"{pair!r} is not {option} with two arrow names "
                             f"(letters, digits and _, not starting with a digit)")
        if old in renames:
            raise UsageError(f"arrow {old!r} is renamed twice")
        renames[old] = new
    return renames


def rename_arrows(tensors: Mapping[str, np.ndarray], renames: Mapping[str, str],
                  source: str = "weights") -> dict[str, np.ndarray]:
    """The tensors with arrow prefixes renamed, all at once (``a=b b=a`` swaps); other keys kept.

    Errors (nothing is written): ``weights-missing-key`` for an old name that no key
    has, ``bad-value`` naming the key when two tensors would get one name.
    """
    present = {arrow_of(k) for k in tensors}
    problems = [Problem("weights-missing-key", f"{source}#{old}.",
                        f"{source} has no tensors of arrow {old!r}; its arrows: {', '.join(sorted(present)) or 'none'}")
                for old in renames if old not in present]
    if problems:
        raise DiagramError(problems)
    out: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for key in sorted(tensors):
        arrow, dot, rest = key.partition(".")
        new_key = renames.get(arrow, arrow) + dot + rest
        if new_key in out:
            raise DiagramError.one("bad-value", f"{source}#{key}",
                                   f"renaming gives two tensors the key {new_key!r}: {origin[new_key]!r} and {key!r}")
        out[new_key] = tensors[key]
        origin[new_key] = key
    return out


def merge_weights(files: Sequence[tuple[str, Mapping[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    """The union of several files' tensors; their keys must be disjoint (``bad-value`` naming the key otherwise)."""
    out: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    problems: list[Problem] = []
    for source, tensors in files:
        for key in sorted(tensors):
            if key in out:
                problems.append(Problem("bad-value", f"{source}#{key}",
                                        f"key {key!r} is in both {origin[key]} and {source}; "
                                        f"rename an arrow first (dlearn weights rename)"))
                continue
            out[key] = tensors[key]
            origin[key] = source
    if problems:
        raise DiagramError(problems)
    return out
