"""The Flux.jl backend seen from Python: a diagram's loss on a batch, computed in Julia.

Arrays cross to Julia without copies: NumPy arrays arrive in Julia as PythonCall ``PyArray``
views, and each is passed transposed (``array.T``, also a view), which is exactly this
backend's storage layout (SPEC §8: a row-major ``[B, s…]`` read column-major as ``(…s, B)``).
Julia copies once, when it converts floats to the compute dtype. Results come back as JSON
text; a Julia ``DiagramError`` becomes a Python :class:`~diagrammatic_learning.errors.DiagramError`
with the same codes and pointers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from ..diagram import Diagram
from ..errors import DiagramError, Problem
from ..io import dumps, to_json
from .runtime import julia_module

DTYPES = ("float32", "float64")
Externals = Mapping[str, Any]  # arrow name → FluxModel (or a Julia callable)


def problems_error(problems: list[dict[str, str]]) -> DiagramError:
    """A Python DiagramError from the problems a Julia DiagramError reported."""
    return DiagramError([Problem(p["code"], p["pointer"], p["message"]) for p in problems])


def parse_reply(reply: str) -> Any:
    """The result of a bridge call (JSON ``{"ok": …}``), or the DiagramError it reports."""
    message = json.loads(reply)
    if not message["ok"]:
        raise problems_error(message["problems"])
    return message["result"]


def _evaluation(result: Mapping[str, Any]) -> dict[str, Any]:
    return {"equations": {name: float(value) for name, value in result["equations"]}, "total": float(result["total"])}


def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dtype


def to_julia_layout(array: Any) -> np.ndarray:
    """A batch-first (row-major, logical) array as this backend's storage layout: the transposed view, no copy."""
    return np.asarray(array).T


def _externals(externals: Externals | None) -> tuple[list[str], list[Any]]:
    names = list(externals or {})
    values = [getattr(externals[n], "julia_value", externals[n]) for n in names]
    return names, values


def _diagram_text(diagram: Union[str, os.PathLike, Mapping[str, Any], Diagram]) -> str:
    if isinstance(diagram, Diagram):
        return dumps(diagram)
    if isinstance(diagram, Mapping):
        return json.dumps(diagram)
    return Path(diagram).read_text(encoding="utf-8")


class FluxBackend:
    """Evaluate diagrams with the Flux.jl backend (Julia through juliacall).

    Creating one starts Julia if it is not running (see :func:`diagrammatic_learning.julia.start`);
    raises :class:`~diagrammatic_learning.julia.JuliaUnavailable` with the reason when it cannot.
    """

    name = "julia"

    def __init__(self) -> None:
        self._julia = julia_module()

    def evaluate(self, diagram_path: str | os.PathLike, weights_path: str | os.PathLike,
                 batch_path: str | os.PathLike, dtype: str = "float64",
                 externals: Externals | None = None) -> dict[str, Any]:
        """The diagram's loss on a batch, all three read from files in Julia, in that order.

        Returns ``{"equations": {name: unweighted distance}, "total": Σ weight · distance}``, the
        equations in canonical order. Invalid input raises ``DiagramError`` with the code and
        pointer of SPEC §10. ``externals`` binds external model arrows to Flux models.
        """
        names, values = _externals(externals)
        reply = self._julia.bridge_evaluate_files(os.fspath(diagram_path), os.fspath(weights_path),
                                                  os.fspath(batch_path), _check_dtype(dtype), json.dumps(names),
                                                  *values)
        return _evaluation(parse_reply(str(reply)))

    def gradients(self, diagram_path: str | os.PathLike, weights_path: str | os.PathLike,
                  batch_path: str | os.PathLike, dtype: str = "float64") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The evaluation (as :meth:`evaluate`) and the gradient of the total with respect to every trainable
        parameter, by canonical name in the canonical (PyTorch) layout, computed by Zygote in evaluation mode."""
        import tempfile

        from ..tensorfiles import read_safetensors

        with tempfile.TemporaryDirectory(prefix="dlearn-gradients-") as folder:
            path = os.path.join(folder, "gradients.safetensors")
            reply = self._julia.bridge_gradient_files(os.fspath(diagram_path), os.fspath(weights_path),
                                                      os.fspath(batch_path), _check_dtype(dtype), path)
            evaluation = _evaluation(parse_reply(str(reply)))
            grads = read_safetensors(path, "gradients")
        return evaluation, grads

    def evaluate_arrays(self, diagram: Union[str, os.PathLike, Mapping[str, Any], Diagram],
                        weights: Mapping[str, Any], batch: Mapping[str, Any], dtype: str = "float64",
                        externals: Externals | None = None) -> dict[str, Any]:
        """Like :meth:`evaluate`, with in-memory weights and batch (name → NumPy array, PyTorch layout,
        batch first); the diagram is a path, a parsed document or a ``Diagram``."""
        weight_names, batch_names = list(weights), list(batch)
        names, values = _externals(externals)
        reply = self._julia.bridge_evaluate_arrays(
            _diagram_text(diagram), _check_dtype(dtype), json.dumps(weight_names), json.dumps(batch_names),
            json.dumps(names), *(to_julia_layout(weights[k]) for k in weight_names),
            *(to_julia_layout(batch[k]) for k in batch_names), *values)
        return _evaluation(parse_reply(str(reply)))


    def evaluate_accuracy(self, diagram: Union[str, os.PathLike, Mapping[str, Any], Diagram],
                          weights: Mapping[str, Any], batch: Mapping[str, Any], equations: list[str],
                          dtype: str = "float64") -> dict[str, Any]:
        """:meth:`evaluate_arrays` (no externals) plus ``"hits"``: for each named equation (its rhs a
        label column), ``(right, count)`` of its lhs's top-1 predictions, computed in Julia."""
        weight_names, batch_names = list(weights), list(batch)
        reply = self._julia.bridge_evaluate_accuracy(
            _diagram_text(diagram), _check_dtype(dtype), json.dumps(weight_names), json.dumps(batch_names),
            json.dumps(list(equations)), *(to_julia_layout(weights[k]) for k in weight_names),
            *(to_julia_layout(batch[k]) for k in batch_names))
        result = parse_reply(str(reply))
        out = _evaluation(result)
        out["hits"] = {name: (int(right), int(count)) for name, (right, count) in result["hits"].items()}
        return out


def evaluate(diagram: Union[str, os.PathLike, Mapping[str, Any], Diagram], weights: Any, batch: Any,
             dtype: str = "float64", externals: Externals | None = None) -> dict[str, Any]:
    """One evaluation with the Flux.jl backend: files (paths) or in-memory mappings for weights and batch."""
    backend = FluxBackend()
    if isinstance(weights, (str, os.PathLike)) and isinstance(batch, (str, os.PathLike)):
        if isinstance(diagram, (str, os.PathLike)):
            return backend.evaluate(diagram, weights, batch, dtype, externals)
    if isinstance(weights, (str, os.PathLike)) or isinstance(batch, (str, os.PathLike)):
        from ..tensorfiles import read_safetensors

        weights = read_safetensors(weights, "weights") if isinstance(weights, (str, os.PathLike)) else weights
        batch = read_safetensors(batch, "batch") if isinstance(batch, (str, os.PathLike)) else batch
    if isinstance(diagram, Diagram):
        diagram = to_json(diagram)
    return backend.evaluate_arrays(diagram, weights, batch, dtype, externals)
