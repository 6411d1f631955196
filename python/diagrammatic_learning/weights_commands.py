"""``dlearn weights inspect|rename|merge``: look into weights files, rename arrows, merge files. No torch."""

from __future__ import annotations

import argparse
import json

from .tensorfiles import read_safetensors, write_safetensors
from .weight_files import merge_weights, parse_renames, rename_arrows, summarize


def _inspect(args: argparse.Namespace) -> int:
    summary = summarize(read_safetensors(args.file, "weights"))
    if args.json:
        doc = {"file": args.file,
               "arrows": {arrow: {"parameters": s.parameters,
                                  "tensors": {k: {"shape": list(shape), "dtype": dtype}
                                              for k, (shape, dtype) in s.tensors.items()}}
                          for arrow, s in summary.items()},
               "parameters": sum(s.parameters for s in summary.values())}
        print(json.dumps(doc, indent=2))
        return 0
    total = sum(s.parameters for s in summary.values())
    print(f"{args.file}: {sum(len(s.tensors) for s in summary.values())} tensors, {total:,} parameters, "
          f"{len(summary)} arrow(s)")
    for arrow, s in summary.items():
        print(f"  {arrow}: {s.parameters:,} parameters")
        width = max(len(k) for k in s.tensors)
        for key, (shape, dtype) in s.tensors.items():
            print(f"    {key.ljust(width)}  {dtype:<8} {list(shape)}")
    return 0


def _rename(args: argparse.Namespace) -> int:
    renames = parse_renames(args.renames)
    out = rename_arrows(read_safetensors(args.file, "weights"), renames, args.file)
    write_safetensors(out, args.output)
    print(f"wrote {args.output}: {len(out)} tensors ("
          + ", ".join(f"{old} → {new}" for old, new in renames.items()) + ")")
    return 0


def _merge(args: argparse.Namespace) -> int:
    out = merge_weights([(path, read_safetensors(path, "weights")) for path in args.files])
    write_safetensors(out, args.output)
    print(f"wrote {args.output}: {len(out)} tensors from {len(args.files)} files")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="inspect, rename or merge weights files (safetensors)",
                       description="Weights files (SPEC §8) hold one tensor per parameter, named "
                                   "ARROW.layers.I.PARAM. These commands read them without a diagram.")
    ws = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    q = ws.add_parser("inspect", help="keys, shapes, dtypes and parameter counts per arrow")
    q.add_argument("file", metavar="FILE", help="a safetensors weights file")
    q.add_argument("--json", action="store_true", help="print one JSON object instead of text (default: text)")
    q.set_defaults(func=_inspect)

    q = ws.add_parser("rename", help="rename arrows (key prefixes): OLD=NEW ...",
                      description="Write FILE's tensors to OUT with arrow prefixes renamed (all at once, so "
                                  "a=b b=a swaps); tensors of other arrows are kept. A renaming that gives two "
                                  "tensors one key, or an OLD arrow the file lacks, is an error and writes nothing.")
    q.add_argument("file", metavar="FILE", help="a safetensors weights file")
    q.add_argument("renames", nargs="+", metavar="OLD=NEW", help="arrow OLD's tensors become NEW's")
    q.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the file to write (may be FILE itself; written atomically)")
    q.set_defaults(func=_rename)

    q = ws.add_parser("merge", help="merge weights files with disjoint keys into one",
                      description="Write the tensors of all FILES to OUT. Their keys must be disjoint: a key "
                                  "in two files is an error naming it, and nothing is written.")
    q.add_argument("files", nargs="+", metavar="FILE", help="safetensors weights files")
    q.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write (atomically)")
    q.set_defaults(func=_merge)
