"""Sharded data without processes: ``ColumnLoader`` shards, memory-mapped column files, per-rank checks, the
command line each launched process gets."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from diagrammatic_learning.cli import build_parser
from diagrammatic_learning.columnfiles import map_columns, map_npz, map_safetensors
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.io import load
from diagrammatic_learning.torch_backend import commands
from diagrammatic_learning.torch_backend.data import ColumnLoader, columns_for, read_data, row_block
from diagrammatic_learning.torch_backend.distributed import rank_device

# ----------------------------------------------------------------------------- ColumnLoader shards


def rows_of(batch: dict[str, torch.Tensor]) -> list[int]:
    return batch["i"].tolist()


@pytest.mark.parametrize("n,batch,world,drop_last", [(96, 8, 2, False), (37, 5, 3, False), (37, 5, 3, True),
                                                     (2, 4, 3, False), (50, 7, 1, False)])
def test_shards_are_disjoint_cover_and_agree_with_one_loader_of_the_global_batch(n, batch, world, drop_last):
    table = {"i": np.arange(n)}
    for epoch_count in (1, 3):
        shards = [ColumnLoader(table, batch, seed=7, drop_last=drop_last, rank=r, world_size=world)
                  for r in range(world)]
        whole = ColumnLoader(table, batch * world, seed=7, drop_last=drop_last)
        assert len({len(s) for s in shards}) == 1  # every rank takes the same number of steps
        epochs = []
        for _ in range(epoch_count):
            per_rank = [[rows_of(b) for b in s] for s in shards]
            global_batches = [sorted(sum((per_rank[r][k] for r in range(world)), []))
                              for k in range(len(shards[0]))]
            seen = sum(global_batches, [])
            padded = -(-n // world) * world
            if not drop_last:
                assert sorted(set(seen)) == list(range(n))  # covering
                assert len(seen) == padded  # disjoint but for the padding
            if n % world == 0:
                assert global_batches == [sorted(rows_of(b)) for b in whole]
            epochs.append(global_batches)
        if epoch_count == 3 and n > 2:
            assert epochs[0] != epochs[1]  # reshuffled every epoch


def test_other_tables_are_split_per_step_and_sharded_is_a_copy():
    main, few = {"i": np.arange(64)}, {"f": np.arange(10)}
    loader = ColumnLoader([main, few], 4, seed=1)
    shards = [loader.sharded(r, 2) for r in range(2)]
    whole = ColumnLoader([main, few], 8, seed=1)
    assert loader.world_size == 1 and len(loader) == 16 and len(shards[0]) == 8
    for b0, b1, w in zip(*shards, whole):
        assert sorted(b0["f"].tolist() + b1["f"].tolist()) == sorted(w["f"].tolist())
        assert len(b0["f"]) == len(b1["f"]) == 4
    with pytest.raises(ValueError, match="already sharded"):
        shards[0].sharded(0, 2)
    with pytest.raises(ValueError, match="rank"):
        ColumnLoader(main, 4, rank=2, world_size=2)


def test_row_blocks_tile_the_rows():
    for n in (0, 1, 5, 96):
        for world in (1, 2, 3, 7):
            blocks = [row_block(n, r, world) for r in range(world)]
            assert sum((list(range(n))[b] for b in blocks), []) == list(range(n))


def test_each_rank_checks_its_own_block_of_rows(tmp_path):
    diagram = load("examples/supervised.json")
    labels = np.arange(20) % 10
    labels[15] = 42  # in rank 1's block of 2
    tables = [{"image": np.zeros((20, 64), np.float32), "label": labels}]
    columns_for(diagram, tables, "f.npz", shard=(0, 2))
    with pytest.raises(DiagramError) as e:
        columns_for(diagram, tables, "f.npz", shard=(1, 2))
    assert e.value.code == "batch-index-range"
    with pytest.raises(DiagramError):
        columns_for(diagram, tables, "f.npz")


# ----------------------------------------------------------------------------- memory-mapped column files


def columns() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.random((10, 3), dtype=np.float32), "y": rng.integers(0, 5, 10), "z": np.zeros((0, 2)),
            "s": np.full((), 2.5)}


@pytest.mark.parametrize("kind", ["safetensors", "npz"])
def test_column_files_are_mapped_with_the_values_of_a_whole_read(tmp_path, kind):
    path = tmp_path / f"c.{kind}"
    want = columns()
    save_file(want, str(path)) if kind == "safetensors" else np.savez(path, **want)
    got = map_columns(path)
    assert got is not None and set(got) == set(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and np.array_equal(got[k], v)
    assert isinstance(got["x"], np.memmap) and got["x"].flags.writeable  # copy-on-write: torch.from_numpy is quiet
    got["x"][0, 0] = 99.0  # a private copy: the file is untouched
    assert np.array_equal(map_columns(path)["x"], want["x"])
    tables = read_data(str(path))
    assert any(isinstance(t.get("x"), np.memmap) for t in tables)


def test_compressed_npz_and_odd_layouts_are_read_whole(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", x=np.ones((4, 2)))
    assert map_npz(tmp_path / "c.npz") is None
    np.savez(tmp_path / "f.npz", x=np.asfortranarray(np.ones((4, 2))))
    assert map_npz(tmp_path / "f.npz") is None
    np.savez(tmp_path / "b.npz", x=np.ones(4, ">f8"))
    assert map_npz(tmp_path / "b.npz") is None
    assert np.array_equal(read_data(str(tmp_path / "c.npz"))[0]["x"], np.ones((4, 2)))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_damaged_column_files_never_map_wrongly(tmp_path_factory, data):
    """Any byte flipped, cut or appended: either the mapping equals what NumPy/safetensors read, or None."""
    from safetensors.numpy import load as st_load

    path = tmp_path_factory.mktemp("fuzz") / data.draw(st.sampled_from(["c.safetensors", "c.npz"]))
    want = {"x": np.arange(12, dtype=np.float32).reshape(4, 3), "y": np.arange(4)}
    save_file(want, str(path)) if path.suffix == ".safetensors" else np.savez(path, **want)
    raw = bytearray(path.read_bytes())
    action = data.draw(st.sampled_from(["flip", "cut", "append"]))
    if action == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    elif action == "cut":
        del raw[data.draw(st.integers(0, len(raw) - 1)):]
    else:
        raw += bytes(data.draw(st.binary(min_size=1, max_size=16)))
    path.write_bytes(bytes(raw))
    got = map_safetensors(path) if path.suffix == ".safetensors" else map_npz(path)
    if got is None:
        return
    try:
        if path.suffix == ".safetensors":
            eager = dict(st_load(bytes(raw)))
        else:
            with np.load(path, allow_pickle=False) as f:
                eager = {k: f[k] for k in f.files}
    except Exception:  # noqa: BLE001 - the library refuses what we mapped: only harmless if the mapping is in bounds
        eager = None
    if eager is not None:
        assert set(got) == set(eager)
        for k in got:
            assert got[k].dtype == eager[k].dtype and got[k].shape == eager[k].shape
            assert np.array_equal(got[k], eager[k], equal_nan=got[k].dtype.kind == "f")
    else:  # NumPy's zip reader may refuse what is still a consistent stored member; it must lie inside the file
        assert path.suffix == ".npz"
        for v in got.values():
            assert v.nbytes <= len(raw)


def test_a_huge_declared_shape_is_not_mapped(tmp_path):
    path = tmp_path / "h.npz"
    np.savez(path, x=np.ones(4))
    raw = path.read_bytes().replace(b"'shape': (4,)", b"'shape': (4000000000000,)")
    path.write_bytes(raw)
    assert map_npz(path) is None
    with zipfile.ZipFile(path):  # still a zip: the whole-file reader gets it and refuses it its own way
        pass


# ----------------------------------------------------------------------------- the command line of each process


def test_launched_processes_get_the_same_train_options():
    parser = build_parser()
    argv = ["train", "--data", "digits:image", "--epochs", "3", "--seed=4", "--quiet", "--lr", "0.01",
            "--nproc-per-node", "2", "--nnodes", "1", "--backend", "gloo", "--", "-weird.json"]
    args = parser.parse_args(argv)
    child = commands._worker_argv(commands._TRAIN_PARSER[0], args)
    assert "--nproc-per-node" not in " ".join(child) and "--nnodes" not in " ".join(child)
    again = parser.parse_args(child)
    for key, value in vars(args).items():
        if key not in commands.LAUNCH_OPTIONS and key != "func":
            assert getattr(again, key) == value, key
    assert again.nproc_per_node is None and again.diagram == "-weird.json"


def test_a_launched_process_refuses_to_launch_again(monkeypatch, capsys):
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    args = build_parser().parse_args(["train", "x.json", "--data", "digits", "--nproc-per-node", "2"])
    assert args.func(args) == 1
    assert "started by a launcher" in capsys.readouterr().err
    assert rank_device("cuda") == torch.device("cuda", 0) and rank_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_device("cuda") == torch.device("cuda", 3) and rank_device("cuda:1") == torch.device("cuda", 1)


def test_several_machines_need_a_rendezvous_endpoint(capsys):
    args = build_parser().parse_args(["train", "x.json", "--data", "digits", "--nproc-per-node", "2", "--nnodes", "2"])
    assert args.func(args) == 2
    assert "--rdzv-endpoint" in capsys.readouterr().err
