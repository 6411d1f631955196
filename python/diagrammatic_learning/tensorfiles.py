"""Weights and batches: reading safetensors files and checking them against a diagram (SPEC §8).

Shared by every backend so that all reject the same inputs with the same codes.
Arrays here are NumPy; backends convert after the checks pass. Nothing is
ever unpickled: safetensors files hold raw tensors only.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from math import prod
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from safetensors.numpy import save as _st_save

from .diagram import CategoricalObject, DataArrow, Diagram, TensorObject
from .errors import DiagramError, Problem
from .files import RegularFile, UnreadableFile, atomic_write
from .layers import architecture_parameter_shapes

FLOAT_DTYPES = ("float32", "float64")

# SPEC §8: a safetensors header is at most this many bytes (the limit of the safetensors library itself).
MAX_HEADER_BYTES = 100_000_000
# safetensors dtypes this library reads, as little-endian NumPy dtypes ...
_NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
                 "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
# ... and those it knows but does not read (bits per entry): weights-dtype / batch-dtype, not a crash
_UNREAD_BITS = {"BF16": 16, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4, "C64": 64}
_MAX_DIM = 1 << 62
_MAX_ARRAY_BYTES = 1 << 63  # NumPy refuses shapes whose non-zero sizes times the item size reach this


class UnreadTensor:
    """A tensor of a safetensors file whose dtype (``BF16``, ``F8_E4M3``, …) this library does not read.

    It has a ``dtype`` (the safetensors name) and a ``shape``, so that the checks report it as
    ``weights-dtype``/``batch-dtype``; its bytes are never read.
    """

    def __init__(self, dtype: str, shape: tuple[int, ...]):
        self.dtype = dtype
        self.shape = shape
        self.ndim = len(shape)

    def __repr__(self) -> str:
        return f"UnreadTensor({self.dtype!r}, {list(self.shape)})"


def parameter_shapes(diagram: Diagram) -> dict[str, tuple[int, ...]]:
    """Canonical parameter names (``arrow.layers.0.weight``) → shapes, for every architecture model."""
    out: dict[str, tuple[int, ...]] = {}
    for arrow in diagram.model_arrows():
        if arrow.architecture is not None:
            for path, shape in architecture_parameter_shapes(arrow.architecture).items():
                out[f"{arrow.name}.{path}"] = shape
    return out


class _BadFile(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _BadFile(f"the header names {k!r} twice")
        out[k] = v
    return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _entries(header: Any) -> list[tuple[str, str, tuple[int, ...], int, int]]:
    """(key, dtype, shape, begin, end) of each tensor of a parsed header, checked as the safetensors library does."""
    if not isinstance(header, dict):
        raise _BadFile("the header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _BadFile("__metadata__ must map strings to strings")
    out = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _BadFile(f"tensor {key!r}: an entry is {{dtype, shape, data_offsets}}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or (dtype not in _NUMPY_DTYPES and dtype not in _UNREAD_BITS):
            raise _BadFile(f"tensor {key!r}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_int(n) and 0 <= n < _MAX_DIM for n in shape):
            raise _BadFile(f"tensor {key!r}: the shape must be a list of sizes ≥ 0")
        bits = np.dtype(_NUMPY_DTYPES[dtype]).itemsize * 8 if dtype in _NUMPY_DTYPES else _UNREAD_BITS[dtype]
        if prod(n for n in shape if n) * bits >= 8 * _MAX_ARRAY_BYTES:  # even with no element, as NumPy says
            raise _BadFile(f"tensor {key!r}: a {dtype} tensor of shape {shape} is too large for any array")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(n) and n >= 0 for n in offsets)
                and offsets[0] <= offsets[1]):
            raise _BadFile(f"tensor {key!r}: data_offsets must be [begin, end] with 0 ≤ begin ≤ end")
        nbits = prod(shape) * bits
        if nbits % 8 or nbits // 8 != offsets[1] - offsets[0]:
            raise _BadFile(f"tensor {key!r}: {offsets[1] - offsets[0]} bytes for a {dtype} tensor of shape {shape}")
        out.append((key, dtype, tuple(shape), offsets[0], offsets[1]))
    return out


def _read_file(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file; every declared size is checked against the file before anything is read."""
    with RegularFile(path) as f:
        head = f.read(8)
        if len(head) < 8:
            raise _BadFile(f"it has {f.size} bytes, fewer than the 8 of a header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise _BadFile(f"its header claims {n} bytes, more than the {MAX_HEADER_BYTES} allowed")
        if 8 + n > f.size:
            raise _BadFile(f"its header claims {n} bytes, but the file has {f.size}")
        try:
            header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError) as e:
            raise _BadFile(f"the header is not JSON: {e}") from None
        entries = _entries(header)
        data_len = f.size - 8 - n
        expected = 0
        for key, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
            if begin != expected:
                raise _BadFile(f"tensor {key!r} starts at byte {begin}, not {expected}: the data has a gap or overlap")
            expected = end
        if expected != data_len:
            raise _BadFile(f"the tensors take {expected} bytes, but {data_len} follow the header")
        buffer = bytearray(data_len)
        if f.read_into(buffer) != data_len:
            raise _BadFile("the file shrank while it was read")
    out: dict[str, Any] = {}
    for key, dtype, shape, begin, end in entries:
        if dtype in _UNREAD_BITS:
            out[key] = UnreadTensor(dtype, shape)
        else:
            dt = np.dtype(_NUMPY_DTYPES[dtype])
            out[key] = np.frombuffer(buffer, dt, (end - begin) // dt.itemsize, begin).reshape(shape)
    return out


def read_safetensors(path: str | os.PathLike, what: str = "weights") -> dict[str, Any]:
    """Read a safetensors file into NumPy arrays; ``<what>-file`` naming the file if it is unreadable.

    Only a regular file is read (SPEC §8), and only after its header (at most ``MAX_HEADER_BYTES``)
    has been checked against the file's size: memory never exceeds the file. Tensors of dtypes
    the library does not read (BF16, F8_*, F6_*, F4, C64) come back as ``UnreadTensor``, which the
    checks report as ``<what>-dtype``.
    """
    path = Path(path)
    try:
        return _read_file(path)
    except UnreadableFile as e:
        raise DiagramError.one(f"{what}-file", str(path), f"cannot read {what} file: {e}") from None
    except _BadFile as e:
        raise DiagramError.one(f"{what}-file", str(path), f"{path} is not a readable safetensors file: {e}") from None


# The most bytes of arrays an .npz file may unpack to (its members' declared sizes, summed).
MAX_NPZ_BYTES = 1 << 30


def read_npz(path: str | os.PathLike, what: str = "batch", max_bytes: int = MAX_NPZ_BYTES) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (never unpickled); ``<what>-file`` naming the file if it is unreadable.

    Sizes are checked before anything is unpacked: each member's declared size against ``max_bytes``
    (summed over members), and each array header's shape and dtype against that size, so that a
    header claiming 10^12 rows or a small deflate bomb is refused without allocating. A member
    that unpacks to more than it declares fails its CRC check.
    """
    path = Path(path)
    try:
        with RegularFile(path):  # a FIFO or a device is refused before zipfile touches it
            pass
        return _read_npz(path, max_bytes)
    except UnreadableFile as e:
        raise DiagramError.one(f"{what}-file", str(path), f"cannot read {what} file: {e}") from None
    except (_BadFile, OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as e:
        raise DiagramError.one(f"{what}-file", str(path), f"{path} is not a readable .npz file of arrays: "
                                                          f"{e}") from None


class UnreadNpyVersion(Exception):
    """An ``.npy`` header of a format version other than 1.0 and 2.0."""

    def __init__(self, version: tuple[int, int]):
        super().__init__(f".npy format version {version} is not read")
        self.version = version


def read_npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from the header of the ``.npy`` array at ``f``'s position, ``f`` left at
    the data; ``UnreadNpyVersion`` for versions other than 1.0 and 2.0 (nothing is ever unpickled)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise UnreadNpyVersion(version)


def _read_npz(path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as z:
        members = z.infolist()
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise _BadFile(f"its arrays would take {total} bytes, more than the {max_bytes} allowed")
        for m in members:
            if not m.filename.endswith(".npy"):
                raise _BadFile(f"member {m.filename!r} is not an .npy array")
            with z.open(m) as f:
                try:
                    shape, fortran, dtype = read_npy_header(f)
                except UnreadNpyVersion as e:
                    raise _BadFile(f"member {m.filename!r}: .npy format version {e.version} is not read") from None
                if dtype.hasobject:
                    raise _BadFile(f"member {m.filename!r} holds Python objects, which are never unpickled")
                need = prod(shape) * dtype.itemsize
                if need != m.file_size - f.tell():
                    raise _BadFile(f"member {m.filename!r} declares shape {list(shape)} of {dtype} ({need} bytes) "
                                   f"but holds {m.file_size - f.tell()} bytes")
                buffer = bytearray(need)
                view, done = memoryview(buffer), 0
                while done < need:
                    got = f.readinto(view[done:])
                    if not got:
                        raise _BadFile(f"member {m.filename!r} is truncated")
                    done += got
            out[m.filename[:-4]] = np.frombuffer(buffer, dtype).reshape(shape, order="F" if fortran else "C")
    return out


def write_safetensors(tensors: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write arrays to a safetensors file atomically, keys sorted."""
    arrays = {k: np.ascontiguousarray(tensors[k]) for k in sorted(tensors)}
    atomic_write(path, _st_save(arrays))


def _dtype_name(array: Any) -> str:
    """'float32', 'int64', … for NumPy arrays, torch tensors and Julia arrays seen from Python."""
    return str(array.dtype).removeprefix("torch.")


def as_arrays(source: Mapping[str, Any], what: str, where: str) -> dict[str, Any]:
    """A mapping name → array or tensor from the Python API: tensors and arrays kept, the rest (nested lists,
    numbers) made NumPy arrays; a ragged list is ``<what>-shape``, an unconvertible value ``<what>-dtype``."""
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in source.items():
        if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic):
            out[key] = value
            continue
        try:
            out[key] = np.asarray(value)
        except ValueError as e:  # ragged nested lists
            problems.append(Problem(f"{what}-shape", f"{where}#{key}", f"{key!r} is not a rectangular array: {e}"))
        except (TypeError, OverflowError) as e:
            problems.append(Problem(f"{what}-dtype", f"{where}#{key}", f"{key!r} is not an array of numbers: {e}"))
    if problems:
        raise DiagramError(problems)
    return out


def _values_problem(t: Any) -> str | None:
    """Why a float weight tensor's values are unusable (a meta tensor, a NaN or infinity), or None (SPEC §8)."""
    if getattr(t, "is_meta", False):
        return "is a meta tensor: it has a shape but no values"
    if isinstance(t, np.ndarray):
        finite = bool(np.isfinite(t).all())
    elif hasattr(t, "isfinite"):  # a torch tensor, on any device
        finite = bool(t.isfinite().all())
    else:
        finite = bool(np.isfinite(np.asarray(t)).all())
    return None if finite else "holds NaN or infinite values; every weight must be a finite number"


def check_tensors(want: Mapping[str, tuple[int, ...]], tensors: Mapping[str, Any], source: str,
                  prefix: str = "") -> list[Problem]:
    """Problems with ``tensors`` (keys ``prefix + name``) against the wanted shapes: SPEC §8's weights codes.

    Every key, dtype, shape and value is checked, so that a caller can copy nothing unless all pass.
    """
    problems: list[Problem] = []
    for name, shape in want.items():
        key = prefix + name
        if key not in tensors:
            problems.append(Problem("weights-missing-key", f"{source}#{key}",
                                    f"{source} has no tensor {key!r} (shape {list(shape)})"))
            continue
        t = tensors[key]
        dtype = _dtype_name(t)
        if dtype not in FLOAT_DTYPES:
            problems.append(Problem("weights-dtype", f"{source}#{key}",
                                    f"{key!r} has dtype {dtype}; weights are float32 or float64"))
        if tuple(t.shape) != tuple(shape):
            problems.append(Problem("weights-shape", f"{source}#{key}",
                                    f"{key!r} has shape {list(t.shape)}, the diagram needs {list(shape)}"))
        elif dtype in FLOAT_DTYPES:
            why = _values_problem(t)
            if why is not None:
                problems.append(Problem("weights-value", f"{source}#{key}", f"{key!r} {why}"))
    for key in tensors:
        if not key.startswith(prefix) or key[len(prefix):] not in want:
            problems.append(Problem("weights-unexpected-key", f"{source}#{key}",
                                    f"{source} has a tensor {key!r} that is no parameter here"))
    return problems


def check_weights(diagram: Diagram, tensors: Mapping[str, Any], source: str = "weights") -> None:
    """Check a weights mapping against the diagram's parameters: every key, shape, dtype and value (SPEC §8)."""
    problems = check_tensors(parameter_shapes(diagram), tensors, source)
    if problems:
        raise DiagramError(problems)


def load_weights(diagram: Diagram, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and check a weights file; all or nothing."""
    tensors = read_safetensors(path, "weights")
    check_weights(diagram, tensors, str(path))
    return tensors


def check_batch(diagram: Diagram, batch: Mapping[str, Any], source: str = "batch") -> dict[str, int]:
    """Check a batch (column → array, batch first) against the diagram's data arrows (SPEC §8).

    Every data arrow checks the column it reads: two arrows may read one column into different
    objects or for different data objects, and each has its own rules. A column gets at most one
    problem, from the first data arrow (in declaration order) that it fails.

    Returns the batch size of each data object that has data arrows.
    """
    problems: list[Problem] = []
    sizes: dict[str, tuple[int, str]] = {}
    failed: set[str] = set()
    for arrow in diagram.arrows.values():
        if not isinstance(arrow, DataArrow) or arrow.column in failed:
            continue
        problem = _column_problem(diagram, arrow, batch, source, sizes)
        if problem is not None:
            problems.append(problem)
            failed.add(arrow.column)
    if problems:
        raise DiagramError(problems)
    return {k: v[0] for k, v in sizes.items()}


def _column_problem(diagram: Diagram, arrow: DataArrow, batch: Mapping[str, Any], source: str,
                    sizes: dict[str, tuple[int, str]]) -> Problem | None:
    """What is wrong with the column ``arrow`` reads, or None; records its data object's batch size."""
    where = f"{source}#{arrow.column}"
    if arrow.column not in batch:
        return Problem("batch-missing-column", where,
                       f"{source} has no column {arrow.column!r} (read by data arrow {arrow.name!r})")
    col = batch[arrow.column]
    shape, dtype = tuple(col.shape), _dtype_name(col)
    target = diagram.objects[arrow.target]
    if isinstance(target, TensorObject):
        per, want_int = target.shape, not target.is_float
    elif isinstance(target, CategoricalObject):
        want_int = (arrow.encoding or "index") == "index"
        per = target.shape if want_int else target.shape + (target.classes,)
    else:
        return None
    if getattr(col, "is_meta", False):
        return Problem("batch-dtype", where, f"column {arrow.column!r} is a meta tensor: it has a shape but no values")
    if not shape:
        return Problem("batch-shape", where, f"column {arrow.column!r} is a scalar; columns are batch first")
    if shape[0] == 0:
        return Problem("batch-shape", where, f"column {arrow.column!r} has no examples; a batch has B ≥ 1")
    if want_int and dtype != "int64":
        return Problem("batch-dtype", where, f"column {arrow.column!r} must be int64, got {dtype}")
    if not want_int and dtype not in FLOAT_DTYPES:
        return Problem("batch-dtype", where, f"column {arrow.column!r} must be float32 or float64, got {dtype}")
    if shape[1:] != per:
        return Problem("batch-shape", where, f"column {arrow.column!r} has shape {list(shape)}; "
                                             f"data arrow {arrow.name!r} needs [B] + {list(per)}")
    prev = sizes.get(arrow.source)
    if prev is not None and prev[0] != shape[0]:
        return Problem("batch-size-mismatch", where,
                       f"column {arrow.column!r} has {shape[0]} examples, column {prev[1]!r} of the "
                       f"same data object {arrow.source!r} has {prev[0]}")
    sizes.setdefault(arrow.source, (shape[0], arrow.column))
    if isinstance(target, CategoricalObject) and want_int:
        values = np.asarray(col)
        if values.size and (values.min() < 0 or values.max() >= target.classes):
            return Problem("batch-index-range", where,
                           f"column {arrow.column!r} has class indices outside [0, {target.classes})")
    return None


def load_batch(diagram: Diagram, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and check a batch file."""
    batch = read_safetensors(path, "batch")
    check_batch(diagram, batch, str(path))
    return batch
