"""Gradient conformance (SPEC §9.1): the suite's gradients files, their independent check, the runner's judgement.

The expected gradients were computed by PyTorch's autograd; here they are
checked again against five-point finite differences of the NumPy reference
evaluator, and the runner is shown to catch backends whose losses are right
but whose gradients are not (a leaking stop_gradient, a frozen arrow that
blocks gradients, a wrong derivative behind a right value).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagrammatic_learning import load
from diagrammatic_learning.cli import main
from diagrammatic_learning.conformance import Outcome, ReferenceBackend, TorchBackend, load_cases, run_case
from diagrammatic_learning.conformance.gradients import (check_gradients, expected_gradients, gradient_error,
                                                         has_gradients)
from diagrammatic_learning.reference.finite_differences import finite_difference_gradients
from diagrammatic_learning.tensorfiles import parameter_shapes, read_safetensors

SUITE = Path(__file__).resolve().parent.parent / "conformance"
VALID = [c for c in load_cases(SUITE) if c.valid]
WITH_GRADIENTS = [c for c in VALID if has_gradients(c)]
BY_NAME = {c.name: c for c in VALID}


def trainable_names(case) -> list[str]:
    d = load(case.diagram)
    trainable = {a.name for a in d.model_arrows() if a.trainable and a.architecture is not None}
    return sorted(k for k in parameter_shapes(d) if k.split(".", 1)[0] in trainable)


# ----------------------------------------------------------------------------- the files


def test_every_case_with_trainable_parameters_has_gradients_and_only_those():
    assert len(WITH_GRADIENTS) >= 55
    for case in VALID:
        names = trainable_names(case)
        assert has_gradients(case) == bool(names), case.name
        if not names:
            assert "gradient_tolerance" not in case.expected
            continue
        assert case.expected["gradient_tolerance"] == {"float64": 1e-10, "float32": 1e-4}
        shapes = parameter_shapes(load(case.diagram))
        grads = read_safetensors(case.gradients, "gradients")
        assert sorted(grads) == names, case.name   # frozen parameters have no entry
        for key, g in grads.items():
            assert g.dtype == np.float64 and g.shape == tuple(shapes[key]) and np.all(np.isfinite(g)), (case.name, key)
        header_length = int.from_bytes(case.gradients.read_bytes()[:8], "little")
        header = json.loads(case.gradients.read_bytes()[8:8 + header_length])
        assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F64"}


def test_the_new_cases_are_there():
    names = set(BY_NAME)
    for activation in ("relu", "tanh", "sigmoid", "gelu", "softplus", "identity", "leaky-relu", "elu", "softmax",
                       "log-softmax"):
        assert f"gradient-activation-{activation}" in names
    assert {"gradient-frozen-between-trainable", "gradient-dropout-trainable-and-frozen", "gradient-shared-subterms",
            "stop-gradient-mutual-learning", "stop-gradient-consistency", "stop-gradient-automatic"} <= names


def test_frozen_and_stopped_parameters():
    frozen = expected_gradients(BY_NAME["gradient-frozen-between-trainable"])
    assert not any(k.startswith("middle.") for k in frozen)              # frozen: no entry
    assert np.linalg.norm(frozen["first.layers.0.weight"]) > 1e-3          # reached through the frozen arrow
    stopped = expected_gradients(BY_NAME["stop-gradient-automatic"])
    assert all(not np.any(v) for k, v in stopped.items() if k.startswith("g."))  # only behind stop_gradient
    assert np.linalg.norm(stopped["f.layers.0.weight"]) > 1e-3


FD_CASES = [c for c in WITH_GRADIENTS
            if c.name.startswith(("gradient-", "stop-gradient-")) or c.name in (
                "frozen-arrows", "regime-distillation", "distance-huber", "distance-l1", "function-scale-normalize",
                "distance-cosine-zero-vector", "combine-add", "layer-embedding")]


@pytest.mark.parametrize("case", FD_CASES, ids=lambda c: c.name)
def test_expected_gradients_agree_with_finite_differences_of_the_reference(case):
    """The second, independent computation: the generator did this before writing; here it is done again."""
    weights = read_safetensors(case.weights, "weights")
    batch = read_safetensors(case.batch, "batch")
    want = expected_gradients(case)
    measured = finite_difference_gradients(case.diagram, weights, batch, sorted(want))
    for key in want:
        assert gradient_error(measured[key], want[key]) <= 1e-6, key


def test_finite_differences_hold_stop_gradient_terms():
    """Without holding sg(...) fixed, the stencil would see g's effect through the identity value."""
    case = BY_NAME["stop-gradient-automatic"]
    weights, batch = read_safetensors(case.weights, "weights"), read_safetensors(case.batch, "batch")
    g = finite_difference_gradients(case.diagram, weights, batch, ["g.layers.0.weight", "f.layers.0.weight"])
    assert not np.any(g["g.layers.0.weight"]) and np.any(g["f.layers.0.weight"])


# ----------------------------------------------------------------------------- the runner


def _fake(outcome):
    class Fake:
        name, computes_gradients = "fake", True

        def unavailable(self, dtype):
            return None

        def evaluate(self, diagram, weights, batch, dtype):
            return outcome

    return Fake()


def _exact(case, scale=1.0, drop=None, reshape=None):
    grads = {k: v * scale for k, v in expected_gradients(case).items() if k != drop}
    if reshape is not None:
        grads[reshape] = grads[reshape].reshape(-1)
    return Outcome({q["name"]: q["value"] for q in case.expected["equations"]}, case.expected["total"], grads)


def test_runner_judges_gradients():
    case = BY_NAME["regime-distillation"]
    row = run_case(_fake(_exact(case)), case, "float64")
    assert row.passed and row.gradient_error == 0.0
    row = run_case(_fake(_exact(case, 1 + 1e-9)), case, "float64")
    assert not row.passed and row.gradient_error == pytest.approx(1e-9, rel=1e-3) and "gradient of" in row.detail
    assert run_case(_fake(_exact(case, 1 + 1e-6)), case, "float32").passed
    assert not run_case(_fake(_exact(case, 1 + 1e-3)), case, "float32").passed
    row = run_case(_fake(_exact(case, drop="student.layers.0.bias")), case, "float64")
    assert not row.passed and "missing ['student.layers.0.bias']" in row.detail
    row = run_case(_fake(_exact(case, reshape="student.layers.0.weight")), case, "float64")
    assert not row.passed and row.gradient_error == math.inf and "shape" in row.detail
    no_gradients = Outcome(_exact(case).equations, _exact(case).total, None)
    assert "no gradients computed" in run_case(_fake(no_gradients), case, "float64").detail


def test_reference_reports_losses_only():
    row = run_case(ReferenceBackend(), BY_NAME["regime-distillation"], "float64")
    assert row.passed and row.gradient_error is None and row.detail == "losses only"


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=6),
       st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=6))
@settings(max_examples=200, deadline=None)
def test_gradient_error_never_raises_and_is_inf_for_bad_input(got, want):
    g, w = np.array(got), np.array(want)
    err = gradient_error(g, w)
    if g.shape != w.shape or not np.all(np.isfinite(g)):
        assert err == math.inf
    else:
        assert err >= 0 and (err == math.inf or math.isfinite(err))


def test_check_gradients_on_a_broken_file(tmp_path):
    shutil.copytree(BY_NAME["layer-linear"].folder, tmp_path / "cases" / "layer-linear")
    (tmp_path / "cases" / "layer-linear" / "gradients.safetensors").write_bytes(b"\x10\x00\x00\x00")
    case = next(c for c in load_cases(tmp_path) if c.valid)
    ok, _, detail = check_gradients(case, {}, "float64")
    assert not ok and "unreadable gradients.safetensors" in detail


def test_cli_prints_gradient_errors(capsys):
    assert main(["conformance", "--backend", "torch", "-k", "stop-gradient-*"]) == 0
    out = capsys.readouterr().out
    assert "gradient" in out.splitlines()[0]
    assert "torch: 3/3 passed, 0 failed" in out and "3 gradients compared, largest gradient error" in out


def test_cli_fails_on_a_wrong_expected_gradient(tmp_path, capsys):
    from safetensors.numpy import save_file

    shutil.copytree(BY_NAME["stop-gradient-consistency"].folder, tmp_path / "cases" / "stop-gradient-consistency")
    path = tmp_path / "cases" / "stop-gradient-consistency" / "gradients.safetensors"
    grads = read_safetensors(path, "gradients")
    grads["probe.layers.0.bias"] = grads["probe.layers.0.bias"] * (1 + 1e-8)
    save_file(grads, str(path))
    assert main(["conformance", "--backend", "torch", "--suite", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "gradient of probe.layers.0.bias" in out


# ----------------------------------------------------------------------------- the suite has teeth


def _wrong_elu_derivative(monkeypatch):
    """elu with the right value and the derivative of alpha = 1."""
    from diagrammatic_learning.torch_backend import layer_modules

    original = layer_modules.elu

    def elu(x, alpha):
        right, wrong = original(x, alpha), original(x, 1.0)
        return wrong + (right - wrong).detach()

    monkeypatch.setattr(layer_modules, "elu", elu)


def _stop_gradient_leaks(monkeypatch):
    from diagrammatic_learning.torch_backend import functions, lowering

    original = functions.function_op

    def function_op(diagram, arrow, dtype):
        return (lambda x: x) if arrow.op == "stop_gradient" else original(diagram, arrow, dtype)

    monkeypatch.setattr(lowering, "function_op", function_op)  # where the compiled code gets its ops


def _frozen_blocks_gradients(monkeypatch):
    from diagrammatic_learning.torch_backend.compiler import CompiledDiagram

    original = CompiledDiagram._set_trainable

    def set_trainable(self, name, trainable):
        original(self, name, trainable)
        if not trainable:
            self._modules[name].register_forward_hook(lambda module, args, out: out.detach())

    monkeypatch.setattr(CompiledDiagram, "_set_trainable", set_trainable)


MUTATIONS = {
    "elu with the derivative of alpha = 1": (_wrong_elu_derivative, "gradient-activation-elu"),
    "stop_gradient as identity": (_stop_gradient_leaks, "stop-gradient-"),
    "frozen arrows block gradients": (_frozen_blocks_gradients, "gradient-frozen-between-trainable"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_gradient_bug_with_right_losses_fails_a_case(mutation, monkeypatch):
    apply, catching = MUTATIONS[mutation]
    apply(monkeypatch)
    cases = [c for c in WITH_GRADIENTS if c.name.startswith(catching)]
    rows = [run_case(TorchBackend(), c, "float64") for c in cases]
    failing = [r for r in rows if not r.passed]
    assert failing, f"no case notices: {mutation}"
    for r in failing:   # the losses were right: only the gradients gave it away
        assert r.error is not None and r.error <= 1e-12 and "gradient of" in r.detail, r


# ----------------------------------------------------------------------------- the Julia backend's Python half


def test_julia_backend_asks_julia_for_gradients_where_the_case_has_them():
    from diagrammatic_learning.conformance import JuliaBackend

    calls = []

    class Flux:
        def evaluate(self, diagram, weights, batch, dtype):
            calls.append("evaluate")
            return {"equations": {"e": 1.0}, "total": 1.0}

        def gradients(self, diagram, weights, batch, dtype):
            calls.append("gradients")
            return {"equations": {"e": 1.0}, "total": 1.0}, {"f.layers.0.weight": np.zeros((2, 2))}

    backend = JuliaBackend()
    backend._flux = Flux()
    with_gradients, without = BY_NAME["layer-linear"], BY_NAME["layer-flatten"]
    out = backend.evaluate(with_gradients.diagram, with_gradients.weights, with_gradients.batch, "float64")
    assert calls == ["gradients"] and set(out.gradients) == {"f.layers.0.weight"}
    out = backend.evaluate(without.diagram, without.weights, without.batch, "float64")
    assert calls == ["gradients", "evaluate"] and out.gradients is None


def test_flux_backend_reads_the_gradients_julia_wrote():
    from safetensors.numpy import save_file

    from diagrammatic_learning.julia.backend import FluxBackend

    class Julia:
        def bridge_gradient_files(self, diagram, weights, batch, dtype, path):
            save_file({"f.layers.0.weight": np.arange(6.0).reshape(2, 3)}, path)
            return json.dumps({"ok": True, "result": {"equations": [["f(x) = y", 0.5]], "total": 0.5}})

    backend = object.__new__(FluxBackend)
    backend._julia = Julia()
    evaluation, grads = backend.gradients("d.json", "w.safetensors", "b.safetensors", "float32")
    assert evaluation == {"equations": {"f(x) = y": 0.5}, "total": 0.5}
    assert grads["f.layers.0.weight"].shape == (2, 3) and grads["f.layers.0.weight"][1, 2] == 5.0
