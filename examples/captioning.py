"""Captioning digits with an LSTM decoder; print greedy-decoded caption accuracy on held-out images.

    python examples/captioning.py [--epochs N]

Captions are "<digit word> <even|odd> <small|big>" (e.g. "seven odd big").
Training uses teacher forcing: the captioner reads the image and the true
words and predicts, at each step, the next word. Decoding is greedy: start
from placeholder words, and at step t keep the most likely word t. The LSTM
is causal, so the output at step t depends only on the image and words < t.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diagrammatic_learning.torch_backend.data import CAPTION_WORDS, caption_text, digits_columns
from diagrammatic_learning.torch_backend.recipes import evaluating, example_main, train_on_digits

DIAGRAM = Path(__file__).resolve().parent / "captioning.json"


def greedy_captions(captioner: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The most likely caption of each image, word by word: int64 [N, CAPTION_WORDS]."""
    words = torch.zeros(len(images), CAPTION_WORDS, dtype=torch.int64)
    for t in range(CAPTION_WORDS):
        words[:, t] = captioner(images, words)[:, t].argmax(-1)
    return words


def run(epochs: int = 30, batch_size: int = 64, lr: float = 3e-3, seed: int = 0, progress: bool = False) -> dict:
    """Train the captioner; return the history, exact-match and word accuracy, chance, examples and the model."""
    model, history = train_on_digits(DIAGRAM, epochs, batch_size, lr, seed, progress)
    test = digits_columns("test")
    truth = torch.from_numpy(test["caption_in"])
    with evaluating(model):
        decoded = greedy_captions(model["captioner"], torch.from_numpy(test["image"]))
    return {
        "history": history,
        "exact_match": (decoded == truth).all(dim=1).float().mean().item(),
        "word_accuracy": (decoded == truth).float().mean().item(),
        "chance": 0.1,  # a caption is fixed by its digit: guessing one caption is right one time in ten
        "examples": [(caption_text(decoded[i]), caption_text(truth[i])) for i in range(5)],
        "model": model,
    }


def report(result: dict) -> None:
    print(f"held-out caption exact match {result['exact_match']:.3f} (chance {result['chance']:.2f}), "
          f"word accuracy {result['word_accuracy']:.3f}")
    for decoded, truth in result["examples"]:
        print(f"  {decoded!r:<24} true: {truth!r}")


if __name__ == "__main__":
    example_main("Train examples/captioning.json on digits.", run, report, epochs=30)
