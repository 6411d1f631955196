"""The example regimes on digits: every diagram is valid, and a short run of each script learns.

Each script's ``run`` is called with a few epochs; the test checks that the
loss went down (mean of the last steps below the mean of the first) and that
the held-out metric beats its chance level by a clear margin.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from diagrammatic_learning.cli import main as dlearn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REGIMES = ["supervised", "distillation", "multitask", "alignment", "autoencoder", "captioning", "simsiam"]


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_loss_went_down(history, window: int = 5) -> None:
    steps = [float(s) for s in history.steps]
    assert len(steps) >= 2 * window
    first, last = sum(steps[:window]) / window, sum(steps[-window:]) / window
    assert last < 0.8 * first, f"loss {first:.4f} -> {last:.4f}"


def test_every_example_diagram_is_valid(capsys):
    files = sorted(str(p) for p in EXAMPLES.glob("*.json"))
    assert [Path(f).stem for f in files] == sorted(REGIMES)
    assert dlearn(["validate", *files]) == 0
    assert capsys.readouterr().out.count(": ok") == len(REGIMES)


def test_every_example_has_a_script():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(REGIMES)


def test_supervised():
    r = load_example("supervised").run(epochs=3)
    assert_loss_went_down(r["history"])
    assert r["accuracy"] > 0.8


def test_distillation_trains_teacher_then_student():
    r = load_example("distillation").run(teacher_epochs=3, student_epochs=3)
    assert_loss_went_down(r["teacher_history"])
    assert_loss_went_down(r["student_history"])
    assert r["teacher_accuracy"] > 0.8 and r["student_accuracy"] > 0.5
    # the student's diagram has the label equation and the explicit distillation equation, weighted 0.9
    eqs = {e.name: e for e in r["student"].equations}
    assert set(eqs) == {"student(x) = y", "distill"}
    assert eqs["distill"].distance.name == "kl_div" and eqs["distill"].distance.params["temperature"] == 4.0
    assert eqs["distill"].weight == 0.9
    # the frozen teacher kept exactly the weights the supervised classifier ended with
    teacher, student = r["teacher"].state_dict(), r["student"].state_dict()
    for key, value in teacher.items():
        assert (student[key.replace("classifier.", "teacher.", 1)] == value).all()
    assert [epoch for epoch, _ in r["student_history"].evals] == [1, 2, 3]
    assert set(r["student_history"].evals[0][1]) == set(eqs) | {"total"}


def test_multitask_few_shot():
    r = load_example("multitask").run(epochs=4)
    assert_loss_went_down(r["history"])
    assert r["accuracy"]["digit"] > r["chance"]["digit"] + 0.3
    assert r["accuracy"]["parity"] > r["chance"]["parity"] + 0.2
    assert r["accuracy"]["big"] > r["chance"]["big"] + 0.2


def test_alignment():
    r = load_example("alignment").run(epochs=8)
    assert_loss_went_down(r["history"])
    m, chance = r["metrics"], r["chance"]
    assert m["accuracy_from_top"] > 0.5 and m["accuracy_from_bottom"] > 0.5
    assert m["retrieval_same_digit"] > chance["retrieval_same_digit"] + 0.3
    assert m["retrieval_same_image"] > 5 * chance["retrieval_same_image"]


def test_autoencoder_beats_the_mean_image():
    r = load_example("autoencoder").run(epochs=10)
    assert_loss_went_down(r["history"])
    assert r["mse"] < 0.8 * r["baseline_mse"]


def test_captioning():
    module = load_example("captioning")
    r = module.run(epochs=5)
    assert_loss_went_down(r["history"])
    assert r["word_accuracy"] > 0.5
    assert r["exact_match"] > r["chance"] + 0.2


def test_greedy_decoding_is_causal():
    """Word t of a greedy caption must not depend on the placeholder words at positions >= t."""
    import torch

    module = load_example("captioning")
    from diagrammatic_learning.torch_backend import compile

    torch.manual_seed(0)
    captioner = compile(EXAMPLES / "captioning.json")["captioner"].eval()
    images = torch.rand(4, 64)
    words = torch.randint(1, 16, (4, 3))
    with torch.no_grad():
        full = captioner(images, words)
        for t in range(3):
            changed = words.clone()
            changed[:, t:] = 0
            assert torch.allclose(captioner(images, changed)[:, t], full[:, t])
        assert module.greedy_captions(captioner, images).shape == (4, 3)


def test_simsiam_needs_stop_gradient():
    """Two noisy views, no labels: with stop_gradient the embedding keeps digits apart; without it, it degrades."""
    r = load_example("simsiam").run(epochs=10)
    assert_loss_went_down(r["history"])
    assert r["model"].diagram.format_version == "1.1"
    assert r["knn_accuracy"] > 0.85
    assert r["knn_accuracy"] > r["without_stop_gradient_knn_accuracy"] + 0.05
