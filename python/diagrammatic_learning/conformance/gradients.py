"""Comparing a backend's gradients with a case's ``gradients.safetensors`` (SPEC §9.1, conformance/README.md).

A case with trainable parameters holds, in float64, the gradient of its total
loss with respect to each of them under its canonical name. A backend's
gradient passes when, for every parameter, ``‖g − g*‖ / max(‖g*‖, 1e-6)`` (the
2-norm over the parameter's entries) is at most ``gradient_tolerance[dtype]``
of ``expected.json``, and it has exactly the expected names and shapes.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ..errors import DiagramError
from ..tensorfiles import read_safetensors
from .cases import SuiteCase

FLOOR = 1e-6
# used when a case's expected.json has gradients but no gradient_tolerance (a suite written by hand)
DEFAULT_TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


def has_gradients(case: SuiteCase) -> bool:
    """Whether the case checks gradients: a valid case with a ``gradients.safetensors``."""
    return case.valid and case.gradients.is_file()


def expected_gradients(case: SuiteCase) -> dict[str, np.ndarray]:
    """The case's expected gradients, canonical name → float64 array (``DiagramError`` for a broken file)."""
    return {k: np.asarray(v, dtype=np.float64) for k, v in read_safetensors(case.gradients, "gradients").items()}


def gradient_error(got: Any, want: np.ndarray) -> float:
    """‖got − want‖ / max(‖want‖, FLOOR) over all entries; infinite for a wrong shape or a non-finite entry."""
    g = np.asarray(got, dtype=np.float64)
    if g.shape != want.shape or not np.all(np.isfinite(g)):
        return math.inf
    with np.errstate(over="ignore", invalid="ignore"):  # a huge gradient's norm overflows to inf: a failure
        return float(np.linalg.norm(g - want) / max(float(np.linalg.norm(want)), FLOOR))


def check_gradients(case: SuiteCase, got: Mapping[str, Any] | None, dtype: str) -> tuple[bool, float | None, str]:
    """(passed, largest error, what was wrong) for a backend's gradients on a case that has expected ones."""
    if got is None:
        return False, None, "no gradients computed"
    try:
        want = expected_gradients(case)
    except DiagramError as e:
        return False, None, f"unreadable gradients.safetensors: {e}"
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        what = (f"missing {missing} " if missing else "") + (f"unexpected {extra}" if extra else "")
        return False, None, f"gradient names differ: {what.strip()}"
    errors = {k: gradient_error(got[k], want[k]) for k in want}
    worst = max(errors, key=errors.get)
    largest = errors[worst]
    tolerance = case.expected.get("gradient_tolerance", DEFAULT_TOLERANCE)[dtype]
    if largest <= tolerance:
        return True, largest, ""
    shape = "" if np.asarray(got[worst]).shape == want[worst].shape else (
        f" (shape {list(np.asarray(got[worst]).shape)}, expected {list(want[worst].shape)})")
    return False, largest, f"gradient of {worst}: error {largest:.1e} above {tolerance:.0e}{shape}"
