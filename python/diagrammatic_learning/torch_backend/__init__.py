"""The PyTorch backend: a learning diagram compiled to one ``nn.Module`` whose output is the loss.

    from diagrammatic_learning.torch_backend import compile, fit
    m = compile("supervised.json")          # a CompiledDiagram (an nn.ModuleDict of the model arrows)
    loss = m({"image": x, "label": y})      # the total loss, a 0-d tensor
    history = fit(m, loader, epochs=5)      # Adam over the trainable arrows, progress bar, checkpoints
    m.save_weights("weights.safetensors")   # canonical names, e.g. classifier.layers.0.weight
"""

from .architecture import ArchitectureModule, build_module
from .compiler import CompiledDiagram, Evaluation, compile
from .training import History, fit, mean_losses
from .weights import load_arrow_module

__all__ = ["ArchitectureModule", "CompiledDiagram", "Evaluation", "History", "build_module", "compile", "fit",
           "load_arrow_module", "mean_losses"]
