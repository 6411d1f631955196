"""One rank of the distributed tests (``test_distributed.py`` starts it through ``distributed.launch``).

``python distributed_worker.py OUT DEVICE``: trains the distillation and the
multi-task diagrams in float64 for a few steps on a small slice of digits
(per-rank batch ``BATCH``, checkpoints every epoch), writes rank 0's weights,
every rank's history, then runs a fit in which rank 1's second batch has a
class index out of range. Prints ``error: ...`` for its own error the way
``dlearn`` does, nothing for ``RankFailed``, and exits 1 after that failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.io import load
from diagrammatic_learning.torch_backend import DistributedOptions, RankFailed, compile, fit
from diagrammatic_learning.torch_backend.data import ColumnLoader, load_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROWS, BATCH, EPOCHS, SEED = 96, 8, 2, 3  # 96 rows: 6 steps of 2 × 8 per epoch; multitask's 50-row table splits 8/8
DIAGRAMS = ("distillation", "multitask")


def small_tables(diagram):
    """The first ROWS rows of the training split (the few-shot table whole): few steps, divisible batches."""
    tables = load_for(diagram, "digits", "train")
    return [{k: v[:ROWS] for k, v in t.items()} if len(next(iter(t.values()))) > ROWS else t for t in tables]


def train(name: str, out: Path, device: str, rank: int, world_size: int) -> None:
    diagram = load(EXAMPLES / f"{name}.json")
    torch.manual_seed(SEED)
    model = compile(diagram, dtype="float64", device=device)
    loader = ColumnLoader(small_tables(diagram), BATCH, seed=SEED)
    # rank 1 is given a folder of its own: it must not even create it (only rank 0 writes)
    ckpt = out / (f"{name}-ckpt" if rank == 0 else f"{name}-ckpt-rank{rank}")
    history = fit(model, loader, epochs=EPOCHS, lr=0.01, progress=False, checkpoint_dir=ckpt, eval_every=EPOCHS)
    if rank == 0:
        model.save_weights(out / f"{name}.safetensors")
    (out / f"{name}-history-{rank}.json").write_text(json.dumps(
        {"epochs": history.epochs, "steps": history.steps, "step_equations": history.step_equations, "evals": history.evals, "world_size": world_size}))


def fail(device: str, rank: int) -> None:
    """A fit in which rank 1's second batch is bad: every rank must stop."""
    diagram = load(EXAMPLES / "distillation.json")
    model = compile(diagram, dtype="float64", device=device)
    rng = np.random.default_rng(rank)
    batches = [{"image": rng.random((4, 64)), "label": rng.integers(0, 10, 4)} for _ in range(4)]
    if rank == 1:
        batches[1]["label"][2] = 99
    fit(model, batches, epochs=1, progress=False, distributed=DistributedOptions(shard_data=False, timeout_s=900))


def main() -> int:
    out, device = Path(sys.argv[1]), sys.argv[2]
    import torch.distributed as dist

    from diagrammatic_learning.torch_backend.distributed import init_group, rank_device

    torch.set_num_threads(1)
    device = str(rank_device(device))
    init_group(device)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    for name in DIAGRAMS:
        train(name, out, device, rank, world_size)
    try:
        fail(device, rank)
    except DiagramError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except RankFailed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
