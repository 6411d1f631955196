"""Shared test helpers."""

from __future__ import annotations

import pytest

from diagrammatic_learning import DiagramError
from diagrammatic_learning.cli import build_parser


class CliRunner:
    """Runs a ``dlearn`` command in-process: returns its exit code, keeps a raised ``DiagramError`` in ``.error``."""

    def __init__(self) -> None:
        self.error: DiagramError | None = None

    def __call__(self, *argv: str) -> int:
        args = build_parser().parse_args(list(argv))
        try:
            return int(args.func(args) or 0)
        except DiagramError as e:
            self.error = e
            return 1


@pytest.fixture
def run_cli() -> CliRunner:
    return CliRunner()
