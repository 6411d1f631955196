"""The compiled loss as generated code (``lowering.py``): the numbers of the plan run step by step, one graph for
``torch.compile``, equations batched within rounding, the batch check folded and skippable once per source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diagrammatic_learning import Diagram, Distance, layer
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.reference import layers as ref_layers
from diagrammatic_learning.tensorfiles import read_safetensors
from diagrammatic_learning.torch_backend import build_module, compile, fit
from diagrammatic_learning.torch_backend import lowering
from diagrammatic_learning.torch_backend.data import ColumnLoader, digits
from diagrammatic_learning.torch_backend.distances import distance_fn
from diagrammatic_learning.torch_backend.functions import function_op

ROOT = Path(__file__).resolve().parent.parent
# the examples that compile without modules and train on the digits columns (simsiam binds an external module
# and draws its own noisy views; its losses are checked by its own tests)
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.json") if '"external": true' not in p.read_text())
CASES = sorted(p for p in (ROOT / "conformance" / "cases").iterdir() if (p / "diagram.json").is_file())
F64 = torch.float64


def step_by_step_loss(m, batch) -> torch.Tensor:
    """The loss as the compiler computed it before lowering: each plan step in turn, each arrow's module called
    as a module (through its wrapper), each distance on its own, summed in equation order (SPEC §6.3)."""
    d = m.diagram
    values: list[torch.Tensor] = []
    for step in m._plan.steps:
        if step.kind == "data":
            col = torch.as_tensor(np.asarray(batch[step.column]) if not isinstance(batch[step.column], torch.Tensor)
                                  else batch[step.column])
            values.append(col.to(m.dtype) if step.float_column else col)
        elif step.kind == "function":
            values.append(function_op(d, d.arrows[step.arrow], m.dtype)(*[values[i] for i in step.args]))
        else:
            values.append(m[step.arrow](*[values[i] for i in step.args]))
    total = None
    for e in m._plan.equations:
        eq = e.equation
        term = distance_fn(eq.distance, d.objects[eq.object], e.rhs_encoding, m.dtype)(values[e.lhs], values[e.rhs])
        if eq.weight != 1.0:
            term = float(eq.weight) * term
        total = term if total is None else total + term
    return torch.zeros((), dtype=m.dtype) if total is None else total


def loss_and_grads(m, fn, batch) -> tuple[float, list[torch.Tensor | None]]:
    m.zero_grad(set_to_none=True)
    loss = fn(batch)
    if loss.requires_grad:
        loss.backward()
    return loss.item(), [None if p.grad is None else p.grad.clone() for p in m.parameters()]


def assert_same(m, batch, exact: bool = True) -> None:
    got, got_grads = loss_and_grads(m, m, batch)
    want, want_grads = loss_and_grads(m, lambda b: step_by_step_loss(m, b), batch)
    if exact:
        assert got == want
    else:
        assert got == pytest.approx(want, rel=1e-13, abs=1e-15)
    for g, w in zip(got_grads, want_grads):
        assert (g is None) == (w is None)
        if g is not None:
            if exact:
                assert torch.equal(g, w)
            else:
                torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)


def digits_batch(size: int = 32) -> dict[str, torch.Tensor]:
    return next(iter(ColumnLoader(digits("train"), size, seed=3)))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_has_the_same_loss_and_gradients_as_step_by_step_in_float64(path):
    torch.manual_seed(0)
    m = compile(path, dtype=F64).eval()  # dropout is random in training
    assert_same(m, digits_batch())


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_every_conformance_case_has_the_same_loss_and_gradients_as_step_by_step(case):
    diagram = json.loads((case / "diagram.json").read_text())
    weights = case / "weights.safetensors"
    m = compile(diagram, weights=weights if weights.is_file() else None, dtype=F64).eval()
    batch = read_safetensors(case / "batch.safetensors", "batch")
    # elu (F.elu), symmetrically padded pools (PyTorch's padding) and grouped equations (one kernel, a
    # different summation order) are new kernels: equal within rounding; everything else bit for bit
    types = {lay.get("type") for a in diagram["arrows"] for lay in _layers(a)}
    grouped = any(p.group for p in lowering.equation_pieces(m))
    assert_same(m, batch, exact=not types & {"elu", "max_pool2d", "avg_pool2d"} and not grouped)


def _layers(arrow: dict) -> list[dict]:
    arch = arrow.get("architecture") or {}
    return list(arch.get("layers", [])) + [lay for branch in arch.get("inputs") or [] for lay in branch]


def test_single_input_models_run_their_layers_without_the_wrapper():
    m = compile(ROOT / "examples" / "supervised.json")
    code = m.code
    assert "F_embedding" not in code and "_apply_model" not in code
    assert "['layers']._modules" in code  # the layers are called one by one
    calls = []
    m["classifier"].register_forward_hook(lambda *_: calls.append(1))  # a hook on the arrow: called as a module
    m(digits_batch())
    assert calls == [1]


def test_layers_are_called_through_forward_only_when_calling_them_as_modules_would_do_nothing_more():
    """The code calls a layer's ``forward`` directly (no ``nn.Module.__call__``) unless a hook (its own or global)
    or ``module.compile()`` would make the call do more: each of those is honoured."""
    m = compile(ROOT / "examples" / "supervised.json").eval()
    b = digits_batch()
    want = m(b).item()
    first = m["classifier"].layers[0]
    seen = []
    handle = first.register_forward_pre_hook(lambda module, args: seen.append("pre"))
    m(b)
    assert seen == ["pre"]
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: seen.append(type(module)))
    try:
        got = m(b).item()
    finally:
        handle.remove()
    # every module, the arrow's and the diagram's too, called as a module (forward hooks run innermost first)
    assert seen[1:] == [type(first), torch.nn.ReLU, type(first), torch.nn.Sequential, type(m["classifier"]),
                        type(m)]
    assert got == want
    first.compile(backend="eager")
    try:
        assert m(b).item() == pytest.approx(want, rel=1e-6)
        assert first._compiled_call_impl is not None
    finally:
        first._compiled_call_impl = None
    seen.clear()
    m(b)
    assert seen == []  # nothing registered any more: forward called directly


def test_a_deep_copy_writes_its_own_code_over_its_own_parameters():
    import copy
    m = compile(ROOT / "examples" / "captioning.json", dtype=F64).eval()
    twin = copy.deepcopy(m)
    b = digits_batch(8)
    assert twin(b).item() == m(b).item()
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.01)
    assert twin(b).item() != m(b).item()
    assert twin._lowered is not m._lowered


# ----------------------------------------------------------------------------- one graph


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_torch_compile_sees_one_graph_without_breaks(path):
    torch._dynamo.reset()
    m = compile(path)
    explained = torch._dynamo.explain(m)(digits_batch(8))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_fullgraph_compile_trains_and_matches_eager_and_asserts_index_ranges():
    torch._dynamo.reset()
    torch.manual_seed(0)
    m = compile(ROOT / "examples" / "captioning.json", dtype=F64).eval()
    b = digits_batch(8)
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    got = compiled(b)
    got.backward()
    assert got.item() == pytest.approx(m(b).item(), rel=1e-12)  # traced: the LSTM is written out step by step
    bad = dict(b, caption_in=b["caption_in"].clone())
    bad["caption_in"][0, 0] = 16  # the embedding has 16 rows
    with pytest.raises(RuntimeError, match="batch-index-range"):
        compiled(bad)
    with pytest.raises(DiagramError) as e:
        m(bad)
    assert (e.value.code, e.value.pointer) == ("batch-index-range", "batch#caption_in")


@pytest.mark.parametrize("name", ["supervised", "captioning"])
def test_torch_export_gives_the_same_loss(name):
    torch.manual_seed(0)
    m = compile(ROOT / "examples" / f"{name}.json", dtype=F64).eval()
    b = digits_batch(8)
    exported = torch.export.export(m, (b,))
    assert exported.module()(b).item() == pytest.approx(m(b).item(), rel=1e-12)


class CountingBackend:
    """A ``torch.compile`` backend that runs the graph as traced and counts how many graphs it was given."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


@pytest.mark.parametrize("name", ["multitask", "captioning"])
def test_torch_compile_traces_once_and_guards_no_per_arrow_or_per_column_constants(name):
    """The first compiled call traces once (the record that a batch ran does not add a dictionary key the
    next call's guards would miss), and the traced code reads no constant through a Python object: the batch
    check's rules are literals, so the guards do not grow with the columns or the arrows (each guard is paid on
    every call)."""
    torch._dynamo.reset()
    m = compile(ROOT / "examples" / f"{name}.json", dtype=F64)
    backend = CountingBackend()
    compiled = torch.compile(m, backend=backend, fullgraph=True)
    assert m.application_counts == {}
    batches = [digits_batch(8), digits_batch(8), digits_batch(8)]
    for b in batches:
        assert compiled(b).item() == pytest.approx(m._lowered.run(m, b, lowering.FORWARD).item(), rel=1e-12)
    assert backend.graphs == 1
    assert m.application_counts == dict(m._plan_counts) and m.application_counts
    torch._dynamo.reset()
    guards = [g.name for g in torch._dynamo.explain(m)(batches[0]).out_guards]
    read = [g for g in guards if "rules" in g or "ranges" in g or "COUNTS" in g or "_plan_counts" in g]
    assert not read, read


@pytest.mark.filterwarnings("ignore:Using `torch.compile\\(module\\)` when there are global hooks:UserWarning")
def test_layer_hooks_under_torch_compile_are_dynamos_as_for_any_module():
    """A layer's hook present when the diagram is traced runs in the compiled call; one registered later is
    seen after a recompile when Dynamo guards hooks (``skip_nnmodule_hook_guards=False``), and, as for every
    module, not with Dynamo's default (which skips those guards)."""
    m = compile(ROOT / "examples" / "supervised.json").eval()
    b = digits_batch()
    first = m["classifier"].layers[0]
    seen = []
    with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
        torch._dynamo.reset()
        handle = first.register_forward_hook(lambda module, args, out: seen.append("before"))
        compiled = torch.compile(m, backend="eager", fullgraph=True)
        want = m(b).item()
        assert seen == ["before"]
        assert compiled(b).item() == pytest.approx(want, rel=1e-6) and seen == ["before"] * 2
        handle.remove()
        compiled(b)
        assert seen == ["before"] * 2
        later = m["classifier"].layers[2].register_forward_pre_hook(lambda module, args: seen.append("later"))
        compiled(b)
        assert seen == ["before"] * 2 + ["later"]
        later.remove()
    # Dynamo's default: a hook registered after the trace is not seen, as for a plain nn.Sequential
    torch._dynamo.reset()
    plain = torch.nn.Sequential(torch.nn.Linear(64, 10))
    compiled, compiled_plain = torch.compile(m, backend="eager"), torch.compile(plain, backend="eager")
    compiled(b), compiled_plain(b["image"])
    seen.clear()
    handles = [first.register_forward_hook(lambda *_: seen.append("ours")),
               plain[0].register_forward_hook(lambda *_: seen.append("plain"))]
    compiled(b), compiled_plain(b["image"])
    for h in handles:
        h.remove()
    assert seen == []
    m(b)  # eager calls always honour hooks: nothing registered any more
    assert seen == []
    # a global hook present when the code is traced: every module called as a module, as in eager mode
    torch._dynamo.reset()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: seen.append(type(module)))
    try:
        m(b)
        eager = list(seen)
        seen.clear()
        torch._dynamo.explain(m)(b)  # the trace runs the hooks once, as the eager call did
    finally:
        handle.remove()
    traced = [t for t in seen if t is not torch._dynamo.eval_frame.OptimizedModule]  # torch.compile's wrapper
    assert traced == eager and torch.nn.Sequential in traced and type(m["classifier"]) in traced


def test_an_interpreted_plan_traces_with_the_same_loss_and_index_ranges(monkeypatch):
    """The interpreter checks batches through ``BatchChecker``, which hands over to ``check_traced`` while
    tracing: the same loss, and an index out of range still stops the compiled call."""
    torch._dynamo.reset()
    monkeypatch.setattr(lowering, "CODEGEN_LIMIT", 0)
    m = compile(ROOT / "examples" / "multitask.json", dtype=F64).eval()
    assert m.code is None
    b = digits_batch(8)
    compiled = torch.compile(m, backend="eager", fullgraph=True)
    assert compiled(b).item() == pytest.approx(m(b).item(), rel=1e-12)
    bad = dict(b, parity=b["parity"].clone())
    bad["parity"][0] = 2  # parity has 2 classes
    with pytest.raises(RuntimeError, match="batch-index-range"):
        compiled(bad)


# ----------------------------------------------------------------------------- batched equations


def fan_out(target_kind: str, distance: Distance, encoding: str | None = None, heads: int = 5) -> Diagram:
    """``heads`` models from X to one object O beside a data arrow into O: 5 equations head(x) = t (one of them
    weighted 0.25) and 10 equations head(x) = head(x), all with O's distance."""
    d = Diagram("fan_out")
    d.data("D")
    d.tensor("X", [6], "float64")
    if target_kind == "tensor":
        d.tensor("O", [3], "float64", distance=distance)
    else:
        d.categorical("O", classes=4, distance=distance)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("t", "D", "O", "t", encoding=encoding)
    for i in range(heads):
        d.model(f"h{i}", "X", "O", [layer("linear", in_features=6, out_features=3 if target_kind == "tensor" else 4)])
    d.equation("h1(x)", "t", weight=0.25)
    return d


def fan_out_batch(target_kind: str, encoding: str | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 6))
    if target_kind == "tensor":
        t = rng.uniform(size=(7, 3))  # in [0, 1] for bce_logits
    elif encoding == "index":
        t = rng.integers(0, 4, size=7)
    else:
        t = rng.dirichlet(np.ones(4), size=7)
    return {"x": x, "t": t}


DISTANCES = [
    ("tensor", Distance("mse", {}), None),
    ("tensor", Distance("l1", {}), None),
    ("tensor", Distance("huber", {"delta": 0.3}), None),
    ("tensor", Distance("cosine", {"eps": 1e-8}), None),
    ("tensor", Distance("bce_logits", {}), None),
    ("categorical", Distance("cross_entropy", {"label_smoothing": 0.1}), "index"),
    ("categorical", Distance("cross_entropy", {"label_smoothing": 0.0}), "probabilities"),
    ("categorical", Distance("kl_div", {"temperature": 2.0}), "index"),
    ("categorical", Distance("kl_div", {"temperature": 1.0}), "probabilities"),
]


@pytest.mark.parametrize("kind, distance, encoding", DISTANCES, ids=lambda v: getattr(v, "name", str(v)))
def test_equations_sharing_a_distance_run_as_one_group_equal_to_each_alone(kind, distance, encoding):
    torch.manual_seed(0)
    m = compile(fan_out(kind, distance, encoding), dtype=F64)
    pieces = lowering.equation_pieces(m)
    # tensor values: all 15 equations have one shape; categorical: head = t and head = head differ in encoding
    groups = [5, 10] if kind == "categorical" else [15]
    assert sorted(len(p.equations) for p in pieces) == groups
    assert m.code.count("torch.stack((v") == 2 * len(groups)  # each group stacks both sides
    b = fan_out_batch(kind, encoding)
    ev = m.evaluate(b)
    for e in m._plan.equations:  # each distance as the one-equation kernel computes it
        eq = e.equation
        alone = distance_fn(eq.distance, m.diagram.objects[eq.object], e.rhs_encoding, F64)(
            ev.terms[str(eq.lhs)], ev.terms[str(eq.rhs)])
        assert ev.equations[eq.name].item() == pytest.approx(alone.item(), rel=1e-14, abs=1e-15)
    assert_same(m, b, exact=False)
    total, stats = m.losses(b)
    assert stats.tolist() == pytest.approx([total.item(), *(d.item() for d in ev.equations.values())], rel=1e-15)


def test_plans_too_large_to_write_out_are_interpreted_with_the_same_numbers(monkeypatch):
    torch.manual_seed(0)
    d = fan_out("categorical", Distance("cross_entropy", {"label_smoothing": 0.0}), "index")
    b = fan_out_batch("categorical", "index")
    m = compile(d, dtype=F64)
    written = m.evaluate(b)
    monkeypatch.setattr(lowering, "CODEGEN_LIMIT", 0)
    m._build_ops()
    assert m.code is None
    interpreted = m.evaluate(b)
    assert interpreted.total.item() == pytest.approx(written.total.item(), rel=1e-15)
    assert [v.item() for v in interpreted.equations.values()] == \
        pytest.approx([v.item() for v in written.equations.values()], rel=1e-15)


@pytest.mark.parametrize("chunk", [4096, 2], ids=["whole", "chunked"])
@pytest.mark.parametrize("kind,distance,encoding", [DISTANCES[0], DISTANCES[5]], ids=["mse", "cross_entropy"])
def test_the_interpreter_gives_the_written_codes_losses_and_gradients(monkeypatch, kind, distance, encoding,
                                                                       chunk):
    """Groups gather their sides from each distinct value stacked once (a few equations at a time, each chunk
    checkpointed, when they are many); forward, losses and gradients agree with the written code."""
    from diagrammatic_learning.torch_backend import interpreter
    monkeypatch.setattr(interpreter, "CHUNK", chunk)
    torch.manual_seed(0)
    d = fan_out(kind, distance, encoding)
    b = fan_out_batch(kind, encoding)
    m = compile(d, dtype=F64)
    assert any(p.group for p in lowering.equation_pieces(m))
    results = []
    for limit in (lowering.CODEGEN_LIMIT, 0):
        monkeypatch.setattr(lowering, "CODEGEN_LIMIT", limit)
        m._build_ops()
        m.zero_grad()
        m(b).backward()
        total, stats = m.losses(b)
        results.append((stats.tolist(), [p.grad.clone() for p in m.parameters()]))
    assert m.code is None
    (stats_w, grads_w), (stats_i, grads_i) = results
    assert stats_i == pytest.approx(stats_w, rel=1e-14, abs=1e-16)
    for gw, gi in zip(grads_w, grads_i):
        torch.testing.assert_close(gi, gw, rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------------------- the batch check


def test_index_columns_are_checked_once_each_with_embedding_ranges_folded_in(monkeypatch):
    m = compile(ROOT / "examples" / "captioning.json")
    assert dict(m._check_batch.ranges) == {"caption_out": 16, "caption_in": 16}
    calls = []
    real = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda *a, **k: calls.append(1) or real(*a, **k))
    b = digits_batch(8)
    m(b)
    assert len(calls) == 2  # one reduction per index column, none inside the embedding
    calls.clear()
    with m.values_checked():
        m(b)
    assert calls == []  # a checked source: no range check per batch
    m(b)
    assert len(calls) == 2  # back to checking after the block


def test_a_checked_source_is_checked_row_by_row_once_including_embedding_ranges():
    m = compile(ROOT / "examples" / "captioning.json", dtype=F64)
    tables = digits("train")
    loader = ColumnLoader.for_model(m, tables, batch_size=16, seed=0)
    assert loader.checked_for is m._check_batch
    b = next(iter(loader))
    assert set(b) == {"image", "caption_in", "caption_out"}  # only what the diagram reads
    assert b["image"].dtype == F64 and b["caption_in"].dtype == torch.int64  # converted once, in the loader
    history = fit(m, loader, epochs=1, progress=False)
    assert len(history.steps) == len(loader)
    bad = [dict(tables[0]), tables[1]]
    bad[0]["caption_in"] = tables[0]["caption_in"].copy()
    bad[0]["caption_in"][100, 1] = 16
    with pytest.raises(DiagramError) as e:
        ColumnLoader.for_model(m, bad)
    assert (e.value.code, e.value.pointer) == ("batch-index-range", "data#caption_in")


def test_range_failures_on_the_fast_path_keep_the_codes_and_pointers():
    m = compile(ROOT / "examples" / "multitask.json")
    b = digits_batch(8)
    for column, value in (("parity", 2), ("big", -1), ("few_label", 10)):
        bad = dict(b)
        bad[column] = b[column].clone()
        bad[column][3] = value
        with pytest.raises(DiagramError) as e:
            m(bad)
        assert (e.value.code, e.value.pointer) == ("batch-index-range", f"batch#{column}")


# ----------------------------------------------------------------------------- kernels that replaced formulas


@pytest.mark.parametrize("dtype, ulps", [(torch.float64, 0), (torch.float32, 2)])
def test_elu_is_the_spec_formula(dtype, ulps):
    x = torch.cat([torch.randn(20000, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 6,
                   torch.linspace(-1e-4, 1e-4, 2001, dtype=dtype), torch.tensor([0.0, -0.0, -50.0], dtype=dtype)])
    module = build_module([layer("elu", alpha=0.7)], dtype)
    got = module(x)
    want = torch.where(x > 0, x, 0.7 * torch.expm1(torch.clamp(x, max=0)))
    spacing = torch.finfo(dtype).eps * want.abs().clamp(min=torch.finfo(dtype).tiny)
    assert float(((got - want).abs() / spacing).max()) <= ulps
    np.testing.assert_allclose(got.double().detach().numpy(), ref_layers.elu(x.double().numpy(), 0.7),
                               rtol=1e-15 if dtype == torch.float64 else 3e-7, atol=0)


@pytest.mark.parametrize("kind", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("kernel, stride, padding", [([3, 3], [2, 2], [1, 1, 1, 1]), ([2, 4], [1, 2], [1, 1, 2, 2]),
                                                     ([3, 2], [3, 2], [1, 1, 0, 0]), ([2, 2], [1, 1], [0, 1, 1, 0])])
def test_pools_equal_the_reference_with_native_or_explicit_padding(kind, kernel, stride, padding):
    x = np.random.default_rng(0).normal(size=(2, 3, 9, 8))
    spec = layer(kind, kernel_size=kernel, stride=stride, padding=padding)
    module = build_module([spec], F64)
    top, bottom, left, right = padding
    assert (module.layers[0].native is not None) == (top == bottom and left == right and top + left > 0)
    got = module(torch.from_numpy(x)).detach().numpy()
    want = ref_layers.apply_layer(kind, x, {"kernel_size": kernel, "stride": stride, "padding": padding}, {})
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)


def test_equations_on_different_objects_of_one_shape_share_a_group():
    d = Diagram("heads")
    d.data("D")
    d.tensor("X", [4], "float64")
    d.data_arrow("x", "D", "X", "x")
    for i in range(6):
        d.categorical(f"Y{i}", classes=3)
        d.data_arrow(f"y{i}", "D", f"Y{i}", "y")
        d.model(f"h{i}", "X", f"Y{i}", [layer("linear", in_features=4, out_features=3)])
    d.categorical("Z", classes=5)  # another shape: alone
    d.data_arrow("z", "D", "Z", "z")
    d.model("g", "X", "Z", [layer("linear", in_features=4, out_features=5)])
    torch.manual_seed(0)
    m = compile(d, dtype=F64)
    assert sorted(len(p.equations) for p in lowering.equation_pieces(m)) == [1, 6]
    rng = np.random.default_rng(0)
    assert_same(m, {"x": rng.normal(size=(9, 4)), "y": rng.integers(0, 3, 9), "z": rng.integers(0, 5, 9)},
                exact=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_loader_pins_batches_and_one_transfer_checks_every_index_column():
    m = compile(ROOT / "examples" / "multitask.json", device="cuda")
    loader = ColumnLoader.for_model(m, digits("train"), batch_size=32)
    b = next(iter(loader))
    assert all(t.is_pinned() for t in b.values())
    cuda = {k: v.to("cuda", non_blocking=True) for k, v in b.items()}
    assert m(cuda).device.type == "cuda"
    cuda["big"][0] = 2
    with pytest.raises(DiagramError) as e:
        m(cuda)
    assert (e.value.code, e.value.pointer) == ("batch-index-range", "batch#big")


# ----------------------------------------------------------------------------- the interpreter (large plans)


def layered(width: int = 3, depth: int = 4) -> Diagram:
    """Columns of objects L{l}_{j}, each fed by its own data arrow and by a model from the one before: model
    ``m{l}_{j}`` is applied to every term of ``L{l-1}_{j}``, so a large plan applies one model many times."""
    d = Diagram("layered")
    d.data("D")
    for level in range(depth + 1):
        for j in range(width):
            d.tensor(f"L{level}_{j}", [3], "float64")
            d.data_arrow(f"d{level}_{j}", "D", f"L{level}_{j}", f"d{level}_{j}")
            if level:
                d.model(f"m{level}_{j}", f"L{level - 1}_{j}", f"L{level}_{j}",
                        [layer("linear", in_features=3, out_features=3), layer("tanh")])
    return d


@pytest.mark.parametrize("source", ["layered", *(p.stem for p in EXAMPLES)])
def test_the_interpreter_batches_applications_of_one_model_with_the_same_numbers(monkeypatch, source):
    monkeypatch.setattr(lowering, "CODEGEN_LIMIT", 0)
    torch.manual_seed(0)
    if source == "layered":
        d = layered()
        rng = np.random.default_rng(2)
        batch = {a.column: rng.normal(size=(5, 3)) for a in d.arrows.values() if a.kind == "data"}
    else:
        d, batch = ROOT / "examples" / f"{source}.json", digits_batch()
    m = compile(d, dtype=F64).eval()
    assert m.code is None
    interpreter = m._program().run.__closure__[0].cell_contents
    together = [u for u in interpreter.units if u[0] == "models"]
    if source == "layered":  # m2_j runs on 2 terms at once, m3_j on 3, m4_j on 4
        assert sorted(len(u[1]) for u in together) == [2] * 3 + [3] * 3 + [4] * 3
    assert_same(m, batch, exact=False)
    ev, written = m.evaluate(batch), None
    monkeypatch.setattr(lowering, "CODEGEN_LIMIT", 10 ** 9)
    m._build_ops()
    written = m.evaluate(batch)
    assert list(ev.equations) == list(written.equations)
    for name in ev.equations:
        assert ev.equations[name].item() == pytest.approx(written.equations[name].item(), rel=1e-13, abs=1e-15)
    for text in written.terms:
        torch.testing.assert_close(ev.terms[text], written.terms[text], rtol=1e-13, atol=1e-15)


def test_a_model_with_a_hook_is_applied_once_per_term_by_the_interpreter(monkeypatch):
    monkeypatch.setattr(lowering, "CODEGEN_LIMIT", 0)
    m = compile(layered(), dtype=F64)
    calls = []
    m["m4_0"].register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    rng = np.random.default_rng(2)
    m({a.column: rng.normal(size=(5, 3)) for a in m.diagram.arrows.values() if a.kind == "data"})
    assert calls == [5, 5, 5, 5]  # four terms of L3_0, each its own call
    calls.clear()
    m["m3_0"].layers[0].register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    m({a.column: rng.normal(size=(5, 3)) for a in m.diagram.arrows.values() if a.kind == "data"})
    assert calls == [5, 5, 5, 5] + [5, 5, 5]  # a hook on a layer inside the model too: three terms of L2_0


# ----------------------------------------------------------------------------- what fit records of a step


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_a_step_row_holds_the_numbers_of_the_losses_vector_detached(path, monkeypatch):
    """``_step_row`` (``pieces.ROWS``, what ``fit`` records) gives ``losses``' vector: as detached 0-d tensors
    where every equation is computed alone, as the vector itself where equations are grouped or interpreted."""
    torch.manual_seed(0)
    m = compile(path, dtype=F64)
    b = digits_batch(16)
    for interpreted in (False, True):
        if interpreted:
            monkeypatch.setattr(lowering, "CODEGEN_LIMIT", 0)
            m._build_ops()
        torch.manual_seed(1)  # dropout draws alike in both calls
        total, row = m._step_row(b)
        torch.manual_seed(1)
        _, vector = m.losses(b)
        assert total.requires_grad
        if isinstance(row, tuple):
            assert not interpreted and all(x.ndim == 0 and not x.requires_grad for x in row)
            row = torch.stack(row)
        assert not row.requires_grad
        assert torch.equal(row, vector)


def test_an_epochs_rows_become_one_table_whatever_their_form():
    """``fit``'s table of an epoch: rows given as tuples of 0-d tensors, as vectors, or both."""
    from diagrammatic_learning.torch_backend.training import _table
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])
    assert torch.equal(_table([(a[0], a[1]), (b[0], b[1])]), torch.stack([a, b]))
    assert torch.equal(_table([a, (b[0], b[1])]), torch.stack([a, b]))
    assert torch.equal(_table([a, b]), torch.stack([a, b]))


def test_the_traced_global_hook_test_is_marked_as_torchs_decorator_would_mark_it():
    """``lowering`` marks ``no_global_hooks_traced`` constant without importing Dynamo; the mark must be the one
    ``torch.compiler.assume_constant_result`` makes, or Dynamo would trace into it (and guard the hook tables)."""
    def f() -> bool:
        return True

    marked = vars(torch.compiler.assume_constant_result(f))
    assert marked and all(vars(lowering.no_global_hooks_traced).get(k) == v for k, v in marked.items())
