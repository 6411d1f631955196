"""The example scripts' one skeleton: train a diagram on the bundled digits, evaluate it, run it as a script.

    model, history = train_on_digits("examples/supervised.json", epochs=15)
    with evaluating(model):                  # evaluation mode, no gradients
        predicted = model["classifier"](images).argmax(-1)
    example_main("Train examples/supervised.json on digits.", run, report, epochs=15)

Each ``examples/<name>.py`` keeps only what is its own: the diagram, the
held-out metrics and how to print them.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from ..io import Source
from .compiler import CompiledDiagram, compile
from .data import ColumnLoader, digits
from .training import History, fit


def train_on_digits(model: CompiledDiagram | Source, epochs: int, batch_size: int = 64, lr: float = 3e-3,
                    seed: int = 0, progress: bool = False, **fit_options: Any) -> tuple[CompiledDiagram, History]:
    """Train on the digits' training split (shuffled with ``seed``) with ``fit``; return the model and its history.

    A diagram (a path, a document or a ``Diagram``) is compiled first, after
    ``torch.manual_seed(seed)``, so its initial weights are reproducible; a
    ``CompiledDiagram`` is trained as it is. ``fit_options`` go to ``fit``
    (``eval_every``, ``eval_data``, ``checkpoint_dir``, …).
    """
    if not isinstance(model, CompiledDiagram):
        torch.manual_seed(seed)
        model = compile(model)
    history = fit(model, ColumnLoader.for_model(model, digits("train"), batch_size, seed=seed), epochs=epochs, lr=lr,
                  progress=progress, **fit_options)
    return model, history


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Puts ``model`` in evaluation mode (it stays there) and computes without gradients inside the block."""
    model.eval()
    with torch.no_grad():
        yield model


def example_main(description: str, run: Callable[..., dict], report: Callable[[dict], None], **epochs: int) -> None:
    """An example's command line: one ``--NAME`` option per keyword (its default given), ``run`` with a progress
    bar, then ``report`` of what ``run`` returned. ``example_main(..., teacher_epochs=15)`` gives
    ``--teacher-epochs``."""
    parser = argparse.ArgumentParser(description=description)
    for name, default in epochs.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=default, dest=name,
                            help=f"default {default}")
    report(run(**vars(parser.parse_args()), progress=True))
