"""``dlearn glue`` and ``dlearn draw``: compose diagram files and draw them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .compose import gluing
from .draw import GraphvizNotFound, draw, drawing
from .errors import DiagramError, Problem, UsageError
from .io import atomic_write, dumps, load, read_document
from .tensorfiles import load_weights, write_safetensors


def in_file(path: str, err: DiagramError) -> DiagramError:
    """``err`` with every JSON pointer that lacks a file written as ``path#pointer``."""
    return DiagramError([p if "#" in p.pointer or p.pointer == str(path)
                         else Problem(p.code, f"{path}#{p.pointer}", p.message) for p in err.problems])


def _load(path: str):
    try:
        return load(path)
    except DiagramError as e:
        raise in_file(path, e) from None


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (through symlinks and ``..``), existing or not."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _check_outputs(outputs: dict[str, str], inputs: dict[str, str]) -> None:
    """``bad-value`` if two outputs are one file, or an output would overwrite an input, before anything is written."""
    problems = []
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if _same_file(outputs[a], outputs[b]):
                problems.append(Problem("bad-value", a, f"{a} and {b} are the same file {outputs[a]}: the "
                                                        f"second would overwrite the first"))
        for what, path in inputs.items():
            if _same_file(outputs[a], path):
                problems.append(Problem("bad-value", a, f"{a} {outputs[a]} is the input {what}; write elsewhere"))
    if problems:
        raise DiagramError(problems)


def _glue(args: argparse.Namespace) -> int:
    weights_out = None
    if args.weights:
        weights_out = args.weights_out or str(Path(args.output).with_suffix(".safetensors"))
    inputs = {"FIRST": args.first, "SECOND": args.second}
    inputs.update({"--along": args.along} if args.along else {})
    inputs.update({f"--weights {k + 1}": w for k, w in enumerate(args.weights or [])})
    _check_outputs({"-o": args.output, **({"--weights-out": weights_out} if weights_out else {})}, inputs)
    d1, d2 = _load(args.first), _load(args.second)
    along = read_document(args.along) if args.along else {}
    if args.weights and len(args.weights) != 2:
        raise DiagramError.one("bad-value", "--weights", "give two weights files, one per diagram")
    g = gluing(d1, d2, along, prefix=args.prefix, name=args.name, along_source=args.along or "along")
    weights = None
    if args.weights:
        weights = g.weights(load_weights(d1, args.weights[0]), load_weights(d2, args.weights[1]))
    atomic_write(args.output, dumps(g.diagram).encode("utf-8"))
    print(f"wrote {args.output}: {len(g.diagram.objects)} objects, {len(g.diagram.arrows)} arrows")
    if weights is not None:
        write_safetensors(weights, weights_out)
        print(f"wrote {weights_out}: {len(weights)} tensors")
    return 0


def _draw(args: argparse.Namespace) -> int:
    if args.output == "-":
        return _draw_to_stdout(args)
    _check_outputs({"-o": args.output}, {"FILE": args.file})
    d = _load(args.file)
    try:
        fmt = draw(d, args.output, args.format, args.equation)
    except GraphvizNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({fmt})")
    return 0


def _draw_to_stdout(args: argparse.Namespace) -> int:
    """``-o -``: the drawing's text (DOT by default, Mermaid or SVG) on standard output, nothing else."""
    fmt = args.format or "dot"
    if fmt == "png":
        raise UsageError("PNG is binary: write it to a file (-o out.png), or choose dot, mermaid or svg for -o -")
    d = _load(args.file)
    try:
        text = drawing(d, fmt, args.equation).decode("utf-8")
    except GraphvizNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("glue", help="glue two diagrams along a common part into one",
                       description="Glue SECOND onto FIRST along the parts named in the --along file "
                                   '({"objects": {"X": "X"}, "arrows": {"backbone": "backbone"}}, names of FIRST '
                                   "to names of SECOND, or a list of shared names); other parts stay apart, clashing "
                                   "names of SECOND get a prefix. Without --along: the disjoint union.")
    p.add_argument("first", metavar="FIRST", help="the first diagram file")
    p.add_argument("second", metavar="SECOND", help="the diagram file glued onto FIRST")
    p.add_argument("--along", metavar="ALONG.json", help="the common part (default: nothing shared)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.json", help="the glued diagram file to write")
    p.add_argument("--prefix", help="namespace for SECOND's clashing names (default: its name, else 'right')")
    p.add_argument("--name", help="name of the glued diagram (default: none)")
    p.add_argument("--weights", nargs=2, metavar=("FIRST.safetensors", "SECOND.safetensors"),
                   help="also write both sides' weights under the glued names (FIRST's win for shared arrows; "
                        "default: no weights)")
    p.add_argument("--weights-out", metavar="OUT.safetensors",
                   help="where (default: OUT with .safetensors); it must differ from OUT and from every input")
    p.set_defaults(func=_glue)

    p = sub.add_parser("draw", help="draw a diagram (SVG, PNG, DOT or Mermaid)")
    p.add_argument("file", metavar="FILE", help="the diagram file")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file; the format follows the suffix: .svg .png .dot .gv .mmd; "
                        "'-' writes the text to standard output (DOT unless --format says otherwise)")
    p.add_argument("--format", choices=["svg", "png", "dot", "mermaid"],
                   help="the format (default: from OUT's suffix; dot for -o -)")
    p.add_argument("--equation", metavar="N|NAME",
                   help="highlight one equation, by number (0-based, as `dlearn show` lists them) or name "
                        "(default: none)")
    p.set_defaults(func=_draw)
