"""Fuzzing the workflow helpers: renaming and merging weights, ``--init`` parsing, evaluation batches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagrammatic_learning.errors import DiagramError, UsageError
from diagrammatic_learning.evaluation import Accumulator, batches
from diagrammatic_learning.weight_files import merge_weights, parse_renames, rename_arrows

arrow_names = st.sampled_from(["a", "b", "teacher", "student", "_x1"])
keys = st.builds(lambda arrow, i, p: f"{arrow}.layers.{i}.{p}", arrow_names, st.integers(0, 3),
                 st.sampled_from(["weight", "bias"]))
weights = st.dictionaries(keys, st.integers(1, 4).map(lambda n: np.arange(n, dtype=np.float32)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(weights, st.permutations(["a", "b", "teacher", "student", "_x1"]))
def test_renaming_by_a_permutation_and_back_is_the_identity(tensors, order):
    present = sorted({k.partition(".")[0] for k in tensors})
    forward = {old: order[["a", "b", "teacher", "student", "_x1"].index(old)] for old in present}
    renamed = rename_arrows(tensors, forward, "w")
    assert len(renamed) == len(tensors)
    back = rename_arrows(renamed, {new: old for old, new in forward.items()}, "w")
    assert back.keys() == tensors.keys() and all(back[k] is tensors[k] for k in tensors)


@settings(max_examples=200, deadline=None)
@given(weights, weights)
def test_merge_is_the_union_or_names_every_shared_key(first, second):
    shared = sorted(set(first) & set(second))
    if not shared:
        assert merge_weights([("1", first), ("2", second)]) == {**first, **second}
        return
    with pytest.raises(DiagramError) as e:
        merge_weights([("1", first), ("2", second)])
    assert [p.pointer for p in e.value.problems] == [f"2#{k}" for k in shared]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=4))
def test_rename_arguments_parse_or_are_usage_errors(pairs):
    try:
        renames = parse_renames(pairs)
    except UsageError:
        return
    assert len(renames) == len(pairs) and all(f"{k}={v}" in pairs for k, v in renames.items())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_init_values_parse_or_are_usage_errors(text):
    from diagrammatic_learning.torch_backend.init_option import parse_init

    try:
        init = parse_init(text)
    except UsageError:
        return
    assert init.file and (init.arrow is None or text.startswith(init.arrow + "="))
    assert init.file in text and (init.source is None or text.endswith(":" + init.source))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=3), st.integers(1, 50))
def test_evaluation_batches_cover_the_largest_table_once(sizes, batch_size):
    tables = [{f"c{k}": np.arange(n) + 1000 * k} for k, n in enumerate(sizes)]
    lead = int(np.argmax(sizes))
    seen, rows = [], 0
    for n, batch in batches(tables, batch_size):
        assert n == len(batch[f"c{lead}"]) and n <= batch_size
        for k, size in enumerate(sizes):
            if k != lead:
                assert len(batch[f"c{k}"]) == min(batch_size, size)
        seen.extend(batch[f"c{lead}"].tolist())
        rows += n
    assert seen == list(range(1000 * lead, 1000 * lead + sizes[lead])) and rows == sizes[lead]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.floats(0, 10)), min_size=1, max_size=6))
def test_accumulated_means_weight_batches_by_their_examples(parts):
    acc = Accumulator(["e"], {})
    for n, value in parts:
        acc.add(n, {"e": value}, 2 * value)
    values = np.concatenate([np.full(n, v) for n, v in parts])
    result = acc.result()
    assert result["examples"] == len(values)
    assert result["equations"]["e"] == pytest.approx(values.mean(), rel=1e-12, abs=1e-12)
    assert result["total"] == pytest.approx(2 * values.mean(), rel=1e-12, abs=1e-12)
