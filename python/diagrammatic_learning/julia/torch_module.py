"""A Flux model inside a PyTorch graph: forward and input gradients computed in Julia.

Imported only when a :class:`~diagrammatic_learning.julia.FluxModel` is asked for its
``torch_module()``, so importing ``diagrammatic_learning.julia`` does not import torch (see
``runtime`` on importing juliacall before torch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


class _JuliaFunction(torch.autograd.Function):
    """Autograd for one call of a Julia model: the backward pass is Zygote's pullback in Julia.

    In training mode the pullback is taken in the forward pass and kept, so that the gradients
    use the forward pass's own Dropout mask; in evaluation mode (deterministic) the backward pass
    recomputes the forward pass instead of holding its intermediate values."""

    @staticmethod
    def forward(ctx: Any, flux_model: Any, training: bool, *inputs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.flux_model = flux_model
        ctx.training = training
        ctx.save_for_backward(*inputs)
        arrays = [x.detach().cpu().numpy() for x in inputs]
        if training and any(ctx.needs_input_grad[2:]):
            y, ctx.pullback = flux_model.forward_with_pullback(*arrays, training=True)
        else:
            y, ctx.pullback = flux_model(*arrays, training=training), None
        return torch.from_numpy(np.ascontiguousarray(y)).to(device=inputs[0].device, dtype=_float_dtype(inputs))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        inputs = ctx.saved_tensors
        output_gradient = grad_output.detach().cpu().numpy()
        if ctx.pullback is not None:
            grads = ctx.flux_model.pullback_gradients(ctx.pullback, output_gradient)
        else:
            grads = ctx.flux_model.input_gradients(output_gradient, *(x.detach().cpu().numpy() for x in inputs),
                                                   training=ctx.training)
        out: list[Any] = [None, None]
        for x, g in zip(inputs, grads):
            out.append(None if g is None or not x.is_floating_point()
                       else torch.from_numpy(np.ascontiguousarray(g)).to(device=x.device, dtype=x.dtype))
        return tuple(out)


def _float_dtype(inputs: tuple[torch.Tensor, ...]) -> torch.dtype:
    floats = [x.dtype for x in inputs if x.is_floating_point()]
    return floats[0] if floats else torch.get_default_dtype()


class JuliaModule(nn.Module):
    """``forward(*inputs)`` runs a :class:`~diagrammatic_learning.julia.FluxModel` in Julia on
    batch-first tensors, in this module's ``train()``/``eval()`` mode (Dropout active only in
    training); gradients flow back to the inputs. It has no PyTorch parameters."""

    def __init__(self, flux_model: Any):
        super().__init__()
        self.flux_model = flux_model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return _JuliaFunction.apply(self.flux_model, self.training, *inputs)

    def extra_repr(self) -> str:
        return repr(self.flux_model)
