"""A compiled diagram's plan run by a loop, for plans too large to be worth writing out as code.

Same numbers as the written code (``lowering``), to float rounding, with two
changes of shape that pay at this size (thousands of steps and equations):

- **Applications of one model batched.** When an architecture model is
  applied to several terms, the applications that can run together (the same
  level in an as-late-as-possible schedule: none needs another's result) run
  as one call on their arguments concatenated along the batch axis, and the
  result is split again. Every layer of the vocabulary treats the examples of
  a batch independently (SPEC §4), so each application's values are those of
  a call alone; one call instead of many saves the per-call overhead of the
  modules and of autograd. External modules, modules with a hook (on the
  model, on any of its layers, or global) or a ``module.compile()``, and the
  first failure of a batched call (to report the step it came from) run one
  application at a time.
- **Groups of equations gathered.** A group of equations (``pieces``) stacks
  each distinct value of a side once and gathers the side from it: a value
  shared by many equations is stacked once, and its gradient summed by one
  ``index_add``. Large groups go ``CHUNK`` equations at a time, each chunk
  checkpointed, so that the gathered sides are never all in memory;
  per-equation distances are made only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.utils.checkpoint import checkpoint

from ..errors import DiagramError
from .architecture import ArchitectureModule
from .functions import function_op
from .pieces import EVALUATE, FORWARD, LOSSES, ROWS, Piece, Program, calls_only_forward, no_global_hooks
from .weights import to_tensor

if TYPE_CHECKING:  # pragma: no cover
    from .compiler import CompiledDiagram


CHUNK = 4096  # equations of a group whose gathered sides are made at once


def _gathered_distances(fn: Any, lhs_values: torch.Tensor, lhs: torch.Tensor, rhs_values: torch.Tensor,
                        rhs: torch.Tensor) -> torch.Tensor:
    return fn(lhs_values[lhs], rhs_values[rhs])


def _group_distances(fn: Any, lhs_values: torch.Tensor, lhs: torch.Tensor, rhs_values: torch.Tensor,
                     rhs: torch.Tensor) -> torch.Tensor:
    """The ``[k]`` distances of a group from its stacked distinct values and each side's indices into them.

    Up to ``CHUNK`` equations at a time; when gradients are wanted each chunk is checkpointed (its gathered
    sides made again in the backward pass instead of kept), so memory holds the distinct values and one
    chunk, not every equation's two sides: 200,000 equations over 37,000 values need megabytes, not a GB.
    """
    if len(lhs) <= CHUNK:
        return _gathered_distances(fn, lhs_values, lhs, rhs_values, rhs)
    keep = torch.is_grad_enabled() and (lhs_values.requires_grad or rhs_values.requires_grad)
    parts = []
    for start in range(0, len(lhs), CHUNK):
        args = (fn, lhs_values, lhs[start:start + CHUNK], rhs_values, rhs[start:start + CHUNK])
        parts.append(checkpoint(_gathered_distances, *args, use_reentrant=False) if keep
                     else _gathered_distances(*args))
    return torch.cat(parts)


def _latest_levels(consumers: list[list[int]]) -> list[int]:
    """Each step's level in an as-late-as-possible schedule: one less than its earliest consumer's."""
    top = len(consumers)
    level = [top] * top
    for i in range(top - 1, -1, -1):  # steps come children first: consumers are seen before
        if consumers[i]:
            level[i] = min(level[c] for c in consumers[i]) - 1
    return level


class Interpreter:
    """Runs one model's plan step by step (see the module's docstring); ``program()`` is its ``Program``."""

    def __init__(self, model: "CompiledDiagram", pieces: list[Piece]):
        m, d = model, model.diagram
        steps = m._plan.steps
        self.pieces = pieces
        self.n_steps = len(steps)
        self.n_equations = len(m._plan.equations)
        self.equations = m._plan.equations
        consumers: list[list[int]] = [[] for _ in steps]
        for i, step in enumerate(steps):
            for a in step.args:
                consumers[a].append(i)
        level = _latest_levels(consumers)
        batchable = {name for name, module in m._modules.items()
                     if type(module) is ArchitectureModule and name not in m._unchecked}
        together: dict[tuple[int, str], list[int]] = {}
        for i, step in enumerate(steps):
            if step.kind == "model" and step.arrow in batchable:
                together.setdefault((level[i], step.arrow), []).append(i)
        # (level, first step, unit): a unit is ("data", i, column, float), ("function", i, op, args),
        # ("model", i, arrow, args) or ("models", positions, arrow, [args, ...])
        units: list[tuple[int, int, tuple]] = []
        for i, step in enumerate(steps):
            if step.kind == "data":
                units.append((level[i], i, ("data", i, step.column, step.float_column)))
            elif step.kind == "function":
                units.append((level[i], i, ("function", i, function_op(d, d.arrows[step.arrow], m.dtype),
                                            step.args)))
            else:
                group = together.get((level[i], step.arrow))
                if group is None or len(group) == 1:
                    units.append((level[i], i, ("model", i, step.arrow, step.args)))
                elif group[0] == i:
                    units.append((level[i], i, ("models", tuple(group), step.arrow,
                                                [steps[j].args for j in group])))
        units.sort(key=lambda u: (u[0], u[1]))
        self.units = [u for _, _, u in units]
        # written again when the model moves (``_build_ops``), so the indices live on its device
        self.sides = {k: self._group_sides(p, m.device) for k, p in enumerate(pieces) if p.group}
        order = [e for p in pieces for e in p.equations]  # the pieces' distances, one after the other
        if order == sorted(order):
            self.order = None
        else:
            where = {e: 1 + j for j, e in enumerate(order)}
            self.order = torch.tensor([0] + [where[e] for e in range(len(order))], device=m.device)

    # -- the terms

    def values(self, model: Any, batch: Any) -> list[torch.Tensor]:
        """Every step's value on ``batch``, in plan order."""
        model._check_batch(batch, model._check_values)
        dtype, device = model.dtype, model.device
        values: list[Any] = [None] * self.n_steps
        for unit in self.units:
            kind = unit[0]
            if kind == "data":
                _, i, column, is_float = unit
                col = batch[column]
                if not (isinstance(col, torch.Tensor) and col.device == device and (not is_float or col.dtype == dtype)):
                    col = to_tensor(col, dtype if is_float else None, device)
                values[i] = col
            elif kind == "function":
                _, i, op, args = unit
                values[i] = op(*[values[a] for a in args])
            elif kind == "model":
                _, i, arrow, args = unit
                values[i] = model._apply_model(arrow, [values[a] for a in args], i)
            else:
                self._apply_together(model, unit, values)
        model._last["ran"] = True
        return values

    @staticmethod
    def _apply_together(model: Any, unit: tuple, values: list[Any]) -> None:
        """One call of a model on the concatenated arguments of several applications, split back."""
        _, positions, arrow, all_args = unit
        module = model._modules[arrow]
        if (type(module) is not ArchitectureModule or arrow in model._unchecked or not no_global_hooks()
                or not all(calls_only_forward(m) for m in module.modules())):  # a hook sees each application
            for i, args in zip(positions, all_args):
                values[i] = model._apply_model(arrow, [values[a] for a in args], i)
            return
        sizes = [values[args[0]].shape[0] for args in all_args]
        joined = [torch.cat([values[args[k]] for args in all_args]) for k in range(len(all_args[0]))]
        try:
            out = module(*joined)
        except DiagramError:  # find the application that failed, and report it as the plan's step
            for i, args in zip(positions, all_args):
                values[i] = model._apply_model(arrow, [values[a] for a in args], i)
            raise
        for i, part in zip(positions, out.split(sizes)):
            values[i] = part

    # -- the equations

    def _group_sides(self, piece: Piece, device: torch.device) -> tuple[tuple[list[int], torch.Tensor], ...]:
        """Per side of a group: its distinct values (plan positions) and, per equation, its place among them."""
        eqs = [self.equations[e] for e in piece.equations]
        out = []
        for side in ([e.lhs for e in eqs], [e.rhs for e in eqs]):  # a left and a right value may differ in shape
            distinct = sorted(set(side))
            at = {v: k for k, v in enumerate(distinct)}
            out.append((distinct, torch.tensor([at[v] for v in side], device=device)))
        return tuple(out)

    def total(self, model: Any, values: list[torch.Tensor], per_equation: bool
              ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The total, each piece's distances (a ``[k]`` vector), and, if ``per_equation``, each equation's."""
        distances: list[Any] = [None] * self.n_equations if per_equation else []
        pieces: list[torch.Tensor] = []
        total: torch.Tensor | None = None
        for k, piece in enumerate(self.pieces):
            if piece.group:
                (lhs_values, lhs), (rhs_values, rhs) = self.sides[k]
                got = _group_distances(piece.fn, torch.stack([values[i] for i in lhs_values]), lhs,
                                       torch.stack([values[i] for i in rhs_values]), rhs)
                if per_equation:
                    for e, alone in zip(piece.equations, got.unbind()):
                        distances[e] = alone
                if all(x == 1.0 for x in piece.weights):
                    term = got.sum()
                else:
                    term = (got * torch.tensor(piece.weights, dtype=got.dtype, device=got.device)).sum()
            else:
                eq = self.equations[piece.equations[0]]
                got = piece.fn(values[eq.lhs], values[eq.rhs])
                if per_equation:
                    distances[piece.equations[0]] = got
                term = got if piece.weights[0] == 1.0 else piece.weights[0] * got
                got = got.reshape(1)
            pieces.append(got)
            total = term if total is None else total + term
        if total is None:
            total = torch.zeros((), dtype=model.dtype, device=model.device)
        return total, pieces, distances

    def stats(self, total: torch.Tensor, pieces: list[torch.Tensor]) -> torch.Tensor:
        """``[total, d₀, d₁, …]`` in equation order, from the pieces' distances."""
        stats = torch.cat([total.reshape(1), *pieces])
        return stats if self.order is None else stats[self.order]

    def program(self) -> Program:
        def run(model: Any, batch: Any, mode: int) -> Any:
            values = self.values(model, batch)
            total, pieces, distances = self.total(model, values, per_equation=mode == EVALUATE)
            if mode == FORWARD:
                return total
            if mode == LOSSES or mode == ROWS:  # the vector: these plans group their equations
                with torch.no_grad():
                    return total, self.stats(total, pieces)
            return total, distances, values

        return Program(run, None)
