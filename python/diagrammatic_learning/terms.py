"""Terms: trees of arrows that compute a value of an object from a data object (SPEC §5).

This module holds the term type, its text form (parse and print) and its
canonical order key. Enumeration lives in ``equations``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Term:
    """``arrow`` applied to ``args``; a leaf (a data arrow) has no args."""

    arrow: str
    args: tuple["Term", ...] = ()

    def __str__(self) -> str:
        if not self.args:
            return self.arrow
        return f"{self.arrow}({', '.join(str(a) for a in self.args)})"

    def arrows(self) -> list[str]:
        """Every arrow of the term in prefix order (with repeats)."""
        out = [self.arrow]
        for a in self.args:
            out.extend(a.arrows())
        return out

    def leaves(self) -> list["Term"]:
        if not self.args:
            return [self]
        return [leaf for a in self.args for leaf in a.leaves()]

    def subterms(self) -> list["Term"]:
        """All subterms, children before parents (an evaluation order)."""
        out: list[Term] = []
        for a in self.args:
            out.extend(a.subterms())
        out.append(self)
        return out


def term_key(term: Term, position: Callable[[str], int]) -> tuple[int, ...]:
    """The canonical order key (SPEC §5.4): arrow positions in prefix order."""
    return tuple(position(a) for a in term.arrows())


class TermSyntaxError(ValueError):
    """Raised by ``parse_term`` with the character offset of the problem."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


MAX_DEPTH = 100  # arrows on a root-to-leaf path of a term written as text (SPEC §6.2)

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\()|(\))|(,))")


def parse_term(text: str) -> Term:
    """Parse ``name`` or ``name(term, ...)`` into a ``Term``."""
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise TermSyntaxError(f"unexpected character {text[pos:].lstrip()[0]!r} at offset "
                                  f"{pos + len(text[pos:]) - len(text[pos:].lstrip())}", pos)
        kind = "name" if m.group(1) else m.group(0).strip()
        tokens.append((kind, m.group(0).strip(), m.start()))
        pos = m.end()
    i = 0

    def expect_name() -> str:
        nonlocal i
        if i >= len(tokens) or tokens[i][0] != "name":
            where = tokens[i][2] if i < len(tokens) else len(text)
            got = repr(tokens[i][1]) if i < len(tokens) else "the end"
            raise TermSyntaxError(f"expected an arrow name at offset {where}, found {got}", where)
        i += 1
        return tokens[i - 1][1]

    def term(depth: int = 1) -> Term:
        nonlocal i
        name = expect_name()
        if i < len(tokens) and tokens[i][0] == "(":
            if depth >= MAX_DEPTH:
                raise TermSyntaxError(f"the term nests more than {MAX_DEPTH} arrows deep (at offset "
                                      f"{tokens[i][2]})", tokens[i][2])
            i += 1
            args = [term(depth + 1)]
            while i < len(tokens) and tokens[i][0] == ",":
                i += 1
                args.append(term(depth + 1))
            if i >= len(tokens) or tokens[i][0] != ")":
                where = tokens[i][2] if i < len(tokens) else len(text)
                raise TermSyntaxError(f"expected ',' or ')' at offset {where}", where)
            i += 1
            return Term(name, tuple(args))
        return Term(name)

    result = term()
    if i != len(tokens):
        raise TermSyntaxError(f"unexpected {tokens[i][1]!r} at offset {tokens[i][2]} after a complete term",
                              tokens[i][2])
    return result
