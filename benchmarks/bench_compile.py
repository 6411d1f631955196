"""Compiling and running diagrams at scale: load, compile, and one forward + backward pass, per phase.

    python benchmarks/bench_compile.py [--only fan-out layered] [--batch-size 32] [--before OLD/python]
                                       [--repeat N]

The two valid 10,000-arrow diagrams of ``bench_reading.py`` (a fan-out: one
input, 5,000 linear heads, 5,000 equations; a layered DAG: 357 columns of 15
objects, 4,998 linear models applied 37,485 times, 199,920 equations), each
in a fresh process: ``load`` (read, validate, equations), ``compile`` (the
``CompiledDiagram`` of the loaded diagram: parameter count, modules, plan,
code or interpreter), then ``fwd+bwd`` (the loss of one batch of
``--batch-size`` rows and its gradients, 1 thread, the second of two passes).
Each phase prints its wall time, its CPU time, and the process's peak
resident memory at its end (MB, ``ru_maxrss``: the interpreter, torch and
everything before, about 220 MB of it the interpreter and torch). ``--before`` runs the same with an older package
(e.g. ``<old checkout>/python``); ``--repeat N`` runs each N times, alternating the two, and prints the
medians (this VM's speed drifts by tens of per cent between seconds).

Targets (issue 15): the fan-out compiles in < 1 s; the layered DAG's every
phase takes < 5 s and < 500 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reading import fan_out, layered  # noqa: E402

CASES = {"fan-out": fan_out, "layered": layered}

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from diagrammatic_learning import load
from diagrammatic_learning.torch_backend import compile

path, batch_size = sys.argv[1], int(sys.argv[2])
out = {}
def phase(name, fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    out[name] = (time.perf_counter() - wall, time.process_time() - cpu,
                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result
diagram = phase("load", lambda: load(path))
model = phase("compile", lambda: compile(diagram))
columns = {a.column: torch.randn(batch_size, *diagram.objects[a.target].shape)
           for a in diagram.arrows.values() if a.kind == "data"}
def step():
    model.zero_grad(set_to_none=True)
    model(columns).backward()
step()
phase("fwd+bwd", step)
print(json.dumps(out))
"""


def run(path: str, batch_size: int, package: str | None, timeout: float) -> dict | str:
    env = dict(os.environ)
    if package:
        env["PYTHONPATH"] = package
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, path, str(batch_size)], capture_output=True, text=True,
                              env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} s"
    if done.returncode:
        return "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:80]
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(CASES), default=list(CASES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--before", help="an older package's folder (put first on PYTHONPATH)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each package, alternated (after, before, before, after, ...); medians printed")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"batch {args.batch_size}; cells: wall s / CPU s / peak RSS MB")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            path = str(Path(tmp) / f"{name}.json")
            Path(path).write_text(json.dumps(CASES[name]()))
            packages = [("after", None)] + ([("before", args.before)] if args.before else [])
            runs: dict[str, list[dict]] = {label: [] for label, _ in packages}
            for r in range(args.repeat):  # this VM's speed drifts: alternate, so that drift hits both alike
                for label, package in (packages if r % 2 == 0 else packages[::-1]):
                    got = run(path, args.batch_size, package, args.timeout)
                    if isinstance(got, str):
                        print(f"{name:10s} {label:7s} {got}", flush=True)
                        continue
                    runs[label].append(got)
                    print(f"{name:10s} {label:7s} {_cells(got)}", flush=True)
            if args.repeat > 1:
                for label, got in runs.items():
                    if got:
                        median = {phase: tuple(statistics.median(g[phase][k] for g in got) for k in range(3))
                                  for phase in got[0]}
                        print(f"{name:10s} {label:7s} {_cells(median)}   (median of {len(got)})", flush=True)


def _cells(got: dict) -> str:
    return "  ".join(f"{phase} {w:6.2f} / {c:6.2f} / {mb:5.0f}" for phase, (w, c, mb) in got.items())


if __name__ == "__main__":
    main()
