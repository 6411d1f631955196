"""Weights of a compiled diagram: safetensors round trips, every weights error code, all or nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from diagrammatic_learning import Diagram, layer, mlp
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.torch_backend import compile, load_arrow_module

rng = np.random.default_rng(3)


def diagram() -> Diagram:
    d = Diagram("two")
    D = d.data("D")
    X, Y = d.tensor("X", [3]), d.categorical("Y", classes=2)
    d.data_arrow("x", D, X, "x")
    d.data_arrow("y", D, Y, "y")
    d.model("enc", X, X, [layer("linear", in_features=3, out_features=3), layer("relu")])
    d.model("head", X, Y, mlp(3, 4, 2))
    return d


def fresh_weights(dtype=np.float32) -> dict[str, np.ndarray]:
    shapes = {"enc.layers.0.weight": (3, 3), "enc.layers.0.bias": (3,), "head.layers.0.weight": (4, 3),
              "head.layers.0.bias": (4,), "head.layers.2.weight": (2, 4), "head.layers.2.bias": (2,)}
    return {k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()}


def batch() -> dict[str, np.ndarray]:
    return {"x": rng.normal(size=(6, 3)).astype(np.float32), "y": rng.integers(0, 2, size=6)}


def state(m) -> dict[str, np.ndarray]:
    return {k: v.detach().clone().numpy() for k, v in m.state_dict().items()}


def test_save_and_load_round_trip(tmp_path):
    m = compile(diagram())
    path = tmp_path / "w.safetensors"
    m.save_weights(path)
    saved = load_file(path)
    assert sorted(saved) == sorted(m.state_dict()) and all(v.dtype == np.float32 for v in saved.values())
    other = compile(diagram(), weights=path)
    b = batch()
    assert other(b).item() == m(b).item()
    for k, v in state(m).items():
        np.testing.assert_array_equal(state(other)[k], v)


def test_weights_from_a_mapping_and_float64_files(tmp_path):
    w = fresh_weights(np.float64)
    m = compile(diagram(), weights=w, dtype=torch.float64)
    np.testing.assert_array_equal(state(m)["head.layers.2.weight"], w["head.layers.2.weight"])
    path = tmp_path / "w64.safetensors"
    m.save_weights(path)
    assert load_file(path)["enc.layers.0.bias"].dtype == np.float64
    m32 = compile(diagram(), weights=path)  # converted to the compute dtype
    assert m32["enc"].layers[0].bias.dtype == torch.float32
    np.testing.assert_allclose(state(m32)["enc.layers.0.bias"], w["enc.layers.0.bias"], rtol=1e-7)
    torch_mapping = {k: torch.from_numpy(v) for k, v in w.items()}
    compile(diagram()).load_weights(torch_mapping)


@pytest.mark.parametrize("change, code, key", [
    (lambda w: w.pop("head.layers.0.bias"), "weights-missing-key", "head.layers.0.bias"),
    (lambda w: w.update(extra=np.zeros(2, np.float32)), "weights-unexpected-key", "extra"),
    (lambda w: w.update({"enc.layers.0.weight": np.zeros((3, 2), np.float32)}), "weights-shape",
     "enc.layers.0.weight"),
    (lambda w: w.update({"enc.layers.0.bias": np.zeros(3, np.int64)}), "weights-dtype", "enc.layers.0.bias"),
    (lambda w: w.update({"enc.layers.0.bias": np.zeros(3, np.float16)}), "weights-dtype", "enc.layers.0.bias"),
])
def test_every_weights_error_names_the_file_and_key_and_loads_nothing(tmp_path, change, code, key):
    m = compile(diagram())
    before = state(m)
    w = fresh_weights()
    change(w)
    path = tmp_path / "bad.safetensors"
    save_file(w, path)
    with pytest.raises(DiagramError) as e:
        m.load_weights(path)
    assert (e.value.code, e.value.pointer) == (code, f"{path}#{key}")
    with pytest.raises(DiagramError) as e:
        compile(diagram(), weights=w)
    assert (e.value.code, e.value.pointer) == (code, f"weights#{key}")
    with pytest.raises(DiagramError) as e:
        m.load_weights(w)  # a mapping into a live model: all or nothing as well
    assert (e.value.code, e.value.pointer) == (code, f"weights#{key}")
    for k, v in state(m).items():  # the good tensors in the same file or mapping were not copied either
        np.testing.assert_array_equal(v, before[k])
    assert all(not np.array_equal(v, w[k]) for k, v in before.items() if k in w)  # so a copy would show


def test_all_problems_are_reported_together():
    w = fresh_weights()
    w.pop("enc.layers.0.bias")
    w["head.layers.2.bias"] = np.zeros(5, np.float32)
    with pytest.raises(DiagramError) as e:
        compile(diagram(), weights=w)
    assert sorted(e.value.codes) == ["weights-missing-key", "weights-shape"]


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", None])
def test_unreadable_files_are_weights_file_errors(tmp_path, content):
    path = tmp_path / "w.safetensors"
    if content is None:  # a real file cut short
        compile(diagram()).save_weights(path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) - 10])
    else:
        path.write_bytes(content)
    with pytest.raises(DiagramError) as e:
        compile(diagram(), weights=path)
    assert (e.value.code, e.value.pointer) == ("weights-file", str(path))
    with pytest.raises(DiagramError) as e:
        compile(diagram(), weights=tmp_path / "missing.safetensors")
    assert e.value.code == "weights-file"


def test_saving_is_atomic_when_writing_fails(tmp_path):
    path = tmp_path / "w.safetensors"
    m = compile(diagram())
    m.save_weights(path)
    before = path.read_bytes()
    with pytest.raises(OSError):
        m.save_weights(tmp_path / "no-such-folder" / "w.safetensors")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_load_arrow_module_from_a_weights_file_or_an_arrow_file(tmp_path):
    m = compile(diagram(), weights=fresh_weights())
    full, single = tmp_path / "all.safetensors", tmp_path / "head.safetensors"
    m.save_weights(full)
    m.save_arrow("head", single)
    x = torch.from_numpy(rng.normal(size=(4, 3)).astype(np.float32))
    expected = m["head"](x)
    for path in (full, single):
        head = load_arrow_module(diagram(), "head", path)
        assert type(head) is type(m["head"]) and list(head.state_dict()) == ["layers.0.weight", "layers.0.bias",
                                                                              "layers.2.weight", "layers.2.bias"]
        torch.testing.assert_close(head(x), expected)
    head64 = load_arrow_module(diagram(), "head", single, dtype=torch.float64)
    assert head64.layers[0].weight.dtype == torch.float64
    save_file({"layers.0.weight": np.zeros((4, 3), np.float32)}, tmp_path / "partial.safetensors")
    with pytest.raises(DiagramError) as e:
        load_arrow_module(diagram(), "head", tmp_path / "partial.safetensors")
    assert e.value.code == "weights-missing-key"
    with pytest.raises(DiagramError) as e:
        load_arrow_module(diagram(), "x", single)
    assert e.value.code == "kind-mismatch"
