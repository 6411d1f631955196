"""What every way of running a compiled diagram shares: the equations as addends, and the program's form.

``equation_pieces`` splits the equations into the addends of the total: one
equation alone, or a group of ``GROUP_MIN`` or more with the same distance,
object shape (kind, shape, classes, dtype), data object and right-hand
encoding, computed by one batched distance (``batched_distances.py``). A
``Program`` is ``run(model, batch, mode)``, written out as code
(``lowering``) or interpreted (``interpreter``); ``mode`` says what it returns:

- ``FORWARD``: the total loss;
- ``LOSSES``: the total and a detached vector ``[total, d₀, d₁, …]``;
- ``EVALUATE``: the total, every distance and every term's value;
- ``ROWS``: the total and what ``fit`` records of a step: the same numbers as
  ``LOSSES``, as a tuple of detached 0-d tensors ``(total, d₀, d₁, …)`` when
  every equation is computed alone (no kernel and no ``no_grad`` block per
  step: ``fit`` stacks a whole epoch's rows at once), else ``LOSSES``' vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch.nn.modules import module as _module

from .batched_distances import batched_distance_fn
from .distances import distance_fn

if TYPE_CHECKING:  # pragma: no cover
    from .compiler import CompiledDiagram

FORWARD, LOSSES, EVALUATE, ROWS = range(4)
GROUP_MIN = 4          # equations sharing a distance computed in one kernel from this many on


def no_global_hooks() -> bool:
    """No module hook registered for every module, and no ``torch.jit.trace`` under way (see ``calls_only_forward``)."""
    return not (_module._global_backward_pre_hooks or _module._global_backward_hooks
                or _module._global_forward_hooks or _module._global_forward_pre_hooks
                or torch._C._get_tracing_state())


def calls_only_forward(module: torch.nn.Module) -> bool:
    """Whether calling ``module`` does nothing but call its ``forward`` when ``no_global_hooks()``: no hook of its
    own and no ``module.compile()`` (``nn.Module._call_impl``'s fast path)."""
    return module._compiled_call_impl is None and not (module._forward_hooks or module._forward_pre_hooks
                                                       or module._backward_hooks or module._backward_pre_hooks)


@dataclass
class Program:
    """``run(model, batch, mode)`` of one lowering, and the source it was made from (None if interpreted).

    ``traced_source``: the source of ``run_traced``, which written code hands over to while ``torch.compile`` or
    ``torch.export`` traces (``lowering.write``).
    """

    run: Callable[[Any, Any, int], Any]
    source: str | None
    traced_source: str | None = None


@dataclass(frozen=True)
class Piece:
    """One addend of the total: a single equation (``group`` None) or a group computed by one kernel."""

    equations: tuple[int, ...]   # positions in the plan's equation order
    fn: Callable[..., torch.Tensor]
    weights: tuple[float, ...]

    @property
    def group(self) -> bool:
        return len(self.equations) > 1


def equation_pieces(model: "CompiledDiagram") -> list[Piece]:
    """The equations as addends of the total, in the order of each addend's first equation."""
    d, plan, dtype = model.diagram, model._plan, model.dtype
    keys: dict[Any, list[int]] = {}
    known: dict[tuple, Any] = {}  # one key per object, distance, data object and encoding, made once
    for pos, e in enumerate(plan.equations):
        eq = e.equation
        short = (eq.object, id(eq.distance), eq.data_object, e.rhs_encoding)  # the plan keeps each distance alive
        key = known.get(short)
        if key is None:
            obj = d.objects[eq.object]  # objects of one kind, shape, classes and dtype have values of one shape
            kind = (type(obj).__name__, obj.shape, getattr(obj, "classes", None), getattr(obj, "dtype", None))
            key = (eq.distance.name, repr(sorted(eq.distance.params.items())), kind, eq.data_object, e.rhs_encoding)
            known[short] = key
        keys.setdefault(key, []).append(pos)
    grouped = {members[0]: members for members in keys.values() if len(members) >= GROUP_MIN}
    inside = {pos for members in grouped.values() for pos in members}
    pieces: list[Piece] = []
    for pos, e in enumerate(plan.equations):
        eq = e.equation
        if pos in grouped:
            members = grouped[pos]
            fn = batched_distance_fn(eq.distance, d.objects[eq.object], e.rhs_encoding, dtype)
            pieces.append(Piece(tuple(members), fn, tuple(float(plan.equations[i].equation.weight) for i in members)))
        elif pos not in inside:
            fn = distance_fn(eq.distance, d.objects[eq.object], e.rhs_encoding, dtype)
            pieces.append(Piece((pos,), fn, (float(eq.weight),)))
    return pieces
