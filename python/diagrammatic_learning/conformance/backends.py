"""Backends the conformance runner can drive: the NumPy reference, PyTorch and Flux.jl (through juliacall).

An adapter turns a case's three files into an ``Outcome`` (each equation's
value and the total, as Python floats, and for a backend that computes
gradients the gradient of the total by canonical parameter name) or raises
``DiagramError``. Heavy
imports happen on first use, and a backend that cannot run says why
(``unavailable``) instead of failing.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Outcome:
    """What a backend computed for one case: equation name → unweighted value (in its order), the total, and
    the gradient of the total (canonical parameter name → array, canonical layout; None if not computed)."""

    equations: dict[str, float]
    total: float
    gradients: Mapping[str, Any] | None = None


class Backend(Protocol):
    name: str
    computes_gradients: bool  # whether ``evaluate`` returns gradients for a diagram with trainable parameters

    def unavailable(self, dtype: str) -> str | None:
        """Why this backend cannot run in ``dtype`` here, or None if it can."""

    def evaluate(self, diagram: Path, weights: Path, batch: Path, dtype: str) -> Outcome:
        """The case's loss; ``DiagramError`` for invalid input."""


class ReferenceBackend:
    """The NumPy reference evaluator (float64 only); losses only, no gradients (it has no derivatives)."""

    name = "reference"
    computes_gradients = False

    def unavailable(self, dtype: str) -> str | None:
        return None if dtype == "float64" else "the reference evaluator computes in float64 only"

    def evaluate(self, diagram: Path, weights: Path, batch: Path, dtype: str) -> Outcome:
        from ..io import load
        from ..reference import evaluate

        d = load(diagram)  # the diagram's errors come before any file's
        result = evaluate(d, weights, batch)
        return Outcome(dict(result.equations), float(result.total))


class TorchBackend:
    """The PyTorch backend: ``compile(diagram, weights, dtype)``, evaluation mode, ``evaluate(batch)``, and
    autograd's gradient of the total when the diagram has trainable parameters."""

    name = "torch"
    computes_gradients = True

    def unavailable(self, dtype: str) -> str | None:
        # found, not imported: torch loads at the first case, after a Julia backend has started
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        return None

    def evaluate(self, diagram: Path, weights: Path, batch: Path, dtype: str) -> Outcome:
        import torch

        from ..tensorfiles import read_safetensors
        from ..torch_backend import compile
        from ..torch_backend.gradients import loss_gradients, trainable_parameters

        model = compile(diagram, weights=weights, dtype=getattr(torch, dtype))
        model.eval()
        columns = read_safetensors(batch, "batch")
        grads = None
        if trainable_parameters(model):
            ev, found = loss_gradients(model, columns)
            grads = {k: g.detach().cpu().double().numpy() for k, g in found.items()}
        else:
            with torch.no_grad():
                ev = model.evaluate(columns)
        return Outcome({k: float(v.detach()) for k, v in ev.equations.items()}, float(ev.total.detach()), grads)


class JuliaBackend:
    """Flux.jl through ``diagrammatic_learning.julia.FluxBackend``; skipped where Julia is not set up.
    Gradients come from Zygote (``loss_gradients`` in Julia) for cases that expect them."""

    name = "julia"
    computes_gradients = True

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
        grads = None
        if (Path(diagram).parent / "gradients.safetensors").is_file():  # a suite case with trainable parameters
            out, grads = self._flux.gradients(str(diagram), str(weights), str(batch), dtype=dtype)
        else:
            out = self._flux.evaluate(str(diagram), str(weights), str(batch), dtype=dtype)
        return Outcome({str(k): float(v) for k, v in dict(out["equations"]).items()}, float(out["total"]), grads)


def make_backends(which: str) -> list[Backend]:
    """The backends for ``--backend``: one name, or ``all``."""
    known = {"reference": ReferenceBackend, "torch": TorchBackend, "julia": JuliaBackend}
    if which == "all":
        return [cls() for cls in known.values()]
    return [known[which]()]
