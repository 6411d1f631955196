"""The batch checks of SPEC §8, precompiled for one diagram so that a training step pays a few microseconds.

``BatchChecker(diagram)(batch)`` makes exactly the checks of
``tensorfiles.check_batch`` (same columns, same order, same rules). When any
fails it hands the batch to ``check_batch`` itself, which reports every problem
with the shared codes and messages; the fast path only decides "all good".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ..diagram import CategoricalObject, DataArrow, Diagram, TensorObject
from ..tensorfiles import as_arrays, check_batch

_FLOATS = (torch.float32, torch.float64, np.dtype("float32"), np.dtype("float64"))
_INT64 = (torch.int64, np.dtype("int64"))


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


class BatchChecker:
    """Checks batches against one diagram's data arrows; raises ``DiagramError`` as ``check_batch`` does."""

    def __init__(self, diagram: Diagram):
        self.diagram = diagram
        self.columns = _columns(diagram)
        # the hot loop reads plain tuples: (column, data object, rank, per-example shape, allowed dtypes, classes);
        # classes is None where there is no range to check, also when every example is empty (a 0 in the shape)
        self._rules = tuple((c.name, c.data_object, 1 + len(c.per_example), c.per_example,
                             _INT64 if c.integer else _FLOATS,
                             None if c.classes is None or 0 in c.per_example else c.classes)
                            for c in self.columns)

    def __call__(self, batch: Mapping[str, Any]) -> None:
        """Return if every column passes; otherwise raise ``check_batch``'s ``DiagramError``.

        One flat loop, no helper calls: it runs before every forward pass. Rank-1
        columns (labels) need no slice of the shape, which costs as much as the rest.
        """
        sizes: dict[str, int] = {}
        for name, data_object, rank, per_example, dtypes, classes in self._rules:
            col = batch.get(name)
            if not isinstance(col, (torch.Tensor, np.ndarray)) or col.dtype not in dtypes \
                    or getattr(col, "is_meta", False):  # a meta tensor has a shape but no values
                return self._report(batch)
            shape = col.shape
            if len(shape) != rank or not shape[0] or (rank > 1 and shape[1:] != per_example) \
                    or sizes.setdefault(data_object, shape[0]) != shape[0]:
                return self._report(batch)
            if classes is None:
                continue
            if isinstance(col, torch.Tensor):  # int64, so never requires grad; one kernel for both bounds
                low, high = torch.aminmax(col)
                if low.item() < 0 or high.item() >= classes:
                    return self._report(batch)
            elif col.min() < 0 or col.max() >= classes:
                return self._report(batch)

    def _report(self, batch: Mapping[str, Any]) -> None:
        """Some column failed the fast checks: ``check_batch`` finds and reports every problem."""
        check_batch(self.diagram, self._view(batch))

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
