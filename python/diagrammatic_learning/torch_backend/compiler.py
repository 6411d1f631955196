"""A diagram compiled to one PyTorch module whose forward pass is the diagram's loss (SPEC §9).

``compile`` builds a ``CompiledDiagram``: an ``nn.ModuleDict`` holding one
module per model arrow, by arrow name, so ``m["student"]`` is an ordinary
module and ``m.state_dict()`` keys are the canonical parameter names
(``student.layers.0.weight``). Everything that can be decided once (the
distinct subterms and their order, each equation's distance) is decided at
compile time, and the plan is written out as straight-line code
(``lowering.py``) that ``torch.compile(m, fullgraph=True)`` traces as one graph.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from ..diagram import CategoricalObject, Diagram, ModelArrow
from ..equations import Equation, equations
from ..errors import DiagramError, Problem, pointer
from ..fingerprint import unchanged
from ..gc_pause import gc_paused
from ..io import Source, load
from ..layers import architecture_parameter_shapes
from ..limits import check_parameter_count
from ..tensorfiles import check_weights
from .architecture import build_module
from .batch_check import BatchChecker
from .lowering import EVALUATE, FORWARD, LOSSES, ROWS, Program, embedding_columns, write
from .plan import Plan, build_plan
from .weights import (WeightsSource, arrow_tensors, check_tensors, copy_into, model_arrow, read_weights,
                      save_tensors)

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
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 max_parameters: int | None = None):
        super().__init__()
        with unchanged(diagram):  # one fingerprint for the memos read here (fingerprint.py)
            check_parameter_count(diagram, max_parameters)  # before any module is built (SPEC §8)
            self._equations = equations(diagram)
        self._diagram = diagram
        self._plan: Plan = build_plan(diagram, self._equations)
        self._dtype = compute_dtype(dtype)
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._frozen = {a.name for a in diagram.model_arrows() if not a.trainable}
        self._unchecked: set[str] = set()  # external arrows whose output shape the next batch checks
        # whether a batch ran; one key from the start: torch.compile guards a dict's keys when the code sets one
        self._last: dict[str, Any] = {"ran": False}
        self._plan_counts = {name: 0 for name in diagram.arrows}
        for step in self._plan.steps:
            self._plan_counts[step.arrow] += 1
        self._names: tuple[str, ...] | None = None  # the equations' names, written on first use
        # every data arrow's column is checked (SPEC §8), not only those the equations read, and the columns
        # embedding layers read are bounded by their tables
        self._check_batch = BatchChecker(diagram, embedding_columns(diagram, self._plan))
        self._check_values = True  # index ranges per batch; off only inside ``values_checked``
        for arrow in diagram.model_arrows():
            if arrow.architecture is not None:
                self._modules[arrow.name] = build_module(arrow.architecture, self._dtype)
        self._bind(modules or {})
        for name in self._frozen:
            self._set_trainable(name, False)
        if self._device.type != "cpu":  # built on the CPU, so that a seed gives the same weights on any device
            self.to(self._device)
        self._ready = True
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
        return dict(self._plan_counts) if self._last["ran"] else {}

    # -- building

    def _build_ops(self) -> None:
        """Write the code again: it bakes in the dtype, the device and which modules are inlined.

        Written at once (not on the next batch), so that ``torch.compile`` never traces the writing.
        """
        self._lowered: Program | None = write(self) if getattr(self, "_ready", False) else None

    def _program(self) -> Program:
        """The plan as code (``lowering.write``), written on first use after any change."""
        if self._lowered is None:
            self._lowered = write(self)
        return self._lowered

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave the generated code behind (it refers to this instance's parameters)."""
        state = self.__dict__.copy()
        state["_lowered"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._build_ops()

    @property
    def code(self) -> str | None:
        """The Python source the loss runs (``run(self, batch, mode)``); None for interpreted plans."""
        return self._program().source

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
        if hasattr(self, "_plan"):
            self._build_ops()  # the new module may not be inlinable

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
        if hasattr(self, "_plan"):
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

    def forward(self, batch: Batch) -> torch.Tensor:
        """The total loss on ``batch`` (column → array or tensor, batch first), a 0-d tensor."""
        return self._lowered.run(self, batch, FORWARD)  # type: ignore[union-attr] - written in __init__

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The total loss and a detached vector ``[total, d₀, d₁, …]`` of it and each equation's distance.

        What a training loop records, in one tensor: reading it back is one
        transfer (``fit`` does so every ``PROGRESS_REFRESH_S`` seconds).
        """
        return self._program().run(self, batch, LOSSES)

    def _step_row(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, ...]]:
        """``losses`` as ``fit`` records a step: the vector's entries as a tuple of detached 0-d tensors where
        the equations are computed one by one (``pieces.ROWS``), so that the step makes no kernel for it."""
        return self._program().run(self, batch, ROWS)

    def evaluate(self, batch: Batch) -> Evaluation:
        """The total loss, each equation's unweighted distance and each computed term's value on ``batch``."""
        total, distances, values = self._program().run(self, batch, EVALUATE)
        return Evaluation(total, dict(zip(self._equation_names(), distances)),
                          {step.text: v for step, v in zip(self._plan.steps, values)})

    def _equation_names(self) -> tuple[str, ...]:
        """The equations' names (automatic ones are ``"<lhs> = <rhs>"``: written once, when first asked for)."""
        if self._names is None:
            self._names = tuple(e.name for e in self._equations)
        return self._names

    @contextlib.contextmanager
    def values_checked(self) -> Iterator["CompiledDiagram"]:
        """Within this block batches are checked without their index ranges (SPEC §8 "Per batch").

        Only for batches cut from a data source whose every row was checked
        once against this diagram, with ``check_source`` (``ColumnLoader.for_model``
        does so; ``fit`` enters this block by itself for such a loader).
        Presence, dtypes, shapes and batch sizes are still checked per batch.
        """
        was, self._check_values = self._check_values, False
        try:
            yield self
        finally:
            self._check_values = was

    def check_source(self, columns: Mapping[str, Any], source: str = "data") -> None:
        """Check every row of a data source (column → all its rows): SPEC §8 with the embedding bounds.

        Raises ``DiagramError`` as a batch would, naming ``source#column``;
        batches cut from checked columns may then run inside ``values_checked``.
        """
        self._check_batch.check_source(columns, source)

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
    d = load(diagram)  # a copy: nothing else holds it while it compiles
    with unchanged(d):
        check_parameter_count(d, max_parameters)
        if weights is not None:  # checked before any module is built: a bad file costs no allocation
            tensors, where = read_weights(weights)
            check_weights(d, tensors, where)
            weights = tensors
        with gc_paused():
            m = CompiledDiagram(d, modules=modules, dtype=compute_dtype(dtype), device=device,
                                max_parameters=max_parameters)
    if weights is not None:
        m.load_weights(weights)
    return m
