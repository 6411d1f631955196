"""Diagrams as Catlab JSON acsets: the layout, the schema, round trips and bad input."""

import copy
import json
from pathlib import Path

import pytest

from diagrammatic_learning import Architecture, Diagram, DiagramError, dumps, load, mlp
from diagrammatic_learning.acset import acset_schema_json, from_acset_json, to_acset_json

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))


def small() -> Diagram:
    """D → A, D → B, and a model from the product (A, B) to Y; one explicit equation."""
    d = Diagram("small")
    d.data("D"); d.tensor("A", [2]); d.tensor("B", [3]); d.categorical("Y", 4)
    d.data_arrow("a", "D", "A", "left")
    d.data_arrow("b", "D", "B", "right")
    d.data_arrow("y", "D", "Y", "label")
    d.model("net", ["A", "B"], "Y", Architecture(mlp(5, 4).layers, None, "concat"), trainable=False)
    d.model("solo", "A", "Y", mlp(2, 4))
    d.equation("solo(a)", "net(a, b)", "kl_div", weight=0.5, name="match")
    return d


def test_layout_of_a_small_diagram_written_out_by_hand():
    j = to_acset_json(small())
    assert list(j) == ["V", "E", "Equation", "Diagram", "Name", "Kind", "Position", "JSON"]
    assert [(r["_id"], r["vname"], r["vkind"]) for r in j["V"]] == [
        (1, "D", "data"), (2, "A", "tensor"), (3, "B", "tensor"), (4, "Y", "categorical")]
    assert json.loads(j["V"][2]["vspec"]) == {"shape": [3], "dtype": "float32"}
    # One edge per leg: net has two sources, so two edges, eindex 1 and 2, same name and target.
    assert [(r["_id"], r["src"], r["tgt"], r["ename"], r["ekind"], r["eindex"]) for r in j["E"]] == [
        (1, 1, 2, "a", "data", 1), (2, 1, 3, "b", "data", 1), (3, 1, 4, "y", "data", 1),
        (4, 2, 4, "net", "model", 1), (5, 3, 4, "net", "model", 2), (6, 2, 4, "solo", "model", 1)]
    assert json.loads(j["E"][0]["espec"]) == {"column": "left"}
    assert json.loads(j["E"][3]["espec"])["trainable"] is False
    assert [json.loads(r["eqspec"]) for r in j["Equation"]] == [
        {"name": "match", "lhs": "solo(a)", "rhs": "net(a, b)", "distance": {"name": "kl_div"}, "weight": 0.5}]
    assert json.loads(j["Diagram"][0]["dspec"]) == {"format": "learning-diagram", "format_version": "1.0",
                                                    "name": "small", "equations": {"automatic": True}}
    assert all(j[t] == [] for t in ("Name", "Kind", "Position", "JSON"))
    json.dumps(j)  # JSON-able


def test_rows_fit_the_schema():
    schema = acset_schema_json()
    obs = [o["name"] for o in schema["Ob"]]
    types = [t["name"] for t in schema["AttrType"]]
    assert set(schema) == {"version", "Ob", "Hom", "AttrType", "Attr", "equations"}
    for f in schema["Hom"]:
        assert f["dom"] in obs and f["codom"] in obs
    for f in schema["Attr"]:
        assert f["dom"] in obs and f["codom"] in types
    j = to_acset_json(small())
    assert list(j) == obs + types
    for ob in obs:
        columns = {f["name"] for f in schema["Hom"] + schema["Attr"] if f["dom"] == ob}
        for i, row in enumerate(j[ob]):
            assert row["_id"] == i + 1 and set(row) == columns | {"_id"}
    for f in schema["Hom"]:
        for row in j[f["dom"]]:
            assert 1 <= row[f["name"]] <= len(j[f["codom"]])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_round_trip(path):
    d = load(path)
    back = from_acset_json(json.dumps(to_acset_json(d)))
    assert dumps(back) == dumps(d)


def test_round_trip_keeps_graph_names_kinds_and_product_order():
    d = small()
    back = from_acset_json(to_acset_json(d))
    assert dumps(back) == dumps(load(d))
    assert back.arrows["net"].sources == ("A", "B")
    # eindex, not row order, gives the order of the sources.
    j = to_acset_json(d)
    j["E"][3]["eindex"], j["E"][4]["eindex"] = 2, 1
    j["Equation"] = []  # its term net(a, b) no longer fits
    assert from_acset_json(j).arrows["net"].sources == ("B", "A")
    swapped = from_acset_json(_with_sources_swapped(to_acset_json(d)))
    assert swapped.arrows["net"].sources == ("A", "B")


def _with_sources_swapped(j):
    """The two legs of net written in the other row order (ids renumbered), eindex unchanged."""
    j = copy.deepcopy(j)
    j["E"][3], j["E"][4] = j["E"][4], j["E"][3]
    for i, row in enumerate(j["E"]):
        row["_id"] = i + 1
    return j


def problems(j) -> list[tuple[str, str]]:
    with pytest.raises(DiagramError) as e:
        from_acset_json(j)
    return [(p.code, p.pointer) for p in e.value.problems]


def test_bad_acsets():
    good = to_acset_json(small())
    j = copy.deepcopy(good); j["V"][1]["_id"] = 7
    assert problems(j) == [("bad-value", "/V/1/_id")]
    j = copy.deepcopy(good); j["E"][2]["src"] = 9
    assert problems(j) == [("unknown-object", "/E/2/src")]
    j = copy.deepcopy(good); j["E"][4]["tgt"] = 1
    assert problems(j) == [("bad-value", "/E/4")]
    j = copy.deepcopy(good); j["E"][4]["eindex"] = 3
    assert problems(j) == [("bad-value", "/E/3/eindex")]
    j = copy.deepcopy(good); j["V"][0]["vname"] = {"_var": 1}
    assert problems(j) == [("bad-value", "/V/0/vname")]
    j = copy.deepcopy(good); j["V"][0]["vspec"] = "{not json"
    assert problems(j) == [("malformed-json", "/V/0/vspec")]
    j = copy.deepcopy(good); del j["E"][0]["ename"]; j["Extra"] = []
    assert problems(j) == [("missing-key", "/E/0/ename"), ("unknown-key", "/Extra")]
    j = copy.deepcopy(good); del j["V"]
    assert problems(j) == [("missing-key", "/V")]
    assert problems("[1, 2]") == [("not-a-diagram", "")]
    assert problems("{") == [("malformed-json", "")]


def test_a_valid_acset_of_an_invalid_diagram_reports_the_diagram_problem():
    j = to_acset_json(small())
    j["V"][1]["vspec"] = json.dumps({"shape": [7], "dtype": "float32"})  # A is [7], net expects 2 + 3
    codes = problems(j)
    assert ("shape-mismatch", "/arrows/3/architecture/layers/0") in codes
