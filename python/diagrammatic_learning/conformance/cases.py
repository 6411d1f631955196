"""The conformance suite on disk: valid cases (``cases/<name>/``) and invalid ones (``invalid/<name>/``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..errors import DiagramError
from ..files import MAX_DOCUMENT_BYTES, UnreadableFile, read_text
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

    @property
    def gradients(self) -> Path:
        """Expected gradients (SPEC §9.1); only valid cases with trainable parameters have this file."""
        return self.folder / "gradients.safetensors"


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
                out.append(SuiteCase(name, folder, valid, _read_expected(folder / "expected.json", valid)))
    return out


def _read_expected(path: Path, valid: bool = True) -> dict[str, Any]:
    """A case's ``expected.json`` as a dict, with the fields the runner reads checked.

    A broken one (not JSON, a field missing or of the wrong type) is a ``malformed-json`` error
    naming the file and the field, not a traceback in the middle of a run.
    """
    try:
        expected = json.loads(read_text(path, MAX_DOCUMENT_BYTES))
    except UnreadableFile as e:
        raise DiagramError.one("malformed-json", str(path), str(e)) from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, huge integers, deep nesting
        raise DiagramError.one("malformed-json", str(path), f"not valid JSON: {type(e).__name__}: {e}") from None
    if not isinstance(expected, dict):
        raise DiagramError.one("malformed-json", str(path), "expected a JSON object")
    problem = _expected_problem(expected, valid)
    if problem is not None:
        key, what = problem
        raise DiagramError.one("malformed-json", f"{path}#{key}", f"{path}: {key}: {what}")
    return expected


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _expected_problem(e: dict[str, Any], valid: bool) -> tuple[str, str] | None:
    """The first field of an ``expected.json`` that the runner could not use, and why; None if all are usable."""
    if not valid:
        for key in ("code", "pointer"):
            if not isinstance(e.get(key), str):
                return key, "missing" if key not in e else "must be a string"
        return None
    eqs = e.get("equations")
    if not isinstance(eqs, list):
        return "equations", "missing" if eqs is None else "must be a list"
    for i, q in enumerate(eqs):
        if not isinstance(q, dict):
            return f"equations/{i}", "must be an object"
        if not isinstance(q.get("name"), str):
            return f"equations/{i}/name", "must be a string"
        if not _is_number(q.get("value")):
            return f"equations/{i}/value", "must be a finite number"
    if not _is_number(e.get("total")):
        return "total", "must be a finite number"
    tol = e.get("tolerance")
    if not isinstance(tol, dict):
        return "tolerance", "must be an object with a tolerance per dtype"
    for dtype in ("float64", "float32"):
        if not _is_number(tol.get(dtype)) or tol[dtype] < 0:
            return f"tolerance/{dtype}", "must be a finite number ≥ 0"
    return None
