"""The stop_gradient function op (format 1.1): the version rule, checking, terms, backends, composition, drawing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diagrammatic_learning import Diagram, layer, load
from diagrammatic_learning.compose import glue
from diagrammatic_learning.draw import arrow_label, arrow_style, to_graphviz, to_mermaid
from diagrammatic_learning.equations import equations, term_info
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.io import to_json
from diagrammatic_learning.reference import evaluate
from diagrammatic_learning.terms import parse_term
from diagrammatic_learning.torch_backend import compile
from diagrammatic_learning.versions import later, op_allowed, version_tuple


def lin(i, o):
    return layer("linear", in_features=i, out_features=o)


def mutual() -> Diagram:
    d = Diagram("mutual")
    d.data("D")
    d.tensor("X", [4])
    d.categorical("Y", 3)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("s1", "X", "Y", [lin(4, 3)])
    d.model("s2", "X", "Y", [lin(4, 3)])
    d.function("sg", "Y", "Y", "stop_gradient")
    return d


def codes(doc) -> list[tuple[str, str]]:
    with pytest.raises(DiagramError) as e:
        load(doc)
    return [(p.code, p.pointer) for p in e.value.problems]


# ----------------------------------------------------------------------------- versions


def test_the_builder_declares_the_version_stop_gradient_needs():
    d = Diagram()
    assert d.format_version == "1.0"
    assert mutual().format_version == "1.1"
    assert to_json(load(mutual()))["format_version"] == "1.1"


def test_a_1_0_document_may_not_use_stop_gradient():
    doc = to_json(load(mutual()))
    doc["format_version"] = "1.0"
    assert codes(doc) == [("bad-value", "/arrows/4/op")]
    for later_version in ("1.1", "1.2", "1.10", "1." + "9" * 30):
        doc["format_version"] = later_version
        load(doc)


def test_1_0_documents_read_unchanged():
    d = Diagram()
    d.data("D")
    d.tensor("X", [2])
    d.data_arrow("x", "D", "X", "x")
    d.function("i", "X", "X", "identity")
    assert d.format_version == "1.0" and load(to_json(d)).format_version == "1.0"


def test_version_helpers():
    assert version_tuple("1.10") == (1, 10) and version_tuple("x") == (0, 0) and version_tuple(None) == (0, 0)
    assert version_tuple("1." + "9" * 5000) == (1, 10 ** 18)   # no int() of 5000 digits
    assert later("1.0", "1.1") == "1.1" and later("1.10", "1.9") == "1.10" and later("1.1", "1.1") == "1.1"
    assert op_allowed("softmax", "1.0") and not op_allowed("stop_gradient", "1.0")
    assert op_allowed("stop_gradient", "1.1")


@given(st.from_regex(r"1\.[0-9]{1,25}", fullmatch=True))
@settings(max_examples=100, deadline=None)
def test_any_minor_version_either_reads_or_is_bad_value_at_the_op(version):
    doc = to_json(load(mutual()))
    doc["format_version"] = version
    if version_tuple(version) >= (1, 1):
        load(doc)
    else:
        assert codes(doc) == [("bad-value", "/arrows/4/op")]


# ----------------------------------------------------------------------------- checking


def test_source_and_target_must_agree_like_identity():
    d = mutual()
    d.tensor("Z", [3])
    d.function("bad", "Y", "Z", "stop_gradient")
    assert codes(to_json(d)) == [("shape-mismatch", "/arrows/5/target")]
    d = mutual()
    d.function("two", ["X", "X"], "X", "stop_gradient")
    assert codes(to_json(d)) == [("function-arity", "/arrows/5/source")]
    doc = to_json(load(mutual()))
    doc["arrows"][4]["factor"] = 2.0
    assert codes(doc) == [("unknown-key", "/arrows/4/factor")]


def test_int64_tensors_and_index_terms_pass_through():
    d = Diagram()
    d.data("D")
    d.tensor("T", [3], "int64")
    d.categorical("Y", 4)
    d.tensor("E", [3, 2])
    d.data_arrow("t", "D", "T", "t")
    d.data_arrow("y", "D", "Y", "y")
    d.function("sgt", "T", "T", "stop_gradient")
    d.function("sgy", "Y", "Y", "stop_gradient")
    d.model("emb", "T", "E", [layer("embedding", num_embeddings=5, embedding_dim=2)])
    d = load(d)
    assert term_info(d, parse_term("sgy(y)")).encoding == "index"
    assert term_info(d, parse_term("emb(sgt(t))")).trainable


# ----------------------------------------------------------------------------- terms and equations


def test_a_term_behind_stop_gradient_is_constant_and_one_above_it_is_not():
    d = load(mutual())
    assert term_info(d, parse_term("s1(x)")).trainable
    assert not term_info(d, parse_term("sg(s1(x))")).trainable
    assert term_info(d, parse_term("sg(s1(x))")).encoding == "logits"
    names = [e.name for e in equations(d)]
    # constants on the right, and no equation between two constants (y, sg(y), sg(s1(x)), sg(s2(x)))
    assert "s1(x) = sg(s2(x))" in names and "s2(x) = sg(s1(x))" in names
    assert not any(n.startswith("sg(") for n in names)


# ----------------------------------------------------------------------------- backends


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((5, 4)), "y": rng.integers(0, 3, size=5)}


def test_torch_passes_no_gradient_through_stop_gradient():
    d = Diagram()
    d.data("D")
    d.tensor("X", [4])
    d.tensor("Z", [3])
    d.data_arrow("x", "D", "X", "x")
    d.model("f", "X", "Z", [lin(4, 3)])
    d.model("g", "X", "Z", [lin(4, 3)])
    d.function("sg", "Z", "Z", "stop_gradient")
    d.automatic = False
    d.equation("f(x)", "sg(g(x))")
    m = compile(d, dtype=torch.float64)
    loss = m({"x": _data()["x"]})
    loss.backward()
    assert m["f"].layers[0].weight.grad.abs().sum() > 0
    assert m["g"].layers[0].weight.grad is None or not m["g"].layers[0].weight.grad.any()
    # the value is the source's: f(x) = sg(f(x)) has loss 0
    d.explicit.clear()
    d.equation("f(x)", "sg(f(x))")
    assert float(compile(d, dtype=torch.float64)({"x": _data()["x"]}).detach()) == 0.0


def test_reference_and_torch_agree_on_values():
    d = mutual()
    rng = np.random.default_rng(1)
    weights = {k: rng.standard_normal(v.shape) for k, v in compile(d, dtype=torch.float64).weights().items()}
    ref = evaluate(d, weights, _data())
    m = compile(d, weights=weights, dtype=torch.float64).eval()
    with torch.no_grad():
        ev = m.evaluate(_data())
    for name, value in ref.equations.items():
        assert float(ev.equations[name]) == pytest.approx(value, rel=1e-12)


# ----------------------------------------------------------------------------- composition and drawing


def test_gluing_keeps_the_later_version():
    plain = Diagram("plain")
    plain.data("D")
    plain.tensor("X", [4])
    plain.data_arrow("x", "D", "X", "x")
    plain.model("enc", "X", "X", [lin(4, 4)])
    assert plain.format_version == "1.0"
    glued = glue(plain, mutual(), ["D", "X", "x"])
    assert glued.format_version == "1.1" and "sg" in glued.arrows
    glued = glue(mutual(), plain, ["D", "X", "x"])
    assert glued.format_version == "1.1"


def test_drawing_marks_stop_gradient():
    d = load(mutual())
    sg = d.arrows["sg"]
    assert arrow_style(sg) == "stop_gradient" and "no gradient" in arrow_label(sg)
    assert "-.-x" in to_mermaid(d)
    dot = to_graphviz(d).source
    assert "dotted" in dot and "teetee" in dot


def test_a_copy_of_a_document_with_stop_gradient_round_trips():
    doc = to_json(load(mutual()))
    again = to_json(load(copy.deepcopy(doc)))
    assert again == doc
