"""The PyTorch backend: a learning diagram compiled to one ``nn.Module`` whose output is the loss.

    from diagrammatic_learning.torch_backend import compile, fit
    m = compile("supervised.json")          # a CompiledDiagram (an nn.ModuleDict of the model arrows)
    loss = m({"image": x, "label": y})      # the total loss, a 0-d tensor
    history = fit(m, loader, epochs=5)      # Adam over the trainable arrows, progress bar, checkpoints
    m.save_weights("weights.safetensors")   # canonical names, e.g. classifier.layers.0.weight
    d = compile("distillation.json")        # a fresh teacher and student ...
    d.load_arrow_weights("teacher", "weights.safetensors", source_arrow="classifier")  # ... then one arrow loaded

Importing this package does not import torch: each name loads its module (and torch) on first
use, so that the CLI's parser and the format core stay free of torch, and a program that also
uses Julia can start juliacall first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .architecture import ArchitectureModule, build_module
    from .compiler import CompiledDiagram, Evaluation, compile
    from .distributed import DistributedOptions, RankFailed
    from .training import History, fit, mean_losses
    from .weights import load_arrow_module

_WHERE = {"ArchitectureModule": "architecture", "build_module": "architecture", "CompiledDiagram": "compiler",
          "Evaluation": "compiler", "compile": "compiler", "History": "training", "fit": "training",
          "mean_losses": "training", "load_arrow_module": "weights", "DistributedOptions": "distributed",
          "RankFailed": "distributed"}

__all__ = ["ArchitectureModule", "CompiledDiagram", "DistributedOptions", "Evaluation", "History", "RankFailed",
           "build_module", "compile", "fit", "load_arrow_module", "mean_losses"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
