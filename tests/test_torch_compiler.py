"""The compiled diagram: memoized evaluation, frozen and trainable arrows, externals, batches, dtypes, arrow API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from diagrammatic_learning import Diagram, layer, mlp
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.torch_backend import CompiledDiagram, compile

F64 = torch.float64
rng = np.random.default_rng(2)


def shared_backbone() -> Diagram:
    """A backbone under two heads, plus a frozen decoder reconstructing the input from one head."""
    d = Diagram("shared")
    D = d.data("D")
    X, H = d.tensor("X", [4]), d.tensor("H", [6])
    Y, Z = d.categorical("Y", classes=3), d.tensor("Z", [2])
    d.data_arrow("x", D, X, "x")
    d.data_arrow("y", D, Y, "y")
    d.model("backbone", X, H, mlp(4, 6))
    d.model("head", H, Y, mlp(6, 3))
    d.model("aux", H, Z, mlp(6, 2))
    d.model("decoder", Z, X, mlp(2, 4), trainable=False)
    return d


def batch(n: int = 8) -> dict[str, np.ndarray]:
    return {"x": rng.normal(size=(n, 4)).astype(np.float32), "y": rng.integers(0, 3, size=n)}


def count_calls(m: CompiledDiagram) -> dict[str, int]:
    calls = {name: 0 for name in m}

    def hook(name):
        def count(*_):
            calls[name] += 1
        return count
    for name, module in m.items():
        module.register_forward_hook(hook(name))
    return calls


# ----------------------------------------------------------------------------- structure


def test_children_are_the_model_arrows_and_state_dict_keys_are_canonical():
    m = compile(shared_backbone())
    assert isinstance(m, nn.ModuleDict) and list(m) == ["backbone", "head", "aux", "decoder"]
    assert isinstance(m["head"], nn.Module)
    assert list(m.state_dict()) == [f"{a}.layers.0.{p}" for a in ("backbone", "head", "aux", "decoder")
                                    for p in ("weight", "bias")]
    assert [e.name for e in m.equations] == ["decoder(aux(backbone(x))) = x", "head(backbone(x)) = y"]
    assert m.dtype == torch.float32 and m.diagram.name == "shared"


def test_an_arrow_may_be_named_like_a_module_method():
    d = Diagram("names")
    D = d.data("D")
    X, Y = d.tensor("X", [2]), d.tensor("Y", [2])
    d.data_arrow("x", D, X, "x")
    d.data_arrow("y", D, Y, "y")
    d.model("train", X, Y, mlp(2, 2))
    m = compile(d)
    assert isinstance(m["train"], nn.Module) and list(m.state_dict()) == ["train.layers.0.weight", "train.layers.0.bias"]
    m.train()  # still the method
    assert m({"x": np.ones((1, 2), np.float32), "y": np.ones((1, 2), np.float32)}).ndim == 0


# ----------------------------------------------------------------------------- memoized evaluation


def test_each_distinct_subterm_is_computed_once_per_batch():
    m = compile(shared_backbone())
    calls = count_calls(m)
    ev = m.evaluate(batch())
    # backbone(x) occurs in both equations but runs once
    assert calls == {"backbone": 1, "head": 1, "aux": 1, "decoder": 1}
    assert m.application_counts == {"x": 1, "y": 1, "backbone": 1, "head": 1, "aux": 1, "decoder": 1}
    assert set(ev.terms) == {"x", "y", "backbone(x)", "aux(backbone(x))", "decoder(aux(backbone(x)))",
                             "head(backbone(x))"}
    m(batch())
    assert calls["backbone"] == 2  # once more for the second batch


def test_the_same_arrow_on_different_arguments_runs_once_per_argument():
    d = Diagram("siamese")
    D = d.data("D")
    A, Z = d.tensor("A", [3]), d.tensor("Z", [2])
    d.data_arrow("left", D, A, "left")
    d.data_arrow("right", D, A, "right")
    d.model("enc", A, Z, mlp(3, 2))
    m = compile(d)
    calls = count_calls(m)
    m({"left": rng.normal(size=(4, 3)), "right": rng.normal(size=(4, 3))})
    assert [e.name for e in m.equations] == ["enc(left) = enc(right)"]
    assert calls == {"enc": 2} and m.application_counts["enc"] == 2


# ----------------------------------------------------------------------------- gradients


def test_gradients_reach_every_trainable_arrow_and_no_frozen_one():
    m = compile(shared_backbone())
    m(batch()).backward()
    for name in ("backbone", "head", "aux"):
        for p in m[name].parameters():
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    for p in m["decoder"].parameters():
        assert not p.requires_grad and p.grad is None


def test_freeze_and_unfreeze_change_only_which_parameters_train():
    m = compile(shared_backbone())
    m.freeze("backbone")
    m(batch()).backward()
    assert all(p.grad is None for p in m["backbone"].parameters())
    assert all(p.grad is not None for p in m["aux"].parameters())  # the frozen backbone's output still trains aux
    m.unfreeze("decoder")
    m.zero_grad()
    m(batch()).backward()
    assert all(p.grad is not None for p in m["decoder"].parameters())
    assert [e.name for e in m.equations] == ["decoder(aux(backbone(x))) = x", "head(backbone(x)) = y"]
    with pytest.raises(DiagramError) as e:
        m.freeze("x")
    assert e.value.code == "kind-mismatch"
    with pytest.raises(DiagramError) as e:
        m.freeze("nope")
    assert e.value.code == "unknown-arrow"


# ----------------------------------------------------------------------------- evaluation values


def test_float64_loss_equals_a_hand_computation():
    d = Diagram("regression")
    D = d.data("D")
    X, Y = d.tensor("X", [3]), d.tensor("Y", [2])
    d.data_arrow("x", D, X, "x")
    d.data_arrow("y", D, Y, "y")
    d.model("f", X, Y, [layer("linear", in_features=3, out_features=4), layer("tanh"),
                        layer("linear", in_features=4, out_features=2)])
    w0, b0, w1, b1 = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(2, 4)), rng.normal(size=2)
    weights = {"f.layers.0.weight": w0, "f.layers.0.bias": b0, "f.layers.2.weight": w1, "f.layers.2.bias": b1}
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    expected = np.mean([np.mean((w1 @ np.tanh(w0 @ x[e] + b0) + b1 - y[e]) ** 2) for e in range(5)])
    m64 = compile(d, weights=weights, dtype=F64)
    assert m64({"x": x, "y": y}).item() == pytest.approx(expected, rel=1e-13)
    m32 = compile(d, weights=weights, dtype="float32")
    loss32 = m32({"x": x, "y": y})
    assert loss32.dtype == torch.float32 and all(p.dtype == torch.float32 for p in m32.parameters())
    assert loss32.item() == pytest.approx(expected, rel=1e-5)


def test_converting_the_module_changes_the_compute_dtype():
    d = Diagram("hot")
    D = d.data("D")
    C = d.categorical("C", classes=3)
    P = d.tensor("P", [3])
    d.data_arrow("c", D, C, "c")
    d.data_arrow("p", D, P, "p")
    d.function("hot", C, P, "one_hot")
    d.model("m", P, P, mlp(3, 3))
    m = compile(d).double()
    assert m.dtype == F64
    ev = m.evaluate({"c": np.array([0, 2]), "p": rng.normal(size=(2, 3))})
    assert ev.total.dtype == F64 and ev.terms["hot(c)"].dtype == F64


def test_dropout_is_the_identity_in_eval_mode():
    d = Diagram("drop")
    D = d.data("D")
    X = d.tensor("X", [50])
    d.data_arrow("x", D, X, "x")
    d.data_arrow("y", D, X, "y")
    d.model("f", X, X, [layer("dropout", p=0.5)])
    d.automatic = False
    d.equation("f(x)", "y")
    m = compile(d, dtype=F64)
    b = {"x": rng.normal(size=(4, 50)), "y": np.zeros((4, 50))}
    assert m.eval()(b).item() == pytest.approx(np.mean(b["x"] ** 2), rel=1e-13)
    assert m.train()(b).item() != pytest.approx(np.mean(b["x"] ** 2), rel=1e-3)


def test_a_diagram_without_equations_has_loss_zero():
    d = Diagram("empty")
    D = d.data("D")
    X = d.tensor("X", [2])
    d.data_arrow("x", D, X, "x")
    loss = compile(d)({"x": np.zeros((3, 2), np.float32)})
    assert loss.item() == 0.0 and loss.ndim == 0


def test_torch_tensor_batches_with_autograd_are_accepted():
    m = compile(shared_backbone())
    x = torch.randn(4, 4, requires_grad=True)
    m({"x": x, "y": torch.tensor([0, 1, 2, 0])}).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_numpy_columns_of_any_layout_are_accepted():
    m = compile(shared_backbone(), dtype=F64)
    b = batch()
    x = np.asfortranarray(b["x"].astype(np.float64))[::-1]
    x.flags.writeable = False
    reversed_batch = {"x": x, "y": b["y"][::-1]}
    expected = m({"x": np.ascontiguousarray(x), "y": np.ascontiguousarray(b["y"][::-1])})
    assert m(reversed_batch).item() == expected.item()


def test_a_compiled_diagram_can_be_deep_copied():
    import copy
    m = compile(shared_backbone())
    twin = copy.deepcopy(m)
    b = batch()
    assert twin(b).item() == m(b).item() and twin["head"] is not m["head"]


# ----------------------------------------------------------------------------- batches


@pytest.mark.parametrize("change, code, where", [
    (lambda b: b.pop("y"), "batch-missing-column", "batch#y"),
    (lambda b: b.update(y=b["y"].astype(np.float32)), "batch-dtype", "batch#y"),
    (lambda b: b.update(x=b["x"].astype(np.int64)), "batch-dtype", "batch#x"),
    (lambda b: b.update(x=b["x"][:, :3]), "batch-shape", "batch#x"),
    (lambda b: b.update(y=b["y"][:5]), "batch-size-mismatch", "batch#y"),
    (lambda b: b.update(y=np.full(8, 3)), "batch-index-range", "batch#y"),
    (lambda b: b.update(y=torch.full((8,), -1)), "batch-index-range", "batch#y"),
])
def test_bad_batches_give_the_spec_codes(change, code, where):
    m = compile(shared_backbone())
    b = batch()
    change(b)
    with pytest.raises(DiagramError) as e:
        m(b)
    assert (e.value.code, e.value.pointer) == (code, where)


def test_embedding_indices_out_of_range_name_the_column():
    d = Diagram("tokens")
    D = d.data("D")
    T = d.tensor("T", [3], dtype="int64")
    E = d.tensor("E", [3, 2])
    d.data_arrow("tokens", D, T, "tokens")
    d.data_arrow("target", D, E, "target")
    d.model("embed", T, E, [layer("embedding", num_embeddings=5, embedding_dim=2)])
    m = compile(d)
    good = {"tokens": np.array([[0, 4, 1]]), "target": np.zeros((1, 3, 2), np.float32)}
    m(good)
    with pytest.raises(DiagramError) as e:
        m({**good, "tokens": np.array([[0, 5, 1]])})
    assert (e.value.code, e.value.pointer) == ("batch-index-range", "batch#tokens")


# ----------------------------------------------------------------------------- externals


def external_diagram(trainable: bool = True) -> Diagram:
    d = Diagram("external")
    D = d.data("D")
    X, Y = d.tensor("X", [4]), d.categorical("Y", classes=3)
    d.data_arrow("x", D, X, "x")
    d.data_arrow("y", D, Y, "y")
    d.model("net", X, Y, external=True, trainable=trainable)
    d.model("probe", X, Y, mlp(4, 3))
    return d


def test_external_arrows_are_bound_trained_and_left_out_of_weights():
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    m = compile(external_diagram(), modules={"net": net})
    assert m["net"] is net
    m(batch()).backward()
    assert all(p.grad is not None for p in net.parameters())
    assert set(m.weights()) == {"probe.layers.0.weight", "probe.layers.0.bias"}


def test_frozen_externals_do_not_train_and_follow_the_dtype():
    net = nn.Linear(4, 3)
    compile(external_diagram(trainable=False), modules={"net": net}, dtype=F64)
    assert net.weight.dtype == F64 and not net.weight.requires_grad


def test_unbound_and_misbound_externals():
    with pytest.raises(DiagramError) as e:
        compile(external_diagram())
    assert (e.value.code, e.value.pointer) == ("external-unbound", "/arrows/2")
    with pytest.raises(DiagramError) as e:
        compile(external_diagram(), modules={"net": nn.Linear(4, 3), "nope": nn.Linear(1, 1)})
    assert (e.value.code, e.value.pointer) == ("unknown-arrow", "modules#nope")


@pytest.mark.parametrize("module", [nn.Linear(4, 2), nn.Linear(3, 3)])
def test_external_output_shape_is_checked_on_the_first_batch(module):
    m = compile(external_diagram(), modules={"net": module})
    with pytest.raises(DiagramError) as e:
        m(batch())
    assert (e.value.code, e.value.pointer) == ("external-shape", "/arrows/2")


def test_an_architecture_arrow_can_be_given_a_module_with_the_same_parameters():
    probe = nn.Sequential(nn.Linear(4, 3))  # keys 0.weight, 0.bias: not layers.0.*
    with pytest.raises(DiagramError) as e:
        compile(external_diagram(), modules={"net": nn.Linear(4, 3), "probe": probe})
    assert e.value.code == "weights-missing-key" and e.value.pointer == "modules#probe.layers.0.weight"
    holder = nn.Module()
    holder.layers = probe
    m = compile(external_diagram(), modules={"net": nn.Linear(4, 3), "probe": holder})
    assert m["probe"] is holder and "probe.layers.0.weight" in m.state_dict()


# ----------------------------------------------------------------------------- arrow API


def test_replace_arrow_state_and_save_arrow(tmp_path):
    m = compile(shared_backbone())
    new_head = compile(shared_backbone())["head"]
    assert m.replace("head", new_head) is m and m["head"] is new_head
    assert set(m.arrow_state("head")) == {"layers.0.weight", "layers.0.bias"}
    torch.testing.assert_close(m.arrow_state("head")["layers.0.weight"], new_head.layers[0].weight.detach())
    with pytest.raises(DiagramError) as e:
        m.replace("head", nn.Linear(6, 3))
    assert e.value.code == "weights-missing-key"
    m.replace("decoder", compile(shared_backbone())["decoder"])
    assert not any(p.requires_grad for p in m["decoder"].parameters())  # keeps the arrow's frozen state
    m.save_arrow("head", tmp_path / "head.safetensors")
    from safetensors.numpy import load_file
    saved = load_file(tmp_path / "head.safetensors")
    assert set(saved) == {"layers.0.weight", "layers.0.bias"}
    np.testing.assert_array_equal(saved["layers.0.bias"], new_head.layers[0].bias.detach().numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_with_cpu_batches():
    m = compile(shared_backbone(), device="cuda")
    loss = m(batch())
    assert loss.device.type == "cuda"
    loss.backward()
    b = {k: torch.as_tensor(v).cuda() for k, v in batch().items()}
    assert m(b).device.type == "cuda"
    b["y"][0] = 7
    with pytest.raises(DiagramError) as e:
        m(b)
    assert e.value.code == "batch-index-range"


def shared_column() -> Diagram:
    """Column ``x`` read into X [4] by D's arrow and into Y [2] by E's arrow; column ``y`` into Y for E."""
    d = Diagram("shared_column")
    d.data("D")
    d.data("E")
    d.tensor("X", [4], "float64")
    d.tensor("Y", [2], "float64")
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("xy", "E", "Y", "x")
    d.data_arrow("y", "E", "Y", "y")
    d.model("f", "X", "Y", mlp(4, 2))
    return d


@pytest.mark.parametrize("columns, code, where", [
    ({"x": np.zeros((3, 4)), "y": np.zeros((3, 2))}, "batch-shape", "batch#x"),  # xy needs [B, 2]
    ({"x": np.zeros((3, 2)), "y": np.zeros((5, 2))}, "batch-shape", "batch#x"),  # x needs [B, 4]
    ({"x": np.zeros((0, 4)), "y": np.zeros((0, 2))}, "batch-shape", "batch#x"),  # B = 0
])
def test_every_data_arrow_checks_its_column_and_batches_are_not_empty(columns, code, where):
    from diagrammatic_learning.reference import evaluate
    from diagrammatic_learning.tensorfiles import parameter_shapes

    d = shared_column()
    weights = {k: np.zeros(s) for k, s in parameter_shapes(d).items()}
    for run in (lambda: compile(d, dtype=F64)(columns), lambda: evaluate(d, weights, columns)):
        with pytest.raises(DiagramError) as e:
            run()
        assert (e.value.code, e.value.pointer) == (code, where)


def test_a_column_shared_by_two_data_objects_counts_for_both_batch_sizes():
    d = Diagram("shared_size")
    d.data("D")
    d.data("E")
    d.tensor("X", [2], "float64")
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("xe", "E", "X", "x")
    d.data_arrow("ye", "E", "X", "y")
    d.model("f", "X", "X", mlp(2, 2))
    with pytest.raises(DiagramError) as e:
        compile(d)({"x": np.zeros((3, 2)), "y": np.zeros((5, 2))})
    assert (e.value.code, e.value.pointer) == ("batch-size-mismatch", "batch#y")
