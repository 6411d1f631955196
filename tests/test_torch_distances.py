"""Each distance of SPEC §7 against a per-example float64 NumPy loop written from the spec's table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diagrammatic_learning import Diagram, layer
from diagrammatic_learning.diagram import CategoricalObject, Distance, TensorObject
from diagrammatic_learning.distances import full_distance
from diagrammatic_learning.torch_backend import compile
from diagrammatic_learning.torch_backend.distances import distance_fn

F64 = torch.float64
rng = np.random.default_rng(1)


def torch_distance(name: str, obj, p: np.ndarray, t: np.ndarray, encoding=None, **params) -> float:
    fn = distance_fn(full_distance(Distance(name, params)), obj, encoding, F64)
    return fn(torch.from_numpy(p), torch.from_numpy(t)).item()


def log_softmax(v: np.ndarray) -> np.ndarray:
    m = v.max()
    return v - m - np.log(np.exp(v - m).sum())


def softmax(v: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(v))


# ----------------------------------------------------------------------------- tensor distances


def per_example(p: np.ndarray, t: np.ndarray, d) -> float:
    return float(np.mean([d(p[e].ravel(), t[e].ravel()) for e in range(len(p))]))


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    return np.array([x * x / 2 if abs(x) < delta else delta * (abs(x) - delta / 2) for x in r])


def bce(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    s = 1 / (1 + np.exp(-p))
    return -(t * np.log(s) + (1 - t) * np.log(1 - s))  # the textbook form, equal to the spec's stable one


@pytest.mark.parametrize("shape", [[], [5], [2, 3]])
@pytest.mark.parametrize("name, params, d", [
    ("mse", {}, lambda p, t: np.mean((p - t) ** 2)),
    ("l1", {}, lambda p, t: np.mean(np.abs(p - t))),
    ("huber", {"delta": 0.7}, lambda p, t: np.mean(huber(p - t, 0.7))),
    ("cosine", {}, lambda p, t: 1 - p @ t / max(np.linalg.norm(p) * np.linalg.norm(t), 1e-8)),
    ("bce_logits", {}, lambda p, t: np.mean(bce(p, t))),
])
def test_tensor_distances(shape, name, params, d):
    obj = TensorObject("T", tuple(shape))
    p = rng.normal(size=(4, *shape)) * 2
    t = rng.uniform(size=(4, *shape)) if name == "bce_logits" else rng.normal(size=(4, *shape))
    assert torch_distance(name, obj, p, t, **params) == pytest.approx(per_example(p, t, d), rel=1e-12)


def test_cosine_eps_guards_zero_vectors():
    obj = TensorObject("T", (3,))
    p = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    t = np.array([[1.0, 0.0, 0.0], [0.0, 0.3, 0.4]])
    # example 0: p·t = 0 → 1; example 1: ‖p‖‖t‖ = 1.5 < eps = 2 → 1 − 1.4/2
    expected = (1.0 + (1 - 1.4 / 2.0)) / 2
    assert torch_distance("cosine", obj, p, t, eps=2.0) == pytest.approx(expected, rel=1e-14)


def test_huber_switches_at_delta():
    obj = TensorObject("T", (2,))
    p, t = np.array([[0.5, 3.0]]), np.zeros((1, 2))
    assert torch_distance("huber", obj, p, t, delta=1.0) == pytest.approx((0.125 + 2.5) / 2, rel=1e-14)


def test_bce_logits_is_stable_for_large_logits():
    obj = TensorObject("T", (2,))
    p, t = np.array([[800.0, -800.0]]), np.array([[0.0, 1.0]])
    assert torch_distance("bce_logits", obj, p, t) == pytest.approx(800.0, rel=1e-14)


# ----------------------------------------------------------------------------- categorical distances


def distribution(n_rows: int, classes: int, zeros: bool = False) -> np.ndarray:
    q = rng.uniform(size=(n_rows, classes))
    if zeros:
        q[:, 0] = 0.0
    return q / q.sum(axis=1, keepdims=True)


def target_q(t_row, encoding: str, classes: int, temperature: float = 1.0) -> np.ndarray:
    if encoding == "index":
        return np.eye(classes)[t_row]
    if encoding == "probabilities":
        return t_row
    return softmax(t_row / temperature)


def categorical_case(encoding: str, shape: tuple[int, ...], classes: int = 4, zeros: bool = False):
    """Logits p [B, *S, C] and a target t of the given encoding."""
    batch, m = 3, int(np.prod(shape))
    p = rng.normal(size=(batch, *shape, classes)) * 2
    if encoding == "index":
        t = rng.integers(0, classes, size=(batch, *shape))
    elif encoding == "probabilities":
        t = distribution(batch * m, classes, zeros).reshape(batch, *shape, classes)
    else:
        t = rng.normal(size=(batch, *shape, classes)) * 2
    return p, t


def spec_cross_entropy(p, t, encoding, classes, eps):
    per = []
    for e in range(len(p)):
        pe, te = p[e].reshape(-1, classes), (t[e].reshape(-1) if encoding == "index" else t[e].reshape(-1, classes))
        rows = []
        for k in range(len(pe)):
            q = (1 - eps) * target_q(te[k], encoding, classes) + eps / classes
            rows.append(-(q * log_softmax(pe[k])).sum())
        per.append(np.mean(rows))
    return float(np.mean(per))


def spec_kl(p, t, encoding, classes, tau):
    per = []
    for e in range(len(p)):
        pe, te = p[e].reshape(-1, classes), (t[e].reshape(-1) if encoding == "index" else t[e].reshape(-1, classes))
        rows = []
        for k in range(len(pe)):
            q = target_q(te[k], encoding, classes, tau)
            ls = log_softmax(pe[k] / tau)
            rows.append(tau ** 2 * sum(qi * (np.log(qi) - li) for qi, li in zip(q, ls) if qi > 0))  # 0·log 0 = 0
        per.append(np.mean(rows))
    return float(np.mean(per))


@pytest.mark.parametrize("encoding", ["index", "probabilities", "logits"])
@pytest.mark.parametrize("shape", [(), (3,), (2, 2)])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_cross_entropy(encoding, shape, eps):
    p, t = categorical_case(encoding, shape)
    obj = CategoricalObject("C", 4, shape)
    got = torch_distance("cross_entropy", obj, p, t, encoding, label_smoothing=eps)
    assert got == pytest.approx(spec_cross_entropy(p, t, encoding, 4, eps), rel=1e-12)


@pytest.mark.parametrize("encoding", ["index", "probabilities", "logits"])
@pytest.mark.parametrize("shape", [(), (3,)])
@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_kl_div(encoding, shape, tau):
    p, t = categorical_case(encoding, shape, zeros=True)
    obj = CategoricalObject("C", 4, shape)
    got = torch_distance("kl_div", obj, p, t, encoding, temperature=tau)
    assert got == pytest.approx(spec_kl(p, t, encoding, 4, tau), rel=1e-12)


def test_kl_div_gradient_is_finite_with_zero_probabilities():
    obj = CategoricalObject("C", 3, ())
    p = torch.zeros((1, 3), dtype=F64, requires_grad=True)
    fn = distance_fn(full_distance(Distance("kl_div")), obj, "probabilities", F64)
    fn(p, torch.tensor([[0.0, 0.5, 0.5]], dtype=F64)).backward()
    np.testing.assert_allclose(p.grad.numpy(), [[1 / 3, 1 / 3 - 0.5, 1 / 3 - 0.5]], rtol=1e-14)


# ----------------------------------------------------------------------------- through a compiled diagram


def test_the_loss_is_the_weighted_sum_of_the_equations_in_order():
    d = Diagram("w")
    D = d.data("D")
    X = d.tensor("X", [3])
    C = d.categorical("C", classes=3)
    d.data_arrow("x", D, X, "x")
    d.data_arrow("label", D, C, "label")
    d.data_arrow("soft", D, C, "soft", encoding="probabilities")
    d.model("student", X, C, [layer("identity")])
    d.model("teacher", X, C, [layer("linear", in_features=3, out_features=3)], trainable=False)
    d.equation("student(x)", "teacher(x)", distance=Distance("kl_div", {"temperature": 2.0}), weight=0.25,
               name="distill")
    d.equation("student(x)", "soft", weight=3.0)
    m = compile(d, dtype=F64)
    w = rng.normal(size=(3, 3))
    b = rng.normal(size=3)
    m.load_weights({"teacher.layers.0.weight": w, "teacher.layers.0.bias": b})
    x = rng.normal(size=(5, 3))
    label = rng.integers(0, 3, size=5)
    soft = distribution(5, 3)
    ev = m.eval().evaluate({"x": x, "label": label, "soft": soft})
    teacher = x @ w.T + b
    ce_label = spec_cross_entropy(x, label, "index", 3, 0.0)
    distill = spec_kl(x, teacher, "logits", 3, 2.0)
    ce_soft = spec_cross_entropy(x, soft, "probabilities", 3, 0.0)
    # canonical order (SPEC §6.1): terms label < soft < student(x) < teacher(x); explicit ones replace in place
    assert list(ev.equations) == ["student(x) = label", "student(x) = soft", "distill"]
    np.testing.assert_allclose([v.item() for v in ev.equations.values()], [ce_label, ce_soft, distill], rtol=1e-12)
    assert ev.total.item() == pytest.approx(ce_label + 0.25 * distill + 3.0 * ce_soft, rel=1e-12)
