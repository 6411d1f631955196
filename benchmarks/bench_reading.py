"""Reading at scale and reading hostile files: time and peak memory of load + validate + equations.

    python benchmarks/bench_reading.py [--only NAME ...] [--timeout 60] [--before PATH/TO/OLD/python]

Every case is a diagram document built here, written to a temporary file and
read by a fresh Python process (so one case's caches and memory never help
another): `read` (JSON), `schema` (format, version, JSON Schema), `checks`
(names, references, shapes: everything before the equations) and
`equations` (term enumeration, bounds, equations), then the whole `load` run
again under tracemalloc for the peak of Python allocations. A case that does
not finish within --timeout seconds is shown as such. With --before, the same
cases are also read by the package found at that path (e.g. an older checkout's
`python/` folder), side by side, with the ratio of total times.

Targets (issues 9 and 15): every hostile case answered (rejected or accepted)
in under 1 s and 200 MB; a valid 10,000-arrow fan-out read, validated and its
equations built in under 1 s; a 10,000-arrow layered DAG each phase < 5 s and
< 500 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

MODEL = {"kind": "model", "trainable": True,
         "architecture": {"layers": [{"type": "linear", "in_features": 4, "out_features": 4}]}}


def doc(objects: list, arrows: list, **top: Any) -> dict:
    return {"format": "learning-diagram", "format_version": "1.0", "objects": objects, "arrows": arrows, **top}


def tensor(name: str) -> dict:
    return {"name": name, "kind": "tensor", "shape": [4], "dtype": "float32"}


def data_arrow(name: str, source: str, target: str) -> dict:
    return {"name": name, "kind": "data", "source": source, "target": target, "column": name}


def model(name: str, source: Any, target: str) -> dict:
    return {"name": name, "source": source, "target": target, **MODEL}


def function(name: str, op: str, source: Any, target: str, **params: Any) -> dict:
    return {"name": name, "kind": "function", "op": op, "source": source, "target": target, **params}


# ----------------------------------------------------------------------------- valid diagrams at scale


def fan_out(n: int = 5000) -> dict:
    """X feeds n heads; each head's object also has its labels: 2n arrows, n equations."""
    objects = [{"name": "D", "kind": "data"}, tensor("X")] + [tensor(f"Y{i}") for i in range(n)]
    arrows = [data_arrow("x", "D", "X")]
    for i in range(n):
        arrows += [data_arrow(f"y{i}", "D", f"Y{i}"), model(f"f{i}", "X", f"Y{i}")]
    return doc(objects, arrows[:-1] + [arrows[-1]])


def layered(width: int = 357, layers: int = 14) -> dict:
    """Layers of objects, each fed by the one before it in its column (a model) and by its own data arrow.

    Object (l, j) has l + 1 terms, all but one trainable: about 200,000 equations from 10,000 arrows
    (max_equations raised to let them through).
    """
    objects = [{"name": "D", "kind": "data"}]
    arrows = []
    for layer in range(layers + 1):
        for j in range(width):
            objects.append(tensor(f"L{layer}_{j}"))
            arrows.append(data_arrow(f"d{layer}_{j}", "D", f"L{layer}_{j}"))
            if layer:
                arrows.append(model(f"m{layer}_{j}", f"L{layer - 1}_{j}", f"L{layer}_{j}"))
    return doc(objects, arrows, max_equations=10 ** 6)


def chain(n: int = 10000) -> dict:
    """A chain of n scale arrows: rejected (terms nest more than 100 deep) before any term is built."""
    objects = [{"name": "D", "kind": "data"}] + [tensor(f"X{i}") for i in range(n + 1)]
    arrows = [data_arrow("x", "D", "X0")] + [function(f"s{i}", "scale", f"X{i}", f"X{i + 1}", factor=0.5)
                                             for i in range(n)]
    return doc(objects, arrows)


def chain_100() -> dict:
    """The longest chain accepted: 100 scale arrows, 1 term per object (valid)."""
    return chain(100)


# ----------------------------------------------------------------------------- hostile shapes (issue 9, items 1-4)


def doubling(n: int = 40) -> dict:
    """Item 1: X_i = add(X_{i-1}, X_{i-1}): one term per object, 2^i leaves (6.7 KB at n = 40)."""
    objects = [{"name": "D", "kind": "data"}] + [tensor(f"X{i}") for i in range(n + 1)]
    arrows = [data_arrow("x", "D", "X0")] + [function(f"a{i}", "add", [f"X{i}", f"X{i}"], f"X{i + 1}")
                                             for i in range(n)]
    return doc(objects, arrows)


def mixed_product(n: int = 40) -> dict:
    """Item 2: add over n copies of X, which two data objects reach: 2^n combinations, 2 of them terms."""
    objects = [{"name": "D1", "kind": "data"}, {"name": "D2", "kind": "data"}, tensor("X"), tensor("Y")]
    arrows = [data_arrow("x1", "D1", "X"), data_arrow("x2", "D2", "X"), function("p", "add", ["X"] * n, "Y")]
    return doc(objects, arrows)


def mixed_product_chain(n: int = 20) -> dict:
    """Item 2 again: products of two sources over objects reached from two data objects, n deep."""
    objects = [{"name": "D1", "kind": "data"}, {"name": "D2", "kind": "data"}] + [tensor(f"X{i}") for i in range(n + 1)]
    arrows = [data_arrow("x1", "D1", "X0"), data_arrow("x2", "D2", "X0")]
    arrows += [function(f"p{i}", "add", [f"X{i}", f"X{i}"], f"X{i + 1}") for i in range(n)]
    return doc(objects, arrows)


def many_pairs(objects_: int = 16, terms: int = 256) -> dict:
    """Item 3: objects with 256 trainable terms each (the default max_terms): 32,640 pairs per object."""
    objects = [{"name": "D", "kind": "data"}, tensor("X")] + [tensor(f"Y{i}") for i in range(objects_)]
    arrows = [data_arrow("x", "D", "X")]
    arrows += [model(f"m{i}_{k}", "X", f"Y{i}") for i in range(objects_) for k in range(terms)]
    return doc(objects, arrows)


def many_pairs_64() -> dict:
    return many_pairs(64, 256)


def many_wide_objects(n: int = 10000, terms: int = 256) -> dict:
    """max_total_terms: X with 256 data arrows and n objects fed by one model from X, 256 terms each (1.7 MB,
    2.56 million terms; every object within max_terms): rejected once 100,000 terms are found in all."""
    objects = [{"name": "D", "kind": "data"}, tensor("X")] + [tensor(f"Y{i}") for i in range(n)]
    arrows = [data_arrow(f"x{k}", "D", "X") for k in range(terms)] + [model(f"m{i}", "X", f"Y{i}") for i in range(n)]
    return doc(objects, arrows)


def objects_only(n: int = 40000) -> dict:
    """Item 4: n objects (half data, half tensor) and no arrows."""
    objects = [{"name": f"D{i}", "kind": "data"} if i % 2 == 0 else tensor(f"T{i}") for i in range(n)]
    return doc(objects, [])


def long_term_text(n: int = 20000) -> dict:
    """Item 4: an explicit equation whose term text has n arguments (n spaces and commas): linear parsing."""
    objects = [{"name": "D", "kind": "data"}, tensor("X"), tensor("Y")]
    arrows = [data_arrow("x", "D", "X"), data_arrow("y", "D", "Y"), function("s", "add", ["X"] * n, "Y")]
    text = "s(" + " ,  ".join(["x"] * n) + " )"
    return doc(objects, arrows, equations={"automatic": False, "explicit": [{"lhs": text, "rhs": "y"}]})


def wide_shallow(width: int = 100, depth: int = 99, terms: int = 256) -> dict:
    """Every object with 256 constant terms: 100 chains of 99 scale arrows after one object fed by 256 columns.

    Valid (constant terms make no equations): bounded by max_terms per object, 2.5 million terms.
    """
    objects = [{"name": "D", "kind": "data"}, tensor("X")]
    arrows = [data_arrow(f"x{k}", "D", "X") for k in range(terms)]
    for c in range(width):
        for i in range(depth):
            objects.append(tensor(f"C{c}_{i}"))
            arrows.append(function(f"s{c}_{i}", "scale", "X" if i == 0 else f"C{c}_{i - 1}", f"C{c}_{i}",
                                   factor=0.5))
    return doc(objects, arrows)


def tangle(k: int = 7) -> dict:
    """A cycle-rich component: k objects, a model between every ordered pair, one data arrow."""
    objects = [{"name": "D", "kind": "data"}] + [tensor(f"V{i}") for i in range(k)]
    arrows = [data_arrow("v", "D", "V0")]
    arrows += [model(f"e{i}_{j}", f"V{i}", f"V{j}") for i in range(k) for j in range(k) if i != j]
    return doc(objects, arrows)


CASES: dict[str, tuple[str, Callable[[], dict]]] = {
    "fan-out 10k arrows": ("valid", fan_out),
    "layered DAG 10k arrows": ("valid", layered),
    "chain 100 (deepest valid)": ("valid", chain_100),
    "chain 10k arrows": ("hostile", chain),
    "1 add-doubling 40": ("hostile", doubling),
    "2 mixed product n=40": ("hostile", mixed_product),
    "2 mixed product chain 20": ("hostile", mixed_product_chain),
    "3 pairs 16x256 terms": ("hostile", many_pairs),
    "3 pairs 64x256 terms": ("hostile", many_pairs_64),
    "total 10k objects x 256 terms": ("hostile", many_wide_objects),
    "4 objects only 40k": ("hostile", objects_only),
    "4 term text 20k args": ("hostile", long_term_text),
    "wide 100x99, 256 terms each": ("hostile", wide_shallow),
    "tangle 7 (42 arrows)": ("hostile", tangle),
}

# ----------------------------------------------------------------------------- the worker (a fresh process)

WORKER = r"""
import json, sys, time, tracemalloc, resource
path = sys.argv[1]
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a runaway case stops at 4 GiB, not the machine
from diagrammatic_learning.errors import DiagramError
from importlib import import_module
io, validate, eqmod = (import_module(f"diagrammatic_learning.{m}") for m in ("io", "validate", "equations"))
t = {}

def phase(name, fn):
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        t[name] = time.perf_counter() - t0

def checks(doc):
    d = io.from_json(doc)
    validate.check_meaning(d, doc)
    return d

if sys.argv[2] == "peak":  # the whole load under tracemalloc: the peak of Python allocations
    tracemalloc.start()
    try:
        io.load(path)
    except (DiagramError, RecursionError, MemoryError):
        pass
    print(json.dumps({"peak": tracemalloc.get_traced_memory()[1] / 2 ** 20}))
    sys.exit(0)
try:
    doc = phase("read", lambda: io.read_document(path))
    phase("schema", lambda: validate.check_document(doc))
    d = phase("checks", lambda: checks(doc))
    n = len(phase("equations", lambda: eqmod.equations(d)))
    result = f"valid, {n} eq."
except DiagramError as e:
    result = f"{e.problems[0].code} x{len(e.problems)}" if e.problems else "error"
except RecursionError:
    result = "RecursionError"
except MemoryError:
    result = "MemoryError (4 GiB)"
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"times": t, "result": result, "rss": rss}))
"""


def run_case(path: Path, pythonpath: str, timeout: float) -> dict | None:
    """Phase times in one fresh process, then the peak of the whole load in another (None: timed out)."""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out: dict[str, Any] = {}
    for what in ("time", "peak"):
        try:
            run = subprocess.run([sys.executable, "-c", WORKER, str(path), what], env=env, capture_output=True,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            if what == "time":
                return None
            out["peak"] = None
            continue
        if run.returncode != 0:
            lines = run.stderr.strip().splitlines() or ["?"]
            return {"times": {}, "result": "crash: " + lines[-1][:60], "peak": None, "rss": 0}
        out.update(json.loads(run.stdout))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="case names (substrings) to run")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--before", help="a package folder to compare with (e.g. an older checkout's python/)")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent.parent / "python")
    phases = ("read", "schema", "checks", "equations")
    ref = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); sum(range(10 ** 7)); "
                          "print(time.perf_counter() - t)"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; reference loop sum(range(10**7)) = {float(ref):.3f} s")
    print(f"{'case':<30} {'KB':>7}  {'result':<26} " + " ".join(f"{p:>9}" for p in phases)
          + f" {'total s':>8} {'peak MB':>8} {'rss MB':>7}" + ("  before s  ratio  before result" if args.before else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for name, (kind, build) in CASES.items():
            if args.only and not any(o in name for o in args.only):
                continue
            path = Path(tmp) / "diagram.json"
            path.write_text(json.dumps(build()))
            kb = path.stat().st_size / 1024
            r = run_case(path, here, args.timeout)
            if r is None:
                line = f"{name:<30} {kb:>7.0f}  {'> timeout':<26}"
                total = None
            else:
                total = sum(r["times"].values())
                cells = " ".join(f"{r['times'][p]:>9.3f}" if p in r["times"] else f"{'-':>9}" for p in phases)
                peak = f"{r['peak']:>8.1f}" if r.get("peak") is not None else f"{'>' + format(args.timeout, 'g'):>8}"
                line = f"{name:<30} {kb:>7.0f}  {r['result'][:26]:<26} {cells} {total:>8.3f} {peak} {r['rss']:>7.0f}"
            if args.before:  # without the bounds an older reader does not know (it has none)
                old = Path(tmp) / "before.json"
                old.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items()
                                           if k not in ("max_term_size", "max_equations")}))
                b = run_case(old, args.before, args.timeout)
                if b is None:
                    line += f"  {'>' + format(args.timeout, 'g'):>8}  {'':>5}  timeout"
                else:
                    bt = sum(b["times"].values())
                    ratio = f"{bt / total:>5.1f}" if total else f"{'':>5}"
                    line += f"  {bt:>8.3f}  {ratio}  {b['result'][:24]}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
