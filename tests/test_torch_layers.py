"""Each layer, combine step and function op of the PyTorch backend against the spec's formula in float64 NumPy.

The references below are written from SPEC §3.2 and §4 directly (loops over
windows and time steps, elementwise formulas), not from the backend's code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diagrammatic_learning import Diagram, layer
from diagrammatic_learning.diagram import Architecture
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.torch_backend import build_module, compile

F64 = torch.float64
rng = np.random.default_rng(0)


def run(layers, x: np.ndarray, params: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Apply a layer list as built by the backend (float64, given parameters) to x; eval mode."""
    module = build_module(list(layers), F64).eval()
    if params:
        module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-12, atol: float = 1e-12) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- elementwise


X = np.array([[-30.0, -3.0, -1e-10, 0.0, 1e-10, 0.5, 3.0, 25.0, 30.0]])


@pytest.mark.parametrize("name, params, reference", [
    ("relu", {}, lambda x: np.where(x > 0, x, 0.0)),
    ("leaky_relu", {"negative_slope": 0.2}, lambda x: np.where(x >= 0, x, 0.2 * x)),
    ("tanh", {}, np.tanh),
    ("sigmoid", {}, lambda x: 1 / (1 + np.exp(-x))),
    ("identity", {}, lambda x: x),
    ("gelu", {}, lambda x: x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))) / 2),
    ("elu", {"alpha": 1.5}, lambda x: np.where(x > 0, x, 1.5 * np.expm1(x))),
    ("softplus", {}, lambda x: np.log1p(np.exp(x))),
    ("softmax", {}, lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum()),
    ("log_softmax", {}, lambda x: x - x.max() - np.log(np.exp(x - x.max()).sum())),
])
def test_elementwise_layers_follow_the_spec_formula(name, params, reference):
    close(run([layer(name, **params)], X.copy()), reference(X), rtol=1e-13, atol=1e-15)


def test_softplus_has_no_threshold_and_elu_uses_expm1():
    # torch's own softplus returns x itself above 20; the spec's is log(1 + exp(x)) everywhere
    y = run([layer("softplus")], np.array([[25.0, 40.0]]))
    assert y[0, 0] - 25.0 == pytest.approx(math.exp(-25.0), rel=1e-3)
    # exp(x) − 1 loses digits near 0; expm1 does not
    y = run([layer("elu")], np.array([[-1e-10]]))
    assert y[0, 0] == pytest.approx(-1e-10 + 5e-21, rel=1e-15)


def test_softplus_gradient_is_the_sigmoid_even_at_extremes():
    x = torch.tensor([-800.0, -2.0, 0.0, 2.0, 800.0], dtype=F64, requires_grad=True)
    build_module([layer("softplus")], F64)(x.reshape(1, -1)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 0.5 * (1 + np.tanh(x.detach().numpy() / 2)), rtol=1e-14)


def test_dropout_is_the_identity_in_eval_mode_and_scales_in_training():
    x = torch.ones(4000, dtype=F64)
    module = build_module([layer("dropout", p=0.25)], F64)
    assert torch.equal(module.eval()(x), x)
    y = module.train()(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))
    assert 0.2 < 1 - kept.double().mean().item() < 0.3


# ----------------------------------------------------------------------------- linear, conv, pools


def test_linear_over_extra_axes():
    w, b = rng.normal(size=(3, 5)), rng.normal(size=3)
    x = rng.normal(size=(2, 4, 5))
    expected = np.einsum("bli,oi->blo", x, w) + b
    close(run([layer("linear", in_features=5, out_features=3)], x, {"layers.0.weight": w, "layers.0.bias": b}),
          expected)


def conv2d_reference(x, w, b, stride, padding, dilation, groups):
    top, bottom, left, right = padding
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    batch, cin, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    og = cout // groups
    ho = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + left + right - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((batch, cout, ho, wo))
    for o in range(cout):
        g = o // og
        for i in range(ho):
            for j in range(wo):
                total = np.full(batch, 0.0 if b is None else b[o])
                for c in range(cg):
                    for p in range(kh):
                        for q in range(kw):
                            total = total + w[o, c, p, q] * xp[:, g * cg + c, i * sh + p * dh, j * sw + q * dw]
                y[:, o, i, j] = total
    return y


@pytest.mark.parametrize("stride, padding, dilation, groups, bias", [
    ([1, 1], [0, 0, 0, 0], [1, 1], 1, True),
    ([2, 1], [1, 2, 0, 3], [1, 2], 2, True),   # asymmetric padding, stride, dilation, groups
    ([1, 2], [1, 1, 2, 2], [2, 1], 1, False),  # symmetric padding, no bias
])
def test_conv2d_matches_the_cross_correlation_formula(stride, padding, dilation, groups, bias):
    cin, cout, k = 4, 6, (3, 2)
    w = rng.normal(size=(cout, cin // groups, *k))
    b = rng.normal(size=cout) if bias else None
    x = rng.normal(size=(2, cin, 7, 6))
    spec = layer("conv2d", in_channels=cin, out_channels=cout, kernel_size=list(k), stride=stride, padding=padding,
                 dilation=dilation, groups=groups, bias=bias)
    params = {"layers.0.weight": w} | ({"layers.0.bias": b} if bias else {})
    close(run([spec], x, params), conv2d_reference(x, w, b, stride, padding, dilation, groups))


def pool_reference(x, kind, kernel, stride, padding):
    top, bottom, left, right = padding
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    (kh, kw), (sh, sw) = kernel, stride
    ho = (x.shape[2] + top + bottom - kh) // sh + 1
    wo = (x.shape[3] + left + right - kw) // sw + 1
    y = np.zeros(x.shape[:2] + (ho, wo))
    for i in range(ho):
        for j in range(wo):
            window = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = window.max(axis=(2, 3)) if kind == "max" else window.sum(axis=(2, 3)) / (kh * kw)
    return y


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel, stride, padding", [
    ([2, 2], None, [0, 0, 0, 0]),
    ([3, 2], [2, 1], [2, 0, 1, 1]),  # padding larger than half the kernel, asymmetric
])
def test_pools_pad_with_minus_infinity_or_zero(kind, kernel, stride, padding):
    x = rng.normal(size=(2, 3, 5, 6)) - 5.0  # negative, so −∞ vs 0 padding would show in max
    params = {"kernel_size": kernel, "padding": padding} | ({"stride": stride} if stride else {})
    y = run([layer(f"{kind}_pool2d", **params)], x)
    close(y, pool_reference(x, kind, kernel, stride or kernel, padding))


# ----------------------------------------------------------------------------- sequence and shape layers


def test_lstm_matches_the_gate_equations():
    n_in, hidden, steps = 3, 4, 5
    w_ih, w_hh = rng.normal(size=(4 * hidden, n_in)), rng.normal(size=(4 * hidden, hidden))
    b_ih, b_hh = rng.normal(size=4 * hidden), rng.normal(size=4 * hidden)
    x = rng.normal(size=(2, steps, n_in))
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected = np.zeros((2, steps, hidden))
    for e in range(2):
        h, c = np.zeros(hidden), np.zeros(hidden)
        for t in range(steps):
            z = w_ih @ x[e, t] + b_ih + w_hh @ h + b_hh
            i, f, g, o = (z[k * hidden:(k + 1) * hidden] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            expected[e, t] = h
    params = {"layers.0.weight_ih_l0": w_ih, "layers.0.weight_hh_l0": w_hh,
              "layers.0.bias_ih_l0": b_ih, "layers.0.bias_hh_l0": b_hh}
    close(run([layer("lstm", input_size=n_in, hidden_size=hidden)], x, params), expected)
    close(run([layer("lstm", input_size=n_in, hidden_size=hidden), layer("last_step")], x, params),
          expected[:, -1])


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_over_the_last_axes(affine):
    x = rng.normal(size=(3, 2, 4, 5)) * 3 + 1
    mu = x.mean(axis=(2, 3), keepdims=True)
    var = ((x - mu) ** 2).mean(axis=(2, 3), keepdims=True)
    expected = (x - mu) / np.sqrt(var + 1e-3)
    params = {}
    if affine:
        w, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
        expected = expected * w + b
        params = {"layers.0.weight": w, "layers.0.bias": b}
    spec = layer("layer_norm", normalized_shape=[4, 5], eps=1e-3, elementwise_affine=affine)
    close(run([spec], x, params), expected)


def test_embedding_looks_up_rows_and_reports_indices_out_of_range():
    w = rng.normal(size=(7, 3))
    idx = np.array([[0, 6, 2], [3, 3, 1]])
    close(run([layer("embedding", num_embeddings=7, embedding_dim=3)], idx, {"layers.0.weight": w}), w[idx])
    for bad in (7, -1):
        with pytest.raises(DiagramError) as e:
            run([layer("embedding", num_embeddings=7, embedding_dim=3)], np.array([[0, bad]]))
        assert e.value.code == "batch-index-range"


def test_flatten_is_row_major():
    x = rng.normal(size=(2, 3, 4, 5))
    close(run([layer("flatten")], x), x.reshape(2, 60))


def test_state_dict_keys_are_the_canonical_paths():
    arch = Architecture(layers=(layer("linear", in_features=4, out_features=4), layer("lstm", input_size=4,
                                                                                      hidden_size=2)),
                        inputs=((layer("relu"), layer("linear", in_features=3, out_features=4, bias=False)),
                                (layer("linear", in_features=4, out_features=4),)),
                        combine="add")
    assert list(build_module(arch).state_dict()) == [
        "inputs.0.1.weight", "inputs.1.0.weight", "inputs.1.0.bias", "layers.0.weight", "layers.0.bias",
        "layers.1.weight_ih_l0", "layers.1.weight_hh_l0", "layers.1.bias_ih_l0", "layers.1.bias_hh_l0"]


# ----------------------------------------------------------------------------- combine steps


def product(combine: str, inputs, layers=()):
    return build_module(Architecture(tuple(layers), tuple(tuple(b) for b in inputs), combine), F64).eval()


def test_combine_concat_add_prepend():
    a, b = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    seq = rng.normal(size=(2, 4, 3))
    with torch.no_grad():
        t = lambda v: torch.from_numpy(v)  # noqa: E731
        close(product("concat", [[], []])(t(a), t(b)).numpy(), np.concatenate([a, b], axis=1))
        close(product("add", [[], []])(t(a), t(b)).numpy(), a + b)
        out = product("prepend", [[], []])(t(a), t(seq)).numpy()
    assert out.shape == (2, 5, 3)
    close(out[:, 0], a)
    close(out[:, 1:], seq)


def test_branches_run_on_their_own_input_before_the_combine():
    w = rng.normal(size=(3, 2))
    m = product("concat", [[layer("linear", in_features=2, out_features=3, bias=False)], [layer("relu")]])
    m.load_state_dict({"inputs.0.0.weight": torch.from_numpy(w)})
    a, b = rng.normal(size=(4, 2)), rng.normal(size=(4, 5))
    with torch.no_grad():
        out = m(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    close(out, np.concatenate([a @ w.T, np.maximum(b, 0)], axis=1))


# ----------------------------------------------------------------------------- function ops


def function_terms(op: str, source_shape, target_shape, **params):
    """The value of f(x) for a function arrow f: X → Y, through a compiled diagram's evaluate()."""
    d = Diagram("f")
    D = d.data("D")
    X = d.tensor("X", source_shape)
    Y = d.tensor("Y", target_shape)
    d.data_arrow("x", D, X, "x")
    d.data_arrow("y", D, Y, "y")
    d.function("f", X, Y, op, **params)
    d.equation("f(x)", "y")
    m = compile(d, dtype=F64)
    x = rng.normal(size=(3, *source_shape))
    y = np.zeros((3, *target_shape))
    return x, m.evaluate({"x": x, "y": y}).terms["f(x)"].numpy()


@pytest.mark.parametrize("op, shapes, params, reference", [
    ("identity", ([4], [4]), {}, lambda x: x),
    ("scale", ([2, 3], [2, 3]), {"factor": -2.5}, lambda x: -2.5 * x),
    ("flatten", ([2, 3], [6]), {}, lambda x: x.reshape(3, 6)),
    ("reshape", ([6], [3, 2]), {"shape": [3, 2]}, lambda x: x.reshape(3, 3, 2)),
    ("softmax", ([4], [4]), {}, lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    ("log_softmax", ([4], [4]), {}, lambda x: np.log(np.exp(x) / np.exp(x).sum(-1, keepdims=True))),
    ("normalize", ([2, 3], [2, 3]), {}, lambda x: x / np.sqrt((x ** 2).sum(-1, keepdims=True))),
])
def test_unary_function_ops(op, shapes, params, reference):
    x, y = function_terms(op, *shapes, **params)
    close(y, reference(x))


def test_normalize_uses_eps_for_tiny_vectors():
    d = Diagram("n")
    D = d.data("D")
    X, Y = d.tensor("X", [2]), d.tensor("Y", [2])
    d.data_arrow("x", D, X, "x")
    d.data_arrow("y", D, Y, "y")
    d.function("f", X, Y, "normalize", eps=0.5)
    d.equation("f(x)", "y")
    x = np.array([[0.3, 0.0], [3.0, 4.0]])
    out = compile(d, dtype=F64).evaluate({"x": x, "y": x}).terms["f(x)"].numpy()
    close(out, np.array([[0.6, 0.0], [0.6, 0.8]]))


@pytest.mark.parametrize("op", ["add", "concat"])
def test_product_function_ops(op):
    d = Diagram("p")
    D = d.data("D")
    A, B = d.tensor("A", [2, 3]), d.tensor("B", [2, 3])
    Y = d.tensor("Y", [2, 6] if op == "concat" else [2, 3])
    d.data_arrow("a", D, A, "a")
    d.data_arrow("b", D, B, "b")
    d.data_arrow("y", D, Y, "y")
    d.function("f", [A, B], Y, op)
    d.equation("f(a, b)", "y")
    a, b = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 3))
    out = compile(d, dtype=F64).evaluate({"a": a, "b": b, "y": np.zeros((4, *d.objects["Y"].shape))})
    close(out.terms["f(a, b)"].numpy(), np.concatenate([a, b], axis=-1) if op == "concat" else a + b)


def test_categorical_function_ops():
    d = Diagram("c")
    D = d.data("D")
    X = d.tensor("X", [3])
    C = d.categorical("C", classes=3)
    P = d.tensor("P", [3])
    d.data_arrow("x", D, X, "x")
    d.data_arrow("label", D, C, "label")
    d.model("m", X, C, [layer("identity")])
    d.function("hot", C, P, "one_hot")
    d.function("soft", C, P, "softmax")
    m = compile(d, dtype=F64)
    x = rng.normal(size=(4, 3))
    label = np.array([2, 0, 1, 2])
    terms = m.evaluate({"x": x, "label": label}).terms
    close(terms["hot(label)"].numpy(), np.eye(3)[label])
    close(terms["soft(m(x))"].numpy(), np.exp(x) / np.exp(x).sum(-1, keepdims=True))
    assert terms["hot(label)"].dtype == F64


# ----------------------------------------------------------------------------- default initialisation


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("in_features,out_features,bias", [(1, 1, True), (4, 4, True), (64, 10, False),
                                                           (7, 300, True), (1000, 3, True)])
def test_linear_layers_draw_the_numbers_nn_linear_draws(dtype, in_features, out_features, bias):
    """The backend's linear initialises itself without kaiming_uniform_; the same seed gives nn.Linear's weights."""
    from torch import nn
    torch.manual_seed(in_features * 1000 + out_features)
    ours = build_module([layer("linear", in_features=in_features, out_features=out_features, bias=bias)], dtype)
    after_ours = torch.rand(3)
    torch.manual_seed(in_features * 1000 + out_features)
    theirs = nn.Linear(in_features, out_features, bias=bias, dtype=dtype)
    after_theirs = torch.rand(3)
    assert torch.equal(ours.layers[0].weight, theirs.weight)
    assert (ours.layers[0].bias is None) == (theirs.bias is None)
    if bias:
        assert torch.equal(ours.layers[0].bias, theirs.bias)
    assert torch.equal(after_ours, after_theirs)  # the generator advanced by as much
