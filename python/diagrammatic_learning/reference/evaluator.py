"""Evaluating a diagram on a batch in NumPy float64 (SPEC §9): every term once, every equation, the total."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

import numpy as np

from ..diagram import Architecture, CategoricalObject, DataArrow, Diagram, FunctionArrow, ModelArrow
from ..equations import Equation, equations, term_info
from ..errors import DiagramError, pointer
from ..io import Source, load
from ..layers import full_params
from ..tensorfiles import as_arrays, check_batch, check_weights, read_safetensors
from ..terms import Term
from .distances import categorical_distance, tensor_distance
from .functions import apply_function
from .layers import apply_layer, combine

Arrays = Union[Mapping[str, np.ndarray], str, os.PathLike]
External = Callable[..., np.ndarray]


@dataclass
class Result:
    """What one evaluation computed: term values, equation values (unweighted) and the weighted total."""

    terms: dict[str, np.ndarray] = field(default_factory=dict)
    equations: dict[str, float] = field(default_factory=dict)
    total: float = 0.0


def _arrays(source: Arrays, what: str) -> tuple[dict[str, np.ndarray], str]:
    """Arrays from a safetensors path or a mapping, and the name errors should give their source."""
    if isinstance(source, (str, os.PathLike)):
        return read_safetensors(source, what), str(source)
    return {k: np.asarray(v) for k, v in as_arrays(source, what, what).items()}, what


class _Evaluator:
    """Computes term values with memoization: each distinct subterm once per batch."""

    def __init__(self, diagram: Diagram, weights: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray],
                 batch_source: str, externals: Mapping[str, External]):
        self.d = diagram
        self.weights = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        self.batch = batch
        self.batch_source = batch_source
        self.externals = externals
        self.values: dict[Term, np.ndarray] = {}

    def value(self, term: Term) -> np.ndarray:
        for sub in term.subterms():
            if sub not in self.values:
                self.values[sub] = self._apply(sub, [self.values[a] for a in sub.args])
        return self.values[term]

    def _apply(self, term: Term, args: list[np.ndarray]) -> np.ndarray:
        arrow = self.d.arrows[term.arrow]
        if isinstance(arrow, DataArrow):
            column = np.asarray(self.batch[arrow.column])
            return column if column.dtype == np.int64 else column.astype(np.float64)
        if isinstance(arrow, FunctionArrow):
            source = self.d.objects[arrow.sources[0]]
            classes = source.classes if isinstance(source, CategoricalObject) else None
            return apply_function(arrow.op, arrow.params, args, classes)
        return self._model(arrow, term, args)

    def _model(self, arrow: ModelArrow, term: Term, args: list[np.ndarray]) -> np.ndarray:
        if arrow.external:
            return self._external(arrow, args)
        arch: Architecture = arrow.architecture
        branches = arch.inputs or tuple(() for _ in args)
        xs = [self._chain(arrow.name, f"inputs.{k}", branch, x, term.args[k])
              for k, (branch, x) in enumerate(zip(branches, args))]
        x = xs[0] if len(xs) == 1 else combine(arch.combine, xs)
        return self._chain(arrow.name, "layers", arch.layers, x, term.args[0] if len(xs) == 1 else None)

    def _chain(self, arrow: str, prefix: str, layers, x: np.ndarray, source_term: Term | None) -> np.ndarray:
        for i, layer in enumerate(layers):
            params = full_params(layer)
            if layer.type == "embedding":
                self._check_indices(x, params["num_embeddings"], source_term)
            tensors = {k[len(f"{arrow}.{prefix}.{i}."):]: v for k, v in self.weights.items()
                       if k.startswith(f"{arrow}.{prefix}.{i}.")}
            x = apply_layer(layer.type, x, params, tensors)
        return x

    def _check_indices(self, x: np.ndarray, num: int, source_term: Term | None) -> None:
        """``batch-index-range`` for embedding indices outside [0, num), naming the column they came from."""
        if x.size and (x.min() < 0 or x.max() >= num):
            # int64 values only come from a data column through identity, flatten or reshape: one leaf
            leaf = source_term.leaves()[0] if source_term is not None else None
            column = self.d.arrows[leaf.arrow].column if leaf is not None else "?"
            raise DiagramError.one("batch-index-range", f"{self.batch_source}#{column}",
                                   f"column {column!r} has indices outside [0, {num}) for an embedding")

    def _external(self, arrow: ModelArrow, args: list[np.ndarray]) -> np.ndarray:
        where = pointer("arrows", self.d.position(arrow.name))
        if arrow.name not in self.externals:
            raise DiagramError.one("external-unbound", where,
                                   f"external model {arrow.name!r} needs a function: pass externals={{...}}")
        y = np.asarray(self.externals[arrow.name](*args), dtype=np.float64)
        target = self.d.objects[arrow.target]
        want = target.shape + ((target.classes,) if isinstance(target, CategoricalObject) else ())
        if y.shape != (args[0].shape[0], *want):
            raise DiagramError.one("external-shape", where, f"external model {arrow.name!r} returned shape "
                                                            f"{list(y.shape)}, needs [B] + {list(want)}")
        return y


def _distance(d: Diagram, eq: Equation, lhs: np.ndarray, rhs: np.ndarray) -> float:
    obj = d.objects[eq.object]
    if isinstance(obj, CategoricalObject):
        encoding = term_info(d, eq.rhs).encoding
        return categorical_distance(eq.distance.name, eq.distance.params, lhs, rhs, encoding, obj.classes)
    return tensor_distance(eq.distance.name, eq.distance.params,
                           lhs.astype(np.float64), rhs.astype(np.float64))


def evaluate(diagram: Source, weights: Arrays, batch: Arrays,
             externals: Mapping[str, External] | None = None) -> Result:
    """The loss of a diagram on one batch, in float64, straight from SPEC.md.

    ``diagram`` is anything ``load`` reads; ``weights`` and ``batch`` are
    mappings name → array or safetensors paths. Both are checked first
    (``tensorfiles.check_weights`` / ``check_batch``); bad input raises
    ``DiagramError``. ``externals`` binds external model arrows to NumPy
    functions taking one batch per source.
    """
    d = load(diagram)  # validates a Diagram built in code too
    eqs = equations(d)
    weight_arrays, weights_source = _arrays(weights, "weights")
    check_weights(d, weight_arrays, weights_source)
    batch_arrays, batch_source = _arrays(batch, "batch")
    check_batch(d, batch_arrays, batch_source)

    ev = _Evaluator(d, weight_arrays, batch_arrays, batch_source, externals or {})
    result = Result()
    total = 0.0
    for eq in eqs:
        lhs, rhs = ev.value(eq.lhs), ev.value(eq.rhs)
        value = _distance(d, eq, lhs, rhs)
        result.equations[eq.name] = value
        total += eq.weight * value
    result.total = total
    result.terms = {str(t): v for t, v in ev.values.items()}
    return result


def evaluate_files(case_dir: str | os.PathLike, **kwargs: Any) -> Result:
    """Evaluate ``diagram.json`` with ``weights.safetensors`` on ``batch.safetensors`` from one folder."""
    folder = os.fspath(case_dir)
    return evaluate(os.path.join(folder, "diagram.json"), os.path.join(folder, "weights.safetensors"),
                    os.path.join(folder, "batch.safetensors"), **kwargs)
