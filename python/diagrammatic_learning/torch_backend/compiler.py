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

import torch
from torch import nn

from ..diagram import CategoricalObject, Diagram, ModelArrow
from ..equations import Equation, equations
from ..errors import DiagramError, Problem, pointer
from ..io import Source, load
from ..layers import architecture_parameter_shapes
from ..limits import check_parameter_count
from ..tensorfiles import check_weights
from .architecture import build_module
from .batch_check import BatchChecker
from .distances import distance_fn
from .functions import function_op
from .plan import Plan, build_plan
from .weights import (WeightsSource, arrow_tensors, check_tensors, copy_into, model_arrow, read_weights,
                      save_tensors, to_tensor)

Batch = Mapping[str, Any]
# step kinds of the compiled program; FUNCTION1 and MODEL1 take one argument, passed without building a list
DATA, FUNCTION, FUNCTION1, MODEL, MODEL1 = range(5)
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
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 max_parameters: int | None = None):
        super().__init__()
        check_parameter_count(diagram, max_parameters)  # before any module is built (SPEC §8)
        self._diagram = diagram
        self._equations = equations(diagram)
        self._plan: Plan = build_plan(diagram, self._equations)
        self._dtype = compute_dtype(dtype)
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._frozen = {a.name for a in diagram.model_arrows() if not a.trainable}
        self._unchecked: set[str] = set()  # external arrows whose output shape the next batch checks
        self._last: dict[str, Any] = {}  # what the last batch did: {"counts": ...}
        self._plan_counts = {name: 0 for name in diagram.arrows}
        for step in self._plan.steps:
            self._plan_counts[step.arrow] += 1
        self._equation_names = tuple(e.name for e in self._equations)
        # every data arrow's column is checked (SPEC §8), not only those the equations read
        self._check_batch = BatchChecker(diagram)
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
        """Arrow name → how many times the last forward/evaluate applied it (data arrows: columns read).

        Every step of the plan runs exactly once per batch, so these are the
        plan's counts; empty before the first batch.
        """
        return dict(self._last.get("counts", {}))

    # -- building

    def _build_ops(self) -> None:
        """The steps as flat tuples and the equations' distances; function ops and distances depend on the dtype.

        A step is ``(DATA, column, is_float)``, ``(FUNCTION, op, args)``,
        ``(FUNCTION1, op, arg)``, ``(MODEL, arrow name, args)`` or ``(MODEL1,
        arrow name, arg)``: the per-batch loop does no lookups it can avoid.
        Models are looked up by name on every batch, so ``replace`` needs no
        rebuild.
        """
        d = self._diagram
        program: list[tuple[int, Any, Any]] = []
        for step in self._plan.steps:
            one = len(step.args) == 1
            if step.kind == "data":
                program.append((DATA, step.column, step.float_column))
            elif step.kind == "function":
                op = function_op(d, d.arrows[step.arrow], self._dtype)
                program.append((FUNCTION1, op, step.args[0]) if one else (FUNCTION, op, step.args))
            else:
                program.append((MODEL1, step.arrow, step.args[0]) if one else (MODEL, step.arrow, step.args))
        self._program = tuple(program)
        # (lhs value, rhs value, distance, weight) of each equation, in equation order
        self._losses = tuple(
            (e.lhs, e.rhs, distance_fn(e.equation.distance, d.objects[e.equation.object], e.rhs_encoding,
                                       self._dtype), float(e.equation.weight))
            for e in self._plan.equations)

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
            # keys named canonically (modules#probe.layers.0.weight), as in a weights file
            problems = check_tensors(architecture_parameter_shapes(arrow.architecture),
                                     {f"{name}.{k}": v for k, v in module.state_dict().items()}, where, f"{name}.")
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
        else:
            module.train(self.training)
        if isinstance(arrow, ModelArrow) and arrow.external:
            self._unchecked.add(name)

    def _set_trainable(self, name: str, trainable: bool) -> None:
        """Whether arrow ``name`` trains: its parameters' ``requires_grad``, and its mode (SPEC §9: a frozen
        arrow is always in evaluation mode, dropout the identity; a trainable one follows ``self.training``)."""
        module = self._modules[name]
        for p in module.parameters():
            p.requires_grad_(trainable)
        module.train(self.training and trainable)

    def train(self, mode: bool = True) -> "CompiledDiagram":
        """Training mode for the trainable arrows only: frozen arrows stay in evaluation mode (SPEC §9)."""
        super().train(mode)
        for name in self._frozen:
            self._modules[name].eval()
        return self

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

    def _index_error(self, position: int, error: DiagramError) -> DiagramError:
        """An embedding's ``batch-index-range`` (raised by the model of step ``position``) restated for its column."""
        step = self._plan.steps[position]
        if error.code != "batch-index-range" or not step.int_columns:
            return error
        column = step.int_columns[0]
        return DiagramError.one("batch-index-range", f"batch#{column}",
                                f"column {column!r}, read by model {step.arrow!r}: {error.problems[0].message}")

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

    def _apply_model(self, name: str, args: list[torch.Tensor], position: int) -> torch.Tensor:
        """Apply model arrow ``name`` (step ``position`` of the plan): an external one's first call is checked."""
        module = self._modules[name]
        if name in self._unchecked:
            return self._first_external_call(name, module, args)
        try:
            return module(*args)
        except DiagramError as e:
            raise self._index_error(position, e) from None

    def _run(self, batch: Batch) -> list[torch.Tensor]:
        """Every planned term's value on one batch, in plan order.

        The loop runs before every training step, so it is written for speed:
        locals instead of attributes, and one-argument steps (most of them)
        take the first branches without building an argument list.
        """
        self._check_batch(batch)
        modules, unchecked, device, dtype = self._modules, self._unchecked, self._device, self._dtype
        values: list[torch.Tensor] = []
        append = values.append
        for kind, a, b in self._program:
            if kind == MODEL1 and a not in unchecked:
                try:
                    append(modules[a](values[b]))
                except DiagramError as e:
                    raise self._index_error(len(values), e) from None
            elif kind == DATA:
                col = batch[a]
                # the batch check vetted dtype and shape; a float column still needs the compute dtype
                if not (isinstance(col, torch.Tensor) and col.device == device and (not b or col.dtype == dtype)):
                    col = to_tensor(col, dtype if b else None, device)
                append(col)
            elif kind == FUNCTION1:
                append(a(values[b]))
            elif kind == FUNCTION:
                append(a(*[values[i] for i in b]))
            else:
                append(self._apply_model(a, [values[i] for i in (b if kind == MODEL else (b,))], len(values)))
        self._last["counts"] = self._plan_counts
        return values

    def _total(self, values: list[torch.Tensor], distances: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Σ weightₖ · distanceₖ in equation order (SPEC §6.3), 0 without equations; each distance is
        appended to ``distances`` if given (``forward`` builds no list)."""
        total: torch.Tensor | None = None
        for lhs, rhs, distance, weight in self._losses:
            term = distance(values[lhs], values[rhs])
            if distances is not None:
                distances.append(term)
            if weight != 1.0:
                term = weight * term
            total = term if total is None else total + term
        return torch.zeros((), dtype=self._dtype, device=self._device) if total is None else total

    def forward(self, batch: Batch) -> torch.Tensor:
        """The total loss on ``batch`` (column → array or tensor, batch first), a 0-d tensor."""
        return self._total(self._run(batch))

    def evaluate(self, batch: Batch) -> Evaluation:
        """The total loss, each equation's unweighted distance and each computed term's value on ``batch``."""
        values = self._run(batch)
        distances: list[torch.Tensor] = []
        total = self._total(values, distances)
        return Evaluation(total, dict(zip(self._equation_names, distances)),
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

    def load_arrow_weights(self, name: str, source: WeightsSource, source_arrow: str | None = None) -> None:
        """Load model arrow ``name``'s parameters alone from a weights file or mapping; other arrows keep theirs.

        ``source`` is a diagram's weights file (the tensors ``source_arrow.*`` are
        taken, ``source_arrow`` defaulting to ``name``; the file's other arrows are
        ignored) or a ``save_arrow`` file (keys ``layers.0.weight``). The arrow's
        tensors get SPEC §8's checks (missing, unexpected, shape, dtype, naming
        ``file#key``) before any is copied.
        """
        arrow = model_arrow(self._diagram, name, "load_arrow_weights")
        if arrow.architecture is None:
            raise DiagramError.one("external-unbound", self._arrow_pointer(name),
                                   f"model {name!r} is external: its weights are its module's, not a file's")
        tensors, where = read_weights(source)
        own, prefix = arrow_tensors(architecture_parameter_shapes(arrow.architecture), tensors, where, name,
                                    source_arrow)
        copy_into(self._modules[name], own, prefix)

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
        and shapes (weights codes, naming ``replace#name.layers.0.weight``); an external one
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
            dtype: torch.dtype | str = torch.float32, device: torch.device | str | None = None,
            max_parameters: int | None = None) -> CompiledDiagram:
    """Compile a diagram (a ``Diagram``, a path or a document) to a ``CompiledDiagram``.

    ``weights``: None (PyTorch's default initialisation), a safetensors path or a
    mapping canonical name → array/tensor, loaded all or nothing. ``modules``:
    ``{arrow name: nn.Module}`` binding every external arrow (and optionally
    replacing architecture arrows by modules with the same parameters);
    external modules are moved to ``dtype`` and ``device`` in place.
    ``max_parameters``: the most parameters the architecture models may have together
    (default ``limits.MAX_PARAMETERS``, or ``$DLEARN_MAX_PARAMETERS``); more is ``too-many-parameters``,
    decided before anything is allocated.
    """
    d = load(diagram)
    check_parameter_count(d, max_parameters)
    if weights is not None:  # checked before any module is built: a bad file costs no allocation
        tensors, where = read_weights(weights)
        check_weights(d, tensors, where)
        weights = tensors
    m = CompiledDiagram(d, modules=modules, dtype=compute_dtype(dtype), device=device, max_parameters=max_parameters)
    if weights is not None:
        m.load_weights(weights)
    return m
