"""Gradients of the reference loss by central finite differences: the independent check of SPEC §9.1 gradients.

The NumPy evaluator has no derivatives, so a gradient here is measured: for
each scalar parameter w, the five-point stencil
``(−f(w+2h) + 8 f(w+h) − 8 f(w−h) + f(w−2h)) / 12h`` of the total loss f,
whose truncation error is O(h⁴). With h = 1e-4 (scaled by max(1, |w|)) it
agrees with an exact gradient to about 1e-9 relative, which is what the
conformance generator asks of PyTorch's autograd (1e-6) before it writes an
expected gradient. It is far from float64 rounding, so the reference backend
reports losses only and does not claim gradients (conformance/README.md).

``stop_gradient`` (SPEC §9.1) is a rule about derivatives, which the
reference's values cannot show: every term whose root is a ``stop_gradient``
arrow is held at its value for the unperturbed weights, so the stencil
differentiates only the other paths, as autograd does.

Near a kink (relu at 0, a max-pool tie, |r| = 0 in l1, |r| = delta in huber)
the stencil straddles it and disagrees with any one-sided derivative; the
generator's cases keep inputs away from kinks by more than the stencil's reach.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np

from ..diagram import Diagram, FunctionArrow
from ..equations import equations
from ..io import Source, load
from ..tensorfiles import check_batch, check_weights
from ..terms import Term
from .evaluator import _distance, _Evaluator

STEP = 1e-5
MAX_EVALUATIONS = 2_000_000  # 4 per scalar parameter: a bound on the work one call may do


def loss_function(diagram: Source, batch: Mapping[str, np.ndarray],
                  held: Mapping[Term, np.ndarray] | None = None) -> Callable[[Mapping[str, np.ndarray]], float]:
    """``f(weights) -> float``: the total loss of ``diagram`` on ``batch`` (both checked once), weights unchecked.

    Terms in ``held`` take the given values instead of being computed.
    """
    d = load(diagram)
    eqs = equations(d)
    batch = {k: np.asarray(v) for k, v in batch.items()}
    check_batch(d, batch, "batch")
    held = dict(held or {})

    def total(weights: Mapping[str, np.ndarray]) -> float:
        ev = _Evaluator(d, weights, batch, "batch", {})
        ev.values.update(held)
        out = 0.0
        for eq in eqs:
            out += eq.weight * _distance(d, eq, ev.value(eq.lhs), ev.value(eq.rhs))
        return out

    return total


def stop_gradient_values(diagram: Diagram, weights: Mapping[str, np.ndarray],
                         batch: Mapping[str, np.ndarray]) -> dict[Term, np.ndarray]:
    """The value of every term of the equations whose root is a ``stop_gradient`` arrow, at ``weights``."""
    eqs = equations(diagram)
    ev = _Evaluator(diagram, weights, {k: np.asarray(v) for k, v in batch.items()}, "batch", {})
    for eq in eqs:
        ev.value(eq.lhs), ev.value(eq.rhs)
    out = {}
    for term, value in ev.values.items():
        arrow = diagram.arrows[term.arrow]
        if isinstance(arrow, FunctionArrow) and arrow.op == "stop_gradient":
            out[term] = value
    return out


def finite_difference_gradients(diagram: Source, weights: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray],
                                names: Iterable[str], step: float = STEP) -> dict[str, np.ndarray]:
    """The gradient of the reference total loss with respect to the parameters ``names``, measured (float64)."""
    d: Diagram = load(diagram)
    base = {k: np.array(v, dtype=np.float64) for k, v in weights.items()}
    check_weights(d, base, "weights")
    names = list(names)
    unknown = [n for n in names if n not in base]
    if unknown:
        raise KeyError(f"no parameters named {unknown}")
    if 4 * sum(base[n].size for n in names) > MAX_EVALUATIONS:
        raise ValueError(f"finite differences of {sum(base[n].size for n in names)} parameters exceed the bound of "
                         f"{MAX_EVALUATIONS // 4}")
    check_batch(d, {k: np.asarray(v) for k, v in batch.items()}, "batch")
    f = loss_function(d, batch, stop_gradient_values(d, base, batch))
    out: dict[str, np.ndarray] = {}
    for name in names:
        w = base[name]
        g = np.empty_like(w)
        flat, gflat = w.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            x = flat[i]
            h = step * max(1.0, abs(x))
            values = []
            for k in (2, 1, -1, -2):
                flat[i] = x + k * h
                values.append(f(base))
            flat[i] = x
            # differences first: a loss that does not move gives exactly 0
            gflat[i] = (8 * (values[1] - values[2]) - (values[0] - values[3])) / (12 * h)
        out[name] = g
    return out
