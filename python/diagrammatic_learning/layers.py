"""The layer vocabulary's metadata (SPEC §4): defaults (from the schema), shape rules and parameter shapes.

No numerics here: each backend computes layers its own way; this module only
says what a layer accepts, what it returns and which parameters it owns.
A value type is ``(shape, dtype)`` with dtype ``"float"`` or ``"int64"``.
"""

from __future__ import annotations

import copy
from math import prod
from typing import Any

from .diagram import Architecture, Layer
from .vocabulary import combines, layer_defaults

ValueType = tuple[tuple[int, ...], str]

# Layer type → {parameter: default}, read from the schema's `default` keywords (SPEC §4).
DEFAULTS: dict[str, dict[str, Any]] = layer_defaults()
ELEMENTWISE = {"relu", "tanh", "sigmoid", "gelu", "softplus", "identity", "leaky_relu", "elu", "dropout"}
COMBINES = combines()


class LayerError(ValueError):
    """A layer that does not fit its input; ``code`` is a SPEC §10 code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def full_params(layer: Layer) -> dict[str, Any]:
    """The layer's parameters with every default filled in (SPEC §4)."""
    params = {k: copy.deepcopy(v) if isinstance(v, (list, dict)) else v  # the defaults' lists stay unshared
              for k, v in DEFAULTS.get(layer.type, {}).items()}
    params.update({k: v for k, v in layer.params.items() if not k.startswith("x-")})
    if layer.type in ("max_pool2d", "avg_pool2d") and "stride" not in params:
        params["stride"] = list(params["kernel_size"])
    return params


def parameter_shapes(layer: Layer) -> dict[str, tuple[int, ...]]:
    """The parameter tensors a layer owns, by canonical name, in canonical order."""
    p = full_params(layer)
    t = layer.type
    if t == "linear":
        out = {"weight": (p["out_features"], p["in_features"])}
        if p["bias"]:
            out["bias"] = (p["out_features"],)
        return out
    if t == "conv2d":
        kh, kw = p["kernel_size"]
        out = {"weight": (p["out_channels"], p["in_channels"] // p["groups"], kh, kw)}
        if p["bias"]:
            out["bias"] = (p["out_channels"],)
        return out
    if t == "embedding":
        return {"weight": (p["num_embeddings"], p["embedding_dim"])}
    if t == "layer_norm":
        if not p["elementwise_affine"]:
            return {}
        ns = tuple(p["normalized_shape"])
        return {"weight": ns, "bias": ns}
    if t == "lstm":
        h, i = p["hidden_size"], p["input_size"]
        return {"weight_ih_l0": (4 * h, i), "weight_hh_l0": (4 * h, h),
                "bias_ih_l0": (4 * h,), "bias_hh_l0": (4 * h,)}
    return {}


def _need_float(t: str, vt: ValueType) -> None:
    if vt[1] != "float":
        raise LayerError("dtype-mismatch", f"{t} needs a float input, got {vt[1]}")


def _pool_or_conv_out(size: int, pad: int, kernel: int, stride: int, dilation: int) -> int:
    return (size + pad - dilation * (kernel - 1) - 1) // stride + 1


def layer_output(layer: Layer, vt: ValueType) -> ValueType:
    """The value type a layer returns for input type ``vt``; ``LayerError`` if it does not fit."""
    t = layer.type
    p = full_params(layer)
    shape, dtype = vt
    if t == "embedding":
        if dtype != "int64":
            raise LayerError("dtype-mismatch", f"embedding needs an int64 input, got {dtype}")
        return shape + (p["embedding_dim"],), "float"
    _need_float(t, vt)
    if t in ELEMENTWISE:
        return vt
    if t in ("softmax", "log_softmax"):
        if not shape:
            raise LayerError("shape-mismatch", f"{t} needs at least one axis, got a scalar")
        return vt
    if t == "linear":
        if not shape or shape[-1] != p["in_features"]:
            raise LayerError("shape-mismatch", f"linear expects last axis {p['in_features']}, got shape {list(shape)}")
        return shape[:-1] + (p["out_features"],), "float"
    if t == "flatten":
        return (prod(shape),), "float"
    if t == "last_step":
        if len(shape) != 2:
            raise LayerError("shape-mismatch", f"last_step expects [L, F], got shape {list(shape)}")
        return shape[1:], "float"
    if t == "layer_norm":
        ns = tuple(p["normalized_shape"])
        if shape[len(shape) - len(ns):] != ns or len(shape) < len(ns):
            raise LayerError("shape-mismatch", f"layer_norm over {list(ns)} does not fit shape {list(shape)}")
        return vt
    if t == "lstm":
        if len(shape) != 2 or shape[1] != p["input_size"]:
            raise LayerError("shape-mismatch", f"lstm expects [L, {p['input_size']}], got shape {list(shape)}")
        return (shape[0], p["hidden_size"]), "float"
    if t in ("conv2d", "max_pool2d", "avg_pool2d"):
        if len(shape) != 3:
            raise LayerError("shape-mismatch", f"{t} expects [C, H, W], got shape {list(shape)}")
        c, h, w = shape
        kh, kw = p["kernel_size"]
        sh, sw = p["stride"]
        top, bottom, left, right = p["padding"]
        dh, dw = p.get("dilation", [1, 1])
        if t == "conv2d":
            if p["in_channels"] % p["groups"] or p["out_channels"] % p["groups"]:
                raise LayerError("invalid-layer", f"groups={p['groups']} must divide in_channels={p['in_channels']} "
                                                  f"and out_channels={p['out_channels']}")
            if c != p["in_channels"]:
                raise LayerError("shape-mismatch", f"conv2d expects {p['in_channels']} channels, got shape {list(shape)}")
            c = p["out_channels"]
        elif top >= kh or bottom >= kh or left >= kw or right >= kw:
            # a window entirely in padding would have no input to pool (SPEC §4)
            raise LayerError("invalid-layer", f"{t} padding {[top, bottom, left, right]} must be smaller than the "
                                              f"kernel {[kh, kw]} on each side")
        ho = _pool_or_conv_out(h, top + bottom, kh, sh, dh)
        wo = _pool_or_conv_out(w, left + right, kw, sw, dw)
        if ho < 1 or wo < 1:
            raise LayerError("shape-mismatch", f"{t} with kernel {[kh, kw]} leaves no output for input {list(shape)}")
        return (c, ho, wo), "float"
    raise LayerError("bad-value", f"unknown layer type {t!r}")


def combine_output(combine: str, types: list[ValueType]) -> ValueType:
    """The value type of a combine step (SPEC §4); ``LayerError`` if the inputs do not fit."""
    for s, d in types:
        if d != "float":
            raise LayerError("dtype-mismatch", f"{combine} needs float inputs, got {d}")
    shapes = [s for s, _ in types]
    if combine == "add":
        if any(s != shapes[0] for s in shapes):
            raise LayerError("shape-mismatch", f"add needs equal shapes, got {[list(s) for s in shapes]}")
        return shapes[0], "float"
    if combine == "concat":
        if any(not s for s in shapes) or any(s[:-1] != shapes[0][:-1] for s in shapes):
            raise LayerError("shape-mismatch", f"concat needs shapes equal but for the last axis, got "
                                               f"{[list(s) for s in shapes]}")
        return shapes[0][:-1] + (sum(s[-1] for s in shapes),), "float"
    if combine == "prepend":
        if len(shapes) != 2 or len(shapes[0]) != 1 or len(shapes[1]) != 2 or shapes[0][0] != shapes[1][1]:
            raise LayerError("shape-mismatch", f"prepend needs [F] and [L, F], got {[list(s) for s in shapes]}")
        return (shapes[1][0] + 1, shapes[0][0]), "float"
    raise LayerError("bad-value", f"unknown combine {combine!r}")


def architecture_parameter_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """Parameter paths within one architecture (SPEC §8), e.g. ``layers.0.weight``."""
    out: dict[str, tuple[int, ...]] = {}
    for k, branch in enumerate(arch.inputs or ()):
        for i, layer in enumerate(branch):
            for name, shape in parameter_shapes(layer).items():
                out[f"inputs.{k}.{i}.{name}"] = shape
    for i, layer in enumerate(arch.layers):
        for name, shape in parameter_shapes(layer).items():
            out[f"layers.{i}.{name}"] = shape
    return out
