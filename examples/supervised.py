"""Supervised learning on digits: train examples/supervised.json and print held-out accuracy.

    python examples/supervised.py [--epochs N]

The diagram has one equation, ``classifier(x) = y`` (cross-entropy); training
minimises it over the training split, and the trained ``classifier`` arrow,
an ordinary ``nn.Module``, is then applied to the test images.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diagrammatic_learning.torch_backend.data import digits_columns
from diagrammatic_learning.torch_backend.recipes import evaluating, example_main, train_on_digits

DIAGRAM = Path(__file__).resolve().parent / "supervised.json"


def run(epochs: int = 15, batch_size: int = 64, lr: float = 3e-3, seed: int = 0, progress: bool = False) -> dict:
    """Train the classifier; return its history, held-out accuracy, chance level and the trained model."""
    model, history = train_on_digits(DIAGRAM, epochs, batch_size, lr, seed, progress)
    test = digits_columns("test")
    with evaluating(model):
        predicted = model["classifier"](torch.from_numpy(test["image"])).argmax(-1).numpy()
    return {"history": history, "accuracy": float((predicted == test["label"]).mean()), "chance": 0.1,
            "model": model}


def report(result: dict) -> None:
    print(f"final training loss {result['history'].epochs[-1]['total']:.4f}")
    print(f"held-out accuracy {result['accuracy']:.3f} (chance {result['chance']:.2f})")


if __name__ == "__main__":
    example_main("Train examples/supervised.json on digits.", run, report, epochs=15)
