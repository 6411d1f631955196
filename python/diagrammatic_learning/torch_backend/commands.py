"""``dlearn train`` and ``dlearn demo``: train a diagram on named data; run the distillation regime end to end.

torch and the backend are imported inside the commands, so that ``dlearn
validate`` and ``dlearn --help`` do not pay for them.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

from ..equations import equations
from ..io import load
from ..resources import data_path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


# ----------------------------------------------------------------------------- train


def _loss_table(rows: Sequence[Mapping[str, float]], first_column: str, labels: Sequence[Any]) -> str:
    """Losses as aligned text: a row per label (epoch or split), the total then equation [i]'s loss."""
    names = [n for n in rows[0] if n != "total"]
    header = [first_column, "total"] + [f"[{i}]" for i in range(len(names))]
    body = [[str(label)] + [f"{row[n]:.4f}" for n in ["total", *names]] for label, row in zip(labels, rows)]
    widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [header, *body])


def _heldout_losses(model: Any, tables: list[Mapping[str, Any]]) -> dict[str, float]:
    """Every equation's unweighted loss and the total on whole tables, as one batch, in evaluation mode."""
    from .training import mean_losses

    return mean_losses(model, [{col: values for table in tables for col, values in table.items()}])


def _train(args: argparse.Namespace) -> int:
    from .data import ColumnLoader, load_for

    diagram = load(args.diagram)
    eqs = equations(diagram)
    if not any(a.trainable for a in diagram.model_arrows()) or not eqs:
        print(f"error: {args.diagram} has nothing to train: it needs a trainable model arrow and an equation",
              file=sys.stderr)
        return 1
    tables = load_for(diagram, args.data, "train")
    out = Path(args.weights_out or Path("runs") / Path(args.diagram).stem / "weights.safetensors")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: cannot create the folder for {out}: {e}", file=sys.stderr)
        return 1
    import torch

    from . import compile, fit

    torch.manual_seed(args.seed)
    model = compile(diagram, weights=args.init)
    loader = ColumnLoader(tables, args.batch_size, seed=args.seed)
    print(f"training {args.diagram} on {args.data} ({' + '.join(map(str, loader.sizes))} rows), "
          f"{len(loader)} steps per epoch; equations:")
    for i, eq in enumerate(eqs):
        print(f"  [{i}] {eq.name}")
    started = time.perf_counter()
    history = fit(model, loader, epochs=args.epochs, lr=args.lr, checkpoint_dir=args.checkpoint_dir,
                  progress=not args.quiet)
    print(_loss_table(history.epochs, "epoch", range(1, len(history.epochs) + 1)))
    print(f"trained in {time.perf_counter() - started:.1f} s")
    if args.data.partition(":")[0] == "digits":
        test = _heldout_losses(model, load_for(diagram, args.data, "test"))
        print("held-out (digits test split, evaluation mode):")
        print(_loss_table([test], "split", ["test"]))
    try:
        model.save_weights(out)
    except OSError as e:
        print(f"error: cannot write {out}: {e}", file=sys.stderr)
        return 1
    print(f"weights written to {out}")
    return 0


# ----------------------------------------------------------------------------- demo


def _load_example(name: str) -> ModuleType:
    """An example script (``examples/<name>.py``) as a module, from a checkout or the installed package."""
    path = data_path("examples") / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"diagrammatic_learning_example_{name}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"the example script {path} is missing from this installation")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _slug(text: str) -> str:
    """An equation name as a file name part: ``student(x) = y`` → ``student_x_y``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "equation"


def plot_equation_losses(history: Any, eqs: Sequence[Any], stage: str, out: Path) -> list[Path]:
    """One PNG per equation: training loss (mean over each epoch) and, if recorded, held-out loss, per epoch.

    ``eqs`` are the model's ``Equation``s, in the order of the history's columns.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    epochs = range(1, len(history.epochs) + 1)
    for i, eq in enumerate(eqs):
        name = eq.name
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        ax.plot(epochs, [row[name] for row in history.epochs], marker="o", label="training (epoch mean)")
        if history.evals:
            ax.plot([e for e, _ in history.evals], [row[name] for _, row in history.evals], marker="s",
                    label="held-out")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (unweighted)")
        ax.set_title(f"{stage}: {name}\n{eq.lhs} = {eq.rhs}, {eq.distance.name}, weight {eq.weight:g}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / f"{stage}-{i}-{_slug(name)}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _demo(args: argparse.Namespace) -> int:
    example = _load_example("distillation")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: cannot create {out}: {e}", file=sys.stderr)
        return 1
    print("distillation on digits: training the teacher (examples/supervised.json), "
          "then the student (examples/distillation.json)")
    started = time.perf_counter()
    result = example.run(teacher_epochs=args.teacher_epochs, student_epochs=args.student_epochs,
                         progress=not args.quiet)
    elapsed = time.perf_counter() - started
    plots = (plot_equation_losses(result["teacher_history"], result["teacher"].equations, "teacher", out)
             + plot_equation_losses(result["student_history"], result["student"].equations, "student", out))
    result["teacher"].save_weights(out / "teacher.safetensors")
    result["student"].save_weights(out / "student.safetensors")
    print(f"teacher held-out accuracy: {result['teacher_accuracy']:.3f}")
    print(f"student held-out accuracy: {result['student_accuracy']:.3f} (chance {result['chance']:.2f})")
    print(f"trained in {elapsed:.1f} s; loss plots: " + ", ".join(str(p) for p in plots))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a diagram on bundled or file data and save its weights",
                       description="Train a diagram's trainable arrows by minimising its loss. DATA is "
                                   "'digits' (scikit-learn's 8x8 digits, all derived columns), 'digits:VIEW' "
                                   "(views: image, tasks, fewshot, halves, captions), or a .safetensors or .npz "
                                   "file whose arrays are columns (rows aligned per data object). On digits, training uses the "
                                   "fixed training split and the held-out losses of the test split are printed.")
    p.add_argument("diagram", metavar="DIAGRAM")
    p.add_argument("--data", required=True, metavar="DATA")
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--init", metavar="WEIGHTS", help="start from these weights (safetensors) instead of a fresh init")
    p.add_argument("--weights-out", metavar="PATH",
                   help="where to write the trained weights (default runs/<diagram>/weights.safetensors)")
    p.add_argument("--checkpoint-dir", metavar="DIR", help="also write DIR/epoch-<n>.safetensors after each epoch")
    p.add_argument("--seed", type=int, default=0, help="seeds the initialisation and the batch order")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("demo", help="distil a digit classifier into a small student; plot the losses",
                       description="Runs examples/distillation.py: trains a teacher on digits, then a small "
                                   "student from the teacher and the labels; prints both held-out accuracies "
                                   "and writes a loss plot per equation, and both weights files, into DIR.")
    p.add_argument("--out", default=str(Path("runs") / "demo"), metavar="DIR")
    p.add_argument("--teacher-epochs", type=_positive_int, default=15)
    p.add_argument("--student-epochs", type=_positive_int, default=25)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_demo)
