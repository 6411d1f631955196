"""The Flux.jl backend from Python, through juliacall (``pip install 'diagrammatic-learning[julia]'``).

    from diagrammatic_learning import julia
    ok, reason = julia.is_available()       # cheap: never starts Julia
    julia.start()                           # before `import torch` in programs that use both
    result = julia.FluxBackend().evaluate("diagram.json", "weights.safetensors", "batch.safetensors")
    result["total"], result["equations"]    # Σ weight · distance, and each equation's distance

Flux models: :func:`load_flux_model` reads one saved in Julia (JLD2 with ``Flux.state`` and its
architecture); :class:`FluxModel` runs it on NumPy arrays, binds it to an external arrow (in Julia,
or inside a PyTorch graph with ``torch_module()``), and converts it to a PyTorch module
(``to_torch``); ``FluxModel.from_torch`` converts the other way. :func:`torch_to_architecture`
(no Julia needed) gives a PyTorch module's architecture and canonical weights.

Nothing here imports juliacall or torch at import time.
"""

from .backend import FluxBackend, evaluate
from .flux_models import FluxModel, load_flux_model
from .runtime import JuliaUnavailable, is_available, start
from .torch_convert import architecture_from_json, architecture_to_json, architecture_to_torch, torch_to_architecture

__all__ = ["FluxBackend", "FluxModel", "JuliaUnavailable", "architecture_from_json", "architecture_to_json",
           "architecture_to_torch", "evaluate", "is_available", "load_flux_model", "start", "torch_to_architecture"]
