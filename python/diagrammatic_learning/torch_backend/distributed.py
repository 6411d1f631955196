"""Training on several processes or machines with ``torch.distributed``: what ``fit`` does when a process group exists.

``fit`` asks ``start`` for a ``Session``. There is one when a default process
group is initialised, or when the process was started by ``torchrun`` (or
``dlearn train --nproc-per-node``, which runs torchrun's own launcher): then
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set and ``start`` initialises
the group itself (``gloo`` for a model on the CPU, ``nccl`` on CUDA, or the
backend given). The session

- wraps the *trainable* arrows (and only them) in one
  ``DistributedDataParallel``, whose forward is the diagram's loss; frozen
  arrows get no gradient buckets, their weights are broadcast once from
  rank 0 so that every rank computes the same function;
- shards the data: a ``ColumnLoader`` becomes this rank's shard
  (``DistributedSampler`` semantics), a ``DataLoader`` with a
  ``DistributedSampler`` gets ``set_epoch`` every epoch;
- agrees on every step before the backward pass: one small all-reduce says
  whether some rank failed (its error stops every rank: that rank raises it,
  the others raise ``RankFailed`` naming it) or ran out of batches (all must
  run out together, or every rank stops with the same error instead of
  hanging in the gradient all-reduce);
- all-reduces the per-equation sums of an epoch, so ``History`` is the same
  on every rank and equals a one-process run on the same global batches.

Only the ``main`` rank (0) draws the progress bar and writes files. With
nccl the step agreement runs on a gloo side group, on the CPU, so it never
waits for the GPU. What the agreement cannot see (a process killed, a
failure inside the backward pass) is left to the launcher, which stops the
other processes when one exits, or else to the group's timeout.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn

from ..errors import DiagramError
from .compiler import CompiledDiagram

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
BACKENDS = ("gloo", "nccl")


class RankFailed(RuntimeError):
    """Another rank of a distributed run failed; this rank stops too.

    ``rank`` is the first rank that failed, ``message`` its error. That rank
    raises (and the command line prints) the error itself, so a rank that
    gets ``RankFailed`` need not print it again.
    """

    def __init__(self, rank: int, message: str):
        super().__init__(f"rank {rank} failed: {message}")
        self.rank = rank
        self.message = message


@dataclass(frozen=True)
class DistributedOptions:
    """How ``fit`` trains under ``torch.distributed``.

    ``backend``: used when ``fit`` initialises the process group itself (None:
    ``nccl`` for a CUDA model, ``gloo`` otherwise). ``shard_data``: turn an
    unsharded ``ColumnLoader`` into this rank's shard (False: each rank's
    loader already holds what it should train on). ``timeout_s``: how long a
    collective may wait (group initialised by ``fit`` only).
    ``ddp``: keyword arguments for ``DistributedDataParallel`` (default
    ``static_graph=True``: a diagram runs the same program every step, and
    parameters that get no gradient, e.g. behind a cut, are then handled
    without a graph walk per step).
    ``time_communication``: measure the gradient all-reduce
    (``History.communication``) through a timing DDP communication hook.
    """

    backend: str | None = None
    shard_data: bool = True
    timeout_s: float = 1800.0
    ddp: Mapping[str, Any] | None = None
    time_communication: bool = False


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets RANK, WORLD_SIZE, LOCAL_RANK)."""
    return all(v in os.environ for v in LAUNCH_VARIABLES)


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``), 0 outside a launcher."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_device(device: str | torch.device | None) -> torch.device:
    """The device this process trains on: a bare ``cuda`` becomes ``cuda:LOCAL_RANK``; others are kept."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank())
    return device


def process_device(device: torch.device, asked: str | None) -> torch.device:
    """The device of this process for a device option ``asked`` that resolved to ``device``: under a launcher, CUDA
    without an index (``cuda``, or the default on a GPU machine) becomes ``cuda:LOCAL_RANK``."""
    if launched() and device.type == "cuda" and asked in (None, "cuda"):
        return torch.device("cuda", local_rank())
    return device


def default_backend(device: torch.device) -> str:
    """``nccl`` for CUDA, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def init_group(device: str | torch.device | None = None, backend: str | None = None,
               timeout_s: float = 1800.0) -> bool:
    """Initialise the default process group from torchrun's variables if there is none; True if one exists after.

    Does nothing outside a launcher (returns False) or when a group exists.
    The group is destroyed when the process exits.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if not launched():
        return False
    device = rank_device(device)
    backend = backend or default_backend(device)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    atexit.register(_destroy)
    return True


def _describe(error: BaseException) -> str:
    return str(error) if isinstance(error, DiagramError) else f"{type(error).__name__}: {error}"


_CONTROL_GROUPS: dict[int, Any] = {}


def _control_group() -> Any:
    """A gloo group beside an nccl default group, made once per process: the per-step agreement then runs on the
    CPU and never waits for the GPU's queued work (None when the default group is gloo already)."""
    if str(dist.get_backend()) == "gloo":
        return None
    key = id(dist.group.WORLD)
    if key not in _CONTROL_GROUPS:
        _CONTROL_GROUPS.clear()
        _CONTROL_GROUPS[key] = dist.new_group(backend="gloo")
    return _CONTROL_GROUPS[key]


class Group:
    """The default process group as ``fit`` uses it: rank, size, and the collectives that keep ranks in step.

    Every rank must construct it (with nccl it makes a gloo side group, a collective).
    """

    def __init__(self) -> None:
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.backend = str(dist.get_backend())
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" \
            else torch.device("cpu")
        self.control = _control_group()
        self.communication_s = 0.0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """The float64 sum over ranks of ``values`` (on the CPU)."""
        x = values.detach().to(self.device, torch.float64)
        started = time.perf_counter()
        dist.all_reduce(x)
        self.communication_s += time.perf_counter() - started
        return x.cpu()

    def agree(self, error: BaseException | None = None, exhausted: bool = False) -> bool:
        """Exchange one step's outcome; True when every rank ran out of batches.

        If a rank failed, every rank raises: the first failed rank its own
        ``error``, the others ``RankFailed``. If some but not all ran out of
        batches, rank 0 raises ``ValueError`` and the others ``RankFailed``.
        """
        if self.world_size == 1:  # nobody to tell
            if error is not None:
                raise error
            return exhausted
        flags = torch.tensor([error is not None, exhausted], dtype=torch.int64)
        started = time.perf_counter()
        dist.all_reduce(flags, group=self.control)
        failed, done = flags.tolist()
        if failed:
            messages: list[str | None] = [None] * self.world_size
            dist.all_gather_object(messages, None if error is None else _describe(error), group=self.control)
            self.communication_s += time.perf_counter() - started
            first = min(r for r, m in enumerate(messages) if m is not None)
            if self.rank == first and error is not None:
                raise error
            raise RankFailed(first, messages[first] or "")
        self.communication_s += time.perf_counter() - started
        if done and done != self.world_size:
            message = (f"the ranks have different numbers of batches ({done} of {self.world_size} ran out first); "
                       f"shard the data evenly (ColumnLoader or DistributedSampler do)")
            if self.main:
                raise ValueError(message)
            raise RankFailed(0, message)
        return done == self.world_size

    def together(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on every rank; if it raises on one, every rank stops (see ``agree``)."""
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - handed to every rank, re-raised on the failing one
            self.agree(e)
            raise AssertionError("unreachable") from e
        self.agree()
        return result


def current_group(device: str | torch.device | None = None, backend: str | None = None,
                  timeout_s: float = 1800.0) -> Group | None:
    """The ``Group`` this process trains in (initialising it under torchrun), or None for a single process."""
    return Group() if init_group(device, backend, timeout_s) else None


class _TrainableArrows(nn.Module):
    """The trainable arrows of a compiled diagram as one module whose forward is the diagram's loss: what DDP wraps.

    It holds the arrows' own modules (no copies), so DDP hooks exactly the
    parameters that train; the diagram itself is kept unregistered.
    """

    def __init__(self, model: CompiledDiagram, names: list[str]):
        super().__init__()
        self.arrows = nn.ModuleDict({name: model[name] for name in names})
        self.__dict__["diagram_model"] = model

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ev = self.__dict__["diagram_model"].evaluate(batch)
        return ev.total, ev.equations


class _AllReduceTimer:
    """A DDP communication hook doing the default all-reduce, adding up each bucket's launch-to-completion time.

    It holds no reference to the DDP module, so dropping the module frees it.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def hook(self, state, bucket):  # type: ignore[no-untyped-def]  # DDP rejects annotations other than its own
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        started = time.perf_counter()

        def done(f: torch.futures.Future) -> torch.Tensor:
            self.seconds += time.perf_counter() - started
            return f.value()

        return allreduce_hook(state, bucket).then(done)


def _is_distributed_sampler(sampler: Any) -> bool:
    from torch.utils.data.distributed import DistributedSampler

    return isinstance(sampler, DistributedSampler)


class Session:
    """One ``fit`` call under torch.distributed: the DDP wrapper, the sharded data, the agreed steps."""

    def __init__(self, group: Group, model: CompiledDiagram, options: DistributedOptions):
        self.group = group
        self.model = model
        self.options = options
        self._timer = _AllReduceTimer()
        trainable = [name for name, m in model.named_children() if any(p.requires_grad for p in m.parameters())]
        frozen = [name for name, _ in model.named_children() if name not in trainable]
        device = model.device
        # both are collectives every rank enters (a rank that failed before fit has exited; torchrun stops the rest)
        self._broadcast_frozen(frozen)
        self.wrapper = _TrainableArrows(model, trainable)
        self.ddp = nn.parallel.DistributedDataParallel(
            self.wrapper, device_ids=[device.index] if device.type == "cuda" else None,
            **({"static_graph": True} if options.ddp is None else dict(options.ddp)))
        if options.time_communication:
            self.ddp.register_comm_hook(None, self._timer.hook)

    @property
    def main(self) -> bool:
        return self.group.main

    def _broadcast_frozen(self, names: list[str]) -> None:
        """Frozen arrows' parameters and buffers from rank 0, so every rank's teacher is rank 0's."""
        with torch.no_grad():
            for name in names:
                for t in [*self.model[name].parameters(), *self.model[name].buffers()]:
                    if self.group.backend == "nccl" and t.device.type != "cuda":
                        continue
                    dist.broadcast(t.data, src=0)

    def close(self) -> None:
        """Drop the DDP wrapper now: its gradient hooks leave the parameters before any later backward pass."""
        self.ddp = None  # type: ignore[assignment]
        self.wrapper = None  # type: ignore[assignment]

    # -- data

    def prepare(self, data: Iterable[Any]) -> Iterable[Any]:
        """This rank's view of ``data``: an unsharded ``ColumnLoader`` becomes its shard; others are kept."""
        from .data import ColumnLoader

        if isinstance(data, ColumnLoader):
            if data.world_size == 1 and self.group.world_size > 1 and self.options.shard_data:
                return data.sharded(self.group.rank, self.group.world_size)
            return data
        sampler = getattr(data, "sampler", None)
        batch_sampler = getattr(getattr(data, "batch_sampler", None), "sampler", None)
        if not (_is_distributed_sampler(sampler) or _is_distributed_sampler(batch_sampler)) and self.main \
                and self.group.world_size > 1 and self.options.shard_data:
            warnings.warn("fit under torch.distributed: the data is neither a ColumnLoader nor a DataLoader with a "
                          "DistributedSampler, so it is not sharded; every rank trains on the batches it is given",
                          stacklevel=3)
        return data

    def batches(self, data: Iterable[Any], epoch: int) -> Iterator[Any]:
        """The batches of one epoch (epochs from 1); the end of the data is agreed with the other ranks."""
        samplers = {id(s): s for s in (getattr(data, "sampler", None),
                                       getattr(getattr(data, "batch_sampler", None), "sampler", None))}
        for s in samplers.values():
            if _is_distributed_sampler(s):
                s.set_epoch(epoch - 1)
        it = iter(data)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                if self.group.agree(exhausted=True):
                    return
                raise AssertionError("unreachable") from None
            except Exception as e:  # noqa: BLE001 - a bad batch on this rank stops every rank
                self.group.agree(e)
                raise AssertionError("unreachable") from e
            yield batch

    # -- steps

    def evaluate(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss on this rank's batch through DDP, after every rank has computed its own without error."""
        try:
            total, equations = self.ddp(batch)
            if not total.requires_grad:
                raise ValueError("the loss does not depend on any trainable parameter")
        except Exception as e:  # noqa: BLE001 - a failing rank stops every rank
            self.group.agree(e)
            raise AssertionError("unreachable") from e
        self.group.agree()
        return total, equations

    def reduce_epoch(self, sums: torch.Tensor, count: int, table: torch.Tensor
                     ) -> tuple[torch.Tensor, int, torch.Tensor]:
        """Per-equation sums, step count and per-step losses (``table``: a row per step, the total, then each
        equation) over all ranks, in one collective: sums of means, each divided by the number of ranks, so that
        they are the means of the global batches (the same on every rank)."""
        n = self.group.world_size
        steps = table.to(torch.float64)
        reduced = self.group.all_sum(torch.cat([sums.to(torch.float64).reshape(-1), steps.reshape(-1)])) / n
        return reduced[:sums.numel()], count, reduced[sums.numel():].reshape(steps.shape)

    def reduce_sums(self, sums: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
        """Evaluation sums and batch counts added over ranks."""
        reduced = self.group.all_sum(torch.cat([sums.to(torch.float64).reshape(-1),
                                                torch.tensor([float(count)], dtype=torch.float64)]))
        return reduced[:-1], int(reduced[-1].item())

    def take_communication(self) -> float:
        """Seconds in collectives since the last call: the step agreements and reductions, plus the gradient
        all-reduce (launch to completion per bucket) when timed."""
        total = self.group.communication_s + self._timer.seconds
        self.group.communication_s = 0.0
        self._timer.seconds = 0.0
        return total


def start(model: CompiledDiagram, distributed: bool | DistributedOptions | None) -> Session | None:
    """The distributed session for one ``fit`` call, or None to train in this process alone.

    ``distributed``: None (a session when a process group is initialised or
    torchrun's variables are set), False (never), True (required), or
    ``DistributedOptions`` (like None, with those options).
    """
    if distributed is False:
        return None
    options = distributed if isinstance(distributed, DistributedOptions) else DistributedOptions()
    group = current_group(model.device, options.backend, options.timeout_s)
    if group is None:
        if distributed is True:
            raise ValueError("fit(distributed=True) needs an initialised process group or a launch by torchrun "
                             "(RANK, WORLD_SIZE and LOCAL_RANK set)")
        return None
    return Session(group, model, options)


# ----------------------------------------------------------------------------- launching processes


def launch(program: list[str], nproc_per_node: int = 1, nnodes: str | None = None, rdzv_endpoint: str | None = None,
           rdzv_id: str | None = None, module: bool = True) -> int:
    """Run ``python -m program...`` (or the script ``program[0]`` if not ``module``) in ``nproc_per_node``
    processes through torchrun's own launcher (``torch.distributed.run``); the exit code (0 if all succeeded).

    On one machine the rendezvous is a c10d store on 127.0.0.1 at a free port.
    Several machines (``nnodes`` > 1) meet at ``rdzv_endpoint`` (``HOST:PORT``,
    the same on every machine, with the same ``rdzv_id``). When a process
    fails, the launcher stops the others; the failed process has printed its
    error, and this prints one line naming the failed ranks.
    """
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    nnodes = nnodes or "1"
    options = [f"--nproc-per-node={nproc_per_node}", f"--nnodes={nnodes}"]
    if rdzv_endpoint:
        options += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}", f"--rdzv-id={rdzv_id or 'dlearn'}"]
    elif nnodes.split(":")[-1] != "1":
        print("error: training on several machines needs --rdzv-endpoint HOST:PORT (the same on every machine)",
              file=sys.stderr)
        return 2
    else:
        options += ["--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0", f"--rdzv-id={uuid.uuid4()}",
                    "--local-addr=127.0.0.1"]
    options += ["-m", *program] if module else program
    threads_set = "OMP_NUM_THREADS" in os.environ
    if not threads_set:  # the workers inherit it; torchrun would set 1 and print a banner saying so
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc_per_node))
    try:
        run(parse_args(options))
    except ChildFailedError as e:
        failed = sorted(e.failures.items())
        ranks = ", ".join(f"rank {r} (exit code {f.exitcode})" for r, f in failed)
        print(f"error: training stopped: {ranks} failed", file=sys.stderr)
        return next((f.exitcode for _, f in failed if f.exitcode and f.exitcode > 0), 1)
    finally:
        if not threads_set:
            del os.environ["OMP_NUM_THREADS"]
    return 0
