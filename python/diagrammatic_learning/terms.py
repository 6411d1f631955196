"""Terms: trees of arrows that compute a value of an object from a data object (SPEC §5).

This module holds the term type, its text form (parse and print) and its
canonical order key. Enumeration lives in ``equations``.

A ``Term`` is immutable and computes its hash and size once, from its
arguments' (so a term that shares subterms hashes in time linear in its
arity, not in its leaves); its text is computed on first use and kept.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable


class Term:
    """``arrow`` applied to ``args``; a leaf (a data arrow) has no args."""

    __slots__ = ("arrow", "args", "size", "_hash", "_text")

    arrow: str
    args: tuple["Term", ...]
    size: int  # arrow occurrences in the tree (leaves included): SPEC §5.3's term size

    def __init__(self, arrow: str, args: Iterable["Term"] = ()):
        args = args if type(args) is tuple else tuple(args)
        set_ = object.__setattr__
        set_(self, "arrow", arrow)
        set_(self, "args", args)
        if not args:
            set_(self, "size", 1)
            set_(self, "_hash", hash((arrow,)))
        elif len(args) == 1:
            a = args[0]
            set_(self, "size", 1 + a.size)
            set_(self, "_hash", hash((arrow, a._hash)))
        else:
            set_(self, "size", 1 + sum([a.size for a in args]))
            set_(self, "_hash", hash((arrow, *[a._hash for a in args])))
        set_(self, "_text", None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Term is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Term is immutable; cannot delete {name!r}")

    def __reduce__(self):
        return (Term, (self.arrow, self.args))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Term):
            return NotImplemented
        if self._hash != other._hash or self.size != other.size:
            return False
        # Iterative, each pair of subterms compared once: shared subterms cost once, not per occurrence.
        seen: set[tuple[int, int]] = set()
        todo = [(self, other)]
        while todo:
            x, y = todo.pop()
            if x is y:
                continue
            if x._hash != y._hash or x.size != y.size or x.arrow != y.arrow or len(x.args) != len(y.args):
                return False
            key = (id(x), id(y))
            if key not in seen:
                seen.add(key)
                todo.extend(zip(x.args, y.args))
        return True

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __repr__(self) -> str:
        return f"Term({str(self)!r})"

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = self.arrow if not self.args else f"{self.arrow}({', '.join(str(a) for a in self.args)})"
            object.__setattr__(self, "_text", text)
        return text

    def arrows(self) -> list[str]:
        """Every arrow of the term in prefix order (with repeats)."""
        out: list[str] = []
        todo = [self]
        while todo:
            t = todo.pop()
            out.append(t.arrow)
            todo.extend(reversed(t.args))
        return out

    def leaves(self) -> list["Term"]:
        """The leaves (data arrows) left to right, with repeats."""
        return [t for t in self._prefix() if not t.args]

    def subterms(self) -> list["Term"]:
        """All subterms, children before parents (an evaluation order)."""
        out: list[Term] = []
        for a in self.args:
            out.extend(a.subterms())
        out.append(self)
        return out

    def _prefix(self) -> list["Term"]:
        out: list[Term] = []
        todo = [self]
        while todo:
            t = todo.pop()
            out.append(t)
            todo.extend(reversed(t.args))
        return out


_new_term = object.__new__
_set_arrow, _set_args, _set_size, _set_hash, _set_text = (
    Term.arrow.__set__, Term.args.__set__, Term.size.__set__, Term._hash.__set__, Term._text.__set__)  # type: ignore


def applied(arrow: str, arg: Term) -> Term:
    """``Term(arrow, (arg,))``, made in fewer steps (enumeration makes up to ``max_total_terms`` of them)."""
    t = _new_term(Term)
    _set_arrow(t, arrow)
    _set_args(t, (arg,))
    _set_size(t, 1 + arg.size)
    _set_hash(t, hash((arrow, arg._hash)))
    _set_text(t, None)
    return t


def term_key(term: Term, position: Callable[[str], int]) -> tuple[int, ...]:
    """The canonical order key (SPEC §5.4): arrow positions in prefix order.

    Its length is the term's size; to order terms without building keys use ``compare_terms``.
    """
    return tuple(position(a) for a in term.arrows())


def compare_terms(a: Term, b: Term, position: Callable[[str], int]) -> int:
    """-1, 0 or 1 as ``term_key(a) <, ==, > term_key(b)``, without building either key.

    Keys are prefix codes (every arrow has a fixed arity), so two keys first differ inside
    the first pair of arguments that differ: compare roots, then arguments left to right.
    """
    while a is not b:
        pa, pb = position(a.arrow), position(b.arrow)
        if pa != pb:
            return -1 if pa < pb else 1
        for x, y in zip(a.args, b.args):
            if x != y:
                a, b = x, y
                break
        else:
            return 0
    return 0


class TermSyntaxError(ValueError):
    """Raised by ``parse_term`` with the character offset of the problem."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


MAX_DEPTH = 100  # arrows on a root-to-leaf path of a term written as text (SPEC §6.2)

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\()|(\))|(,))")
_SPACE = re.compile(r"\s*")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, offset) of every token; one pass over the text."""
    tokens: list[tuple[str, str, int]] = []
    pos, end = 0, len(text)
    match = _TOKEN.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            skip = _SPACE.match(text, pos).end()
            if skip == end:
                break
            raise TermSyntaxError(f"unexpected character {text[skip]!r} at offset {skip}", pos)
        name = m.group(1)
        if name is not None:
            tokens.append(("name", name, pos))
        else:
            mark = text[m.end() - 1]
            tokens.append((mark, mark, pos))
        pos = m.end()
    return tokens


def parse_term(text: str) -> Term:
    """Parse ``name`` or ``name(term, ...)`` into a ``Term``."""
    tokens = _tokens(text)
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
