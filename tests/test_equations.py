"""Term enumeration and equations: cycles, products, several data objects, canonical order (SPEC §5–6).

Expected lists are derived by hand from the spec's definitions, in comments.
"""

import pytest

from diagrammatic_learning import Diagram, DiagramError, Distance, enumerate_terms, equations, mlp, parse_term
from diagrammatic_learning.terms import term_key


def texts(d):
    return {o: [str(t) for t, _ in ts] for o, ts in enumerate_terms(d).items()}


def eqs(d):
    return [(e.object, str(e.lhs), str(e.rhs)) for e in equations(d)]


def test_autoencoder_cycle_is_finite():
    d = Diagram()
    d.data("D"); d.tensor("X", [8]); d.tensor("Z", [2])
    d.data_arrow("x", "D", "X", "x")
    d.model("enc", "X", "Z", mlp(8, 2))
    d.model("dec", "Z", "X", mlp(2, 8))
    # X: x, dec(enc(x)); dec(enc(dec(enc(x)))) repeats dec on a path. Z: enc(x) only.
    assert texts(d) == {"X": ["x", "dec(enc(x))"], "Z": ["enc(x)"]}
    assert eqs(d) == [("X", "dec(enc(x))", "x")]


def test_two_cycles_through_one_object():
    d = Diagram()
    d.data("D"); d.tensor("A", [2]); d.tensor("B", [2])
    d.data_arrow("a", "D", "A", "a")   # 0
    d.model("f", "A", "B", mlp(2, 2))   # 1
    d.model("g", "B", "A", mlp(2, 2))   # 2
    d.model("h", "B", "A", mlp(2, 2))   # 3
    # A: a, g(f(a)), h(f(a)); f may not repeat, so g(f(h(f(a)))) is out.
    # B: f(a) only (f(g(f(a))) repeats f).
    assert texts(d) == {"A": ["a", "g(f(a))", "h(f(a))"], "B": ["f(a)"]}
    # pairs in key order: (a, g(f(a))) -> rhs a; (a, h(f(a))); (g.., h..) both trainable -> lhs g..
    assert eqs(d) == [("A", "g(f(a))", "a"), ("A", "h(f(a))", "a"), ("A", "g(f(a))", "h(f(a))")]


def test_products_combine_terms_of_each_source():
    d = Diagram()
    d.data("D"); d.tensor("P", [3]); d.tensor("Q", [3]); d.tensor("R", [3])
    d.data_arrow("p", "D", "P", "p")        # 0
    d.data_arrow("q", "D", "Q", "q")        # 1
    d.model("u", "P", "Q", mlp(3, 3))       # 2
    d.function("s", ["P", "Q"], "R", "add")  # 3
    d.data_arrow("r", "D", "R", "r")        # 4
    # Q: q [1], u(p) [2,0]. R: r [4], s(p, q) [3,0,1], s(p, u(p)) [3,0,2,0]; sorted by key:
    assert texts(d)["R"] == ["s(p, q)", "s(p, u(p))", "r"]
    # R pairs: (s(p,q), s(p,u(p))) -> rhs s(p,q) constant; (s(p,q), r) constant: none;
    # (s(p,u(p)), r) -> rhs r.  Q: (q, u(p)) -> u(p) = q.
    assert eqs(d) == [("Q", "u(p)", "q"), ("R", "s(p, u(p))", "s(p, q)"), ("R", "s(p, u(p))", "r")]


def test_several_data_objects_never_mix():
    d = Diagram()
    d.data("D1"); d.data("D2"); d.tensor("X", [2]); d.tensor("Y", [2])
    d.data_arrow("x1", "D1", "X", "a")
    d.data_arrow("x2", "D2", "X", "b")
    d.data_arrow("y1", "D1", "Y", "c")
    d.data_arrow("y2", "D2", "Y", "d")
    d.model("f", "X", "Y", mlp(2, 2))
    d.function("both", ["X", "X"], "Y", "add")
    # positions: x1 0, x2 1, y1 2, y2 3, f 4, both 5. Y's terms by key: y1 [2], y2 [3], f(x1) [4,0],
    # f(x2) [4,1], both(x1, x1) [5,0,0], both(x2, x2) [5,1,1]; both(x1, x2) mixes data objects: not a term.
    assert texts(d) == {"X": ["x1", "x2"], "Y": ["y1", "y2", "f(x1)", "f(x2)", "both(x1, x1)", "both(x2, x2)"]}
    # per data object, D1 first: (y1, f(x1)) → f(x1) = y1; (y1, both) both constant: none;
    # (f(x1), both(x1, x1)) → constant side on the right. Then the same over D2. Nothing pairs x1 with x2.
    got = [(e.object, e.data_object, str(e.lhs), str(e.rhs)) for e in equations(d)]
    assert got == [("Y", "D1", "f(x1)", "y1"), ("Y", "D1", "f(x1)", "both(x1, x1)"),
                   ("Y", "D2", "f(x2)", "y2"), ("Y", "D2", "f(x2)", "both(x2, x2)")]


def test_canonical_order_is_by_declaration_position_prefix_order():
    d = Diagram()
    d.data("D"); d.tensor("X", [2]); d.tensor("Y", [2])
    d.model("b", "X", "Y", mlp(2, 2))          # 0
    d.data_arrow("y", "D", "Y", "y")           # 1
    d.model("a", "X", "Y", mlp(2, 2))          # 2
    d.data_arrow("x", "D", "X", "x")           # 3
    # keys: b(x) = [0,3], y = [1], a(x) = [2,3]; names do not matter, positions do.
    assert texts(d)["Y"] == ["b(x)", "y", "a(x)"]
    assert eqs(d) == [("Y", "b(x)", "y"), ("Y", "b(x)", "a(x)"), ("Y", "a(x)", "y")]
    assert term_key(parse_term("a(x)"), d.position) == (2, 3)


def test_constant_pairs_are_skipped_and_constant_side_is_the_target():
    d = Diagram()
    d.data("D"); d.tensor("X", [2]); d.categorical("Y", 3)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("teacher", "X", "Y", mlp(2, 3), trainable=False)
    d.model("student", "X", "Y", mlp(2, 3))
    assert eqs(d) == [("Y", "student(x)", "y"), ("Y", "student(x)", "teacher(x)")]


def test_explicit_equations_replace_in_place_and_extend():
    d = Diagram()
    d.data("D"); d.tensor("X", [2]); d.categorical("Y", 3)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("teacher", "X", "Y", mlp(2, 3), trainable=False)
    d.model("student", "X", "Y", mlp(2, 3))
    d.equation("teacher(x)", "student(x)", Distance("kl_div", {"temperature": 3}), weight=0.5, name="distill")
    d.equation("student(x)", "y", weight=2.0)  # replaces the automatic one in place
    d.equation("teacher(x)", "y", name="extra")  # new: constant, appended
    got = equations(d)
    assert [e.name for e in got] == ["student(x) = y", "distill", "extra"]
    assert got[0].weight == 2.0 and got[0].explicit
    assert (str(got[1].lhs), str(got[1].rhs)) == ("teacher(x)", "student(x)")  # orientation as written
    assert got[1].distance == Distance("kl_div", {"temperature": 3.0})
    d.automatic = False
    assert [e.name for e in equations(d)] == ["distill", "student(x) = y", "extra"]


def test_explicit_terms_may_repeat_arrows():
    d = Diagram()
    d.data("D"); d.tensor("X", [4]); d.tensor("Z", [2])
    d.data_arrow("x", "D", "X", "x")
    d.model("enc", "X", "Z", mlp(4, 2))
    d.model("dec", "Z", "X", mlp(2, 4))
    d.equation("dec(enc(dec(enc(x))))", "x", name="twice")
    assert [e.name for e in equations(d)] == ["dec(enc(x)) = x", "twice"]


def test_encodings_decide_what_functions_apply_to():
    d = Diagram()
    d.data("D"); d.tensor("X", [2]); d.categorical("Y", 3); d.tensor("P", [3])
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("clf", "X", "Y", mlp(2, 3))
    d.function("probs", "Y", "P", "softmax")
    d.function("hot", "Y", "P", "one_hot")
    # softmax applies to logits terms only, one_hot to index terms only.
    assert texts(d)["P"] == ["probs(clf(x))", "hot(y)"]
    assert eqs(d)[-1] == ("P", "probs(clf(x))", "hot(y)")


def test_term_bound_is_an_error_not_an_explosion():
    d = Diagram(max_terms=256)
    d.data("D")
    for i in range(6):
        d.tensor(f"X{i}", [2])
    d.data_arrow("x", "D", "X0", "x")
    for i in range(5):  # 4 parallel arrows per step: 4**5 = 1024 terms of X5
        for k in range(4):
            d.model(f"m{i}_{k}", f"X{i}", f"X{i + 1}", mlp(2, 2))
    with pytest.raises(DiagramError) as info:
        equations(d)
    assert info.value.code == "too-many-terms" and info.value.pointer == "/objects/6"
    d.max_terms = 2000
    assert len(enumerate_terms(d)["X5"]) == 1024


def test_equation_text_renders_weights_and_distances():
    d = Diagram()
    d.data("D"); d.tensor("X", [2]); d.tensor("Y", [2], distance=Distance("huber", {"delta": 0.5}))
    d.data_arrow("x", "D", "X", "x"); d.data_arrow("y", "D", "Y", "y")
    d.model("f", "X", "Y", mlp(2, 2))
    (e,) = equations(d)
    assert "huber(delta=0.5)" in str(e) and "f(x) = y" in str(e)


def test_explicit_terms_nest_at_most_100_arrows_deep():
    d = Diagram()
    d.data("D"); d.tensor("Y", [2])
    d.data_arrow("y", "D", "Y", "y")
    d.function("g", "Y", "Y", "scale", factor=2.0)
    d.equation("g(" * 99 + "y" + ")" * 99, "y")  # 100 arrows on the path: fine
    assert len(equations(d)) == 1
    for depth in (101, 5000):  # 5000 used to raise RecursionError
        d.explicit = [d.explicit[0].__class__("g(" * (depth - 1) + "y" + ")" * (depth - 1), "y")]
        with pytest.raises(DiagramError) as e:
            equations(d)
        assert (e.value.code, e.value.pointer) == ("term-syntax", "/equations/explicit/0/lhs")
