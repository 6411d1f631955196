"""Training throughput in one and two processes (torch.distributed, DDP), and the time spent in all-reduce.

    python benchmarks/bench_distributed.py [--epochs 3] [--batch-size 64] [--nproc 2]

Two diagrams on the bundled digits training split (1438 rows): the
distillation example (a frozen 64-128-10 teacher, a trainable 64-16-10
student) and a small CNN (conv 1→32, conv 32→64, max pool, 1024-128-10 head;
about 150k trainable parameters). Each is trained

- in this process with plain ``fit`` (no process group),
- through ``distributed.launch`` (torchrun's launcher, as ``dlearn train
  --nproc-per-node``) with 1 process and with ``--nproc`` processes,

in ``--repeats`` alternated rounds; the fastest round of each is reported
(on a shared machine the slower rounds measure the neighbours).

``--batch-size`` is per process (a global batch of nproc × batch size), so
every configuration does the same number of examples per epoch. After one
warm-up epoch, ``--epochs`` epochs are timed; examples/s is rows per epoch ×
epochs / the slowest rank's time. "all-reduce" is what ``History.communication``
records with ``DistributedOptions(time_communication=True)``: per rank, the
seconds from launching each gradient bucket's all-reduce to its completion
(overlapping the rest of the backward pass) plus the per-step status
all-reduce and the epoch's history reduction. Printed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CASES = ("distillation", "cnn")


def cnn_diagram() -> dict:
    conv = lambda cin, cout: {"type": "conv2d", "in_channels": cin, "out_channels": cout, "kernel_size": [3, 3],
                              "padding": [1, 1, 1, 1]}
    return {
        "format": "learning-diagram", "format_version": "1.0", "name": "cnn",
        "objects": [{"name": "D", "kind": "data"},
                    {"name": "X", "kind": "tensor", "shape": [1, 8, 8], "dtype": "float32"},
                    {"name": "Y", "kind": "categorical", "classes": 10}],
        "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "image2d"},
                   {"name": "y", "kind": "data", "source": "D", "target": "Y", "column": "label"},
                   {"name": "cnn", "kind": "model", "source": "X", "target": "Y", "trainable": True,
                    "architecture": {"layers": [
                        conv(1, 32), {"type": "relu"}, conv(32, 64), {"type": "relu"},
                        {"type": "max_pool2d", "kernel_size": [2, 2]}, {"type": "flatten"},
                        {"type": "linear", "in_features": 1024, "out_features": 128}, {"type": "relu"},
                        {"type": "linear", "in_features": 128, "out_features": 10}]}}],
        "equations": {"automatic": True},
    }


def measure(case: str, epochs: int, batch_size: int, threads: int) -> dict:
    """Train one case in this process (alone or as one rank); what rank 0 reports."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    from diagrammatic_learning.io import load
    from diagrammatic_learning.torch_backend import DistributedOptions, compile, fit
    from diagrammatic_learning.torch_backend.data import ColumnLoader, load_for

    diagram = load(EXAMPLES / "distillation.json" if case == "distillation" else cnn_diagram())
    torch.manual_seed(0)
    model = compile(diagram)
    tables = load_for(diagram, "digits", "train")
    loader = ColumnLoader(tables, batch_size, seed=0)
    options = DistributedOptions(time_communication=True)
    fit(model, loader, epochs=1, progress=False, distributed=options)  # warm-up
    if dist.is_initialized():
        dist.barrier()
    started = time.perf_counter()
    history = fit(model, loader, epochs=epochs, progress=False, distributed=options)
    seconds = time.perf_counter() - started
    world = dist.get_world_size() if dist.is_initialized() else 0
    if world:
        slowest = torch.tensor([seconds, sum(history.communication)], dtype=torch.float64)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        seconds, comm = slowest.tolist()
    else:
        comm = 0.0
    rows = max(len(next(iter(t.values()))) for t in tables)
    return {"examples_per_s": rows * epochs / seconds, "seconds": seconds, "allreduce_s": comm,
            "steps": len(history.steps), "threads": torch.get_num_threads(), "world": world,
            "loss": history.epochs[-1]["total"]}


def worker(out: Path, epochs: int, batch_size: int, threads: int) -> int:
    """One launched rank: every case; rank 0 writes the results."""
    import torch.distributed as dist

    from diagrammatic_learning.torch_backend.distributed import init_group

    init_group()
    results = {case: measure(case, epochs, batch_size, threads) for case in CASES}
    if dist.get_rank() == 0:
        out.write_text(json.dumps(results))
    return 0


def launched(nproc: int, epochs: int, batch_size: int, threads: int) -> dict:
    from diagrammatic_learning.torch_backend.distributed import launch

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        code = launch([__file__, "--worker", str(out), "--epochs", str(epochs), "--batch-size", str(batch_size),
                       "--threads", str(threads)], nproc_per_node=nproc, module=False)
        if code:
            raise SystemExit(f"the {nproc}-process run failed with exit code {code}")
        return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of all three configurations, alternated; the fastest of each is reported")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process, the same in every configuration (default 1: on a shared "
                             "machine, OpenMP threads that wait for busy cores make every step many times slower)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.epochs, args.batch_size, args.threads)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    import torch

    load_before = os.getloadavg()[0]
    rounds = []
    for _ in range(args.repeats):  # alternated, so that drift in the machine's load hits every configuration
        rounds.append(({case: measure(case, args.epochs, args.batch_size, args.threads) for case in CASES},
                       launched(1, args.epochs, args.batch_size, args.threads),
                       launched(args.nproc, args.epochs, args.batch_size, args.threads)))
    plain, one, many = ({case: max((r[i][case] for r in rounds), key=lambda m: m["examples_per_s"])
                         for case in CASES} for i in range(3))
    n = args.nproc
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"gloo on 127.0.0.1; batch {args.batch_size} per process, {args.epochs} timed epochs after 1 warm-up; "
          f"fastest of {args.repeats} alternated rounds; load average before/after: {load_before:.1f} / "
          f"{os.getloadavg()[0]:.1f}")
    header = ["diagram", "plain ex/s", "1 proc ex/s", f"{n} proc ex/s", f"{n} proc / plain",
              "all-reduce s (1 proc)", f"all-reduce s ({n} proc)", f"all-reduce share ({n} proc)"]
    rows = []
    for case in CASES:
        p, o, m = plain[case], one[case], many[case]
        rows.append([case, f"{p['examples_per_s']:.0f}", f"{o['examples_per_s']:.0f}", f"{m['examples_per_s']:.0f}",
                     f"{m['examples_per_s'] / p['examples_per_s']:.2f}", f"{o['allreduce_s']:.3f}",
                     f"{m['allreduce_s']:.3f}", f"{m['allreduce_s'] / m['seconds']:.0%}"])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
