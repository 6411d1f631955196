"""The compiled diagram against the same training written by hand in plain PyTorch, per example regime.

    python benchmarks/bench_step.py [--batch-sizes 32 256 2048] [--threads 1 2] [--rounds 7]
                                    [--torch-compile inductor] [--fit] [--only supervised ...]

The hand-written side is an independent ``nn.Module`` per regime, written
here from plain ``nn.Linear``/``nn.Embedding``/``nn.LSTM`` layers and
``F.cross_entropy``/``F.mse_loss``/``F.kl_div``; it shares no code with the
compiler (only the initial weights are copied across, to check that both
compute the same loss: the "gap" column, in evaluation mode).

Timings: ``train`` is one step (zero_grad, forward, backward, Adam); ``eval``
one forward pass in evaluation mode without gradients. Each round times a
block of steps of each side in the order compiled, hand, hand, compiled
(ABBA), so that drift in the machine's speed hits both alike; the ratio
printed is the median over rounds of compiled / hand time. ``--torch-compile
BACKEND`` also runs both sides under ``torch.compile`` (each with
``fullgraph=True`` when it traces as one graph), twice: once compiling the
compiled diagram first, once the hand model first (the one compiled first
is slower per call, whichever it is); the cell is the geometric mean. ``--fit`` times one epoch of
``fit`` against a hand loop over the same loader (the loader the README
uses), also ABBA.

The clock is the process's CPU time by default (``--clock cpu``): on a
machine shared with other work, wall time mostly measures how long this
process waited for a core (ratios from 0.1 to 7 were seen on a 2-core
machine at load 9), while CPU time counts only the work done here; cache
effects of the other work remain. ``--clock wall`` for a quiet machine.

Works on older versions of the package as well (it uses only ``compile``,
``fit`` and ``ColumnLoader``), so "before" and "after" run the same script.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from diagrammatic_learning.torch_backend import compile, fit
from diagrammatic_learning.torch_backend.data import ColumnLoader, digits

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# ----------------------------------------------------------------------------- the hand-written models


def mlp(*sizes: int, last: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers, *([last] if last is not None else []))


class Supervised(nn.Module):
    def __init__(self):
        super().__init__()
        self.classifier = mlp(64, 128, 10)

    def forward(self, b):
        return F.cross_entropy(self.classifier(b["image"]), b["label"])


class Distillation(nn.Module):
    def __init__(self):
        super().__init__()
        self.teacher = mlp(64, 128, 10).requires_grad_(False)
        self.student = mlp(64, 16, 10)

    def forward(self, b):
        student, teacher = self.student(b["image"]), self.teacher(b["image"])
        kl = F.kl_div(F.log_softmax(student / 4.0, -1), F.log_softmax(teacher / 4.0, -1), reduction="batchmean",
                      log_target=True)
        return F.cross_entropy(student, b["label"]) + 0.9 * (16.0 * kl)


class Multitask(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
        self.digit_head, self.parity_head, self.big_head = nn.Linear(64, 10), nn.Linear(64, 2), nn.Linear(64, 2)

    def forward(self, b):
        h = self.backbone(b["image"])
        return (F.cross_entropy(self.digit_head(self.backbone(b["few_image"])), b["few_label"])
                + F.cross_entropy(self.parity_head(h), b["parity"]) + F.cross_entropy(self.big_head(h), b["big"]))


class Alignment(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc_top, self.enc_bottom, self.head = mlp(32, 64, 16), mlp(32, 64, 16), nn.Linear(16, 10)

    def forward(self, b):
        z_top, z_bottom = self.enc_top(b["top"]), self.enc_bottom(b["bottom"])
        from_top, from_bottom = self.head(z_top), self.head(z_bottom)
        return (10.0 * F.mse_loss(z_top, z_bottom) + F.cross_entropy(from_top, b["label"])
                + F.cross_entropy(from_bottom, b["label"]) + F.cross_entropy(from_top, F.softmax(from_bottom, -1)))


class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.dec = mlp(64, 32, 8), mlp(8, 32, 64, last=nn.Sigmoid())

    def forward(self, b):
        return F.mse_loss(self.dec(self.enc(b["image"])), b["image"])


class Captioning(nn.Module):
    def __init__(self):
        super().__init__()
        self.image, self.words = nn.Linear(64, 32), nn.Embedding(16, 32)
        self.lstm, self.out = nn.LSTM(32, 64, batch_first=True), nn.Linear(64, 16)

    def forward(self, b):
        steps = torch.cat((self.image(b["image"]).unsqueeze(1), self.words(b["caption_in"])), dim=1)
        logits = self.out(self.lstm(steps)[0])
        return F.cross_entropy(logits.reshape(-1, 16), b["caption_out"].reshape(-1))


HAND: dict[str, Callable[[], nn.Module]] = {
    "supervised": Supervised, "distillation": Distillation, "multitask": Multitask, "alignment": Alignment,
    "autoencoder": Autoencoder, "captioning": Captioning,
}


def pair(name: str) -> tuple[nn.Module, nn.Module]:
    """The compiled diagram and its hand-written twin with the same initial weights (parameters in order)."""
    torch.manual_seed(0)
    m = compile(EXAMPLES / f"{name}.json")
    hand = HAND[name]()
    ours, theirs = list(m.parameters()), list(hand.parameters())
    assert [p.shape for p in ours] == [p.shape for p in theirs], name
    with torch.no_grad():
        for a, b in zip(theirs, ours):
            a.copy_(b)
    return m, hand


def loader(m: nn.Module, batch_size: int, seed: int = 0) -> ColumnLoader:
    """The loader the README uses: ``ColumnLoader.for_model`` where it exists, else all digits columns."""
    if hasattr(ColumnLoader, "for_model"):
        return ColumnLoader.for_model(m, digits("train"), batch_size, seed=seed)
    return ColumnLoader(digits("train"), batch_size, seed=seed)


def batches(batch_size: int, count: int = 4) -> list[dict[str, torch.Tensor]]:
    """Distinct batches of ``batch_size`` rows (the digits have 1438: larger batches repeat rows)."""
    tables = digits("train")
    reps = -(-batch_size // len(tables[0]["label"]))
    big = [{k: torch.from_numpy(v).repeat((reps,) + (1,) * (v.ndim - 1)) for k, v in t.items()} for t in tables]
    out = []
    g = torch.Generator().manual_seed(0)
    for _ in range(count):
        b = {}
        for t in big:
            n = len(next(iter(t.values())))
            rows = torch.randperm(n, generator=g)[:min(batch_size, n)]
            b.update({k: v[rows] for k, v in t.items()})
        out.append(b)
    return out


# ----------------------------------------------------------------------------- timing


CLOCK = time.process_time  # --clock: CPU time of this process (default) or wall time


def _block(fn: Callable[[dict], None], data: list[dict], n: int) -> float:
    started = CLOCK()
    for i in range(n):
        fn(data[i % len(data)])
    return CLOCK() - started


def abba(a: Callable[[dict], None], b: Callable[[dict], None], data: list[dict], rounds: int,
         block_s: float = 0.03) -> tuple[float, float, float]:
    """Median over rounds of a/b time, and the median seconds per call of each; blocks of about ``block_s``."""
    for _ in range(3):
        a(data[0]), b(data[0])
    per = max(_block(a, data, 3), _block(b, data, 3)) / 3
    n = max(2, int(block_s / max(per, 1e-6)))
    ratios, ta, tb = [], [], []
    for _ in range(rounds):
        a1 = _block(a, data, n)
        b1 = _block(b, data, n)
        b2 = _block(b, data, n)
        a2 = _block(a, data, n)
        ratios.append((a1 + a2) / (b1 + b2))
        ta.append((a1 + a2) / (2 * n))
        tb.append((b1 + b2) / (2 * n))
    return statistics.median(ratios), statistics.median(ta), statistics.median(tb)


def train_step(module: Callable[[dict], torch.Tensor], opt: torch.optim.Optimizer) -> Callable[[dict], None]:
    def step(b: dict) -> None:
        opt.zero_grad(set_to_none=True)
        module(b).backward()
        opt.step()
    return step


def eval_step(module: Callable[[dict], torch.Tensor]) -> Callable[[dict], None]:
    def step(b: dict) -> None:
        with torch.no_grad():
            module(b)
    return step


def _compiled(module: nn.Module, backend: str, ours: bool, batch: dict) -> Callable:
    """``torch.compile(module, fullgraph=True)`` where that traces, else with graph breaks.

    Both sides alike: ``fullgraph=True`` costs every call a few microseconds of its own (torch 2.13 reads
    Dynamo's config and resets its frame counter per call), so one side with it and one without would not
    compare like with like. Older versions of the compiled diagram, and ``nn.LSTM``, break the graph.
    """
    try:
        compiled = torch.compile(module, backend=backend, fullgraph=True)
        compiled(batch)
        return compiled
    except Exception:  # noqa: BLE001 - a graph break
        print(f"  ({'compiled diagram' if ours else 'hand model'}: fullgraph=True fails, compiled with graph "
              "breaks)", flush=True)
        torch._dynamo.reset()
    return torch.compile(module, backend=backend)


def bench_regime(name: str, batch_size: int, rounds: int, backend: str | None, checked: bool = False) -> dict:
    """Train and eval ratios of one regime at one batch size (and under torch.compile if ``backend``).

    ``checked``: the compiled side runs inside ``values_checked()``, as ``fit`` does for a loader that
    checked every row (``ColumnLoader.for_model``): no per-batch index range check.
    """
    m, hand = pair(name)
    if checked:
        m._check_values = False
    data = batches(batch_size)
    m.eval(), hand.eval()
    with torch.no_grad():
        gap = abs(float(m(data[0])) - float(hand(data[0])))
    out = {"gap": gap}
    m.train(), hand.train()
    opt_m = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], 1e-4)
    opt_h = torch.optim.Adam([p for p in hand.parameters() if p.requires_grad], 1e-4)
    out["train"] = abba(train_step(m, opt_m), train_step(hand, opt_h), data, rounds)
    m.eval(), hand.eval()
    out["eval"] = abba(eval_step(m), eval_step(hand), data, rounds)
    if backend:
        # The side compiled first pays more per call, whichever it is (measured: 15-25 us a call more for the
        # supervised evaluation, from Dynamo's guard evaluation): each order once, and the geometric mean.
        runs: dict[str, list[tuple[float, float, float]]] = {"compile train": [], "compile eval": []}
        for ours_first in (True, False):
            torch._dynamo.reset()
            order = [(m, True), (hand, False)] if ours_first else [(hand, False), (m, True)]
            compiled = {ours: _compiled(module, backend, ours, data[0]) for module, ours in order}  # eval graphs
            cm, ch = compiled[True], compiled[False]
            m.train(), hand.train()
            steps = {True: train_step(cm, opt_m), False: train_step(ch, opt_h)}
            for _, ours in order:  # the training graphs, in the same order
                steps[ours](data[0])
            runs["compile train"].append(abba(steps[True], steps[False], data, rounds))
            m.eval(), hand.eval()
            runs["compile eval"].append(abba(eval_step(cm), eval_step(ch), data, rounds))
        for key, (a, b) in runs.items():
            out[key] = ((a[0] * b[0]) ** 0.5, (a[1] + b[1]) / 2, (a[2] + b[2]) / 2)
        out["orders"] = "; ".join(f"{key}: {a[0]:.3f} ours first, {b[0]:.3f} hand first" for key, (a, b) in runs.items())
    return out


def bench_fit(name: str, batch_size: int, rounds: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """One epoch of ``fit`` vs a hand loop (same loader, same Adam, recording each step's loss), ABBA.

    Two hand loops: one training the compiled diagram itself (what ``fit`` adds to the loop a user would
    write around the same model), one training the hand-written model (the whole difference). Each result
    is (hand time / fit time, fit seconds, hand seconds) per epoch.
    """
    m, hand = pair(name)
    data = loader(m, batch_size)
    opt_m = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], 1e-4)
    opt_h = torch.optim.Adam([p for p in hand.parameters() if p.requires_grad], 1e-4)

    def with_fit(_: dict) -> None:
        fit(m, data, epochs=1, optimizer=opt_m, progress=False)

    def loop(model: nn.Module, opt: torch.optim.Optimizer) -> Callable[[dict], None]:
        # the compiled diagram skips the per-batch range check on a checked loader, as fit does
        checked = model is m and getattr(data, "checked_for", None) is getattr(m, "_check_batch", False)

        def by_hand(_: dict) -> None:
            model.train()
            losses = []
            with m.values_checked() if checked else contextlib.nullcontext():
                for b in data:
                    opt.zero_grad(set_to_none=True)
                    loss = model(b)
                    loss.backward()
                    opt.step()
                    losses.append(loss.detach())
            torch.stack(losses).tolist()
        return by_hand

    same_model = abba(with_fit, loop(m, opt_m), [{}], rounds, block_s=0.25)
    hand_model = abba(with_fit, loop(hand, opt_h), [{}], rounds, block_s=0.25)
    return (1 / same_model[0], *same_model[1:]), (1 / hand_model[0], *hand_model[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description="Compiled diagram vs independent hand-written PyTorch.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256, 2048])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", nargs="*", choices=list(HAND), help="regimes to run (default: all)")
    parser.add_argument("--torch-compile", metavar="BACKEND", help="also under torch.compile with this backend")
    parser.add_argument("--fit", action="store_true", help="also fit vs a hand loop, batch 64")
    parser.add_argument("--fit-only", action="store_true", help="only fit vs a hand loop")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="process CPU time or wall time")
    parser.add_argument("--checked", action="store_true",
                        help="compiled side without per-batch range checks (a source checked row by row once)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    names = args.only or list(HAND)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; {args.clock} clock; ratio = compiled / hand, median of "
          f"{args.rounds} ABBA rounds"
          + ("; compiled side on a checked source (no per-batch range check)" if args.checked else ""))
    for threads in [] if args.fit_only else args.threads:
        torch.set_num_threads(threads)
        head = ["train", "eval"] + (["compile train", "compile eval"] if args.torch_compile else [])
        print(f"\n{threads} thread(s)")
        print(f"{'regime':<13} {'B':>5} " + " ".join(f"{h:>22}" for h in head) + "   gap")
        for name in names:
            for bs in args.batch_sizes:
                r = bench_regime(name, bs, args.rounds, args.torch_compile, args.checked)
                cells = [f"{r[h][0]:.3f} ({1e3 * r[h][1]:.2f}/{1e3 * r[h][2]:.2f})" for h in head]
                print(f"{name:<13} {bs:>5} " + " ".join(f"{c:>22}" for c in cells) + f"   {r['gap']:.0e}",
                      flush=True)
                if "orders" in r:
                    print(f"{'':<19} ({r['orders']})", flush=True)
        print("(cells: ratio (compiled ms / hand ms per step))")
    if args.fit or args.fit_only:
        torch.set_num_threads(args.threads[0])
        print(f"\nfit vs hand loop, one epoch, batch 64, {args.threads[0]} thread(s): hand time / fit time, "
              "the loop training the compiled diagram | the hand-written model")
        for name in names:
            (same, tf, th), (whole, tf2, th2) = bench_fit(name, 64, args.rounds)
            print(f"{name:<13} {same:.3f} (fit {1e3 * tf:.1f} ms, loop {1e3 * th:.1f} ms per epoch) | "
                  f"{whole:.3f} (fit {1e3 * tf2:.1f} ms, loop {1e3 * th2:.1f} ms)", flush=True)


if __name__ == "__main__":
    main()
