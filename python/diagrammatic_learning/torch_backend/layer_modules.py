"""The layer vocabulary of SPEC §4 as PyTorch modules, one module per layer.

Each module takes a batch (batch first) and follows the spec's formula where
PyTorch's default differs: softplus without its threshold, conv2d and pools
with asymmetric padding, embedding with an index range check. ``elu`` is
``F.elu`` (equal to ``alpha · expm1(x)`` in float64, within 1.3 ulp in
float32: ``tests/test_lowering.py``), pools with symmetric padding PyTorch's
own padding (equal results, one kernel instead of a pad and a pool).
Parameter names and layouts are PyTorch's, which are the spec's (§8).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..diagram import Layer
from ..errors import DiagramError
from ..layers import full_params
from .registration import init_module, quiet, set_parameter


def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(x))`` exactly, with no threshold: ``max(x, 0) + log1p(exp(-|x|))`` and gradient σ(x)."""
    return torch.logaddexp(x, x.new_zeros(()))


def elu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``x`` if x > 0 else ``alpha · expm1(x)``: ``F.elu``, equal to that formula in float64 and within 1.3 ulp
    in float32, and 7× faster than writing it out with ``torch.where`` (``tests/test_lowering.py``)."""
    return F.elu(x, alpha)


class Softplus(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return softplus(x)


class ELU(nn.Module):
    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Conv2d(nn.Conv2d):
    """``conv2d`` with padding given as [top, bottom, left, right] (zeros), stride, dilation and groups."""

    def __init__(self, p: dict[str, Any], dtype: torch.dtype):
        top, bottom, left, right = p["padding"]
        symmetric = top == bottom and left == right
        super().__init__(p["in_channels"], p["out_channels"], tuple(p["kernel_size"]), stride=tuple(p["stride"]),
                         padding=(top, left) if symmetric else 0, dilation=tuple(p["dilation"]),
                         groups=p["groups"], bias=p["bias"], dtype=dtype)
        # F.pad takes the last axis first: (left, right, top, bottom)
        self.asymmetric_padding = None if symmetric else (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.asymmetric_padding is not None:
            x = F.pad(x, self.asymmetric_padding)
        return self._conv_forward(x, self.weight, self.bias)


class Pool2d(nn.Module):
    """``max_pool2d`` (padding −∞) or ``avg_pool2d`` (padding 0, counted in the mean)."""

    def __init__(self, kind: str, p: dict[str, Any]):
        super().__init__()
        self.kind = kind
        self.kernel_size = tuple(p["kernel_size"])
        self.stride = tuple(p["stride"])
        top, bottom, left, right = p["padding"]
        self.padding = (left, right, top, bottom) if any(p["padding"]) else None
        # PyTorch pads symmetrically by itself (−∞ for max, counted zeros for avg) up to half the kernel
        kh, kw = self.kernel_size
        self.native = (top, left) if self.padding and top == bottom and left == right \
            and 2 * top <= kh and 2 * left <= kw else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native is not None:
            if self.kind == "max":
                return F.max_pool2d(x, self.kernel_size, self.stride, padding=self.native)
            return F.avg_pool2d(x, self.kernel_size, self.stride, padding=self.native, count_include_pad=True)
        if self.kind == "max":
            if self.padding is not None:
                x = F.pad(x, self.padding, value=float("-inf"))
            return F.max_pool2d(x, self.kernel_size, self.stride)
        if self.padding is not None:
            x = F.pad(x, self.padding)
        return F.avg_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Embedding(nn.Embedding):
    """``embedding``; an index outside ``[0, num_embeddings)`` is ``batch-index-range``, not an IndexError."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel():
            low, high = (v.item() for v in torch.aminmax(x))
            if low < 0 or high >= self.num_embeddings:
                raise DiagramError.one("batch-index-range", "input",
                                       f"embedding indices must lie in [0, {self.num_embeddings}), "
                                       f"got values from {low} to {high}")
        return super().forward(x)


class LSTM(nn.LSTM):
    """A one-layer ``lstm`` over ``[B, L, in]`` returning the output sequence ``[B, L, hidden]``."""

    def __init__(self, input_size: int, hidden_size: int, dtype: torch.dtype):
        super().__init__(input_size, hidden_size, batch_first=True, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


class LastStep(nn.Module):
    """``last_step``: ``[B, L, F]`` → ``[B, F]``, step L−1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1]


class Flatten(nn.Module):
    """``flatten``: each example to one row-major axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


# the gain nn.Linear.reset_parameters gives kaiming_uniform_ (a = √5): bound = √3 · gain / √fan_in
_LINEAR_GAIN = nn.init.calculate_gain("leaky_relu", math.sqrt(5))


class Linear(nn.Linear):
    """``linear``: ``nn.Linear``, initialised with the very numbers ``nn.Linear`` draws, drawn directly.

    ``reset_parameters`` makes the same two ``uniform_`` calls with the same
    bounds, computed the same way, as ``nn.Linear``'s (so a seed gives equal
    weights: ``tests/test_torch_layers.py``), without ``kaiming_uniform_``'s
    dispatch, which is most of the time of building a small layer: a diagram of
    5,000 linear models compiles noticeably faster.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: Any = None,
                 dtype: torch.dtype | None = None) -> None:
        """What ``nn.Linear.__init__`` does, registering the parameters directly (``registration.py``)."""
        fast = quiet()
        if not fast:
            super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
            return
        init_module(self)
        self.__dict__.update(in_features=in_features, out_features=out_features)
        weight = torch.empty((out_features, in_features), device=device, dtype=dtype)
        bias_data = torch.empty(out_features, device=device, dtype=dtype) if bias else None
        drawn = bool(in_features and out_features)  # empty ones follow kaiming_uniform_'s rules, below
        if drawn:  # before they become parameters: no autograd to turn off
            _draw(weight, bias_data, in_features)
        set_parameter(self, "weight", nn.Parameter(weight), fast)
        set_parameter(self, "bias", None if bias_data is None else nn.Parameter(bias_data), fast)
        if not drawn:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.in_features
        if fan_in == 0 or self.out_features == 0:  # kaiming_uniform_'s own rules for empty tensors
            return super().reset_parameters()
        with torch.no_grad():
            _draw(self.weight, self.bias, fan_in)
        return None


def _draw(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int) -> None:
    """``nn.Linear.reset_parameters``'s two draws (same bounds, same order), in place."""
    bound = math.sqrt(3.0) * (_LINEAR_GAIN / math.sqrt(fan_in))
    weight.uniform_(-bound, bound)
    if bias is not None:
        bias_bound = 1 / math.sqrt(fan_in)
        bias.uniform_(-bias_bound, bias_bound)


def _linear(p: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    return Linear(p["in_features"], p["out_features"], bias=p["bias"], dtype=dtype)


def _layer_norm(p: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    return nn.LayerNorm(tuple(p["normalized_shape"]), eps=p["eps"], elementwise_affine=p["elementwise_affine"],
                        dtype=dtype)


# One entry per layer type of the schema: (parameters with defaults filled, dtype) → module
# (tests/test_registries.py checks both directions).
LAYERS: dict[str, Callable[[dict[str, Any], torch.dtype], nn.Module]] = {
    "linear": _linear,
    "conv2d": Conv2d,
    "max_pool2d": lambda p, dtype: Pool2d("max", p),
    "avg_pool2d": lambda p, dtype: Pool2d("avg", p),
    "flatten": lambda p, dtype: Flatten(),
    "embedding": lambda p, dtype: Embedding(p["num_embeddings"], p["embedding_dim"], dtype=dtype),
    "layer_norm": _layer_norm,
    "lstm": lambda p, dtype: LSTM(p["input_size"], p["hidden_size"], dtype),
    "last_step": lambda p, dtype: LastStep(),
    "dropout": lambda p, dtype: nn.Dropout(p["p"]),
    "relu": lambda p, dtype: nn.ReLU(),
    "tanh": lambda p, dtype: nn.Tanh(),
    "sigmoid": lambda p, dtype: nn.Sigmoid(),
    "gelu": lambda p, dtype: nn.GELU(approximate="none"),  # the exact erf form
    "softplus": lambda p, dtype: Softplus(),
    "identity": lambda p, dtype: nn.Identity(),
    "leaky_relu": lambda p, dtype: nn.LeakyReLU(p["negative_slope"]),
    "elu": lambda p, dtype: ELU(p["alpha"]),
    "softmax": lambda p, dtype: nn.Softmax(dim=-1),
    "log_softmax": lambda p, dtype: nn.LogSoftmax(dim=-1),
}


def build_layer(layer: Layer, dtype: torch.dtype = torch.float32) -> nn.Module:
    """One layer of the vocabulary as a module with PyTorch's default initialisation, in ``dtype``."""
    make = LAYERS.get(layer.type)
    if make is None:
        raise DiagramError.one("bad-value", "type", f"unknown layer type {layer.type!r}")
    return make(full_params(layer), dtype)
