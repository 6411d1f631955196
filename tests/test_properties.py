"""Property tests: random diagrams agree between PyTorch and the reference; corrupted files only give DiagramError.

Random diagrams have 1–2 data objects, 1–3 tensor objects and up to one
categorical object, data arrows, small model architectures (linear chains
with random activations, flatten, lstm, layer_norm, products with concat or
add), function arrows, and automatic and explicit equations. Weights and
batches are drawn from a NumPy generator seeded by Hypothesis.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from diagrammatic_learning import Diagram, DiagramError, Distance, layer, load
from diagrammatic_learning.conformance import load_cases
from diagrammatic_learning.diagram import Architecture, CategoricalObject, DataArrow, TensorObject
from diagrammatic_learning.equations import enumerate_terms, equations
from diagrammatic_learning.reference import evaluate
from diagrammatic_learning.tensorfiles import parameter_shapes

# Random diagrams are not tuned like the suite's cases: some equations are 0 up to rounding (kl_div of a term
# with an equal one), others lose digits to cancellation. So: relative 1e-10, absolute 1e-12.
REL, ABS = 1e-10, 1e-12
ACTIVATIONS = ["relu", "tanh", "sigmoid", "gelu", "softplus", "identity", "leaky_relu", "elu", "softmax",
               "log_softmax", "dropout"]
SHAPES = [(1,), (2,), (3,), (4,), (2, 3)]
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- random diagrams


def value_shape(d: Diagram, name: str) -> tuple[int, ...]:
    o = d.objects[name]
    return o.shape + (o.classes,) if isinstance(o, CategoricalObject) else o.shape


def lin(i: int, o: int):
    return layer("linear", in_features=i, out_features=o)


@st.composite
def activation(draw):
    name = draw(st.sampled_from(ACTIVATIONS))
    return layer(name)


@st.composite
def layers_between(draw, src: tuple[int, ...], dst: tuple[int, ...]):
    """A layer list mapping per-example shape src to dst (both 1-D, or both [L, F] with equal L), or None."""
    out = []
    if len(src) == 2 and len(dst) == 1:
        if draw(st.booleans()):
            out.append(layer("flatten"))
            src = (src[0] * src[1],)
        else:
            hidden = draw(st.integers(1, 3))
            out += [layer("lstm", input_size=src[1], hidden_size=hidden), layer("last_step")]
            src = (hidden,)
    if len(src) != len(dst) or src[:-1] != dst[:-1]:
        return None
    if draw(st.booleans()):
        out.append(layer("layer_norm", normalized_shape=[src[-1]]))
    if draw(st.booleans()):
        hidden = draw(st.integers(1, 4))
        out += [lin(src[-1], hidden), draw(activation())]
        src = src[:-1] + (hidden,)
    out.append(lin(src[-1], dst[-1]))
    if draw(st.booleans()):
        out.append(draw(activation()))
    return out


def tensor_distance(draw) -> Distance:
    name = draw(st.sampled_from(["mse", "l1", "huber", "cosine", "bce_logits"]))
    params = {"delta": draw(st.sampled_from([0.5, 1.0, 2.0]))} if name == "huber" else {}
    return Distance(name, params)


def categorical_distance(draw) -> Distance:
    if draw(st.booleans()):
        return Distance("cross_entropy", {"label_smoothing": draw(st.sampled_from([0.0, 0.1]))})
    return Distance("kl_div", {"temperature": draw(st.sampled_from([1.0, 2.5]))})


def add_objects(draw, d: Diagram) -> tuple[list[str], list[str], list[str]]:
    """Data objects, tensor objects and categorical objects, some with their own distance."""
    data = [d.data(f"D{i}") for i in range(draw(st.integers(1, 2)))]
    tensors = [d.tensor(f"T{i}", draw(st.sampled_from(SHAPES)), draw(st.sampled_from(["float32", "float64"])),
                        distance=tensor_distance(draw) if draw(st.booleans()) else None)
               for i in range(draw(st.integers(1, 3)))]
    cats = [d.categorical(f"C{i}", draw(st.integers(2, 4)), draw(st.sampled_from([[], [2]])),
                          distance=categorical_distance(draw) if draw(st.booleans()) else None)
            for i in range(draw(st.integers(0, 1)))]
    return data, tensors, cats


def add_data_arrows(draw, d: Diagram, data: list[str], objects: list[str]) -> None:
    for obj in objects:
        for k in range(draw(st.sampled_from([0, 1, 1, 2]))):
            encoding = draw(st.sampled_from(["index", "probabilities"])) if d.objects[obj].kind == "categorical" \
                else None
            d.data_arrow(f"{obj.lower()}_{k}", draw(st.sampled_from(data)), obj, f"col_{obj}_{k}", encoding)


def add_models(draw, d: Diagram, tensors: list[str], cats: list[str]) -> None:
    """1–4 models from tensor objects that have data, single-source or products (concat, add)."""
    fed = [t for t in tensors if any(a.target == t for a in d.arrows.values())]
    assume(fed)
    for m in range(draw(st.integers(1, 4))):
        trainable = draw(st.booleans())
        source = draw(st.sampled_from(fed))
        fits = [t for t in tensors + cats if len(value_shape(d, t)) == 1
                or value_shape(d, t)[:-1] == d.objects[source].shape[:-1]]
        target = draw(st.sampled_from(fits))
        if draw(st.integers(0, 3)) == 0:  # a product model of two 1-D sources
            sources = [source, draw(st.sampled_from(fed))]
            if not all(len(d.objects[s].shape) == 1 for s in sources) or len(value_shape(d, target)) != 1:
                continue
            width = draw(st.integers(1, 3))
            how = draw(st.sampled_from(["concat", "add"]))
            branches = tuple((lin(d.objects[s].shape[0], width), draw(activation())) for s in sources)
            trunk = (lin(width * (2 if how == "concat" else 1), value_shape(d, target)[0]),)
            d.model(f"m{m}", sources, target, Architecture(trunk, branches, how), trainable=trainable)
            continue
        layers = draw(layers_between(d.objects[source].shape, value_shape(d, target)))
        if layers is not None:
            d.model(f"m{m}", source, target, layers, trainable=trainable)


def add_functions(draw, d: Diagram, tensors: list[str], cats: list[str]) -> None:
    """0–2 function arrows: scale, normalize, add between equal shapes; softmax of class logits."""
    for k in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["scale", "normalize", "add", "softmax"]))
        if op == "softmax":
            c = d.objects[cats[0]] if cats else None
            fits = [t for t in tensors if c is not None and d.objects[t].shape == c.shape + (c.classes,)]
            if fits:
                d.function(f"fn{k}", cats[0], draw(st.sampled_from(fits)), "softmax")
            continue
        src = draw(st.sampled_from(tensors))
        same = [t for t in tensors if d.objects[t].shape == d.objects[src].shape]
        dst = draw(st.sampled_from(same))
        if op == "scale":
            d.function(f"fn{k}", src, dst, "scale", factor=draw(st.sampled_from([-2.0, 0.5, 3.0])))
        elif op == "normalize":
            d.function(f"fn{k}", src, dst, "normalize")
        else:
            d.function(f"fn{k}", [src, draw(st.sampled_from(same))], dst, "add")


def add_equations(draw, d: Diagram) -> None:
    """Automatic or not, plus 0–2 explicit equations between enumerated terms, with their own distance and weight."""
    try:
        terms = enumerate_terms(d)
    except DiagramError:  # too many terms for the small bound: a smaller diagram, please
        assume(False)
    d.automatic = draw(st.booleans())
    pairs = [(obj, a, b) for obj, ts in terms.items() for i, (a, ia) in enumerate(ts) for (b, ib) in ts[i + 1:]
             if ia.data_object == ib.data_object]
    for k in range(draw(st.integers(0, 2)) if pairs else 0):
        obj, a, b = draw(st.sampled_from(pairs))
        if draw(st.booleans()):
            a, b = b, a
        distance = None
        if draw(st.booleans()):
            kind = d.objects[obj].kind
            distance = tensor_distance(draw) if kind == "tensor" else categorical_distance(draw)
        d.equation(str(a), str(b), distance, weight=draw(st.sampled_from([None, 0.25, 3.0])), name=f"eq{k}")


@st.composite
def diagrams(draw) -> Diagram:
    """A random valid diagram with at least one equation."""
    d = Diagram("random")
    d.max_terms = 12
    data, tensors, cats = add_objects(draw, d)
    add_data_arrows(draw, d, data, tensors + cats)
    add_models(draw, d, tensors, cats)
    add_functions(draw, d, tensors, cats)
    add_equations(draw, d)
    try:
        d = load(d)
    except DiagramError as e:
        # repeated pairs and labels on the left are legitimately refused; anything else is a generator bug
        assert set(e.codes) <= {"duplicate-equation", "distance-input-mismatch"}, e
        assume(False)
    assume(equations(d))  # a diagram without equations has loss 0 everywhere: nothing to compare
    return d


def random_inputs(d: Diagram, seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    weights = {k: rng.standard_normal(s) / np.sqrt(s[-1] if len(s) > 1 else 1.0)
               for k, s in sorted(parameter_shapes(d).items())}
    sizes = {o: int(rng.integers(1, 4)) for o in d.data_objects()}
    batch = {}
    for a in d.arrows.values():
        if not isinstance(a, DataArrow):
            continue
        obj, b = d.objects[a.target], sizes[a.source]
        if isinstance(obj, TensorObject):
            col = rng.standard_normal((b, *obj.shape))
            if d.objects[a.target].distance is not None and d.objects[a.target].distance.name == "bce_logits":
                col = rng.random((b, *obj.shape))
        elif (a.encoding or "index") == "index":
            col = rng.integers(0, obj.classes, size=(b, *obj.shape))
        else:
            col = rng.dirichlet(np.ones(obj.classes), size=(b, *obj.shape))
        batch[a.column] = col
    return weights, batch


@PROPERTY_SETTINGS
@given(d=diagrams(), seed=st.integers(0, 2 ** 32 - 1))
def test_torch_agrees_with_the_reference_on_random_diagrams(d, seed):
    import torch

    from diagrammatic_learning.torch_backend import compile

    weights, batch = random_inputs(d, seed)
    with np.errstate(all="ignore"):
        want = evaluate(d, weights, batch)
    model = compile(d, weights=weights, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        got = model.evaluate(batch)
    assert list(got.equations) == [e.name for e in equations(d)] == list(want.equations)
    for name, value in want.equations.items():
        assert math.isclose(float(got.equations[name]), value, rel_tol=REL, abs_tol=ABS), (name, got.equations[name],
                                                                                            value)
    assert math.isclose(float(got.total), want.total, rel_tol=REL, abs_tol=ABS)
    assert set(got.terms) == set(want.terms)  # both compute exactly the equations' subterms
    for text, value in want.terms.items():
        np.testing.assert_allclose(got.terms[text].numpy(), value, rtol=REL, atol=ABS, err_msg=text)


# ----------------------------------------------------------------------------- corrupted files

VALID = [c for c in load_cases() if c.valid]
FILES = ["diagram.json", "weights.safetensors", "batch.safetensors"]


@st.composite
def corruptions(draw):
    """A function bytes → bytes: flip, overwrite, insert, delete or truncate at a random place."""
    kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
    where = draw(st.floats(0, 1, exclude_max=True))
    payload = draw(st.binary(min_size=1, max_size=8))
    bit = draw(st.integers(0, 7))

    def apply(data: bytes) -> bytes:
        i = int(where * len(data))
        if kind == "flip":
            return data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1:]
        if kind == "set":
            return data[:i] + payload + data[i + len(payload):]
        if kind == "insert":
            return data[:i] + payload + data[i:]
        if kind == "delete":
            return data[:i] + data[i + len(payload):]
        return data[:i]
    return apply


@PROPERTY_SETTINGS
@given(case=st.sampled_from(VALID), which=st.sampled_from(FILES), corrupt=corruptions())
def test_corrupted_files_only_ever_raise_diagram_errors(case, which, corrupt):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in FILES:
            data = (case.folder / name).read_bytes()
            (folder / name).write_bytes(corrupt(data) if name == which else data)
        paths = [folder / name for name in FILES]
        with np.errstate(all="ignore"):
            try:
                evaluate(*paths)
            except DiagramError:
                pass
        # The torch backend builds modules from the diagram before it can see the weights, so a corrupted size
        # could ask it for gigabytes; its diagram handling is the shared loader, exercised above.
        if which != "diagram.json":
            run_torch(*paths)


def run_torch(diagram: Path, weights: Path, batch: Path) -> None:
    import torch

    from diagrammatic_learning.tensorfiles import read_safetensors
    from diagrammatic_learning.torch_backend import compile

    try:
        model = compile(diagram, weights=weights, dtype=torch.float64)
        model.eval()
        with torch.no_grad():
            model.evaluate(read_safetensors(batch, "batch"))
    except DiagramError:
        pass


def test_a_size_written_as_a_float_is_a_wrong_type_not_a_crash():
    """Found by the corruption test's kind of input: JSON Schema alone accepts 3.0 as an integer."""
    case = next(c for c in VALID if c.name == "layer-conv2d")
    text = case.diagram.read_text().replace('"kernel_size": [3, 3]', '"kernel_size": [3.0, 3]')
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "diagram.json"
        path.write_text(text)
        with pytest.raises(DiagramError) as info:
            evaluate(path, case.weights, case.batch)
    assert (info.value.code, info.value.pointer) == ("wrong-type", "/arrows/2/architecture/layers/0/kernel_size/0")
