"""SPEC §1's rules for the JSON text of a diagram, beyond RFC 8259 parsing, as the Python reader
applies them (the Julia reader is held to the same answers by the conformance cases
invalid/nan-literal, infinity-literal, duplicate-key, nesting-too-deep, number-overflows-to-infinity
and number-underflows-to-zero)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagrammatic_learning import DiagramError
from diagrammatic_learning.io import MAX_JSON_DEPTH, read_document

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "supervised.json"


def read_text(tmp_path: Path, text: str):
    path = tmp_path / "d.json"
    path.write_text(text, encoding="utf-8")
    return read_document(path)


def malformed(tmp_path: Path, text: str) -> str:
    with pytest.raises(DiagramError) as e:
        read_text(tmp_path, text)
    assert (e.value.code, e.value.pointer) == ("malformed-json", "")
    return e.value.problems[0].message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_json_literals_are_malformed(tmp_path, literal):
    assert "is not a JSON value" in malformed(tmp_path, f'{{"a": [1, {literal}]}}')


def test_a_key_twice_in_one_object_is_malformed_even_deep_down(tmp_path):
    assert "'k' appears twice" in malformed(tmp_path, '{"x-a": [{"k": 1, "j": 2, "k": 1}]}')
    assert read_text(tmp_path, '{"k": {"k": 1}}') == {"k": {"k": 1}}  # the same key in two objects is fine


def test_nesting_up_to_the_limit_is_read_and_beyond_it_is_malformed(tmp_path):
    assert MAX_JSON_DEPTH == 512
    deepest = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    assert read_text(tmp_path, '{"x-deep": ' + deepest + "}")["x-deep"] is not None
    assert "nest more than 512" in malformed(tmp_path, '{"x-deep": [' + deepest + "]}")


def test_numbers_out_of_float64_range_are_read_as_python_does(tmp_path):
    doc = read_text(tmp_path, '{"a": 1e400, "b": -1e400, "c": 1e-400, "d": 123456789012345678901234567890}')
    assert doc == {"a": float("inf"), "b": float("-inf"), "c": 0.0, "d": 123456789012345678901234567890}


def test_a_byte_order_mark_is_malformed(tmp_path):
    malformed(tmp_path, "\ufeff" + EXAMPLE.read_text())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(['{', '}', '[', ']', '"k"', '"k":', ',', ':', '1', '1e400', '-0', 'NaN', 'true',
                                 'null', ' ', '"\\u00e9"', '1.5e-400', '{"a": 1, "a": 2}']), max_size=40))
def test_any_text_is_read_or_is_malformed_json(tmp_path_factory, pieces):
    path = tmp_path_factory.mktemp("fuzz") / "d.json"
    text = "".join(pieces)
    path.write_text(text, encoding="utf-8")
    try:
        doc = read_document(path)
    except DiagramError as e:
        assert e.code == "malformed-json"
    else:
        assert json.loads(text) == doc  # what it reads, it reads as json does (no NaN literal got through)
