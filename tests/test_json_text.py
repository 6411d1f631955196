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


def strict_answer(text: str):
    """What the strict parser (hooks on every object and integer) answers: the document or the message."""
    from diagrammatic_learning.io import MAX_NESTING, nesting_depth
    from diagrammatic_learning.json_text import NotJSON, strict_loads
    try:
        doc = strict_loads(text)
    except json.JSONDecodeError as e:
        return ("malformed", f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}")
    except NotJSON as e:
        return ("malformed", str(e))
    except RecursionError:
        return ("malformed", "deep")
    return ("malformed", "deep") if nesting_depth(doc, MAX_NESTING) > MAX_NESTING else ("doc", doc)


def answer(text: str):
    from diagrammatic_learning.io import parse_document
    try:
        return ("doc", parse_document(text, "the document"))
    except DiagramError as e:
        message = e.problems[0].message.removeprefix("the document: ")
        return ("malformed", "deep" if "nest more than" in message else message)


PIECES = ['{', '}', '[', ']', '"k"', '"k":', '"j" :', '"k"\n:', ',', ':', '1', '-2', '1.5', '"\\":"', '"a\\" :b"',
          '"NaN"', 'NaN', '"Infinity"', 'true', 'null', ' ', '"\\u00e9"', '{"a": 1, "a": 2}', '{"a": {"a": 1}}',
          '1' * 4100]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_the_fast_parse_answers_as_the_strict_one(pieces):
    # keys followed by spaces, escaped quotes before colons inside strings, "NaN" as text, integers past
    # 4000 digits: the fast path either proves the strict parser would agree or leaves the text to it
    text = "".join(pieces)
    got, want = answer(text), strict_answer(text)
    assert got[0] == want[0] and (got[1] == want[1] if got[0] == "malformed" else repr(got[1]) == repr(want[1]))


@pytest.mark.parametrize("text", ['{"a": [{"k": 1, "k": 2}]}', '{"a": {"b": 1, "b" : 2}}', '{"k"\t:1, "k":2}'])
def test_a_repeated_key_is_found_however_it_is_spaced(text):
    key = "b" if '"b"' in text else "k"
    assert answer(text) == ("malformed", f"the key {key!r} appears twice in one object (SPEC §1)")


def test_valid_diagrams_never_count_their_nesting_twice():
    # the schema step counts nesting only when the compiled validator does not vouch for the document:
    # vouching needs nesting within its own limit, far below SPEC §1's
    from importlib import import_module
    fast_schema, validate = (import_module(f"diagrammatic_learning.{m}") for m in ("fast_schema", "validate"))
    assert fast_schema.MAX_NESTING < validate.MAX_NESTING
    deep = {"format": "learning-diagram", "format_version": "1.0", "objects": [], "arrows": [],
            "x-deep": [[[]]] * 2}
    node = deep["x-deep"]
    for _ in range(fast_schema.MAX_NESTING + 40):
        node.append([])
        node = node[-1]
    assert not fast_schema.surely_valid(deep)
    validate.check_document(deep)  # deeper than the compiled check goes, within SPEC §1's 512: valid
    for _ in range(validate.MAX_NESTING):
        node.append([])
        node = node[-1]
    with pytest.raises(DiagramError) as e:
        validate.check_document(deep)
    assert (e.value.code, e.value.pointer) == ("malformed-json", "")
