"""``dlearn train`` and ``dlearn demo``: train a diagram on named data; run the distillation regime end to end.

torch and the backend are imported inside the commands, so that ``dlearn
validate`` and ``dlearn --help`` do not pay for them.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

from ..equations import equations
from ..errors import DiagramError, UsageError
from ..eval_commands import device_option
from ..io import atomic_write, load
from ..resources import data_path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):  # inf would train to NaN weights
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2 ** 64:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2^64), got {text}")
    return value


# ----------------------------------------------------------------------------- train


def _loss_table(rows: Sequence[Mapping[str, float]], first_column: str, labels: Sequence[Any]) -> str:
    """Losses as aligned text: a row per label (epoch or split), the total then equation [i]'s loss."""
    names = [n for n in rows[0] if n != "total"]
    header = [first_column, "total"] + [f"[{i}]" for i in range(len(names))]
    body = [[str(label)] + [f"{row[n]:.4f}" for n in ["total", *names]] for label, row in zip(labels, rows)]
    widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [header, *body])


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text}")
    return value


def _momentum(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _accuracy_table(rows: Sequence[Mapping[str, Any]], labels: Sequence[Any], names: Sequence[str]) -> str:
    """Held-out results as aligned text: per label (epoch), the total, each equation, then each accuracy."""
    with_acc = [n for n in names if n in rows[0]["accuracy"]]
    header = ["epoch", "total"] + [f"[{i}]" for i in range(len(names))] + \
        [f"acc[{names.index(n)}]" for n in with_acc]
    body = [[str(label), f"{r['total']:.4f}"] + [f"{r['equations'][n]:.4f}" for n in names]
            + [f"{r['accuracy'][n]:.4f}" for n in with_acc] for label, r in zip(labels, rows)]
    widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [header, *body])


def _optimizer_factory(args: argparse.Namespace) -> Any:
    """A function from the trainable parameters to the chosen optimizer (torch's defaults where not given)."""
    import torch

    decay = args.weight_decay
    if args.optimizer == "adam":
        return lambda params: torch.optim.Adam(params, lr=args.lr, weight_decay=decay or 0.0)
    if args.optimizer == "adamw":
        return lambda params: torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01 if decay is None else decay)
    return lambda params: torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=decay or 0.0)


def _check_output_places(args: argparse.Namespace) -> None:
    """Fail before training, not after, if an output cannot be written where it is asked for."""
    for option, value, is_dir in (("--history", args.history, False), ("--plot", args.plot, True)):
        if value is None:
            continue
        path = Path(value)
        parent = path.parent if str(path.parent) else Path(".")
        if (is_dir and path.exists() and not path.is_dir()) or (not is_dir and path.is_dir()):
            raise DiagramError.one("bad-value", option, f"{option} {value}: "
                                   + ("is a file, not a folder" if is_dir else "is a folder, not a file"))
        if not parent.is_dir():
            raise DiagramError.one("bad-value", option, f"{option} {value}: the folder {parent} does not exist")


def _history_document(args: argparse.Namespace, history: Any, names: list[str],
                      held_out: list[dict[str, Any]], held_out_name: str | None) -> dict[str, Any]:
    """The training history as JSON: per epoch the training means and held-out results, per step the total and
    each equation's unweighted distance (the total is their sum weighted as in the diagram)."""
    steps_per_epoch = len(history.steps) // max(len(history.epochs), 1)
    return {
        "diagram": args.diagram, "data": args.data, "validation": held_out_name, "equations": names,
        "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
        "epochs": [{"epoch": i + 1, "train": row, "validation": held_out[i] if held_out else None}
                   for i, row in enumerate(history.epochs)],
        "steps": [{"step": i + 1, "epoch": i // steps_per_epoch + 1 if steps_per_epoch else 1, "total": total,
                   "equations": equations}
                  for i, (total, equations) in enumerate(zip(history.steps, history.step_equations))],
    }


# the options that start processes; everything else is passed on to each process's own `dlearn train`
LAUNCH_OPTIONS = ("nproc_per_node", "nnodes", "rdzv_endpoint", "rdzv_id")
_TRAIN_PARSER: list[argparse.ArgumentParser] = []


def _worker_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """``train`` and the parsed options again, as each started process's command line, without the launch options."""
    options: list[str] = []
    positionals: list[str] = []
    for action in parser._actions:
        if action.dest in LAUNCH_OPTIONS or isinstance(action, argparse._HelpAction):
            continue
        value = getattr(args, action.dest, None)
        if not action.option_strings:
            positionals.extend(map(str, value) if isinstance(value, list) else [str(value)])
        elif value == action.default:
            continue
        elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            options.append(action.option_strings[-1])
        elif isinstance(value, list):
            options.extend(f"{action.option_strings[-1]}={v}" for v in value)
        else:
            options.append(f"{action.option_strings[-1]}={value}")
    return ["train", *options, "--", *positionals]


def _nothing_to_train(diagram: Any, path: str) -> bool:
    """Print why and return True if the diagram has no trainable model arrow or no equation."""
    if any(a.trainable for a in diagram.model_arrows()) and equations(diagram):
        return False
    print(f"error: {path} has nothing to train: it needs a trainable model arrow and an equation", file=sys.stderr)
    return True


def _launch(args: argparse.Namespace) -> int:
    """``dlearn train --nproc-per-node N``: the same command in N processes per machine, through torchrun's launcher."""
    from .data import load_for
    from .distributed import launch, launched

    if launched():
        print("error: --nproc-per-node starts processes; this process was itself started by a launcher "
              "(RANK, WORLD_SIZE, LOCAL_RANK are set)", file=sys.stderr)
        return 1
    if args.nnodes is not None and args.nnodes.split(":")[-1] != "1" and not args.rdzv_endpoint:
        print("error: training on several machines needs --rdzv-endpoint HOST:PORT (the same on every machine)",
              file=sys.stderr)
        return 2
    # what every process would refuse alike is refused here, once: the diagram, the data's columns (and rank 0's rows)
    diagram = load(args.diagram)
    if _nothing_to_train(diagram, args.diagram):
        return 1
    _check_output_places(args)
    load_for(diagram, args.data, "train", (0, args.nproc_per_node or 1))
    return launch(["diagrammatic_learning.cli", *_worker_argv(_TRAIN_PARSER[0], args)],
                  nproc_per_node=args.nproc_per_node or 1, nnodes=args.nnodes, rdzv_endpoint=args.rdzv_endpoint,
                  rdzv_id=args.rdzv_id)


def _train(args: argparse.Namespace) -> int:
    if args.nproc_per_node is not None or args.nnodes is not None or args.rdzv_endpoint is not None:
        return _launch(args)
    from .distributed import RankFailed

    try:
        return _train_here(args)
    except RankFailed:
        return 1  # the rank that failed printed its error


def _train_here(args: argparse.Namespace) -> int:
    """Train in this process: alone, or as one rank of a run started by torchrun (then rank 0 prints and writes)."""
    from .data import ColumnLoader, load_for
    from .init_option import load_inits, parse_inits
    from .distributed import current_group, process_device

    diagram = load(args.diagram)
    eqs = equations(diagram)
    if _nothing_to_train(diagram, args.diagram):
        return 1
    if args.momentum and args.optimizer != "sgd":
        raise UsageError(f"--momentum is for --optimizer sgd, not {args.optimizer}")
    inits = parse_inits(args.init or [])
    _check_output_places(args)
    from .devices import resolve_device

    device = process_device(resolve_device(args.device), args.device)
    group = current_group(device, args.backend)
    rank, world_size = (group.rank, group.world_size) if group is not None else (0, 1)
    main = rank == 0
    if group is None:
        tables = load_for(diagram, args.data, "train")
    else:  # each rank checks its block of the rows; a bad row anywhere stops every rank
        tables = group.together(load_for, diagram, args.data, "train", (rank, world_size))
    digits = args.data.partition(":")[0] == "digits"
    held_out_name = args.val_data or (f"{args.data} (test split)" if digits else None)
    # held-out data is measured (and printed) by rank 0 alone
    held_out_tables = (load_for(diagram, args.val_data or args.data, "test") if held_out_name and main else None)
    out = Path(args.weights_out or Path("runs") / Path(args.diagram).stem / "weights.safetensors")
    if args.weights_out is not None:  # a path the user gave: its folder must exist (a typo makes no folders)
        if not out.parent.is_dir():
            print(f"error: cannot write {out}: the folder {out.parent} does not exist", file=sys.stderr)
            return 1
    elif main:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"error: cannot create the folder for {out}: {e}", file=sys.stderr)
            return 1
    import torch

    from . import compile, fit
    from .measure import measure

    torch.manual_seed(args.seed)
    model = compile(diagram, dtype=args.dtype, device=device)
    load_inits(model, inits)
    loader = ColumnLoader.for_model(model, tables, args.batch_size, seed=args.seed, source=args.data)
    if world_size > 1:
        loader = loader.sharded(rank, world_size)
    if main:
        shards = f", {world_size} processes of {args.batch_size} examples per step" if world_size > 1 else ""
        print(f"training {args.diagram} on {args.data} ({' + '.join(map(str, loader.sizes))} rows), "
              f"{len(loader)} steps per epoch{shards}, {args.optimizer} on {device}, {args.dtype}; equations:")
        for i, eq in enumerate(eqs):
            print(f"  [{i}] {eq.name}")
    held_out: list[dict[str, Any]] = []

    def on_epoch_end(epoch: int, m: Any, history: Any) -> None:
        if held_out_tables is not None:
            result = measure(m, held_out_tables)
            held_out.append(result)
            history.evals.append((epoch, {**result["equations"], "total": result["total"]}))

    started = time.perf_counter()
    try:
        history = fit(model, loader, epochs=args.epochs, optimizer=_optimizer_factory(args),
                      checkpoint_dir=args.checkpoint_dir, progress=not args.quiet, on_epoch_end=on_epoch_end)
    except ValueError as e:  # fit's own checks: e.g. no equation reaches a trainable arrow
        print(f"error: cannot train {args.diagram}: {e}", file=sys.stderr)
        return 1
    if not main:
        return 0
    print(_loss_table(history.epochs, "epoch", range(1, len(history.epochs) + 1)))
    print(f"trained in {time.perf_counter() - started:.1f} s")
    names = [e.name for e in eqs]
    if held_out:
        print(f"held-out ({held_out_name}, evaluation mode):")
        print(_accuracy_table(held_out, range(1, len(held_out) + 1), names))
    try:
        model.save_weights(out)
    except OSError as e:
        print(f"error: cannot write {out}: {e}", file=sys.stderr)
        return 1
    print(f"weights written to {out}")
    if args.history:
        doc = _history_document(args, history, names, held_out, held_out_name)
        atomic_write(args.history, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
        print(f"history written to {args.history}")
    if args.plot:
        Path(args.plot).mkdir(exist_ok=True)
        plots = plot_equation_losses(history, model.equations, Path(args.diagram).stem, Path(args.plot))
        print(f"loss plots: {', '.join(str(p) for p in plots)}")
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
                    label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (unweighted)")
        ax.set_title(f"{stage}: {name}\n{eq.lhs} = {eq.rhs}, {eq.distance.name}, weight {eq.weight:g}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / f"{stage}-{i}-{_slug(name)}.png"
        image = io.BytesIO()
        fig.savefig(image, format="png")
        plt.close(fig)
        atomic_write(path, image.getvalue())
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
                                   "file whose arrays are columns (rows aligned per data object). On digits, training "
                                   "uses the fixed training split and, unless --val-data says otherwise, the test "
                                   "split is the held-out data measured after every epoch (losses and accuracy, "
                                   "in evaluation mode). Frozen arrows are always in evaluation mode (SPEC §9).")
    p.add_argument("diagram", metavar="DIAGRAM", help="the diagram file")
    p.add_argument("--data", required=True, metavar="DATA", help="training data: digits, digits:VIEW or a file")
    p.add_argument("--val-data", metavar="DATA",
                   help="held-out data measured after every epoch, named as --data (default: the digits test "
                        "split when training on digits, else none)")
    p.add_argument("--epochs", type=_positive_int, default=10, help="passes over the training data")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="examples per step")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default="adam", help="the optimizer")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="learning rate")
    p.add_argument("--weight-decay", type=_nonnegative_float, metavar="WD",
                   help="weight decay (default: the optimizer's own: 0 for adam and sgd, 0.01 for adamw)")
    p.add_argument("--momentum", type=_momentum, default=0.0, help="SGD momentum (sgd only)")
    p.add_argument("--device", metavar="DEVICE", type=device_option,
                   help="cpu, cuda or cuda:N (default: cuda when available, else cpu); under a launcher, cuda "
                        "puts each process on its LOCAL_RANK GPU")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="compute dtype")
    p.add_argument("--init", action="append", metavar="ARROW=FILE[:SOURCE]",
                   help="start from trained weights instead of a fresh init; repeatable. ARROW=FILE loads one "
                        "arrow from FILE (a weights file, taking its tensors of arrow SOURCE, default ARROW, "
                        "or a file of one arrow written by save_arrow); a plain FILE loads the whole diagram's "
                        "weights. Arrows not named keep their fresh initialisation (default: none)")
    p.add_argument("--weights-out", metavar="PATH",
                   help="where to write the trained weights (default runs/<diagram>/weights.safetensors, "
                        "whose folders are created; the folder of a PATH given here must exist)")
    p.add_argument("--history", metavar="FILE.json",
                   help="also write the history: per epoch the training and held-out losses and accuracy, "
                        "per step the total loss and each equation's loss (default: not written)")
    p.add_argument("--plot", metavar="DIR",
                   help="also write one loss plot per equation into DIR, training and held-out (default: none)")
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="also write DIR/epoch-<n>.safetensors after each epoch (default: none)")
    p.add_argument("--seed", type=_seed, default=0, help="seeds the initialisation and the batch order "
                                                         "(an integer in [0, 2^64); default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on terminals)")
    g = p.add_argument_group("several processes or machines (torch.distributed; --batch-size is per process)")
    g.add_argument("--nproc-per-node", type=_positive_int, metavar="N",
                   help="start N processes on this machine through torchrun's launcher, each training on its "
                        "shard of every epoch (default: train in this process only)")
    g.add_argument("--nnodes", metavar="N", help="number of machines, or MIN:MAX (torchrun's --nnodes; default: 1)")
    g.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                   help="rendezvous endpoint for several machines (torchrun's c10d rendezvous; default: "
                        "127.0.0.1 at a free port, this machine only)")
    g.add_argument("--rdzv-id", default=None, metavar="ID", help="job id shared by the machines of one run (default: dlearn)")
    g.add_argument("--backend", choices=("gloo", "nccl"),
                   help="process group backend (default: nccl with --device cuda, gloo otherwise)")
    p.set_defaults(func=_train)
    _TRAIN_PARSER[:] = [p]

    p = sub.add_parser("demo", help="distil a digit classifier into a small student; plot the losses",
                       description="Runs examples/distillation.py: trains a teacher on digits, then a small "
                                   "student from the teacher and the labels; prints both held-out accuracies "
                                   "and writes a loss plot per equation, and both weights files, into DIR.")
    p.add_argument("--out", default=str(Path("runs") / "demo"), metavar="DIR", help="output folder")
    p.add_argument("--teacher-epochs", type=_positive_int, default=15, help="epochs of teacher training")
    p.add_argument("--student-epochs", type=_positive_int, default=25, help="epochs of student training")
    p.add_argument("--quiet", action="store_true", help="no progress bars (default: bars on terminals)")
    p.set_defaults(func=_demo)
