"""Hostile inputs, one test per class of issue 9: each is generated here, small, and must end in a clean
``DiagramError`` (or a clean CLI error) in bounded time and memory, never a traceback, a hang or a
half-written file. The last part fuzzes the readers with Hypothesis: bytes in, only ``DiagramError`` out."""

from __future__ import annotations

import io
import json
import math
import os
import stat
import struct
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from diagrammatic_learning import DiagramError, load, save
from diagrammatic_learning.cli import main as dlearn
from diagrammatic_learning.files import UnreadableFile, atomic_write, read_bytes
from diagrammatic_learning.io import parse_document, read_document
from diagrammatic_learning.limits import MAX_PARAMETERS, check_parameter_count
from diagrammatic_learning.reference import evaluate as reference_evaluate
from diagrammatic_learning.torch_backend import compile
from diagrammatic_learning.tensorfiles import (UnreadTensor, check_batch, check_weights, parameter_shapes,
                                               read_npz, read_safetensors)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUPERVISED = EXAMPLES / "supervised.json"
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, modes and symlinks are POSIX")


def supervised_doc() -> dict:
    return json.loads(SUPERVISED.read_text())


def supervised_weights(value: float = 0.01) -> dict[str, np.ndarray]:
    return {k: np.full(s, value, np.float32) for k, s in parameter_shapes(load(SUPERVISED)).items()}


def codes(call) -> list[tuple[str, str]]:
    with pytest.raises(DiagramError) as info:
        call()
    return [(p.code, p.pointer) for p in info.value.problems]


def safetensors_bytes(entries: dict[str, tuple[str, list[int], bytes]], header: dict | None = None) -> bytes:
    """A safetensors file from (dtype, shape, raw bytes) per key, or with a header given as is."""
    if header is None:
        header, offset = {}, 0
        for key, (dtype, shape, raw) in entries.items():
            header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
            offset += len(raw)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(raw for _, _, raw in entries.values())


# ----------------------------------------------------------------------------- files that are not files


@POSIX
@pytest.mark.parametrize("reader", ["diagram", "weights", "batch", "npz", "cli-validate"])
def test_a_fifo_is_refused_without_blocking(tmp_path, reader, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # a writer that would feed the reader forever, were it to block waiting for one
    result: dict = {}

    def run():
        try:
            if reader == "diagram":
                load(fifo)
            elif reader == "weights":
                read_safetensors(fifo, "weights")
            elif reader == "batch":
                read_safetensors(fifo, "batch")
            elif reader == "npz":
                read_npz(fifo)
            else:
                result["exit"] = dlearn(["validate", str(fifo)])
        except DiagramError as e:
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the reader blocked on a FIFO"
    if reader == "cli-validate":
        captured = capsys.readouterr()
        assert result["exit"] == 1 and "FIFO" in captured.out + captured.err
    else:
        code = {"diagram": "malformed-json", "npz": "batch-file"}.get(reader, f"{reader}-file")
        assert result["error"].code == code and "FIFO" in str(result["error"])


@POSIX
@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_and_folders_are_refused_at_once(tmp_path):
    started = time.perf_counter()
    assert codes(lambda: load("/dev/zero")) == [("malformed-json", "/dev/zero")]
    assert codes(lambda: read_safetensors("/dev/zero"))[0][0] == "weights-file"
    assert codes(lambda: read_safetensors("/dev/zero", "batch"))[0][0] == "batch-file"
    assert codes(lambda: read_npz("/dev/zero"))[0][0] == "batch-file"
    assert codes(lambda: load(tmp_path))[0][0] == "malformed-json"
    assert codes(lambda: read_safetensors(tmp_path))[0][0] == "weights-file"
    assert time.perf_counter() - started < 2


def test_a_diagram_over_the_size_cap_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)  # sparse: no disk used, and it is never read
    with pytest.raises(DiagramError) as info:
        load(path)
    assert info.value.code == "malformed-json" and "more than the 67108864 bytes allowed" in str(info.value)
    with pytest.raises(UnreadableFile, match="more than the 10 bytes"):
        read_bytes(SUPERVISED, 10)


# ----------------------------------------------------------------------------- safetensors


@pytest.mark.parametrize("dtype, nbytes", [("BF16", 2), ("F8_E4M3", 1), ("F8_E5M2", 1), ("F8_E8M0", 1),
                                           ("F6_E2M3", None), ("F4", None), ("C64", 8)])
def test_dtypes_the_library_does_not_read_are_weights_dtype(tmp_path, dtype, nbytes):
    d = load(SUPERVISED)
    weights = supervised_weights()
    key = "classifier.layers.0.bias"
    n = weights[key].size
    raw = bytes(n * nbytes) if nbytes else bytes(n * {"F6_E2M3": 6, "F4": 4}[dtype] // 8)
    entries = {k: ("F32", list(v.shape), v.tobytes()) for k, v in weights.items() if k != key}
    entries[key] = (dtype, [n], raw)
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_bytes(entries))
    tensors = read_safetensors(path)
    assert isinstance(tensors[key], UnreadTensor) and tensors[key].dtype == dtype
    assert codes(lambda: check_weights(d, tensors, str(path))) == [("weights-dtype", f"{path}#{key}")]
    # every backend's entry point, not only the shared check
    assert codes(lambda: compile(SUPERVISED, weights=path))[0] == ("weights-dtype", f"{path}#{key}")
    batch = {"image": np.zeros((2, 64), np.float32), "label": np.zeros(2, np.int64)}
    assert codes(lambda: reference_evaluate(SUPERVISED, path, batch))[0][0] == "weights-dtype"


def test_a_bf16_batch_column_is_batch_dtype(tmp_path):
    path = tmp_path / "b.safetensors"
    path.write_bytes(safetensors_bytes({"image": ("BF16", [2, 64], bytes(256)),
                                        "label": ("I64", [2], bytes(16))}))
    columns = read_safetensors(path, "batch")
    assert codes(lambda: check_batch(load(SUPERVISED), columns, str(path))) == [("batch-dtype", f"{path}#image")]
    model = compile(SUPERVISED, dtype="float64")
    assert codes(lambda: model.evaluate(columns))[0] == ("batch-dtype", "batch#image")
    assert codes(lambda: reference_evaluate(SUPERVISED, supervised_weights(), path))[0][0] == "batch-dtype"


@pytest.mark.parametrize("mutate, what", [
    (lambda h: h.update(__metadata__={"a": 1}), "__metadata__"),
    (lambda h: h["x"].update(dtype="F128"), "unknown dtype"),
    (lambda h: h["x"].update(shape=[-1]), "shape"),
    (lambda h: h["x"].update(shape=[10 ** 30]), "shape"),
    (lambda h: h["x"].update(shape=[2 ** 40, 2 ** 40]), "too large for any array"),
    (lambda h: h["x"].update(shape=[2 ** 20, 2 ** 20]), "bytes for a"),
    (lambda h: h["x"].update(dtype=["F64"]), "unknown dtype"),
    (lambda h: h["x"].update(shape=[2 ** 62 - 1, 0], data_offsets=[0, 0]), "too large for any array"),
    (lambda h: h["x"].update(dtype="F4", shape=[2 ** 61, 2 ** 5, 0], data_offsets=[0, 0]), "too large for any"),
    (lambda h: h["x"].update(data_offsets=[4, 0]), "data_offsets"),
    (lambda h: h["x"].update(extra=1), "an entry is"),
    (lambda h: h["y"].update(data_offsets=[8, 16]), "gap or overlap"),
])
def test_inconsistent_headers_are_weights_file(tmp_path, mutate, what):
    header = {"x": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]},
              "y": {"dtype": "F64", "shape": [1], "data_offsets": [16, 24]}}
    mutate(header)
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_bytes({"x": ("F64", [2], bytes(16)), "y": ("F64", [1], bytes(8))}, header))
    with pytest.raises(DiagramError) as info:
        read_safetensors(path)
    assert info.value.code == "weights-file" and what in str(info.value)


def test_a_header_claiming_huge_sizes_allocates_nothing(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 2 ** 63) + b"{}")
    assert "more than the 100000000 allowed" in str(pytest.raises(DiagramError, read_safetensors, path).value)
    header = json.dumps({"x": {"dtype": "F64", "shape": [10 ** 12], "data_offsets": [0, 8 * 10 ** 12]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    assert "8000000000000 bytes, but 8 follow" in str(pytest.raises(DiagramError, read_safetensors, path).value)
    dup = b'{"x": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}, "x": {"dtype": "F64", "shape": [1], ' \
          b'"data_offsets": [0, 8]}}'
    path.write_bytes(struct.pack("<Q", len(dup)) + dup + bytes(8))
    assert "names 'x' twice" in str(pytest.raises(DiagramError, read_safetensors, path).value)


def test_files_written_by_the_safetensors_library_read_back_exactly(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float64).reshape(2, 3), "b": np.array([1, -2], np.int64),
              "c": np.zeros((0, 4), np.float32), "d": np.array(3.5, np.float32), "e": np.array([True, False])}
    save_file(arrays, str(tmp_path / "x.safetensors"), metadata={"k": "v"})
    back = read_safetensors(tmp_path / "x.safetensors")
    assert set(back) == set(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v)
    back["a"][0, 0] = 7.0  # writable, like safetensors' own arrays


# ----------------------------------------------------------------------------- weights through the Python API


def test_non_finite_weights_are_weights_value_in_files_and_mappings(tmp_path):
    weights = supervised_weights()
    weights["classifier.layers.2.bias"][3] = np.nan
    weights["classifier.layers.0.weight"][0, 0] = np.inf
    path = tmp_path / "w.safetensors"
    save_file(weights, str(path))
    want = [("weights-value", f"{path}#classifier.layers.0.weight"), ("weights-value", f"{path}#classifier.layers.2.bias")]
    assert codes(lambda: compile(SUPERVISED, weights=path)) == want
    assert codes(lambda: reference_evaluate(SUPERVISED, path, {}))[:2] == want
    assert [c for c, _ in codes(lambda: compile(SUPERVISED, weights=weights))] == ["weights-value"] * 2


def test_load_weights_is_all_or_nothing_with_meta_bf16_ragged_and_nan_tensors():
    model = compile(SUPERVISED, dtype="float64")
    before = {k: v.clone() for k, v in model.weights().items()}
    good = {k: torch.full(s, 0.5, dtype=torch.float64) for k, s in parameter_shapes(load(SUPERVISED)).items()}
    for bad_key, bad, code in [
        ("classifier.layers.2.bias", torch.empty(10, device="meta", dtype=torch.float64), "weights-value"),
        ("classifier.layers.2.bias", torch.zeros(10, dtype=torch.bfloat16), "weights-dtype"),
        ("classifier.layers.2.bias", torch.full((10,), float("nan"), dtype=torch.float64), "weights-value"),
        ("classifier.layers.2.bias", [[1.0, 2.0], [3.0]], "weights-shape"),
        ("classifier.layers.2.bias", [1.0, None], "weights-dtype"),
    ]:
        tensors = dict(good, **{bad_key: bad})  # the bad key is the last: earlier ones would be copied first
        with pytest.raises(DiagramError) as info:
            model.load_weights(tensors)
        assert info.value.code == code and info.value.pointer == f"weights#{bad_key}", (code, info.value)
        assert all(torch.equal(before[k], v) for k, v in model.weights().items()), f"{code}: something was copied"


def test_ragged_lists_through_the_reference_api_are_clean_errors():
    weights = {k: v.tolist() for k, v in supervised_weights().items()}
    weights["classifier.layers.2.bias"] = [1.0, [2.0]]
    assert codes(lambda: reference_evaluate(SUPERVISED, weights, {}))[0] == \
        ("weights-shape", "weights#classifier.layers.2.bias")
    batch = {"image": [[0.0] * 64, [0.0] * 3], "label": [1, 2]}
    assert codes(lambda: reference_evaluate(SUPERVISED, supervised_weights(), batch))[0] == ("batch-shape", "batch#image")


@pytest.mark.parametrize("column, value, code", [
    ("image", lambda: torch.empty(2, 64, device="meta", dtype=torch.float64), "batch-dtype"),
    ("label", lambda: torch.empty(2, device="meta", dtype=torch.int64), "batch-dtype"),
    ("image", lambda: [[0.0] * 64, [0.0] * 3], "batch-shape"),
    ("image", lambda: torch.zeros(2, 64, dtype=torch.bfloat16), "batch-dtype"),
])
def test_hostile_batch_columns_through_the_torch_api(column, value, code):
    model = compile(SUPERVISED, dtype="float64")
    batch = {"image": torch.zeros(2, 64, dtype=torch.float64), "label": torch.zeros(2, dtype=torch.int64)}
    batch[column] = value()
    assert codes(lambda: model.evaluate(batch)) == [(code, f"batch#{column}")]


# ----------------------------------------------------------------------------- the parameter limit


@pytest.mark.parametrize("size", [10 ** 10, 2 ** 53 - 1])
def test_compile_counts_parameters_before_allocating(size):
    doc = supervised_doc()
    doc["objects"][1]["shape"] = [size]
    doc["arrows"][2]["architecture"]["layers"][0]["in_features"] = size
    started = time.perf_counter()
    assert codes(lambda: compile(doc)) == [("too-many-parameters", "/arrows/2")]
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("size", [2 ** 53, 10 ** 30, 10 ** 300])
def test_integers_beyond_2_to_the_53_are_bad_value(size):
    doc = supervised_doc()
    doc["objects"][1]["shape"] = [size]
    doc["arrows"][2]["architecture"]["layers"][0]["in_features"] = size
    doc["x-big"] = size  # ignored
    assert codes(lambda: compile(doc)) == [("bad-value", "/objects/1/shape/0"),
                                           ("bad-value", "/arrows/2/architecture/layers/0/in_features")]


def test_the_parameter_limit_can_be_raised_and_lowered(monkeypatch):
    count = check_parameter_count(load(SUPERVISED))
    assert count == 64 * 128 + 128 + 128 * 10 + 10 and count < MAX_PARAMETERS
    assert codes(lambda: compile(SUPERVISED, max_parameters=count - 1)) == [("too-many-parameters", "/arrows/2")]
    compile(SUPERVISED, max_parameters=count)
    monkeypatch.setenv("DLEARN_MAX_PARAMETERS", "100")
    assert codes(lambda: compile(SUPERVISED))[0][0] == "too-many-parameters"
    compile(SUPERVISED, max_parameters=10 ** 6)  # the argument beats the environment
    monkeypatch.setenv("DLEARN_MAX_PARAMETERS", "lots")
    assert codes(lambda: compile(SUPERVISED)) == [("bad-value", "DLEARN_MAX_PARAMETERS")]


# ----------------------------------------------------------------------------- .npz


def npz_member(header: dict, payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def test_npz_reads_plain_and_compressed_arrays(tmp_path):
    a, b = np.arange(6.0).reshape(2, 3), np.asfortranarray(np.arange(6).reshape(3, 2))
    np.savez(tmp_path / "p.npz", a=a, b=b)
    np.savez_compressed(tmp_path / "c.npz", a=a, b=b)
    for name in ("p.npz", "c.npz"):
        got = read_npz(tmp_path / name)
        assert np.array_equal(got["a"], a) and np.array_equal(got["b"], b) and got["b"].dtype == b.dtype


@pytest.mark.parametrize("member, what", [
    (npz_member({"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)}, bytes(16)), "declares shape"),
    (npz_member({"descr": "|O", "fortran_order": False, "shape": (1,)}, bytes(8)), "Python objects"),
    (b"\x93NUMPY\x03\x00" + bytes(20), "version (3, 0)"),
    (b"not an array", "magic"),
])
def test_npz_headers_are_checked_before_reading(tmp_path, member, what):
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", member)
    with pytest.raises(DiagramError) as info:
        read_npz(path)
    assert info.value.code == "batch-file" and what in str(info.value)


def test_a_deflate_bomb_is_refused_by_its_declared_size_and_a_lying_one_by_its_crc(tmp_path):
    path = tmp_path / "bomb.npz"
    header = {"descr": "<f8", "fortran_order": False, "shape": (2 ** 22,)}  # 32 MiB of zeros, ~32 KB compressed
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", npz_member(header, bytes(8 * 2 ** 22)))
    assert path.stat().st_size < 100_000
    with pytest.raises(DiagramError, match="more than the 1000000 allowed"):
        read_npz(path, max_bytes=1_000_000)
    assert read_npz(path)["x"].shape == (2 ** 22,)
    # the same member declaring 1000 bytes: unpacking stops there and the CRC fails
    data = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).infolist()[0]
    for offset in (info.header_offset + 22, data.rfind(b"PK\x01\x02") + 24):  # local and central headers
        data[offset:offset + 4] = struct.pack("<I", 1000)
    path.write_bytes(bytes(data))
    assert pytest.raises(DiagramError, read_npz, path).value.code == "batch-file"


# ----------------------------------------------------------------------------- the document


def test_an_integer_literal_over_4300_digits_is_bad_value_not_a_value_error(tmp_path):
    text = SUPERVISED.read_text().replace('"max_terms"', '"x"').replace(
        '"format_version": "1.0",', '"format_version": "1.0", "max_terms": ' + "9" * 5000 + ",")
    path = tmp_path / "d.json"
    path.write_text(text)
    with pytest.raises(DiagramError) as info:  # an integer, read as one (SPEC §1), beyond ±(2^53 − 1)
        load(path)
    assert [(p.code, p.pointer) for p in info.value.problems] == [("bad-value", "/max_terms")]
    assert "an integer of 5000 digits" in str(info.value)
    big = parse_document('{"x-big": ' + "1" * 5000 + ', "n": -' + "2" * 4500 + "}")
    assert big["x-big"] > 2 ** 53 and big["n"] < -(2 ** 53) and repr(big["n"]) == "-<an integer of 4500 digits>"
    assert parse_document('{"n": ' + "1" * 300 + "}") == {"n": int("1" * 300)}  # exactly


@pytest.mark.parametrize("depth", [513, 990, 100_000])
def test_deep_nesting_is_malformed_json_at_any_depth(tmp_path, depth):
    path = tmp_path / "d.json"
    doc_text = SUPERVISED.read_text().rstrip().rstrip("}") + ', "x-deep": ' + "[" * depth + "]" * depth + "}"
    path.write_text(doc_text)
    assert codes(lambda: load(path)) == [("malformed-json", "")]
    doc = supervised_doc()
    nested: list = []
    for _ in range(min(depth, 5000)):
        nested = [nested]
    doc["x-deep"] = nested
    assert codes(lambda: load(doc)) == [("malformed-json", "")]  # a document built in Python, too


def test_nesting_up_to_the_limit_is_fine(tmp_path):
    doc = supervised_doc()
    nested: list = []
    for _ in range(510):  # top-level object is depth 1, "x-deep" holds 511 levels
        nested = [nested]
    doc["x-deep"] = nested
    load(doc)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    load(path)


@pytest.mark.parametrize("place, mutate", [
    ("/name", lambda d: d.update(name="x\ud800")),
    ("/description", lambda d: d.update(description="\udfff")),
    ("/arrows/0/column", lambda d: d["arrows"][0].update(column="im\ud800age")),
    ("/objects/1/name", lambda d: d["objects"][1].update(name="X\ud800")),
])
def test_lone_surrogates_are_bad_value_and_nothing_crashes_later(tmp_path, place, mutate, capsys):
    doc = supervised_doc()
    mutate(doc)
    with pytest.raises(DiagramError) as info:
        load(doc)
    assert ("bad-value", place) in [(p.code, p.pointer) for p in info.value.problems]
    str(info.value).encode("utf-8")  # the error itself can be printed
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))  # ensure_ascii: "\ud800" in the file
    for argv in (["validate", str(path)], ["show", str(path)], ["draw", str(path), "-o", str(tmp_path / "d.dot")],
                 ["glue", str(path), str(SUPERVISED), "-o", str(tmp_path / "g.json")]):
        assert dlearn(argv) == 1, argv
        captured = capsys.readouterr()
        assert "bad-value" in captured.out + captured.err
    assert not (tmp_path / "d.dot").exists() and not (tmp_path / "g.json").exists()


@pytest.mark.parametrize("ptr, mutate", [
    ("/objects/1/name", lambda d: d["objects"][1].update(name="X\n")),
    ("/arrows/2/name", lambda d: d["arrows"][2].update(name="classifier\n")),
])
def test_names_ending_in_a_newline_are_not_names(ptr, mutate):
    doc = supervised_doc()
    mutate(doc)
    assert ("bad-value", ptr) in codes(lambda: load(doc))


def test_a_numeric_format_version_is_wrong_type_and_other_problems_stay():
    doc = supervised_doc()
    doc["format_version"] = 1.0
    doc["objects"][1]["dtype"] = "float16"
    doc["bogus"] = 1
    assert codes(lambda: load(doc)) == [("unknown-key", "/bogus"), ("wrong-type", "/format_version"),
                                        ("bad-value", "/objects/1/dtype")]
    doc.pop("format_version")
    assert ("missing-key", "/format_version") in codes(lambda: load(doc))


def test_kl_div_temperature_is_bounded():
    doc = json.loads((EXAMPLES / "distillation.json").read_text())
    for eq in doc["equations"]["explicit"]:
        if eq.get("distance", {}).get("name") == "kl_div":
            eq["distance"]["temperature"] = 1e8
    assert any(c == ("bad-value", p) for c in codes(lambda: load(doc))
               for p in [c[1]] if p.endswith("/distance/temperature"))
    for eq in doc["equations"]["explicit"]:
        if eq.get("distance", {}).get("name") == "kl_div":
            eq["distance"]["temperature"] = 100
    load(doc)


def test_a_name_ending_in_a_backslash_draws(tmp_path):
    doc = supervised_doc()
    doc["name"] = "trailing\\"
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    assert dlearn(["draw", str(path), "-o", str(tmp_path / "d.dot")]) == 0
    text = (tmp_path / "d.dot").read_text()
    assert 'label="trailing\\\\ "' in text and text.startswith("digraph diagram {")
    from diagrammatic_learning.draw import GraphvizNotFound, graphviz_bytes
    try:
        svg = graphviz_bytes(load(path), "svg")
    except GraphvizNotFound:
        pytest.skip("Graphviz's dot is not installed")
    assert b"trailing\\" in svg


# ----------------------------------------------------------------------------- CLI numbers


@pytest.mark.parametrize("argv", [["--seed", str(2 ** 64)], ["--seed", "-1"], ["--lr", "inf"], ["--lr", "nan"],
                                  ["--lr=-1e-3"]])
def test_train_refuses_out_of_range_numbers_cleanly(argv, capsys):
    with pytest.raises(SystemExit) as info:
        dlearn(["train", str(SUPERVISED), "--data", "digits", *argv])
    assert info.value.code == 2 and "must be" in capsys.readouterr().err


def test_fit_refuses_a_non_finite_learning_rate():
    from diagrammatic_learning.torch_backend import fit

    batch = {"image": np.zeros((2, 64), np.float32), "label": np.zeros(2, np.int64)}
    for lr in (math.inf, math.nan, 0.0):
        assert codes(lambda: fit(compile(SUPERVISED), [batch], lr=lr, progress=False)) == [("bad-value", "lr")]


# ----------------------------------------------------------------------------- writing files


@POSIX
def test_saving_keeps_the_mode_and_writes_through_a_symlink(tmp_path):
    d = load(SUPERVISED)
    target = tmp_path / "real.json"
    target.write_text("old")
    target.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    save(d, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert load(target).name == "supervised"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]
    new = tmp_path / "new.json"
    umask = os.umask(0o022)
    try:
        save(d, new)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o644


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt(), SystemExit(143)])
def test_a_failed_write_leaves_no_temporary_file_and_the_old_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "w.bin"
    path.write_bytes(b"old")

    def failing_fsync(fd):
        raise failure

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(type(failure)):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["w.bin"]


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"),
                    reason="unnamed temporary files (O_TMPFILE) are Linux's")
def test_a_process_killed_while_writing_leaves_no_temporary_file(tmp_path):
    """SIGKILL cannot be caught: the bytes wait in an unnamed file, which the kernel drops with the process."""
    import signal
    import subprocess
    import sys
    import time
    path, ready = tmp_path / "w.bin", tmp_path.parent / f"{tmp_path.name}.ready"
    path.write_bytes(b"old")
    code = (f"import os, time\n"
            f"from diagrammatic_learning.files import atomic_write\n"
            f"def stuck(fd):\n"
            f"    open({str(ready)!r}, 'w').close()\n"
            f"    time.sleep(60)\n"
            f"os.fsync = stuck\n"
            f"atomic_write({str(path)!r}, b'new' * 100000)\n")
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the writer never reached its fsync"
            time.sleep(0.02)
        assert [p.name for p in tmp_path.iterdir()] == ["w.bin"]  # mid-write: no named temporary file
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        ready.unlink(missing_ok=True)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["w.bin"]


@POSIX
def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced: list[bool] = []
    real = os.fsync

    def recording_fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write(tmp_path / "x", b"data")
    assert synced == [False, True]


def test_sigterm_becomes_an_exception_in_the_cli():
    from diagrammatic_learning.cli import _terminate

    with pytest.raises(SystemExit) as info:
        _terminate(15, None)
    assert info.value.code == 143


def test_writing_into_a_missing_folder_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="folders are not created"):
        atomic_write(tmp_path / "no" / "such" / "x", b"data")
    assert list(tmp_path.iterdir()) == []


def test_glue_refuses_outputs_that_collide(tmp_path, capsys):
    w = tmp_path / "w.safetensors"
    save_file(supervised_weights(), str(w))
    first = tmp_path / "a.json"
    first.write_text(SUPERVISED.read_text())
    before = first.read_bytes()
    # -o x.safetensors: the weights would go to x.safetensors too (OUT with .safetensors)
    argv = ["glue", str(first), str(SUPERVISED), "--weights", str(w), str(w), "-o", str(tmp_path / "x.safetensors")]
    assert dlearn(argv) == 1
    assert "are the same file" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()
    assert dlearn(["glue", str(first), str(SUPERVISED), "-o", str(first)]) == 1
    assert "is the input FIRST" in capsys.readouterr().err and first.read_bytes() == before
    assert dlearn(["glue", str(first), str(SUPERVISED), "--weights", str(w), str(w), "-o", str(tmp_path / "g.json"),
                   "--weights-out", str(w)]) == 1
    assert "is the input --weights 1" in capsys.readouterr().err
    assert dlearn(["draw", str(first), "-o", str(first)]) == 1 and first.read_bytes() == before


def test_train_weights_out_does_not_create_folders(tmp_path, capsys):
    out = tmp_path / "missing" / "w.safetensors"
    assert dlearn(["train", str(SUPERVISED), "--data", "digits", "--epochs", "1", "--weights-out", str(out),
                   "--quiet"]) == 1
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "missing").exists()


# ----------------------------------------------------------------------------- fuzzing the readers

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
_GOOD_ST = safetensors_bytes({"classifier.layers.0.bias": ("F32", [2], bytes(8)), "b": ("I64", [1], bytes(8))})


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Bytes near ``seed`` (flips, cuts, splices) and arbitrary bytes."""
    def mutate(data: bytes, i: int, b: int, cut: bool) -> bytes:
        if not data:
            return bytes([b])
        i %= len(data)
        return data[:i] if cut else data[:i] + bytes([b]) + data[i + 1:]

    near = st.builds(mutate, st.just(seed), st.integers(0, 10 ** 6), st.integers(0, 255), st.booleans())
    return st.one_of(st.binary(max_size=300), near, st.builds(lambda a, b: a + b, near, st.binary(max_size=40)))


@FUZZ
@given(data=_mutations(_GOOD_ST))
def test_fuzz_safetensors_bytes_give_only_diagram_errors(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("st") / "w.safetensors"
    path.write_bytes(data)
    for what in ("weights", "batch"):
        try:
            read_safetensors(path, what)
        except DiagramError as e:
            assert e.code == f"{what}-file"


def _npz_seed() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3.0), b=np.array([[1, 2]]))
    return buf.getvalue()


@FUZZ
@given(data=_mutations(_npz_seed()))
def test_fuzz_npz_bytes_give_only_diagram_errors(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("npz") / "x.npz"
    path.write_bytes(data)
    try:
        read_npz(path, max_bytes=1 << 20)
    except DiagramError as e:
        assert e.code == "batch-file"


@FUZZ
@given(data=_mutations(SUPERVISED.read_bytes()))
def test_fuzz_diagram_bytes_give_only_diagram_errors(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("doc") / "d.json"
    path.write_bytes(data)
    try:
        d = load(path)
    except DiagramError as e:
        str(e).encode("utf-8")  # printable
        return
    save(d, path)  # what loads also saves


_JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))


@FUZZ
@given(value=st.recursive(_JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=4)), max_leaves=30),
       where=st.sampled_from(["name", "objects", "arrows", "equations", "max_terms", "format_version",
                              "description"]))
def test_fuzz_document_values_give_only_diagram_errors(value, where):
    doc = supervised_doc()
    doc[where] = value
    try:
        load(doc)
    except DiagramError as e:
        str(e).encode("utf-8")


def test_read_document_names_the_missing_file(tmp_path):
    assert codes(lambda: read_document(tmp_path / "none.json")) == [("file-not-found", str(tmp_path / "none.json"))]


# ----------------------------------------------------------------------------- fuzzing safetensors headers

_any_json = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False)
                         | st.text(max_size=4), lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_sizes = st.integers(-2, 2 ** 64) | st.sampled_from([0, 1, 2, 2 ** 61, 2 ** 62 - 1, 2 ** 62, 2 ** 63])
_entry = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F64", "I64", "BOOL", "F4", "BF16", "F128"]) | _any_json,
    "shape": st.lists(_sizes, max_size=4) | _any_json,
    "data_offsets": st.lists(_sizes, min_size=2, max_size=2) | _any_json,
}, optional={"extra": _any_json})


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["w", "v", "__metadata__"]), _entry | _any_json, max_size=3),
       st.integers(0, 64))
def test_any_safetensors_header_reads_or_is_a_weights_error(tmp_path_factory, header, data_bytes):
    """Whatever a header declares, reading it returns arrays or raises the library's own error, at once."""
    path = tmp_path_factory.mktemp("fuzz") / "w.safetensors"
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(data_bytes))
    try:
        read_safetensors(path)
    except DiagramError as e:
        assert e.code in ("weights-file", "weights-dtype")
