"""The library's one exception family: every error has a stable code, a place and a message.

The place is an RFC 6901 JSON pointer into the diagram document, or for other
files ``path`` or ``path#key``. Codes are listed in schema/SPEC.md §10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: ``code`` at ``pointer``, explained by ``message``."""

    code: str
    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message} [{self.code}]"


class DiagramError(Exception):
    """Raised for any invalid input to the library; carries one or more ``Problem``s.

    ``err.code`` and ``err.pointer`` are those of the first problem; ``err.problems``
    holds all of them, in the order found.
    """

    def __init__(self, problems: Iterable[Problem] | Problem):
        problems = [problems] if isinstance(problems, Problem) else list(problems)
        if not problems:
            raise ValueError("DiagramError needs at least one problem")
        self.problems: list[Problem] = problems
        super().__init__(self._text())

    @classmethod
    def one(cls, code: str, pointer: str, message: str) -> "DiagramError":
        return cls(Problem(code, pointer, message))

    @property
    def code(self) -> str:
        return self.problems[0].code

    @property
    def pointer(self) -> str:
        return self.problems[0].pointer

    @property
    def codes(self) -> list[str]:
        return [p.code for p in self.problems]

    def _text(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        return f"{len(self.problems)} problems:\n" + "\n".join(f"  {p}" for p in self.problems)


def pointer(*parts: object) -> str:
    """A JSON pointer from path parts, escaping ``~`` and ``/`` as RFC 6901 says."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class UsageError(ValueError):
    """A command-line mistake found after parsing (options that do not go together): exit status 2."""
