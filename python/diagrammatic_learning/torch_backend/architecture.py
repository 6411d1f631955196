"""An architecture (SPEC §4) as a plain PyTorch module: input branches, a combine step, a trunk.

The module's ``state_dict`` keys are the path part of the canonical parameter
names (SPEC §8): ``layers.<i>.<param>`` and ``inputs.<k>.<i>.<param>``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..diagram import Architecture, Layer
from .layer_modules import build_layer
from .registration import init_module, module_list, quiet, sequential, set_child


def combine(kind: str, values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Join the branch outputs of a product model: ``concat``, ``add`` or ``prepend`` (SPEC §4)."""
    if kind == "concat":
        return torch.cat(tuple(values), dim=-1)
    if kind == "add":
        total = values[0]
        for v in values[1:]:
            total = total + v
        return total
    if kind == "prepend":  # [B, F] and [B, L, F] → [B, L+1, F]
        first, rest = values
        return torch.cat((first.unsqueeze(1), rest), dim=1)
    raise ValueError(f"unknown combine {kind!r}")


def _sequential(layers: Sequence[Layer], dtype: torch.dtype) -> nn.Sequential:
    return sequential(build_layer(layer, dtype) for layer in layers)


class ArchitectureModule(nn.Module):
    """A model arrow's network: ``forward(*inputs)`` takes one batch per source, in source order."""

    def __init__(self, architecture: Architecture, dtype: torch.dtype = torch.float32):
        fast = quiet()  # state set and children registered directly (registration.py)
        if fast:
            init_module(self)
        else:
            super().__init__()
        self.__dict__["combine"] = architecture.combine
        # registered before `layers` so that state_dict order is the canonical order
        set_child(self, "inputs", None if architecture.inputs is None else
                  module_list(_sequential(branch, dtype) for branch in architecture.inputs), fast)
        set_child(self, "layers", _sequential(architecture.layers, dtype), fast)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.combine is None:
            return self.layers(xs[0])
        if self.inputs is not None:
            xs = tuple(branch(x) for branch, x in zip(self.inputs, xs))
        return self.layers(combine(self.combine, xs))


def build_module(architecture: Architecture | Sequence[Layer], dtype: torch.dtype = torch.float32) -> nn.Module:
    """An architecture as an ``nn.Module`` with PyTorch's default initialisation, parameters in ``dtype``."""
    if not isinstance(architecture, Architecture):
        architecture = Architecture(tuple(architecture))
    return ArchitectureModule(architecture, dtype)
