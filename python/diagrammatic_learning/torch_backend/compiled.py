"""A diagram compiled to one PyTorch module whose forward pass is the diagram's loss (SPEC §9).

``compile`` builds a ``CompiledDiagram``: an ``nn.ModuleDict`` holding one
module per model arrow, by arrow name, so ``m["student"]`` is an ordinary
module and ``m.state_dict()`` keys are the canonical parameter names
(``student.layers.0.weight``). Everything that can be decided once (the
distinct subterms and their order, each equation's distance) is decided at
compile time; a forward pass checks the batch and runs that plan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..diagram import CategoricalObject, Diagram, ModelArrow
from ..equations import Equation, equations
from ..errors import DiagramError, Problem, pointer
from ..io import Source, load
from ..layers import architecture_parameter_shapes
from ..tensorfiles import check_batch, check_weights
from .architecture import build_module
from .distances import distance_fn
from .functions import function_op
from .plan import Plan, build_plan
from .weights import (WeightsSource, check_tensors, copy_into, model_arrow, read_weights, save_tensors,
                      to_tensor)

Batch = Mapping[str, Any]
COMPUTE_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Evaluation:
    """The loss on one batch: ``total``, each equation's unweighted distance, and every computed term's value."""

    total: torch.Tensor
    equations: dict[str, torch.Tensor]
    terms: dict[str, torch.Tensor]


def compute_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float32`` or ``torch.float64`` from a torch dtype or its name; ``bad-value`` otherwise."""
    if isinstance(dtype, str):
        dtype = COMPUTE_DTYPES.get(dtype.removeprefix("torch."), dtype)  # type: ignore[arg-type]
    if dtype not in (torch.float32, torch.float64):
        raise DiagramError.one("bad-value", "dtype", f"the compute dtype is float32 or float64, not {dtype}")
    return dtype  # type: ignore[return-value]


class CompiledDiagram(nn.ModuleDict):
    """A diagram's loss as a module: ``m(batch)`` is the total loss, a 0-d tensor.

    Children are the model arrows' modules by arrow name, in declaration order.
    External arrows' modules are children too (they train and move with the
    rest), so their own keys appear in ``state_dict`` under their arrow name;
    weights files (``save_weights``/``load_weights``) hold the architecture
    arrows only, as the spec says.

    Build one with ``compile``. ``freeze``/``unfreeze`` change only which
    parameters train (``requires_grad``), not the equations, which stay those
    of the compiled diagram; to change the loss, edit the diagram and compile
    again. ``replace`` mutates this module in place.
    """

    def __init__(self, diagram: Diagram, modules: Mapping[str, nn.Module] | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        self._diagram = diagram
        self._equations = equations(diagram)
        self._plan: Plan = build_plan(diagram, self._equations)
        self._dtype = compute_dtype(dtype)
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._frozen = {a.name for a in diagram.model_arrows() if not a.trainable}
        self._unchecked: set[str] = set()  # external arrows whose output shape the next batch checks
        self._counts: dict[str, int] = {}
        # every data arrow's column is checked (SPEC §8), not only those the equations read
        self._columns = tuple(dict.fromkeys(a.column for a in diagram.arrows.values() if a.kind == "data"))
        self._arrow_names = tuple(diagram.arrows)
        for arrow in diagram.model_arrows():
            if arrow.architecture is not None:
                self._modules[arrow.name] = build_module(arrow.architecture, self._dtype)
        self._bind(modules or {})
        for name in self._frozen:
            self._set_trainable(name, False)
        self.to(self._device)
        self._build_ops()

    # -- what it is

    @property
    def diagram(self) -> Diagram:
        return self._diagram

    @property
    def equations(self) -> list[Equation]:
        return list(self._equations)

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def application_counts(self) -> dict[str, int]:
        """Arrow name → how many times it was applied in the last forward/evaluate (data arrows: columns read)."""
        return dict(self._counts)

    # -- building

    def _build_ops(self) -> None:
        """The per-step functions and per-equation distances, which depend on the compute dtype."""
        d = self._diagram
        self._ops: dict[str, Callable[..., torch.Tensor]] = {
            s.arrow: function_op(d, d.arrows[s.arrow], self._dtype)  # type: ignore[arg-type]
            for s in self._plan.steps if s.kind == "function"}
        self._distances = [
            (e.equation.name, e.lhs, e.rhs, float(e.equation.weight),
             distance_fn(e.equation.distance, d.objects[e.equation.object], e.rhs_encoding, self._dtype))
            for e in self._plan.equations]

    def _bind(self, modules: Mapping[str, nn.Module]) -> None:
        """Bind external arrows (all of them must be given) and any replacements for architecture arrows."""
        problems: list[Problem] = []
        for name, module in modules.items():
            try:
                self._check_replacement(name, module, where="modules")
            except DiagramError as e:
                problems.extend(e.problems)
        for arrow in self._diagram.model_arrows():
            if arrow.external and arrow.name not in modules:
                problems.append(Problem("external-unbound", self._arrow_pointer(arrow.name),
                                        f"model {arrow.name!r} is external; bind it with modules={{{arrow.name!r}: "
                                        f"an nn.Module}}"))
        if problems:
            raise DiagramError(problems)
        for name, module in modules.items():
            self._install(name, module)

    def _arrow_pointer(self, name: str) -> str:
        return pointer("arrows", self._diagram.position(name))

    def _check_replacement(self, name: str, module: nn.Module, where: str) -> ModelArrow:
        arrow = model_arrow(self._diagram, name, where)
        if not isinstance(module, nn.Module):
            raise DiagramError.one("bad-value", f"{where}#{name}",
                                   f"the module for {name!r} must be a torch.nn.Module, got {type(module).__name__}")
        if arrow.architecture is not None:
            problems = check_tensors(architecture_parameter_shapes(arrow.architecture),
                                     module.state_dict(), f"{where}#{name}")
            if problems:
                raise DiagramError(problems)
        return arrow

    def _install(self, name: str, module: nn.Module) -> None:
        arrow = self._diagram.arrows[name]
        module.to(device=self._device, dtype=self._dtype)
        # written straight into _modules: an arrow may be named like a Module method ("train")
        self._modules[name] = module
        if name in self._frozen:  # a trainable module keeps the requires_grad flags it came with
            self._set_trainable(name, False)
        if isinstance(arrow, ModelArrow) and arrow.external:
            self._unchecked.add(name)

    def _set_trainable(self, name: str, trainable: bool) -> None:
        for p in self._modules[name].parameters():
            p.requires_grad_(trainable)

    def _apply(self, fn: Callable, recurse: bool = True) -> "CompiledDiagram":  # type: ignore[override]
        """Follow ``.to()``, ``.double()``, ``.cuda()``: the compute dtype and device are the parameters'."""
        super()._apply(fn, recurse)
        first = next((p for p in self.parameters() if p.is_floating_point()), None)
        if first is not None and hasattr(self, "_plan"):
            self._device = first.device
            if first.dtype != self._dtype:
                self._dtype = first.dtype
                self._build_ops()
        return self

    # -- evaluation

    def _checked_batch(self, batch: Batch) -> None:
        """SPEC §8's batch checks; index ranges are read on the CPU, so device int columns are copied."""
        view: dict[str, Any] = {}
        for column in self._columns:
            if column not in batch:
                continue
            col = batch[column]
            if isinstance(col, torch.Tensor):
                col = col.detach()
                if col.device.type != "cpu" and col.dtype == torch.int64:
                    col = col.cpu()
            elif not isinstance(col, np.ndarray):
                col = np.asarray(col)
            view[column] = col
        check_batch(self._diagram, view)

    def _column(self, batch: Batch, column: str, is_float: bool) -> torch.Tensor:
        return to_tensor(batch[column], self._dtype if is_float else None, self._device)

    def _apply_model(self, step: Any, args: list[torch.Tensor]) -> torch.Tensor:
        module = self._modules[step.arrow]
        if step.arrow in self._unchecked:
            return self._first_external_call(step.arrow, module, args)
        try:
            return module(*args)
        except DiagramError as e:
            if e.code == "batch-index-range" and step.int_columns:
                column = step.int_columns[0]
                raise DiagramError.one("batch-index-range", f"batch#{column}",
                                       f"column {column!r}, read by model {step.arrow!r}: "
                                       f"{e.problems[0].message}") from None
            raise

    def _first_external_call(self, name: str, module: nn.Module, args: list[torch.Tensor]) -> torch.Tensor:
        """Call an external module and check its output against the target object (``external-shape``)."""
        target = self._diagram.objects[self._diagram.arrows[name].target]
        want = tuple(target.shape) + ((target.classes,) if isinstance(target, CategoricalObject) else ())
        batch = args[0].shape[0]
        given = ", ".join(str(list(a.shape)) for a in args)
        try:
            out = module(*args)
        except DiagramError:
            raise
        except Exception as e:
            raise DiagramError.one("external-shape", self._arrow_pointer(name),
                                   f"external model {name!r} failed on inputs of shape {given}: {e}") from e
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or tuple(out.shape) != (batch,) + want:
            got = (f"a {out.dtype} tensor of shape {list(out.shape)}" if isinstance(out, torch.Tensor)
                   else type(out).__name__)
            raise DiagramError.one("external-shape", self._arrow_pointer(name),
                                   f"external model {name!r} returned {got} for inputs of shape {given}; "
                                   f"it must return floats of shape {[batch] + list(want)}")
        self._unchecked.discard(name)
        return out.to(self._dtype)

    def _run(self, batch: Batch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every planned term's value and every equation's unweighted distance on one batch."""
        self._checked_batch(batch)
        counts = dict.fromkeys(self._arrow_names, 0)
        values: list[torch.Tensor] = []
        for step in self._plan.steps:
            counts[step.arrow] += 1
            if step.kind == "data":
                values.append(self._column(batch, step.column, step.float_column))  # type: ignore[arg-type]
                continue
            args = [values[i] for i in step.args]
            if step.kind == "function":
                values.append(self._ops[step.arrow](*args))
            else:
                values.append(self._apply_model(step, args))
        self._counts = counts
        distances = [fn(values[lhs], values[rhs]) for _, lhs, rhs, _, fn in self._distances]
        return values, distances

    def _total(self, distances: list[torch.Tensor]) -> torch.Tensor:
        """Σ weightₖ · distanceₖ in equation order (SPEC §6.3); 0 without equations."""
        total: torch.Tensor | None = None
        for (_, _, _, weight, _), d in zip(self._distances, distances):
            term = d if weight == 1.0 else weight * d
            total = term if total is None else total + term
        return torch.zeros((), dtype=self._dtype, device=self._device) if total is None else total

    def forward(self, batch: Batch) -> torch.Tensor:
        """The total loss on ``batch`` (column → array or tensor, batch first), a 0-d tensor."""
        return self._total(self._run(batch)[1])

    def evaluate(self, batch: Batch) -> Evaluation:
        """The total loss, each equation's unweighted distance and each computed term's value on ``batch``."""
        values, distances = self._run(batch)
        return Evaluation(self._total(distances),
                          {name: d for (name, *_), d in zip(self._distances, distances)},
                          {step.text: v for step, v in zip(self._plan.steps, values)})

    # -- weights

    def _architecture_arrows(self) -> list[str]:
        return [a.name for a in self._diagram.model_arrows() if a.architecture is not None]

    def weights(self) -> dict[str, torch.Tensor]:
        """The architecture arrows' parameters by canonical name (what a weights file holds)."""
        return {f"{name}.{key}": t for name in self._architecture_arrows()
                for key, t in self._modules[name].state_dict().items()}

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write the weights file (SPEC §8): canonical names, the compute dtype, atomically."""
        save_tensors(self.weights(), path)

    def load_weights(self, source: WeightsSource) -> None:
        """Load a weights file or a mapping name → array/tensor; every key is checked before any is copied."""
        tensors, where = read_weights(source)
        check_weights(self._diagram, tensors, where)
        for name in self._architecture_arrows():
            copy_into(self._modules[name], tensors, f"{name}.")

    # -- arrows

    def freeze(self, name: str) -> None:
        """Stop training model arrow ``name`` (its parameters stop requiring gradients; it still passes them on)."""
        model_arrow(self._diagram, name)
        self._frozen.add(name)
        self._set_trainable(name, False)

    def unfreeze(self, name: str) -> None:
        """Train model arrow ``name`` again."""
        model_arrow(self._diagram, name)
        self._frozen.discard(name)
        self._set_trainable(name, True)

    def replace(self, name: str, module: nn.Module) -> "CompiledDiagram":
        """Swap model arrow ``name``'s module in place and return ``self``.

        An architecture arrow's replacement must have the same parameter names
        and shapes (weights codes, naming ``replace#name``); an external one
        any module, whose output is checked on the next batch. It is moved to
        this diagram's dtype and device and keeps the arrow's frozen state.
        Optimizers built before hold the old parameters.
        """
        self._check_replacement(name, module, where="replace")
        self._install(name, module)
        return self

    def arrow_state(self, name: str) -> dict[str, torch.Tensor]:
        """One model arrow's parameters, keys without the ``name.`` prefix (``layers.0.weight``)."""
        model_arrow(self._diagram, name)
        return dict(self._modules[name].state_dict())

    def save_arrow(self, name: str, path: str | os.PathLike) -> None:
        """Write one arrow's parameters to a safetensors file (keys as in ``arrow_state``), atomically."""
        save_tensors(self.arrow_state(name), path)


def compile(diagram: Source, weights: WeightsSource | None = None, modules: Mapping[str, nn.Module] | None = None,
            dtype: torch.dtype | str = torch.float32, device: torch.device | str | None = None) -> CompiledDiagram:
    """Compile a diagram (a ``Diagram``, a path or a document) to a ``CompiledDiagram``.

    ``weights``: None (PyTorch's default initialisation), a safetensors path or a
    mapping canonical name → array/tensor, loaded all or nothing. ``modules``:
    ``{arrow name: nn.Module}`` binding every external arrow (and optionally
    replacing architecture arrows by modules with the same parameters);
    external modules are moved to ``dtype`` and ``device`` in place.
    """
    d = load(diagram)
    m = CompiledDiagram(d, modules=modules, dtype=compute_dtype(dtype), device=device)
    if weights is not None:
        m.load_weights(weights)
    return m
