"""Trained weights measured on a whole data set: each equation's mean, the total, and top-1 accuracy.

Used by ``dlearn eval`` (any backend) and by ``dlearn train`` for validation
data. A backend evaluates one batch at a time and reports its equations'
values (unweighted distances), its total and the values of the terms needed
for accuracy; ``Accumulator`` turns those into means over the examples.

Accuracy is reported for every equation whose right-hand side is a data
column read into a categorical object with the ``index`` encoding (labels):
the fraction of label entries where the left-hand side's largest logit is at
the label. Means weight each batch by its number of examples (rows of the
batch's largest table), so they are means over examples for distances that
average over the batch, whatever the batch size. NumPy only, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .diagram import CategoricalObject, DataArrow, Diagram
from .equations import Equation

Table = dict[str, np.ndarray]


def accuracy_terms(diagram: Diagram, eqs: Sequence[Equation]) -> dict[str, tuple[str, str]]:
    """Equation name → (lhs text, rhs text) for the equations whose rhs is an index-encoded label column."""
    out: dict[str, tuple[str, str]] = {}
    for eq in eqs:
        rhs, lhs = diagram.arrows[eq.rhs.arrow], diagram.arrows[eq.lhs.arrow]
        obj = diagram.objects[eq.object]
        if (isinstance(rhs, DataArrow) and not isinstance(lhs, DataArrow) and isinstance(obj, CategoricalObject)
                and (rhs.encoding or "index") == "index"):
            out[eq.name] = (str(eq.lhs), str(eq.rhs))
    return out


def top1_hits(logits: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """How many label entries the logits' argmax (last axis) gets right, and how many there are."""
    predicted = np.asarray(logits).argmax(axis=-1)
    labels = np.asarray(labels)
    return int((predicted == labels).sum()), int(labels.size)


@dataclass
class Accumulator:
    """Sums of per-batch results, weighted by the batch's examples; ``result()`` gives the means."""

    names: list[str]
    accuracy: dict[str, tuple[str, str]]
    examples: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    hits: dict[str, list[int]] = field(default_factory=dict)

    def add(self, rows: int, equations: Mapping[str, float], total: float,
            terms: Mapping[str, Any] | None = None) -> None:
        """One batch of ``rows`` examples: its equation values, its total, and the terms accuracy needs."""
        self.examples += rows
        for name in self.names:
            self.sums[name] = self.sums.get(name, 0.0) + rows * float(equations[name])
        self.total += rows * float(total)
        if terms is None:
            return
        self.add_hits({name: top1_hits(terms[lhs], terms[rhs]) for name, (lhs, rhs) in self.accuracy.items()})

    def add_hits(self, hits: Mapping[str, tuple[int, int]]) -> None:
        """Top-1 counts ``(right, count)`` per equation, from a backend that counts them itself."""
        for name, (right, count) in hits.items():
            seen = self.hits.setdefault(name, [0, 0])
            seen[0] += right
            seen[1] += count

    def result(self) -> dict[str, Any]:
        """``{"examples", "equations": {name: mean}, "total": mean, "accuracy": {name: fraction}}``."""
        n = max(self.examples, 1)
        return {"examples": self.examples,
                "equations": {name: self.sums.get(name, 0.0) / n for name in self.names},
                "total": self.total / n,
                "accuracy": {name: right / count for name, (right, count) in self.hits.items() if count}}


def batches(tables: Sequence[Table], batch_size: int) -> Iterator[tuple[int, Table]]:
    """The data in order, as (examples, batch): one pass over the largest table in batches of
    ``batch_size`` rows; each other table gives ``min(batch_size, rows)`` rows per batch, cycling."""
    sizes = [len(next(iter(t.values()))) for t in tables]
    lead = int(np.argmax(sizes))
    starts = [0] * len(tables)
    for start in range(0, sizes[lead], batch_size):
        batch: Table = {}
        rows = min(batch_size, sizes[lead] - start)
        for k, table in enumerate(tables):
            if k == lead:
                index = np.arange(start, start + rows)
            else:
                take = min(batch_size, sizes[k])
                index = (starts[k] + np.arange(take)) % sizes[k]
                starts[k] = (starts[k] + take) % sizes[k]
            batch.update({col: values[index] for col, values in table.items()})
        yield rows, batch


def format_result(result: Mapping[str, Any], names: Sequence[str]) -> str:
    """An evaluation as aligned text: one row per equation (mean, accuracy where there is one), then the total."""
    rows = [["equation", "mean", "accuracy"]]
    for i, name in enumerate(names):
        acc = result["accuracy"].get(name)
        rows.append([f"[{i}] {name}", f"{result['equations'][name]:.6g}", "" if acc is None else f"{acc:.4f}"])
    rows.append(["total", f"{result['total']:.6g}", ""])
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    return "\n".join(f"{r[0].ljust(widths[0])}  {r[1].rjust(widths[1])}  {r[2].rjust(widths[2])}".rstrip()
                     for r in rows)
