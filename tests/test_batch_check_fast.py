"""The written-out batch check (``BatchChecker.fast``) decides exactly as the general one, on any batch.

``fast`` returns None only on its own path (plain CPU tensors, every check
passed); everything else goes to ``BatchChecker.__call__``. So the property to
hold is: whenever the general check raises, ``fast`` raises the same error, and
whenever it passes, ``fast`` passes. Hypothesis spoils the columns of valid
batches one way or several at a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagrammatic_learning import Diagram, load
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.torch_backend import compile
from diagrammatic_learning.torch_backend.batch_check import BatchChecker

ROOT = Path(__file__).resolve().parent.parent


def shapes_and_encodings() -> Diagram:
    """Columns of every kind a data arrow reads: 2-D index, probabilities, int tensor, a column read twice."""
    d = Diagram("columns")
    d.data("D")
    d.data("E")
    d.tensor("X", [2, 3])
    d.categorical("Seq", 5, [4])
    d.categorical("Hot", 3)
    d.tensor("Count", [2], "int64")
    d.categorical("Small", 2)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("seq", "D", "Seq", "seq")
    d.data_arrow("hot", "D", "Hot", "hot", encoding="probabilities")
    d.data_arrow("count", "D", "Count", "count")
    d.data_arrow("small", "E", "Small", "small")
    d.data_arrow("small_again", "D", "Small", "small")  # one column for two data objects
    return d


DIAGRAMS = {
    **{name: load(ROOT / "examples" / f"{name}.json") for name in ("supervised", "multitask", "captioning")},
    "columns": load(shapes_and_encodings()),
}


def checker(name: str) -> BatchChecker:
    if name == "captioning":  # its embedding bounds come from the compiled plan
        return compile(DIAGRAMS[name])._check_batch
    return BatchChecker(DIAGRAMS[name])


CHECKERS = {name: checker(name) for name in DIAGRAMS}


def valid_batch(c: BatchChecker, rows: int) -> dict[str, torch.Tensor]:
    bounds = dict(c.ranges)
    out = {}
    for col in c.columns:
        shape = (rows, *col.per_example)
        if col.integer:
            out[col.name] = torch.randint(0, bounds.get(col.name, 3), shape)
        else:
            out[col.name] = torch.rand(shape, dtype=torch.float32)
    return out


SPOILS = ["missing", "numpy", "float16", "int32", "float64", "bool", "extra rank", "short rank", "wide",
          "rows", "empty", "meta", "parameter", "transposed", "low", "high", "list"]


def spoil(t: torch.Tensor, how: str, bound: int | None):
    if how == "missing":
        return None
    if how == "numpy":
        return t.numpy()
    if how in ("float16", "int32", "float64", "bool"):
        return t.to(getattr(torch, how))
    if how == "extra rank":
        return t.unsqueeze(-1)
    if how == "short rank":
        return t.reshape(-1) if t.ndim > 1 else t.sum()
    if how == "wide":
        return torch.cat((t, t), dim=-1) if t.ndim > 1 else t
    if t.ndim == 0:
        return t
    if how == "rows":
        return t[:-1]
    if how == "empty":
        return t[:0]
    if how == "meta":
        return t.to("meta")
    if how == "parameter":
        return torch.nn.Parameter(t, requires_grad=False)
    if how == "transposed":
        return t.t().contiguous().t() if t.ndim == 2 else t
    if how == "low" and not t.is_floating_point() and t.numel():
        return torch.where(t == t.flatten()[0], -1, t)
    if how == "high" and not t.is_floating_point():
        return t + (bound if bound is not None else 1 << 40)
    if how == "list":
        return t.tolist()
    return t


def outcome(check, batch, values):
    try:
        check(batch, values)
    except DiagramError as e:
        return sorted((p.code, p.pointer) for p in e.problems)
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(DIAGRAMS)), rows=st.integers(1, 5), values=st.booleans(),
       spoils=st.lists(st.tuples(st.integers(0, 20), st.sampled_from(SPOILS)), max_size=3))
def test_the_written_out_check_decides_as_the_general_one(name, rows, values, spoils):
    c = CHECKERS[name]
    assert c.fast is not c  # these diagrams get a written-out check
    batch = valid_batch(c, rows)
    bounds = dict(c.ranges)
    names = list(batch)
    for k, how in spoils:
        column = names[k % len(names)]
        if not isinstance(batch.get(column), torch.Tensor) or batch[column].is_meta:
            continue  # spoilt already
        new = spoil(batch[column], how, bounds.get(column))
        if new is None:
            batch.pop(column, None)
        else:
            batch[column] = new
    assert outcome(c.fast, batch, values) == outcome(c, batch, values)


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_a_valid_batch_passes_the_written_out_check_without_the_general_one(name, monkeypatch):
    c = CHECKERS[name]
    batch = valid_batch(c, 4)
    calls = []
    monkeypatch.setitem(c.fast.__globals__, "SLOW", lambda *a: calls.append(a))
    c.fast(batch)
    c.fast(batch, False)
    assert calls == []


def test_very_wide_batches_take_the_general_check(monkeypatch):
    from diagrammatic_learning.torch_backend import batch_check
    monkeypatch.setattr(batch_check, "FAST_MAX_COLUMNS", 3)
    c = BatchChecker(DIAGRAMS["columns"])
    assert c.fast == c.__call__ or c.fast is c
