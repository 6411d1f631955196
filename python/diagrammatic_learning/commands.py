"""``dlearn validate`` and ``dlearn show``: check diagram files and print their equations."""

from __future__ import annotations

import argparse
import sys

from .equations import enumerate_terms, equations
from .errors import DiagramError
from .io import load


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            load(path)
        except DiagramError as e:
            failed += 1
            print(f"{path}: invalid, {len(e.problems)} problem(s)")
            for p in e.problems:
                print(f"  {p.pointer or '/'}: {p.message} [{p.code}]")
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def _show(args: argparse.Namespace) -> int:
    d = load(args.file)
    out = sys.stdout
    print(f"diagram {d.name or args.file}", file=out)
    print("objects:", file=out)
    for o in d.objects.values():
        detail = {"data": "", "tensor": f" {list(getattr(o, 'shape', []))} {getattr(o, 'dtype', '')}",
                  "categorical": f" {getattr(o, 'classes', '')} classes"
                                 + (f" at {list(o.shape)}" if getattr(o, "shape", ()) else "")}[o.kind]
        print(f"  {o.name}: {o.kind}{detail}", file=out)
    print("arrows:", file=out)
    for a in d.arrows.values():
        src = a.sources[0] if len(a.sources) == 1 else "(" + ", ".join(a.sources) + ")"
        what = {"data": lambda: f"column {a.column!r}",
                "function": lambda: a.op,
                "model": lambda: ("trainable" if a.trainable else "frozen")
                + (", external" if a.external else f", {len(a.architecture.layers)} layers")}[a.kind]()
        print(f"  {a.name}: {src} → {a.target}  [{a.kind}: {what}]", file=out)
    print("terms:", file=out)
    for obj, ts in enumerate_terms(d).items():
        print(f"  {obj}: " + ", ".join(str(t) for t, _ in ts), file=out)
    print("equations:", file=out)
    for i, e in enumerate(equations(d)):
        print(f"  {i}. {e.name}: {e}", file=out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check diagram files; exit 1 if any is invalid")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=_validate)
    p = sub.add_parser("show", help="print a diagram's objects, arrows, terms and equations")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=_show)
