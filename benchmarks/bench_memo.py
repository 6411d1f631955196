"""Memoized evaluation vs naive per-term evaluation on a chain of k blocks with two heads per level.

    python benchmarks/bench_memo.py [--k 1 2 4 8 16 32] [--batch-size 256]

The diagram: X0 = image, blocks b1..bk with b_i: X(i-1) -> X(i), and at every
level two heads a_i, c_i: X(i) -> Y(i) plus the labels y_i. Each Y(i) has
three terms (y_i, a_i(b_i(...b_1(x))), c_i(...)), so three equations, each
of whose trainable terms runs the first i blocks. A naive evaluator computes
every term of every equation from scratch: 4·i block applications at level
i, 2k(k+1) in all. The compiled diagram computes each distinct subterm once
per batch: k applications. This prints the time of a forward and backward
pass of each, and the block applications each makes, as k grows.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from diagrammatic_learning import Diagram, layer, mlp, sequential
from diagrammatic_learning.terms import Term
from diagrammatic_learning.torch_backend import compile
from diagrammatic_learning.torch_backend.data import digits_columns

WIDTH = 64


def chain_diagram(k: int) -> Diagram:
    """k blocks in a chain, two classifier heads and the labels at every level."""
    d = Diagram(f"chain{k}")
    d.data("D")
    d.tensor("X0", [WIDTH])
    d.data_arrow("x", "D", "X0", "image")
    for i in range(1, k + 1):
        d.tensor(f"X{i}", [WIDTH])
        d.categorical(f"Y{i}", 10)
        d.data_arrow(f"y{i}", "D", f"Y{i}", "label")
        d.model(f"b{i}", f"X{i - 1}", f"X{i}",
                sequential(layer("linear", in_features=WIDTH, out_features=WIDTH), layer("tanh")))
        d.model(f"a{i}", f"X{i}", f"Y{i}", mlp(WIDTH, 10))
        d.model(f"c{i}", f"X{i}", f"Y{i}", mlp(WIDTH, 10))
    return d


class NaiveEvaluator:
    """The loss computed term by term with no sharing: every term of every equation evaluated from its leaves."""

    def __init__(self, model):
        self.model = model
        self.block_applications = 0

    def value(self, term: Term, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        arrow = self.model.diagram.arrows[term.arrow]
        if arrow.kind == "data":
            return batch[arrow.column]
        if arrow.name.startswith("b"):
            self.block_applications += 1
        return self.model[arrow.name](*(self.value(a, batch) for a in term.args))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for eq in self.model.equations:  # all cross-entropy here: labels (index) or another head (logits)
            lhs, rhs = self.value(eq.lhs, batch), self.value(eq.rhs, batch)
            target = rhs if rhs.dtype == torch.int64 else F.softmax(rhs, -1)
            total = total + eq.weight * F.cross_entropy(lhs, target)
        return total


def _forward_backward_seconds(model, loss_fn) -> float:
    model.zero_grad(set_to_none=True)
    started = time.perf_counter()
    loss_fn().backward()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description="Memoized vs naive evaluation as the chain grows.")
    parser.add_argument("--k", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    columns = digits_columns("train")
    batch = {c: torch.from_numpy(columns[c][:args.batch_size]) for c in ("image", "label")}
    print(f"forward+backward, batch {args.batch_size}, median of {args.repeats}")
    print(f"{'k':>3} {'equations':>9} {'memo ms':>8} {'naive ms':>9} {'naive/memo':>10} "
          f"{'blocks run (memo)':>17} {'(naive)':>8}")
    for k in args.k:
        torch.manual_seed(0)
        model = compile(chain_diagram(k))
        naive = NaiveEvaluator(model)
        with torch.no_grad():
            gap = abs(float(model(batch)) - float(naive.loss(batch)))
        assert gap < 1e-4 * max(1.0, k), f"the two evaluators disagree by {gap}"
        for _ in range(3):  # warm up both
            _forward_backward_seconds(model, lambda: model(batch))
            _forward_backward_seconds(model, lambda: naive.loss(batch))
        memo_runs, naive_runs = [], []
        for _ in range(args.repeats):  # interleaved
            memo_runs.append(_forward_backward_seconds(model, lambda: model(batch)))
            naive_runs.append(_forward_backward_seconds(model, lambda: naive.loss(batch)))
        memo_s, naive_s = statistics.median(memo_runs), statistics.median(naive_runs)
        model(batch)
        memo_blocks = sum(n for name, n in model.application_counts.items() if name.startswith("b"))
        naive.block_applications = 0
        naive.loss(batch)
        print(f"{k:>3} {len(model.equations):>9} {1e3 * memo_s:>8.2f} {1e3 * naive_s:>9.2f} "
              f"{naive_s / memo_s:>10.2f} {memo_blocks:>17} {naive.block_applications:>8}")


if __name__ == "__main__":
    main()
