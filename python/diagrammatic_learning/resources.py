"""Where the files that ship with the package live: the schema, the Julia sources, the conformance suite.

In a wheel they are under ``diagrammatic_learning/_data/`` (put there by the
build, see pyproject.toml), found through ``importlib.resources``; in a source
checkout they are the top-level folders.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _package_folder() -> Path:
    # an installed package or a source checkout is a folder on disk; the Julia bridge and the
    # conformance runner hand these paths to other programs, so a zipped install is not supported
    return Path(str(resources.files(__package__))).resolve()


def data_path(name: str) -> Path:
    """The shipped folder ``name`` (``schema``, ``julia``, ``conformance``, ``examples``)."""
    package = _package_folder()
    for candidate in (package / "_data" / name, package.parent.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"the package's {name!r} folder is missing from this installation")


def schema_path() -> Path:
    """The format's JSON Schema, ``learning-diagram.schema.json`` (its ``$id`` names it; see SPEC §1)."""
    return data_path("schema") / "learning-diagram.schema.json"
