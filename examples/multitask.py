"""Multi-task, few-shot learning on digits: one backbone, three heads; print held-out accuracy of each.

    python examples/multitask.py [--epochs N]

Parity and "at least 5" are learnt from every training image (data object D);
the digit itself only from 5 labelled examples per class (data object F, its
own table of 50 rows, batched beside the full one). The shared backbone lets
the two plentiful tasks shape the features the few-shot digit head reads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diagrammatic_learning.torch_backend.data import digits_columns
from diagrammatic_learning.torch_backend.recipes import evaluating, example_main, train_on_digits

DIAGRAM = Path(__file__).resolve().parent / "multitask.json"
HEADS = {"digit": ("digit_head", "label", 0.1), "parity": ("parity_head", "parity", 0.5),
         "big": ("big_head", "big", 0.5)}


def run(epochs: int = 30, batch_size: int = 64, lr: float = 3e-3, seed: int = 0, progress: bool = False) -> dict:
    """Train all heads; return the history, each head's held-out accuracy and its chance level, and the model."""
    model, history = train_on_digits(DIAGRAM, epochs, batch_size, lr, seed, progress)
    test = digits_columns("test")
    with evaluating(model):
        features = model["backbone"](torch.from_numpy(test["image"]))
        accuracy = {task: float((model[head](features).argmax(-1).numpy() == test[column]).mean())
                    for task, (head, column, _) in HEADS.items()}
    # Chance: always answering the most frequent class of the test split.
    chance = {task: float(max((test[column] == c).mean() for c in range(10))) for task, (_, column, _) in HEADS.items()}
    return {"history": history, "accuracy": accuracy, "chance": chance, "model": model}


def report(result: dict) -> None:
    for task, acc in result["accuracy"].items():
        print(f"{task:>6}: held-out accuracy {acc:.3f} (majority class {result['chance'][task]:.2f})")


if __name__ == "__main__":
    example_main("Train examples/multitask.json on digits (5 digit labels per class).", run, report, epochs=30)
