"""PyTorch modules → architectures (SPEC §4) with canonical weights, and back.

A ``nn.Sequential`` of supported modules (nested sequences are flattened) becomes one layer list;
an ``ArchitectureModule`` of the PyTorch backend becomes its whole architecture, branches and
combine step included. The weights keep PyTorch's layout, which is the canonical one (SPEC §8),
under the paths ``layers.<i>.<param>`` and ``inputs.<k>.<i>.<param>``. Needs no Julia; the
Flux side (``FluxModel.from_torch``) builds a Flux model from the result.

Supported: Linear; Conv2d (zero padding: int, pair, ``"valid"`` or ``"same"``); MaxPool2d and
AvgPool2d (no ceil mode, no dilation, average counting the padding); Flatten (from axis 1);
Embedding (no max_norm); LayerNorm (with a bias when affine); LSTM (one layer, batch first,
unidirectional, with biases); Dropout; ReLU, Tanh, Sigmoid, GELU (exact), Softplus (β = 1:
the vocabulary's softplus has no threshold, so outputs above 20 differ by less than 2.1e-9),
Identity, LeakyReLU, ELU, Softmax and LogSoftmax over the last axis; and the PyTorch backend's
own layer modules. Anything else is a ``DiagramError`` ``invalid-layer`` at ``/layers/<i>``.

torch is imported inside the functions: see ``runtime`` on importing juliacall before torch.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np

from ..diagram import Architecture, Layer
from ..errors import DiagramError

Weights = dict[str, np.ndarray]


def architecture_to_json(arch: Architecture) -> dict[str, Any]:
    """An architecture as it is written in a diagram file."""
    out: dict[str, Any] = {}
    if arch.inputs is not None:
        out["inputs"] = [[layer.to_json() for layer in branch] for branch in arch.inputs]
    if arch.combine is not None:
        out["combine"] = arch.combine
    out["layers"] = [layer.to_json() for layer in arch.layers]
    return out


def _layers(items: list) -> tuple[Layer, ...]:
    return tuple(Layer(x["type"], {k: v for k, v in x.items() if k != "type" and not k.startswith("x-")})
                 for x in items)


def architecture_from_json(doc: Mapping[str, Any]) -> Architecture:
    """An architecture from its JSON form (not checked; a diagram using it is, when loaded)."""
    inputs = None if "inputs" not in doc else tuple(_layers(b) for b in doc["inputs"])
    return Architecture(_layers(doc["layers"]), inputs, doc.get("combine"))


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _unsupported(i: int, module: Any, why: str) -> DiagramError:
    return DiagramError.one("invalid-layer", f"/layers/{i}",
                            f"layer {i} ({type(module).__name__}) has no equivalent in the layer vocabulary: {why}")


def _flattened(module: Any) -> Iterator[Any]:
    from torch import nn

    if isinstance(module, nn.Sequential):
        for child in module:
            yield from _flattened(child)
    else:
        yield module


def _conv_padding(m: Any) -> list[int]:
    asymmetric = getattr(m, "asymmetric_padding", None)  # the PyTorch backend's Conv2d: (left, right, top, bottom)
    if asymmetric is not None:
        left, right, top, bottom = asymmetric
        return [top, bottom, left, right]
    if m.padding == "valid":
        return [0, 0, 0, 0]
    if m.padding == "same":  # PyTorch puts the odd pixel at the end
        (dh, dw), (kh, kw) = m.dilation, m.kernel_size
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return [th // 2, th - th // 2, tw // 2, tw - tw // 2]
    ph, pw = _pair(m.padding)
    return [ph, ph, pw, pw]


def _backend_modules() -> Any:
    try:
        from ..torch_backend import layer_modules
    except ImportError:  # the PyTorch backend is optional here
        return None
    return layer_modules


def convert_module(m: Any, i: int) -> tuple[Layer, dict[str, np.ndarray]]:
    """One PyTorch module as one vocabulary layer with its parameters (canonical names and layouts)."""
    from torch import nn

    lm = _backend_modules()
    if lm is not None:
        if isinstance(m, lm.Pool2d):
            left, right, top, bottom = m.padding or (0, 0, 0, 0)
            return Layer(f"{m.kind}_pool2d", {"kernel_size": list(m.kernel_size), "stride": list(m.stride),
                                              "padding": [top, bottom, left, right]}), {}
        for cls, type_ in ((lm.Softplus, "softplus"), (lm.LastStep, "last_step"), (lm.Flatten, "flatten")):
            if isinstance(m, cls):
                return Layer(type_), {}
        if isinstance(m, lm.ELU):
            return Layer("elu", {"alpha": float(m.alpha)}), {}
    if isinstance(m, nn.Linear):
        params: dict[str, Any] = {"in_features": m.in_features, "out_features": m.out_features}
        weights = {"weight": _array(m.weight)}
        if m.bias is None:
            params["bias"] = False
        else:
            weights["bias"] = _array(m.bias)
        return Layer("linear", params), weights
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise _unsupported(i, m, f"padding_mode {m.padding_mode!r} (only zeros)")
        params = {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
                  "stride": list(m.stride), "padding": _conv_padding(m), "dilation": list(m.dilation),
                  "groups": m.groups}
        weights = {"weight": _array(m.weight)}
        if m.bias is None:
            params["bias"] = False
        else:
            weights["bias"] = _array(m.bias)
        return Layer("conv2d", params), weights
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        if m.ceil_mode:
            raise _unsupported(i, m, "ceil_mode")
        if isinstance(m, nn.MaxPool2d) and (_pair(m.dilation) != (1, 1) or m.return_indices):
            raise _unsupported(i, m, "dilation or return_indices")
        if isinstance(m, nn.AvgPool2d) and (not m.count_include_pad or m.divisor_override is not None):
            raise _unsupported(i, m, "the mean must count the padding (count_include_pad=True, no divisor_override)")
        ph, pw = _pair(m.padding)
        kernel = _pair(m.kernel_size)
        stride = kernel if m.stride is None else _pair(m.stride)
        type_ = "max_pool2d" if isinstance(m, nn.MaxPool2d) else "avg_pool2d"
        return Layer(type_, {"kernel_size": list(kernel), "stride": list(stride), "padding": [ph, ph, pw, pw]}), {}
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise _unsupported(i, m, "flatten from axis 1 to the end only")
        return Layer("flatten"), {}
    if isinstance(m, nn.Embedding):
        if m.max_norm is not None:
            raise _unsupported(i, m, "max_norm")
        return (Layer("embedding", {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim}),
                {"weight": _array(m.weight)})
    if isinstance(m, nn.LayerNorm):
        params = {"normalized_shape": list(m.normalized_shape), "eps": float(m.eps)}
        if not m.elementwise_affine:
            params["elementwise_affine"] = False
            return Layer("layer_norm", params), {}
        if m.bias is None:
            raise _unsupported(i, m, "an affine layer norm without bias")
        return Layer("layer_norm", params), {"weight": _array(m.weight), "bias": _array(m.bias)}
    if isinstance(m, nn.LSTM):
        if m.num_layers != 1 or m.bidirectional or not m.batch_first or not m.bias or m.proj_size:
            raise _unsupported(i, m, "one layer, batch_first=True, unidirectional, with biases, no projection")
        names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        return (Layer("lstm", {"input_size": m.input_size, "hidden_size": m.hidden_size}),
                {n: _array(getattr(m, n)) for n in names})
    if isinstance(m, nn.Dropout):
        return Layer("dropout", {"p": float(m.p)}), {}
    if isinstance(m, nn.GELU):
        if m.approximate != "none":
            raise _unsupported(i, m, "the vocabulary's gelu is the exact one (approximate='none')")
        return Layer("gelu"), {}
    if isinstance(m, nn.Softplus):
        if m.beta != 1:
            raise _unsupported(i, m, "beta must be 1")
        return Layer("softplus"), {}
    if isinstance(m, nn.LeakyReLU):
        return Layer("leaky_relu", {"negative_slope": float(m.negative_slope)}), {}
    if isinstance(m, nn.ELU):
        return Layer("elu", {"alpha": float(m.alpha)}), {}
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        if m.dim != -1:
            raise _unsupported(i, m, "softmax over the last axis (dim=-1) only")
        return Layer("softmax" if isinstance(m, nn.Softmax) else "log_softmax"), {}
    for cls, type_ in ((nn.ReLU, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"), (nn.Identity, "identity")):
        if isinstance(m, cls):
            return Layer(type_), {}
    raise _unsupported(i, m, "not a supported module")


def _convert_list(modules: list[Any], prefix: str, first_index: int = 0) -> tuple[list[Layer], Weights]:
    layers: list[Layer] = []
    weights: Weights = {}
    for j, m in enumerate(modules):
        layer, params = convert_module(m, first_index + j)
        for name, value in params.items():
            weights[f"{prefix}.{len(layers)}.{name}"] = value
        layers.append(layer)
    return layers, weights


def torch_to_architecture(module: Any) -> tuple[Architecture, Weights]:
    """The architecture a PyTorch module computes, and its parameters under canonical paths.

    ``module`` is an ``nn.Sequential`` (or one supported module), or an ``ArchitectureModule`` of
    the PyTorch backend. Weights are NumPy arrays in PyTorch's (canonical) layout.
    """
    from ..torch_backend.architecture import ArchitectureModule

    if isinstance(module, ArchitectureModule):
        weights: Weights = {}
        inputs = None
        if module.inputs is not None:
            inputs = []
            for k, branch in enumerate(module.inputs):
                layers, params = _convert_list(list(_flattened(branch)), f"inputs.{k}")
                inputs.append(tuple(layers))
                weights.update(params)
            inputs = tuple(inputs)
        layers, params = _convert_list(list(_flattened(module.layers)), "layers")
        weights.update(params)
        return Architecture(tuple(layers), inputs, module.combine), weights
    layers, weights = _convert_list(list(_flattened(module)), "layers")
    return Architecture(tuple(layers)), weights


def architecture_to_torch(architecture: Architecture, weights: Mapping[str, Any] | None = None,
                          dtype: Any = None) -> Any:
    """A PyTorch module computing ``architecture`` (the PyTorch backend's ``build_module``), with
    ``weights`` (canonical paths → arrays) loaded when given; ``dtype`` defaults to torch.float32."""
    import torch

    from ..torch_backend import build_module

    module = build_module(architecture, torch.float32 if dtype is None else dtype)
    if weights is not None:
        state = {k: torch.as_tensor(np.asarray(v)) for k, v in weights.items()}
        module.load_state_dict(state, strict=True)
    return module
