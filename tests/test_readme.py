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


def test_readme_distillation_commands_run(tmp_path, monkeypatch, capsys):
    """The README's command-line distillation, as written, with one epoch each."""
    import shlex

    from diagrammatic_learning.cli import main as dlearn

    section = README.split("### Distillation from the command line", 1)[1]
    (block,) = re.findall(r"```sh\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    commands = [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["mkdir", "runs"], ["dlearn", "train"], ["dlearn", "weights"],
                                         ["dlearn", "train"], ["dlearn", "eval"], ["dlearn", "eval"]]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # `--weights-out` and the other outputs never create folders
    for argv in commands[1:]:
        argv = [str(ROOT / a) if a.startswith("examples/") else a for a in argv[1:]]
        if "--epochs" in argv:
            argv[argv.index("--epochs") + 1] = "1"
        assert dlearn(argv + (["--quiet"] if argv[0] == "train" else [])) == 0, argv
    out = capsys.readouterr().out
    assert out.count("examples") >= 2 and (tmp_path / "runs" / "student-history.json").exists()
    assert sorted(p.name for p in (tmp_path / "runs" / "plots").iterdir()) == [
        "distillation-0-student_x_y.png", "distillation-1-distill.png"]
