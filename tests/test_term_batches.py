"""The enumerator's batched path for one-source arrows (``TermEnumerator._keep_applied``) keeps exactly
what the term-by-term path (``_keep``) keeps, and fails at the same term with the same code, object and
count of terms found, under every combination of SPEC §5.3's bounds (issue 9: reading large files fast
must not change a single answer)."""

from __future__ import annotations

import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagrammatic_learning import Diagram, DiagramError, enumerate_terms, mlp
from diagrammatic_learning.equations import TermEnumerator
from diagrammatic_learning.terms import Term


def one_by_one(self, obj, out, name, args, encoding, trains, stops):
    """The term-by-term path, as ``terms`` takes it for a multi-source arrow: ``_keep`` for each term."""
    for sub, i in args:
        self._keep(obj, out, Term(name, (sub,)),
                   self._info(obj, i.data_object, encoding, (trains or i.trainable) and not stops), False)


def outcome(d: Diagram):
    """Terms (as text, with their types) per object, or the problems, and how many terms were found."""
    try:
        terms = enumerate_terms(d)
    except DiagramError as e:
        return [(p.code, p.pointer, p.message) for p in e.problems]
    return {o: [(str(t), i) for t, i in ts] for o, ts in terms.items()}


@st.composite
def chains(draw) -> Diagram:
    """Objects fed by data arrows, models, frozen models and scale functions (one source each) and a few adds."""
    d = Diagram()
    data = [d.data(f"D{i}") for i in range(draw(st.integers(1, 2)))]
    objs = [d.tensor(f"O{i}", [2]) for i in range(draw(st.integers(1, 6)))]
    for k in range(draw(st.integers(1, 14))):
        target = draw(st.sampled_from(objs))
        kind = draw(st.sampled_from(["data", "data", "model", "frozen", "scale", "stop", "add"]))
        if kind == "data":
            d.data_arrow(f"a{k}", draw(st.sampled_from(data)), target, f"c{k}")
        elif kind == "add":
            d.function(f"a{k}", draw(st.lists(st.sampled_from(objs), min_size=2, max_size=2)), target, "add")
        elif kind in ("scale", "stop"):
            d.function(f"a{k}", draw(st.sampled_from(objs)), target, "scale" if kind == "scale" else "stop_gradient",
                       **({"factor": 0.5} if kind == "scale" else {}))
        else:
            d.model(f"a{k}", draw(st.sampled_from(objs)), target, mlp(2, 2), trainable=kind == "model")
    d.max_terms = draw(st.integers(1, 12))
    d.max_term_size = draw(st.integers(1, 8))
    d.max_total_terms = draw(st.integers(1, 60))
    return d


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains(), st.sampled_from([0, 1, 2, 4]))
def test_the_batched_path_answers_as_the_term_by_term_path(d, batch_from):
    # batch_from 0: every one-source arrow's terms take the batched path, however few
    equations_module = sys.modules[TermEnumerator.__module__]
    old_batch_from, equations_module._BATCH_FROM = equations_module._BATCH_FROM, batch_from
    try:
        compare(d)
    finally:
        equations_module._BATCH_FROM = old_batch_from


def compare(d: Diagram) -> None:
    found: dict[str, int] = {}
    original_init = TermEnumerator.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        found[kind] = self  # the enumerator, to read its count of terms found afterwards

    TermEnumerator.__init__ = recording_init
    try:
        kind = "batched"
        fast = outcome(d)
        kind = "one by one"
        batched = TermEnumerator._keep_applied
        TermEnumerator._keep_applied = one_by_one
        try:
            slow = outcome(d)
        finally:
            TermEnumerator._keep_applied = batched
    finally:
        TermEnumerator.__init__ = original_init
    assert fast == slow
    if "batched" in found and "one by one" in found:
        assert found["batched"].found == found["one by one"].found


def test_the_first_term_past_each_bound_is_the_one_reported():
    # X has 5 terms; Y = model(X) has 5, of sizes 2; each bound is met exactly, then passed by one
    d = Diagram()
    D = d.data("D")
    X, Y = d.tensor("X", [2]), d.tensor("Y", [2])
    for k in range(5):
        d.data_arrow(f"x{k}", D, X, f"c{k}")
    d.model("m", X, Y, mlp(2, 2))
    for bounds, want in [({"max_terms": 5, "max_term_size": 2, "max_total_terms": 10}, None),
                         ({"max_terms": 4}, ("too-many-terms", "/objects/1")),
                         ({"max_term_size": 1}, ("term-too-large", "/objects/2")),
                         ({"max_total_terms": 9}, ("too-many-total-terms", "/objects/2")),
                         ({"max_total_terms": 4}, ("too-many-total-terms", "/objects/1"))]:
        d.max_terms = d.max_term_size = d.max_total_terms = None
        for k, v in bounds.items():
            setattr(d, k, v)
        got = outcome(d)
        if want is None:
            assert [len(ts) for ts in got.values()] == [5, 5]
        else:
            assert [(c, p) for c, p, _ in got][:1] == [want], (bounds, got)


def test_applied_makes_the_same_term_as_the_constructor():
    from diagrammatic_learning.terms import applied
    for arg in (Term("x"), Term("a", (Term("x"), Term("y"))), applied("m", applied("m", Term("x")))):
        t, u = applied("f", arg), Term("f", (arg,))
        assert (t.arrow, t.args, t.size, hash(t), str(t)) == (u.arrow, u.args, u.size, hash(u), str(u)) and t == u
        assert {t: 1}[u] == 1
