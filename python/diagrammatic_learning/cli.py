"""The ``dlearn`` command line: one entry point, each command defined in the module that owns its job.

A command module has ``register(subparsers)``, which adds its parser and sets
``func`` to a function taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from .errors import DiagramError, UsageError

# Imported lazily so that `dlearn validate` does not pay for torch.
COMMAND_MODULES = [
    "diagrammatic_learning.commands",               # validate, show
    "diagrammatic_learning.torch_backend.commands",  # train, demo
    "diagrammatic_learning.conformance.commands",    # conformance
    "diagrammatic_learning.compose_commands",        # glue, draw
    "diagrammatic_learning.eval_commands",           # eval
    "diagrammatic_learning.weights_commands",        # weights inspect|rename|merge
]


class HelpFormatter(argparse.HelpFormatter):
    """Help that states every option's default: ``(default: X)`` is added where the help text has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings
                or any(action.default is v for v in (None, argparse.SUPPRESS, False))):
            return text
        return f"{text} (default: %(default)s)"


def _formatted(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and all its subcommands' parsers the defaults-stating help formatter."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _formatted(sub)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="dlearn", description="Learning diagrams: check, show, train, compose.")
    parser.add_argument("--version", action="version", version=f"dlearn (diagrammatic-learning) {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                continue  # that part of the package is not built yet
            raise
        module.register(sub)
    _formatted(parser)
    return parser


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM as an exception, so that ``finally`` blocks run: no temporary file is left behind."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM") \
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except DiagramError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except UsageError as e:
        print(f"dlearn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an output folder that does not exist, a directory given as a file, a full disk
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
