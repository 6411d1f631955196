"""An autoencoder as the cycle X -> Z -> X on digits; print held-out reconstruction error vs the mean image.

    python examples/autoencoder.py [--epochs N]

The baseline reconstructs every test image as the mean training image; an
8-dimensional code should do far better.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from diagrammatic_learning.torch_backend import compile, fit
from diagrammatic_learning.torch_backend.data import ColumnLoader, digits, digits_columns

DIAGRAM = Path(__file__).resolve().parent / "autoencoder.json"


def run(epochs: int = 30, batch_size: int = 64, lr: float = 3e-3, seed: int = 0, progress: bool = False) -> dict:
    """Train enc and dec; return the history, held-out mse, the mean-image baseline mse and the model."""
    torch.manual_seed(seed)
    model = compile(DIAGRAM)
    train = digits("train")
    history = fit(model, ColumnLoader(train, batch_size, seed=seed), epochs=epochs, lr=lr, progress=progress)
    images = torch.from_numpy(digits_columns("test")["image"])
    model.eval()
    with torch.no_grad():
        reconstruction = model["dec"](model["enc"](images))
    mean_image = torch.from_numpy(train[0]["image"]).mean(dim=0)
    return {"history": history, "mse": torch.mean((reconstruction - images) ** 2).item(),
            "baseline_mse": torch.mean((mean_image - images) ** 2).item(), "model": model}


def main() -> None:
    parser = argparse.ArgumentParser(description="Train examples/autoencoder.json on digits.")
    parser.add_argument("--epochs", type=int, default=30)
    result = run(parser.parse_args().epochs, progress=True)
    print(f"held-out reconstruction mse {result['mse']:.4f} (mean-image baseline {result['baseline_mse']:.4f})")


if __name__ == "__main__":
    main()
