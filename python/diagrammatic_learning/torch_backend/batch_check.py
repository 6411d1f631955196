"""The batch checks of SPEC §8, precompiled for one diagram so that a training step pays a few microseconds.

``BatchChecker(diagram, embeddings)(batch)`` makes the checks of
``tensorfiles.check_batch`` (same columns, same rules) plus the index range of
every column that reaches an ``embedding`` layer, all index ranges folded into
one bound per column. When any check fails it hands the batch to
``check_batch`` itself, which reports every problem with the shared codes and
messages (then to the embedding rule); the fast path only decides "all good".

What one batch costs (SPEC §8 "Per batch"):

- presence, dtype, shape and batch sizes: Python comparisons of metadata,
  no kernel;
- index ranges: one min/max reduction per index column. On the CPU each is
  read back at once (cheaper than stacking them: measured in
  ``benchmarks/README.md``); on another device all of them are stacked and
  read back in one transfer, one synchronisation per batch; under
  ``torch.compile``/``torch.export`` the range test is a device-side assert
  (``torch._assert_async``), no synchronisation and no graph break.
- nothing for the ranges when ``values=False``: allowed only when every row of
  the data source was checked once already (``check_source``), as
  ``ColumnLoader.for_model`` does.

``BatchChecker.fast`` is the same check written out as straight-line code for
the one case a training or evaluation step meets (every column a plain CPU
``torch.Tensor``): no loop, no tuple unpacking, index ranges inline. Anything
else (arrays, tensor subclasses, other devices, a failing column) it hands to
``__call__``, which decides. It is for eager calls only: the code ``lowering``
writes asks whether a tracer runs once, before it, and hands over to
``check_traced`` if one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ..diagram import CategoricalObject, DataArrow, Diagram, TensorObject
from ..errors import DiagramError
from ..tensorfiles import as_arrays, check_batch

_FLOATS = (torch.float32, torch.float64, np.dtype("float32"), np.dtype("float64"))
_INT64 = (torch.int64, np.dtype("int64"))
_TORCH_FLOATS = (torch.float32, torch.float64)
FAST_MAX_COLUMNS = 256  # above this many column rules ``fast`` is ``__call__`` itself (no code this long)


@dataclass(frozen=True)
class _Column:
    name: str
    data_object: str
    per_example: tuple[int, ...]
    integer: bool
    classes: int | None  # categorical index columns: entries must lie in [0, classes)


def _columns(diagram: Diagram) -> tuple[_Column, ...]:
    """What each data arrow needs of its column (as ``check_batch`` does; one rule per distinct need)."""
    out: dict[_Column, None] = {}
    for arrow in diagram.arrows.values():
        if not isinstance(arrow, DataArrow):
            continue
        target = diagram.objects[arrow.target]
        if isinstance(target, TensorObject):
            out[_Column(arrow.column, arrow.source, target.shape, not target.is_float, None)] = None
        elif isinstance(target, CategoricalObject):
            index = (arrow.encoding or "index") == "index"
            per = target.shape if index else target.shape + (target.classes,)
            out[_Column(arrow.column, arrow.source, per, index, target.classes if index else None)] = None
    return tuple(out)


def _is_tracing() -> bool:
    """Inside ``torch.compile`` or ``torch.export`` tracing: no value may be read back on the host."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


class BatchChecker:
    """Checks batches against one diagram's data arrows; raises ``DiagramError`` as ``check_batch`` does.

    ``embeddings`` maps a column to ``(num_embeddings, model arrow)`` for every
    column whose values an ``embedding`` layer reads (the smallest table if
    several do): its indices must lie in ``[0, num_embeddings)`` too.
    """

    def __init__(self, diagram: Diagram, embeddings: Mapping[str, tuple[int, str]] | None = None):
        self.diagram = diagram
        self.columns = _columns(diagram)
        self.embeddings = dict(embeddings or {})
        # the hot loop reads plain tuples: (column, data object, rank, per-example shape, allowed dtypes)
        # (column, data object, rank, per-example shape, integer): plain literals, which the code ``lowering``
        # writes for tracers holds as constants (``check_traced``)
        self.rules = tuple((c.name, c.data_object, 1 + len(c.per_example), c.per_example, c.integer)
                           for c in self.columns)
        # (column, bound): each index column once, with the smallest bound any reader sets; none when every
        # example is empty (a 0 in the shape): there is nothing to look up
        bounds: dict[str, int] = {}
        empty = {c.name for c in self.columns if 0 in c.per_example}
        for c in self.columns:
            if c.classes is not None and c.name not in empty:
                bounds[c.name] = min(bounds.get(c.name, c.classes), c.classes)
        for name, (num, _) in self.embeddings.items():
            if name not in empty:
                bounds[name] = min(bounds.get(name, num), num)
        self.ranges = tuple(bounds.items())
        self.fast = self._write_fast()

    def _write_fast(self) -> Any:
        """``fast(batch, values=True)``: ``self(batch, values)``, written out for plain CPU tensors (not while
        ``torch.compile``/``export`` traces: its index ranges are read back on the host)."""
        index = {name: i for i, name in enumerate(dict.fromkeys(r[0] for r in self.rules))}
        if len(self.rules) > FAST_MAX_COLUMNS or any(name not in index for name, _ in self.ranges):
            return self  # very wide batches (and index bounds not from a data arrow) take the general check
        lines = [f"    c{i} = batch.get({name!r})" for name, i in index.items()]
        tests = [f"c{i}.__class__ is Tensor" for i in index.values()]
        first: dict[str, int] = {}  # data object → the column that gives its batch size
        for name, data_object, rank, per_example, integer in self.rules:
            c = f"c{index[name]}"
            tests.append(f"{c}.dtype in {'I64' if integer else 'FLOATS'} and {c}.is_cpu and "
                         f"{c}.ndim == {rank}" + (f" and {c}.shape[1:] == {per_example!r}" if rank > 1 else ""))
            if data_object not in first:
                first[data_object] = index[name]
                tests.append(f"{c}.shape[0]")
            elif first[data_object] != index[name]:
                tests.append(f"{c}.shape[0] == c{first[data_object]}.shape[0]")
        ranges = [f"        low, high = torch.aminmax(c{index[name]})\n"
                  f"        if low.item() < 0 or high.item() >= {bound}:\n"
                  f"            return SLOW(batch, values)" for name, bound in self.ranges]
        source = ("def fast(batch, values=True):\n"
                  + "\n".join(lines) + "\n"
                  + "    if not (" + "\n            and ".join(tests or ["True"]) + "):\n"
                  "        return SLOW(batch, values)\n"
                  + ("    if values:\n" + "\n".join(ranges) + "\n" if ranges else "")
                  + "    return None\n")
        namespace = {"Tensor": torch.Tensor, "I64": (torch.int64,), "FLOATS": _TORCH_FLOATS, "SLOW": self,
                     "torch": torch}
        exec(compile(source, f"<batch check of {self.diagram.name}>", "exec"), namespace)  # noqa: S102 - ours
        fast = namespace["fast"]
        fast.source = source
        return fast

    def __call__(self, batch: Mapping[str, Any], values: bool = True) -> None:
        """Return if every column passes; otherwise raise ``check_batch``'s ``DiagramError``.

        ``values=False`` skips the index ranges (the source was checked row by
        row before). One flat loop, no helper calls: it runs for every batch
        ``fast`` hands over and in the interpreter. Rank-1 columns (labels)
        need no slice of the shape.
        """
        if _is_tracing():
            return self._traced(batch, values)
        sizes: dict[str, int] = {}
        for name, data_object, rank, per_example, integer in self.rules:
            col = batch.get(name)
            dtypes = _INT64 if integer else _FLOATS
            if not isinstance(col, (torch.Tensor, np.ndarray)) or col.dtype not in dtypes \
                    or getattr(col, "is_meta", False):  # a meta tensor has a shape but no values
                return self._report(batch)
            shape = col.shape
            if len(shape) != rank or not shape[0] or (rank > 1 and shape[1:] != per_example) \
                    or sizes.setdefault(data_object, shape[0]) != shape[0]:
                return self._report(batch)
        if not values or not self.ranges:
            return None
        pending: list[torch.Tensor] | None = None  # min/max of columns on another device, read back together
        for name, bound in self.ranges:
            col = batch[name]
            if isinstance(col, np.ndarray):
                if col.min() < 0 or col.max() >= bound:
                    return self._report(batch)
            elif col.is_cpu:  # int64, so never requires grad; one kernel for both ends
                low, high = torch.aminmax(col)
                if low.item() < 0 or high.item() >= bound:
                    return self._report(batch)
            else:
                if pending is None:
                    pending, bounds = [], []
                pending.extend(torch.aminmax(col))
                bounds.append(bound)
        if pending:
            ends = torch.stack(pending).tolist()  # one transfer for every column on the device
            if any(ends[2 * i] < 0 or ends[2 * i + 1] >= b for i, b in enumerate(bounds)):
                return self._report(batch)
        return None

    def _traced(self, batch: Mapping[str, Any], values: bool) -> None:
        """The same checks while ``torch.compile``/``export`` traces: metadata become guards, ranges an assert."""
        check_traced(batch, values, self.rules, self.ranges)

    def check_source(self, columns: Mapping[str, Any], source: str = "data") -> None:
        """Check every row of a data source (column → all its rows) once, ranges included.

        After this, batches cut from these columns need only ``values=False``. Errors name ``source#column``.
        """
        try:
            self(columns, values=True)
        except DiagramError:
            self._report(columns, source)
            raise

    def _report(self, batch: Mapping[str, Any], source: str = "batch") -> None:
        """Some column failed the fast checks: ``check_batch`` finds and reports every problem."""
        view = self._view(batch)
        check_batch(self.diagram, view, source)
        for name, (num, arrow) in self.embeddings.items():
            col = view.get(name)
            if col is None or not np.asarray(col).size:
                continue
            low, high = int(np.asarray(col).min()), int(np.asarray(col).max())
            if low < 0 or high >= num:
                raise DiagramError.one("batch-index-range", f"{source}#{name}",
                                       f"column {name!r}, read by model {arrow!r}: embedding indices must lie in "
                                       f"[0, {num}), got values from {low} to {high}")

    def _view(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The read columns as ``check_batch`` can take them: arrays, or CPU tensors without autograd."""
        view: dict[str, Any] = {}
        for c in self.columns:
            if c.name not in batch or c.name in view:
                continue
            col = batch[c.name]
            if isinstance(col, torch.Tensor):
                col = col.detach()
                if col.device.type not in ("cpu", "meta") and col.dtype == torch.int64:
                    col = col.cpu()  # check_batch reads index ranges through NumPy
            elif not hasattr(col, "dtype") or not hasattr(col, "shape"):  # an UnreadTensor (bf16) keeps its dtype
                col = as_arrays({c.name: col}, "batch", "batch")[c.name]  # a ragged list is batch-shape
            view[c.name] = col
        return view


# what ``check_traced`` calls, bound here: read through the ``torch`` module it would be a second way to reach that
# module besides the generated code's, and Dynamo guards such a pair with a Python-level identity test per call
_INT64_T, _FLOAT32_T, _FLOAT64_T, _TENSOR_T = torch.int64, torch.float32, torch.float64, torch.Tensor
_logical_and, _assert_async = torch.logical_and, torch._assert_async


def check_traced(batch: Mapping[str, Any], values: bool, rules: tuple[tuple[str, str, int, tuple[int, ...], bool], ...],
                 ranges: tuple[tuple[str, int], ...]) -> None:
    """``BatchChecker``'s checks while ``torch.compile``/``export`` traces: metadata decided at trace time (Dynamo
    guards every input tensor's dtype and shape, so another batch is traced and checked again), index ranges a
    device-side assert (``torch._assert_async``: no synchronisation, no graph break).

    ``rules`` (``BatchChecker.rules``) and ``ranges`` are plain literals: the code that ``lowering`` writes
    for tracers passes them as constants, on which Dynamo installs no guard (it guards what it reads from objects).
    """
    sizes: dict[str, int] = {}
    for name, data_object, rank, per_example, integer in rules:
        col = batch.get(name)
        if not isinstance(col, _TENSOR_T) or (col.dtype != _INT64_T if integer
                                              else col.dtype != _FLOAT32_T and col.dtype != _FLOAT64_T):
            raise DiagramError.one("batch-dtype", f"batch#{name}",
                                   f"column {name!r}: a compiled diagram takes tensors of the right dtype")
        shape = tuple(col.shape)
        if len(shape) != rank or tuple(shape[1:]) != per_example \
                or sizes.setdefault(data_object, shape[0]) != shape[0]:
            raise DiagramError.one("batch-shape", f"batch#{name}",
                                   f"column {name!r} has shape {list(shape)}, which does not fit the diagram "
                                   f"(per example {list(per_example)}, one batch size per data object)")
    if values and ranges:
        ok = None
        for name, bound in ranges:
            col = batch[name]
            inside = _logical_and(col >= 0, col < bound).all()
            ok = inside if ok is None else _logical_and(ok, inside)
        _assert_async(ok, "batch-index-range: an index column of the batch holds a value outside "
                          f"its range (columns {', '.join(n for n, _ in ranges)})")
