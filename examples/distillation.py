"""Knowledge distillation on digits: teacher first, then a small student; print both held-out accuracies.

    python examples/distillation.py [--teacher-epochs N] [--student-epochs N]

1. The teacher is the classifier of examples/supervised.json, trained on labels.
2. Its weights are loaded into the frozen ``teacher`` arrow of
   examples/distillation.json, whose ``student`` (64 → 16 → 10) learns from
   two equations: ``distill`` (student(x) = teacher(x), kl_div at temperature
   4, weight 0.9) and the labels (student(x) = y, cross-entropy).

``dlearn demo`` runs this file's ``run`` and plots its loss curves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diagrammatic_learning.torch_backend import compile
from diagrammatic_learning.torch_backend.data import digits_columns
from diagrammatic_learning.torch_backend.recipes import evaluating, example_main, train_on_digits

HERE = Path(__file__).resolve().parent
TEACHER_DIAGRAM = HERE / "supervised.json"
STUDENT_DIAGRAM = HERE / "distillation.json"


def _accuracy(module: torch.nn.Module, test: dict[str, np.ndarray]) -> float:
    with evaluating(module):
        predicted = module(torch.from_numpy(test["image"])).argmax(-1).numpy()
    return float((predicted == test["label"]).mean())


def _fit(model, epochs: int, batch_size: int, lr: float, seed: int, progress: bool, test: dict[str, np.ndarray]):
    """Train on the training split; after each epoch record every equation's held-out loss (``history.evals``)."""
    return train_on_digits(model, epochs, batch_size, lr, seed, progress, eval_every=1, eval_data=[test])


def run(teacher_epochs: int = 15, student_epochs: int = 25, batch_size: int = 64, lr: float = 3e-3,
        seed: int = 0, progress: bool = False) -> dict:
    """Train teacher then student; return both held-out accuracies, both histories and both models."""
    test = digits_columns("test")
    teacher, teacher_history = _fit(TEACHER_DIAGRAM, teacher_epochs, batch_size, lr, seed, progress, test)
    teacher.eval()

    student = compile(STUDENT_DIAGRAM)
    # The distillation diagram's frozen `teacher` arrow has the supervised classifier's architecture.
    student["teacher"].load_state_dict(teacher.arrow_state("classifier"))
    student, student_history = _fit(student, student_epochs, batch_size, lr, seed, progress, test)
    student.eval()
    return {
        "teacher_accuracy": _accuracy(teacher["classifier"], test),
        "student_accuracy": _accuracy(student["student"], test),
        "chance": 0.1,
        "teacher_history": teacher_history, "student_history": student_history,
        "teacher": teacher, "student": student,
    }


def report(result: dict) -> None:
    print(f"teacher held-out accuracy {result['teacher_accuracy']:.3f}")
    print(f"student held-out accuracy {result['student_accuracy']:.3f} (chance {result['chance']:.2f})")


if __name__ == "__main__":
    example_main("Distil a digit classifier into a small student.", run, report, teacher_epochs=15, student_epochs=25)
