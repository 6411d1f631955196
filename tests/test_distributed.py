"""Training under torch.distributed: two processes (gloo on 127.0.0.1) equal one process on the same global batches.

Processes are started through ``distributed.launch`` (torchrun's launcher, the
one behind ``dlearn train --nproc-per-node``), inside a new session that is
killed whole on timeout. Two launches in all: ``tests/distributed_worker.py``
(equality, frozen weights, checkpoints, a failing rank) and the command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from diagrammatic_learning.io import load
from diagrammatic_learning.tensorfiles import read_safetensors
from diagrammatic_learning.torch_backend import compile, fit
from diagrammatic_learning.torch_backend.data import ColumnLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distributed_worker as worker  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
LAUNCH_TIMEOUT_S = 420  # a hang would wait for the workers' 900 s collective timeout
TOL = 1e-10

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")


def launch(args: list[str], timeout: float = LAUNCH_TIMEOUT_S) -> tuple[int, str, float]:
    """Run a command in its own session with gloo bound to loopback; (exit code, stdout+stderr, seconds).
    On timeout the whole session (launcher and workers) is killed and the test fails."""
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the distributed run did not finish within {timeout} s:\n{out}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, time.monotonic() - started


def launch_python(program: list[str], nproc: int = 2) -> tuple[int, str, float]:
    code = ("import sys; from diagrammatic_learning.torch_backend.distributed import launch; "
            f"sys.exit(launch({program!r}, nproc_per_node={nproc}, module=False))")
    return launch([sys.executable, "-c", code])


def cuda_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device: the nccl path needs 2 GPUs"
    if torch.cuda.device_count() < 2:
        return "only one CUDA device: nccl needs a GPU per process"
    return None


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    cuda_reason() is not None, reason=cuda_reason() or ""))])
def two_process_run(request, tmp_path_factory):
    """One launch of two workers (gloo on CPU, nccl on CUDA): their outputs, and the one-process references."""
    device = request.param
    out = tmp_path_factory.mktemp(f"dist-{device}")
    code, log, seconds = launch_python([str(WORKER), str(out), device])
    refs = {}
    torch.set_num_threads(1)
    for name in worker.DIAGRAMS:
        diagram = load(EXAMPLES / f"{name}.json")
        torch.manual_seed(worker.SEED)
        model = compile(diagram, dtype="float64")
        initial = {k: v.clone() for k, v in model.weights().items()}
        loader = ColumnLoader(worker.small_tables(diagram), 2 * worker.BATCH, seed=worker.SEED)
        history = fit(model, loader, epochs=worker.EPOCHS, lr=0.01, progress=False, eval_every=worker.EPOCHS,
                      checkpoint_dir=out / f"{name}-ref-ckpt", distributed=False)
        refs[name] = {"model": model, "initial": initial, "history": history}
    return {"out": out, "code": code, "log": log, "seconds": seconds, "refs": refs, "device": device}


@pytest.mark.parametrize("name", worker.DIAGRAMS)
def test_two_processes_end_where_one_process_does(two_process_run, name):
    out, ref = two_process_run["out"], two_process_run["refs"][name]
    assert (out / f"{name}.safetensors").is_file(), two_process_run["log"]
    got = read_safetensors(out / f"{name}.safetensors")
    want = {k: v.detach().cpu().numpy() for k, v in ref["model"].weights().items()}
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == np.float64
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=TOL, err_msg=key)
    moved = [k for k in want if not np.array_equal(want[k], ref["initial"][k].numpy())]
    assert moved, "training changed nothing: the comparison would prove nothing"
    for rank in (0, 1):  # the history is over both ranks' batches, the same on each, and the one-process one
        h = json.loads((out / f"{name}-history-{rank}.json").read_text())
        assert h["world_size"] == 2
        assert len(h["steps"]) == len(ref["history"].steps) == worker.EPOCHS * worker.ROWS // (2 * worker.BATCH)
        np.testing.assert_allclose(h["steps"], ref["history"].steps, rtol=0, atol=TOL)
        assert [list(e) for e in h["step_equations"]] == [list(e) for e in ref["history"].step_equations]
        np.testing.assert_allclose([list(e.values()) for e in h["step_equations"]],
                                   [list(e.values()) for e in ref["history"].step_equations], rtol=0, atol=TOL)
        for mine, theirs in zip(h["epochs"] + [e for _, e in h["evals"]],
                                ref["history"].epochs + [e for _, e in ref["history"].evals]):
            assert mine.keys() == theirs.keys()
            np.testing.assert_allclose([mine[k] for k in theirs], list(theirs.values()), rtol=0, atol=TOL)


def test_frozen_weights_are_bit_identical(two_process_run):
    ref = two_process_run["refs"]["distillation"]
    got = read_safetensors(two_process_run["out"] / "distillation.safetensors")
    teacher = [k for k in got if k.startswith("teacher.")]
    assert teacher
    for key in teacher:
        assert got[key].tobytes() == ref["initial"][key].numpy().tobytes(), key


@pytest.mark.parametrize("name", worker.DIAGRAMS)
def test_checkpoints_of_two_processes_load_into_one(two_process_run, name):
    out = two_process_run["out"]
    ckpt = out / f"{name}-ckpt"
    assert sorted(p.name for p in ckpt.iterdir()) == [f"epoch-{e}.safetensors" for e in range(1, worker.EPOCHS + 1)]
    assert not (out / f"{name}-ckpt-rank1").exists()  # rank 1 writes nothing
    diagram = load(EXAMPLES / f"{name}.json")
    last = compile(diagram, weights=ckpt / f"epoch-{worker.EPOCHS}.safetensors", dtype="float64")
    final = read_safetensors(out / f"{name}.safetensors")
    for key, value in last.weights().items():
        np.testing.assert_array_equal(value.numpy(), final[key])
    first = compile(diagram, weights=ckpt / "epoch-1.safetensors", dtype="float64")
    want = compile(diagram, weights=out / f"{name}-ref-ckpt" / "epoch-1.safetensors", dtype="float64")
    for key, value in first.weights().items():
        np.testing.assert_allclose(value.numpy(), want.weights()[key].numpy(), rtol=0, atol=TOL)


def test_a_failing_rank_stops_every_rank_with_its_error_printed_once(two_process_run):
    code, log = two_process_run["code"], two_process_run["log"]
    assert code != 0, log
    assert log.count("class indices outside [0, 10)") == 1, log
    assert "error: training stopped: " in log  # the launcher's one line naming the failed ranks
    assert "Traceback" not in log, log


# ----------------------------------------------------------------------------- the command line


def test_dlearn_train_nproc_per_node(tmp_path):
    """``dlearn train --nproc-per-node 2`` on an uncompressed .npz (memory-mapped, sharded): rank 0 prints and
    writes once; its checkpoints load into one process and are close to a one-process run (float32)."""
    diagram = load(EXAMPLES / "supervised.json")
    rng = np.random.default_rng(0)
    n = 64
    data = tmp_path / "data.npz"
    np.savez(data, image=rng.random((n, 64), dtype=np.float32), label=rng.integers(0, 10, n))
    out = tmp_path / "w.safetensors"
    code, log, _ = launch([sys.executable, "-m", "diagrammatic_learning.cli", "train", str(EXAMPLES / "supervised.json"),
                           "--data", str(data), "--epochs", "2", "--batch-size", "8", "--seed", "5", "--quiet",
                           "--nproc-per-node", "2", "--weights-out", str(out), "--checkpoint-dir",
                           str(tmp_path / "ckpt")])
    assert code == 0, log
    assert log.count("steps per epoch, 2 processes of 8 examples per step") == 1, log
    assert log.count(f"weights written to {out}") == 1, log
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch-1.safetensors", "epoch-2.safetensors"]
    two = compile(diagram, weights=tmp_path / "ckpt" / "epoch-2.safetensors")
    np.testing.assert_array_equal(two.weights()["classifier.layers.0.weight"].numpy(),
                                  read_safetensors(out)["classifier.layers.0.weight"])
    torch.manual_seed(5)
    one = compile(diagram)
    tables = [{"image": np.load(data)["image"], "label": np.load(data)["label"]}]
    fit(one, ColumnLoader(tables, 16, seed=5), epochs=2, progress=False, distributed=False)
    for key, value in one.weights().items():
        np.testing.assert_allclose(two.weights()[key].numpy(), value.detach().numpy(), rtol=0, atol=1e-5)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_machines_meet_at_a_rendezvous_endpoint(tmp_path):
    """``--nnodes 2 --rdzv-endpoint``: two launchers (two "machines", one process each, both on 127.0.0.1) form
    one run of two ranks through torchrun's c10d rendezvous."""
    rng = np.random.default_rng(1)
    data = tmp_path / "data.safetensors"
    from safetensors.numpy import save_file

    save_file({"image": rng.random((32, 64), dtype=np.float32), "label": rng.integers(0, 10, 32)}, str(data))
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = []
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    for node in range(2):
        nodes.append(subprocess.Popen(
            [sys.executable, "-m", "diagrammatic_learning.cli", "train", str(EXAMPLES / "supervised.json"),
             "--data", str(data), "--epochs", "1", "--batch-size", "8", "--quiet", "--nproc-per-node", "1",
             "--nnodes", "2", "--rdzv-endpoint", endpoint, "--rdzv-id", "test-two-nodes",
             "--weights-out", str(tmp_path / f"w{node}.safetensors")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True))
    logs = []
    try:
        for p in nodes:
            logs.append(p.communicate(timeout=LAUNCH_TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        pytest.fail("the two-node run did not finish in time")
    finally:
        for p in nodes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert [p.returncode for p in nodes] == [0, 0], logs
    log = "\n".join(logs)
    assert log.count("2 processes of 8 examples per step") == 1, log  # one rank 0 over both machines
    written = [p for p in (tmp_path / "w0.safetensors", tmp_path / "w1.safetensors") if p.exists()]
    assert len(written) == 1  # by the machine whose process got rank 0


# ----------------------------------------------------------------------------- in this process, a group of one


@pytest.fixture
def group_of_one(tmp_path):
    """A one-rank gloo group through a file store (no sockets), destroyed after the test."""
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_a_group_of_one_trains_like_plain_fit_and_lets_go_of_ddp(group_of_one, tmp_path):
    import gc

    from diagrammatic_learning.torch_backend import DistributedOptions

    from diagrammatic_learning.torch_backend import distributed

    teacher = compile(load(EXAMPLES / "distillation.json"))
    session = distributed.start(teacher, None)
    wrapped = {id(p) for p in session.ddp.parameters()}
    assert wrapped == {id(p) for p in teacher["student"].parameters()}  # the frozen teacher is not in DDP
    session.close()

    diagram = load(EXAMPLES / "multitask.json")
    tables = worker.small_tables(diagram)
    models = []
    for option in (DistributedOptions(time_communication=True), None, False):
        torch.manual_seed(1)
        model = compile(diagram, dtype="float64")
        loader = ColumnLoader(tables, 16, seed=1)
        gc.collect()
        gc.disable()  # the DDP wrapper must go when fit returns, by reference counting, before any later backward
        try:
            histories = [fit(model, loader, epochs=1, lr=0.01, progress=False, distributed=option)
                         for _ in range(2)]
            assert not [o for o in gc.get_objects() if type(o) is torch.nn.parallel.DistributedDataParallel]
        finally:
            gc.enable()
        models.append((model, histories))
    models = [models[0], models[2]]  # with timing, and plain (the run without timing trains the same)
    (ddp_model, ddp_histories), (plain_model, plain_histories) = models
    for key, value in plain_model.weights().items():
        np.testing.assert_allclose(ddp_model.weights()[key].numpy(), value.numpy(), rtol=0, atol=1e-12)
    assert all(len(h.communication) == 1 and h.communication[0] > 0 for h in ddp_histories)
    assert all(h.communication == [] for h in plain_histories)
    np.testing.assert_allclose(ddp_histories[1].steps, plain_histories[1].steps, rtol=0, atol=1e-12)


def test_a_distributed_sampler_gets_each_epoch_number(group_of_one):
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    diagram = load(EXAMPLES / "supervised.json")
    rng = np.random.default_rng(2)
    dataset = TensorDataset(torch.from_numpy(rng.random((12, 64), dtype=np.float32)),
                            torch.from_numpy(rng.integers(0, 10, 12)))
    sampler = DistributedSampler(dataset, shuffle=True, seed=3)
    epochs_seen = []
    original = sampler.set_epoch
    sampler.set_epoch = lambda e: (epochs_seen.append(e), original(e))[1]  # type: ignore[method-assign]
    loader = DataLoader(dataset, batch_size=4, sampler=sampler,
                        collate_fn=lambda rows: {"image": torch.stack([r[0] for r in rows]),
                                                 "label": torch.stack([r[1] for r in rows])})
    history = fit(compile(diagram), loader, epochs=3, progress=False)
    assert epochs_seen == [0, 1, 2] and len(history.steps) == 9
