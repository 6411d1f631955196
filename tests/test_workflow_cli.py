"""The training workflow by command line: train options, ``dlearn eval``, and distillation end to end.

Expected numbers are computed here independently: plain PyTorch on the saved
weights (``load_arrow_module``), or the NumPy reference evaluator.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diagrammatic_learning.cli import main as dlearn
from diagrammatic_learning.tensorfiles import read_safetensors
from diagrammatic_learning.torch_backend import load_arrow_module
from diagrammatic_learning.torch_backend.data import digits

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUPERVISED = str(EXAMPLES / "supervised.json")
DISTILLATION = str(EXAMPLES / "distillation.json")


def run_json(argv: list[str], capsys) -> dict:
    assert dlearn(argv) == 0
    return json.loads(capsys.readouterr().out)


def independent_accuracy_and_ce(diagram: str, arrow: str, weights: Path) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of one arrow on the digits test split, in plain PyTorch (float64)."""
    net = load_arrow_module(diagram, arrow, weights, dtype=torch.float64).eval()
    test = digits("test")[0]
    with torch.no_grad():
        logits = net(torch.from_numpy(test["image"]).double())
    labels = torch.from_numpy(test["label"])
    return (logits.argmax(-1) == labels).double().mean().item(), F.cross_entropy(logits, labels).item()


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory) -> Path:
    """The supervised example trained briefly on digits (shared by the tests below)."""
    out = tmp_path_factory.mktemp("teacher") / "classifier.safetensors"
    assert dlearn(["train", SUPERVISED, "--data", "digits", "--epochs", "3", "--batch-size", "128",
                   "--lr", "0.003", "--weights-out", str(out), "--quiet"]) == 0
    return out


# ----------------------------------------------------------------------------- eval


def test_eval_reports_means_over_examples_and_accuracy(trained_teacher, capsys):
    accuracy, ce = independent_accuracy_and_ce(SUPERVISED, "classifier", trained_teacher)
    # 359 test examples in batches of 100: the last batch is smaller, so means must weight by examples
    for backend in ("torch", "reference"):
        doc = run_json(["eval", SUPERVISED, "--weights", str(trained_teacher), "--data", "digits",
                        "--backend", backend, "--dtype", "float64", "--batch-size", "100", "--json"], capsys)
        assert doc["examples"] == 359 and doc["backend"] == backend and doc["dtype"] == "float64"
        assert doc["equations"]["classifier(x) = y"] == pytest.approx(ce, rel=1e-9)
        assert doc["total"] == pytest.approx(ce, rel=1e-9)
        assert doc["accuracy"] == {"classifier(x) = y": pytest.approx(accuracy, abs=1e-12)}
    assert dlearn(["eval", SUPERVISED, "--weights", str(trained_teacher), "--data", "digits"]) == 0
    text = capsys.readouterr().out
    assert "359 examples" in text and "[0] classifier(x) = y" in text and f"{accuracy:.4f}" in text


def test_eval_errors(trained_teacher, tmp_path, capsys):
    base = ["eval", SUPERVISED, "--weights", str(trained_teacher), "--data", "digits"]
    assert dlearn(base + ["--backend", "reference", "--dtype", "float32"]) == 2
    assert "float64 only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        dlearn(base + ["--device", "gpu0"])
    assert e.value.code == 2
    capsys.readouterr()
    assert dlearn(["eval", SUPERVISED, "--weights", str(tmp_path / "none.safetensors"), "--data", "digits"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "none.safetensors" in err and "[weights-file]" in err
    assert dlearn(["eval", DISTILLATION, "--weights", str(trained_teacher), "--data", "digits"]) == 1
    assert "[weights-missing-key]" in capsys.readouterr().err
    assert dlearn(base[:-1] + ["digits:halves"]) == 1
    err = capsys.readouterr().err
    assert "[batch-missing-column]" in err and "its columns: bottom, label, top" in err


def test_eval_with_julia_unavailable_says_why(trained_teacher, capsys):
    from diagrammatic_learning import julia

    ok, why = julia.is_available()
    if ok:
        pytest.skip("Julia is available here: the unavailable path cannot be seen")
    assert dlearn(["eval", SUPERVISED, "--weights", str(trained_teacher), "--data", "digits",
                   "--backend", "julia"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "julia backend is unavailable" in err and why in err
    assert "Traceback" not in err


class ReferenceAsJulia:
    """Stands in for the Julia module behind ``FluxBackend``: undoes the storage layout the Python side
    passes (``array.T``) and answers ``bridge_evaluate_accuracy`` with the NumPy reference, as JSON."""

    def bridge_evaluate_accuracy(self, diagram_json, dtype, weight_names, batch_names, equation_names, *items):
        from diagrammatic_learning import equations, load
        from diagrammatic_learning.reference import evaluate

        wn, bn, wanted = json.loads(weight_names), json.loads(batch_names), json.loads(equation_names)
        assert len(items) == len(wn) + len(bn) and dtype == "float64"
        weights = {k: np.asarray(v).T for k, v in zip(wn, items)}
        batch = {k: np.asarray(v).T for k, v in zip(bn, items[len(wn):])}
        r = evaluate(json.loads(diagram_json), weights, batch)
        hits = {e.name: [int((r.terms[str(e.lhs)].argmax(-1) == r.terms[str(e.rhs)]).sum()),
                         int(r.terms[str(e.rhs)].size)]
                for e in equations(load(json.loads(diagram_json))) if e.name in wanted}
        return json.dumps({"ok": True, "result": {"equations": [[k, v] for k, v in r.equations.items()],
                                                  "total": r.total, "hits": hits}})


def test_eval_julia_plumbing_with_a_stand_in_for_julia(trained_teacher, monkeypatch, capsys):
    """Everything on the Python side of `dlearn eval --backend julia` (layout, names, counts, means)."""
    import diagrammatic_learning.julia as jl
    import diagrammatic_learning.julia.backend as jl_backend

    monkeypatch.setattr(jl, "is_available", lambda: (True, "stand-in"))
    monkeypatch.setattr(jl_backend, "julia_module", ReferenceAsJulia)
    common = ["eval", SUPERVISED, "--weights", str(trained_teacher), "--data", "digits", "--batch-size", "100",
              "--json"]
    julia = run_json(common + ["--backend", "julia"], capsys)
    reference = run_json(common + ["--backend", "reference"], capsys)
    assert julia["examples"] == reference["examples"] == 359
    assert julia["equations"] == reference["equations"] and julia["total"] == reference["total"]
    assert julia["accuracy"] == reference["accuracy"] and set(julia["accuracy"]) == {"classifier(x) = y"}


def test_eval_julia_agrees_with_torch(trained_teacher, capsys):
    from diagrammatic_learning import julia

    ok, why = julia.is_available()
    if not ok:
        pytest.skip(f"SKIPPED: the Flux.jl backend cannot run here: {why}")
    common = ["eval", SUPERVISED, "--weights", str(trained_teacher), "--data", "digits", "--dtype", "float64",
              "--json"]
    in_julia = run_json(common + ["--backend", "julia"], capsys)
    in_torch = run_json(common + ["--backend", "torch"], capsys)
    assert in_julia["total"] == pytest.approx(in_torch["total"], rel=1e-10)
    assert in_julia["accuracy"] == in_torch["accuracy"]


# ----------------------------------------------------------------------------- train options


def test_train_options_history_plots_and_validation(tmp_path, capsys):
    cols = digits("train")[0]
    train_file, val_file = tmp_path / "train.npz", tmp_path / "val.npz"
    np.savez(train_file, image=cols["image"][:200], label=cols["label"][:200])
    np.savez(val_file, image=cols["image"][200:290], label=cols["label"][200:290])
    out, history, plots = tmp_path / "w.safetensors", tmp_path / "history.json", tmp_path / "plots"
    assert dlearn(["train", SUPERVISED, "--data", str(train_file), "--val-data", str(val_file), "--epochs", "2",
                   "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05", "--weight-decay", "1e-4",
                   "--dtype", "float64", "--device", "cpu", "--history", str(history), "--plot", str(plots),
                   "--weights-out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "sgd on cpu, float64" in text and f"held-out ({val_file}" in text
    assert {str(v.dtype) for v in read_safetensors(out).values()} == {"float64"}
    doc = json.loads(history.read_text())
    assert doc["equations"] == ["classifier(x) = y"] and doc["optimizer"] == "sgd"
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    assert len(doc["steps"]) == 2 * 4 and [s["epoch"] for s in doc["steps"]] == [1] * 4 + [2] * 4  # 200 rows / 64
    assert all(set(e["train"]) == {"total", "classifier(x) = y"} for e in doc["epochs"])
    # per step each equation's loss; with one equation of weight 1 it is the total, and each epoch's mean is
    # the mean of its steps' values
    assert all(set(st["equations"]) == {"classifier(x) = y"} for st in doc["steps"])
    for st in doc["steps"]:
        assert st["equations"]["classifier(x) = y"] == pytest.approx(st["total"], rel=1e-12)
    for e in doc["epochs"]:
        per_step = [st["equations"]["classifier(x) = y"] for st in doc["steps"] if st["epoch"] == e["epoch"]]
        assert e["train"]["classifier(x) = y"] == pytest.approx(np.mean(per_step), rel=1e-9)
    # the last held-out entry is what the NumPy reference computes from the written weights
    last = doc["epochs"][-1]["validation"]
    assert last["examples"] == 90
    capsys.readouterr()
    ref = run_json(["eval", SUPERVISED, "--weights", str(out), "--data", str(val_file), "--backend", "reference",
                    "--json"], capsys)
    assert last["total"] == pytest.approx(ref["total"], rel=1e-9)
    assert last["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-12)
    assert sorted(p.name for p in plots.iterdir()) == ["supervised-0-classifier_x_y.png"]
    assert (plots / "supervised-0-classifier_x_y.png").read_bytes()[:4] == b"\x89PNG"


def test_train_without_validation_data_has_no_held_out_part(tmp_path, capsys):
    cols = digits("train")[0]
    train_file = tmp_path / "train.npz"
    np.savez(train_file, image=cols["image"][:100], label=cols["label"][:100])
    history = tmp_path / "h.json"
    assert dlearn(["train", SUPERVISED, "--data", str(train_file), "--epochs", "1", "--optimizer", "adamw",
                   "--history", str(history), "--weights-out", str(tmp_path / "w.safetensors"), "--quiet"]) == 0
    assert "held-out" not in capsys.readouterr().out
    doc = json.loads(history.read_text())
    assert doc["validation"] is None and doc["epochs"][0]["validation"] is None


def test_history_per_step_losses_per_equation_add_up_to_the_total(tmp_path, capsys):
    # distillation: two automatic equations (weight 1) and the explicit "distill" (weight 0.9, from the file)
    cols = digits("train")[0]
    train_file, history = tmp_path / "train.npz", tmp_path / "h.json"
    np.savez(train_file, image=cols["image"][:128], label=cols["label"][:128])
    diagram = str(EXAMPLES / "distillation.json")
    assert dlearn(["train", diagram, "--data", str(train_file), "--epochs", "2", "--dtype", "float64",
                   "--history", str(history), "--weights-out", str(tmp_path / "w.safetensors"), "--quiet"]) == 0
    capsys.readouterr()
    doc = json.loads(history.read_text())
    explicit = {e["name"]: e.get("weight", 1.0) for e in json.loads(Path(diagram).read_text())["equations"]["explicit"]}
    assert len(doc["equations"]) >= 2 and "distill" in doc["equations"]
    assert len(doc["steps"]) == 2 * 2  # 128 rows / 64
    for st in doc["steps"]:
        assert list(st["equations"]) == doc["equations"]
        weighted = sum(explicit.get(name, 1.0) * v for name, v in st["equations"].items())
        assert st["total"] == pytest.approx(weighted, rel=1e-12)
    for e in doc["epochs"]:
        for name in doc["equations"]:
            per_step = [st["equations"][name] for st in doc["steps"] if st["epoch"] == e["epoch"]]
            assert e["train"][name] == pytest.approx(np.mean(per_step), rel=1e-9)


def test_train_option_errors_write_nothing(tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    base = ["train", SUPERVISED, "--data", "digits", "--epochs", "1", "--weights-out", str(out), "--quiet"]
    if not torch.cuda.is_available():
        assert dlearn(base + ["--device", "cuda"]) == 1
        err = capsys.readouterr().err
        assert "--device cuda" in err and "no CUDA device" in err
    for bad in (["--device", "tpu"], ["--optimizer", "lbfgs"], ["--dtype", "float16"], ["--weight-decay", "-1"],
                ["--momentum", "1.5"]):
        with pytest.raises(SystemExit) as e:
            dlearn(base + bad)
        assert e.value.code == 2
    capsys.readouterr()
    assert dlearn(base + ["--momentum", "0.9"]) == 2  # with adam
    assert "--momentum is for --optimizer sgd" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert dlearn(base + ["--plot", str(tmp_path / "afile")]) == 1
    assert "--plot" in capsys.readouterr().err
    assert dlearn(base + ["--history", str(tmp_path / "nowhere" / "h.json")]) == 1
    assert "--history" in capsys.readouterr().err
    assert dlearn(base + ["--val-data", "digits:halves"]) == 1
    assert "[batch-missing-column]" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# ----------------------------------------------------------------------------- distillation end to end


def test_distillation_end_to_end_by_command_line(trained_teacher, tmp_path, capsys):
    """The README's main regime: train the teacher, rename its weights, distil a student, evaluate both."""
    teacher = tmp_path / "teacher.safetensors"
    student = tmp_path / "student.safetensors"
    assert dlearn(["weights", "rename", str(trained_teacher), "classifier=teacher", "-o", str(teacher)]) == 0
    assert dlearn(["train", DISTILLATION, "--data", "digits", "--epochs", "2", "--batch-size", "128", "--lr", "0.01",
                   "--init", f"teacher={teacher}", "--weights-out", str(student), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "held-out" in text and "acc[" in text
    # the frozen teacher came through training unchanged
    saved, given = read_safetensors(student), read_safetensors(teacher)
    assert all(np.array_equal(saved[k], v) for k, v in given.items())
    # the same result with the teacher taken straight from the classifier's file
    again = tmp_path / "again.safetensors"
    assert dlearn(["train", DISTILLATION, "--data", "digits", "--epochs", "2", "--batch-size", "128", "--lr", "0.01",
                   "--init", f"teacher={trained_teacher}:classifier", "--weights-out", str(again), "--quiet"]) == 0
    assert all(np.array_equal(read_safetensors(again)[k], v) for k, v in saved.items())
    capsys.readouterr()
    teacher_eval = run_json(["eval", SUPERVISED, "--weights", str(trained_teacher), "--data", "digits", "--json"],
                            capsys)
    student_eval = run_json(["eval", DISTILLATION, "--weights", str(student), "--data", "digits", "--json"], capsys)
    student_accuracy, _ = independent_accuracy_and_ce(DISTILLATION, "student", student)
    assert student_eval["accuracy"]["student(x) = y"] == pytest.approx(student_accuracy, abs=1e-12)
    assert "distill" not in student_eval["accuracy"]  # its rhs is the teacher's output, not a label column
    assert teacher_eval["accuracy"]["classifier(x) = y"] > 0.6  # chance is 0.1
    assert student_accuracy > 0.3


def test_train_when_no_equation_reaches_a_trainable_arrow(tmp_path, capsys):
    doc = json.loads(Path(SUPERVISED).read_text())
    doc["arrows"][2]["trainable"] = False
    doc["objects"].append({"name": "Z", "kind": "tensor", "shape": [3], "dtype": "float32"})
    doc["arrows"].append({"name": "unused", "kind": "model", "source": "X", "target": "Z", "trainable": True,
                          "architecture": {"layers": [{"type": "linear", "in_features": 64, "out_features": 3}]}})
    doc["equations"] = {"automatic": True, "explicit": [{"lhs": "classifier(x)", "rhs": "y"}]}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "w.safetensors"
    assert dlearn(["train", str(path), "--data", "digits", "--epochs", "1", "--weights-out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot train") and "trainable parameter" in err and not out.exists()
