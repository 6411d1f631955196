"""``dlearn train --init``: which trained weights a run starts from, parsed and then loaded into the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import UsageError
from ..weight_files import NAME
from .compiler import CompiledDiagram


@dataclass(frozen=True)
class Init:
    """One ``--init``: ``arrow`` None loads a whole weights file; else arrow ``arrow`` from ``file``'s ``source``."""

    file: str
    arrow: str | None = None
    source: str | None = None


def parse_init(text: str) -> Init:
    """``FILE``, ``ARROW=FILE`` or ``ARROW=FILE:SOURCE``; a name that exists as a file is always a file."""
    if not text:
        raise UsageError("--init needs a file: FILE, ARROW=FILE or ARROW=FILE:SOURCE")
    head, eq, rest = text.partition("=")
    if not eq or not NAME.fullmatch(head) or Path(text).exists():
        return Init(text)
    file, colon, source = rest.rpartition(":")
    if colon and NAME.fullmatch(source) and not Path(rest).exists():
        rest = file
    else:
        source = None
    if not rest:
        raise UsageError(f"--init {text}: no file after '='")
    return Init(rest, head, source)


def parse_inits(texts: Sequence[str]) -> list[Init]:
    """Every ``--init``, checked for repeats: one whole-diagram file at most, each arrow once."""
    inits = [parse_init(t) for t in texts]
    if sum(i.arrow is None for i in inits) > 1:
        raise UsageError("--init FILE (the whole diagram's weights) may be given once")
    arrows = [i.arrow for i in inits if i.arrow is not None]
    for a in arrows:
        if arrows.count(a) > 1:
            raise UsageError(f"--init names arrow {a!r} twice")
    return inits


def load_inits(model: CompiledDiagram, inits: Sequence[Init]) -> None:
    """Load the whole-diagram file first, then each named arrow (SPEC §8's checks per arrow)."""
    for init in sorted(inits, key=lambda i: i.arrow is not None):
        if init.arrow is None:
            model.load_weights(init.file)
        else:
            model.load_arrow_weights(init.arrow, init.file, init.source)
