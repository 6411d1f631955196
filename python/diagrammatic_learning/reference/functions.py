"""The function arrows' operations (SPEC §3.2) in NumPy, on batches (batch first): one function per op."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from ..vocabulary import function_params
from .layers import log_softmax, softmax


Args = list[np.ndarray]


def _identity(args: Args, p: Mapping[str, Any], classes: int | None) -> np.ndarray:
    return args[0]


def _softmax(args: Args, p: Mapping[str, Any], classes: int | None) -> np.ndarray:
    return softmax(args[0])


def _log_softmax(args: Args, p: Mapping[str, Any], classes: int | None) -> np.ndarray:
    return log_softmax(args[0])


def _one_hot(args: Args, p: Mapping[str, Any], classes: int | None) -> np.ndarray:
    return (args[0][..., None] == np.arange(classes)).astype(np.float64)


def _flatten(args: Args, p: Mapping[str, Any], classes: int | None) -> np.ndarray:
    return args[0].reshape(args[0].shape[0], -1)


def _reshape(args: Args, p: Mapping[str, Any], classes: int | None) -> np.ndarray:
    return args[0].reshape((args[0].shape[0], *p["shape"]))


def _scale(args: Args, p: Mapping[str, Any], classes: int | None) -> np.ndarray:
    return float(p["factor"]) * args[0]


def _normalize(args: Args, p: Mapping[str, Any], classes: int | None) -> np.ndarray:
    """x / max(‖x‖₂, eps) over the last axis."""
    x = args[0]
    norm = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
    return x / np.maximum(norm, float(p["eps"]))


def _add(args: Args, p: Mapping[str, Any], classes: int | None) -> np.ndarray:
    total = args[0]
    for a in args[1:]:
        total = total + a
    return total


def _concat(args: Args, p: Mapping[str, Any], classes: int | None) -> np.ndarray:
    return np.concatenate(args, axis=-1)


# One entry per function op of the schema (tests/test_registries.py checks both directions).
FUNCTIONS: dict[str, Callable[[Args, Mapping[str, Any], int | None], np.ndarray]] = {
    "identity": _identity,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "one_hot": _one_hot,
    "flatten": _flatten,
    "reshape": _reshape,
    "scale": _scale,
    "normalize": _normalize,
    "add": _add,
    "concat": _concat,
    "stop_gradient": _identity,  # the identity on values; NumPy has no gradients (SPEC §9.1)
}


def apply_function(op: str, params: Mapping[str, Any], args: list[np.ndarray], classes: int | None) -> np.ndarray:
    """The value of function op applied to argument batches.

    ``classes`` is the source's class count for ``one_hot`` (its source is
    categorical, with index values); unused otherwise.
    """
    fn = FUNCTIONS.get(op)
    if fn is None:
        raise ValueError(f"unknown function op {op!r}")
    return fn(args, function_params(op, params), classes)
