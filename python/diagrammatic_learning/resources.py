"""Where the files that ship with the package live: the schema, the Julia sources, the conformance suite.

In a wheel they are under ``diagrammatic_learning/_data/`` (put there by the
build, see pyproject.toml); in a source checkout they are the top-level folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_path(name: str) -> Path:
    """The shipped folder ``name`` (``schema``, ``julia``, ``conformance``, ``examples``)."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"the package's {name!r} folder is missing from this installation")


def schema_path() -> Path:
    return data_path("schema") / "learning-diagram.schema.json"
