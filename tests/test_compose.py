"""Composing diagrams: gluing (pushouts), disjoint union, renaming, restriction, model swaps, weights, `dlearn glue`.

The expected diagrams and equation lists are written by hand from the rules in
compose.py's docstring and SPEC §5–6, not produced by the code under test.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from diagrammatic_learning import Diagram, DiagramError, Distance, dumps, equations, load, mlp
from diagrammatic_learning.compose import (disjoint_union, glue, gluing, namespace, rename, rename_weights,
                                           replace_model, restrict)
from diagrammatic_learning.reference import evaluate
from diagrammatic_learning.tensorfiles import parameter_shapes, read_safetensors, write_safetensors


# ----------------------------------------------------------------------------- diagrams written by hand


def single_task(k: int) -> Diagram:
    """Images → backbone → head k → labels k."""
    d = Diagram(f"task{k}")
    d.data("D")
    d.tensor("X", [6])
    d.tensor("H", [5])
    d.categorical(f"Y{k}", 3)
    d.data_arrow("x", "D", "X", "image")
    d.data_arrow(f"y{k}", "D", f"Y{k}", f"label{k}")
    d.model("backbone", "X", "H", mlp(6, 5))
    d.model(f"head{k}", "H", f"Y{k}", mlp(5, 4, 3))
    return d


def multitask_by_hand() -> Diagram:
    """The two tasks sharing D, X, H, x and backbone: task 1's parts in order, then task 2's new ones."""
    d = Diagram("task1 + task2")
    d.data("D")
    d.tensor("X", [6])
    d.tensor("H", [5])
    d.categorical("Y1", 3)
    d.categorical("Y2", 3)
    d.data_arrow("x", "D", "X", "image")
    d.data_arrow("y1", "D", "Y1", "label1")
    d.model("backbone", "X", "H", mlp(6, 5))
    d.model("head1", "H", "Y1", mlp(5, 4, 3))
    d.data_arrow("y2", "D", "Y2", "label2")
    d.model("head2", "H", "Y2", mlp(5, 4, 3))
    return d


ALONG = {"objects": {"D": "D", "X": "X", "H": "H"}, "arrows": {"x": "x", "backbone": "backbone"}}


def random_weights(d: Diagram, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s) for k, s in parameter_shapes(d).items()}


def batch(seed: int = 0, n: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(n, 6)), "label1": rng.integers(0, 3, n), "label2": rng.integers(0, 3, n)}


def eq_texts(d: Diagram) -> list[str]:
    return [f"{e.lhs} = {e.rhs}" for e in equations(d)]


# ----------------------------------------------------------------------------- the standard example


def test_two_single_tasks_glue_into_the_multitask_diagram():
    glued = glue(single_task(1), single_task(2), ALONG)
    hand = multitask_by_hand()
    assert dumps(glued) == dumps(load(hand))
    assert [(e.name, e.object, e.data_object, e.distance, e.weight) for e in equations(glued)] == \
           [(e.name, e.object, e.data_object, e.distance, e.weight) for e in equations(hand)]
    assert eq_texts(glued) == ["head1(backbone(x)) = y1", "head2(backbone(x)) = y2"]


def test_glued_loss_is_the_hand_written_loss_and_the_sum_of_the_parts():
    g = gluing(single_task(1), single_task(2), ALONG)
    hand = multitask_by_hand()
    weights = random_weights(hand, 1)
    b = batch()
    whole = evaluate(g.diagram, weights, b).total
    assert whole == pytest.approx(evaluate(hand, weights, b).total, rel=1e-12)
    # Each part's weights are the whole's under the part's names (inverse of the gluing's maps).
    parts = []
    for part, names in ((single_task(1), g.left), (single_task(2), g.right)):
        back = {new: old for old, new in names.items()}
        part_weights = rename_weights({k: v for k, v in weights.items() if k.split(".")[0] in back}, back)
        parts.append(evaluate(part, part_weights, b).total)
    assert whole == pytest.approx(sum(parts), rel=1e-12)


def test_part_weights_load_into_the_glued_whole():
    t1, t2 = single_task(1), single_task(2)
    w1, w2 = random_weights(t1, 2), random_weights(t2, 3)
    g = gluing(t1, t2, ALONG, prefix="two")
    merged = g.weights(w1, w2)
    assert set(merged) == set(parameter_shapes(g.diagram))
    # The shared backbone takes the first side's weights; head2 keeps the second side's.
    np.testing.assert_array_equal(merged["backbone.layers.0.weight"], w1["backbone.layers.0.weight"])
    np.testing.assert_array_equal(merged["head2.layers.2.weight"], w2["head2.layers.2.weight"])
    b = batch(1)
    # Task 1's equation in the whole sees exactly task 1's weights.
    whole = evaluate(g.diagram, merged, b)
    alone = evaluate(t1, w1, b)
    assert whole.equations["head1(backbone(x)) = y1"] == pytest.approx(alone.total, rel=1e-12)


def test_shared_parts_create_new_equations():
    def one(model: str, trainable: bool = True) -> Diagram:
        d = Diagram()
        d.data("D"); d.tensor("X", [4]); d.categorical("Y", 3)
        d.data_arrow("x", "D", "X", "image")
        d.data_arrow("y", "D", "Y", "label")
        d.model(model, "X", "Y", mlp(4, 3), trainable=trainable)
        return d
    glued = glue(one("a"), one("b"), ["D", "X", "Y", "x", "y"])
    # Y's terms in canonical order: y [1], a(x) [2, 0], b(x) [3, 0]; pairs (0,1), (0,2), (1,2).
    assert eq_texts(glued) == ["a(x) = y", "b(x) = y", "a(x) = b(x)"]
    # With b frozen, b(x) and y are both constant: no equation between them.
    assert eq_texts(glue(one("a"), one("b", trainable=False), ["D", "X", "Y", "x", "y"])) == \
           ["a(x) = y", "a(x) = b(x)"]


def test_along_forms_agree():
    t1, t2 = single_task(1), single_task(2)
    listed = {"objects": ["D", "X", "H"], "arrows": ["x", "backbone"]}
    assert dumps(glue(t1, t2, listed)) == dumps(glue(t1, t2, ALONG)) == \
           dumps(glue(t1, t2, ["D", "X", "H", "x", "backbone"]))


def test_identifying_differently_named_parts_keeps_the_first_names():
    t2 = rename(single_task(2), {"X": "Pixels", "backbone": "trunk"})
    g = gluing(single_task(1), t2, {"objects": {"D": "D", "X": "Pixels", "H": "H"},
                                    "arrows": {"x": "x", "backbone": "trunk"}})
    assert dumps(g.diagram) == dumps(load(multitask_by_hand()))
    assert g.right["trunk"] == "backbone" and g.right["Pixels"] == "X"
    t2.equation("head2( trunk(x) )", "y2", weight=2.0)
    glued = glue(single_task(1), t2, {"objects": {"D": "D", "X": "Pixels", "H": "H"},
                                      "arrows": {"x": "x", "backbone": "trunk"}})
    assert [(e.lhs, e.rhs, e.weight) for e in glued.explicit] == [("head2(backbone(x))", "y2", 2.0)]


# ----------------------------------------------------------------------------- keeping the rest apart


def test_clashing_names_get_the_prefix_and_equations_follow():
    t1, t2 = single_task(1), single_task(2)
    t2.equation("head2(backbone(x))", "y2", Distance("cross_entropy", {"label_smoothing": 0.1}), name="smooth")
    t1.equation("head1(backbone(x))", "y1", weight=2.0, name="smooth")
    g = gluing(t1, t2, {"objects": {"D": "D"}}, prefix="b")
    d = g.diagram
    assert list(d.objects) == ["D", "X", "H", "Y1", "b_X", "b_H", "Y2"]
    assert list(d.arrows) == ["x", "y1", "backbone", "head1", "b_x", "y2", "b_backbone", "head2"]
    assert d.arrows["b_backbone"].sources == ("b_X",) and d.arrows["b_backbone"].target == "b_H"
    assert [(e.name, e.lhs, e.rhs) for e in d.explicit] == [
        ("smooth", "head1(backbone(x))", "y1"), ("b_smooth", "head2(b_backbone(b_x))", "y2")]
    assert eq_texts(d) == ["head1(backbone(x)) = y1", "head2(b_backbone(b_x)) = y2"]
    assert [e.name for e in equations(d)] == ["smooth", "b_smooth"]
    assert g.right == {"D": "D", "X": "b_X", "H": "b_H", "Y2": "Y2", "x": "b_x", "y2": "y2",
                       "backbone": "b_backbone", "head2": "head2"}


def test_default_prefix_comes_from_the_second_name():
    d = disjoint_union(single_task(1), single_task(2))
    assert "task2_D" in d.objects and "task2_backbone" in d.arrows
    unnamed = single_task(2)
    unnamed.name = None
    assert "right_D" in disjoint_union(single_task(1), unnamed).objects


def test_disjoint_union_keeps_two_data_objects_and_both_losses():
    d = disjoint_union(single_task(1), single_task(1), prefix="copy")
    assert d.data_objects() == ["D", "copy_D"]
    assert eq_texts(d) == ["head1(backbone(x)) = y1", "copy_head1(copy_backbone(copy_x)) = copy_y1"]


def test_shared_explicit_equation_is_kept_once_and_conflicting_one_is_an_error():
    t1, t2 = single_task(1), single_task(1)
    t2.name = "again"
    for t in (t1, t2):
        t.equation("head1(backbone(x))", "y1", weight=0.5)
    all_shared = ["D", "X", "H", "Y1", "x", "y1", "backbone", "head1"]
    d = glue(t1, t2, all_shared)
    assert len(d.explicit) == 1 and dumps(d) == dumps(load(t1)).replace('"task1"', '"task1 + again"')
    t2.explicit[0] = t2.explicit[0].__class__("head1(backbone(x))", "y1", weight=0.25)
    with pytest.raises(DiagramError) as e:
        glue(t1, t2, all_shared)
    assert e.value.code == "duplicate-equation"


def test_inputs_are_not_changed():
    t1, t2 = single_task(1), single_task(2)
    before = dumps(t1), dumps(t2)
    glue(t1, t2, ALONG)
    namespace(t1, "n")
    restrict(t1, ["Y1"])
    assert (dumps(t1), dumps(t2)) == before


def test_glued_diagram_saves_and_loads_in_the_ordinary_format(tmp_path):
    from diagrammatic_learning import save
    d = glue(single_task(1), single_task(2), ALONG)
    save(d, tmp_path / "whole.json")
    assert dumps(load(tmp_path / "whole.json")) == dumps(d)


# ----------------------------------------------------------------------------- mismatches


def mismatch(t2: Diagram, along=ALONG):
    with pytest.raises(DiagramError) as e:
        glue(single_task(1), t2, along)
    return [(p.code, p.pointer) for p in e.value.problems], str(e.value)


def test_shape_mismatch_names_the_object():
    t2 = Diagram("task2")
    t2.data("D"); t2.tensor("X", [7]); t2.tensor("H", [5]); t2.categorical("Y2", 3)
    t2.data_arrow("x", "D", "X", "image"); t2.data_arrow("y2", "D", "Y2", "label2")
    t2.model("backbone", "X", "H", mlp(7, 5)); t2.model("head2", "H", "Y2", mlp(5, 3))
    problems, text = mismatch(t2)
    assert ("shape-mismatch", "along#/objects/X") in problems
    assert ("bad-value", "along#/arrows/backbone") in problems  # the architectures differ too
    assert "[6] vs [7]" in text and "in_features=6" in text and "in_features=7" in text


def test_kind_and_dtype_and_distance_mismatches():
    from diagrammatic_learning.compose import _object_mismatch
    from diagrammatic_learning.diagram import CategoricalObject, TensorObject
    t2 = single_task(2)
    t2.objects["H"] = TensorObject("H", (5,), "float64")  # float64 is the same dtype class as float32
    assert glue(single_task(1), t2, ALONG).objects["H"].dtype == "float32"
    assert _object_mismatch(TensorObject("X", (6,)), TensorObject("X", (6,), "int64"))[0] == "dtype-mismatch"
    assert _object_mismatch(TensorObject("X", (3,)), CategoricalObject("X", 3))[0] == "kind-mismatch"
    assert _object_mismatch(CategoricalObject("X", 3), CategoricalObject("X", 4))[0] == "shape-mismatch"
    assert _object_mismatch(TensorObject("X", (3,), distance=Distance("l1")), TensorObject("X", (3,)))[0] == \
        "bad-value"
    # An explicit default distance is the same distance as none.
    assert _object_mismatch(TensorObject("X", (3,), distance=Distance("mse")), TensorObject("X", (3,))) is None
    t2 = single_task(2)
    t2.objects["Y2"] = TensorObject("Y2", (3,))
    t2.arrows["head2"] = t2.arrows["head2"].__class__("head2", ("H",), "Y2", True, mlp(5, 3), False)
    t2.arrows["y2"] = t2.arrows["y2"].__class__("y2", "D", "Y2", "label2")
    problems, _ = mismatch(t2, {"objects": {"Y1": "Y2"}})
    assert problems == [("kind-mismatch", "along#/objects/Y1")]


def test_arrow_mismatches():
    frozen = single_task(2)
    frozen.arrows["backbone"] = frozen.arrows["backbone"].__class__("backbone", ("X",), "H", False,
                                                                    mlp(6, 5), False)
    problems, text = mismatch(frozen)
    assert problems == [("bad-value", "along#/arrows/backbone")] and "frozen" in text
    column = single_task(2)
    column.arrows["x"] = column.arrows["x"].__class__("x", "D", "X", "pixels")
    problems, text = mismatch(column)
    assert problems == [("bad-value", "along#/arrows/x")] and "'image' vs 'pixels'" in text
    problems, _ = mismatch(single_task(2), {"objects": {"D": "D", "X": "X", "H": "H"},
                                            "arrows": {"x": "y2"}})
    assert ("bad-value", "along#/arrows/x") in problems  # x: D → X vs y2: D → Y2, Y2 not identified with X


def test_identified_arrow_needs_identified_ends():
    problems, text = mismatch(single_task(2), {"objects": {"X": "X"}, "arrows": {"backbone": "backbone"}})
    assert problems == [("bad-value", "along#/arrows/backbone")]
    assert "identify their sources and targets" in text


def test_unknown_names_and_one_to_one():
    problems, _ = mismatch(single_task(2), {"objects": {"Q": "X", "X": "Nope"}, "arrows": {"zz": "x"}})
    assert problems == [("unknown-object", "along#/objects/Q"), ("unknown-object", "along#/objects/X"),
                        ("unknown-arrow", "along#/arrows/zz")]
    problems, text = mismatch(single_task(2), {"objects": {"X": "H", "H": "H"}})
    assert ("bad-value", "along#/objects/H") in problems and "one-to-one" in text
    problems, _ = mismatch(single_task(2), {"objects": [1], "extra": {}})
    assert problems == [("unknown-key", "along#/extra"), ("wrong-type", "along#/objects")]


def test_automatic_must_agree():
    t2 = single_task(2)
    t2.automatic = False
    t2.equation("head2(backbone(x))", "y2")
    with pytest.raises(DiagramError) as e:
        glue(single_task(1), t2, ALONG)
    assert e.value.code == "bad-value" and "automatic" in str(e.value)


def test_prefix_that_still_clashes():
    t1 = single_task(1)
    t1.tensor("b_X", [1])
    with pytest.raises(DiagramError) as e:
        glue(t1, single_task(2), {}, prefix="b")
    assert e.value.code == "duplicate-name" and "b_X" in str(e.value)


# ----------------------------------------------------------------------------- other operations


def test_namespace_renames_everything_and_keeps_the_loss():
    d = single_task(1)
    d.equation("head1(backbone(x))", "y1", weight=3.0, name="main")
    n = namespace(d, "t")
    assert list(n.objects) == ["t_D", "t_X", "t_H", "t_Y1"]
    assert list(n.arrows) == ["t_x", "t_y1", "t_backbone", "t_head1"]
    assert n.arrows["t_x"].column == "image"  # columns name data, not parts
    assert [(e.name, e.lhs, e.rhs, e.weight) for e in n.explicit] == [("t_main", "t_head1(t_backbone(t_x))",
                                                                       "t_y1", 3.0)]
    w = random_weights(d, 4)
    assert evaluate(n, rename_weights(w, {a: f"t_{a}" for a in d.arrows}), batch()).total == \
        pytest.approx(evaluate(d, w, batch()).total, rel=1e-12)


def test_rename_errors():
    with pytest.raises(DiagramError) as e:
        rename(single_task(1), {"nope": "x2"})
    assert e.value.code == "unknown-object"
    with pytest.raises(DiagramError) as e:
        rename(single_task(1), {"X": "H"})
    assert e.value.code == "duplicate-name"
    with pytest.raises(DiagramError) as e:
        rename(single_task(1), {"X": "not a name"})
    assert e.value.code == "bad-value"


def test_rename_weights_moves_only_mapped_arrows():
    w = {"a.layers.0.weight": 1, "b.inputs.1.0.bias": 2}
    assert rename_weights(w, {"b": "c"}) == {"a.layers.0.weight": 1, "c.inputs.1.0.bias": 2}


def test_restrict_backward_gives_back_one_task():
    whole = multitask_by_hand()
    whole.equation("head2(backbone(x))", "y2", weight=2.0)
    part = restrict(whole, ["Y1"])
    expected = load(single_task(1))
    expected.name = whole.name
    assert dumps(part) == dumps(expected)  # head2's explicit equation is dropped with head2
    assert list(restrict(whole, ["head2"]).arrows) == ["x", "backbone", "y2", "head2"]


def test_restrict_forward():
    whole = multitask_by_hand()
    # From H: the heads and their targets; nothing reads a batch, so no equations.
    part = restrict(whole, ["H"], direction="forward")
    assert list(part.objects) == ["H", "Y1", "Y2"] and list(part.arrows) == ["head1", "head2"]
    assert equations(part) == []
    assert list(restrict(whole, ["D"], direction="forward").arrows) == list(whole.arrows)
    with pytest.raises(DiagramError) as e:
        restrict(whole, ["Q"])
    assert e.value.code == "unknown-object"


def test_replace_model():
    d = replace_model(single_task(1), "head1", mlp(5, 8, 8, 3), trainable=False)
    assert d.arrows["head1"].trainable is False and len(d.arrows["head1"].architecture.layers) == 5
    assert list(d.arrows) == list(single_task(1).arrows)
    assert replace_model(single_task(1), "head1", external=True).arrows["head1"].external
    with pytest.raises(DiagramError) as e:
        replace_model(single_task(1), "head1", mlp(4, 3))  # H has 5 features
    assert e.value.code == "shape-mismatch"
    with pytest.raises(DiagramError) as e:
        replace_model(single_task(1), "x", mlp(5, 3))
    assert e.value.code == "kind-mismatch"
    with pytest.raises(DiagramError) as e:
        replace_model(single_task(1), "nope", mlp(5, 3))
    assert e.value.code == "unknown-arrow"


# ----------------------------------------------------------------------------- dlearn glue


def test_cli_glue_writes_the_glued_file_and_weights(tmp_path, run_cli):
    from diagrammatic_learning import save
    t1, t2 = single_task(1), single_task(2)
    save(t1, tmp_path / "a.json")
    save(t2, tmp_path / "b.json")
    (tmp_path / "along.json").write_text(json.dumps(ALONG))
    w1, w2 = random_weights(t1, 5), random_weights(t2, 6)
    write_safetensors(w1, tmp_path / "a.safetensors")
    write_safetensors(w2, tmp_path / "b.safetensors")
    out = tmp_path / "c.json"
    assert run_cli("glue", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--along", str(tmp_path / "along.json"),
                   "-o", str(out), "--weights", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")) == 0
    assert out.read_text() == dumps(load(multitask_by_hand()))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # written atomically, yet not private
    merged = read_safetensors(tmp_path / "c.safetensors")
    assert set(merged) == set(parameter_shapes(load(out)))
    np.testing.assert_array_equal(merged["head2.layers.0.bias"], w2["head2.layers.0.bias"])


def test_cli_glue_errors_name_the_file_and_write_nothing(tmp_path, run_cli):
    from diagrammatic_learning import save
    save(single_task(1), tmp_path / "a.json")
    save(single_task(2), tmp_path / "b.json")
    along = tmp_path / "along.json"
    along.write_text(json.dumps({"objects": {"X": "H"}}))
    out = tmp_path / "c.json"
    assert run_cli("glue", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--along", str(along), "-o", str(out)) == 1
    assert run_cli.error.pointer == f"{along}#/objects/X" and run_cli.error.code == "shape-mismatch"
    (tmp_path / "bad.json").write_text('{"format": "learning-diagram", "format_version": "1.0", "objects": [], '
                                       '"arrows": [{"name": "f"}]}')
    assert run_cli("glue", str(tmp_path / "a.json"), str(tmp_path / "bad.json"), "-o", str(out)) == 1
    assert all(p.pointer.startswith(f"{tmp_path / 'bad.json'}#/arrows/0") for p in run_cli.error.problems)
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ----------------------------------------------------------------------------- the shipped example


MULTITASK = Path(__file__).resolve().parent.parent / "examples" / "multitask.json"


def test_multitask_example_cut_into_tasks_and_glued_back():
    whole = load(MULTITASK)
    heads = [o for o in whole.objects if whole.objects[o].kind == "categorical"]
    parts = [restrict(whole, [h]) for h in heads]
    glued = parts[0]
    for part in parts[1:]:
        shared = [n for n in [*part.objects, *part.arrows] if n in glued.objects or n in glued.arrows]
        glued = glue(glued, part, shared)
    assert list(glued.objects) == list(whole.objects)
    assert sorted(glued.arrows) == sorted(whole.arrows)
    assert [(e.name, e.distance, e.weight) for e in equations(glued)] == \
           [(e.name, e.distance, e.weight) for e in equations(whole)]
    rng = np.random.default_rng(7)
    w = {k: rng.normal(size=s) for k, s in parameter_shapes(whole).items()}
    b = {"image": rng.normal(size=(9, 64)), "parity": rng.integers(0, 2, 9), "big": rng.integers(0, 2, 9),
         "few_image": rng.normal(size=(4, 64)), "few_label": rng.integers(0, 10, 4)}
    assert evaluate(glued, w, b).total == pytest.approx(evaluate(whole, w, b).total, rel=1e-12)
