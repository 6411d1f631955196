"""One training step of each example regime: the compiled diagram vs the same step written by hand.

    python benchmarks/bench_step.py [--batch-size 256] [--repeats 200]

Both steps use the very same modules (taken from the compiled model with
``m["name"]``), the same batch and an Adam step over the same trainable
parameters; only the way the loss is put together differs. Repetitions are
interleaved (compiled, hand, compiled, hand, ...) so that drift in the
machine's speed hits both alike; the medians are compared. Target: the
compiled step costs at most 1.05 times the hand-written one.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from diagrammatic_learning.torch_backend import compile
from diagrammatic_learning.torch_backend.data import ColumnLoader, digits

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    return temperature ** 2 * F.kl_div(F.log_softmax(student / temperature, -1),
                                       F.log_softmax(teacher / temperature, -1), reduction="batchmean",
                                       log_target=True)


def hand_supervised(m, b):
    return F.cross_entropy(m["classifier"](b["image"]), b["label"])


def hand_distillation(m, b):
    student = m["student"](b["image"])
    with torch.no_grad():
        teacher = m["teacher"](b["image"])
    return F.cross_entropy(student, b["label"]) + 0.9 * _kl(student, teacher, 4.0)


def hand_multitask(m, b):
    h = m["backbone"](b["image"])
    return (F.cross_entropy(m["digit_head"](m["backbone"](b["few_image"])), b["few_label"])
            + F.cross_entropy(m["parity_head"](h), b["parity"]) + F.cross_entropy(m["big_head"](h), b["big"]))


def hand_alignment(m, b):
    z_top, z_bottom = m["enc_top"](b["top"]), m["enc_bottom"](b["bottom"])
    from_top, from_bottom = m["head"](z_top), m["head"](z_bottom)
    return (10.0 * F.mse_loss(z_top, z_bottom) + F.cross_entropy(from_top, b["label"])
            + F.cross_entropy(from_bottom, b["label"]) + F.cross_entropy(from_top, F.softmax(from_bottom, -1)))


def hand_autoencoder(m, b):
    return F.mse_loss(m["dec"](m["enc"](b["image"])), b["image"])


def hand_captioning(m, b):
    logits = m["captioner"](b["image"], b["caption_in"])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b["caption_out"].reshape(-1))


REGIMES: dict[str, Callable] = {
    "supervised": hand_supervised, "distillation": hand_distillation, "multitask": hand_multitask,
    "alignment": hand_alignment, "autoencoder": hand_autoencoder, "captioning": hand_captioning,
}


def _step(loss_fn: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer) -> float:
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss_fn().backward()
    optimizer.step()
    return time.perf_counter() - started


def bench(name: str, batch_size: int, repeats: int, warmup: int = 20) -> dict:
    """Median seconds of one compiled and one hand-written step of regime ``name``, and their agreement."""
    torch.manual_seed(0)
    m = compile(EXAMPLES / f"{name}.json")
    batches = [b for _, b in zip(range(8), ColumnLoader(digits("train"), batch_size, seed=0, drop_last=True))]
    params = [p for p in m.parameters() if p.requires_grad]
    compiled_opt, hand_opt = torch.optim.Adam(params, 1e-4), torch.optim.Adam(params, 1e-4)
    hand = REGIMES[name]
    with torch.no_grad():  # both sides must compute the same loss, or the comparison means nothing
        m.eval()
        gap = abs(float(m(batches[0])) - float(hand(m, batches[0])))
        m.train()
    times: dict[str, list[float]] = {"compiled": [], "hand": []}
    for i in range(warmup + repeats):
        b = batches[i % len(batches)]
        order = [("compiled", lambda: m(b), compiled_opt), ("hand", lambda: hand(m, b), hand_opt)]
        for label, loss_fn, opt in order if i % 2 == 0 else order[::-1]:
            t = _step(loss_fn, opt)
            if i >= warmup:
                times[label].append(t)
    compiled, manual = statistics.median(times["compiled"]), statistics.median(times["hand"])
    return {"name": name, "compiled_ms": 1e3 * compiled, "hand_ms": 1e3 * manual, "ratio": compiled / manual,
            "loss_gap": gap}


def overhead(name: str, batch_size: int, repeats: int) -> dict:
    """Where the compiled step's extra time goes: µs of the batch check and of the rest of the forward pass.

    Forward passes without gradients, compiled and hand-written interleaved;
    the batch check (``BatchChecker``, SPEC §8 on every batch) timed alone.
    """
    torch.manual_seed(0)
    m = compile(EXAMPLES / f"{name}.json")
    b = next(iter(ColumnLoader(digits("train"), batch_size, seed=0, drop_last=True)))
    hand = REGIMES[name]
    runs: dict[str, list[float]] = {"compiled": [], "hand": [], "check": []}
    with torch.no_grad():
        for i in range(repeats + 50):
            for label, fn in (("compiled", lambda: m(b)), ("hand", lambda: hand(m, b)),
                              ("check", lambda: m._check_batch(b))):
                started = time.perf_counter()
                fn()
                if i >= 50:
                    runs[label].append(time.perf_counter() - started)
    us = {k: 1e6 * statistics.median(v) for k, v in runs.items()}
    return {"name": name, "forward_gap_us": us["compiled"] - us["hand"], "check_us": us["check"],
            "hand_forward_us": us["hand"]}


def main() -> None:
    parser = argparse.ArgumentParser(description="Compiled vs hand-written training step, per regime.")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--only", nargs="*", choices=list(REGIMES), help="regimes to run (default: all)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the compiled forward's extra cost: the batch check and the rest")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"batch {args.batch_size}, {args.repeats} interleaved repeats, median")
    print(f"{'regime':<13} {'compiled ms':>11} {'hand ms':>8} {'ratio':>6}  loss gap")
    for name in args.only or REGIMES:
        r = bench(name, args.batch_size, args.repeats)
        print(f"{r['name']:<13} {r['compiled_ms']:>11.3f} {r['hand_ms']:>8.3f} {r['ratio']:>6.3f}  {r['loss_gap']:.1e}")
    if args.breakdown:
        print("\nforward without gradients: the compiled pass's extra time (µs)")
        print(f"{'regime':<13} {'hand fwd':>8} {'extra':>6} {'of which batch check':>21}")
        for name in args.only or REGIMES:
            r = overhead(name, args.batch_size, args.repeats)
            print(f"{r['name']:<13} {r['hand_forward_us']:>8.1f} {r['forward_gap_us']:>6.1f} {r['check_us']:>21.1f}")


if __name__ == "__main__":
    main()
