"""The import graph matches the layers: the format core never imports torch; backends load on use.

Each check runs in a fresh interpreter, since this test session has imported torch long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "distillation.json"


def run_python(code: str, tmp_path: Path, extra_path: Path | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; it writes its findings as JSON to the file ``OUT``."""
    out = tmp_path / "out.json"
    prelude = f"import json, sys\nOUT = {str(out)!r}\n"
    if extra_path is not None:
        prelude += f"sys.path.insert(0, {str(extra_path)!r})\n"
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_format_core_imports_and_works_without_torch(tmp_path):
    found = run_python(f"""
        import diagrammatic_learning as dl
        import diagrammatic_learning.acset, diagrammatic_learning.compose, diagrammatic_learning.draw
        import diagrammatic_learning.conformance, diagrammatic_learning.julia, diagrammatic_learning.torch_backend
        from diagrammatic_learning import cli
        from diagrammatic_learning.conformance import load_cases
        from diagrammatic_learning.reference import evaluate

        cli.build_parser()                                   # every command registered
        d = dl.load({str(EXAMPLE)!r})
        dl.equations(d)
        case = next(c for c in load_cases() if c.valid)
        evaluate(case.diagram, case.weights, case.batch)     # the reference evaluator
        json.dump({{"torch": "torch" in sys.modules,
                    "modules": sorted(m for m in sys.modules if m.startswith("diagrammatic_learning"))}},
                  open(OUT, "w"))
    """, tmp_path)
    assert not found["torch"]
    assert "diagrammatic_learning.reference.evaluator" in found["modules"]  # it did load what it checks


def test_dlearn_validate_and_show_never_import_torch(tmp_path):
    found = run_python(f"""
        import contextlib, io
        from diagrammatic_learning.cli import main

        with contextlib.redirect_stdout(io.StringIO()) as text:
            codes = [main(["validate", {str(EXAMPLE)!r}]), main(["show", {str(EXAMPLE)!r}])]
        json.dump({{"codes": codes, "torch": "torch" in sys.modules, "shown": text.getvalue()}}, open(OUT, "w"))
    """, tmp_path)
    assert found["codes"] == [0, 0]
    assert "equations:" in found["shown"]
    assert not found["torch"]


def test_torch_backend_names_load_their_modules_on_use(tmp_path):
    found = run_python(f"""
        import diagrammatic_learning.torch_backend as tb
        before = "torch" in sys.modules
        compile_ = tb.compile
        from diagrammatic_learning import load
        m = compile_(load({str(EXAMPLE)!r}))
        json.dump({{"before": before, "after": "torch" in sys.modules, "names": sorted(tb.__all__),
                   "module": compile_.__module__, "dynamo": "torch._dynamo" in sys.modules}}, open(OUT, "w"))
    """, tmp_path)
    assert not found["before"] and found["after"]
    assert not found["dynamo"]  # torch.compile's machinery loads only for those who compile
    assert found["module"] == "diagrammatic_learning.torch_backend.compiler"
    assert {"compile", "fit", "build_module", "CompiledDiagram"} <= set(found["names"])


STUB_JULIACALL = '''
"""A stand-in for juliacall: records whether torch was loaded when it was imported."""
import sys

IMPORTED_WITH_TORCH = "torch" in sys.modules


class _Julia:
    def seval(self, code):
        return self

    def __getattr__(self, name):
        raise RuntimeError("this is a stub juliacall: no Julia here")


Main = _Julia()
'''


def test_julia_paths_import_juliacall_before_torch(tmp_path):
    """``dlearn conformance --backend all`` and ``julia.start()``: juliacall first, torch after (juliacall's rule)."""
    stub = tmp_path / "stub"
    (stub / "juliacall").mkdir(parents=True)
    (stub / "juliacall" / "__init__.py").write_text(STUB_JULIACALL)
    found = run_python("""
        import diagrammatic_learning.julia as julia
        from diagrammatic_learning.julia import runtime
        from diagrammatic_learning.conformance import load_cases, make_backends, run_suite

        # Pretend Julia is installed; the stub juliacall stands in for it.
        julia.is_available = runtime.is_available = lambda: (True, "stub")
        runtime.declare_package = lambda: None
        cases = [c for c in load_cases() if c.valid][:1]
        report = run_suite(make_backends("all"), cases, "float64")
        import juliacall
        json.dump({"juliacall_saw_torch": juliacall.IMPORTED_WITH_TORCH, "torch_now": "torch" in sys.modules,
                   "backends": sorted({r.backend for r in report.rows}), "skipped": report.skipped},
                  open(OUT, "w"))
    """, tmp_path, extra_path=stub)
    assert found["backends"] == ["julia", "reference", "torch"], found["skipped"]  # all three ran
    assert found["torch_now"]                      # the torch backend ran, so torch was imported ...
    assert not found["juliacall_saw_torch"]        # ... after juliacall
