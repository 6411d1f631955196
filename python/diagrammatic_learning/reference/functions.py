"""The function arrows' operations (SPEC §3.2) in NumPy, on batches (batch first)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .layers import log_softmax, softmax


def apply_function(op: str, params: Mapping[str, Any], args: list[np.ndarray], classes: int | None) -> np.ndarray:
    """The value of function op applied to argument batches.

    ``classes`` is the source's class count for ``one_hot`` (its source is
    categorical, with index values); unused otherwise.
    """
    x = args[0]
    if op == "identity":
        return x
    if op == "softmax":
        return softmax(x)
    if op == "log_softmax":
        return log_softmax(x)
    if op == "one_hot":
        return (x[..., None] == np.arange(classes)).astype(np.float64)
    if op == "flatten":
        return x.reshape(x.shape[0], -1)
    if op == "reshape":
        return x.reshape((x.shape[0], *params["shape"]))
    if op == "scale":
        return float(params["factor"]) * x
    if op == "normalize":
        eps = float(params.get("eps", 1e-12))
        norm = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
        return x / np.maximum(norm, eps)
    if op == "add":
        total = args[0]
        for a in args[1:]:
            total = total + a
        return total
    if op == "concat":
        return np.concatenate(args, axis=-1)
    raise ValueError(f"unknown function op {op!r}")
