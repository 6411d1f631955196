"""Weights and batches: reading safetensors files and checking them against a diagram (SPEC §8).

Shared by every backend so that all reject the same inputs with the same codes.
Arrays here are NumPy; backends convert after the checks pass. Nothing is
ever unpickled: safetensors files hold raw tensors only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from .diagram import CategoricalObject, DataArrow, Diagram, TensorObject
from .errors import DiagramError, Problem
from .io import atomic_write
from .layers import architecture_parameter_shapes

FLOAT_DTYPES = ("float32", "float64")


def parameter_shapes(diagram: Diagram) -> dict[str, tuple[int, ...]]:
    """Canonical parameter names (``arrow.layers.0.weight``) → shapes, for every architecture model."""
    out: dict[str, tuple[int, ...]] = {}
    for arrow in diagram.model_arrows():
        if arrow.architecture is not None:
            for path, shape in architecture_parameter_shapes(arrow.architecture).items():
                out[f"{arrow.name}.{path}"] = shape
    return out


def read_safetensors(path: str | os.PathLike, what: str = "weights") -> dict[str, np.ndarray]:
    """Read a safetensors file into NumPy arrays; ``<what>-file`` naming the file if it is unreadable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DiagramError.one(f"{what}-file", str(path), f"cannot read {what} file {path}: {e.strerror or e}") from None
    try:
        return dict(_st_load(data))
    except (SafetensorError, ValueError, TypeError, OverflowError) as e:
        raise DiagramError.one(f"{what}-file", str(path), f"{path} is not a readable safetensors file: {e}") from None


def write_safetensors(tensors: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write arrays to a safetensors file atomically, keys sorted."""
    arrays = {k: np.ascontiguousarray(tensors[k]) for k in sorted(tensors)}
    atomic_write(path, _st_save(arrays))


def _dtype_name(array: Any) -> str:
    """'float32', 'int64', … for NumPy arrays, torch tensors and Julia arrays seen from Python."""
    return str(array.dtype).removeprefix("torch.")


def check_weights(diagram: Diagram, tensors: Mapping[str, Any], source: str = "weights") -> None:
    """Check a weights mapping against the diagram's parameters: every key, shape and dtype (SPEC §8)."""
    want = parameter_shapes(diagram)
    problems: list[Problem] = []
    for key, shape in want.items():
        if key not in tensors:
            problems.append(Problem("weights-missing-key", f"{source}#{key}",
                                    f"{source} has no tensor {key!r} (shape {list(shape)})"))
            continue
        t = tensors[key]
        if _dtype_name(t) not in FLOAT_DTYPES:
            problems.append(Problem("weights-dtype", f"{source}#{key}",
                                    f"{key!r} has dtype {_dtype_name(t)}; weights are float32 or float64"))
        if tuple(t.shape) != tuple(shape):
            problems.append(Problem("weights-shape", f"{source}#{key}",
                                    f"{key!r} has shape {list(t.shape)}, the diagram needs {list(shape)}"))
    for key in tensors:
        if key not in want:
            problems.append(Problem("weights-unexpected-key", f"{source}#{key}",
                                    f"{source} has a tensor {key!r} that is no parameter of this diagram"))
    if problems:
        raise DiagramError(problems)


def load_weights(diagram: Diagram, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and check a weights file; all or nothing."""
    tensors = read_safetensors(path, "weights")
    check_weights(diagram, tensors, str(path))
    return tensors


def check_batch(diagram: Diagram, batch: Mapping[str, Any], source: str = "batch") -> dict[str, int]:
    """Check a batch (column → array, batch first) against the diagram's data arrows (SPEC §8).

    Every data arrow checks the column it reads: two arrows may read one column into different
    objects or for different data objects, and each has its own rules. A column gets at most one
    problem, from the first data arrow (in declaration order) that it fails.

    Returns the batch size of each data object that has data arrows.
    """
    problems: list[Problem] = []
    sizes: dict[str, tuple[int, str]] = {}
    failed: set[str] = set()
    for arrow in diagram.arrows.values():
        if not isinstance(arrow, DataArrow) or arrow.column in failed:
            continue
        problem = _column_problem(diagram, arrow, batch, source, sizes)
        if problem is not None:
            problems.append(problem)
            failed.add(arrow.column)
    if problems:
        raise DiagramError(problems)
    return {k: v[0] for k, v in sizes.items()}


def _column_problem(diagram: Diagram, arrow: DataArrow, batch: Mapping[str, Any], source: str,
                    sizes: dict[str, tuple[int, str]]) -> Problem | None:
    """What is wrong with the column ``arrow`` reads, or None; records its data object's batch size."""
    where = f"{source}#{arrow.column}"
    if arrow.column not in batch:
        return Problem("batch-missing-column", where,
                       f"{source} has no column {arrow.column!r} (read by data arrow {arrow.name!r})")
    col = batch[arrow.column]
    shape, dtype = tuple(col.shape), _dtype_name(col)
    target = diagram.objects[arrow.target]
    if isinstance(target, TensorObject):
        per, want_int = target.shape, not target.is_float
    elif isinstance(target, CategoricalObject):
        want_int = (arrow.encoding or "index") == "index"
        per = target.shape if want_int else target.shape + (target.classes,)
    else:
        return None
    if not shape:
        return Problem("batch-shape", where, f"column {arrow.column!r} is a scalar; columns are batch first")
    if shape[0] == 0:
        return Problem("batch-shape", where, f"column {arrow.column!r} has no examples; a batch has B ≥ 1")
    if want_int and dtype != "int64":
        return Problem("batch-dtype", where, f"column {arrow.column!r} must be int64, got {dtype}")
    if not want_int and dtype not in FLOAT_DTYPES:
        return Problem("batch-dtype", where, f"column {arrow.column!r} must be float32 or float64, got {dtype}")
    if shape[1:] != per:
        return Problem("batch-shape", where, f"column {arrow.column!r} has shape {list(shape)}; "
                                             f"data arrow {arrow.name!r} needs [B] + {list(per)}")
    prev = sizes.get(arrow.source)
    if prev is not None and prev[0] != shape[0]:
        return Problem("batch-size-mismatch", where,
                       f"column {arrow.column!r} has {shape[0]} examples, column {prev[1]!r} of the "
                       f"same data object {arrow.source!r} has {prev[0]}")
    sizes.setdefault(arrow.source, (shape[0], arrow.column))
    if isinstance(target, CategoricalObject) and want_int:
        values = np.asarray(col)
        if values.size and (values.min() < 0 or values.max() >= target.classes):
            return Problem("batch-index-range", where,
                           f"column {arrow.column!r} has class indices outside [0, {target.classes})")
    return None


def load_batch(diagram: Diagram, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and check a batch file."""
    batch = read_safetensors(path, "batch")
    check_batch(diagram, batch, str(path))
    return batch
