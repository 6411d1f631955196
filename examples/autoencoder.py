"""An autoencoder as the cycle X -> Z -> X on digits; print held-out reconstruction error vs the mean image.

    python examples/autoencoder.py [--epochs N]

The baseline reconstructs every test image as the mean training image; an
8-dimensional code should do far better.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diagrammatic_learning.torch_backend.data import digits, digits_columns
from diagrammatic_learning.torch_backend.recipes import evaluating, example_main, train_on_digits

DIAGRAM = Path(__file__).resolve().parent / "autoencoder.json"


def run(epochs: int = 30, batch_size: int = 64, lr: float = 3e-3, seed: int = 0, progress: bool = False) -> dict:
    """Train enc and dec; return the history, held-out mse, the mean-image baseline mse and the model."""
    model, history = train_on_digits(DIAGRAM, epochs, batch_size, lr, seed, progress)
    images = torch.from_numpy(digits_columns("test")["image"])
    with evaluating(model):
        reconstruction = model["dec"](model["enc"](images))
    mean_image = torch.from_numpy(digits("train")[0]["image"]).mean(dim=0)
    return {"history": history, "mse": torch.mean((reconstruction - images) ** 2).item(),
            "baseline_mse": torch.mean((mean_image - images) ** 2).item(), "model": model}


def report(result: dict) -> None:
    print(f"held-out reconstruction mse {result['mse']:.4f} (mean-image baseline {result['baseline_mse']:.4f})")


if __name__ == "__main__":
    example_main("Train examples/autoencoder.json on digits.", run, report, epochs=30)
