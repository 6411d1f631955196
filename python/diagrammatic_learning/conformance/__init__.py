"""The conformance suite's runner: every backend against the shipped cases, with a table of errors.

    from diagrammatic_learning.conformance import load_cases, run_suite, ReferenceBackend
    report = run_suite([ReferenceBackend()], load_cases(), "float64")

The command line is ``dlearn conformance`` (``commands.py``); the protocol for
backends in other languages is in ``conformance/README.md``.
"""

from .backends import Backend, JuliaBackend, Outcome, ReferenceBackend, TorchBackend, make_backends
from .cases import SuiteCase, load_cases, suite_root
from .gradients import check_gradients, gradient_error, has_gradients
from .runner import FLOOR, Report, Row, check_error, check_outcome, pointer_matches, relative_error, run_case, run_suite

__all__ = ["Backend", "FLOOR", "JuliaBackend", "Outcome", "ReferenceBackend", "Report", "Row", "SuiteCase",
           "TorchBackend", "check_error", "check_gradients", "check_outcome", "gradient_error", "has_gradients",
           "load_cases", "make_backends", "pointer_matches", "relative_error", "run_case", "run_suite", "suite_root"]
