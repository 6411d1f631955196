"""``dlearn validate`` and ``dlearn show``: check diagram files and print their equations."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .diagram import CategoricalObject, DataArrow, Diagram, FunctionArrow, ModelArrow, TensorObject
from .equations import enumerate_terms, equations
from .errors import DiagramError, Problem
from .io import load


def _problem_json(p: Problem) -> dict[str, str]:
    return {"code": p.code, "pointer": p.pointer, "message": p.message}


def _validate_json(files: list[str]) -> int:
    reports = []
    for path in files:
        try:
            load(path)
        except DiagramError as e:
            reports.append({"file": path, "ok": False, "problems": [_problem_json(p) for p in e.problems]})
        else:
            reports.append({"file": path, "ok": True, "problems": []})
    print(json.dumps({"ok": all(r["ok"] for r in reports), "files": reports}, indent=2, ensure_ascii=False))
    return 0 if all(r["ok"] for r in reports) else 1


def _validate(args: argparse.Namespace) -> int:
    if args.json:
        return _validate_json(args.files)
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


def show_document(d: Diagram) -> dict[str, Any]:
    """What ``dlearn show`` prints, as JSON: objects, arrows, the terms of each object and the equations."""
    objects = []
    for o in d.objects.values():
        j: dict[str, Any] = {"name": o.name, "kind": o.kind}
        if isinstance(o, TensorObject):
            j.update(shape=list(o.shape), dtype=o.dtype)
        elif isinstance(o, CategoricalObject):
            j.update(classes=o.classes, shape=list(o.shape))
        objects.append(j)
    arrows = []
    for a in d.arrows.values():
        j = {"name": a.name, "kind": a.kind, "sources": list(a.sources), "target": a.target}
        if isinstance(a, DataArrow):
            j.update(column=a.column, encoding=a.encoding)
        elif isinstance(a, FunctionArrow):
            j["op"] = a.op
        elif isinstance(a, ModelArrow):
            j.update(trainable=a.trainable, external=a.external,
                     layers=None if a.architecture is None else len(a.architecture.layers))
        arrows.append(j)
    eqs = [{"index": i, "name": e.name, "object": e.object, "data_object": e.data_object, "lhs": str(e.lhs),
            "rhs": str(e.rhs), "distance": {"name": e.distance.name, **e.distance.params}, "weight": e.weight,
            "explicit": e.explicit} for i, e in enumerate(equations(d))]
    return {"name": d.name, "objects": objects, "arrows": arrows,
            "terms": {obj: [str(t) for t, _ in ts] for obj, ts in enumerate_terms(d).items()}, "equations": eqs}


def _show(args: argparse.Namespace) -> int:
    d = load(args.file)
    if args.json:
        print(json.dumps(show_document(d), indent=2, ensure_ascii=False))
        return 0
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
    p.add_argument("files", nargs="+", metavar="FILE", help="diagram files")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object {"ok", "files": [{"file", "ok", "problems"}]} (default: text)')
    p.set_defaults(func=_validate)
    p = sub.add_parser("show", help="print a diagram's objects, arrows, terms and equations")
    p.add_argument("file", metavar="FILE", help="a diagram file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text (default: text)")
    p.set_defaults(func=_show)
