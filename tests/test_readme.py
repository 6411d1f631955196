"""The README's example runs as written and its two commands are the Makefile's."""

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    (code,) = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(code.strip().splitlines()) <= 25
    script = tmp_path / "example.py"
    script.write_text(code.replace("epochs=3", "epochs=1"))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "kl_div(temperature=4.0) : student(x) = teacher(x)" in out
    assert (tmp_path / "distillation.json").exists()


def test_readme_commands_are_makefile_targets_and_ci_runs_the_test_one():
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", README, re.M):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "make test" in (ROOT / ".ci" / "run").read_text()
