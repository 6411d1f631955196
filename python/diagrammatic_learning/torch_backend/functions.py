"""The function ops of SPEC §3.2 on batches (batch first), as plain callables built once per arrow."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..diagram import CategoricalObject, Diagram, FunctionArrow

Op = Callable[..., torch.Tensor]


def _add(*xs: torch.Tensor) -> torch.Tensor:
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


def function_op(diagram: Diagram, arrow: FunctionArrow, dtype: torch.dtype) -> Op:
    """The callable computing ``arrow`` on batches of its sources' values."""
    op, p = arrow.op, arrow.params
    if op == "identity":
        return lambda x: x
    if op == "softmax":
        return lambda x: torch.softmax(x, dim=-1)
    if op == "log_softmax":
        return lambda x: torch.log_softmax(x, dim=-1)
    if op == "one_hot":
        classes = diagram.objects[arrow.sources[0]]
        assert isinstance(classes, CategoricalObject)
        n = classes.classes
        return lambda x: F.one_hot(x, n).to(dtype)
    if op == "flatten":
        return lambda x: x.reshape(x.shape[0], -1)
    if op == "reshape":
        shape = tuple(p["shape"])
        return lambda x: x.reshape((x.shape[0],) + shape)
    if op == "scale":
        factor = float(p["factor"])
        return lambda x: factor * x
    if op == "normalize":
        eps = float(p.get("eps", 1e-12))
        return lambda x: x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp(min=eps)
    if op == "add":
        return _add
    if op == "concat":
        return lambda *xs: torch.cat(xs, dim=-1)
    raise ValueError(f"unknown function op {op!r}")  # unreachable for a validated diagram

