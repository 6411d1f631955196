"""Writes the conformance suite: conformance/cases/<case>/ and the weights/batch cases under conformance/invalid/.

A valid case is a `diagram.json`, a `weights.safetensors`, a `batch.safetensors`
and an `expected.json` holding every equation's value and the total, computed
by the NumPy reference evaluator in float64. A case with trainable parameters
also has `gradients.safetensors`: the gradient of the total loss with respect
to each trainable parameter (SPEC §9.1), computed by PyTorch's autograd in
float64 in evaluation mode and confirmed, before it is written, by central
finite differences of the reference evaluator (relative error at most
FD_TOLERANCE per parameter). An invalid file case is a valid
diagram with one bad weights or batch file and the error code it must give.
Run from anywhere:

    python conformance/generate.py [OUTPUT_FOLDER]

Deterministic: every case draws from its own NumPy generator seeded by the
case's name, and files are written with a fixed layout, so running it again
rewrites the same bytes, except the gradients' last bits, which depend on the
CPU's floating point (tests/test_conformance.py compares those within a
tolerance, everything else byte for byte). The invalid
*diagram* cases come from make_invalid_diagrams.py.

Random floats are rounded to float32 values (stored as float64 unless a case
says otherwise), so a float32 backend only meets rounding in its own compute.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from diagrammatic_learning import Diagram, Distance, layer, load
from diagrammatic_learning.diagram import Architecture, CategoricalObject, DataArrow, TensorObject
from diagrammatic_learning.equations import equations
from diagrammatic_learning.io import dumps
from diagrammatic_learning.layers import parameter_shapes as layer_parameter_shapes
from diagrammatic_learning.reference import evaluate
from diagrammatic_learning.reference.finite_differences import finite_difference_gradients
from diagrammatic_learning.tensorfiles import parameter_shapes

ROOT = Path(__file__).resolve().parent
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
GRADIENT_TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
FD_TOLERANCE = 1e-6  # autograd against finite differences of the reference, per parameter, before writing
FLOOR = 1e-6  # the error measure's floor: ‖g − g*‖ / max(‖g*‖, FLOOR)

Column = Callable[[np.random.Generator, int], np.ndarray]


@dataclass
class Case:
    """One valid case: a diagram plus how to draw its weights and batch."""

    diagram: Diagram
    columns: dict[str, Column] = field(default_factory=dict)  # columns drawn specially; the rest by their type
    weight_scale: dict[str, float] = field(default_factory=dict)  # multiply these parameters after drawing
    batch_size: dict[str, int] = field(default_factory=dict)  # per data object; default 3
    float32_files: bool = False  # store weights and float columns as F32 instead of F64
    fixed_weights: dict[str, Any] = field(default_factory=dict)  # these parameters exactly, not drawn


# ----------------------------------------------------------------------------- drawing numbers


def f32(x: np.ndarray) -> np.ndarray:
    """Round to the nearest float32 value, kept as float64."""
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


def parameter_layers(d: Diagram) -> dict[str, str]:
    """Each parameter's canonical name → the type of the layer that owns it."""
    out = {}
    for arrow in d.model_arrows():
        arch = arrow.architecture
        for prefix, layers in [("layers", arch.layers)] + [(f"inputs.{k}", b) for k, b in enumerate(arch.inputs or ())]:
            for i, lay in enumerate(layers):
                for param in layer_parameter_shapes(lay):
                    out[f"{arrow.name}.{prefix}.{i}.{param}"] = lay.type
    return out


def draw_weights(rng: np.random.Generator, d: Diagram) -> dict[str, np.ndarray]:
    """Weights of a sensible size: matrices ~ N(0, 1/fan_in), nonzero biases, layer_norm gains near 1."""
    owners = parameter_layers(d)
    out = {}
    for name, shape in sorted(parameter_shapes(d).items()):
        z = rng.standard_normal(shape)
        kind, param = owners[name], name.rsplit(".", 1)[1]
        if kind == "layer_norm":
            z = 1.0 + 0.3 * z if param == "weight" else 0.3 * z
        elif param.startswith("bias"):
            z = 0.5 * z
        elif kind != "embedding":
            z = z / math.sqrt(math.prod(shape[1:]))
        out[name] = f32(z)
    return out


def draw_column(rng: np.random.Generator, d: Diagram, arrow: DataArrow, batch: int) -> np.ndarray:
    target = d.objects[arrow.target]
    if isinstance(target, TensorObject):
        if not target.is_float:
            return rng.integers(0, 5, size=(batch, *target.shape), dtype=np.int64)
        return f32(rng.standard_normal((batch, *target.shape)))
    assert isinstance(target, CategoricalObject)
    if (arrow.encoding or "index") == "index":
        return rng.integers(0, target.classes, size=(batch, *target.shape), dtype=np.int64)
    return probabilities(rng, (batch, *target.shape), target.classes)


def probabilities(rng: np.random.Generator, shape: tuple[int, ...], classes: int, zeros: bool = True) -> np.ndarray:
    """Rows summing to 1 (in float64), some entries exactly 0 so that 0 · log 0 is exercised."""
    p = rng.random((*shape, classes)) + 0.05
    if zeros:
        p[..., 0] = 0.0
    p = f32(p)
    return p / p.sum(axis=-1, keepdims=True)


def normal(*shape: int, scale: float = 1.0) -> Column:
    return lambda rng, b: f32(scale * rng.standard_normal((b, *shape)))


def fixed(rows: list) -> Column:
    """The same rows, repeated or cut to the batch size."""
    arr = f32(np.array(rows, dtype=np.float64))
    return lambda rng, b: np.resize(arr, (b, *arr.shape[1:]))


def uniform01(*shape: int) -> Column:
    """Targets in [0, 1] with exact 0s and 1s among them (for bce_logits)."""
    def draw(rng: np.random.Generator, b: int) -> np.ndarray:
        t = f32(rng.random((b, *shape)))
        t.reshape(-1)[::3] = 0.0
        t.reshape(-1)[1::5] = 1.0
        return t
    return draw


# ----------------------------------------------------------------------------- small builders


def new(name: str, description: str) -> Diagram:
    return Diagram(name, description)


def lin(i: int, o: int, **kw: Any):
    return layer("linear", in_features=i, out_features=o, **kw)


def single_layer(name: str, description: str, in_shape, out_shape, layers, in_dtype="float32",
                 **case: Any) -> Case:
    """D → X (column x); f: X → Y of the given layers; Y ← D (column y). One equation f(x) = y."""
    d = new(name, description)
    d.data("D")
    d.tensor("X", in_shape, in_dtype)
    d.tensor("Y", out_shape, "float64")
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("f", "X", "Y", list(layers))
    return Case(d, **case)


def classifier(name: str, description: str, n_in: int, classes: int, distance=None, encoding=None,
               logit_scale: float = 1.0, **case: Any) -> Case:
    d = new(name, description)
    d.data("D")
    d.tensor("X", [n_in])
    d.categorical("Y", classes, distance=distance)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y", encoding=encoding)
    d.model("f", "X", "Y", [lin(n_in, 8), layer("tanh"), lin(8, classes)])
    return Case(d, weight_scale={"f.layers.2.weight": logit_scale}, **case)


# ----------------------------------------------------------------------------- the valid cases


def layer_cases() -> dict[str, Case]:
    c: dict[str, Case] = {}
    c["layer-linear"] = single_layer("layer_linear", "One linear layer.", [5], [4], [lin(5, 4)])
    c["layer-linear-no-bias-on-sequence"] = single_layer(
        "layer_linear_seq", "A linear layer without bias acts on the last axis of [L, F].", [3, 5], [3, 2],
        [lin(5, 2, bias=False)])
    c["layer-conv2d"] = single_layer(
        "layer_conv2d", "A plain 3x3 convolution (cross-correlation).", [2, 5, 5], [3, 3, 3],
        [layer("conv2d", in_channels=2, out_channels=3, kernel_size=[3, 3])], float32_files=True)
    c["layer-conv2d-padding-stride-dilation-groups"] = single_layer(
        "layer_conv2d_hard", "Asymmetric padding [top 1, bottom 0, left 2, right 1], stride [2, 1], "
        "dilation [2, 1], 2 groups, a non-square kernel.", [4, 7, 6], [6, 3, 7],
        [layer("conv2d", in_channels=4, out_channels=6, kernel_size=[2, 3], stride=[2, 1],
               padding=[1, 0, 2, 1], dilation=[2, 1], groups=2)], batch_size={"D": 2})
    c["layer-max-pool2d"] = single_layer(
        "layer_max_pool", "Max pooling with asymmetric padding (padded with -inf) and a stride.", [2, 5, 6], [2, 3, 3],
        [layer("max_pool2d", kernel_size=[2, 3], stride=[2, 2], padding=[1, 0, 1, 1])],
        # mostly negative inputs, so that padding with 0 instead of -inf would change the maxima
        columns={"x": lambda rng, b: f32(-2.0 + rng.standard_normal((b, 2, 5, 6)))})
    c["layer-avg-pool2d"] = single_layer(
        "layer_avg_pool", "Average pooling: zero padding counts in the divisor kh*kw.", [2, 5, 6], [2, 3, 6],
        [layer("avg_pool2d", kernel_size=[3, 3], stride=[2, 1], padding=[1, 1, 0, 2])])
    c["layer-flatten"] = single_layer("layer_flatten", "Row-major flatten of [2, 2, 3].", [2, 2, 3], [12],
                                      [layer("flatten")])
    c["layer-embedding"] = single_layer(
        "layer_embedding", "An embedding table looked up by int64 indices.", [4], [4, 3],
        [layer("embedding", num_embeddings=7, embedding_dim=3)], in_dtype="int64",
        columns={"x": lambda rng, b: rng.integers(0, 7, size=(b, 4), dtype=np.int64)})
    c["layer-layer-norm"] = single_layer(
        "layer_layer_norm", "layer_norm over the last two axes, with gain and bias.", [3, 4], [3, 4],
        [layer("layer_norm", normalized_shape=[3, 4])])
    c["layer-layer-norm-no-affine"] = single_layer(
        "layer_layer_norm_plain", "layer_norm over the last axis without affine parameters, eps 1e-3.",
        [3, 4], [3, 4], [layer("layer_norm", normalized_shape=[4], eps=1e-3, elementwise_affine=False)])
    c["layer-lstm"] = single_layer(
        "layer_lstm", "A one-layer LSTM from zero state with nonzero biases; gates i, f, g, o.", [5, 3], [5, 4],
        [layer("lstm", input_size=3, hidden_size=4)],
        weight_scale={"f.layers.0.bias_ih_l0": 2.0, "f.layers.0.bias_hh_l0": 2.0})
    c["layer-last-step"] = single_layer("layer_last_step", "The last step of a sequence.", [4, 3], [3],
                                        [layer("last_step")])
    c["layer-dropout"] = single_layer("layer_dropout", "Dropout is the identity in evaluation.", [6], [6],
                                      [layer("dropout", p=0.5)])
    return c


ACTIVATIONS: dict[str, dict[str, Any]] = {
    "relu": {}, "tanh": {}, "sigmoid": {}, "gelu": {}, "softplus": {}, "identity": {},
    "leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 0.7}, "softmax": {}, "log_softmax": {},
}

# inputs that reach the hard parts: softplus above its usual threshold of 20, large magnitudes for sigmoid,
# elu and the softmaxes (±80), zeros
ACTIVATION_INPUTS = [[20.5, 21.0, 25.0, -21.0, 0.3, -0.3, 0.0, 3.0],
                     [80.0, -80.0, 1.5, -1.5, 22.0, -0.01, 0.01, -7.0],
                     [-2.5, 0.7, -0.2, 1.25, -40.0, 40.0, 5.0, 0.5]]
# softplus alone: values just above 20 dominate, so a threshold (softplus(x) = x for x > 20) shows in the loss
SOFTPLUS_INPUTS = [[20.5, 21.0, 22.0, 25.0, -21.0, 0.3, -0.3, 0.0],
                   [20.1, 23.0, 1.5, -1.5, 2.0, -0.01, 0.01, -7.0],
                   [21.5, 20.25, -0.2, 1.25, -20.5, 24.0, 5.0, 0.5]]


def activation_cases() -> dict[str, Case]:
    c = {}
    for name, params in ACTIVATIONS.items():
        c[f"activation-{name.replace('_', '-')}"] = single_layer(
            f"activation_{name}", f"The {name} activation alone, on inputs including large magnitudes.",
            [8], [8], [layer(name, **params)],
            columns={"x": fixed(SOFTPLUS_INPUTS if name == "softplus" else ACTIVATION_INPUTS),
                     "y": normal(8, scale=0.5)})
    c["activation-leaky-relu-and-elu-defaults"] = single_layer(
        "activation_defaults", "leaky_relu and elu with their default parameters.", [8], [8],
        [layer("leaky_relu"), layer("elu")], columns={"x": fixed(ACTIVATION_INPUTS)})
    return c


def chain_cases() -> dict[str, Case]:
    c = {}
    c["chain-cnn"] = single_layer(
        "chain_cnn", "conv, relu, max pool, grouped conv with asymmetric padding, leaky_relu, avg pool, flatten, "
        "layer_norm, linear, gelu, dropout, linear.", [3, 8, 8], [5],
        [layer("conv2d", in_channels=3, out_channels=4, kernel_size=[3, 3], padding=[1, 1, 1, 1]),
         layer("relu"),
         layer("max_pool2d", kernel_size=[2, 2]),
         layer("conv2d", in_channels=4, out_channels=4, kernel_size=[2, 2], padding=[0, 1, 0, 1], groups=2),
         layer("leaky_relu", negative_slope=0.1),
         layer("avg_pool2d", kernel_size=[2, 2], stride=[1, 1]),
         layer("flatten"),
         layer("layer_norm", normalized_shape=[36]),
         lin(36, 10), layer("gelu"), layer("dropout", p=0.2), lin(10, 5)], float32_files=True)
    c["chain-sequence"] = single_layer(
        "chain_sequence", "embedding, lstm, layer_norm, tanh, last_step, linear, elu, log_softmax.", [6], [3],
        [layer("embedding", num_embeddings=9, embedding_dim=4), layer("lstm", input_size=4, hidden_size=5),
         layer("layer_norm", normalized_shape=[5]), layer("tanh"), layer("last_step"), lin(5, 3), layer("elu"),
         layer("log_softmax")], in_dtype="int64",
        columns={"x": lambda rng, b: rng.integers(0, 9, size=(b, 6), dtype=np.int64)})
    d = new("chain_mlp", "An MLP through sigmoid, softplus, elu and identity into class logits.")
    d.data("D")
    d.tensor("X", [6])
    d.categorical("Y", 4)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("f", "X", "Y", [lin(6, 7), layer("sigmoid"), lin(7, 7), layer("softplus"), lin(7, 5),
                            layer("elu", alpha=0.5), lin(5, 4), layer("identity")])
    c["chain-mlp-activations"] = Case(d)
    return c


def tensor_distance_case(name: str, distance: Distance, shape=(4,), **case: Any) -> Case:
    d = new(name.replace("-", "_"), f"The {distance.name} distance {dict(distance.params) or ''}".strip() + ".")
    d.data("D")
    d.tensor("X", [5])
    d.tensor("Y", list(shape), distance=distance)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    n = math.prod(shape)
    layers = [lin(5, n)]
    if len(shape) > 1:
        d.tensor("H", [n])
        d.model("f", "X", "H", layers)
        d.function("r", "H", "Y", "reshape", shape=list(shape))
    else:
        d.model("f", "X", "Y", layers)
    return Case(d, **case)


def distance_cases() -> dict[str, Case]:
    c = {}
    c["distance-l1"] = tensor_distance_case("distance-l1", Distance("l1"))
    c["distance-huber"] = tensor_distance_case(
        "distance-huber", Distance("huber", {"delta": 0.7}), columns={"y": normal(4, scale=1.2)})
    c["distance-huber-default-delta"] = tensor_distance_case(
        "distance-huber-default-delta", Distance("huber"), columns={"y": normal(4, scale=2.0)})
    c["distance-cosine"] = tensor_distance_case("distance-cosine", Distance("cosine"), shape=(2, 3))
    c["distance-cosine-zero-vector"] = tensor_distance_case(
        "distance-cosine-zero-vector", Distance("cosine", {"eps": 1e-3}),
        columns={"y": fixed([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 0.25], [0.0, 3.0, 0.0, -1.0]])})
    c["distance-bce-logits"] = tensor_distance_case(
        "distance-bce-logits", Distance("bce_logits"), shape=(6,), columns={"y": uniform01(6)},
        weight_scale={"f.layers.0.weight": 40.0})
    c["distance-cross-entropy-large-logits"] = classifier(
        "distance_ce_large", "cross_entropy of index targets against logits near ±80.", 5, 4, logit_scale=75.0)
    c["distance-cross-entropy-label-smoothing"] = classifier(
        "distance_ce_smoothing", "cross_entropy with label smoothing 0.15.", 5, 4,
        distance=Distance("cross_entropy", {"label_smoothing": 0.15}))
    c["distance-cross-entropy-probabilities"] = classifier(
        "distance_ce_probabilities", "cross_entropy against probability targets with zero entries.", 5, 4,
        encoding="probabilities")
    c["distance-kl-div-probabilities"] = classifier(
        "distance_kl_probabilities", "kl_div with temperature 1.5 against probability targets with zeros.", 5, 4,
        distance=Distance("kl_div", {"temperature": 1.5}), encoding="probabilities")
    c["distance-kl-div-index"] = classifier(
        "distance_kl_index", "kl_div against index targets (one-hot q, so 0 · log 0 everywhere but one class).",
        5, 4, distance=Distance("kl_div"))

    d = new("distance_logits_targets", "cross_entropy and kl_div (temperature 4) against a frozen model's logits, "
                                       "on a categorical object with positions.")
    d.data("D")
    d.tensor("X", [2, 5])
    d.categorical("Y", 3, shape=[2])
    d.categorical("Z", 3, shape=[2], distance=Distance("kl_div", {"temperature": 4.0}))
    d.data_arrow("x", "D", "X", "x")
    d.model("student", "X", "Y", [lin(5, 3)])
    d.model("teacher", "X", "Y", [lin(5, 6), layer("relu"), lin(6, 3)], trainable=False)
    d.model("student2", "X", "Z", [lin(5, 3)])
    d.model("teacher2", "X", "Z", [lin(5, 3)], trainable=False)
    c["distance-logits-targets"] = Case(d, weight_scale={"teacher.layers.2.weight": 4.0,
                                                         "teacher2.layers.0.weight": 6.0})
    return c


def function_cases() -> dict[str, Case]:
    c = {}
    d = new("function_identity", "identity on a tensor object and on a categorical one (keeping each term's "
                                 "encoding: logits stay logits, an index stays an index).")
    d.data("D")
    d.tensor("X", [4])
    d.tensor("X2", [4])
    d.categorical("Y", 3)
    d.categorical("Y2", 3)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.function("j", "X", "X2", "identity")
    d.model("f", "X", "Y", [lin(4, 3)])
    d.model("g", "X2", "Y", [lin(4, 3)])
    d.function("i", "Y", "Y2", "identity")
    c["function-identity"] = Case(d)

    d = new("function_softmax", "softmax and log_softmax of class logits and of a tensor, compared as tensors.")
    d.data("D")
    d.tensor("X", [4])
    d.categorical("Y", 3)
    d.tensor("P", [3])
    d.tensor("L", [3], distance=Distance("l1"))
    d.tensor("S", [4])
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("p", "D", "P", "p")
    d.data_arrow("lp", "D", "L", "lp")
    d.model("f", "X", "Y", [lin(4, 3)])
    d.function("sm", "Y", "P", "softmax")
    d.function("lsm", "Y", "L", "log_softmax")
    d.function("tsm", "X", "S", "softmax")
    d.model("g", "X", "X", [lin(4, 4)])
    d.model("h", "S", "P", [lin(4, 3)])
    c["function-softmax-log-softmax"] = Case(d, columns={"p": lambda rng, b: probabilities(rng, (b,), 3),
                                                         "lp": normal(3, scale=2.0)},
                                             weight_scale={"f.layers.0.weight": 20.0})

    d = new("function_one_hot", "one_hot of index labels as bce_logits targets of a multi-label head.")
    d.data("D")
    d.tensor("X", [4])
    d.categorical("Y", 5)
    d.tensor("O", [5], distance=Distance("bce_logits"))
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.function("oh", "Y", "O", "one_hot")
    d.model("f", "X", "O", [lin(4, 5)])
    c["function-one-hot"] = Case(d)

    d = new("function_flatten_reshape", "flatten and reshape of float tensors, and of int64 tokens feeding an "
                                        "embedding.")
    d.data("D")
    d.tensor("I", [2, 3])
    d.tensor("F", [6])
    d.tensor("R", [3, 2])
    d.tensor("T", [2, 3], "int64")
    d.tensor("T6", [6], "int64")
    d.tensor("E", [6, 2])
    d.data_arrow("img", "D", "I", "img")
    d.data_arrow("tok", "D", "T", "tok")
    d.data_arrow("e", "D", "E", "e")
    d.function("flat", "I", "F", "flatten")
    d.function("re", "F", "R", "reshape", shape=[3, 2])
    d.function("tflat", "T", "T6", "flatten")
    d.model("f", "F", "F", [lin(6, 6), layer("tanh")])
    d.model("g", "R", "R", [lin(2, 2)])
    d.model("emb", "T6", "E", [layer("embedding", num_embeddings=5, embedding_dim=2)])
    c["function-flatten-reshape"] = Case(d)

    d = new("function_scale_normalize", "scale by -1.5 and normalize (eps 1e-6, one all-zero row).")
    d.data("D")
    d.tensor("X", [4])
    d.tensor("S", [4])
    d.tensor("N", [4])
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("n", "D", "N", "n")
    d.function("sc", "X", "S", "scale", factor=-1.5)
    d.function("nm", "S", "N", "normalize", eps=1e-6)
    d.model("f", "X", "S", [lin(4, 4)])
    d.model("g", "X", "N", [lin(4, 4), layer("tanh")])
    c["function-scale-normalize"] = Case(d, columns={"x": fixed([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, -2.0, 0.5],
                                                                 [3.0, -1.0, 0.25, 4.0]])})

    d = new("function_add_concat", "add of three sources and concat of two along the last axis.")
    d.data("D")
    d.tensor("A", [2, 3])
    d.tensor("B", [2, 3])
    d.tensor("C", [2, 2])
    d.tensor("S", [2, 3])
    d.tensor("K", [2, 5])
    d.data_arrow("a", "D", "A", "a")
    d.data_arrow("b", "D", "B", "b")
    d.data_arrow("c", "D", "C", "c")
    d.data_arrow("k", "D", "K", "k")
    d.function("sum3", ["A", "B", "A"], "S", "add")
    d.function("cat", ["S", "C"], "K", "concat")
    d.model("f", "A", "S", [lin(3, 3)])
    c["function-add-concat"] = Case(d)
    return c


def combine_cases() -> dict[str, Case]:
    c = {}
    d = new("combine_concat", "A two-source model: branches (linear+tanh, none), concat, then a trunk.")
    d.data("D")
    d.tensor("X", [4])
    d.tensor("Z", [3])
    d.tensor("Y", [2])
    for name, obj in (("x", "X"), ("z", "Z"), ("y", "Y")):
        d.data_arrow(name, "D", obj, name)
    d.model("f", ["X", "Z"], "Y", Architecture((lin(8, 2),), ((lin(4, 5), layer("tanh")), ()), "concat"))
    c["combine-concat"] = Case(d)

    d = new("combine_add", "A three-source model: each branch to 4 features, added, then a trunk.")
    d.data("D")
    d.tensor("A", [2])
    d.tensor("B", [3])
    d.tensor("Y", [4])
    for name, obj in (("a", "A"), ("b", "B"), ("y", "Y")):
        d.data_arrow(name, "D", obj, name)
    d.model("f", ["A", "B", "A"], "Y", Architecture((layer("relu"), lin(4, 4)),
                                                    ((lin(2, 4),), (lin(3, 4), layer("sigmoid")), (lin(2, 4),)),
                                                    "add"))
    c["combine-add"] = Case(d)

    d = new("combine_prepend", "prepend: a [F] feature as step 0 before an [L, F] sequence, no branches.")
    d.data("D")
    d.tensor("V", [3])
    d.tensor("S", [2, 3])
    d.tensor("Y", [9])
    for name, obj in (("v", "V"), ("s", "S"), ("y", "Y")):
        d.data_arrow(name, "D", obj, name)
    d.model("f", ["V", "S"], "Y", Architecture((layer("flatten"), lin(9, 9)), None, "prepend"))
    c["combine-prepend"] = Case(d)
    return c


def structure_cases() -> dict[str, Case]:
    c = {}
    d = new("cycle_translation", "Two spaces with maps both ways and data in both: every round trip is a term.")
    d.data("D")
    d.tensor("A", [3])
    d.tensor("B", [4])
    d.data_arrow("a", "D", "A", "a")
    d.data_arrow("b", "D", "B", "b")
    d.model("f", "A", "B", [lin(3, 4), layer("tanh")])
    d.model("g", "B", "A", [lin(4, 3)])
    c["cycle-translation"] = Case(d)

    d = new("data_objects", "Two data objects with different batch sizes: labelled and unlabelled examples; "
                            "the autoencoder sees both, the classifier only labelled ones.")
    d.data("L")
    d.data("U")
    d.tensor("X", [4])
    d.tensor("Z", [2])
    d.categorical("Y", 3)
    d.data_arrow("xl", "L", "X", "xl")
    d.data_arrow("yl", "L", "Y", "yl")
    d.data_arrow("xu", "U", "X", "xu")
    d.model("enc", "X", "Z", [lin(4, 2), layer("tanh")])
    d.model("dec", "Z", "X", [lin(2, 4)])
    d.model("cls", "Z", "Y", [lin(2, 3)])
    c["data-objects"] = Case(d, batch_size={"L": 2, "U": 5})

    d = new("frozen_arrows", "A frozen feature extractor under a trainable head, and a frozen classifier: pairs of "
                             "constant terms give no equation, a frozen arrow inside a trainable term still counts.")
    d.data("D")
    d.tensor("X", [5])
    d.tensor("H", [3])
    d.categorical("Y", 3)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.data_arrow("h", "D", "H", "h")
    d.model("features", "X", "H", [lin(5, 3), layer("relu")], trainable=False)
    d.model("head", "H", "Y", [lin(3, 3)])
    d.model("frozen_cls", "X", "Y", [lin(5, 3)], trainable=False)
    c["frozen-arrows"] = Case(d)

    d = new("explicit_equations", "Automatic equations plus explicit ones: one replaces an automatic equation in "
                                  "place (reversed orientation, l1, weight 0.3), one adds a repeated round trip.")
    d.data("D")
    d.tensor("X", [4])
    d.tensor("Z", [2])
    d.categorical("Y", 3)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("enc", "X", "Z", [lin(4, 2)])
    d.model("dec", "Z", "X", [lin(2, 4)])
    d.model("cls", "Z", "Y", [lin(2, 3)])
    d.equation("x", "dec(enc(x))", Distance("l1"), weight=0.3, name="reconstruct")
    d.equation("dec(enc(dec(enc(x))))", "x", weight=2.5)
    d.equation("cls(enc(dec(enc(x))))", "y", Distance("cross_entropy", {"label_smoothing": 0.1}), weight=0.5,
               name="stable_class")
    c["explicit-equations"] = Case(d)

    d = new("explicit_only", "automatic: false; only the explicit equations, with weights and default names.")
    d.data("D")
    d.tensor("X", [4])
    d.tensor("Z", [2])
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("z", "D", "Z", "z")
    d.model("enc", "X", "Z", [lin(4, 2)])
    d.model("dec", "Z", "X", [lin(2, 4)])
    d.automatic = False
    d.equation("enc(x)", "z", weight=0.7)
    d.equation("dec(z)", "x", Distance("huber", {"delta": 0.5}), weight=1.3)
    c["explicit-only"] = Case(d)

    d = new("scalar_objects", "Scalar tensor objects (shape []): an elementwise model and a scale between them.")
    d.data("D")
    d.tensor("S", [])
    d.tensor("T", [])
    d.data_arrow("s", "D", "S", "s")
    d.data_arrow("t", "D", "T", "t")
    d.model("f", "S", "T", [layer("softplus")])
    d.function("half", "S", "T", "scale", factor=0.5)
    c["scalar-objects"] = Case(d, batch_size={"D": 4})
    return c


def regime_cases() -> dict[str, Case]:
    c = {}
    d = new("supervised", "Supervised classification: an MLP from features to labels.")
    d.data("D")
    d.tensor("X", [8])
    d.categorical("Y", 4)
    d.data_arrow("x", "D", "X", "image")
    d.data_arrow("y", "D", "Y", "label")
    d.model("classifier", "X", "Y", [lin(8, 6), layer("relu"), lin(6, 4)])
    c["regime-supervised"] = Case(d, float32_files=True, batch_size={"D": 4})

    d = new("distillation", "Knowledge distillation: a frozen teacher, a student trained on labels and on the "
                            "teacher's softened logits (kl_div, temperature 4, weight 0.9).")
    d.data("D")
    d.tensor("X", [8])
    d.categorical("Y", 4)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("teacher", "X", "Y", [lin(8, 10), layer("relu"), lin(10, 4)], trainable=False)
    d.model("student", "X", "Y", [lin(8, 4)])
    d.equation("student(x)", "teacher(x)", Distance("kl_div", {"temperature": 4.0}), weight=0.9, name="distill")
    c["regime-distillation"] = Case(d, weight_scale={"teacher.layers.2.weight": 3.0})

    d = new("multitask", "Multi-task: a shared backbone with a classification head and a regression head.")
    d.data("D")
    d.tensor("X", [6])
    d.tensor("H", [5])
    d.categorical("Y", 3)
    d.tensor("R", [2], distance=Distance("huber", {"delta": 0.5}))
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.data_arrow("r", "D", "R", "r")
    d.model("backbone", "X", "H", [lin(6, 5), layer("gelu")])
    d.model("cls_head", "H", "Y", [lin(5, 3)])
    d.model("reg_head", "H", "R", [lin(5, 2)])
    c["regime-multitask"] = Case(d)

    d = new("alignment", "Multi-modal alignment: an image encoder and a text encoder (embedding, lstm) into one "
                         "space, compared by cosine; normalized embeddings compared by mse.")
    d.data("D")
    d.tensor("I", [6])
    d.tensor("T", [4], "int64")
    d.tensor("E", [5], distance=Distance("cosine"))
    d.tensor("N", [5])
    d.data_arrow("img", "D", "I", "image")
    d.data_arrow("txt", "D", "T", "text")
    d.model("img_enc", "I", "E", [lin(6, 5)])
    d.model("txt_enc", "T", "E", [layer("embedding", num_embeddings=10, embedding_dim=4),
                                  layer("lstm", input_size=4, hidden_size=5), layer("last_step")])
    d.function("unit", "E", "N", "normalize")
    c["regime-alignment"] = Case(d, columns={"text": lambda rng, b: rng.integers(0, 10, size=(b, 4), dtype=np.int64)},
                                 weight_scale={"txt_enc.layers.1.bias_ih_l0": 2.0})

    d = new("autoencoder", "An autoencoder: a cycle X → Z → X whose round trip equals the identity on data.")
    d.data("D")
    d.tensor("X", [6])
    d.tensor("Z", [2])
    d.data_arrow("x", "D", "X", "x")
    d.model("encoder", "X", "Z", [lin(6, 4), layer("relu"), lin(4, 2)])
    d.model("decoder", "Z", "X", [lin(2, 4), layer("relu"), lin(4, 6), layer("sigmoid")])
    c["regime-autoencoder"] = Case(d, columns={"x": lambda rng, b: f32(rng.random((b, 6)))})

    d = new("captioning", "Captioning: image features prepended to embedded prefix tokens, an LSTM, next-token "
                          "logits at each of 5 positions.")
    d.data("D")
    d.tensor("I", [8])
    d.tensor("P", [4], "int64")
    d.categorical("N", 7, shape=[5], distance=Distance("cross_entropy", {"label_smoothing": 0.05}))
    d.data_arrow("img", "D", "I", "image")
    d.data_arrow("prefix", "D", "P", "prefix")
    d.data_arrow("next", "D", "N", "next")
    d.model("decoder", ["I", "P"], "N", Architecture(
        (layer("lstm", input_size=3, hidden_size=4), lin(4, 7)),
        ((lin(8, 3), layer("tanh")), (layer("embedding", num_embeddings=7, embedding_dim=3),)), "prepend"))
    c["regime-captioning"] = Case(d, columns={"prefix": lambda rng, b: rng.integers(0, 7, size=(b, 4), dtype=np.int64)},
                                  weight_scale={"decoder.layers.0.bias_hh_l0": 2.0})
    return c


# inputs near each activation's hard points, reached through a linear layer with identity weights (so the
# activation sees exactly these values) and followed by a random one: the gradient then depends on the
# activation's derivative there. Kinks (relu, leaky_relu, elu at 0) are approached to 0.003, farther than the
# finite differences reach (at most 2e-5 · max |x|); softplus straddles 20, where a thresholded softplus has
# derivative 1 instead of sigmoid(x), 1 − 2e-9 (above the float64 gradient tolerance).
KINKED = [[0.01, -0.01, 0.003, -0.003, 2.5, -2.5, 0.5, -1.0],
          [-0.005, 0.005, 1.5, -0.02, 0.02, -3.0, 4.0, 0.25],
          [0.04, -0.04, -0.7, 0.7, 0.003, -0.003, -4.5, 3.5]]
HARD_POINTS: dict[str, list[list[float]]] = {
    "relu": KINKED, "leaky_relu": KINKED, "identity": KINKED,
    "elu": [row[:6] + [-30.0, -12.0] for row in KINKED],
    "softplus": [[20.5, 19.5, 21.0, 25.0, -20.5, 0.3, -0.3, 30.0],
                 [20.1, 19.9, 1.5, -1.5, 2.0, -35.0, 0.01, -7.0],
                 [21.5, 20.25, -0.2, 1.25, -19.5, 24.0, 5.0, 0.5]],
    "sigmoid": [[80.0, -80.0, 40.0, -40.0, 17.0, -17.0, 0.0, 3.0],
                [-0.5, 0.5, 36.0, -36.0, 10.0, -10.0, 1.5, -2.5],
                [25.0, -25.0, 0.1, -0.1, 60.0, -60.0, 7.0, -7.0]],
    "tanh": [[20.0, -20.0, 9.0, -9.0, 0.0, 0.3, -0.3, 3.0],
             [40.0, -40.0, 1.5, -1.5, 5.0, -5.0, 0.01, -0.01],
             [-2.5, 2.5, 12.0, -12.0, 0.7, -0.7, 80.0, -80.0]],
    "gelu": [[6.0, -6.0, -10.0, 10.0, 0.0, 0.5, -0.5, -3.0],
             [-8.0, 8.0, 2.5, -2.5, 0.01, -0.01, 1.0, -1.0],
             [30.0, -30.0, -5.5, 5.5, 0.7, -0.7, 3.0, -0.2]],
    "softmax": [[80.0, -80.0, 1.5, -1.5, 22.0, -0.01, 0.01, -7.0],
                [-2.5, 0.7, -0.2, 1.25, -40.0, 40.0, 5.0, 0.5],
                [30.0, 30.0, 29.0, -80.0, 0.0, 0.0, 1.0, 2.0]],
}
HARD_POINTS["log_softmax"] = HARD_POINTS["softmax"]


def gradient_cases() -> dict[str, Case]:
    """Cases where the gradients tell backends apart and the losses may not (frozen arrows, dropout, derivatives)."""
    c: dict[str, Case] = {}
    for name, params in ACTIVATIONS.items():
        c[f"gradient-activation-{name.replace('_', '-')}"] = single_layer(
            f"gradient_activation_{name}", f"The derivative of {name} near its hard points: identity linear "
                                           f"weights, {name}, a linear layer.",
            [8], [8], [lin(8, 8), layer(name, **params), lin(8, 8)],
            columns={"x": fixed(HARD_POINTS[name]), "y": normal(8, scale=0.5)},
            fixed_weights={"f.layers.0.weight": np.eye(8), "f.layers.0.bias": 0.0})

    d = new("gradient_frozen_between", "A frozen arrow between two trainable ones: the gradient reaches the first "
                                       "through the frozen one, which itself has no gradient.")
    d.data("D")
    d.tensor("X", [5])
    d.tensor("H", [4])
    d.tensor("G", [4])
    d.categorical("Y", 3)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("first", "X", "H", [lin(5, 4), layer("tanh")])
    d.model("middle", "H", "G", [lin(4, 4), layer("sigmoid")], trainable=False)
    d.model("last", "G", "Y", [lin(4, 3)])
    c["gradient-frozen-between-trainable"] = Case(d, weight_scale={"middle.layers.0.weight": 2.0})

    d = new("gradient_dropout", "Dropout inside a trainable arrow and inside a frozen one, evaluated in evaluation "
                                "mode (dropout the identity), where gradients are comparable.")
    d.data("D")
    d.tensor("X", [6])
    d.tensor("H", [5])
    d.tensor("Y", [3])
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("encoder", "X", "H", [lin(6, 5), layer("dropout", p=0.5), layer("gelu")])
    d.model("frozen_encoder", "X", "H", [lin(6, 5), layer("dropout", p=0.3), layer("tanh")], trainable=False)
    d.model("head", "H", "Y", [layer("dropout", p=0.2), lin(5, 3)])
    c["gradient-dropout-trainable-and-frozen"] = Case(d)

    d = new("gradient_shared_subterms", "One subterm, enc(x), in four equations and twice in one term "
                                        "(add(enc(x), enc(x))): its gradient is the sum over every use.")
    d.data("D")
    d.tensor("X", [4])
    d.tensor("Z", [3])
    d.tensor("S", [3], distance=Distance("huber", {"delta": 0.5}))
    d.categorical("Y", 3)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.data_arrow("s", "D", "S", "s")
    d.model("enc", "X", "Z", [lin(4, 3), layer("tanh")])
    d.model("dec", "Z", "X", [lin(3, 4)])
    d.model("cls", "Z", "Y", [lin(3, 3)])
    d.function("twice", ["Z", "Z"], "S", "add")
    d.automatic = False
    d.equation("dec(enc(x))", "x", weight=0.5)
    d.equation("cls(enc(x))", "y")
    d.equation("twice(enc(x), enc(x))", "s")
    d.equation("cls(enc(dec(enc(x))))", "cls(enc(x))", Distance("kl_div", {"temperature": 2.0}), weight=0.3,
               name="consistent_classes")
    c["gradient-shared-subterms"] = Case(d, columns={"s": normal(3, scale=2.0)})
    return c


def stop_gradient_cases() -> dict[str, Case]:
    """stop_gradient (format 1.1): the value passes, the gradient does not."""
    c: dict[str, Case] = {}
    d = new("stop_gradient_mutual", "Mutual learning: two students on the labels and each on the other's "
                                    "softened prediction, the target side behind stop_gradient (sg: Y → Y).")
    d.data("D")
    d.tensor("X", [5])
    d.categorical("Y", 4)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("s1", "X", "Y", [lin(5, 6), layer("relu"), lin(6, 4)])
    d.model("s2", "X", "Y", [lin(5, 4)])
    d.function("sg", "Y", "Y", "stop_gradient")
    d.automatic = False
    d.equation("s1(x)", "y")
    d.equation("s2(x)", "y")
    kl = Distance("kl_div", {"temperature": 2.0})
    d.equation("s1(x)", "sg(s2(x))", kl, weight=0.5, name="s1_learns_from_s2")
    d.equation("s2(x)", "sg(s1(x))", kl, weight=0.5, name="s2_learns_from_s1")
    c["stop-gradient-mutual-learning"] = Case(d, weight_scale={"s1.layers.2.weight": 3.0})

    d = new("stop_gradient_consistency", "Consistency between two views: f(view1) = sg(f(view2)), a label "
                                         "equation, and a linear probe trained on stop-gradient features "
                                         "(trainable through the probe alone).")
    d.data("D")
    d.tensor("X", [6])
    d.tensor("Z", [4])
    d.categorical("Y", 3)
    d.data_arrow("view1", "D", "X", "view1")
    d.data_arrow("view2", "D", "X", "view2")
    d.data_arrow("y", "D", "Y", "y")
    d.model("f", "X", "Z", [lin(6, 4), layer("tanh")])
    d.function("sg", "Z", "Z", "stop_gradient")
    d.model("cls", "Z", "Y", [lin(4, 3)])
    d.model("probe", "Z", "Y", [lin(4, 3)])
    d.automatic = False
    d.equation("f(view1)", "sg(f(view2))", Distance("cosine"), name="consistency")
    d.equation("cls(f(view1))", "y")
    d.equation("probe(sg(f(view2)))", "y", name="probe")
    c["stop-gradient-consistency"] = Case(d)

    d = new("stop_gradient_automatic", "stop_gradient in automatic equations: sg(g(x)) is a constant term, so it "
                                       "is the right-hand side of f(x) = sg(g(x)) and pairs with no constant term.")
    d.data("D")
    d.tensor("X", [4])
    d.tensor("T", [3])
    d.tensor("U", [3])
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("t", "D", "T", "t")
    d.model("f", "X", "T", [lin(4, 3)])
    d.model("g", "X", "U", [lin(4, 3), layer("tanh")])
    d.function("sg", "U", "T", "stop_gradient")
    c["stop-gradient-automatic"] = Case(d)
    return c


def valid_cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for group in (layer_cases, activation_cases, chain_cases, distance_cases, function_cases, combine_cases,
                  structure_cases, regime_cases, gradient_cases, stop_gradient_cases):
        cases.update(group())
    return cases


# ----------------------------------------------------------------------------- writing


def seed(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def draw(name: str, case: Case) -> tuple[Diagram, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The case's checked diagram, weights and batch, drawn from its own seeded generator."""
    d = load(case.diagram)
    rng = np.random.default_rng(seed(name))
    weights = draw_weights(rng, d)
    for key, factor in case.weight_scale.items():
        weights[key] = f32(weights[key] * factor)
    for key, value in case.fixed_weights.items():
        weights[key] = f32(np.broadcast_to(np.asarray(value, dtype=np.float64), weights[key].shape))
    batch: dict[str, np.ndarray] = {}
    for arrow in d.arrows.values():
        if isinstance(arrow, DataArrow) and arrow.column not in batch:
            b = case.batch_size.get(arrow.source, 3)
            special = case.columns.get(arrow.column)
            batch[arrow.column] = special(rng, b) if special else draw_column(rng, d, arrow, b)
    if case.float32_files:
        weights = {k: v.astype(np.float32) for k, v in weights.items()}
        batch = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in batch.items()}
    return d, weights, batch


def expected_values(d: Diagram, weights: dict, batch: dict) -> dict[str, Any]:
    result = evaluate(d, weights, batch)
    eqs = [{"name": e.name, "object": e.object, "data_object": e.data_object, "lhs": str(e.lhs), "rhs": str(e.rhs),
            "distance": e.distance.to_json(), "weight": e.weight, "value": result.equations[e.name]}
           for e in equations(d)]
    for e in eqs:
        if not math.isfinite(e["value"]):
            raise ValueError(f"equation {e['name']!r} is not finite: {e['value']}")
    return {"equations": eqs, "total": result.total, "dtype": "float64", "tolerance": dict(TOLERANCE)}


def trainable_names(d: Diagram) -> list[str]:
    """The canonical names of the trainable parameters, sorted: the keys of a case's gradients file."""
    trainable = {a.name for a in d.model_arrows() if a.trainable and a.architecture is not None}
    return sorted(k for k in parameter_shapes(d) if k.split(".", 1)[0] in trainable)


def gradient_error(got: np.ndarray, want: np.ndarray) -> float:
    """‖got − want‖ / max(‖want‖, FLOOR), the measure of conformance/README.md."""
    return float(np.linalg.norm(got - want) / max(float(np.linalg.norm(want)), FLOOR))


def autograd_gradients(d: Diagram, weights: dict, batch: dict) -> dict[str, np.ndarray]:
    """The gradient of the total loss by PyTorch's autograd, float64, evaluation mode."""
    import torch

    from diagrammatic_learning.torch_backend import compile
    from diagrammatic_learning.torch_backend.gradients import loss_gradients

    model = compile(d, weights={k: np.asarray(v, dtype=np.float64) for k, v in weights.items()},
                    dtype=torch.float64).eval()
    _, grads = loss_gradients(model, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()})
    return {k: grads[k].detach().numpy().astype(np.float64) for k in trainable_names(d)}


def expected_gradients(name: str, d: Diagram, weights: dict, batch: dict, confirm: bool = True
                       ) -> dict[str, np.ndarray] | None:
    """The case's expected gradients (None without trainable parameters), confirmed by finite differences."""
    names = trainable_names(d)
    if not names:
        return None
    grads = autograd_gradients(d, weights, batch)
    for key, g in grads.items():
        if not np.all(np.isfinite(g)):
            raise ValueError(f"{name}: the gradient for {key} is not finite")
    if confirm:
        measured = finite_difference_gradients(d, weights, batch, names)
        for key in names:
            err = gradient_error(measured[key], grads[key])
            if err > FD_TOLERANCE:
                raise ValueError(f"{name}: autograd and finite differences disagree on {key} (relative error "
                                 f"{err:.1e} > {FD_TOLERANCE:.0e}); move the inputs away from kinks")
    return grads


def json_text(value: Any) -> str:
    """JSON with two-space indentation; floats as Python's shortest round-trip repr."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def write_valid(out: Path, name: str, case: Case, confirm: bool = True) -> None:
    d, weights, batch = draw(name, case)
    expected = expected_values(d, weights, batch)
    grads = expected_gradients(name, d, weights, batch, confirm)
    if grads is not None:
        expected["gradient_tolerance"] = dict(GRADIENT_TOLERANCE)
    folder = out / "cases" / name
    folder.mkdir(parents=True)
    (folder / "diagram.json").write_text(dumps(d), encoding="utf-8")
    (folder / "weights.safetensors").write_bytes(safetensors_bytes(weights))
    (folder / "batch.safetensors").write_bytes(safetensors_bytes(batch))
    if grads is not None:
        (folder / "gradients.safetensors").write_bytes(safetensors_bytes(grads))
    (folder / "expected.json").write_text(json_text(expected), encoding="utf-8")


# ----------------------------------------------------------------------------- invalid weights and batches


def invalid_base() -> Diagram:
    """The valid diagram every invalid file case starts from."""
    d = new("invalid_files_base", "A classifier with two columns of one data object.")
    d.data("D")
    d.tensor("X", [3])
    d.categorical("Y", 3)
    d.data_arrow("x", "D", "X", "x")
    d.data_arrow("y", "D", "Y", "y")
    d.model("f", "X", "Y", [lin(3, 3)])
    return load(d)


def embedding_base() -> Diagram:
    d = new("invalid_embedding_base", "Tokens through an embedding: the index range is checked at the layer.")
    d.data("D")
    d.tensor("T", [2], "int64")
    d.tensor("E", [2, 2])
    d.data_arrow("tok", "D", "T", "tok")
    d.data_arrow("e", "D", "E", "e")
    d.model("emb", "T", "E", [layer("embedding", num_embeddings=5, embedding_dim=2)])
    return load(d)


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(tensors[k]) for k in sorted(tensors)})


def header_length_overclaims(data: bytes) -> bytes:
    """The 8-byte header length says more bytes than the file holds."""
    return struct.pack("<Q", len(data) + 100) + data[8:]


def offsets_beyond_data(tensors: dict[str, np.ndarray]) -> bytes:
    """A well-formed header whose last tensor ends past the end of the data."""
    header: dict[str, Any] = {}
    offset = 0
    blobs = []
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k], dtype="<f8")
        header[k] = {"dtype": "F64", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    data = b"".join(blobs)
    return struct.pack("<Q", len(text)) + text + data[: len(data) // 2]


def bf16_at(tensors: dict[str, np.ndarray], key: str) -> bytes:
    """A safetensors file with ``key`` stored as BF16 (the upper halves of its float32 values), the rest as given."""
    header: dict[str, Any] = {}
    offset = 0
    blobs = []
    names = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32", np.dtype("<i8"): "I64"}
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        if k == key:
            raw = (a.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
            dtype = "BF16"
        else:
            raw, dtype = a.astype(a.dtype.newbyteorder("<")).tobytes(), names[a.dtype.newbyteorder("<")]
        header[k] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def with_nan(tensors: dict, key: str) -> None:
    a = tensors[key].copy()
    a.flat[0] = np.nan
    tensors[key] = a


def drop(tensors: dict, key: str) -> None:
    del tensors[key]


FileCase = tuple[str, str, Callable[[dict, dict], tuple[Any, Any]]]  # code, pointer, (weights, batch) → bad ones


def invalid_file_cases() -> dict[str, tuple[Callable[[], Diagram], FileCase]]:
    W, B = "weights.safetensors", "batch.safetensors"
    wk, bk = "f.layers.0.weight", "f.layers.0.bias"

    def with_weights(change: Callable[[dict], Any]) -> Callable[[dict, dict], tuple[Any, Any]]:
        def make(w: dict, b: dict) -> tuple[Any, Any]:
            w = dict(w)
            out = change(w)
            return (w if out is None else out), b
        return make

    def with_batch(change: Callable[[dict], Any]) -> Callable[[dict, dict], tuple[Any, Any]]:
        def make(w: dict, b: dict) -> tuple[Any, Any]:
            b = dict(b)
            out = change(b)
            return w, (b if out is None else out)
        return make

    return {
        "weights-wrong-shape": (invalid_base, ("weights-shape", f"{W}#{wk}",
                                               with_weights(lambda w: w.update({wk: w[wk][:, :2].copy()})))),
        "weights-missing-key": (invalid_base, ("weights-missing-key", f"{W}#{bk}",
                                               with_weights(lambda w: drop(w, bk)))),
        "weights-unexpected-key": (invalid_base, ("weights-unexpected-key", f"{W}#f.layers.1.weight",
                                                  with_weights(lambda w: w.update({"f.layers.1.weight": w[wk]})))),
        "weights-wrong-dtype": (invalid_base, ("weights-dtype", f"{W}#{wk}",
                                               with_weights(lambda w: w.update({wk: np.arange(9, dtype=np.int32)
                                                                                .reshape(3, 3)})))),
        "weights-bf16": (invalid_base, ("weights-dtype", f"{W}#{wk}", with_weights(lambda w: bf16_at(w, wk)))),
        "weights-not-finite": (invalid_base, ("weights-value", f"{W}#{bk}", with_weights(lambda w: with_nan(w, bk)))),
        "weights-truncated": (invalid_base, ("weights-file", W,
                                             with_weights(lambda w: safetensors_bytes(w)[:-20]))),
        "weights-header-length-overclaims": (invalid_base, ("weights-file", W, with_weights(
            lambda w: header_length_overclaims(safetensors_bytes(w))))),
        "weights-offsets-beyond-data": (invalid_base, ("weights-file", W,
                                                       with_weights(lambda w: offsets_beyond_data(w)))),
        "weights-not-safetensors": (invalid_base, ("weights-file", W,
                                                   with_weights(lambda w: b"PK\x03\x04 a zip file, not tensors\n"))),
        "weights-empty-file": (invalid_base, ("weights-file", W, with_weights(lambda w: b""))),
        "batch-missing-column": (invalid_base, ("batch-missing-column", f"{B}#y", with_batch(lambda b: drop(b, "y")))),
        "batch-wrong-shape": (invalid_base, ("batch-shape", f"{B}#x",
                                             with_batch(lambda b: b.update(x=np.zeros((3, 4)))))),
        "batch-wrong-dtype": (invalid_base, ("batch-dtype", f"{B}#y",
                                             with_batch(lambda b: b.update(y=b["y"].astype(np.int32))))),
        "batch-float-labels": (invalid_base, ("batch-dtype", f"{B}#y",
                                              with_batch(lambda b: b.update(y=b["y"].astype(np.float64))))),
        "batch-index-range": (invalid_base, ("batch-index-range", f"{B}#y",
                                             with_batch(lambda b: b.update(y=np.array([0, 3, 1]))))),
        "batch-negative-index": (invalid_base, ("batch-index-range", f"{B}#y",
                                                with_batch(lambda b: b.update(y=np.array([0, -1, 1]))))),
        "batch-size-mismatch": (invalid_base, ("batch-size-mismatch", f"{B}#y",
                                               with_batch(lambda b: b.update(y=b["y"][:2].copy())))),
        "batch-embedding-index-range": (embedding_base, ("batch-index-range", f"{B}#tok",
                                                         with_batch(lambda b: b.update(tok=np.array(
                                                             [[0, 1], [5, 2], [3, 3]]))))),
        "batch-bf16": (invalid_base, ("batch-dtype", f"{B}#x", with_batch(lambda b: bf16_at(b, "x")))),
        "batch-not-safetensors": (invalid_base, ("batch-file", B, with_batch(lambda b: b"{\"x\": [1, 2, 3]}\n"))),
        "batch-truncated": (invalid_base, ("batch-file", B, with_batch(lambda b: safetensors_bytes(b)[:40]))),
    }


def write_invalid(out: Path, name: str, base: Callable[[], Diagram], spec: FileCase) -> None:
    code, ptr, make = spec
    d = base()
    rng = np.random.default_rng(seed(name))
    weights = draw_weights(rng, d)
    batch = {a.column: draw_column(rng, d, a, 3) for a in d.arrows.values() if isinstance(a, DataArrow)}
    evaluate(d, weights, batch)  # the good pair is valid
    bad_weights, bad_batch = make(weights, batch)
    folder = out / "invalid" / name
    folder.mkdir(parents=True)
    (folder / "diagram.json").write_text(dumps(d), encoding="utf-8")
    for value, file in ((bad_weights, "weights.safetensors"), (bad_batch, "batch.safetensors")):
        if isinstance(value, bytes):
            (folder / file).write_bytes(value)
        else:
            (folder / file).write_bytes(safetensors_bytes(value))
    (folder / "expected.json").write_text(json_text({"code": code, "pointer": ptr}), encoding="utf-8")


# ----------------------------------------------------------------------------- main


def generate(out: Path = ROOT, confirm: bool = True) -> tuple[int, int]:
    """Write every case under ``out`` (``cases/`` and ``invalid/weights-*``, ``invalid/batch-*``).

    ``confirm=False`` skips the finite-difference confirmation of the gradients
    (about a minute): for checking that the files reproduce, not for writing the suite.
    """
    out = Path(out)
    if (out / "cases").exists():
        shutil.rmtree(out / "cases")
    for old in (out / "invalid").glob("*/"):
        if old.name.startswith(("weights-", "batch-")):
            shutil.rmtree(old)
    valid = valid_cases()
    for name, case in valid.items():
        write_valid(out, name, case, confirm)
    invalid = invalid_file_cases()
    for name, (base, spec) in invalid.items():
        write_invalid(out, name, base, spec)
    return len(valid), len(invalid)


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else ROOT
    n_valid, n_invalid = generate(out)
    print(f"wrote {n_valid} cases to {out / 'cases'} and {n_invalid} weights/batch cases to {out / 'invalid'}")


if __name__ == "__main__":
    main(sys.argv[1:])
