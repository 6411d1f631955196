"""The conformance suite on disk: valid cases (``cases/<name>/``) and invalid ones (``invalid/<name>/``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..errors import DiagramError
from ..resources import data_path


@dataclass(frozen=True)
class SuiteCase:
    """One case folder: its name, whether it is valid, and what it expects."""

    name: str  # "layer-linear", or "invalid/weights-truncated"
    folder: Path
    valid: bool
    expected: dict[str, Any]

    @property
    def diagram(self) -> Path:
        return self.folder / "diagram.json"

    @property
    def weights(self) -> Path:
        return self.folder / "weights.safetensors"

    @property
    def batch(self) -> Path:
        return self.folder / "batch.safetensors"


def suite_root() -> Path:
    """The shipped suite: ``conformance/`` in a checkout, ``_data/conformance`` in a wheel."""
    return data_path("conformance")


def matches(name: str, pattern: str | None) -> bool:
    """``-k`` selection: a substring of the case name, or a shell pattern such as ``layer-*``."""
    return pattern is None or pattern in name or fnmatchcase(name, pattern)


def load_cases(root: Path | None = None, pattern: str | None = None) -> list[SuiteCase]:
    """Every case under ``root`` whose name matches ``pattern``: valid ones first, each group sorted by name."""
    root = suite_root() if root is None else Path(root)
    out: list[SuiteCase] = []
    for sub, valid in (("cases", True), ("invalid", False)):
        base = root / sub
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if (p / "expected.json").is_file()):
            name = folder.name if valid else f"invalid/{folder.name}"
            if matches(name, pattern):
                out.append(SuiteCase(name, folder, valid, _read_expected(folder / "expected.json")))
    return out


def _read_expected(path: Path) -> dict[str, Any]:
    """A case's ``expected.json`` as a dict; a broken one is a ``malformed-json`` error, not a traceback."""
    try:
        expected = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both are
        raise DiagramError.one("malformed-json", str(path), f"not valid JSON: {e}") from None
    if not isinstance(expected, dict):
        raise DiagramError.one("malformed-json", str(path), "expected a JSON object")
    return expected
