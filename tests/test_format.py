"""The interchange format: schema, round trips, versions, extensions, the builder and the CLI."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest

import diagrammatic_learning as dl
from diagrammatic_learning import Diagram, DiagramError, Distance, layer, load, mlp
from diagrammatic_learning.cli import main
from diagrammatic_learning.resources import schema_path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
SCHEMA = json.loads(schema_path().read_text())


def distillation() -> Diagram:
    d = Diagram("distill")
    D = d.data("D")
    X = d.tensor("X", [64])
    Y = d.categorical("Y", 10)
    x = d.data_arrow("x", D, X, column="image")
    d.data_arrow("y", D, Y, column="label")
    d.model("teacher", x and X, Y, mlp(64, 128, 10), trainable=False)
    d.model("student", X, Y, mlp(64, 16, 10))
    d.equation("student(x)", "teacher(x)", Distance("kl_div", {"temperature": 4.0}), weight=0.9, name="distill")
    return d


def test_schema_is_valid_2020_12_and_draft7():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_schema_uses_only_draft7_keywords():
    forbidden = {"unevaluatedProperties", "prefixItems", "unevaluatedItems", "dependentSchemas",
                 "dependentRequired", "$dynamicRef", "$anchor"}
    found = set()

    def walk(x):
        if isinstance(x, dict):
            found.update(forbidden & set(x))
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(SCHEMA)
    assert not found


def test_examples_exist_and_validate():
    names = {p.stem for p in EXAMPLES}
    assert {"supervised", "distillation", "multitask", "alignment", "autoencoder", "captioning"} <= names
    validator = jsonschema.Draft7Validator(SCHEMA)  # a draft-07 reader accepts them too
    for path in EXAMPLES:
        doc = json.loads(path.read_text())
        assert not list(validator.iter_errors(doc)), path
        load(path)


def test_round_trip_is_exact(tmp_path):
    for d in [distillation()] + [load(p) for p in EXAMPLES]:
        dl.save(d, tmp_path / "a.json")
        again = load(tmp_path / "a.json")
        assert again == d
        dl.save(again, tmp_path / "b.json")
        assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_save_refuses_invalid_and_leaves_no_file(tmp_path):
    d = distillation()
    d.model("broken", "X", "Y", mlp(63, 10))
    with pytest.raises(DiagramError) as info:
        dl.save(d, tmp_path / "out.json")
    assert info.value.code == "shape-mismatch"
    assert list(tmp_path.iterdir()) == []


def test_extension_keys_are_ignored_everywhere():
    doc = dl.to_json(distillation())
    doc["x-editor"] = {"layout": [1, 2]}
    doc["objects"][1]["x-note"] = "pixels"
    doc["arrows"][2]["architecture"]["layers"][0]["x-init"] = "kaiming"
    doc["equations"]["explicit"][0]["distance"]["x-why"] = "hinton"
    assert load(doc) == distillation()


def test_non_finite_numbers_are_bad_values_except_under_extension_keys(tmp_path):
    doc = dl.to_json(distillation())
    doc["equations"]["explicit"][0]["weight"] = float("nan")
    doc["equations"]["explicit"][0]["distance"]["temperature"] = float("inf")  # passes the schema's minimum
    doc["x-editor"] = {"zoom": float("nan")}
    with pytest.raises(DiagramError) as e:
        load(doc)
    assert sorted((p.code, p.pointer) for p in e.value.problems) == [
        ("bad-value", "/equations/explicit/0/distance/temperature"), ("bad-value", "/equations/explicit/0/weight")]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(dl.to_json(distillation())).replace('"weight": 0.9', '"weight": 1e400'))
    assert "1e400" in path.read_text()
    with pytest.raises(DiagramError) as e:
        load(path)
    assert (e.value.code, e.value.pointer) == ("bad-value", "/equations/explicit/0/weight")


def test_minor_versions_read_major_versions_rejected():
    doc = dl.to_json(distillation())
    newer = dl.dumps(load({**doc, "format_version": "1.7"}))
    assert newer.replace('"format_version": "1.7"', '"format_version": "1.0"') == dl.dumps(load(doc))  # same meaning
    with pytest.raises(DiagramError) as info:
        load({**doc, "format_version": "2.0"})
    assert info.value.code == "unsupported-version"


def test_malformed_json_names_file_line_and_column(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{\n  "format": "learning-diagram",\n  "objects": [,]\n}')
    with pytest.raises(DiagramError) as info:
        load(p)
    assert info.value.code == "malformed-json"
    assert "bad.json" in str(info.value) and "line 3" in str(info.value)


def test_missing_file_is_a_diagram_error(tmp_path):
    with pytest.raises(DiagramError) as info:
        load(tmp_path / "nope.json")
    assert info.value.code == "file-not-found" and "no such file" in str(info.value)
    assert info.value.pointer == str(tmp_path / "nope.json")


def test_builder_rejects_reused_names():
    d = Diagram()
    d.data("D")
    with pytest.raises(ValueError):
        d.tensor("D", [1])


def test_builder_layers_and_defaults():
    d = Diagram()
    D, X, Y = d.data("D"), d.tensor("X", [1, 8, 8]), d.categorical("Y", 3)
    d.data_arrow("x", D, X, "img")
    d.data_arrow("y", D, Y, "label")
    d.model("cnn", X, Y, [layer("conv2d", in_channels=1, out_channels=4, kernel_size=[3, 3], padding=[1, 1, 1, 1]),
                          layer("relu"), layer("max_pool2d", kernel_size=[2, 2]), layer("flatten"),
                          layer("linear", in_features=64, out_features=3)])
    dl.validate(d)
    from diagrammatic_learning.tensorfiles import parameter_shapes
    assert parameter_shapes(d) == {"cnn.layers.0.weight": (4, 1, 3, 3), "cnn.layers.0.bias": (4,),
                                   "cnn.layers.4.weight": (3, 64), "cnn.layers.4.bias": (3,)}


def test_cli_validate_examples_and_show(capsys):
    assert main(["validate", *map(str, EXAMPLES)]) == 0
    assert main(["show", str(ROOT / "examples" / "distillation.json")]) == 0
    out = capsys.readouterr().out
    assert "equations:" in out and "teacher(x)" in out


def test_x_keys_do_not_survive_but_meaning_does():
    doc = copy.deepcopy(dl.to_json(distillation()))
    doc["x-a"] = 1
    assert "x-a" not in dl.to_json(load(doc))


def test_deeply_nested_json_is_malformed_not_a_crash(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(DiagramError) as e:
        load(path)
    assert e.value.code == "malformed-json"
    assert main(["validate", str(path)]) == 1
    assert "malformed-json" in capsys.readouterr().out


def test_cli_output_into_a_directory_or_a_missing_folder_is_an_error_not_a_traceback(tmp_path, capsys):
    example = str(Path(__file__).parent.parent / "examples" / "supervised.json")
    (tmp_path / "adir").mkdir()
    for out in (tmp_path / "adir", tmp_path / "nodir" / "x.svg"):
        assert main(["draw", example, "-o", str(out), "--format", "svg"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err and str(out.parent if "nodir" in str(out) else out) in err
    assert main(["glue", example, example, "-o", str(tmp_path / "adir")]) == 1
    assert "error: " in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["adir"]
