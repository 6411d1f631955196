"""The sdist and the wheel carry what the Julia backend and the conformance suite need.

Builds the sdist, then the wheel from the sdist (so the sdist must be complete), into a temporary
folder: with ``--no-isolation`` when hatchling is installed here, else in an isolated environment
(which fetches hatchling from the package index). Then checks the Julia sources, ``juliapkg.json``,
the schema and every conformance file are inside, and that an unpacked wheel finds its Julia
package where juliapkg will be told it is.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def shipped_files(folder: str) -> set[str]:
    """The files of a top-level folder that the distributions must carry: those git tracks (or, outside
    a git checkout, every file but caches)."""
    tracked = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 0 and tracked.stdout.strip():
        return set(tracked.stdout.split())
    base = ROOT / folder
    return {p.relative_to(ROOT).as_posix() for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def distributions(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)]
    if importlib.util.find_spec("hatchling") is not None:
        command.insert(3, "--no-isolation")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    sdist = next(out.glob("*.tar.gz"))
    wheel = next(out.glob("*.whl"))
    return sdist, wheel


def test_the_sdist_has_the_julia_package_schema_and_suite(distributions):
    sdist, _ = distributions
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    want = shipped_files("julia") | shipped_files("schema") | shipped_files("conformance")
    assert want <= names, sorted(want - names)[:20]
    assert {"python/diagrammatic_learning/juliapkg.json", "python/diagrammatic_learning/julia/runtime.py",
            "pyproject.toml"} <= names
    assert top.startswith("diagrammatic_learning")


def test_the_wheel_has_them_where_the_library_looks(distributions):
    _, wheel = distributions
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    data = "diagrammatic_learning/_data/"
    for folder in ("julia", "schema", "conformance"):
        want = {data + n for n in shipped_files(folder)}
        assert want <= names, sorted(want - names)[:20]
    assert {"diagrammatic_learning/juliapkg.json", "diagrammatic_learning/julia/__init__.py",
            "diagrammatic_learning/julia/backend.py", data + "julia/Project.toml",
            data + "julia/src/DiagrammaticLearning.jl", data + "julia/test/runtests.jl",
            data + "julia/schema/learning-diagram.schema.json",
            data + "schema/learning-diagram.schema.json"} <= names
    cases = {n.split("/")[4] for n in names if n.startswith(data + "conformance/cases/")}
    assert len(cases) >= 30


def test_an_unpacked_wheel_declares_its_own_julia_package(distributions, tmp_path):
    _, wheel = distributions
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path)
    code = ("import json; from diagrammatic_learning.julia.runtime import package_spec; "
            "import diagrammatic_learning, pathlib; "
            "print(json.dumps([package_spec(), str(pathlib.Path(diagrammatic_learning.__file__).parent)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout
    spec, package = json.loads(out)
    assert Path(package) == tmp_path / "diagrammatic_learning"
    assert Path(spec["path"]) == (tmp_path / "diagrammatic_learning" / "_data" / "julia").resolve()
    assert (Path(spec["path"]) / "src" / "DiagrammaticLearning.jl").is_file()
    # the static declarations juliapkg finds next to the package (site-packages/<package>/juliapkg.json)
    declared = json.loads((tmp_path / "diagrammatic_learning" / "juliapkg.json").read_text())
    assert {"Flux", "SafeTensors", "JLD2"} <= set(declared["packages"])


def test_the_wheel_is_typed_licensed_and_its_examples_find_the_schema(distributions):
    _, wheel = distributions
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert "diagrammatic_learning/py.typed" in names
    assert any(n.endswith("/LICENSE") and ".dist-info/" in n for n in names), "the licence text is not in the wheel"
    assert "License-Expression: MIT" in metadata or "License: MIT" in metadata
    data = "diagrammatic_learning/_data/"
    examples = [n for n in names if n.startswith(data + "examples/") and n.endswith(".json")]
    assert examples
    for name in examples:
        with zipfile.ZipFile(wheel) as z:
            reference = json.loads(z.read(name))["$schema"]
        target = Path(name).parent.joinpath(reference).as_posix()
        parts: list[str] = []
        for part in target.split("/"):
            parts = parts[:-1] if part == ".." else parts + [part]
        assert "/".join(parts) == data + "schema/learning-diagram.schema.json", name
