"""Many equations of one distance in one kernel: the distances of SPEC §7 over a stack of k equations.

Equations that share a distance (name and parameters), an object shape
(kind, shape, classes, dtype), a data object and a right-hand encoding have
values of one shape, so their sides
stack to ``[k, B, ...]`` and one call computes all k distances: a fan-out of
thousands of heads against one target costs a few kernels instead of
thousands. Each function returns the ``[k]`` vector of per-equation
distances, equal to what ``distances.distance_fn`` gives for each equation
alone up to float rounding (the same per-element terms, reduced in a
different order).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..diagram import CategoricalObject, Distance, Object
from .layer_modules import softplus

BatchedFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(P [k, B, ...], T [k, B, ...]) → [k]``: each equation's batch-mean distance."""


def _per_equation_mean(values: torch.Tensor) -> torch.Tensor:
    """``[k, ...]`` → ``[k]``: the mean over everything but the first axis."""
    return values.reshape(values.shape[0], -1).mean(dim=1)


def _tensor(distance: Distance) -> BatchedFn:
    name, p = distance.name, distance.params
    if name == "mse":
        return lambda P, T: _per_equation_mean(F.mse_loss(P, T, reduction="none"))
    if name == "l1":
        return lambda P, T: _per_equation_mean(F.l1_loss(P, T, reduction="none"))
    if name == "huber":
        delta = float(p["delta"])
        return lambda P, T: _per_equation_mean(F.huber_loss(P, T, reduction="none", delta=delta))
    if name == "bce_logits":
        return lambda P, T: _per_equation_mean(softplus(P) - P * T)
    if name == "cosine":
        eps = float(p["eps"])

        def cosine(P: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
            P, T = P.reshape(P.shape[0], P.shape[1], -1), T.reshape(T.shape[0], T.shape[1], -1)
            dot = (P * T).sum(dim=2)
            norms = torch.linalg.vector_norm(P, dim=2) * torch.linalg.vector_norm(T, dim=2)
            return (1 - dot / norms.clamp(min=eps)).mean(dim=1)
        return cosine
    raise ValueError(f"{name} is not a tensor distance")


def _categorical(distance: Distance, classes: int, encoding: str) -> BatchedFn:
    """Rows of C entries (one per position of one example of one equation), reduced per equation."""
    k_rows = lambda v: v.reshape(-1, classes)  # noqa: E731 - [k·B·m, C]

    if distance.name == "cross_entropy":
        smoothing = float(distance.params["label_smoothing"])
        if encoding == "index":
            return lambda P, T: F.cross_entropy(k_rows(P), T.reshape(-1), reduction="none",
                                                label_smoothing=smoothing).reshape(P.shape[0], -1).mean(dim=1)
        if encoding == "probabilities":
            return lambda P, T: F.cross_entropy(k_rows(P), k_rows(T), reduction="none",
                                                label_smoothing=smoothing).reshape(P.shape[0], -1).mean(dim=1)
        return lambda P, T: F.cross_entropy(k_rows(P), torch.softmax(k_rows(T), dim=-1), reduction="none",
                                            label_smoothing=smoothing).reshape(P.shape[0], -1).mean(dim=1)
    if distance.name == "kl_div":
        tau = float(distance.params["temperature"])
        scale = tau * tau

        def log_softmax(v: torch.Tensor) -> torch.Tensor:
            return torch.log_softmax(k_rows(v) if tau == 1.0 else k_rows(v) / tau, dim=-1)

        if encoding == "index":
            return lambda P, T: -scale * log_softmax(P).gather(-1, T.reshape(-1, 1)).reshape(P.shape[0], -1).mean(1)
        if encoding == "probabilities":
            return lambda P, T: scale * F.kl_div(log_softmax(P), k_rows(T), reduction="none").sum(-1) \
                .reshape(P.shape[0], -1).mean(dim=1)
        return lambda P, T: scale * F.kl_div(log_softmax(P), log_softmax(T), reduction="none", log_target=True) \
            .sum(-1).reshape(P.shape[0], -1).mean(dim=1)
    raise ValueError(f"{distance.name} is not a categorical distance")


def batched_distance_fn(distance: Distance, obj: Object, rhs_encoding: str | None, dtype: torch.dtype) -> BatchedFn:
    """The callable ``(P, T) → [k]`` for a group of equations on ``obj`` with this distance and rhs encoding."""
    if isinstance(obj, CategoricalObject):
        return _categorical(distance, obj.classes, rhs_encoding or "index")
    fn = _tensor(distance)
    if getattr(obj, "dtype", "float32") == "int64":  # values are converted to the compute dtype (SPEC §7)
        return lambda P, T: fn(P.to(dtype), T.to(dtype))
    return fn
