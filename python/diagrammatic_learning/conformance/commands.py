"""``dlearn conformance``: run the conformance suite on one backend or all of them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .backends import DTYPES, make_backends
from .cases import load_cases
from .runner import HEADER, format_row, format_summary, run_suite


def _conformance(args: argparse.Namespace) -> int:
    cases = load_cases(Path(args.suite) if args.suite else None, args.k)
    if not cases:
        print(f"no case matches {args.k!r}" if args.k else "the suite has no cases", file=sys.stderr)
        return 2
    backends = make_backends(args.backend)
    try:
        print(HEADER)
        report = run_suite(backends, cases, args.dtype, on_row=lambda row: print(format_row(row), flush=True))
        print()
        for line in format_summary(report, [b.name for b in backends]):
            print(line)
        if not report.rows:
            print("nothing ran: every selected backend was skipped")
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, but not as a success
        sys.stdout = open(os.devnull, "w")
        return 1
    return 0 if report.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conformance", help="run the conformance suite; exit 1 on any failure",
                       description="Evaluate every case of the conformance suite (valid and invalid) and compare "
                                   "with the expected values or error codes.")
    p.add_argument("--backend", choices=["reference", "torch", "julia", "all"], default="all",
                   help="which backend to run (default: all; unavailable ones are skipped with the reason)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float64", help="compute dtype (default float64)")
    p.add_argument("-k", metavar="PATTERN", help="only cases whose name contains PATTERN or matches it as a "
                                                 "shell pattern (invalid cases are named invalid/<name>; "
                                                 "default: every case)")
    p.add_argument("--suite", metavar="FOLDER",
                   help="a suite folder other than the shipped one (default: the shipped suite)")
    p.set_defaults(func=_conformance)
