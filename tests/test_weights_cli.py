"""Weights as files: ``dlearn weights inspect|rename|merge``, loading one arrow (``load_arrow_weights``, ``--init``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from diagrammatic_learning.cli import main as dlearn
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.tensorfiles import read_safetensors
from diagrammatic_learning.torch_backend import compile
from diagrammatic_learning.torch_backend.init_option import Init, parse_init, parse_inits

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUPERVISED = str(EXAMPLES / "supervised.json")
DISTILLATION = str(EXAMPLES / "distillation.json")


def classifier_file(tmp: Path, name: str = "classifier.safetensors") -> Path:
    """The supervised example's weights, with arbitrary but fixed values."""
    rng = np.random.default_rng(3)
    path = tmp / name
    save_file({"classifier.layers.0.weight": rng.standard_normal((128, 64)).astype(np.float32),
               "classifier.layers.0.bias": rng.standard_normal(128).astype(np.float32),
               "classifier.layers.2.weight": rng.standard_normal((10, 128)).astype(np.float32),
               "classifier.layers.2.bias": rng.standard_normal(10).astype(np.float32)}, str(path))
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- inspect


def test_inspect_lists_keys_shapes_dtypes_and_counts(tmp_path, capsys):
    path = classifier_file(tmp_path)
    assert dlearn(["weights", "inspect", str(path)]) == 0
    text = capsys.readouterr().out
    # 128·64 + 128 + 10·128 + 10 numbers
    assert "9,610 parameters" in text and "classifier: 9,610 parameters" in text
    assert "classifier.layers.0.weight" in text and "[128, 64]" in text and "float32" in text
    assert dlearn(["weights", "inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["parameters"] == 9610
    assert doc["arrows"]["classifier"]["tensors"]["classifier.layers.2.weight"] == {"shape": [10, 128],
                                                                                  "dtype": "float32"}


def test_inspect_of_a_missing_or_broken_file_is_a_clean_error(tmp_path, capsys):
    assert dlearn(["weights", "inspect", str(tmp_path / "absent.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "absent.safetensors" in err and "[weights-file]" in err
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert dlearn(["weights", "inspect", str(broken)]) == 1
    assert "[weights-file]" in capsys.readouterr().err


# ----------------------------------------------------------------------------- rename and merge


def test_rename_moves_an_arrow_prefix_and_keeps_the_values(tmp_path, capsys):
    path = classifier_file(tmp_path)
    out = tmp_path / "teacher.safetensors"
    assert dlearn(["weights", "rename", str(path), "classifier=teacher", "-o", str(out)]) == 0
    before, after = read_safetensors(path), read_safetensors(out)
    assert sorted(after) == sorted(k.replace("classifier.", "teacher.") for k in before)
    assert all(np.array_equal(after[k.replace("classifier.", "teacher.")], v) for k, v in before.items())
    assert "classifier → teacher" in capsys.readouterr().out
    # in place, and a swap of two names
    merged = tmp_path / "both.safetensors"
    assert dlearn(["weights", "merge", str(path), str(out), "-o", str(merged)]) == 0
    assert dlearn(["weights", "rename", str(merged), "classifier=teacher", "teacher=classifier",
                   "-o", str(merged)]) == 0
    swapped = read_safetensors(merged)
    assert np.array_equal(swapped["teacher.layers.0.bias"], before["classifier.layers.0.bias"])
    assert np.array_equal(swapped["classifier.layers.0.bias"], after["teacher.layers.0.bias"])


@pytest.mark.parametrize("renames, needle, status", [
    (["student=teacher"], "no tensors of arrow 'student'", 1),
    (["classifier"], "OLD=NEW", 2),
    (["classifier=2x"], "OLD=NEW", 2),
    (["classifier=a", "classifier=b"], "renamed twice", 2),
])
def test_bad_renames_write_nothing(tmp_path, capsys, renames, needle, status):
    path = classifier_file(tmp_path)
    before = files_in(tmp_path)
    assert dlearn(["weights", "rename", str(path), *renames, "-o", str(tmp_path / "out.safetensors")]) == status
    err = capsys.readouterr().err
    assert "error: " in err and needle in err and "Traceback" not in err
    assert files_in(tmp_path) == before


def test_a_rename_that_makes_two_tensors_one_key_names_the_key(tmp_path, capsys):
    path = classifier_file(tmp_path)
    both = tmp_path / "both.safetensors"
    assert dlearn(["weights", "rename", str(path), "classifier=teacher", "-o", str(tmp_path / "t.safetensors")]) == 0
    assert dlearn(["weights", "merge", str(path), str(tmp_path / "t.safetensors"), "-o", str(both)]) == 0
    capsys.readouterr()
    assert dlearn(["weights", "rename", str(both), "classifier=teacher", "-o", str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "'teacher.layers.0.bias'" in err and not (tmp_path / "x.safetensors").exists()


def test_merge_clash_names_the_key_and_both_files(tmp_path, capsys):
    a = classifier_file(tmp_path, "a.safetensors")
    b = classifier_file(tmp_path, "b.safetensors")
    out = tmp_path / "out.safetensors"
    assert dlearn(["weights", "merge", str(a), str(b), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "classifier.layers.0.weight" in err and "a.safetensors" in err and "b.safetensors" in err
    assert not out.exists()
    assert dlearn(["weights", "merge", str(a), str(tmp_path / "absent.safetensors"), "-o", str(out)]) == 1
    assert "absent.safetensors" in capsys.readouterr().err and not out.exists()


def test_output_into_a_missing_folder_is_a_clean_error(tmp_path, capsys):
    path = classifier_file(tmp_path)
    assert dlearn(["weights", "rename", str(path), "classifier=t", "-o", str(tmp_path / "no" / "w.safetensors")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


# ----------------------------------------------------------------------------- one arrow from a file


def test_load_arrow_weights_from_a_diagram_file_under_another_name(tmp_path):
    path = classifier_file(tmp_path)
    torch.manual_seed(0)
    model = compile(DISTILLATION)
    student_before = {k: v.clone() for k, v in model["student"].state_dict().items()}
    model.load_arrow_weights("teacher", path, source_arrow="classifier")
    stored = read_safetensors(path)
    for key, value in model["teacher"].state_dict().items():
        assert np.array_equal(value.numpy(), stored[f"classifier.{key}"])
    # the other arrow keeps its fresh initialisation
    assert all(torch.equal(v, student_before[k]) for k, v in model["student"].state_dict().items())


def test_load_arrow_weights_from_an_arrow_file(tmp_path):
    donor = compile(SUPERVISED)
    donor.save_arrow("classifier", tmp_path / "arrow.safetensors")
    model = compile(DISTILLATION)
    model.load_arrow_weights("teacher", tmp_path / "arrow.safetensors")
    assert all(torch.equal(v, donor["classifier"].state_dict()[k]) for k, v in model["teacher"].state_dict().items())


def test_load_arrow_weights_errors_name_the_file_and_key(tmp_path):
    path = classifier_file(tmp_path)
    model = compile(DISTILLATION)
    teacher_before = {k: v.clone() for k, v in model["teacher"].state_dict().items()}
    with pytest.raises(DiagramError) as e:
        model.load_arrow_weights("teacher", path)  # the file's arrow is 'classifier'
    assert e.value.code == "weights-missing-key" and "classifier" in str(e.value) and f"{path}#teacher." in str(e.value)
    with pytest.raises(DiagramError) as e:
        model.load_arrow_weights("student", path, source_arrow="classifier")  # 128 hidden units, the student has 16
    assert set(e.value.codes) == {"weights-shape"}
    assert e.value.pointer == f"{path}#classifier.layers.0.weight"
    with pytest.raises(DiagramError) as e:
        model.load_arrow_weights("nobody", path)
    assert e.value.code == "unknown-arrow"
    # nothing was copied by the failed loads
    assert all(torch.equal(v, teacher_before[k]) for k, v in model["teacher"].state_dict().items())
    bad = tmp_path / "bad.safetensors"
    stored = read_safetensors(path)
    stored["classifier.layers.0.bias"] = stored["classifier.layers.0.bias"].astype(np.int64)
    stored["classifier.layers.9.weight"] = np.zeros(3, dtype=np.float32)
    save_file(stored, str(bad))
    with pytest.raises(DiagramError) as e:
        model.load_arrow_weights("teacher", bad, source_arrow="classifier")
    assert sorted(e.value.codes) == ["weights-dtype", "weights-unexpected-key"]


def test_init_option_forms(tmp_path):
    existing = tmp_path / "a=b.safetensors"
    existing.write_bytes(b"")
    assert parse_init("w.safetensors") == Init("w.safetensors")
    assert parse_init("teacher=w.safetensors") == Init("w.safetensors", "teacher")
    assert parse_init("teacher=runs/w.safetensors:classifier") == Init("runs/w.safetensors", "teacher", "classifier")
    assert parse_init(str(existing)) == Init(str(existing))  # an existing file is a file, '=' or not
    from diagrammatic_learning.errors import UsageError
    with pytest.raises(UsageError):
        parse_inits(["teacher=a.safetensors", "teacher=b.safetensors"])
    with pytest.raises(UsageError):
        parse_inits(["a.safetensors", "b.safetensors"])


def test_train_init_of_an_unknown_arrow_or_a_bad_file_writes_nothing(tmp_path, capsys):
    path = classifier_file(tmp_path)
    out = tmp_path / "w.safetensors"
    for init, needle in ((f"nobody={path}", "[unknown-arrow]"), (f"student={path}:classifier", "[weights-shape]"),
                         (f"teacher={tmp_path / 'absent.safetensors'}", "[weights-file]")):
        assert dlearn(["train", DISTILLATION, "--data", "digits", "--epochs", "1", "--init", init,
                       "--weights-out", str(out), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and not out.exists()
    assert dlearn(["train", DISTILLATION, "--data", "digits", "--init", f"teacher={path}:classifier",
                   "--init", f"teacher={path}:classifier", "--weights-out", str(out)]) == 2
    assert "twice" in capsys.readouterr().err and not out.exists()
