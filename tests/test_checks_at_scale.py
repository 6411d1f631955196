"""Shortcuts that let large files be checked fast (issue 9) never change an answer: a model whose
architecture and value types were already checked without a problem is not checked again, but a model
that differs in any of them, or whose twin had a problem, is; ``x-`` keys are left out of layers."""

from __future__ import annotations

import pytest

from diagrammatic_learning import DiagramError, load


def doc(arrows, objects=None):
    objects = objects or [{"name": "D", "kind": "data"},
                          {"name": "X", "kind": "tensor", "shape": [4], "dtype": "float32"},
                          {"name": "Y", "kind": "tensor", "shape": [4], "dtype": "float32"},
                          {"name": "Z", "kind": "tensor", "shape": [3], "dtype": "float32"}]
    return {"format": "learning-diagram", "format_version": "1.0", "objects": objects,
            "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"}] + arrows}


def model(name, target, *layers):
    return {"name": name, "kind": "model", "source": "X", "target": target, "trainable": True,
            "architecture": {"layers": list(layers)}}


def linear(i, o, **more):
    return {"type": "linear", "in_features": i, "out_features": o, **more}


def problems(document):
    with pytest.raises(DiagramError) as e:
        load(document)
    return [(p.code, p.pointer) for p in e.value.problems]


def test_a_model_like_a_checked_one_but_for_its_target_is_checked():
    assert problems(doc([model("f", "Y", linear(4, 4)), model("g", "Z", linear(4, 4))])) == [
        ("shape-mismatch", "/arrows/2/architecture/layers")]


def test_a_model_like_a_checked_one_but_for_a_layer_value_or_its_type_is_checked():
    assert problems(doc([model("f", "Y", linear(4, 4)), model("g", "Y", linear(4, 3))])) == [
        ("shape-mismatch", "/arrows/2/architecture/layers")]
    assert problems(doc([model("f", "Y", linear(4, 4, bias=True)), model("g", "Y", linear(4, 4, bias=1))])) == [
        ("wrong-type", "/arrows/2/architecture/layers/0/bias")]


def test_every_twin_of_a_model_with_a_problem_is_reported():
    twins = [model(f"f{k}", "Z", linear(4, 4)) for k in range(3)]
    assert problems(doc(twins)) == [("shape-mismatch", f"/arrows/{k}/architecture/layers") for k in (1, 2, 3)]


def test_layers_with_lists_and_x_keys_are_checked_as_before():
    conv = {"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": [3, 3], "x-note": "a"}
    objects = [{"name": "D", "kind": "data"}, {"name": "X", "kind": "tensor", "shape": [1, 8, 8], "dtype": "float32"},
               {"name": "Y", "kind": "tensor", "shape": [2, 6, 6], "dtype": "float32"},
               {"name": "Z", "kind": "tensor", "shape": [2, 5, 5], "dtype": "float32"}]
    good = [{"name": f"c{k}", "kind": "model", "source": "X", "target": "Y", "trainable": True,
             "architecture": {"layers": [conv]}} for k in range(2)]
    d = load(doc(good, objects))
    assert d.arrows["c0"].architecture.layers[0].params == {"in_channels": 1, "out_channels": 2,
                                                             "kernel_size": [3, 3]}
    bad = good + [{**good[0], "name": "c2", "target": "Z"}]
    assert problems(doc(bad, objects)) == [("shape-mismatch", "/arrows/3/architecture/layers")]
