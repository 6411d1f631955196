"""Flux models from Python: load one saved in Julia, run it, bind it as an external arrow, and
convert it to and from PyTorch through the layer vocabulary.

A :class:`FluxModel` holds a Flux model living in Julia together with the architecture that
describes it (SPEC §4). Its arrays are batch-first NumPy arrays on the Python side; they reach
Julia transposed (a no-copy view in Julia's storage layout).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..diagram import Architecture
from ..tensorfiles import read_safetensors
from .backend import DTYPES, problems_error, to_julia_layout
from .runtime import julia_module
from .torch_convert import architecture_from_json, architecture_to_json, architecture_to_torch, torch_to_architecture


def _value(reply: Any) -> Any:
    """The value of a ``(problems, value)`` bridge reply, or the DiagramError it reports."""
    problems, value = reply
    if problems is not None:
        raise problems_error(json.loads(str(problems)))
    return value


def _numpy(julia_array: Any) -> np.ndarray:
    """A Julia array in storage layout as a batch-first NumPy array (one copy)."""
    return julia_array.to_numpy(copy=False).T.copy()


class FluxModel:
    """A Flux model (in Julia) with its architecture; call it on batch-first NumPy arrays.

    Bind it to an ``external`` model arrow: ``FluxBackend().evaluate(..., externals={"arrow": m})``
    evaluates it in Julia; ``torch_backend.compile(..., modules={"arrow": m.torch_module()})`` uses
    it inside a PyTorch graph (forward and input gradients run in Julia).
    """

    def __init__(self, julia_value: Any, architecture: Architecture, inputs: int = 1, dtype: str = "float32"):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.julia_value = julia_value
        self.architecture = architecture
        self.inputs = inputs
        self.dtype = dtype

    def __repr__(self) -> str:
        types = ", ".join(layer.type for layer in self.architecture.layers)
        return f"FluxModel({self.dtype}, inputs={self.inputs}, layers=[{types}])"

    @classmethod
    def from_architecture(cls, architecture: Architecture, weights: Mapping[str, Any] | None = None,
                          dtype: str = "float32", inputs: int = 1) -> "FluxModel":
        """A Flux model built in Julia from an architecture and canonical weights (paths such as
        ``layers.0.weight`` → arrays in PyTorch layout); fresh PyTorch-style values without weights."""
        names = list(weights or {})
        reply = julia_module().bridge_build_model(json.dumps(architecture_to_json(architecture)), dtype, inputs,
                                                  json.dumps(names), *(to_julia_layout(weights[n]) for n in names))
        return cls(_value(reply), architecture, inputs, dtype)

    @classmethod
    def from_torch(cls, module: Any, dtype: str = "float32", inputs: int | None = None) -> "FluxModel":
        """The Flux twin of a PyTorch module of supported layers (see ``torch_convert``). ``inputs``
        is the number of sources; it is read from the module except for a product model without
        input branches, which must say it."""
        architecture, weights = torch_to_architecture(module)
        if inputs is None:
            if architecture.combine is None:
                inputs = 1
            elif architecture.inputs is not None:
                inputs = len(architecture.inputs)
            else:
                raise ValueError("a product model without input branches: pass inputs=<number of sources>")
        return cls.from_architecture(architecture, weights, dtype, inputs)

    def __call__(self, *arrays: Any, training: bool = False) -> np.ndarray:
        """The model on one batch per source (batch first), as a batch-first NumPy array; Dropout
        active only when ``training`` (PyTorch's ``train()`` mode), as in PyTorch."""
        y = julia_module().bridge_forward(self.julia_value, self.dtype, *(to_julia_layout(a) for a in arrays),
                                          training=training)
        return _numpy(y)

    def forward_with_pullback(self, *arrays: Any, training: bool = False) -> tuple[np.ndarray, Any]:
        """The model's output and a Julia pullback for :meth:`pullback_gradients`: the backward pass
        then sees the forward pass's own Dropout mask (training mode)."""
        y, back = julia_module().bridge_forward_pullback(self.julia_value, self.dtype,
                                                         *(to_julia_layout(a) for a in arrays), training=training)
        return _numpy(y), back

    def pullback_gradients(self, pullback: Any, output_gradient: Any) -> list[np.ndarray | None]:
        """The input gradients from a pullback of :meth:`forward_with_pullback` (None for integer inputs)."""
        grads = julia_module().bridge_pullback(pullback, to_julia_layout(output_gradient))
        return [None if g is None else _numpy(g) for g in grads]

    def input_gradients(self, output_gradient: Any, *arrays: Any, training: bool = False) -> list[np.ndarray | None]:
        """The gradient of ``⟨output_gradient, model(arrays…)⟩`` with respect to each input (None for
        integer inputs), the forward pass recomputed in evaluation mode unless ``training``."""
        grads = julia_module().bridge_input_gradients(self.julia_value, self.dtype, to_julia_layout(output_gradient),
                                                      *(to_julia_layout(a) for a in arrays), training=training)
        return [None if g is None else _numpy(g) for g in grads]

    def canonical_weights(self) -> dict[str, np.ndarray]:
        """The parameters under canonical paths (``layers.0.weight``), PyTorch layout."""
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "weights.safetensors")
            _value(julia_module().bridge_export_model(self.julia_value, path))
            return read_safetensors(path, "weights")

    def save(self, path: str | os.PathLike) -> None:
        """Save as a JLD2 file (``Flux.state`` and the architecture), which Julia and :func:`load_flux_model` read."""
        _value(julia_module().bridge_save_flux_model(os.fspath(Path(path).resolve()), self.julia_value, self.inputs))

    def to_torch(self, dtype: Any = None) -> Any:
        """The same network as a PyTorch module (the PyTorch backend's ``build_module``) with these weights."""
        import torch

        torch_dtype = dtype if dtype is not None else getattr(torch, self.dtype)
        return architecture_to_torch(self.architecture, self.canonical_weights(), torch_dtype)

    def torch_module(self) -> Any:
        """A PyTorch module that evaluates this model in Julia (for an external arrow of the PyTorch
        backend); gradients flow to its inputs, its own parameters stay in Julia (train them there)."""
        from .torch_module import JuliaModule

        return JuliaModule(self)


def load_flux_model(path: str | os.PathLike, dtype: str | None = None) -> FluxModel:
    """A Flux model saved in Julia with ``DiagrammaticLearning.save_flux_model`` (a JLD2 file holding
    ``Flux.state`` and the architecture). ``dtype`` ``"float32"``/``"float64"`` converts; None keeps
    the saved one. A file that is not such a model is a ``DiagramError`` ``weights-file``."""
    reply = julia_module().bridge_load_flux_model(os.fspath(Path(path).resolve()), dtype or "")
    value, arch_json, inputs, saved_dtype = _value(reply)
    architecture = architecture_from_json(json.loads(str(arch_json)))
    return FluxModel(value, architecture, int(inputs), str(saved_dtype))
