"""Bounded work on any diagram (SPEC §5.3, §6.4): hostile shapes end in a DiagramError, and the
bounded enumerator agrees with a brute-force one written from the spec's definitions.

Hostile shapes are generated here, small; each runs under an alarm as a guard against a
regression back to exponential work (the assertions are on codes and pointers, not times).
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from itertools import product

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from diagrammatic_learning import Diagram, DiagramError, enumerate_terms, equations, load, mlp
from diagrammatic_learning.equations import TermError, term_info
from diagrammatic_learning.term_graph import TermGraph
from diagrammatic_learning.terms import Term, compare_terms, parse_term, term_key


@contextmanager
def deadline(seconds: int = 60):
    """Fail (instead of hanging the suite) if the block runs for minutes: a guard, not a timing test."""
    def fire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the work is not bounded")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def doc(objects, arrows, **top):
    return {"format": "learning-diagram", "format_version": "1.0", "objects": objects, "arrows": arrows, **top}


def tensor(name):
    return {"name": name, "kind": "tensor", "shape": [2], "dtype": "float32"}


def data_arrow(name, source, target):
    return {"name": name, "kind": "data", "source": source, "target": target, "column": name}


def function(name, op, source, target, **params):
    return {"name": name, "kind": "function", "op": op, "source": source, "target": target, **params}


def model(name, source, target):
    return {"name": name, "kind": "model", "source": source, "target": target, "trainable": True,
            "architecture": {"layers": [{"type": "linear", "in_features": 2, "out_features": 2}]}}


def rejected(document) -> list[tuple[str, str]]:
    with deadline():
        with pytest.raises(DiagramError) as info:
            load(document)
    return [(p.code, p.pointer) for p in info.value.problems]


# ----------------------------------------------------------------------------- hostile shapes (issue 9, items 1-4)


def test_doubling_chain_is_term_too_large_without_writing_the_term():
    # X_i = a_i(X_{i-1}, X_{i-1}): one term per object of size 2^(i+1) - 1; X9 (1023) is the first past 1000
    n = 40
    objects = [{"name": "D", "kind": "data"}] + [tensor(f"X{i}") for i in range(n + 1)]
    arrows = [data_arrow("x", "D", "X0")] + [function(f"a{i}", "add", [f"X{i}", f"X{i}"], f"X{i + 1}")
                                             for i in range(n)]
    assert rejected(doc(objects, arrows)) == [("term-too-large", "/objects/10")]
    # raising the bound moves the report; the terms are never written out (2^40 leaves would never end)
    assert rejected(doc(objects, arrows, max_term_size=2 ** 20)) == [("term-too-large", "/objects/21")]


def test_a_shared_term_hashes_and_compares_without_walking_its_leaves():
    with deadline():
        t = Term("x")
        u = Term("x")
        for i in range(200):  # 2^200 leaves, built from shared halves
            t = Term(f"a{i % 3}", (t, t))
            u = Term(f"a{i % 3}", (u, u))
        assert t.size == 2 ** 201 - 1
        assert t == u and hash(t) == hash(u) and t is not u
        assert compare_terms(t, u, lambda a: 0) == 0
        assert t != Term(t.arrow, (t.args[0], Term("y")))


def test_products_never_form_combinations_that_mix_data_objects():
    # add over 40 copies of X, which x1 (D1) and x2 (D2) reach: 2^40 combinations, two of them terms
    n = 40
    document = doc([{"name": "D1", "kind": "data"}, {"name": "D2", "kind": "data"}, tensor("X"), tensor("Y")],
                   [data_arrow("x1", "D1", "X"), data_arrow("x2", "D2", "X"), function("p", "add", ["X"] * n, "Y")])
    with deadline():
        d = load(document)
        terms = enumerate_terms(d)
    assert [str(t) for t, _ in terms["Y"]] == ["p(" + ", ".join(["x1"] * n) + ")", "p(" + ", ".join(["x2"] * n) + ")"]
    assert [i.data_object for _, i in terms["Y"]] == ["D1", "D2"]


def test_many_pairs_are_counted_not_listed():
    # objects with 150 trainable terms each: 11,175 pairs at the first, past the default 10,000
    objects = [{"name": "D", "kind": "data"}, tensor("X")] + [tensor(f"Y{i}") for i in range(4)]
    arrows = [data_arrow("x", "D", "X")] + [model(f"m{i}_{k}", "X", f"Y{i}") for i in range(4) for k in range(150)]
    assert rejected(doc(objects, arrows)) == [("too-many-equations", "/objects/2")]


def test_a_long_chain_is_too_deep_before_any_term_is_built():
    # X_i's terms nest i arrows deep: X101 is the first past 100, and only it is reported
    n = 600
    objects = [{"name": "D", "kind": "data"}] + [tensor(f"X{i}") for i in range(n + 1)]
    arrows = [data_arrow("x", "D", "X0")] + [function(f"s{i}", "scale", f"X{i}", f"X{i + 1}", factor=0.5)
                                             for i in range(n)]
    assert rejected(doc(objects, arrows)) == [("too-many-terms", "/objects/102")]
    # 100 deep is fine, and a chain no data reaches has no terms at all, however long
    with deadline():
        assert len(equations(load(doc(objects[:102], arrows[:101])))) == 0
        load(doc(objects, arrows[1:]))


def test_a_long_cycle_is_too_deep():
    # a ring of 120 scale arrows fed at R0: every object of the ring may nest 120 deep
    n = 120
    objects = [{"name": "D", "kind": "data"}] + [tensor(f"R{i}") for i in range(n)]
    arrows = [data_arrow("r", "D", "R0")] + [function(f"s{i}", "scale", f"R{i}", f"R{(i + 1) % n}", factor=0.5)
                                             for i in range(n)]
    assert rejected(doc(objects, arrows)) == [("too-many-terms", f"/objects/{i + 1}") for i in range(n)]


def test_a_cycle_rich_component_stops_at_the_step_budget():
    # 6 objects and a model between every ordered pair: the trails are countless
    k = 6
    objects = [{"name": "D", "kind": "data"}] + [tensor(f"V{i}") for i in range(k)]
    arrows = [data_arrow("v", "D", "V0")] + [model(f"e{i}_{j}", f"V{i}", f"V{j}")
                                             for i in range(k) for j in range(k) if i != j]
    problems = rejected(doc(objects, arrows, max_terms=10 ** 6, max_equations=10 ** 9))
    assert problems and {code for code, _ in problems} == {"too-many-terms"}


def test_many_objects_and_long_term_text_read_in_linear_time():
    with deadline():
        objects = [{"name": f"D{i}", "kind": "data"} if i % 2 == 0 else tensor(f"T{i}") for i in range(5000)]
        load(doc(objects, []))
        n = 5000
        text = "s(" + " ,  ".join(["x"] * n) + " )"
        t = parse_term(text)
        assert len(t.args) == n and str(t).startswith("s(x, x")


def test_wide_products_of_one_data_object_stop_at_the_bound():
    # add over 12 copies of X with 4 terms each: 4^12 combinations; the first 257 end the enumeration
    document = doc([{"name": "D", "kind": "data"}, tensor("X"), tensor("Y")],
                   [data_arrow(f"x{k}", "D", "X") for k in range(4)] + [function("p", "add", ["X"] * 12, "Y")])
    assert rejected(document) == [("too-many-terms", "/objects/2")]


def many_wide_objects(n: int, k: int) -> tuple[list, list]:
    """X with k data arrows (k terms) and n objects Y_j, each with one model from X (k terms each)."""
    objects = [{"name": "D", "kind": "data"}, tensor("X")] + [tensor(f"Y{j}") for j in range(n)]
    arrows = [data_arrow(f"x{i}", "D", "X") for i in range(k)] + [model(f"m{j}", "X", f"Y{j}") for j in range(n)]
    return objects, arrows


def test_many_objects_stop_at_the_total_bound():
    # 8 terms at X, then 8 more per Y_j: after Y_j, 8 (j + 2) terms in all; Y11 (104) is the first past 100,
    # and it alone is reported, though every object is within max_terms
    objects, arrows = many_wide_objects(50, 8)
    assert rejected(doc(objects, arrows, max_total_terms=100)) == [("too-many-total-terms", "/objects/13")]
    assert rejected(doc(objects, arrows, max_total_terms=103)) == [("too-many-total-terms", "/objects/13")]
    assert rejected(doc(objects, arrows, max_total_terms=104, max_equations=10 ** 6)) == [
        ("too-many-total-terms", "/objects/14")]
    # all 8 + 50 * 8 = 408 terms within the bound: enumeration goes on (to the equations' bound)
    assert rejected(doc(objects, arrows, max_total_terms=408, max_equations=50 * 28 - 1)) == [
        ("too-many-equations", "/objects/51")]
    with deadline():
        d = load(doc(objects, arrows, max_total_terms=408, max_equations=50 * 28))
        assert sum(len(ts) for ts in enumerate_terms(d).values()) == 408


def test_many_objects_at_the_default_total_bound_answer_quickly():
    # 256 terms (the default max_terms) at X and at each of 2,000 objects: 512,256 terms, a file of 300 KB;
    # the default 100,000 is passed at Y389 (256 * 391 terms), which is reported, before Y390 is looked at
    objects, arrows = many_wide_objects(2000, 256)
    assert rejected(doc(objects, arrows)) == [("too-many-total-terms", "/objects/391")]


# ----------------------------------------------------------------------------- the spec's definitions, by brute force


class _Huge(Exception):
    pass


def oracle_terms(d: Diagram, obj: str, forbidden: frozenset = frozenset(), budget: list | None = None) -> list[Term]:
    """SPEC §5.1-5.2 and §5.4 literally: every term with no arrow twice on a path, sorted by key."""
    budget = budget if budget is not None else [20000]
    out = []
    for a in d.arrows.values():
        if a.target != obj or a.name in forbidden:
            continue
        if a.kind == "data":
            out.append(Term(a.name))
            continue
        choices = [oracle_terms(d, s, forbidden | {a.name}, budget) for s in a.sources]
        for combo in product(*choices):
            budget[0] -= 1
            if budget[0] < 0:
                raise _Huge
            t = Term(a.name, combo)
            try:
                term_info(d, t)
            except TermError:
                continue
            out.append(t)
    return sorted(out, key=lambda t: term_key(t, d.position))


@st.composite
def diagrams(draw) -> Diagram:
    d = Diagram(max_terms=10 ** 6, max_term_size=10 ** 6, max_equations=10 ** 9)
    data = [d.data(f"D{i}") for i in range(draw(st.integers(1, 2)))]
    objs = [d.tensor(f"O{i}", [2]) for i in range(draw(st.integers(1, 4)))]
    for k in range(draw(st.integers(1, 8))):
        target = draw(st.sampled_from(objs))
        kind = draw(st.sampled_from(["data", "data", "model", "frozen", "add"]))
        if kind == "data":
            d.data_arrow(f"a{k}", draw(st.sampled_from(data)), target, f"c{k}")
        elif kind == "add":
            sources = draw(st.lists(st.sampled_from(objs), min_size=2, max_size=3))
            d.function(f"a{k}", sources, target, "add")
        else:
            d.model(f"a{k}", draw(st.sampled_from(objs)), target, mlp(2, 2), trainable=kind == "model")
    return d


def oracle(d: Diagram) -> dict[str, list[Term]]:
    try:
        return {o: oracle_terms(d, o) for o, x in d.objects.items() if x.kind != "data"}
    except _Huge:
        assume(False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(diagrams())
def test_enumeration_is_the_spec_s_definition_in_canonical_order(d):
    want = oracle(d)
    got = enumerate_terms(d)
    assert {o: [str(t) for t, _ in ts] for o, ts in got.items()} == {o: [str(t) for t in ts] for o, ts in want.items()}
    for ts in got.values():  # built in order without keys: the keys agree, and so does compare_terms
        keys = [term_key(t, d.position) for t, _ in ts]
        assert keys == sorted(keys)
        for (a, _), (b, _) in zip(ts, ts[1:]):
            assert compare_terms(a, b, d.position) == -1 and compare_terms(b, a, d.position) == 1
        for t, info in ts:
            assert info == term_info(d, t) and t.size == len(t.arrows())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(diagrams(), st.integers(1, 6), st.integers(1, 12), st.integers(0, 8))
def test_bounds_are_reported_exactly_when_exceeded(d, max_terms, max_size, max_equations):
    want = oracle(d)
    try:
        all_equations = equations(d)
    except DiagramError as e:
        # the step budget inside cycles (SPEC §5.3) is its own bound, not the ones checked here;
        # lowering max_terms or max_term_size only ends enumeration sooner
        assert all(p.code == "too-many-terms" and "inside cycles" in p.message for p in e.problems), e
        assume(False)
    d.max_terms = max_terms
    try:
        enumerate_terms(d)
    except DiagramError as e:
        index = list(d.objects)
        for p in e.problems:  # every reported object really has too many terms
            assert p.code == "too-many-terms" and len(want[index[int(p.pointer.split("/")[-1])]]) > max_terms
    else:
        assert all(len(ts) <= max_terms for ts in want.values())
    d.max_terms = 10 ** 6
    d.max_term_size = max_size
    try:
        enumerate_terms(d)
    except DiagramError as e:
        index = list(d.objects)
        for p in e.problems:
            assert p.code == "term-too-large"
            assert max(t.size for t in want[index[int(p.pointer.split("/")[-1])]]) > max_size
    else:
        assert all(t.size <= max_size for ts in want.values() for t in ts)
    d.max_term_size = 10 ** 6
    d.max_equations = max_equations
    if len(all_equations) > max_equations:
        with pytest.raises(DiagramError) as info:
            equations(d)
        assert info.value.code == "too-many-equations"
    else:
        assert equations(d) == all_equations


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(diagrams(), st.integers(1, 16))
def test_the_total_bound_is_reported_exactly_when_exceeded(d, max_total):
    # every term of every object is found once without cycles, at least once with them (SPEC §5.3)
    want = oracle(d)
    found = sum(len(ts) for ts in want.values())
    d.max_total_terms = max_total
    try:
        enumerate_terms(d)
    except DiagramError as e:
        assert [p.code for p in e.problems] == ["too-many-total-terms"]
        if not any(TermGraph(d).cyclic):
            assert found > max_total
    else:
        assert found <= max_total


def test_equations_are_built_once_and_again_after_a_change():
    d = Diagram()
    d.data("D"); d.tensor("X", [2]); d.tensor("Y", [2])
    d.data_arrow("x", "D", "X", "x"); d.data_arrow("y", "D", "Y", "y")
    d.model("f", "X", "Y", mlp(2, 2))
    first = equations(d)
    assert equations(d) == first and equations(d) is not first
    assert all(a is b for a, b in zip(equations(d), first))  # from the cache
    d.model("g", "X", "Y", mlp(2, 2))
    assert [e.name for e in equations(d)] == ["f(x) = y", "g(x) = y", "f(x) = g(x)"]
    d.max_equations = 2
    with pytest.raises(DiagramError) as info:
        equations(d)
    assert (info.value.code, info.value.pointer) == ("too-many-equations", "/objects/2")


def test_compiling_builds_the_equations_once(monkeypatch):
    torch_backend = pytest.importorskip("diagrammatic_learning.torch_backend")
    import sys

    module = sys.modules["diagrammatic_learning.equations"]  # the package's `equations` is the function

    calls = []
    real = module._equations
    monkeypatch.setattr(module, "_equations", lambda d: calls.append(1) or real(d))
    d = Diagram()
    d.data("D"); d.tensor("X", [2]); d.tensor("Y", [2])
    d.data_arrow("x", "D", "X", "x"); d.data_arrow("y", "D", "Y", "y")
    d.model("f", "X", "Y", mlp(2, 2))
    m = torch_backend.compile(d)
    assert [e.name for e in m.equations] == ["f(x) = y"] and len(calls) == 1  # validation's, reused
