"""``dlearn eval``: trained weights measured on data with any backend (torch, reference, julia).

The backends and torch are imported inside the command, so that registering it costs nothing.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any, Callable

from .equations import equations
from .errors import DiagramError, UsageError
from .evaluation import Accumulator, accuracy_terms, batches, format_result
from .io import load
from .tensorfiles import load_weights

DEFAULT_DTYPE = {"torch": "float32", "reference": "float64", "julia": "float64"}
DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")


def device_option(text: str) -> str:
    """A ``--device`` value's form (cpu, cuda, cuda:N), checked when parsing; whether it exists, when used."""
    if not DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"cpu, cuda or cuda:N, not {text!r}")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _torch(args: argparse.Namespace, diagram: Any, tables: list, dtype: str) -> dict[str, Any]:
    from .torch_backend import compile
    from .torch_backend.devices import resolve_device
    from .torch_backend.measure import measure

    model = compile(diagram, weights=args.weights, dtype=dtype, device=resolve_device(args.device))
    return measure(model, tables, args.batch_size)


def _each_batch(args: argparse.Namespace, diagram: Any, tables: list,
                run: Callable[[dict, Accumulator], tuple[dict[str, float], float, Any]]) -> dict[str, Any]:
    """Means over ``tables`` from ``run(batch, accumulator)``: equation values, total, and the term values
    accuracy needs (or None when ``run`` added top-1 counts to the accumulator itself)."""
    eqs = equations(diagram)
    acc = Accumulator([e.name for e in eqs], accuracy_terms(diagram, eqs))
    for rows, batch in batches(tables, args.batch_size):
        values, total, terms = run(batch, acc)
        acc.add(rows, values, total, terms)
    return acc.result()


def _reference(args: argparse.Namespace, diagram: Any, tables: list, dtype: str) -> dict[str, Any]:
    from .reference import evaluate

    weights = load_weights(diagram, args.weights)

    def run(batch: dict, acc: Accumulator) -> tuple[dict[str, float], float, Any]:
        r = evaluate(diagram, weights, batch)
        return r.equations, r.total, r.terms

    return _each_batch(args, diagram, tables, run)


def _julia(args: argparse.Namespace, diagram: Any, tables: list, dtype: str) -> dict[str, Any]:
    from . import julia

    ok, why = julia.is_available()
    if not ok:
        raise DiagramError.one("bad-value", "--backend", f"the julia backend is unavailable here: {why}")
    backend = julia.FluxBackend()
    weights = load_weights(diagram, args.weights)

    def run(batch: dict, acc: Accumulator) -> tuple[dict[str, float], float, Any]:
        r = backend.evaluate_accuracy(diagram, weights, batch, list(acc.accuracy), dtype)
        acc.add_hits(r["hits"])  # counted in Julia: the bridge returns counts, not term values
        return r["equations"], r["total"], None

    return _each_batch(args, diagram, tables, run)


BACKENDS = {"torch": _torch, "reference": _reference, "julia": _julia}


def _eval(args: argparse.Namespace) -> int:
    if args.backend == "reference" and args.dtype == "float32":
        raise UsageError("the reference backend computes in float64 only; drop --dtype or use --backend torch")
    if args.device is not None and args.backend != "torch":
        raise UsageError("--device is for the torch backend")
    dtype = args.dtype or DEFAULT_DTYPE[args.backend]
    diagram = load(args.diagram)
    from .torch_backend.data import load_for

    tables = load_for(diagram, args.data, args.split)
    result = BACKENDS[args.backend](args, diagram, tables, dtype)
    names = [e.name for e in equations(diagram)]
    if args.json:
        doc = {"diagram": args.diagram, "weights": args.weights, "data": args.data,
               "split": args.split if args.data.partition(":")[0] == "digits" else None,
               "backend": args.backend, "dtype": dtype, **result}
        print(json.dumps(doc, indent=2))
        return 0
    where = f" ({args.split} split)" if args.data.partition(":")[0] == "digits" else ""
    print(f"{args.diagram} with {args.weights} on {args.data}{where}: {result['examples']} examples, "
          f"{args.backend} backend, {dtype}")
    print(format_result(result, names))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure trained weights on data: equation means, total, accuracy",
                       description="Evaluate DIAGRAM with trained weights on a data set, in evaluation mode "
                                   "(dropout off): the mean of each equation and of the total loss over the "
                                   "examples, and for each equation whose right-hand side is a label column "
                                   "(categorical, index encoding) the top-1 accuracy of its left-hand side. "
                                   "DATA is named as for `dlearn train`.")
    p.add_argument("diagram", metavar="DIAGRAM", help="the diagram file")
    p.add_argument("--weights", required=True, metavar="WEIGHTS", help="its weights file (safetensors)")
    p.add_argument("--data", required=True, metavar="DATA",
                   help="'digits', 'digits:VIEW', or a .safetensors/.npz file of columns")
    p.add_argument("--split", choices=["train", "test", "all"], default="test",
                   help="which split of the bundled digits (ignored for files)")
    p.add_argument("--backend", choices=list(BACKENDS), default="torch", help="who computes")
    p.add_argument("--dtype", choices=["float32", "float64"],
                   help="compute dtype (default: float32 for torch, float64 for reference and julia)")
    p.add_argument("--device", metavar="DEVICE", type=device_option,
                   help="torch device: cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="examples per evaluated batch")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=_eval)
