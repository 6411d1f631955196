"""``dlearn train`` and ``dlearn demo`` on tiny settings, the bundled digits data, and errors on bad ``--data``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from diagrammatic_learning.cli import main as dlearn
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.io import load
from diagrammatic_learning.tensorfiles import parameter_shapes, read_safetensors
from diagrammatic_learning.torch_backend.data import (DIGITS_VIEWS, ColumnLoader, caption_text, columns_for, digits,
                                                      read_data)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUPERVISED = str(EXAMPLES / "supervised.json")


# ----------------------------------------------------------------------------- bundled data


def test_digits_split_is_fixed_and_disjoint():
    train, test = digits("train")[0], digits("test")[0]
    assert len(train["label"]) + len(test["label"]) == 1797
    assert len(test["label"]) == 359
    again = digits("train")[0]
    assert (again["label"] == train["label"]).all() and (again["image"] == train["image"]).all()
    # no training row is a test row: compare (image, label) rows as bytes
    rows = lambda cols: {cols["image"][i].tobytes() + bytes([cols["label"][i]]) for i in range(len(cols["label"]))}
    all_rows = rows(digits("all")[0])
    assert len(rows(train) | rows(test)) == len(all_rows)


def test_digit_columns_agree_with_the_labels():
    cols = digits("test")[0]
    assert cols["image"].dtype == np.float32 and 0 <= cols["image"].min() and cols["image"].max() <= 1
    i = int(np.flatnonzero(cols["label"] == 7)[0])
    assert caption_text(cols["caption_in"][i]) == "seven odd big"
    assert caption_text(cols["caption_out"][i]) == "seven odd big" and cols["caption_out"][i, 3] == 0
    j = int(np.flatnonzero(cols["label"] == 2)[0])
    assert caption_text(cols["caption_in"][j]) == "two even small"
    assert cols["parity"][i] == 1 and cols["big"][i] == 1 and cols["parity"][j] == 0 and cols["big"][j] == 0
    assert (np.concatenate([cols["top"], cols["bottom"]], axis=1) == cols["image"]).all()
    assert (cols["image2d"][:, 0, 2, :] == cols["image"][:, 16:24]).all()


def test_few_shot_table_has_five_labelled_examples_per_class():
    main, few = digits("train")
    assert np.bincount(few["few_label"], minlength=10).tolist() == [5] * 10
    # each few-shot example is a training image with its own label
    index = {main["image"][i].tobytes(): main["label"][i] for i in range(len(main["label"]))}
    assert all(index[img.tobytes()] == lab for img, lab in zip(few["few_image"], few["few_label"]))


def test_loader_covers_the_lead_table_once_per_epoch_and_cycles_the_others():
    lead = {"a": np.arange(10, dtype=np.int64)}
    small = {"b": np.arange(3, dtype=np.int64) + 100}
    loader = ColumnLoader([small, lead], batch_size=4, seed=1)
    assert len(loader) == 3
    batches = list(loader)
    assert sorted(np.concatenate([b["a"].numpy() for b in batches]).tolist()) == list(range(10))
    assert [len(b["a"]) for b in batches] == [4, 4, 2]
    assert all(sorted(b["b"].tolist()) == [100, 101, 102] for b in batches)
    again = [b["a"].tolist() for b in ColumnLoader([small, lead], batch_size=4, seed=1)]
    assert again == [b["a"].tolist() for b in batches]
    assert len(ColumnLoader(lead, batch_size=4, drop_last=True)) == 2
    unshuffled = [b["a"].tolist() for b in ColumnLoader(lead, batch_size=4, shuffle=False)]
    assert unshuffled == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_views_restrict_the_columns():
    for view, columns in DIGITS_VIEWS.items():
        tables = read_data(f"digits:{view}")
        assert sorted(c for t in tables for c in t) == sorted(columns)


# ----------------------------------------------------------------------------- bad --data


def _error(spec: str, diagram=SUPERVISED) -> DiagramError:
    with pytest.raises(DiagramError) as e:
        columns_for(load(diagram), read_data(spec), spec)
    return e.value


def test_unknown_dataset_and_view(tmp_path):
    e = _error("mnist")
    assert (e.code, e.pointer) == ("batch-file", "mnist")
    e = _error("digits:colour")
    assert (e.code, e.pointer) == ("batch-file", "digits:colour") and "halves" in str(e)
    missing = str(tmp_path / "absent.npz")
    assert (_error(missing).code, _error(missing).pointer) == ("batch-file", missing)


def test_view_without_the_needed_column():
    e = _error("digits:halves")  # has labels but no image
    assert (e.code, e.pointer) == ("batch-missing-column", "digits:halves#image")


def test_unreadable_files(tmp_path):
    for name in ("bad.npz", "bad.safetensors"):
        path = tmp_path / name
        path.write_bytes(b"this is not a column file")
        assert (_error(str(path)).code, _error(str(path)).pointer) == ("batch-file", str(path))


def test_columns_of_the_wrong_dtype_shape_or_range(tmp_path):
    images = np.random.default_rng(0).random((20, 64), dtype=np.float32)
    path = tmp_path / "cols.npz"
    np.savez(path, image=images, label=np.arange(20, dtype=np.int64) % 10)
    assert columns_for(load(SUPERVISED), read_data(str(path)), str(path))[0]["label"].shape == (20,)
    np.savez(path, image=images, label=np.arange(20, dtype=np.int32) % 10)
    assert (_error(str(path)).code, _error(str(path)).pointer) == ("batch-dtype", f"{path}#label")
    np.savez(path, image=images[:, :60], label=np.arange(20) % 10)
    assert (_error(str(path)).code, _error(str(path)).pointer) == ("batch-shape", f"{path}#image")
    np.savez(path, image=images, label=np.arange(20) % 12)
    assert (_error(str(path)).code, _error(str(path)).pointer) == ("batch-index-range", f"{path}#label")
    np.savez(path, image=images, label=np.arange(19) % 10)
    assert _error(str(path)).code == "batch-size-mismatch"


def test_one_data_object_reading_two_tables(tmp_path):
    doc = json.loads(Path(SUPERVISED).read_text())
    doc["arrows"][1]["column"] = "few_label"  # labels of the few-shot table beside images of the main one
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(doc))
    e = _error("digits", str(path))
    assert e.code == "batch-size-mismatch" and e.pointer in ("digits#image", "digits#few_label")


def test_train_refuses_a_diagram_with_nothing_to_train(tmp_path, capsys):
    doc = json.loads(Path(SUPERVISED).read_text())
    doc["arrows"][2]["trainable"] = False
    path = tmp_path / "frozen.json"
    path.write_text(json.dumps(doc))
    assert dlearn(["train", str(path), "--data", "digits", "--weights-out", str(tmp_path / "w.safetensors")]) == 1
    assert "nothing to train" in capsys.readouterr().err
    assert not (tmp_path / "w.safetensors").exists()


def test_train_reports_bad_data_without_writing(tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    assert dlearn(["train", SUPERVISED, "--data", "digits:captions:x", "--weights-out", str(out)]) == 1
    assert "[batch-file]" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        dlearn(["train", SUPERVISED, "--data", "digits", "--epochs", "0"])


# ----------------------------------------------------------------------------- training end to end


def test_train_writes_weights_and_reports_held_out_loss(tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    assert dlearn(["train", SUPERVISED, "--data", "digits", "--epochs", "2", "--batch-size", "128",
                   "--lr", "0.003", "--weights-out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "classifier(x) = y" in text and "held-out" in text
    weights = read_safetensors(out)
    assert {k: v.shape for k, v in weights.items()} == parameter_shapes(load(SUPERVISED))
    # continuing from those weights starts where the first run ended: a lower first-epoch loss
    first = _epoch_losses(text)
    assert first[1] < first[0]
    assert dlearn(["train", SUPERVISED, "--data", "digits", "--epochs", "1", "--batch-size", "128",
                   "--lr", "0.003", "--init", str(out), "--weights-out", str(tmp_path / "w2.safetensors"),
                   "--quiet"]) == 0
    assert _epoch_losses(capsys.readouterr().out)[0] < first[0]


def _epoch_losses(text: str) -> list[float]:
    """The total loss of each epoch from train's table (rows: epoch number, total, equations)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["epoch", "total"])
    rows = []
    for line in lines[start + 1:]:
        cells = line.split()
        if not cells or not cells[0].isdigit():
            break
        rows.append(float(cells[1]))
    return rows


def test_train_on_a_user_column_file(tmp_path, capsys):
    cols = digits("train")[0]
    path = tmp_path / "cols.safetensors"
    save_file({"image": cols["image"][:200], "label": cols["label"][:200], "unused": np.zeros(3)}, str(path))
    out = tmp_path / "w.safetensors"
    assert dlearn(["train", SUPERVISED, "--data", str(path), "--epochs", "1", "--weights-out", str(out),
                   "--quiet"]) == 0
    assert out.exists() and "held-out" not in capsys.readouterr().out


def test_train_rejects_a_bad_init_file(tmp_path, capsys):
    bad = tmp_path / "init.safetensors"
    save_file({"classifier.layers.0.weight": np.zeros((3, 3), dtype=np.float32)}, str(bad))
    out = tmp_path / "w.safetensors"
    assert dlearn(["train", SUPERVISED, "--data", "digits", "--init", str(bad), "--weights-out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "[weights-shape]" in err and "[weights-missing-key]" in err and not out.exists()


def test_demo_on_tiny_settings(tmp_path, capsys):
    assert dlearn(["demo", "--out", str(tmp_path), "--teacher-epochs", "2", "--student-epochs", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    accuracies = [float(line.split(":")[1].split()[0]) for line in text.splitlines() if "held-out accuracy" in line]
    assert len(accuracies) == 2 and min(accuracies) > 0.3
    plots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert plots == ["student-0-student_x_y.png", "student-1-distill.png", "teacher-0-classifier_x_y.png"]
    assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    assert set(read_safetensors(tmp_path / "student.safetensors")) == set(
        parameter_shapes(load(EXAMPLES / "distillation.json")))
