"""Every ``dlearn`` command, given bad input, exits 1 with one ``error:`` line naming the problem, and writes nothing.

Other test files check the commands' detailed errors; this one makes sure no
command is left without a bad-input check (a new command must be added here).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diagrammatic_learning.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
SUPERVISED = str(ROOT / "examples" / "supervised.json")


def broken_diagram(tmp: Path) -> str:
    path = tmp / "broken.json"
    path.write_text('{"format": "learning-diagram",\n  "objects": [,]\n}')
    return str(path)


def broken_suite(tmp: Path) -> str:
    """A suite folder with one case whose expected.json is cut short."""
    case = tmp / "suite" / "cases" / "layer-linear"
    shutil.copytree(ROOT / "conformance" / "cases" / "layer-linear", case)
    (case / "expected.json").write_text('{"equations": [')
    return str(tmp / "suite")


def existing_file(tmp: Path) -> str:
    path = tmp / "a-file"
    path.write_text("not a folder")
    return str(path)


# command → (argv given the temporary folder, text the error must contain)
BAD_INPUT = {
    "validate": (lambda t: ["validate", broken_diagram(t)], "[malformed-json]"),
    "show": (lambda t: ["show", broken_diagram(t)], "[malformed-json]"),
    "draw": (lambda t: ["draw", broken_diagram(t), "-o", str(t / "out.svg")], "[malformed-json]"),
    "glue": (lambda t: ["glue", SUPERVISED, broken_diagram(t), "-o", str(t / "out.json")], "[malformed-json]"),
    "train": (lambda t: ["train", broken_diagram(t), "--data", "digits", "--weights-out", str(t / "w.safetensors")],
              "[malformed-json]"),
    "demo": (lambda t: ["demo", "--out", existing_file(t), "--quiet"], "a-file"),
    "conformance": (lambda t: ["conformance", "--backend", "reference", "--suite", broken_suite(t)],
                    "[malformed-json]"),
    "eval": (lambda t: ["eval", broken_diagram(t), "--weights", existing_file(t), "--data", "digits"],
             "[malformed-json]"),
    "weights": (lambda t: ["weights", "merge", existing_file(t), SUPERVISED, "-o", str(t / "w.safetensors")],
                "[weights-file]"),
}


def test_every_command_has_a_bad_input_case():
    parser = build_parser()
    (sub,) = [a for a in parser._subparsers._group_actions]
    assert set(sub.choices) == set(BAD_INPUT)


@pytest.mark.parametrize("command", sorted(BAD_INPUT))
def test_bad_input_is_a_clean_error(command, tmp_path, capsys):
    make_argv, needle = BAD_INPUT[command]
    argv = make_argv(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert needle in out + err
    if command != "validate":  # validate reports on stdout, as its normal output; the rest say error: on stderr
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
