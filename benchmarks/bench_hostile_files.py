"""Time and peak memory of rejecting each hostile file or size of issue 9 (readers, compile), in one run.

Every case runs in a fresh Python process, so that its peak resident memory (``ru_maxrss``) is its
own; the table shows the peak above a process that only imports the same modules. Target: each
hostile input answered with a ``DiagramError`` in under 1 s and 200 MB.

    .venv/bin/python benchmarks/bench_hostile_files.py
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SUPERVISED = ROOT / "examples" / "supervised.json"

CHILD = r"""
import json, resource, sys, time
import numpy as np
import torch
from diagrammatic_learning import DiagramError, load
from diagrammatic_learning.io import read_document
from diagrammatic_learning.tensorfiles import read_npz, read_safetensors
from diagrammatic_learning.torch_backend import compile
kind, path = sys.argv[1], sys.argv[2]
started = time.perf_counter()
outcome = "accepted"
try:
    if kind == "diagram":
        load(path)
    elif kind == "weights":
        read_safetensors(path)
    elif kind == "npz":
        read_npz(path)
    elif kind == "compile":
        compile(path)
except DiagramError as e:
    outcome = e.code
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "outcome": outcome}))
"""


def npz_member(header: dict, payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def make_cases(folder: Path) -> list[tuple[str, str, str]]:
    """(description, reader, path) of each hostile input, written into ``folder``."""
    cases = []
    doc_text = SUPERVISED.read_text()

    fifo = folder / "pipe.json"
    os.mkfifo(fifo)
    cases.append(("FIFO as the diagram", "diagram", str(fifo)))
    cases.append(("/dev/zero as the weights", "weights", "/dev/zero"))

    big = folder / "big.json"
    with open(big, "wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)
    cases.append(("sparse 64 MiB + 1 diagram", "diagram", str(big)))

    p = folder / "int.json"
    p.write_text(doc_text.replace('"format_version": "1.0",', '"format_version": "1.0", "max_terms": ' + "9" * 5000 + ","))
    cases.append(("5000-digit integer literal", "diagram", str(p)))

    p = folder / "deep.json"
    p.write_text(doc_text.rstrip().rstrip("}") + ', "x-deep": ' + "[" * 990 + "]" * 990 + "}")
    cases.append(("arrays nested 990 deep", "diagram", str(p)))

    p = folder / "deeper.json"
    p.write_text(doc_text.rstrip().rstrip("}") + ', "x-deep": ' + "[" * 100_000 + "]" * 100_000 + "}")
    cases.append(("arrays nested 100,000 deep", "diagram", str(p)))

    p = folder / "rows.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", npz_member({"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)}, bytes(16)))
    cases.append((".npz header claiming 10^12 rows", "npz", str(p)))

    p = folder / "bomb.npz"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(npz_member({"descr": "<f8", "fortran_order": False, "shape": (2 ** 28,)}, b""))
            chunk = bytes(1 << 24)
            for _ in range(128):
                f.write(chunk)
    cases.append((f".npz deflate bomb ({p.stat().st_size // 1024} KiB → 2 GiB)", "npz", str(p)))

    p = folder / "claims.safetensors"
    header = json.dumps({"x": {"dtype": "F64", "shape": [10 ** 12], "data_offsets": [0, 8 * 10 ** 12]}}).encode()
    p.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    cases.append(("safetensors header claiming 8 TB", "weights", str(p)))

    p = folder / "hugeheader.safetensors"
    p.write_bytes(struct.pack("<Q", 2 ** 63) + b"{}")
    cases.append(("safetensors header length 2^63", "weights", str(p)))

    doc = json.loads(doc_text)
    doc["objects"][1]["shape"] = [10 ** 10]
    doc["arrows"][2]["architecture"]["layers"][0]["in_features"] = 10 ** 10
    p = folder / "params.json"
    p.write_text(json.dumps(doc))
    cases.append(("compile: linear with in_features 10^10", "compile", str(p)))
    return cases


def run(kind: str, path: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CHILD, kind, path], capture_output=True, text=True, timeout=120,
                         env=env)
    if out.returncode != 0:
        return {"seconds": float("nan"), "maxrss_kib": 0, "outcome": "CRASH: " + out.stderr.strip()[-200:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = make_cases(folder)
        valid = folder / "valid.json"
        valid.write_text(SUPERVISED.read_text())
        baseline = run("diagram", str(valid))
        print(f"baseline (imports, then a valid diagram): {baseline['maxrss_kib'] / 1024:.0f} MiB peak")
        print(f"{'hostile input':<44} {'answer':<22} {'seconds':>8} {'MiB above baseline':>19}  target")
        for description, kind, path in cases:
            r = run(kind, path)
            extra = (r["maxrss_kib"] - baseline["maxrss_kib"]) / 1024
            ok = r["seconds"] < 1 and extra < 200 and not r["outcome"].startswith(("CRASH", "accepted"))
            print(f"{description:<44} {r['outcome']:<22} {r['seconds']:>8.3f} {extra:>19.1f}  {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
