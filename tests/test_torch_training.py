"""``fit``: the loss goes down, history and checkpoints are kept, hooks run, misuse is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from diagrammatic_learning import Diagram, mlp
from diagrammatic_learning.torch_backend import History, compile, fit, mean_losses

rng = np.random.default_rng(4)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny steps gain nothing from threads, and on a busy 2-core machine OpenMP waits make them 30× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def regression() -> Diagram:
    """Learn y = x·A plus a classification of the sign of x₀, from 64 examples."""
    d = Diagram("tiny")
    D = d.data("D")
    X, Y, C = d.tensor("X", [3]), d.tensor("Y", [2]), d.categorical("C", classes=2)
    d.data_arrow("x", D, X, "x")
    d.data_arrow("y", D, Y, "y")
    d.data_arrow("c", D, C, "c")
    d.model("f", X, Y, mlp(3, 2))
    d.model("g", X, C, mlp(3, 8, 2))
    return d


def batches(n_batches: int = 4, size: int = 16) -> list[dict[str, np.ndarray]]:
    a = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 1.5]], np.float32)
    out = []
    for _ in range(n_batches):
        x = rng.normal(size=(size, 3)).astype(np.float32)
        out.append({"x": x, "y": x @ a, "c": (x[:, 0] > 0).astype(np.int64)})
    return out


def test_fit_reduces_the_loss_and_keeps_a_history(tmp_path):
    torch.manual_seed(0)
    m = compile(regression())
    data = batches()
    before = mean_losses(m, data)
    seen = []
    history = fit(m, data, epochs=30, lr=0.05, progress=False, checkpoint_dir=tmp_path / "ckpt",
                  on_epoch_end=lambda epoch, model, h: seen.append((epoch, model is m, len(h.epochs))))
    after = mean_losses(m, data)
    assert isinstance(history, History)
    assert after["total"] < 0.2 * before["total"]
    assert after["f(x) = y"] < before["f(x) = y"] and after["g(x) = c"] < before["g(x) = c"]
    assert len(history.epochs) == 30 and len(history.steps) == 30 * 4
    assert set(history.epochs[0]) == {"f(x) = y", "g(x) = c", "total"}
    assert history.epochs[-1]["total"] < history.epochs[0]["total"]
    assert history.epochs[0]["total"] == pytest.approx(np.mean(history.steps[:4]), rel=1e-6)
    assert seen == [(e, True, e) for e in range(1, 31)]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == sorted(f"epoch-{e}.safetensors"
                                                                          for e in range(1, 31))
    last = load_file(tmp_path / "ckpt" / "epoch-30.safetensors")
    np.testing.assert_array_equal(last["f.layers.0.weight"], m["f"].layers[0].weight.detach().numpy())
    assert m.training  # left in the mode it was in


def test_only_trainable_parameters_change():
    d = regression()
    frozen = compile(d)
    frozen.freeze("g")
    g_before = {k: v.clone() for k, v in frozen["g"].state_dict().items()}
    f_before = {k: v.clone() for k, v in frozen["f"].state_dict().items()}
    fit(frozen, batches(), epochs=2, progress=False)
    assert all(torch.equal(v, g_before[k]) for k, v in frozen["g"].state_dict().items())
    assert not all(torch.equal(v, f_before[k]) for k, v in frozen["f"].state_dict().items())


def test_eval_every_records_evaluation_mode_losses():
    m = compile(regression())
    held_out = batches(2)
    history = fit(m, batches(), epochs=5, eval_every=2, eval_data=held_out, progress=False)
    assert [epoch for epoch, _ in history.evals] == [2, 4, 5]
    assert history.evals[-1][1] == pytest.approx(mean_losses(m, held_out), rel=1e-6)


def test_a_diagram_can_be_fitted_directly_and_optimizers_can_be_chosen():
    history = fit(regression(), batches(), progress=True)
    assert len(history.epochs) == 1
    m = compile(regression())
    data = batches()

    def weights() -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in m.state_dict().items()}

    def sgd_step(before: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What one plain SGD step (lr 0.1) on the first batch does to ``before``: computed here, not by fit."""
        twin = compile(regression())
        twin.load_state_dict(before)
        twin(data[0]).backward()
        return {k: before[k] - 0.1 * p.grad for k, p in twin.named_parameters()}

    for optimizer in (lambda params: torch.optim.SGD(params, lr=0.1), torch.optim.SGD(m.parameters(), lr=0.1)):
        before = weights()
        fit(m, data[:1], optimizer=optimizer, progress=False)
        want = sgd_step(before)
        for k, v in m.state_dict().items():
            torch.testing.assert_close(v, want[k], rtol=1e-5, atol=1e-6)


def test_misuse_is_refused():
    m = compile(regression())
    with pytest.raises(ValueError, match="one-shot"):
        fit(m, iter(batches()), epochs=2, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        fit(m, [], progress=False)
    for name in ("f", "g"):
        m.freeze(name)
    with pytest.raises(ValueError, match="nothing to train"):
        fit(m, batches(), progress=False)
