"""The NumPy reference evaluator against values worked out by hand from SPEC.md (and SciPy for convolution)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from diagrammatic_learning import Diagram, DiagramError, layer, load
from diagrammatic_learning.diagram import Architecture, Distance
from diagrammatic_learning.reference import evaluate
from diagrammatic_learning.tensorfiles import write_safetensors


def one_model(in_shape, out_shape, layers, distance=None, in_dtype="float64"):
    """D → X (column x) → model f → Y ← (column y) D: one equation f(x) = y."""
    d = Diagram("t")
    d.data("D")
    d.tensor("X", in_shape, in_dtype)
    d.tensor("Y", out_shape, "float64", distance=distance)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("f", "X", "Y", list(layers))
    return load(d)


def value_of(d, weights, x, y=None):
    """The value of term f(x) and the equation's value, for a one_model diagram."""
    x = np.asarray(x)
    out_shape = d.objects["Y"].shape
    y = np.zeros((x.shape[0], *out_shape)) if y is None else np.asarray(y, dtype=np.float64)
    r = evaluate(d, weights, {"x": x, "y": y})
    return r.terms["f(x)"], r.equations["f(x) = y"]


# ----------------------------------------------------------------------------- layers


def test_linear_and_mse():
    d = one_model([2], [2], [layer("linear", in_features=2, out_features=2)])
    w = {"f.layers.0.weight": np.array([[1.0, 2.0], [3.0, 4.0]]), "f.layers.0.bias": np.array([0.5, -1.0])}
    out, mse = value_of(d, w, [[1.0, 1.0]])
    assert out.tolist() == [[3.5, 6.0]]
    assert mse == (3.5 ** 2 + 6.0 ** 2) / 2


def test_linear_applies_to_the_last_axis_without_bias():
    d = one_model([3, 2], [3, 1], [layer("linear", in_features=2, out_features=1, bias=False)])
    x = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    out, _ = value_of(d, {"f.layers.0.weight": np.array([[10.0, 1.0]])}, x)
    assert out.tolist() == [[[12.0], [34.0], [56.0]]]


def test_conv2d_matches_scipy_cross_correlation():
    from scipy.signal import correlate2d

    rng = np.random.default_rng(1)
    d = one_model([2, 5, 6], [3, 3, 4], [layer("conv2d", in_channels=2, out_channels=3, kernel_size=[3, 3])])
    w = {"f.layers.0.weight": rng.standard_normal((3, 2, 3, 3)), "f.layers.0.bias": rng.standard_normal(3)}
    x = rng.standard_normal((2, 2, 5, 6))
    out, _ = value_of(d, w, x)
    for b in range(2):
        for o in range(3):
            want = sum(correlate2d(x[b, c], w["f.layers.0.weight"][o, c], mode="valid") for c in range(2))
            np.testing.assert_allclose(out[b, o], want + w["f.layers.0.bias"][o], rtol=1e-13, atol=1e-13)


def test_conv2d_dilation_and_asymmetric_padding_by_hand():
    # x̃ rows: [0 1 2 3], [0 4 5 6], [0 7 8 9] (one zero column on the left); kernel [1, 10] two columns apart
    d = one_model([1, 3, 3], [1, 3, 2], [layer("conv2d", in_channels=1, out_channels=1, kernel_size=[1, 2],
                                               dilation=[1, 2], padding=[0, 0, 1, 0], bias=False)])
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    out, _ = value_of(d, {"f.layers.0.weight": np.array([[[[1.0, 10.0]]]])}, x)
    assert out[0, 0].tolist() == [[20.0, 31.0], [50.0, 64.0], [80.0, 97.0]]


def test_conv2d_stride_and_groups():
    d = one_model([2, 4, 4], [2, 2, 2], [layer("conv2d", in_channels=2, out_channels=2, kernel_size=[1, 1],
                                               stride=[2, 2], groups=2, bias=False)])
    x = np.arange(32.0).reshape(1, 2, 4, 4)
    out, _ = value_of(d, {"f.layers.0.weight": np.array([2.0, -1.0]).reshape(2, 1, 1, 1)}, x)
    assert out[0, 0].tolist() == (2 * x[0, 0, ::2, ::2]).tolist()   # channel 0 sees only input channel 0
    assert out[0, 1].tolist() == (-x[0, 1, ::2, ::2]).tolist()


def test_max_pool_pads_with_minus_infinity():
    d = one_model([1, 2, 2], [1, 2, 2], [layer("max_pool2d", kernel_size=[2, 2], stride=[1, 1],
                                               padding=[1, 0, 1, 0])])
    out, _ = value_of(d, {}, np.full((1, 1, 2, 2), -5.0))
    assert out.tolist() == [[[[-5.0, -5.0], [-5.0, -5.0]]]]


def test_avg_pool_counts_the_padding():
    d = one_model([1, 2, 2], [1, 2, 2], [layer("avg_pool2d", kernel_size=[2, 2], padding=[1, 1, 1, 1])])
    out, _ = value_of(d, {}, np.ones((1, 1, 2, 2)))
    assert out.tolist() == [[[[0.25, 0.25], [0.25, 0.25]]]]


def test_embedding_rows_and_index_range():
    d = one_model([3], [3, 2], [layer("embedding", num_embeddings=4, embedding_dim=2)], in_dtype="int64")
    table = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    out, _ = value_of(d, {"f.layers.0.weight": table}, np.array([[3, 0, 3]]))
    assert out.tolist() == [[[6.0, 7.0], [0.0, 1.0], [6.0, 7.0]]]
    with pytest.raises(DiagramError) as info:
        value_of(d, {"f.layers.0.weight": table}, np.array([[1, 4, 0]]))
    assert (info.value.code, info.value.pointer) == ("batch-index-range", "batch#x")


def test_layer_norm_over_two_axes_without_affine():
    d = one_model([2, 2], [2, 2], [layer("layer_norm", normalized_shape=[2, 2], elementwise_affine=False, eps=0.5)])
    out, _ = value_of(d, {}, np.array([[[1.0, 2.0], [3.0, 6.0]]]))
    # mean 3, biased variance (4 + 1 + 0 + 9) / 4 = 3.5
    want = (np.array([[1.0, 2.0], [3.0, 6.0]]) - 3.0) / math.sqrt(3.5 + 0.5)
    assert np.allclose(out[0], want, rtol=1e-15, atol=0)


def test_layer_norm_affine_on_the_last_axis():
    d = one_model([2, 3], [2, 3], [layer("layer_norm", normalized_shape=[3])])
    w = {"f.layers.0.weight": np.array([1.0, 2.0, 3.0]), "f.layers.0.bias": np.array([0.0, 0.0, 1.0])}
    out, _ = value_of(d, w, np.array([[[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]]))
    s = math.sqrt(2 / 3 + 1e-5)
    assert np.allclose(out[0, 0], [-1 / s, 0.0, 3 / s + 1], rtol=1e-15)
    assert out[0, 1].tolist() == [0.0, 0.0, 1.0]   # constant row: zero deviation, only the bias


def sig(v):
    return 1 / (1 + math.exp(-v))


def test_lstm_two_steps_by_hand():
    d = one_model([2, 1], [2, 1], [layer("lstm", input_size=1, hidden_size=1)])
    w_ih, w_hh = [0.5, -0.3, 0.8, 0.2], [0.1, 0.4, -0.6, 0.9]
    b_ih, b_hh = [0.05, 0.1, -0.2, 0.3], [-0.1, 0.2, 0.15, -0.05]
    w = {"f.layers.0.weight_ih_l0": np.array(w_ih).reshape(4, 1),
         "f.layers.0.weight_hh_l0": np.array(w_hh).reshape(4, 1),
         "f.layers.0.bias_ih_l0": np.array(b_ih), "f.layers.0.bias_hh_l0": np.array(b_hh)}
    xs = [1.5, -0.7]
    h = c = 0.0
    want = []
    for x in xs:
        z = [w_ih[k] * x + b_ih[k] + w_hh[k] * h + b_hh[k] for k in range(4)]
        c = sig(z[1]) * c + sig(z[0]) * math.tanh(z[2])
        h = sig(z[3]) * math.tanh(c)
        want.append(h)
    out, _ = value_of(d, w, np.array(xs).reshape(1, 2, 1))
    assert np.allclose(out[0, :, 0], want, rtol=1e-14, atol=0)


def test_last_step_flatten_and_dropout():
    d = one_model([3, 2], [2], [layer("dropout", p=0.9), layer("last_step")])
    x = np.arange(12.0).reshape(2, 3, 2)
    out, _ = value_of(d, {}, x)
    assert out.tolist() == [[4.0, 5.0], [10.0, 11.0]]
    d = one_model([2, 2], [4], [layer("flatten")])
    out, _ = value_of(d, {}, np.array([[[1.0, 2.0], [3.0, 4.0]]]))
    assert out.tolist() == [[1.0, 2.0, 3.0, 4.0]]


@pytest.mark.parametrize("type_, params, x, want", [
    ("relu", {}, [-1.0, 0.0, 2.0], [0.0, 0.0, 2.0]),
    ("leaky_relu", {}, [-2.0, 3.0], [-0.02, 3.0]),
    ("leaky_relu", {"negative_slope": 0.5}, [-2.0, 3.0], [-1.0, 3.0]),
    ("elu", {}, [-1.0, 2.0], [math.exp(-1) - 1, 2.0]),
    ("elu", {"alpha": 2.0}, [-1.0, 800.0], [2 * (math.exp(-1) - 1), 800.0]),
    ("tanh", {}, [0.5], [math.tanh(0.5)]),
    ("sigmoid", {}, [-800.0, 0.0, 800.0], [0.0, 0.5, 1.0]),
    ("gelu", {}, [1.0, -1.0, 0.0], [0.8413447460685429, -0.15865525393145707, 0.0]),
    ("identity", {}, [7.0], [7.0]),
    # no threshold: log(1 + e^21) is 21 + 7.58e-10, not 21
    ("softplus", {}, [21.0, 30.0, -30.0, 0.0], [21 + math.log1p(math.exp(-21)), 30 + math.log1p(math.exp(-30)),
                                               math.log1p(math.exp(-30)), math.log(2)]),
    ("softmax", {}, [math.log(1.0), math.log(3.0)], [0.25, 0.75]),
    ("log_softmax", {}, [80.0, -80.0], [-math.log1p(math.exp(-160)), -160 - math.log1p(math.exp(-160))]),
])
def test_activations(type_, params, x, want):
    d = one_model([len(x)], [len(x)], [layer(type_, **params)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        out, _ = value_of(d, {}, np.array([x]))
    assert np.allclose(out[0], want, rtol=1e-15, atol=1e-60)
    if type_ == "softplus":
        assert out[0, 0] > 21.0


def test_product_model_combines():
    d = Diagram("p")
    d.data("D")
    d.tensor("A", [2], "float64")
    d.tensor("S", [3, 2], "float64")
    d.tensor("Y", [4, 2], "float64")
    d.tensor("Z", [2], "float64")
    d.data_arrow("a", "D", "A", "a")
    d.data_arrow("s", "D", "S", "s")
    d.data_arrow("y", "D", "Y", "y")
    d.data_arrow("z", "D", "Z", "z")
    d.model("pre", ["A", "S"], "Y", Architecture((), None, "prepend"))
    d.model("sum", ["A", "A"], "Z", Architecture((), None, "add"))
    d = load(d)
    batch = {"a": np.array([[1.0, 2.0]]), "s": np.arange(6.0).reshape(1, 3, 2), "y": np.zeros((1, 4, 2)),
             "z": np.zeros((1, 2))}
    r = evaluate(d, {}, batch)
    assert r.terms["pre(a, s)"].tolist() == [[[1.0, 2.0], [0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]]
    assert r.terms["sum(a, a)"].tolist() == [[2.0, 4.0]]


# ----------------------------------------------------------------------------- distances


def two_terms(distance, p, t):
    """f(x) = y for a linear identity f, so the lhs value is p itself."""
    n = np.asarray(p).shape[-1]
    d = one_model([n], [n], [layer("identity")], distance=distance)
    return evaluate(d, {}, {"x": np.array(p, dtype=np.float64), "y": np.array(t, dtype=np.float64)}).equations[
        "f(x) = y"]


def test_tensor_distances_by_hand():
    assert two_terms("l1", [[1.0, -1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 4.0]]) == (1.0 + 2.0) / 2
    assert math.isclose(two_terms(Distance("huber", {"delta": 0.5}), [[0.2, 1.0]], [[0.0, 0.0]]),
                        (0.02 + 0.5 * (1.0 - 0.25)) / 2, rel_tol=1e-15)
    assert math.isclose(two_terms("cosine", [[1.0, 0.0]], [[1.0, 1.0]]), 1 - 1 / math.sqrt(2), rel_tol=1e-15)
    assert two_terms("cosine", [[0.0, 0.0]], [[1.0, 1.0]]) == 1.0   # eps guards the zero vector
    assert math.isclose(two_terms("bce_logits", [[0.0, 80.0]], [[1.0, 0.0]]),
                        (math.log(2) + 80 + math.log1p(math.exp(-80))) / 2, rel_tol=1e-15)


def classifier(distance=None, encoding=None, target_classes=None):
    d = Diagram("c")
    d.data("D")
    d.tensor("X", [2], "float64")
    d.categorical("Y", 2, distance=distance)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y", encoding=encoding)
    d.model("f", "X", "Y", [layer("identity")])
    return load(d)


def test_cross_entropy_with_label_smoothing():
    d = classifier(Distance("cross_entropy", {"label_smoothing": 0.2}))
    # logits [log 3, 0] → p = [0.75, 0.25]; target class 1 → q' = [0.1, 0.9]
    v = evaluate(d, {}, {"x": np.array([[math.log(3), 0.0]]), "y": np.array([1])}).equations["f(x) = y"]
    assert math.isclose(v, -(0.1 * math.log(0.75) + 0.9 * math.log(0.25)), rel_tol=1e-15)


def test_cross_entropy_of_large_logits_and_probabilities():
    d = classifier()
    v = evaluate(d, {}, {"x": np.array([[80.0, -80.0], [0.0, 0.0]]), "y": np.array([1, 0])}).equations["f(x) = y"]
    assert math.isclose(v, (160 + math.log1p(math.exp(-160)) + math.log(2)) / 2, rel_tol=1e-15)
    d = classifier(encoding="probabilities")
    v = evaluate(d, {}, {"x": np.array([[math.log(3), 0.0]]), "y": np.array([[0.5, 0.5]])}).equations["f(x) = y"]
    assert math.isclose(v, -(0.5 * math.log(0.75) + 0.5 * math.log(0.25)), rel_tol=1e-15)


def test_kl_div_with_temperature_and_zero_probabilities():
    d = classifier(Distance("kl_div", {"temperature": 2.0}), encoding="probabilities")
    # p/τ = [1, 0]; q = [1, 0]: τ² · (1 · (log 1 − log_softmax_0)) and 0 · log 0 = 0
    v = evaluate(d, {}, {"x": np.array([[2.0, 0.0]]), "y": np.array([[1.0, 0.0]])}).equations["f(x) = y"]
    assert math.isclose(v, 4 * math.log1p(math.exp(-1)), rel_tol=1e-15)


def test_kl_div_of_logits_target_uses_softmax_over_temperature():
    d = Diagram("k")
    d.data("D")
    d.tensor("X", [2], "float64")
    d.categorical("Y", 2, distance=Distance("kl_div", {"temperature": 2.0}))
    d.data_arrow("x", "D", "X", "x")
    d.model("s", "X", "Y", [layer("identity")])
    d.model("t", "X", "Y", [layer("linear", in_features=2, out_features=2, bias=False)], trainable=False)
    d = load(d)
    w = {"t.layers.0.weight": np.array([[2.0, 0.0], [0.0, 2.0]])}
    v = evaluate(d, w, {"x": np.array([[math.log(3), 0.0]])}).equations["s(x) = t(x)"]
    # teacher logits 2x, over τ=2: q = softmax(x) = [0.75, 0.25]; student p/τ = x/2: softmax ∝ [√3, 1]
    ps = [math.sqrt(3) / (math.sqrt(3) + 1), 1 / (math.sqrt(3) + 1)]
    want = 4 * (0.75 * math.log(0.75 / ps[0]) + 0.25 * math.log(0.25 / ps[1]))
    assert math.isclose(v, want, rel_tol=1e-14)


def test_categorical_with_positions_averages_over_positions():
    d = Diagram("pos")
    d.data("D")
    d.tensor("X", [3, 2], "float64")
    d.categorical("Y", 2, shape=[3])
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("f", "X", "Y", [layer("identity")])
    d = load(d)
    x = np.array([[[0.0, 0.0], [math.log(3), 0.0], [0.0, math.log(3)]]])
    v = evaluate(d, {}, {"x": x, "y": np.array([[0, 0, 0]])}).equations["f(x) = y"]
    assert math.isclose(v, (math.log(2) - math.log(0.75) - math.log(0.25)) / 3, rel_tol=1e-15)


# ----------------------------------------------------------------------------- functions


def function_diagram(op, in_shape, out_shape, **params):
    d = Diagram("fn")
    d.data("D")
    d.tensor("X", in_shape, "float64")
    d.tensor("Y", out_shape, "float64")
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("m", "X", "X", [layer("identity")])
    d.function("g", "X", "Y", op, **params)
    return load(d)


def term(d, text, x, y_shape):
    batch = {"x": np.asarray(x, dtype=np.float64), "y": np.zeros((len(x), *y_shape))}
    return evaluate(d, {}, batch).terms[text]


def test_function_ops():
    d = function_diagram("normalize", [2], [2])
    assert term(d, "g(m(x))", [[3.0, 4.0], [0.0, 0.0]], [2]).tolist() == [[0.6, 0.8], [0.0, 0.0]]
    d = function_diagram("scale", [2], [2], factor=-2.5)
    assert term(d, "g(m(x))", [[1.0, 2.0]], [2]).tolist() == [[-2.5, -5.0]]
    d = function_diagram("reshape", [2, 3], [3, 2], shape=[3, 2])
    assert term(d, "g(m(x))", [[[1, 2, 3], [4, 5, 6]]], [3, 2]).tolist() == [[[1, 2], [3, 4], [5, 6]]]
    d = function_diagram("softmax", [2], [2])
    assert np.allclose(term(d, "g(m(x))", [[math.log(3), 0.0]], [2]), [[0.75, 0.25]], rtol=1e-15)


def test_one_hot_and_concat():
    d = Diagram("oh")
    d.data("D")
    d.categorical("C", 3)
    d.tensor("O", [3], "float64")
    d.tensor("A", [1], "float64")
    d.tensor("Y", [4], "float64")
    d.data_arrow("c", "D", "C", "c")
    d.data_arrow("a", "D", "A", "a")
    d.data_arrow("y", "D", "Y", "y")
    d.function("oh", "C", "O", "one_hot")
    d.function("cat", ["O", "A"], "Y", "concat")
    d.model("m", "Y", "Y", [layer("identity")])
    d = load(d)
    r = evaluate(d, {}, {"c": np.array([2, 0]), "a": np.array([[5.0], [6.0]]), "y": np.zeros((2, 4))})
    assert r.terms["cat(oh(c), a)"].tolist() == [[0.0, 0.0, 1.0, 5.0], [1.0, 0.0, 0.0, 6.0]]


# ----------------------------------------------------------------------------- equations, loss, inputs


def distillation():
    d = Diagram("distill")
    d.data("D")
    d.tensor("X", [2], "float64")
    d.categorical("Y", 2)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("student", "X", "Y", [layer("identity")])
    d.model("teacher", "X", "Y", [layer("linear", in_features=2, out_features=2, bias=False)], trainable=False)
    d.equation("student(x)", "teacher(x)", Distance("kl_div", {"temperature": 2.0}), weight=0.25, name="distill")
    return load(d)


def test_total_is_the_weighted_sum_in_order_and_frozen_pairs_give_no_equation():
    d = distillation()
    w = {"teacher.layers.0.weight": np.eye(2)}
    batch = {"x": np.array([[1.0, 0.0], [0.0, 2.0]]), "y": np.array([1, 1])}
    r = evaluate(d, w, batch)
    assert list(r.equations) == ["student(x) = y", "distill"]   # teacher(x) = y: both constant, no equation
    ce = (-math.log(1 / (1 + math.e)) - math.log(math.exp(2) / (1 + math.exp(2)))) / 2
    assert math.isclose(r.equations["student(x) = y"], ce, rel_tol=1e-15)
    assert abs(r.equations["distill"]) < 1e-15   # identical distributions, up to rounding
    assert r.total == r.equations["student(x) = y"] + 0.25 * r.equations["distill"]


def test_autoencoder_cycle_evaluates_each_subterm_once_through_externals():
    d = Diagram("ae")
    d.data("D")
    d.tensor("X", [2], "float64")
    d.tensor("Z", [1], "float64")
    d.data_arrow("x", "D", "X", "x")
    d.model("enc", "X", "Z", external=True)
    d.model("dec", "Z", "X", [layer("linear", in_features=1, out_features=2, bias=False)])
    d.equation("dec(enc(dec(enc(x))))", "x", weight=2.0, name="twice")
    d = load(d)
    calls = []

    def enc(x):
        calls.append(x.shape)
        return x[:, :1] + x[:, 1:]

    w = {"dec.layers.0.weight": np.array([[1.0], [0.0]])}
    r = evaluate(d, w, {"x": np.array([[1.0, 2.0]])}, externals={"enc": enc})
    assert list(r.equations) == ["dec(enc(x)) = x", "twice"]
    assert r.terms["dec(enc(x))"].tolist() == [[3.0, 0.0]]
    assert r.terms["dec(enc(dec(enc(x))))"].tolist() == [[3.0, 0.0]]
    assert r.equations["dec(enc(x)) = x"] == (4.0 + 4.0) / 2
    assert len(calls) == 2   # enc(x) and enc(dec(enc(x))), each once although both equations use enc(x)
    with pytest.raises(DiagramError) as info:
        evaluate(d, w, {"x": np.array([[1.0, 2.0]])})
    assert (info.value.code, info.value.pointer) == ("external-unbound", "/arrows/1")
    with pytest.raises(DiagramError) as info:
        evaluate(d, w, {"x": np.array([[1.0, 2.0]])}, externals={"enc": lambda x: x})
    assert info.value.code == "external-shape"


def test_several_data_objects_with_their_own_batch_sizes():
    d = Diagram("two")
    d.data("L")
    d.data("U")
    d.tensor("X", [1], "float64")
    d.data_arrow("xl", "L", "X", "xl")
    d.data_arrow("xu", "U", "X", "xu")
    d.model("f", "X", "X", [layer("identity")])
    d = load(d)
    r = evaluate(d, {}, {"xl": np.array([[1.0], [2.0]]), "xu": np.array([[3.0], [4.0], [5.0]])})
    assert list(r.equations) == ["f(xl) = xl", "f(xu) = xu"]
    assert r.terms["f(xu)"].shape == (3, 1)


def test_bad_weights_and_batches_raise_diagram_errors_with_codes(tmp_path):
    d = distillation()
    good_batch = {"x": np.zeros((2, 2)), "y": np.array([0, 1])}
    with pytest.raises(DiagramError) as info:
        evaluate(d, {}, good_batch)
    assert (info.value.code, info.value.pointer) == ("weights-missing-key", "weights#teacher.layers.0.weight")
    w = {"teacher.layers.0.weight": np.eye(2)}
    with pytest.raises(DiagramError) as info:
        evaluate(d, w, {"x": np.zeros((2, 2))})
    assert (info.value.code, info.value.pointer) == ("batch-missing-column", "batch#y")
    with pytest.raises(DiagramError) as info:
        evaluate(d, w, {"x": np.zeros((2, 2)), "y": np.array([0, 2])})
    assert info.value.code == "batch-index-range"
    path = tmp_path / "w.safetensors"
    write_safetensors({"teacher.layers.0.weight": np.eye(3)}, path)
    with pytest.raises(DiagramError) as info:
        evaluate(d, path, good_batch)
    assert (info.value.code, info.value.pointer) == ("weights-shape", f"{path}#teacher.layers.0.weight")
    path.write_bytes(b"not safetensors")
    with pytest.raises(DiagramError) as info:
        evaluate(d, path, good_batch)
    assert (info.value.code, info.value.pointer) == ("weights-file", str(path))
