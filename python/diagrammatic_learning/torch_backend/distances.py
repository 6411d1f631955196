"""The distances of SPEC §7 on batches: each returns the batch mean of the per-example distance.

Every distance here is the mean over the batch of a per-example number. Where
every example has the same number of elements (always, for one equation) the
per-example mean of means equals the plain mean over all entries, which is
what these functions compute.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..diagram import CategoricalObject, Distance, Object
from .layer_modules import softplus

DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _cosine(eps: float) -> DistanceFn:
    def cosine(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
        dot = (p * t).sum(dim=1)
        norms = torch.linalg.vector_norm(p, dim=1) * torch.linalg.vector_norm(t, dim=1)
        return (1 - dot / norms.clamp(min=eps)).mean()
    return cosine


def _huber(delta: float) -> DistanceFn:
    # torch's huber_loss is h(r) = r²/2 if |r| < delta else delta·(|r| − delta/2), the spec's h
    return lambda p, t: F.huber_loss(p, t, delta=delta)


def bce_logits(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``mean(max(p, 0) − p·t + log1p(exp(−|p|)))``, written as softplus(p) − p·t."""
    return (softplus(p) - p * t).mean()


# Tensor distances: parameters (defaults filled) → (lhs batch, rhs batch) → the batch mean.
TENSOR_DISTANCES: dict[str, Callable[[dict[str, float]], DistanceFn]] = {
    "mse": lambda p: F.mse_loss,
    "l1": lambda p: F.l1_loss,
    "huber": lambda p: _huber(float(p["delta"])),
    "cosine": lambda p: _cosine(float(p["eps"])),
    "bce_logits": lambda p: bce_logits,
}


def tensor_distance(distance: Distance) -> DistanceFn:
    """A distance between two batches of tensor values of the same shape."""
    make = TENSOR_DISTANCES.get(distance.name)
    if make is None:
        raise ValueError(f"{distance.name} is not a tensor distance")
    return make(dict(distance.params))


def _rows(classes: int, positions: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Categorical values as one row of C entries per position: ``[B·m, C]`` (free when S is empty)."""
    if positions:
        return lambda v: v.reshape(-1, classes)
    return lambda v: v


def _cross_entropy(classes: int, positions: tuple[int, ...], smoothing: float, encoding: str) -> DistanceFn:
    """``(1/m) Σ −Σ_k q'_k log_softmax(p)_k``, batch mean; F.cross_entropy smooths as q' = (1 − ε)·q + ε/C."""
    rows = _rows(classes, positions)
    if encoding == "index":
        if not positions and not smoothing:
            return F.cross_entropy
        return lambda p, t: F.cross_entropy(rows(p), t.reshape(-1), label_smoothing=smoothing)
    if encoding == "probabilities":
        return lambda p, t: F.cross_entropy(rows(p), rows(t), label_smoothing=smoothing)
    return lambda p, t: F.cross_entropy(rows(p), torch.softmax(rows(t), dim=-1), label_smoothing=smoothing)


def _kl_div(classes: int, positions: tuple[int, ...], temperature: float, encoding: str) -> DistanceFn:
    """``(1/m) Σ τ² Σ_k q_k (log q_k − log_softmax(p/τ)_k)``, batch mean, with 0·log 0 = 0.

    F.kl_div(input, target) sums ``target · (log target − input)`` with xlogy
    (0·log 0 = 0); "batchmean" over rows of C entries is the mean over positions.
    """
    scale = temperature * temperature
    rows = _rows(classes, positions)

    def log_softmax(v: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(rows(v) if temperature == 1.0 else rows(v) / temperature, dim=-1)

    if encoding == "index":
        # q is one-hot: Σ q log q = 0 and Σ q·log_softmax picks the indexed entry
        return lambda p, t: -scale * log_softmax(p).gather(-1, t.reshape(-1, 1)).mean()
    if encoding == "probabilities":
        return lambda p, t: scale * F.kl_div(log_softmax(p), rows(t), reduction="batchmean")
    # logits: log q = log_softmax(t/τ), so q = exp(log q) never meets log 0
    return lambda p, t: scale * F.kl_div(log_softmax(p), log_softmax(t), reduction="batchmean", log_target=True)


# Categorical distances: (classes, positions S, parameters, rhs encoding) → the distance function.
CATEGORICAL_DISTANCES: dict[str, Callable[[int, tuple[int, ...], dict[str, float], str], DistanceFn]] = {
    "cross_entropy": lambda c, s, p, enc: _cross_entropy(c, s, float(p["label_smoothing"]), enc),
    "kl_div": lambda c, s, p, enc: _kl_div(c, s, float(p["temperature"]), enc),
}


def distance_fn(distance: Distance, obj: Object, rhs_encoding: str | None, dtype: torch.dtype) -> DistanceFn:
    """The callable ``(lhs value, rhs value) → 0-d tensor`` for one equation on ``obj``."""
    if isinstance(obj, CategoricalObject):
        make = CATEGORICAL_DISTANCES.get(distance.name)
        if make is None:
            raise ValueError(f"{distance.name} is not a categorical distance")
        return make(obj.classes, obj.shape, dict(distance.params), rhs_encoding or "index")
    fn = tensor_distance(distance)
    if getattr(obj, "dtype", "float32") == "int64":  # values are converted to the compute dtype (SPEC §7)
        return lambda p, t: fn(p.to(dtype), t.to(dtype))
    return fn
