"""The layer vocabulary (SPEC §4) computed in plain NumPy, batch first, written straight from the formulas.

Every function takes a batch ``x`` of shape ``[B, *per_example_shape]``, the
layer's parameters with defaults filled (``layers.full_params``) and its
parameter tensors by name (``weight``, ``bias``, …). Loops are explicit where
the spec's formula is a loop (convolution, pooling, LSTM): this module is
meant to be obviously right, not fast.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

Params = Mapping[str, Any]
Tensors = Mapping[str, np.ndarray]

_erf = np.frompyfunc(math.erf, 1, 1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(−x)), evaluated without overflow on either side."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) with no threshold, as max(x, 0) + log1p(exp(−|x|))."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact GELU, x · (1 + erf(x/√2)) / 2."""
    return x * (1.0 + _erf(x / math.sqrt(2.0)).astype(x.dtype)) / 2.0


def elu(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def log_softmax(x: np.ndarray) -> np.ndarray:
    """x_k − m − log Σ_j exp(x_j − m) over the last axis, m the maximum."""
    m = np.max(x, axis=-1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    """exp(x_k − m) / Σ_j exp(x_j − m) over the last axis."""
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def linear(x: np.ndarray, p: Params, w: Tensors) -> np.ndarray:
    y = x @ w["weight"].T
    return y + w["bias"] if p["bias"] else y


def _pad(x: np.ndarray, padding: list[int], value: float) -> np.ndarray:
    top, bottom, left, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def conv2d(x: np.ndarray, p: Params, w: Tensors) -> np.ndarray:
    """Cross-correlation with zero padding, stride, dilation and groups (SPEC §4, conv2d)."""
    weight = w["weight"]
    kh, kw = p["kernel_size"]
    sh, sw = p["stride"]
    dh, dw = p["dilation"]
    groups = p["groups"]
    cin, cout = p["in_channels"], p["out_channels"]
    cg, og = cin // groups, cout // groups
    xp = _pad(x, p["padding"], 0.0)
    ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((x.shape[0], cout, ho, wo), dtype=x.dtype)
    for o in range(cout):
        group = o // og
        for c in range(cg):
            for i in range(kh):
                for j in range(kw):
                    # x̃[γ·Cg + c, i_out·sh + i·dh, j_out·sw + j·dw] for every output position at once
                    window = xp[:, group * cg + c,
                                i * dh: i * dh + sh * (ho - 1) + 1: sh,
                                j * dw: j * dw + sw * (wo - 1) + 1: sw]
                    y[:, o] += weight[o, c, i, j] * window
        if p["bias"]:
            y[:, o] += w["bias"][o]
    return y


def _pool(x: np.ndarray, p: Params, pad_value: float, reduce: Callable) -> np.ndarray:
    kh, kw = p["kernel_size"]
    sh, sw = p["stride"]
    xp = _pad(x, p["padding"], pad_value)
    ho = (xp.shape[2] - kh) // sh + 1
    wo = (xp.shape[3] - kw) // sw + 1
    y = np.empty(x.shape[:2] + (ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = reduce(xp[:, :, i * sh: i * sh + kh, j * sw: j * sw + kw])
    return y


def max_pool2d(x: np.ndarray, p: Params, w: Tensors) -> np.ndarray:
    """Maximum over each window of x padded with −∞."""
    return _pool(x, p, -np.inf, lambda win: win.max(axis=(2, 3)))


def avg_pool2d(x: np.ndarray, p: Params, w: Tensors) -> np.ndarray:
    """Sum over each window of x padded with 0, divided by kh·kw (padding counts)."""
    kh, kw = p["kernel_size"]
    return _pool(x, p, 0.0, lambda win: win.sum(axis=(2, 3)) / (kh * kw))


def embedding(x: np.ndarray, p: Params, w: Tensors) -> np.ndarray:
    """Rows of the weight table; indices are range-checked by the caller."""
    return w["weight"][x]


def layer_norm(x: np.ndarray, p: Params, w: Tensors) -> np.ndarray:
    axes = tuple(range(x.ndim - len(p["normalized_shape"]), x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + p["eps"])
    return y * w["weight"] + w["bias"] if p["elementwise_affine"] else y


def lstm(x: np.ndarray, p: Params, w: Tensors) -> np.ndarray:
    """One-layer LSTM from zero state, gates in the order i, f, g, o (SPEC §4, lstm)."""
    hidden = p["hidden_size"]
    batch, steps = x.shape[0], x.shape[1]
    h = np.zeros((batch, hidden), dtype=x.dtype)
    c = np.zeros((batch, hidden), dtype=x.dtype)
    out = np.empty((batch, steps, hidden), dtype=x.dtype)
    for t in range(steps):
        z = x[:, t] @ w["weight_ih_l0"].T + w["bias_ih_l0"] + h @ w["weight_hh_l0"].T + w["bias_hh_l0"]
        zi, zf, zg, zo = (z[:, k * hidden:(k + 1) * hidden] for k in range(4))
        c = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zg)
        h = sigmoid(zo) * np.tanh(c)
        out[:, t] = h
    return out


LAYERS: dict[str, Callable[[np.ndarray, Params, Tensors], np.ndarray]] = {
    "linear": linear,
    "conv2d": conv2d,
    "max_pool2d": max_pool2d,
    "avg_pool2d": avg_pool2d,
    "flatten": lambda x, p, w: x.reshape(x.shape[0], -1),
    "embedding": embedding,
    "layer_norm": layer_norm,
    "lstm": lstm,
    "last_step": lambda x, p, w: x[:, -1],
    "dropout": lambda x, p, w: x,  # evaluation mode: the identity
    "relu": lambda x, p, w: np.maximum(x, 0.0),
    "tanh": lambda x, p, w: np.tanh(x),
    "sigmoid": lambda x, p, w: sigmoid(x),
    "gelu": lambda x, p, w: gelu(x),
    "softplus": lambda x, p, w: softplus(x),
    "identity": lambda x, p, w: x,
    "leaky_relu": lambda x, p, w: np.where(x >= 0, x, p["negative_slope"] * x),
    "elu": lambda x, p, w: elu(x, p["alpha"]),
    "softmax": lambda x, p, w: softmax(x),
    "log_softmax": lambda x, p, w: log_softmax(x),
}


def apply_layer(type_: str, x: np.ndarray, params: Params, tensors: Tensors) -> np.ndarray:
    """Apply one layer of the vocabulary to a batch."""
    return LAYERS[type_](x, params, tensors)


def combine(how: str, xs: list[np.ndarray]) -> np.ndarray:
    """The combine step of a product model (SPEC §4): concat, add or prepend, on batches."""
    if how == "concat":
        return np.concatenate(xs, axis=-1)
    if how == "add":
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total
    if how == "prepend":
        first, rest = xs
        return np.concatenate([first[:, None, :], rest], axis=1)
    raise ValueError(f"unknown combine {how!r}")
