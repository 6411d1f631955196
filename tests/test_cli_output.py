"""Machine-readable output (``validate --json``, ``show --json``, ``draw -o -``), ``--version`` and help text."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import diagrammatic_learning
from diagrammatic_learning.cli import build_parser, main as dlearn

ROOT = Path(__file__).resolve().parent.parent
SUPERVISED = str(ROOT / "examples" / "supervised.json")
DISTILLATION = str(ROOT / "examples" / "distillation.json")


def test_validate_json(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "learning-diagram", "format_version": "1.0", "objects": [], "arrows": [], "x": 1}')
    assert dlearn(["validate", "--json", SUPERVISED]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "files": [{"file": SUPERVISED, "ok": True,
                                                                          "problems": []}]}
    missing = str(tmp_path / "absent.json")
    assert dlearn(["validate", "--json", SUPERVISED, str(broken), missing]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and [f["ok"] for f in doc["files"]] == [True, False, False]
    assert doc["files"][1]["problems"][0] == {"code": "unknown-key", "pointer": "/x",
                                              "message": doc["files"][1]["problems"][0]["message"]}
    assert doc["files"][2]["problems"][0]["code"] == "file-not-found"
    assert doc["files"][2]["problems"][0]["pointer"] == missing


def test_show_json(capsys):
    assert dlearn(["show", "--json", DISTILLATION]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "distillation"
    assert [o["name"] for o in doc["objects"]] == ["D", "X", "Y"]
    teacher = next(a for a in doc["arrows"] if a["name"] == "teacher")
    assert teacher == {"name": "teacher", "kind": "model", "sources": ["X"], "target": "Y", "trainable": False,
                       "external": False, "layers": 3}
    assert [(e["name"], e["lhs"], e["rhs"], e["weight"]) for e in doc["equations"]] == [
        ("student(x) = y", "student(x)", "y", 1.0), ("distill", "student(x)", "teacher(x)", 0.9)]
    assert doc["equations"][1]["distance"] == {"name": "kl_div", "temperature": 4.0}
    assert "student(x)" in doc["terms"]["Y"]


@pytest.mark.parametrize("fmt, start", [(None, "digraph"), ("dot", "digraph"), ("mermaid", "%% supervised\nflowchart")])
def test_draw_to_standard_output(tmp_path, capsys, fmt, start):
    argv = ["draw", SUPERVISED, "-o", "-"] + (["--format", fmt] if fmt else [])
    assert dlearn(argv) == 0
    out = capsys.readouterr().out
    assert out.lstrip().startswith(start) and "classifier" in out and "wrote" not in out
    assert list(tmp_path.iterdir()) == []


def test_draw_png_to_standard_output_is_a_usage_error(capsys):
    assert dlearn(["draw", SUPERVISED, "-o", "-", "--format", "png"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "PNG is binary" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        dlearn(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"dlearn (diagrammatic-learning) {diagrammatic_learning.__version__}"


def _parsers(parser: argparse.ArgumentParser, path: str = "dlearn"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_has_help_stating_its_default():
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{path} {action.dest}: no help"
            if action.option_strings and not action.required:
                if isinstance(action, argparse._StoreTrueAction):
                    continue  # a flag: off unless given
                shown = parser._get_formatter()._get_help_string(action) % {"default": action.default}
                assert "default" in shown, f"{path} {action.option_strings[0]}: help does not state the default"


def test_defaults_appear_in_help(capsys):
    with pytest.raises(SystemExit):
        dlearn(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "examples per step (default: 64)" in text and "learning rate (default: 0.001)" in text
    assert "(default: adam)" in text and "(default: float32)" in text


def test_validate_and_show_do_not_import_torch():
    code = ("import sys; from diagrammatic_learning.commands import _validate, _show; "
            "from diagrammatic_learning import weights_commands, eval_commands, evaluation, weight_files; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
