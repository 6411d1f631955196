"""Backends the conformance runner can drive: the NumPy reference, PyTorch and Flux.jl (through juliacall).

An adapter turns a case's three files into an ``Outcome`` (each equation's
value and the total, as Python floats) or raises ``DiagramError``. Heavy
imports happen on first use, and a backend that cannot run says why
(``unavailable``) instead of failing.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Outcome:
    """What a backend computed for one case: equation name → unweighted value (in its order), and the total."""

    equations: dict[str, float]
    total: float


class Backend(Protocol):
    name: str

    def unavailable(self, dtype: str) -> str | None:
        """Why this backend cannot run in ``dtype`` here, or None if it can."""

    def evaluate(self, diagram: Path, weights: Path, batch: Path, dtype: str) -> Outcome:
        """The case's loss; ``DiagramError`` for invalid input."""


class ReferenceBackend:
    """The NumPy reference evaluator (float64 only)."""

    name = "reference"

    def unavailable(self, dtype: str) -> str | None:
        return None if dtype == "float64" else "the reference evaluator computes in float64 only"

    def evaluate(self, diagram: Path, weights: Path, batch: Path, dtype: str) -> Outcome:
        from ..io import load
        from ..reference import evaluate

        d = load(diagram)  # the diagram's errors come before any file's
        result = evaluate(d, weights, batch)
        return Outcome(dict(result.equations), float(result.total))


class TorchBackend:
    """The PyTorch backend: ``compile(diagram, weights, dtype)``, evaluation mode, ``evaluate(batch)``."""

    name = "torch"

    def unavailable(self, dtype: str) -> str | None:
        # found, not imported: torch loads at the first case, after a Julia backend has started
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        return None

    def evaluate(self, diagram: Path, weights: Path, batch: Path, dtype: str) -> Outcome:
        import torch

        from ..tensorfiles import read_safetensors
        from ..torch_backend import compile

        model = compile(diagram, weights=weights, dtype=getattr(torch, dtype))
        model.eval()
        columns = read_safetensors(batch, "batch")
        with torch.no_grad():
            ev = model.evaluate(columns)
        return Outcome({k: float(v) for k, v in ev.equations.items()}, float(ev.total))


class JuliaBackend:
    """Flux.jl through ``diagrammatic_learning.julia.FluxBackend``; skipped where Julia is not set up."""

    name = "julia"

    def __init__(self) -> None:
        self._flux: Any = None
        self._reason: str | None = None
        self._checked = False

    def unavailable(self, dtype: str) -> str | None:
        if not self._checked:
            self._checked = True
            try:
                module = importlib.import_module("diagrammatic_learning.julia")
            except ImportError as e:
                self._reason = f"diagrammatic_learning.julia cannot be imported: {e}"
                return self._reason
            try:
                ok, reason = module.is_available()
            except Exception as e:  # a broken bridge is a reason to skip, with what broke
                ok, reason = False, f"is_available() failed: {type(e).__name__}: {e}"
            if not ok:
                self._reason = f"Julia is not available: {reason}"
            else:
                try:
                    self._flux = module.FluxBackend()
                except module.JuliaUnavailable as e:  # is_available() cannot foresee every failed start
                    self._reason = f"Julia did not start: {e}"
        return self._reason

    def evaluate(self, diagram: Path, weights: Path, batch: Path, dtype: str) -> Outcome:
        out = self._flux.evaluate(str(diagram), str(weights), str(batch), dtype=dtype)
        return Outcome({str(k): float(v) for k, v in dict(out["equations"]).items()}, float(out["total"]))


def make_backends(which: str) -> list[Backend]:
    """The backends for ``--backend``: one name, or ``all``."""
    known = {"reference": ReferenceBackend, "torch": TorchBackend, "julia": JuliaBackend}
    if which == "all":
        return [cls() for cls in known.values()]
    return [known[which]()]
