"""The conformance suite: its files, the reference and PyTorch backends on every case, the runner, the generator."""

from __future__ import annotations

import importlib
import json
import math
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest

from diagrammatic_learning.cli import main
from diagrammatic_learning.conformance import (ReferenceBackend, SuiteCase, TorchBackend, check_outcome, load_cases,
                                               pointer_matches, relative_error, run_case, run_suite)
from diagrammatic_learning.conformance.backends import JuliaBackend, Outcome
from diagrammatic_learning.reference import evaluate as reference_evaluate
from diagrammatic_learning.reference import distances as ref_distances
from diagrammatic_learning.reference import evaluator as ref_evaluator
from diagrammatic_learning.reference import layers as ref_layers

SUITE = Path(__file__).resolve().parent.parent / "conformance"
CASES = load_cases(SUITE)
VALID = [c for c in CASES if c.valid]
INVALID = [c for c in CASES if not c.valid]
FILE_CASES = [c for c in INVALID if c.folder.name.startswith(("weights-", "batch-"))]


def ids(case: SuiteCase) -> str:
    return case.name


# ----------------------------------------------------------------------------- the files


def test_the_suite_is_there_and_small():
    assert len(VALID) >= 50 and len(FILE_CASES) >= 15
    for case in VALID:
        for f in ("diagram.json", "weights.safetensors", "batch.safetensors", "expected.json"):
            assert (case.folder / f).stat().st_size < 16_000, (case.name, f)


def test_expected_files_have_the_documented_fields():
    for case in VALID:
        e = case.expected
        assert set(e) - {"gradient_tolerance"} == {"equations", "total", "dtype", "tolerance"}
        assert e["dtype"] == "float64" and e["tolerance"] == {"float64": 1e-12, "float32": 1e-5}
        assert e["equations"], case.name
        for eq in e["equations"]:
            assert set(eq) == {"name", "object", "data_object", "lhs", "rhs", "distance", "weight", "value"}
        assert math.isclose(e["total"], sum(q["weight"] * q["value"] for q in e["equations"]), rel_tol=1e-13)
    for case in INVALID:
        assert set(case.expected) == {"code", "pointer"}


def test_no_expected_value_is_close_enough_to_zero_for_the_floor_to_matter():
    smallest = min(abs(q["value"]) for c in VALID for q in c.expected["equations"])
    assert smallest > 100 * 1e-6


def test_generator_reproduces_every_file_byte_for_byte(tmp_path):
    """Every file byte for byte, except expected values (within a few ulp) and gradients (PyTorch's, whose last
    bits depend on the CPU: within 1e-12 per parameter). The finite-difference confirmation is skipped here
    (tests/test_gradients.py does it)."""
    module = runpy.run_path(str(SUITE / "generate.py"))
    module["generate"](tmp_path, confirm=False)
    ours = sorted(p.relative_to(SUITE) for p in (SUITE / "cases").rglob("*") if p.is_file())
    ours += sorted(p.relative_to(SUITE) for c in FILE_CASES for p in c.folder.iterdir())
    theirs = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(ours) == theirs
    for rel in theirs:
        if rel.name == "gradients.safetensors":  # PyTorch's last bits depend on the CPU too: within 1e-12
            from diagrammatic_learning.conformance.gradients import gradient_error
            from diagrammatic_learning.tensorfiles import read_safetensors

            got, want = read_safetensors(tmp_path / rel, "gradients"), read_safetensors(SUITE / rel, "gradients")
            assert sorted(got) == sorted(want), rel
            assert all(gradient_error(got[k], want[k]) <= 1e-12 for k in want), rel
            continue
        ours_bytes, theirs_bytes = (SUITE / rel).read_bytes(), (tmp_path / rel).read_bytes()
        if rel.name == "expected.json":
            # NumPy's exp/log round differently per CPU and version: numbers within a few ulp, the rest exact
            assert same_up_to_ulps(json.loads(theirs_bytes), json.loads(ours_bytes)), rel
        else:
            assert theirs_bytes == ours_bytes, rel


ULPS = 32  # this machine differs by up to 4 ulp from the committed files (chain-mlp-activations); 1e-12 is ~4500


def same_up_to_ulps(a, b, ulps: int = ULPS) -> bool:
    """Equal JSON values, except that floats may differ by ``ulps`` units in the last place of the larger."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= ulps * math.ulp(max(abs(a), abs(b)))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_up_to_ulps(a[k], b[k], ulps) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_up_to_ulps(x, y, ulps) for x, y in zip(a, b))
    return a == b


def test_ulp_comparison_accepts_rounding_and_nothing_else():
    x = 2.2114637097976133
    assert same_up_to_ulps({"v": [x, "a"]}, {"v": [x + 3 * math.ulp(x), "a"]})
    assert not same_up_to_ulps({"v": x}, {"v": x + 200 * math.ulp(x)})
    assert not same_up_to_ulps({"v": x}, {"w": x}) and not same_up_to_ulps({"v": [x]}, {"v": [x, x]})
    assert not same_up_to_ulps({"v": 1.0}, {"v": 1}) and not same_up_to_ulps({"n": "a"}, {"n": "b"})
    assert not same_up_to_ulps({"a": 1.0, "b": 2.0}, {"b": 2.0, "a": 1.0})  # key order is part of the bytes


# ----------------------------------------------------------------------------- backends on every case


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_reference(case):
    row = run_case(ReferenceBackend(), case, "float64")
    assert row.passed, row.detail


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", VALID, ids=ids)
def test_torch(case, dtype):
    row = run_case(TorchBackend(), case, dtype)
    assert row.passed, row.detail


@pytest.mark.parametrize("case", INVALID, ids=ids)
def test_torch_rejects(case):
    row = run_case(TorchBackend(), case, "float64")
    assert row.passed, row.detail


# ----------------------------------------------------------------------------- the suite has teeth


def _threshold_softplus(x, p, w):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def _tanh_gelu(x, p, w):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _zero_padded_max_pool(x, p, w):
    return ref_layers._pool(x, p, 0.0, lambda win: win.max(axis=(2, 3)))


def _avg_pool_without_padding(x, p, w):
    ones = np.ones_like(x)
    counts = ref_layers._pool(ones, p, 0.0, lambda win: win.sum(axis=(2, 3)))
    return ref_layers._pool(x, p, 0.0, lambda win: win.sum(axis=(2, 3))) / counts


def _flipped_conv(x, p, w):
    return ref_layers.conv2d(x, p, {**w, "weight": w["weight"][:, :, ::-1, ::-1]})


def _conv_padding_swapped(x, p, w):
    top, bottom, left, right = p["padding"]
    return ref_layers.conv2d(x, {**p, "padding": [bottom, top, right, left]}, w)


def _lstm_gates_ifog(x, p, w):
    h = p["hidden_size"]
    order = np.r_[0:2 * h, 3 * h:4 * h, 2 * h:3 * h]  # read blocks as i, f, o, g
    return ref_layers.lstm(x, p, {k: v[order] for k, v in w.items()})


def _lstm_without_hidden_bias(x, p, w):
    return ref_layers.lstm(x, p, {**w, "bias_hh_l0": np.zeros_like(w["bias_hh_l0"])})


def _ln_unbiased(x, p, w, k, n):
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).sum(axis=axes, keepdims=True) / (n - 1)
    y = (x - mu) / np.sqrt(var + p["eps"])
    return y * w["weight"] + w["bias"] if p["elementwise_affine"] else y


def _categorical(kind):
    original = ref_distances.categorical_distance

    def mutated(name, params, p, t, encoding, classes):
        if kind == "no-tau-squared" and name == "kl_div":
            return original(name, params, p, t, encoding, classes) / params["temperature"] ** 2
        if kind == "no-smoothing" and name == "cross_entropy":
            return original(name, {**params, "label_smoothing": 0.0}, p, t, encoding, classes)
        return original(name, params, p, t, encoding, classes)
    return mutated


def _tensor(kind):
    original = ref_distances.tensor_distance

    def mutated(name, params, p, t):
        if kind == "smooth-l1" and name == "huber":
            r = np.abs(p - t)
            d = params["delta"]
            return float(np.mean(np.where(r < d, 0.5 * r * r / d, r - 0.5 * d)))
        if kind == "sum-not-mean" and name == "mse":
            return original(name, params, p, t) * math.prod(p.shape[1:])
        return original(name, params, p, t)
    return mutated


LAYER_MUTATIONS = {
    "softplus with a threshold at 20": ("softplus", _threshold_softplus),
    "gelu by its tanh approximation": ("gelu", _tanh_gelu),
    "max pool padded with zeros": ("max_pool2d", _zero_padded_max_pool),
    "avg pool not counting padding": ("avg_pool2d", _avg_pool_without_padding),
    "convolution with a flipped kernel": ("conv2d", _flipped_conv),
    "conv padding top/bottom, left/right swapped": ("conv2d", _conv_padding_swapped),
    "lstm gates read as i, f, o, g": ("lstm", _lstm_gates_ifog),
    "lstm without bias_hh": ("lstm", _lstm_without_hidden_bias),
    "layer_norm with the unbiased variance": ("layer_norm", lambda x, p, w: _ln_unbiased(
        x, p, w, len(p["normalized_shape"]), math.prod(p["normalized_shape"]))),
    "leaky_relu slope ignored": ("leaky_relu", lambda x, p, w: np.where(x >= 0, x, 0.01 * x)),
    "elu alpha ignored": ("elu", lambda x, p, w: ref_layers.elu(x, 1.0)),
    "dropout applied in evaluation": ("dropout", lambda x, p, w: x / (1 - p["p"])),
}
DISTANCE_MUTATIONS = {
    "kl_div without the τ² factor": ("categorical_distance", _categorical("no-tau-squared")),
    "label smoothing ignored": ("categorical_distance", _categorical("no-smoothing")),
    "huber as smooth_l1 (divided by delta)": ("tensor_distance", _tensor("smooth-l1")),
    "mse summed over elements": ("tensor_distance", _tensor("sum-not-mean")),
}


def _some_case_fails() -> list[str]:
    failing = []
    for case in VALID:
        try:
            r = reference_evaluate(case.diagram, case.weights, case.batch)
        except Exception:  # a mutation that crashes is caught too
            failing.append(case.name)
            continue
        ok, _, _ = check_outcome(case, Outcome(r.equations, r.total), "float64")
        if not ok:
            failing.append(case.name)
    return failing


@pytest.mark.parametrize("mutation", list(LAYER_MUTATIONS) + list(DISTANCE_MUTATIONS))
def test_a_plausible_bug_fails_some_case(mutation, monkeypatch):
    if mutation in LAYER_MUTATIONS:
        type_, fn = LAYER_MUTATIONS[mutation]
        monkeypatch.setitem(ref_layers.LAYERS, type_, fn)
    else:
        name, fn = DISTANCE_MUTATIONS[mutation]
        monkeypatch.setattr(ref_evaluator, name, fn)
    with np.errstate(all="ignore"):
        assert _some_case_fails(), f"no case notices: {mutation}"


# ----------------------------------------------------------------------------- the runner


def test_relative_error():
    assert relative_error(1.0 + 1e-13, 1.0) == pytest.approx(1e-13, rel=1e-3)
    assert relative_error(200.0, 100.0) == 1.0
    assert relative_error(1e-9, 0.0) == pytest.approx(1e-3)   # absolute below the floor
    assert relative_error(float("nan"), 1.0) == math.inf
    assert relative_error(float("inf"), 1.0) == math.inf


def test_pointer_matching():
    assert pointer_matches("/arrows/4/name", "/arrows/4/name")
    assert not pointer_matches("/arrows/4", "/arrows/4/name")
    assert pointer_matches("/tmp/x/weights.safetensors#f.layers.0.bias", "weights.safetensors#f.layers.0.bias")
    assert pointer_matches("batch#y", "batch.safetensors#y")
    assert not pointer_matches("batch#x", "batch.safetensors#y")
    assert pointer_matches("/tmp/x/weights.safetensors", "weights.safetensors")
    assert not pointer_matches("/tmp/x/batch.safetensors", "weights.safetensors")


class _Fake:
    """A backend returning fixed outcomes, to test the runner's judgement."""

    name = "fake"

    def __init__(self, outcome=None, error=None):
        self.outcome, self.error = outcome, error

    def unavailable(self, dtype):
        return None

    def evaluate(self, diagram, weights, batch, dtype):
        if self.error is not None:
            raise self.error
        return self.outcome


def _expected_outcome(case, scale=1.0):
    return Outcome({q["name"]: q["value"] * scale for q in case.expected["equations"]}, case.expected["total"] * scale)


def test_runner_judges_values_names_and_crashes():
    case = next(c for c in VALID if c.name == "regime-distillation")
    assert run_case(_Fake(_expected_outcome(case)), case, "float64").passed
    row = run_case(_Fake(_expected_outcome(case, 1 + 1e-10)), case, "float64")
    assert not row.passed and row.error == pytest.approx(1e-10, rel=1e-3)
    assert run_case(_Fake(_expected_outcome(case, 1 + 1e-6)), case, "float32").passed
    reordered = Outcome(dict(reversed(list(_expected_outcome(case).equations.items()))), case.expected["total"])
    assert "another order" in run_case(_Fake(reordered), case, "float64").detail
    row = run_case(_Fake(error=ZeroDivisionError("oops")), case, "float64")
    assert not row.passed and "crashed: ZeroDivisionError" in row.detail
    invalid = next(c for c in INVALID if c.name == "invalid/weights-truncated")
    assert not run_case(_Fake(_expected_outcome(case)), invalid, "float64").passed   # no error is a failure


def test_julia_is_skipped_with_a_reason_when_missing():
    backend = JuliaBackend()
    try:
        module = importlib.import_module("diagrammatic_learning.julia")
        available, _ = module.is_available()
    except ImportError:
        available = False
    report = run_suite([backend], CASES[:1], "float64")
    if available:
        pytest.skip("Julia is available here; the skip path is not exercised")
    assert report.rows == [] and "julia" in report.skipped and report.skipped["julia"]


def test_cli_runs_selected_cases_and_exits_0(capsys):
    assert main(["conformance", "--backend", "reference", "-k", "layer-lstm"]) == 0
    out = capsys.readouterr().out
    assert "layer-lstm" in out and "pass" in out and "reference: 1/1 passed, 0 failed" in out


def test_a_named_backend_that_cannot_run_fails_with_exit_3(capsys):
    assert main(["conformance", "--backend", "reference", "--dtype", "float32", "-k", "layer-lstm"]) == 3
    captured = capsys.readouterr()
    assert "reference: skipped: the reference evaluator computes in float64 only" in captured.out
    assert "backend reference cannot run here" in captured.err and "nothing was checked" in captured.err


def _julia_unavailable(monkeypatch):
    module = importlib.import_module("diagrammatic_learning.julia")
    monkeypatch.setattr(module, "is_available", lambda: module.runtime.Availability(False, "no Julia here (test)"))


def test_julia_named_but_unavailable_is_a_failure_not_a_pass(monkeypatch, capsys):
    _julia_unavailable(monkeypatch)
    assert main(["conformance", "--backend", "julia", "-k", "layer-linear"]) == 3
    captured = capsys.readouterr()
    assert "julia: skipped: Julia is not available: no Julia here (test)" in captured.out
    assert "backend julia cannot run here" in captured.err


def test_all_passes_when_some_ran_and_lists_what_it_skipped(monkeypatch, capsys):
    _julia_unavailable(monkeypatch)
    assert main(["conformance", "--backend", "all", "-k", "layer-linear"]) == 0
    out = capsys.readouterr().out
    assert "reference: 2/2 passed" in out and "skipped (not checked here): julia" in out


def test_all_fails_when_nothing_ran(monkeypatch, capsys):
    _julia_unavailable(monkeypatch)
    # float32: the reference cannot run; torch is made unavailable too
    monkeypatch.setattr(TorchBackend, "unavailable", lambda self, dtype: "torch hidden (test)")
    assert main(["conformance", "--backend", "all", "--dtype", "float32", "-k", "layer-linear"]) == 3
    assert "nothing ran" in capsys.readouterr().err


@pytest.mark.parametrize("expected, where", [
    ({"total": 1.0, "dtype": "float64", "tolerance": {"float64": 1e-12, "float32": 1e-5}}, "equations"),
    ({"equations": [{"name": "f(x) = y"}], "total": 1.0, "tolerance": {}}, "equations/0/value"),
    ({"equations": [{"name": "f(x) = y", "value": "2"}], "total": 1.0}, "equations/0/value"),
    ({"equations": [{"name": "f(x) = y", "value": 2.0}], "total": None}, "total"),
    ({"equations": [], "total": 1.0, "tolerance": {"float64": "tight"}}, "tolerance/float64"),
    ([1, 2], ""),
])
def test_a_broken_expected_json_is_a_clean_error(tmp_path, capsys, expected, where):
    shutil.copytree(SUITE / "cases" / "layer-linear", tmp_path / "cases" / "layer-linear")
    path = tmp_path / "cases" / "layer-linear" / "expected.json"
    path.write_text(json.dumps(expected))
    assert main(["conformance", "--backend", "reference", "--suite", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "[malformed-json]" in err and "Traceback" not in err
    assert (f"expected.json#{where}" if where else "expected a JSON object") in err


def test_a_broken_invalid_case_expected_json_is_a_clean_error(tmp_path, capsys):
    shutil.copytree(SUITE / "invalid" / "weights-truncated", tmp_path / "invalid" / "weights-truncated")
    (tmp_path / "invalid" / "weights-truncated" / "expected.json").write_text('{"code": 3}')
    assert main(["conformance", "--backend", "reference", "--suite", str(tmp_path)]) == 1
    assert "expected.json#code" in capsys.readouterr().err


def test_cli_exits_1_on_a_wrong_expected_value(tmp_path, capsys):
    shutil.copytree(SUITE / "cases" / "layer-linear", tmp_path / "cases" / "layer-linear")
    shutil.copytree(SUITE / "invalid" / "weights-truncated", tmp_path / "invalid" / "weights-truncated")
    path = tmp_path / "cases" / "layer-linear" / "expected.json"
    expected = json.loads(path.read_text())
    expected["equations"][0]["value"] *= 1 + 1e-9
    path.write_text(json.dumps(expected))
    assert main(["conformance", "--backend", "reference", "--suite", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "1/2 passed, 1 failed" in out and "invalid/weights-truncated" in out


def test_julia_that_fails_to_start_is_skipped_with_the_reason(monkeypatch):
    module = importlib.import_module("diagrammatic_learning.julia")

    def failing_start():
        raise module.JuliaUnavailable("Pkg.instantiate failed: no network")

    monkeypatch.setattr(module, "is_available", lambda: (True, "pretend"))
    monkeypatch.setattr(module, "FluxBackend", failing_start)
    report = run_suite([JuliaBackend()], CASES[:1], "float64")
    assert report.rows == [] and "no network" in report.skipped["julia"]
