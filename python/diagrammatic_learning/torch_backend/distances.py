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


def tensor_distance(distance: Distance) -> DistanceFn:
    """A distance between two batches of tensor values of the same shape."""
    name, p = distance.name, distance.params
    if name == "mse":
        return F.mse_loss
    if name == "l1":
        return F.l1_loss
    if name == "huber":
        return _huber(float(p["delta"]))
    if name == "cosine":
        return _cosine(float(p["eps"]))
    if name == "bce_logits":
        return bce_logits
    raise ValueError(f"{name} is not a tensor distance")


def _target_distribution(t: torch.Tensor, encoding: str, temperature: float = 1.0) -> torch.Tensor:
    """q from the rhs value by its encoding (probabilities or logits; index is handled by the callers)."""
    if encoding == "probabilities":
        return t
    return torch.softmax(t if temperature == 1.0 else t / temperature, dim=-1)


def _cross_entropy(classes: int, smoothing: float, encoding: str) -> DistanceFn:
    if encoding == "index":
        # F.cross_entropy's label smoothing is q' = (1 − ε)·onehot + ε/C, the spec's q'
        return lambda p, t: F.cross_entropy(p.reshape(-1, classes), t.reshape(-1), label_smoothing=smoothing)

    def cross_entropy(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        q = _target_distribution(t, encoding)
        if smoothing:
            q = (1 - smoothing) * q + smoothing / classes
        return -(q * torch.log_softmax(p, dim=-1)).sum(dim=-1).mean()
    return cross_entropy


def _kl_div(temperature: float, encoding: str) -> DistanceFn:
    scale = temperature * temperature

    def log_student(p: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(p if temperature == 1.0 else p / temperature, dim=-1)

    if encoding == "index":
        # q is one-hot, so Σ q log q = 0 and Σ q·log_softmax picks the indexed entry
        return lambda p, t: -scale * log_student(p).gather(-1, t.unsqueeze(-1)).mean()

    def kl_div(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        q = _target_distribution(t, encoding, temperature)
        return scale * (torch.xlogy(q, q) - q * log_student(p)).sum(dim=-1).mean()
    return kl_div


def distance_fn(distance: Distance, obj: Object, rhs_encoding: str | None, dtype: torch.dtype) -> DistanceFn:
    """The callable ``(lhs value, rhs value) → 0-d tensor`` for one equation on ``obj``."""
    if isinstance(obj, CategoricalObject):
        if distance.name == "cross_entropy":
            return _cross_entropy(obj.classes, float(distance.params["label_smoothing"]), rhs_encoding or "index")
        if distance.name == "kl_div":
            return _kl_div(float(distance.params["temperature"]), rhs_encoding or "index")
        raise ValueError(f"{distance.name} is not a categorical distance")
    fn = tensor_distance(distance)
    if getattr(obj, "dtype", "float32") == "int64":  # values are converted to the compute dtype (SPEC §7)
        return lambda p, t: fn(p.to(dtype), t.to(dtype))
    return fn
