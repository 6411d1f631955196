"""The compiled schema pass (fast_schema) only ever says "valid" when the full pass finds nothing.

The codes and pointers of SPEC §10 come from the pure-Python pass; the compiled one decides only
whether that pass runs. So: it must never call a document valid that the full pass would fault
(checked on mutated documents), and it should call the valid files of the repository valid.
"""

from __future__ import annotations

import copy
import json
import runpy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagrammatic_learning import fast_schema
from diagrammatic_learning.validate import _bad_scalars, _schema_problems

ROOT = Path(__file__).resolve().parent.parent
BASE = runpy.run_path(str(ROOT / "conformance" / "make_invalid_diagrams.py"))["BASE"]

pytestmark = pytest.mark.skipif(not fast_schema.available(), reason="jsonschema-rs is not installed")


def full_pass(doc) -> list:
    return _schema_problems(doc) + _bad_scalars(doc)


def test_valid_files_take_the_fast_path():
    files = sorted((ROOT / "examples").rglob("*.json")) + sorted((ROOT / "conformance" / "cases").rglob("diagram.json"))
    docs = [json.loads(p.read_text()) for p in files]
    docs = [d for d in docs if isinstance(d, dict) and d.get("format") == "learning-diagram"]
    assert len(docs) >= 10
    for d in docs:
        assert full_pass(d) == []
        assert fast_schema.surely_valid(d)  # whole floats such as "temperature": 2.0 included


def test_whole_floats_where_integers_go_are_left_to_the_full_pass():
    d = copy.deepcopy(BASE)
    d["objects"][1]["shape"] = [4.0]
    assert not fast_schema.surely_valid(d)
    assert [p.code for p in full_pass(d)] == ["wrong-type"]
    d["objects"][1]["shape"] = [4]
    d["equations"]["explicit"][0]["weight"] = 3.0  # a number: fine either way (1.0 is an exclusive bound: full pass)
    assert fast_schema.surely_valid(d) and full_pass(d) == []


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


SCALARS = st.one_of(
    st.integers(-3, 70), st.sampled_from([0.0, -0.0, 1.0, 2.0, 0.5, 1e300, 2 ** 60, 10 ** 30, -1, 65]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4), st.sampled_from(["X\n", "x-y", "\ud800"]),
    st.booleans(), st.none())
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=3), SCALARS, max_size=2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_never_valid_when_the_full_pass_objects(data):
    d = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(list(paths(d))[1:]))
        parent = d
        for part in where[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "delete":
            del parent[where[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["x-note", "extra", "name", "weight", "p"]))] = data.draw(VALUES)
        else:
            parent[where[-1]] = data.draw(VALUES)
    if fast_schema.surely_valid(d):
        assert full_pass(d) == []
