"""The reference evaluator and the PyTorch backend are two implementations, not one: they share no numeric code.

The conformance suite's expected values come from the reference and are
cross-checked by the PyTorch backend (tests/test_conformance.py); that check
only means something if a bug in one cannot be a bug in the other. So the
reference must run with torch unimportable, and the package modules both
backends load must be the format's plumbing (parsing, validation, term
enumeration, shapes, file checks), none of which computes a layer, function
or distance.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "diagrammatic_learning"

# What both backends may share: the format itself, with no layer, function-op or distance arithmetic in it.
PLUMBING = {"diagrammatic_learning", "diagrammatic_learning.diagram", "diagrammatic_learning.distances",
            "diagrammatic_learning.equations", "diagrammatic_learning.errors", "diagrammatic_learning.files",
            "diagrammatic_learning.fast_schema", "diagrammatic_learning.term_graph",
            "diagrammatic_learning.fingerprint", "diagrammatic_learning.gc_pause",
            "diagrammatic_learning.io", "diagrammatic_learning.json_text",
            "diagrammatic_learning.layers", "diagrammatic_learning.resources", "diagrammatic_learning.tensorfiles",
            "diagrammatic_learning.terms", "diagrammatic_learning.validate", "diagrammatic_learning.versions",
            "diagrammatic_learning.vocabulary"}


def loaded_modules(code: str) -> tuple[list[str], str]:
    """The package modules a fresh interpreter has loaded after ``code``, and what ``code`` printed."""
    script = (f"import sys\n{code}\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'diagrammatic_learning'))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    *printed, modules = done.stdout.strip().splitlines()
    return ast.literal_eval(modules), "\n".join(printed)


def test_the_reference_evaluates_the_whole_suite_with_torch_unimportable():
    code = """
sys.modules['torch'] = None  # any `import torch` now raises ImportError
from diagrammatic_learning.conformance.cases import load_cases
from diagrammatic_learning.reference import evaluate
worst = 0.0
cases = [c for c in load_cases() if c.valid]
for case in cases:
    r = evaluate(case.diagram, case.weights, case.batch)
    for q in case.expected["equations"]:
        worst = max(worst, abs(r.equations[q["name"]] - q["value"]) / max(abs(q["value"]), 1e-6))
print(len(cases), worst)
"""
    modules, printed = loaded_modules(code)
    count, worst = printed.split()
    assert int(count) >= 50 and float(worst) <= 1e-12
    assert not [m for m in modules if m.startswith(("diagrammatic_learning.torch_backend",
                                                    "diagrammatic_learning.julia"))]


def test_the_two_backends_share_only_the_formats_plumbing():
    reference, _ = loaded_modules("sys.modules['torch'] = None\nimport diagrammatic_learning.reference")
    torch_side, _ = loaded_modules("from diagrammatic_learning.torch_backend import compile")  # loads on use
    assert "diagrammatic_learning.reference.layers" in reference  # the probe saw the reference's numerics
    assert "diagrammatic_learning.torch_backend.layer_modules" in torch_side
    shared = set(reference) & set(torch_side)
    assert shared <= PLUMBING, sorted(shared - PLUMBING)


def imports_of(path: Path) -> set[str]:
    """Every module a source file imports, relative imports resolved against the package."""
    package = ["diagrammatic_learning", *path.relative_to(PACKAGE).parent.parts]  # what `from .` means here
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.add(module)
            out |= {f"{module}.{a.name}" for a in node.names}  # `from . import x` may name a module
    return out


def test_no_source_of_either_backend_imports_the_other():
    reference = sorted((PACKAGE / "reference").glob("*.py"))
    torch_side = sorted((PACKAGE / "torch_backend").glob("*.py"))
    assert len(reference) >= 4 and len(torch_side) >= 5
    for path in reference:
        bad = {m for m in imports_of(path) if m.split(".")[0] == "torch"
               or m.startswith(("diagrammatic_learning.torch_backend", "diagrammatic_learning.julia"))}
        assert not bad, (path.name, bad)
    for path in torch_side:
        bad = {m for m in imports_of(path) if m.startswith("diagrammatic_learning.reference")}
        assert not bad, (path.name, bad)


def test_the_import_scan_sees_relative_imports():
    """The scan above resolves ``from ..x import y`` and ``from .x import y``: checked on a known file."""
    found = imports_of(PACKAGE / "reference" / "evaluator.py")
    assert {"diagrammatic_learning.equations", "diagrammatic_learning.reference.layers", "numpy"} <= found
