"""``dlearn conformance``: run the conformance suite on one backend or all of them.

Exit codes: 0 every case that ran passed (and something ran); 1 a case failed; 2 no case matched
``-k`` or the suite is empty; 3 nothing ran where something had to: the backend named with
``--backend`` cannot run here, or with ``--backend all`` none could. Skipped backends are listed
with the reason in every case.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .backends import DTYPES, make_backends
from .cases import load_cases
from .runner import HEADER, format_row, format_summary, run_suite

EXIT_FAILED = 1
EXIT_NO_CASES = 2
EXIT_NOT_RUN = 3


def _conformance(args: argparse.Namespace) -> int:
    cases = load_cases(Path(args.suite) if args.suite else None, args.k)
    if not cases:
        print(f"no case matches {args.k!r}" if args.k else "the suite has no cases", file=sys.stderr)
        return EXIT_NO_CASES
    backends = make_backends(args.backend)
    try:
        print(HEADER)
        report = run_suite(backends, cases, args.dtype, on_row=lambda row: print(format_row(row), flush=True))
        print()
        for line in format_summary(report, [b.name for b in backends]):
            print(line)
        not_run = [b.name for b in backends if b.name in report.skipped]
        if args.backend != "all" and not_run:
            print(f"error: backend {args.backend} cannot run here ({report.skipped[args.backend]}); "
                  f"nothing was checked", file=sys.stderr)
            return EXIT_NOT_RUN
        if not report.rows:
            print(f"error: nothing ran: every backend was skipped ({', '.join(not_run)})", file=sys.stderr)
            return EXIT_NOT_RUN
        if not_run:
            print(f"skipped (not checked here): {', '.join(not_run)}")
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, but not as a success
        sys.stdout = open(os.devnull, "w")
        return EXIT_FAILED
    return 0 if report.ok else EXIT_FAILED


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conformance", help="run the conformance suite; exit 1 on any failure, 3 if nothing could run",
                       description="Evaluate every case of the conformance suite (valid and invalid) and compare "
                                   "with the expected values or error codes.")
    p.add_argument("--backend", choices=["reference", "torch", "julia", "all"], default="all",
                   help="which backend to run (default: all; unavailable ones are skipped with the reason, "
                        "and the run fails with exit code 3 if a backend named here, or every one, cannot run)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float64", help="compute dtype (default float64)")
    p.add_argument("-k", metavar="PATTERN", help="only cases whose name contains PATTERN or matches it as a "
                                                 "shell pattern (invalid cases are named invalid/<name>; "
                                                 "default: every case)")
    p.add_argument("--suite", metavar="FOLDER",
                   help="a suite folder other than the shipped one (default: the shipped suite)")
    p.set_defaults(func=_conformance)
