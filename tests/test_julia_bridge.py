"""The Flux.jl backend through juliacall: the conformance suite, in-memory evaluation, and Flux models
in PyTorch and back. Needs Julia ≥ 1.10 with juliacall (make test-julia); skipped with the reason
otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diagrammatic_learning import DiagramError
from diagrammatic_learning.julia import is_available

AVAILABLE, REASON = is_available()
if not AVAILABLE:
    pytest.skip(f"the Flux.jl backend cannot run here: {REASON}", allow_module_level=True)

import torch  # noqa: E402  (after the availability check, so that juliacall may come first)
from torch import nn  # noqa: E402

from diagrammatic_learning.julia import FluxBackend, FluxModel, load_flux_model  # noqa: E402
from diagrammatic_learning.tensorfiles import read_safetensors  # noqa: E402

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"
CASES = sorted(p for p in (CONFORMANCE / "cases").iterdir() if p.is_dir())
INVALID = sorted(p for p in (CONFORMANCE / "invalid").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def backend() -> FluxBackend:
    return FluxBackend()


def files(case: Path) -> tuple[Path, Path, Path]:
    return case / "diagram.json", case / "weights.safetensors", case / "batch.safetensors"


def relative_error(got: float, want: float) -> float:
    return abs(got - want) / max(abs(want), 1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_conformance_case(backend, case, dtype):
    expected = json.loads((case / "expected.json").read_text())
    result = backend.evaluate(*files(case), dtype=dtype)
    assert list(result["equations"]) == [e["name"] for e in expected["equations"]]
    tolerance = expected["tolerance"][dtype]
    for e in expected["equations"]:
        assert relative_error(result["equations"][e["name"]], e["value"]) <= tolerance
    assert relative_error(result["total"], expected["total"]) <= tolerance


def pointer_matches(got: str, want: str) -> bool:
    if want == "" or want.startswith("/"):
        return got == want
    if "#" in want:
        return "#" in got and got.split("#", 1)[1] == want.split("#", 1)[1] and \
            Path(got.split("#", 1)[0]).name == Path(want.split("#", 1)[0]).name
    return "#" not in got and Path(got).name == Path(want).name


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.name)
def test_invalid_case(backend, case):
    expected = json.loads((case / "expected.json").read_text())
    with pytest.raises(DiagramError) as info:
        backend.evaluate(*files(case))
    assert info.value.code == expected["code"]
    assert pointer_matches(info.value.pointer, expected["pointer"]), info.value.pointer


def test_in_memory_arrays_give_the_same_loss(backend):
    case = CONFORMANCE / "cases" / "regime-captioning"
    diagram, weights, batch = files(case)
    from_files = backend.evaluate(diagram, weights, batch)
    in_memory = backend.evaluate_arrays(diagram, read_safetensors(weights), read_safetensors(batch, "batch"))
    assert in_memory == from_files


def torch_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=(1, 0)), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 3 * 2, 4), nn.GELU(), nn.Linear(4, 2)).double().eval()


def test_a_pytorch_model_runs_in_flux_and_comes_back():
    module = torch_model()
    x = np.random.default_rng(0).normal(size=(5, 1, 6, 6))
    flux = FluxModel.from_torch(module, dtype="float64")
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(flux(x), want, rtol=1e-10)
    back = flux.to_torch()
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(x)).numpy(), want, rtol=1e-10)


def test_a_saved_flux_model_loads_with_its_architecture(tmp_path):
    flux = FluxModel.from_torch(torch_model(), dtype="float64")
    flux.save(tmp_path / "model.jld2")
    loaded = load_flux_model(tmp_path / "model.jld2")
    assert loaded.dtype == "float64" and loaded.architecture == flux.architecture
    x = np.random.default_rng(1).normal(size=(2, 1, 6, 6))
    np.testing.assert_allclose(loaded(x), flux(x), rtol=1e-12)
    (tmp_path / "junk.jld2").write_text("not a model")
    with pytest.raises(DiagramError) as info:
        load_flux_model(tmp_path / "junk.jld2")
    assert info.value.code == "weights-file"


def test_a_flux_model_inside_a_pytorch_graph_passes_gradients():
    module = torch_model()
    julia_module = FluxModel.from_torch(module, dtype="float64").torch_module()
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    julia_module(x).square().sum().backward()
    got = x.grad.clone()
    x.grad = None
    module(x).square().sum().backward()
    torch.testing.assert_close(got, x.grad, rtol=1e-9, atol=1e-12)


def test_a_flux_model_bound_to_an_external_arrow(backend):
    doc = {"format": "learning-diagram", "format_version": "1.0",
           "objects": [{"name": "D", "kind": "data"},
                       {"name": "X", "kind": "tensor", "shape": [1, 6, 6], "dtype": "float64"},
                       {"name": "Y", "kind": "categorical", "classes": 2}],
           "arrows": [{"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"},
                      {"name": "y", "kind": "data", "source": "D", "target": "Y", "column": "y"},
                      {"name": "net", "kind": "model", "source": "X", "target": "Y", "trainable": True,
                       "external": True}]}
    module = torch_model()
    batch = {"x": np.random.default_rng(2).normal(size=(4, 1, 6, 6)), "y": np.array([0, 1, 1, 0])}
    flux = FluxModel.from_torch(module, dtype="float64")
    in_julia = backend.evaluate_arrays(doc, {}, batch, externals={"net": flux})
    from diagrammatic_learning.torch_backend import compile as compile_torch

    for bound in (module, flux.torch_module()):  # the PyTorch module, then the Flux model run from PyTorch
        compiled = compile_torch(doc, modules={"net": bound}, dtype=torch.float64).eval()
        with torch.no_grad():
            in_torch = float(compiled(batch))
        assert in_julia["total"] == pytest.approx(in_torch, rel=1e-10)
