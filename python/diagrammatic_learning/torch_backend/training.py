"""Training a compiled diagram: ``fit`` is a plain loop over batches with Adam, a progress bar and checkpoints.

It uses only the public API (``evaluate``, ``save_weights``), so anything it
does a user can do in their own loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Union

import torch
from tqdm.auto import tqdm

from ..errors import DiagramError
from ..io import Source
from . import distributed as _distributed
from .compiler import CompiledDiagram, compile
from .distributed import DistributedOptions

Batch = Mapping[str, Any]
OptimizerLike = Union[torch.optim.Optimizer, Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]]
PROGRESS_REFRESH_S = 0.5  # reading losses for the bar synchronises with the device, so not every step


@dataclass
class History:
    """What ``fit`` saw: per epoch the mean loss of each equation and ``"total"``; per step the total
    (``steps``) and each equation's unweighted distance (``step_equations``, equation name → value;
    the step's total is Σ weight · distance over them, SPEC §6.3).

    ``evals`` holds ``(epoch, means)`` for each evaluation pass (``eval_every``),
    computed in evaluation mode without gradients. Under torch.distributed all
    of these are over every rank's batches (the same on every rank), and
    ``communication`` holds per epoch the seconds this rank spent in
    collectives (see ``DistributedOptions``); it stays empty in one process.
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    step_equations: list[dict[str, float]] = field(default_factory=list)
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    communication: list[float] = field(default_factory=list)


def _means(names: list[str], sums: torch.Tensor, count: int) -> dict[str, float]:
    values = (sums / count).tolist()
    out = {name: values[i + 1] for i, name in enumerate(names)}
    out["total"] = values[0]
    return out


def _table(rows: list[Any]) -> torch.Tensor:
    """Steps' rows (``CompiledDiagram._step_row``: vectors, or tuples of 0-d tensors) as one ``[steps, k]`` tensor."""
    if all(type(r) is tuple for r in rows):
        return torch.stack([x for r in rows for x in r]).view(len(rows), -1)  # one kernel for them all
    return torch.stack([torch.stack(r) if type(r) is tuple else r for r in rows])


def mean_losses(model: CompiledDiagram, data: Iterable[Batch]) -> dict[str, float]:
    """Each equation's mean distance and the mean ``"total"`` over ``data``, in evaluation mode, without gradients."""
    sums, count = _loss_sums(model, data)
    if sums is None:
        raise ValueError("the data yielded no batches")
    return _means([e.name for e in model.equations], sums, count)


def _loss_sums(model: CompiledDiagram, data: Iterable[Batch]) -> tuple[torch.Tensor | None, int]:
    """The summed losses (total first) and the number of batches, in evaluation mode, without gradients."""
    was_training = model.training
    model.eval()
    sums, count = None, 0
    try:
        with torch.no_grad():
            for batch in data:
                losses = model.losses(batch)[1]
                sums = losses if sums is None else sums + losses
                count += 1
    finally:
        model.train(was_training)
    return sums, count


class _NoBar:
    """What ``fit`` calls on a progress bar, doing nothing (no bar asked for: not even a disabled ``tqdm``)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


_NO_BAR = _NoBar()


def _optimizer(model: CompiledDiagram, optimizer: OptimizerLike | None, lr: float) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no model arrow of this diagram has trainable parameters")
    if optimizer is None:
        return torch.optim.Adam(params, lr=lr)
    return optimizer(params)


def _agreed_means(session: "_distributed.Session", model: CompiledDiagram, names: list[str],
                  data: Iterable[Batch]) -> dict[str, float]:
    """``mean_losses`` over every rank's ``data``: sums and batch counts added over the ranks."""
    sums, count = session.group.together(_loss_sums, model, data)
    if sums is None:
        sums = torch.zeros(len(names) + 1, dtype=torch.float64)
    sums, count = session.reduce_sums(sums, count)
    if count == 0:
        raise ValueError("the data yielded no batches")
    return _means(names, sums, count)


def fit(model: CompiledDiagram | Source, data: Iterable[Batch], epochs: int = 1,
        optimizer: OptimizerLike | None = None, lr: float = 1e-3, eval_every: int | None = None,
        on_epoch_end: Callable[[int, CompiledDiagram, History], None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None, progress: bool = True,
        eval_data: Iterable[Batch] | None = None,
        distributed: bool | DistributedOptions | None = None) -> History:
    """Train ``model`` on ``data`` for ``epochs`` passes; return the ``History``.

    ``model``: a ``CompiledDiagram``, or a diagram compiled with defaults.
    ``data``: an iterable of batches (column → array/tensor), iterated once per
    epoch (a ``DataLoader`` yielding column dicts, or a list).
    ``optimizer``: None (Adam with ``lr`` over the parameters that require
    gradients), an optimizer, or a function from that parameter list to one.
    ``eval_every``: every that many epochs and after the last, record
    ``mean_losses`` over ``eval_data`` (default ``data``) in ``History.evals``.
    Epochs are numbered from 1: ``on_epoch_end(epoch, model, history)`` runs
    after each, and ``checkpoint_dir/epoch-{epoch}.safetensors`` is written
    (weights file, SPEC §8) when ``checkpoint_dir`` is given.

    ``distributed``: under ``torch.distributed`` (a process group initialised,
    or started by ``torchrun``; None, the default, detects it; False never;
    ``DistributedOptions`` to set the backend and more) the trainable arrows
    train in ``DistributedDataParallel``, a ``ColumnLoader`` is sharded, the
    history is over all ranks, and only rank 0 draws the bar and writes
    checkpoints (see ``torch_backend.distributed``). Every rank must call
    ``fit``; the set of trainable arrows is fixed for the call.

    Each step reads ``model.losses`` (the total and a detached vector of the
    distances); nothing is read back to the host but every
    ``PROGRESS_REFRESH_S`` seconds and at the end of an epoch. A loader made
    by ``ColumnLoader.for_model(model, ...)`` has checked every row already, so
    its batches skip the per-batch index range check (``values_checked``).
    """
    if not isinstance(model, CompiledDiagram):
        model = compile(model)
    if epochs > 1 and iter(data) is data:
        raise ValueError("data is a one-shot iterator; pass a list or a DataLoader to train for several epochs")
    if optimizer is None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise DiagramError.one("bad-value", "lr", f"the learning rate must be a positive finite number, got {lr!r}")
    opt = _optimizer(model, optimizer, lr)
    session = _distributed.start(model, distributed)
    main = session is None or session.main
    if session is not None:
        data = session.prepare(data)
        eval_data = None if eval_data is None else session.prepare(eval_data)
    names = [e.name for e in model.equations]
    checkpoints = None if checkpoint_dir is None or not main else Path(checkpoint_dir)
    if checkpoints is not None:
        checkpoints.mkdir(parents=True, exist_ok=True)
    history = History()
    was_training = model.training
    checked = getattr(data, "checked_for", None) is model._check_batch
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            count, rows, partial, summed = 0, [], None, 0
            bar = (tqdm(total=len(data) if hasattr(data, "__len__") else None,  # type: ignore[arg-type]
                        desc=f"epoch {epoch}/{epochs}", leave=True, disable=None)  # None: on terminals, not in logs
                   if progress and main else _NO_BAR)
            shown = time.monotonic()
            with model.values_checked() if checked else contextlib.nullcontext():
                for batch in (data if session is None else session.batches(data, epoch)):
                    if session is None:
                        total, losses = model._step_row(batch)
                        if not total.requires_grad:
                            raise ValueError("the loss does not depend on any trainable parameter")
                    else:
                        total, equations = session.evaluate(batch)
                        with torch.no_grad():
                            losses = torch.stack([total.detach(), *(d.detach() for d in equations.values())])
                    opt.zero_grad(set_to_none=True)
                    total.backward()
                    opt.step()
                    rows.append(losses)  # summed when read: no kernel per step
                    count += 1
                    bar.update()
                    if progress and time.monotonic() - shown >= PROGRESS_REFRESH_S:
                        partial = _table(rows[summed:]).sum(0) + (0 if partial is None else partial)
                        summed = len(rows)
                        bar.set_postfix(_means(names, partial, count), refresh=False)
                        shown = time.monotonic()
            if not rows:
                bar.close()
                raise ValueError("the data yielded no batches")
            stacked = _table(rows)  # per step: the total, then each equation
            sums = stacked.sum(0)
            if session is not None:
                sums, count, stacked = session.reduce_epoch(sums, count, stacked)
            means = _means(names, sums, count)
            bar.set_postfix(means)
            bar.close()
            history.epochs.append(means)
            table = stacked.tolist()  # one transfer for every step of the epoch
            history.steps.extend(row[0] for row in table)
            history.step_equations.extend({name: row[i + 1] for i, name in enumerate(names)} for row in table)
            if eval_every and (epoch % eval_every == 0 or epoch == epochs):
                if session is None:
                    history.evals.append((epoch, mean_losses(model, data if eval_data is None else eval_data)))
                else:
                    history.evals.append((epoch, _agreed_means(session, model, names,
                                                               data if eval_data is None else eval_data)))
            if session is not None:
                history.communication.append(session.take_communication())
            if checkpoints is not None:
                model.save_weights(checkpoints / f"epoch-{epoch}.safetensors")
            if on_epoch_end is not None:
                on_epoch_end(epoch, model, history)
    finally:
        if not (was_training and model.training):  # after an epoch it is in training mode already
            model.train(was_training)
        if session is not None:
            session.close()
    return history
