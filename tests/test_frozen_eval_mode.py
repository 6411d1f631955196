"""SPEC §9: a frozen model arrow is always in evaluation mode (dropout off), in training too; trainable arrows
follow the training mode."""

from __future__ import annotations

import torch

from diagrammatic_learning import load
from diagrammatic_learning.torch_backend import build_module, compile, fit


def dropout_teacher_diagram(teacher_trainable: bool = False) -> dict:
    dropout_net = {"layers": [{"type": "linear", "in_features": 6, "out_features": 32},
                              {"type": "dropout", "p": 0.5},
                              {"type": "linear", "in_features": 32, "out_features": 4}]}
    return {
        "format": "learning-diagram", "format_version": "1.0",
        "objects": [{"name": "D", "kind": "data"},
                    {"name": "X", "kind": "tensor", "shape": [6], "dtype": "float32"},
                    {"name": "Y", "kind": "categorical", "classes": 4}],
        "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"},
                   {"name": "teacher", "kind": "model", "source": "X", "target": "Y",
                    "trainable": teacher_trainable, "architecture": dropout_net},
                   {"name": "student", "kind": "model", "source": "X", "target": "Y", "trainable": True,
                    "architecture": dropout_net}],
    }


def test_a_frozen_teacher_with_dropout_gives_deterministic_targets_during_training():
    torch.manual_seed(0)
    model = compile(dropout_teacher_diagram())
    assert [e.name for e in model.equations] == ["student(x) = teacher(x)"]
    batch = {"x": torch.randn(64, 6)}
    model.train()
    assert model.training and not model["teacher"].training and model["student"].training
    first, second = model.evaluate(batch), model.evaluate(batch)
    assert torch.equal(first.terms["teacher(x)"], second.terms["teacher(x)"])
    # the trainable student's dropout is on: its outputs differ between two passes
    assert not torch.equal(first.terms["student(x)"], second.terms["student(x)"])
    # the teacher's targets during training are its evaluation-mode outputs
    model.eval()
    assert torch.equal(model.evaluate(batch).terms["teacher(x)"], first.terms["teacher(x)"])

    seen: list[torch.Tensor] = []
    model["teacher"].register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    fit(model, [batch] * 3, epochs=2, progress=False)
    assert len(seen) == 6 and all(torch.equal(seen[0], t) for t in seen[1:])
    assert torch.equal(seen[0], first.terms["teacher(x)"])  # frozen: its parameters did not move either


def test_freeze_and_unfreeze_move_an_arrow_between_the_modes():
    model = compile(dropout_teacher_diagram(teacher_trainable=True))
    model.train()
    assert model["teacher"].training
    model.freeze("teacher")
    assert not model["teacher"].training and model["student"].training
    model.train()
    assert not model["teacher"].training
    model.unfreeze("teacher")
    assert model["teacher"].training
    model.eval()
    model.unfreeze("student")
    assert not model["student"].training  # unfreezing follows the diagram's mode, here evaluation


def test_a_replacement_module_takes_the_mode_of_its_arrow():
    model = compile(dropout_teacher_diagram())
    model.train()
    architecture = model.diagram.arrows["teacher"].architecture
    model.replace("teacher", build_module(architecture).train())
    assert not model["teacher"].training
    model.replace("student", build_module(architecture).eval())
    assert model["student"].training
    assert load(model.diagram).arrows["teacher"].trainable is False
