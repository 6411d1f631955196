"""A compiled diagram measured on whole tables in evaluation mode: equation means, total, accuracy."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..evaluation import Accumulator, Table, accuracy_terms, batches
from .compiler import CompiledDiagram


def measure(model: CompiledDiagram, tables: Sequence[Table], batch_size: int = 1024) -> dict[str, Any]:
    """Each equation's mean, the mean total and top-1 accuracies over ``tables`` (see ``evaluation``),
    computed in evaluation mode without gradients; the model's mode is restored after."""
    eqs = model.equations
    acc = Accumulator([e.name for e in eqs], accuracy_terms(model.diagram, eqs))
    needed = {t for pair in acc.accuracy.values() for t in pair}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for rows, batch in batches(tables, batch_size):
                ev = model.evaluate(batch)
                terms = {t: ev.terms[t].cpu().numpy() for t in needed}
                values = torch.stack([ev.total, *ev.equations.values()]).tolist() if eqs else [ev.total.item()]
                acc.add(rows, dict(zip(ev.equations, values[1:])), values[0], terms)
    finally:
        model.train(was_training)
    return acc.result()
