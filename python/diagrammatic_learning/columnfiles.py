"""Column files mapped instead of read: each process of a distributed run touches only the rows it uses.

A ``.safetensors`` file, and an ``.npz`` file whose members are stored
uncompressed (``np.savez``, not ``np.savez_compressed``), hold each column as
one contiguous little-endian block. ``map_columns`` returns those blocks as
copy-on-write memory maps: nothing is read until rows are indexed, the
operating system's page cache is shared by the processes of one machine, and
a process that indexes only its shard of the rows reads only those pages.
Anything else (compressed members, Fortran order, dtypes without a NumPy
twin, a file that does not describe itself consistently) returns ``None``,
and the caller reads the file whole as before, with that reader's checks and
errors. Nothing here allocates what a header declares: every size is checked
against the file's real size first.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from .tensorfiles import UnreadNpyVersion, read_npy_header

# safetensors dtype names with an exact little-endian NumPy twin (SPEC §8 columns are float32/64, int64)
SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                      "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit on the JSON header
_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, (version … sizes), name length, extra length


def _mapped(path: Path, dtype: np.dtype, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    if 0 in shape:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape)


def _shape(value: object) -> tuple[int, ...] | None:
    if not isinstance(value, list) or not all(type(v) is int and v >= 0 for v in value):
        return None
    return tuple(value)


def _library_accepts(path: Path) -> bool:
    """Whether the safetensors library opens the file (it checks the header as its format defines)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            return True
    except Exception:  # noqa: BLE001 - any refusal: the whole-file reader reports it with the library's message
        return False


def map_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """A safetensors file's tensors as memory maps, or None if it cannot be mapped exactly as the library reads it.

    The header is checked as the safetensors format requires: its length fits
    the file, every tensor's byte range matches its dtype and shape, and the
    ranges tile the data area in order without gaps or overlap; and the
    safetensors library itself must open the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return None
            n = int.from_bytes(head, "little")
            if n > MAX_HEADER_BYTES or 8 + n > size:
                return None
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in SAFETENSORS_DTYPES:
            return None
        shape, offsets = _shape(info.get("shape")), info.get("data_offsets")
        if shape is None or not (isinstance(offsets, list) and len(offsets) == 2
                                 and all(type(o) is int for o in offsets)):
            return None
        dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
        if offsets[1] - offsets[0] != int(np.prod(shape, dtype=object)) * dtype.itemsize:
            return None
        entries.append((offsets[0], offsets[1], name, dtype, shape))
    entries.sort(key=lambda e: (e[0], e[1]))
    end = 0
    for begin, stop, *_ in entries:
        if begin != end:
            return None
        end = stop
    if 8 + n + end != size or not _library_accepts(path):
        return None
    try:
        return {name: _mapped(path, dtype, 8 + n + begin, shape) for begin, _, name, dtype, shape in entries}
    except (OSError, ValueError):
        return None


def _npy_member(f, info: zipfile.ZipInfo, size: int) -> tuple[np.dtype, tuple[int, ...], int] | None:
    """Where an uncompressed ``.npy`` member's array starts in the zip file, with its dtype and shape; None if
    it cannot be mapped."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or not info.filename.endswith(".npy"):
        return None
    f.seek(info.header_offset)
    local = f.read(_ZIP_LOCAL_HEADER.size)
    if len(local) != _ZIP_LOCAL_HEADER.size:
        return None
    signature, name_len, extra_len = _ZIP_LOCAL_HEADER.unpack(local)
    if signature != b"PK\x03\x04":
        return None
    start = info.header_offset + _ZIP_LOCAL_HEADER.size + name_len + extra_len
    f.seek(start)
    try:
        shape, fortran, dtype = read_npy_header(f)
    except UnreadNpyVersion:
        return None
    if fortran or dtype.hasobject or dtype.byteorder == ">" or dtype.fields is not None:
        return None
    offset = f.tell()
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if offset - start + nbytes != info.file_size or offset + nbytes > size:
        return None
    return dtype, tuple(shape), offset


def map_npz(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """An ``.npz`` file's arrays as memory maps if every member is an uncompressed ``.npy``; None otherwise.

    The zip CRC of a mapped member is not checked: that would read every row,
    which mapping exists to avoid (safetensors files have no checksum either).
    """
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as z, open(path, "rb") as f:
            for info in z.infolist():
                found = _npy_member(f, info, size)
                if found is None:
                    return None
                dtype, shape, offset = found
                out[info.filename[:-len(".npy")]] = _mapped(path, dtype, offset, shape)
    except Exception:  # noqa: BLE001 - NumPy's header parser raises many kinds; the whole-file reader reports them
        return None
    return out


def map_columns(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """``map_safetensors`` or ``map_npz`` by the file's suffix; None when the file must be read whole."""
    suffix = Path(path).suffix
    if suffix == ".safetensors":
        return map_safetensors(path)
    if suffix == ".npz":
        return map_npz(path)
    return None
