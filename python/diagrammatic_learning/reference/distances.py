"""The distances (SPEC §7) in NumPy: one number for a batch, the mean over examples of dₑ."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .layers import log_softmax, softmax


def _per_example_mean(x: np.ndarray) -> np.ndarray:
    """Mean over everything but the batch axis (a scalar object's value is its own mean)."""
    return x.reshape(x.shape[0], -1).mean(axis=1)


def tensor_distance(name: str, params: Mapping[str, float], p: np.ndarray, t: np.ndarray) -> float:
    """A distance between two batches of a tensor object, values already in the compute dtype."""
    if name == "mse":
        d = _per_example_mean((p - t) ** 2)
    elif name == "l1":
        d = _per_example_mean(np.abs(p - t))
    elif name == "huber":
        delta = params["delta"]
        r = np.abs(p - t)
        d = _per_example_mean(np.where(r < delta, r * r / 2.0, delta * (r - delta / 2.0)))
    elif name == "cosine":
        pf, tf = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
        dot = np.sum(pf * tf, axis=1)
        norms = np.sqrt(np.sum(pf * pf, axis=1)) * np.sqrt(np.sum(tf * tf, axis=1))
        d = 1.0 - dot / np.maximum(norms, params["eps"])
    elif name == "bce_logits":
        d = _per_example_mean(np.maximum(p, 0.0) - p * t + np.log1p(np.exp(-np.abs(p))))
    else:
        raise ValueError(f"{name} is not a tensor distance")
    return float(np.mean(d))


def target_distribution(encoding: str, t: np.ndarray, classes: int, temperature: float = 1.0) -> np.ndarray:
    """q from the rhs value by its encoding: one-hot of an index, probabilities as they are, softmax(t/τ) of logits."""
    if encoding == "index":
        return (t[..., None] == np.arange(classes)).astype(np.float64)
    if encoding == "probabilities":
        return t
    return softmax(t / temperature)


def categorical_distance(name: str, params: Mapping[str, float], p: np.ndarray, t: np.ndarray,
                         encoding: str, classes: int) -> float:
    """cross_entropy or kl_div between logits p (``[B, *S, C]``) and a target t in ``encoding``."""
    batch = p.shape[0]
    if name == "cross_entropy":
        eps = params["label_smoothing"]
        q = (1.0 - eps) * target_distribution(encoding, t, classes) + eps / classes
        per_position = -np.sum(q * log_softmax(p), axis=-1)
    elif name == "kl_div":
        tau = params["temperature"]
        q = target_distribution(encoding, t, classes, tau)
        log_q = np.log(np.where(q > 0, q, 1.0))  # 0 · log 0 = 0
        per_position = tau * tau * np.sum(np.where(q > 0, q * (log_q - log_softmax(p / tau)), 0.0), axis=-1)
    else:
        raise ValueError(f"{name} is not a categorical distance")
    return float(np.mean(per_position.reshape(batch, -1).mean(axis=1)))
