"""Every diagram under conformance/invalid/ is rejected with exactly its expected code and pointer."""

import json
from pathlib import Path

import pytest

from diagrammatic_learning import DiagramError, load
from diagrammatic_learning.cli import main

INVALID = Path(__file__).resolve().parent.parent / "conformance" / "invalid"
DIAGRAM_CASES = sorted(p for p in INVALID.iterdir()
                       if p.is_dir() and not p.name.startswith(("weights-", "batch-")))


def test_there_are_at_least_thirty_cases():
    assert len(DIAGRAM_CASES) >= 30


@pytest.mark.parametrize("case", DIAGRAM_CASES, ids=lambda p: p.name)
def test_rejected_with_expected_code(case: Path):
    expected = json.loads((case / "expected.json").read_text())
    with pytest.raises(DiagramError) as info:
        load(case / "diagram.json")
    got = [(p.code, p.pointer) for p in info.value.problems]
    assert got == [(expected["code"], expected["pointer"])], info.value


def test_generator_reproduces_the_files(tmp_path, monkeypatch):
    import runpy

    module = runpy.run_path(str(INVALID.parent / "make_invalid_diagrams.py"))
    assert sorted([*module["CASES"], "malformed-json"]) == [p.name for p in DIAGRAM_CASES]  # no stale folder
    for case in DIAGRAM_CASES:
        if case.name == "malformed-json":  # the base diagram cut short, written by main() itself
            text = json.dumps(module["BASE"], indent=2)[:200]
            expected = {"code": "malformed-json", "pointer": ""}
        else:
            text, expected = module["build"](case.name)
        assert text == (case / "diagram.json").read_text()
        assert expected == json.loads((case / "expected.json").read_text())


def test_cli_validate_lists_problems_and_exits_1(capsys):
    case = INVALID / "linear-in-features" / "diagram.json"
    assert main(["validate", str(case)]) == 1
    out = capsys.readouterr().out
    assert "invalid" in out and "[shape-mismatch]" in out and "/arrows/4/architecture/layers/0" in out


def test_all_problems_are_reported_not_only_the_first():
    doc = json.loads((INVALID / "linear-in-features" / "diagram.json").read_text())
    doc["objects"][1]["dtype"] = "float16"
    doc["arrows"][4]["name"] = "bad-name"
    with pytest.raises(DiagramError) as info:
        load(doc)
    assert sorted(info.value.codes) == ["bad-value", "bad-value"]
    assert {p.pointer for p in info.value.problems} == {"/objects/1/dtype", "/arrows/4/name"}
