"""The gradient of a compiled diagram's loss (SPEC §9.1), under canonical parameter names.

Used by the conformance runner and the suite's generator: one evaluation,
then ``torch.autograd.grad`` of the total with respect to every parameter of
every trainable architecture arrow (a parameter no equation reaches gets
zeros). The model's mode is the caller's: the comparable gradient is the one
in evaluation mode (``model.eval()``), where dropout is the identity.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .compiler import CompiledDiagram, Evaluation


def trainable_parameters(model: CompiledDiagram) -> dict[str, torch.nn.Parameter]:
    """Canonical name → parameter, for the architecture arrows that are trainable in the diagram."""
    out: dict[str, torch.nn.Parameter] = {}
    for arrow in model.diagram.model_arrows():
        if arrow.trainable and arrow.architecture is not None:
            for key, p in model[arrow.name].named_parameters():
                out[f"{arrow.name}.{key}"] = p
    return out


def loss_gradients(model: CompiledDiagram, batch: Mapping[str, Any]) -> tuple[Evaluation, dict[str, torch.Tensor]]:
    """The evaluation of ``batch`` and the gradient of its total, canonical name → tensor of the parameter's shape.

    The gradient is taken with ``torch.autograd.grad`` (nothing accumulates in
    ``.grad``); parameters of frozen arrows are left out, and so are external
    arrows' (they are not in weights files, SPEC §8). A parameter of a trainable
    arrow that does not require gradients here (``freeze`` was called on it)
    gets zeros, like one that no equation reaches.
    """
    params = trainable_parameters(model)
    with torch.enable_grad():
        ev = model.evaluate(batch)
        wanted = [p for p in params.values() if p.requires_grad]
        found = iter(torch.autograd.grad(ev.total, wanted, allow_unused=True) if wanted and ev.total.requires_grad
                     else [None] * len(wanted))
    grads: dict[str, torch.Tensor] = {}
    for name, p in params.items():
        g = next(found) if p.requires_grad else None
        grads[name] = torch.zeros_like(p) if g is None else g
    return ev, grads
