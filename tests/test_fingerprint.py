"""A validated diagram is not validated again while unchanged, and is whenever anything validation reads changes."""

from __future__ import annotations

from dataclasses import replace

import pytest

import diagrammatic_learning.io as io
from diagrammatic_learning import Diagram, layer, load
from diagrammatic_learning.equations import equations
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.fingerprint import fingerprint, recall, remember, same


def small() -> Diagram:
    d = Diagram("small")
    d.data("D")
    d.tensor("X", [4], "float64")
    d.tensor("Y", [2], "float64")
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("f", "X", "Y", [layer("linear", in_features=4, out_features=2)])
    d.function("s", "Y", "Y", "scale", factor=2.0)
    return d


@pytest.fixture
def checks(monkeypatch) -> list[int]:
    """Counts the calls of the meaning checks that ``load`` makes."""
    calls: list[int] = []
    real = io.check_diagram
    monkeypatch.setattr(io, "check_diagram", lambda d, doc=None: calls.append(1) or real(d, doc))
    return calls


def test_loading_a_loaded_diagram_returns_a_copy_without_checking_it_again(checks):
    d = load(small())
    assert checks == [1]
    again = load(d)
    assert checks == [1]
    assert again is not d and again == d
    assert again.arrows is not d.arrows and again.arrows["f"] is d.arrows["f"]
    assert equations(again) == equations(d)


@pytest.mark.parametrize("change", [
    "in-place layer parameter", "replaced arrow", "new arrow", "bound", "name", "function parameter",
    "in-place list parameter"])
def test_any_change_to_what_validation_reads_is_checked_again(checks, change):
    d = load(small())
    if change == "in-place layer parameter":
        d.arrows["f"].architecture.layers[0].params["in_features"] = 5
    elif change == "replaced arrow":
        d.arrows["f"] = replace(d.arrows["f"], target="X")
    elif change == "new arrow":
        d.data_arrow("z", "D", "Nowhere", "z")
    elif change == "bound":
        d.max_terms = 0
    elif change == "name":
        d.name = "bad\ud800"
    elif change == "function parameter":
        d.arrows["s"].params["factor"] = float("nan")
    else:
        d.arrows["f"].architecture.layers[0].params["x-note"] = [1, 2]
        load(d)
        assert checks == [1, 1]
        d.arrows["f"].architecture.layers[0].params["x-note"].append(3)
        load(d)
        assert checks == [1, 1, 1]
        return
    with pytest.raises(DiagramError):  # a remembered validation would have returned a copy
        load(d)


def test_remembered_values_last_only_while_the_contents_stay():
    d = small()
    remember(d, "answer", 42)
    assert recall(d, "answer") == 42 and recall(d, "other") is None
    before = fingerprint(d)
    d.automatic = False
    assert not same(before, fingerprint(d))
    assert recall(d, "answer") is None


def test_an_unchanged_block_takes_the_fingerprint_once_and_edits_after_it_are_seen(monkeypatch):
    import diagrammatic_learning.fingerprint as fp
    d = load(small())
    taken: list[int] = []
    real = fp.fingerprint
    monkeypatch.setattr(fp, "fingerprint", lambda x: taken.append(1) or real(x))
    with fp.unchanged(d):
        with fp.unchanged(d):  # nested blocks share the outer one's fingerprint
            for _ in range(4):
                assert recall(d, "valid")
            remember(d, "other", 1)
        assert recall(d, "other") == 1
    assert taken == [1]
    d.arrows["f"].architecture.layers[0].params["in_features"] = 5  # after the block: seen again
    assert recall(d, "valid") is None and recall(d, "other") is None
    assert not hasattr(d, "_held_fingerprint")


def test_compile_takes_the_fingerprint_at_most_twice(monkeypatch):
    """Once to recall that the diagram is valid, once for the copy that compiles (not once per memo read)."""
    torch_backend = pytest.importorskip("diagrammatic_learning.torch_backend")
    import diagrammatic_learning.fingerprint as fp
    d = load(small())
    taken: list[int] = []
    real = fp.fingerprint
    monkeypatch.setattr(fp, "fingerprint", lambda x: taken.append(1) or real(x))
    torch_backend.compile(d)
    assert len(taken) <= 2
