"""Running the conformance suite: every case on every backend, compared with the expected values or error.

Agreement is measured by a relative error with an absolute floor (see
``relative_error``); a valid case passes when every equation and the total are
within the tolerance written in its ``expected.json`` for the dtype, and the
equations have the expected names in the expected order, and, where the case
has ``gradients.safetensors`` and the backend computes gradients, every
parameter's gradient is within ``gradient_tolerance`` (``gradients.py``; the
reference backend reports losses only). An invalid case
passes when the backend raises ``DiagramError`` with the expected code and a
pointer to the same place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..errors import DiagramError
from .backends import Backend, Outcome
from .cases import SuiteCase
from .gradients import check_gradients, has_gradients

# Below this magnitude an expected value is compared absolutely: |got − want| / FLOOR.
FLOOR = 1e-6


def relative_error(got: float, want: float) -> float:
    """|got − want| / max(|want|, FLOOR); infinite when ``got`` is not a finite number."""
    if not math.isfinite(got):
        return math.inf
    return abs(got - want) / max(abs(want), FLOOR)


@dataclass(frozen=True)
class Row:
    """One case on one backend in one dtype."""

    case: str
    backend: str
    dtype: str
    passed: bool
    error: float | None  # the largest relative error, for valid cases that ran
    detail: str = ""
    gradient_error: float | None = None  # the largest relative error of a gradient, where one was compared


def check_outcome(case: SuiteCase, got: Outcome, dtype: str) -> tuple[bool, float | None, str]:
    """Compare a valid case's outcome with ``expected.json``: (passed, largest error, what was wrong)."""
    want = case.expected
    names = [e["name"] for e in want["equations"]]
    if list(got.equations) != names:
        missing = [n for n in names if n not in got.equations]
        extra = [n for n in got.equations if n not in names]
        what = (f"missing {missing} " if missing else "") + (f"unexpected {extra}" if extra else "")
        return False, None, f"equations differ: {what or 'same names in another order'}".strip()
    errors = {e["name"]: relative_error(got.equations[e["name"]], e["value"]) for e in want["equations"]}
    errors["total"] = relative_error(got.total, want["total"])
    worst = max(errors, key=errors.get)
    largest = errors[worst]
    tolerance = want["tolerance"][dtype]
    if largest <= tolerance:
        return True, largest, ""
    return False, largest, f"{worst!r}: error {largest:.1e} above {tolerance:.0e}"


def pointer_matches(got: str, want: str) -> bool:
    """Diagram pointers must be equal; file pointers (``file#key``) must name the same key, or the same file."""
    if want.startswith("/") or want == "":
        return got == want
    if "#" in want:
        return "#" in got and got.split("#", 1)[1] == want.split("#", 1)[1]
    return "#" not in got and Path(got).name == want


def check_error(case: SuiteCase, error: DiagramError | None) -> tuple[bool, str]:
    """An invalid case passes when the first problem has the expected code and pointer."""
    want_code, want_ptr = case.expected["code"], case.expected["pointer"]
    if error is None:
        return False, f"no error; expected {want_code} at {want_ptr!r}"
    if error.code == want_code and pointer_matches(error.pointer, want_ptr):
        return True, want_code
    return False, f"got {error.code} at {error.pointer!r}; expected {want_code} at {want_ptr!r}"


def run_case(backend: Backend, case: SuiteCase, dtype: str) -> Row:
    """One case on one backend; a crash (any exception but ``DiagramError``) is a failure, not an abort."""
    try:
        outcome = backend.evaluate(case.diagram, case.weights, case.batch, dtype)
    except DiagramError as e:
        if case.valid:
            return Row(case.name, backend.name, dtype, False, None, f"rejected a valid case: {e.code}: {e}")
        ok, detail = check_error(case, e)
        return Row(case.name, backend.name, dtype, ok, None, detail)
    except Exception as e:  # noqa: BLE001 - reported as this case's failure
        return Row(case.name, backend.name, dtype, False, None, f"crashed: {type(e).__name__}: {e}")
    if not case.valid:
        ok, detail = check_error(case, None)
        return Row(case.name, backend.name, dtype, ok, None, detail)
    ok, error, detail = check_outcome(case, outcome, dtype)
    if not has_gradients(case):
        return Row(case.name, backend.name, dtype, ok, error, detail)
    if not getattr(backend, "computes_gradients", False):
        return Row(case.name, backend.name, dtype, ok, error, detail or "losses only")
    grad_ok, grad_error, grad_detail = check_gradients(case, outcome.gradients, dtype)
    detail = "; ".join(x for x in (detail, grad_detail) if x)
    return Row(case.name, backend.name, dtype, ok and grad_ok, error, detail, grad_error)


@dataclass
class Report:
    """Every row that ran, and the backends that were skipped with their reasons."""

    rows: list[Row]
    skipped: dict[str, str]

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    @property
    def ok(self) -> bool:
        return not self.failed


def run_suite(backends: Iterable[Backend], cases: list[SuiteCase], dtype: str,
              on_row: Callable[[Row], None] | None = None) -> Report:
    """Run every case on every available backend in ``dtype``."""
    report = Report([], {})
    backends = list(backends)
    # Every backend says whether it can run before any runs: a Julia backend starts juliacall
    # there, before the first PyTorch case imports torch (the order juliacall requires).
    reasons = [backend.unavailable(dtype) for backend in backends]
    for backend, reason in zip(backends, reasons):
        if reason is not None:
            report.skipped[backend.name] = reason
            continue
        for case in cases:
            row = run_case(backend, case, dtype)
            report.rows.append(row)
            if on_row is not None:
                on_row(row)
    return report


HEADER = f"{'case':<52} {'backend':<10} {'dtype':<8} {'max rel. error':>14} {'gradient':>9}  result"


def format_row(row: Row) -> str:
    error = "-" if row.error is None else f"{row.error:.1e}"
    gradient = "-" if row.gradient_error is None else f"{row.gradient_error:.1e}"
    result = "pass" if row.passed else "FAIL"
    detail = f"  {row.detail}" if row.detail and (not row.passed or row.error is None) else ""
    return f"{row.case:<52} {row.backend:<10} {row.dtype:<8} {error:>14} {gradient:>9}  {result}{detail}"


def format_summary(report: Report, backends: Iterable[str]) -> list[str]:
    """One line per backend: counts, the largest error and where, or why it was skipped."""
    lines = []
    for name in backends:
        if name in report.skipped:
            lines.append(f"{name}: skipped: {report.skipped[name]}")
            continue
        rows = [r for r in report.rows if r.backend == name]
        passed = sum(r.passed for r in rows)
        measured = [r for r in rows if r.error is not None]
        worst = max(measured, key=lambda r: r.error, default=None)
        largest = "none measured" if worst is None else f"largest error {worst.error:.1e} ({worst.case})"
        graded = [r for r in rows if r.gradient_error is not None]
        worst_gradient = max(graded, key=lambda r: r.gradient_error, default=None)
        losses_only = any(r.detail == "losses only" for r in rows)
        gradients = ("losses only, gradients not compared" if worst_gradient is None and losses_only else
                     "gradients not compared" if worst_gradient is None else
                     f"{len(graded)} gradients compared, largest gradient error {worst_gradient.gradient_error:.1e} "
                     f"({worst_gradient.case})")
        lines.append(f"{name}: {passed}/{len(rows)} passed, {len(rows) - passed} failed; {largest}; {gradients}")
    return lines
