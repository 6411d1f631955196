"""Aligning two views of each digit (top half, bottom half) in one latent space; print retrieval and accuracy.

    python examples/alignment.py [--epochs N]

The equation ``align`` (enc_top(top) = enc_bottom(bottom), mse, weight 10)
pulls the two views of one digit together; the head's label equations keep
the latent informative, so the alignment cannot collapse it. Metrics on the
test split: classification accuracy of the shared head from
either view alone, and cross-view retrieval: for each top half, is the
nearest bottom half in the latent space (Euclidean) that of the same image,
or at least of the same digit?
"""

from __future__ import annotations

from pathlib import Path

import torch

from diagrammatic_learning.torch_backend.data import digits_columns
from diagrammatic_learning.torch_backend.recipes import evaluating, example_main, train_on_digits

DIAGRAM = Path(__file__).resolve().parent / "alignment.json"


def run(epochs: int = 20, batch_size: int = 64, lr: float = 3e-3, seed: int = 0, progress: bool = False) -> dict:
    """Train both encoders and the head; return the history, metrics with their chance levels, and the model."""
    model, history = train_on_digits(DIAGRAM, epochs, batch_size, lr, seed, progress)
    test = digits_columns("test")
    labels = torch.from_numpy(test["label"])
    with evaluating(model):
        z_top = model["enc_top"](torch.from_numpy(test["top"]))
        z_bottom = model["enc_bottom"](torch.from_numpy(test["bottom"]))
        nearest = torch.cdist(z_top, z_bottom).argmin(dim=1)
        metrics = {
            "accuracy_from_top": (model["head"](z_top).argmax(-1) == labels).float().mean().item(),
            "accuracy_from_bottom": (model["head"](z_bottom).argmax(-1) == labels).float().mean().item(),
            "retrieval_same_image": (nearest == torch.arange(len(labels))).float().mean().item(),
            "retrieval_same_digit": (labels[nearest] == labels).float().mean().item(),
        }
    n = len(labels)
    chance = {"accuracy_from_top": 0.1, "accuracy_from_bottom": 0.1, "retrieval_same_image": 1 / n,
              "retrieval_same_digit": 0.1}
    return {"history": history, "metrics": metrics, "chance": chance, "model": model}


def report(result: dict) -> None:
    for name, value in result["metrics"].items():
        print(f"{name:>22}: {value:.3f} (chance {result['chance'][name]:.3f})")


if __name__ == "__main__":
    example_main("Train examples/alignment.json on digit halves.", run, report, epochs=20)
