"""The function ops of SPEC §3.2 on batches (batch first), as plain callables built once per arrow, one builder per op."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..diagram import CategoricalObject, Diagram, FunctionArrow
from ..vocabulary import function_params

Op = Callable[..., torch.Tensor]


def _add(*xs: torch.Tensor) -> torch.Tensor:
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


def _one_hot(diagram: Diagram, arrow: FunctionArrow, p: dict[str, Any], dtype: torch.dtype) -> Op:
    classes = diagram.objects[arrow.sources[0]]
    assert isinstance(classes, CategoricalObject)
    n = classes.classes
    return lambda x: F.one_hot(x, n).to(dtype)


def _reshape(diagram: Diagram, arrow: FunctionArrow, p: dict[str, Any], dtype: torch.dtype) -> Op:
    shape = tuple(p["shape"])
    return lambda x: x.reshape((x.shape[0],) + shape)


def _scale(diagram: Diagram, arrow: FunctionArrow, p: dict[str, Any], dtype: torch.dtype) -> Op:
    factor = float(p["factor"])
    return lambda x: factor * x


def _normalize(diagram: Diagram, arrow: FunctionArrow, p: dict[str, Any], dtype: torch.dtype) -> Op:
    eps = float(p["eps"])
    return lambda x: x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp(min=eps)


# One entry per function op of the schema: (diagram, arrow, parameters with defaults filled,
# dtype) → the callable (tests/test_registries.py checks both directions).
FUNCTIONS: dict[str, Callable[[Diagram, FunctionArrow, dict[str, Any], torch.dtype], Op]] = {
    "identity": lambda d, a, p, dtype: (lambda x: x),
    "softmax": lambda d, a, p, dtype: (lambda x: torch.softmax(x, dim=-1)),
    "log_softmax": lambda d, a, p, dtype: (lambda x: torch.log_softmax(x, dim=-1)),
    "one_hot": _one_hot,
    "flatten": lambda d, a, p, dtype: (lambda x: x.reshape(x.shape[0], -1)),
    "reshape": _reshape,
    "scale": _scale,
    "normalize": _normalize,
    "add": lambda d, a, p, dtype: _add,
    "concat": lambda d, a, p, dtype: (lambda *xs: torch.cat(xs, dim=-1)),
    "stop_gradient": lambda d, a, p, dtype: torch.Tensor.detach,  # the same values, no gradient to the source
}


def function_op(diagram: Diagram, arrow: FunctionArrow, dtype: torch.dtype) -> Op:
    """The callable computing ``arrow`` on batches of its sources' values."""
    make = FUNCTIONS.get(arrow.op)
    if make is None:
        raise ValueError(f"unknown function op {arrow.op!r}")  # unreachable for a validated diagram
    return make(diagram, arrow, function_params(arrow.op, arrow.params), dtype)
