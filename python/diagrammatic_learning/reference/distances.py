"""The distances (SPEC §7) in NumPy, one function per distance: one number for a batch, the mean over examples of dₑ."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .layers import log_softmax, softmax


def _per_example_mean(x: np.ndarray) -> np.ndarray:
    """Mean over everything but the batch axis (a scalar object's value is its own mean)."""
    return x.reshape(x.shape[0], -1).mean(axis=1)


def _mse(p: np.ndarray, t: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    return _per_example_mean((p - t) ** 2)


def _l1(p: np.ndarray, t: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    return _per_example_mean(np.abs(p - t))


def _huber(p: np.ndarray, t: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    delta = params["delta"]
    r = np.abs(p - t)
    return _per_example_mean(np.where(r < delta, r * r / 2.0, delta * (r - delta / 2.0)))


def _cosine(p: np.ndarray, t: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    pf, tf = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    dot = np.sum(pf * tf, axis=1)
    norms = np.sqrt(np.sum(pf * pf, axis=1)) * np.sqrt(np.sum(tf * tf, axis=1))
    return 1.0 - dot / np.maximum(norms, params["eps"])


def _bce_logits(p: np.ndarray, t: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    return _per_example_mean(np.maximum(p, 0.0) - p * t + np.log1p(np.exp(-np.abs(p))))


# Tensor distances: (lhs batch, rhs batch, parameters) → the per-example distance dₑ, shape [B].
TENSOR_DISTANCES: dict[str, Callable[[np.ndarray, np.ndarray, Mapping[str, float]], np.ndarray]] = {
    "mse": _mse,
    "l1": _l1,
    "huber": _huber,
    "cosine": _cosine,
    "bce_logits": _bce_logits,
}


def tensor_distance(name: str, params: Mapping[str, float], p: np.ndarray, t: np.ndarray) -> float:
    """A distance between two batches of a tensor object, values already in the compute dtype."""
    fn = TENSOR_DISTANCES.get(name)
    if fn is None:
        raise ValueError(f"{name} is not a tensor distance")
    return float(np.mean(fn(p, t, params)))


def target_distribution(encoding: str, t: np.ndarray, classes: int, temperature: float = 1.0) -> np.ndarray:
    """q from the rhs value by its encoding: one-hot of an index, probabilities as they are, softmax(t/τ) of logits."""
    if encoding == "index":
        return (t[..., None] == np.arange(classes)).astype(np.float64)
    if encoding == "probabilities":
        return t
    return softmax(t / temperature)


def _cross_entropy(p: np.ndarray, t: np.ndarray, params: Mapping[str, float], encoding: str,
                   classes: int) -> np.ndarray:
    eps = params["label_smoothing"]
    q = (1.0 - eps) * target_distribution(encoding, t, classes) + eps / classes
    return -np.sum(q * log_softmax(p), axis=-1)


def _kl_div(p: np.ndarray, t: np.ndarray, params: Mapping[str, float], encoding: str, classes: int) -> np.ndarray:
    tau = params["temperature"]
    q = target_distribution(encoding, t, classes, tau)
    log_q = np.log(np.where(q > 0, q, 1.0))  # 0 · log 0 = 0
    return tau * tau * np.sum(np.where(q > 0, q * (log_q - log_softmax(p / tau)), 0.0), axis=-1)


# Categorical distances: (logits, target, parameters, target encoding, classes) → the distance at
# every position, shape [B, *S].
CATEGORICAL_DISTANCES: dict[str, Callable[[np.ndarray, np.ndarray, Mapping[str, float], str, int], np.ndarray]] = {
    "cross_entropy": _cross_entropy,
    "kl_div": _kl_div,
}


def categorical_distance(name: str, params: Mapping[str, float], p: np.ndarray, t: np.ndarray,
                         encoding: str, classes: int) -> float:
    """cross_entropy or kl_div between logits p (``[B, *S, C]``) and a target t in ``encoding``."""
    fn = CATEGORICAL_DISTANCES.get(name)
    if fn is None:
        raise ValueError(f"{name} is not a categorical distance")
    per_position = fn(p, t, params, encoding, classes)
    return float(np.mean(per_position.reshape(p.shape[0], -1).mean(axis=1)))
