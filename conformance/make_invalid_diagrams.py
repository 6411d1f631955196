"""Writes the invalid-diagram cases of the conformance suite: conformance/invalid/<case>/.

Each case is a `diagram.json` that every backend must reject with exactly one
problem, whose code and pointer are in `expected.json`. Each starts from the
valid diagram BASE below and breaks one thing. Run from the repository root:

    python conformance/make_invalid_diagrams.py

Deterministic: running it again rewrites the same bytes. (The invalid weights
and batch files, `weights-*` and `batch-*`, come from conformance/generate.py.)
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent / "invalid"

BASE: dict[str, Any] = {
    "format": "learning-diagram",
    "format_version": "1.0",
    "name": "base",
    "objects": [
        {"name": "D", "kind": "data"},
        {"name": "X", "kind": "tensor", "shape": [4], "dtype": "float32"},
        {"name": "H", "kind": "tensor", "shape": [3], "dtype": "float32"},
        {"name": "Y", "kind": "categorical", "classes": 3},
        {"name": "T", "kind": "tensor", "shape": [5], "dtype": "int64"},
    ],
    "arrows": [
        {"name": "x", "kind": "data", "source": "D", "target": "X", "column": "x"},
        {"name": "y", "kind": "data", "source": "D", "target": "Y", "column": "y"},
        {"name": "tokens", "kind": "data", "source": "D", "target": "T", "column": "tokens"},
        {"name": "backbone", "kind": "model", "source": "X", "target": "H", "trainable": True,
         "architecture": {"layers": [{"type": "linear", "in_features": 4, "out_features": 3}, {"type": "tanh"}]}},
        {"name": "head", "kind": "model", "source": "H", "target": "Y", "trainable": True,
         "architecture": {"layers": [{"type": "linear", "in_features": 3, "out_features": 3}]}},
        {"name": "teacher", "kind": "model", "source": "X", "target": "Y", "trainable": False,
         "architecture": {"layers": [{"type": "linear", "in_features": 4, "out_features": 3}]}},
    ],
    "equations": {"automatic": True, "explicit": [
        {"name": "distill", "lhs": "head(backbone(x))", "rhs": "teacher(x)",
         "distance": {"name": "kl_div", "temperature": 2.0}, "weight": 0.5}]},
}

Case = tuple[str, str, Callable[[dict], Any]]  # (expected code, expected pointer, mutation)


def arrow(d: dict, name: str) -> dict:
    return next(a for a in d["arrows"] if a["name"] == name)


def add_arrow(d: dict, a: dict) -> None:
    d["arrows"].append(a)


def set_explicit(d: dict, *eqs: dict) -> None:
    d["equations"]["explicit"] = list(eqs)


MODEL_XH = {"kind": "model", "trainable": True,
            "architecture": {"layers": [{"type": "linear", "in_features": 4, "out_features": 3}]}}

CASES: dict[str, Case] = {
    # --- document and form
    "not-a-diagram": ("not-a-diagram", "/format", lambda d: d.update(format="onnx")),
    "unsupported-version": ("unsupported-version", "/format_version", lambda d: d.update(format_version="2.0")),
    "missing-objects": ("missing-key", "/objects", lambda d: d.pop("objects")),
    "unknown-top-level-key": ("unknown-key", "/equation", lambda d: d.update(equation={})),
    "schema-key-not-a-string": ("wrong-type", "/$schema", lambda d: d.update({"$schema": 1})),
    "shape-not-a-list": ("wrong-type", "/objects/1/shape", lambda d: d["objects"][1].update(shape="4")),
    "unknown-dtype": ("bad-value", "/objects/1/dtype", lambda d: d["objects"][1].update(dtype="float16")),
    "unknown-layer-type": ("bad-value", "/arrows/3/architecture/layers/1/type",
                           lambda d: arrow(d, "backbone")["architecture"]["layers"][1].update(type="swish")),
    "unknown-layer-parameter": ("unknown-key", "/arrows/3/architecture/layers/0/activation",
                                lambda d: arrow(d, "backbone")["architecture"]["layers"][0].update(activation="relu")),
    "unknown-distance": ("bad-value", "/objects/3/distance/name",
                         lambda d: d["objects"][3].update(distance={"name": "wasserstein"})),
    "model-without-trainable": ("missing-key", "/arrows/4/trainable", lambda d: arrow(d, "head").pop("trainable")),
    "model-architecture-and-external": ("bad-value", "/arrows/4", lambda d: arrow(d, "head").update(external=True)),
    "bad-name": ("bad-value", "/arrows/4/name", lambda d: arrow(d, "head").update(name="the-head")),
    "label-smoothing-out-of-range": ("bad-value", "/objects/3/distance/label_smoothing",
                                     lambda d: d["objects"][3].update(
                                         distance={"name": "cross_entropy", "label_smoothing": 1.5})),
    "temperature-zero": ("bad-value", "/equations/explicit/0/distance/temperature",
                         lambda d: d["equations"]["explicit"][0]["distance"].update(temperature=0)),
    "temperature-too-large": ("bad-value", "/equations/explicit/0/distance/temperature",
                              lambda d: d["equations"]["explicit"][0]["distance"].update(temperature=1e8)),
    "name-ending-in-newline": ("bad-value", "/arrows/4/name", lambda d: arrow(d, "head").update(name="head\n")),
    "format-version-a-number": ("wrong-type", "/format_version", lambda d: d.update(format_version=1.0)),
    "lone-surrogate-in-description": ("bad-value", "/description", lambda d: d.update(description="a\ud800b")),
    "integer-beyond-2-to-the-53": ("bad-value", "/objects/1/shape/0", lambda d: d["objects"][1].update(shape=[2 ** 53])),
    # --- names and references
    "duplicate-object-name": ("duplicate-name", "/objects/5/name",
                              lambda d: d["objects"].append({"name": "Y", "kind": "categorical", "classes": 3})),
    "arrow-named-like-object": ("duplicate-name", "/arrows/6/name",
                                lambda d: add_arrow(d, {"name": "H", "source": "X", "target": "H", **MODEL_XH})),
    "unknown-target": ("unknown-object", "/arrows/6/target",
                       lambda d: add_arrow(d, {"name": "extra", "source": "X", "target": "Z", **MODEL_XH})),
    "unknown-product-source": ("unknown-object", "/arrows/6/source/1",
                               lambda d: add_arrow(d, {"name": "both", "kind": "function", "op": "concat",
                                                       "source": ["H", "G"], "target": "H"})),
    "arrow-into-data": ("arrow-into-data", "/arrows/6/target",
                        lambda d: add_arrow(d, {"name": "back", "kind": "function", "op": "identity",
                                                "source": "X", "target": "D"})),
    "model-from-data": ("arrow-from-data", "/arrows/6/source",
                        lambda d: add_arrow(d, {"name": "raw", "source": "D", "target": "H", **MODEL_XH})),
    "data-arrow-from-tensor": ("data-arrow-source", "/arrows/6/source",
                               lambda d: add_arrow(d, {"name": "h", "kind": "data", "source": "X", "target": "H",
                                                       "column": "h"})),
    "data-arrow-from-product": ("data-arrow-source", "/arrows/6/source",
                                lambda d: add_arrow(d, {"name": "xy", "kind": "data", "source": ["D", "D"],
                                                        "target": "H", "column": "h"})),
    "encoding-on-tensor": ("bad-value", "/arrows/0/encoding", lambda d: arrow(d, "x").update(encoding="index")),
    # --- kinds, arity, shapes, dtypes
    "model-from-categorical": ("kind-mismatch", "/arrows/6/source",
                               lambda d: add_arrow(d, {"name": "reread", "source": "Y", "target": "H", **MODEL_XH})),
    "one-hot-of-tensor": ("kind-mismatch", "/arrows/6/source",
                          lambda d: add_arrow(d, {"name": "oh", "kind": "function", "op": "one_hot",
                                                  "source": "H", "target": "H"})),
    "softmax-two-sources": ("function-arity", "/arrows/6/source",
                            lambda d: add_arrow(d, {"name": "sm", "kind": "function", "op": "softmax",
                                                    "source": ["H", "H"], "target": "H"})),
    "product-model-without-combine": ("missing-key", "/arrows/6/architecture/combine",
                                      lambda d: add_arrow(d, {"name": "fuse", "kind": "model", "trainable": True,
                                                              "source": ["X", "H"], "target": "H",
                                                              "architecture": {"layers": []}})),
    "product-model-wrong-branch-count": ("function-arity", "/arrows/6/architecture/inputs",
                                         lambda d: add_arrow(d, {"name": "fuse", "kind": "model", "trainable": True,
                                                                 "source": ["X", "H"], "target": "H",
                                                                 "architecture": {"inputs": [[], [], []],
                                                                                  "combine": "concat",
                                                                                  "layers": []}})),
    "combine-on-single-source": ("function-arity", "/arrows/4/architecture/combine",
                                 lambda d: arrow(d, "head")["architecture"].update(combine="add")),
    "linear-in-features": ("shape-mismatch", "/arrows/4/architecture/layers/0",
                           lambda d: arrow(d, "head")["architecture"]["layers"][0].update(in_features=5)),
    "model-output-shape": ("shape-mismatch", "/arrows/4/architecture/layers",
                           lambda d: arrow(d, "head")["architecture"]["layers"][0].update(out_features=4)),
    "conv-kernel-too-large": ("shape-mismatch", "/arrows/6/architecture/layers/1",
                              lambda d: add_arrow(d, {"name": "cnn", "kind": "model", "trainable": True,
                                                      "source": "I", "target": "H", "architecture": {"layers": [
                                                          {"type": "conv2d", "in_channels": 1, "out_channels": 2,
                                                           "kernel_size": [3, 3]},
                                                          {"type": "conv2d", "in_channels": 2, "out_channels": 2,
                                                           "kernel_size": [3, 3]},
                                                          {"type": "flatten"}]}})),
    "conv-groups": ("invalid-layer", "/arrows/6/architecture/layers/0",
                    lambda d: add_arrow(d, {"name": "cnn", "kind": "model", "trainable": True, "source": "I",
                                            "target": "H", "architecture": {"layers": [
                                                {"type": "conv2d", "in_channels": 1, "out_channels": 3,
                                                 "kernel_size": [2, 2], "groups": 2},
                                                {"type": "flatten"}]}})),
    "pool-padding-as-large-as-kernel": ("invalid-layer", "/arrows/6/architecture/layers/0",
                                        lambda d: add_arrow(d, {"name": "pool", "kind": "model", "trainable": True,
                                                                "source": "I", "target": "H", "architecture": {
                                                                    "layers": [{"type": "max_pool2d",
                                                                                "kernel_size": [2, 2],
                                                                                "padding": [0, 2, 0, 0]},
                                                                               {"type": "flatten"}]}})),
    "embedding-of-float": ("dtype-mismatch", "/arrows/6/architecture/layers/0",
                           lambda d: add_arrow(d, {"name": "emb", "kind": "model", "trainable": True,
                                                   "source": "X", "target": "H", "architecture": {"layers": [
                                                       {"type": "embedding", "num_embeddings": 7,
                                                        "embedding_dim": 3}]}})),
    "linear-of-int64": ("dtype-mismatch", "/arrows/6/architecture/layers/0",
                        lambda d: add_arrow(d, {"name": "lin", "kind": "model", "trainable": True,
                                                "source": "T", "target": "H", "architecture": {"layers": [
                                                    {"type": "linear", "in_features": 5, "out_features": 3}]}})),
    "model-into-int64": ("dtype-mismatch", "/arrows/6/target",
                         lambda d: add_arrow(d, {"name": "gen", "kind": "model", "trainable": True,
                                                 "source": "X", "target": "T", "architecture": {"layers": [
                                                     {"type": "linear", "in_features": 4, "out_features": 5}]}})),
    "flatten-wrong-target": ("shape-mismatch", "/arrows/6/target",
                             lambda d: add_arrow(d, {"name": "flat", "kind": "function", "op": "flatten",
                                                     "source": "X", "target": "H"})),
    "reshape-size": ("shape-mismatch", "/arrows/6/shape",
                     lambda d: add_arrow(d, {"name": "re", "kind": "function", "op": "reshape", "shape": [2, 3],
                                             "source": "X", "target": "H"})),
    "prepend-shapes": ("shape-mismatch", "/arrows/6/architecture/combine",
                       lambda d: add_arrow(d, {"name": "dec", "kind": "model", "trainable": True,
                                               "source": ["X", "H"], "target": "H",
                                               "architecture": {"combine": "prepend", "layers": []}})),
    "too-many-terms": ("too-many-terms", "/objects/3",
                       lambda d: (d.update(max_terms=3), add_arrow(d, {"name": "head2", "kind": "model",
                                                                        "source": "H", "target": "Y",
                                                                        "trainable": True, "architecture": {
                                                                            "layers": [{"type": "linear",
                                                                                        "in_features": 3,
                                                                                        "out_features": 3}]}}))),
    "term-too-large": ("term-too-large", "/objects/13", lambda d: doubling_chain(d, 10)),
    "terms-too-deep": ("too-many-terms", "/objects/104", lambda d: scale_chain(d, 101)),
    # BASE has 6 terms in all: x; backbone(x); y, head(backbone(x)), teacher(x); tokens. The 6th is
    # found while enumerating T (SPEC §5.3: the object under way is reported)
    "too-many-total-terms": ("too-many-total-terms", "/objects/4", lambda d: d.update(max_total_terms=5)),
    # --- equations and distances
    "term-syntax": ("term-syntax", "/equations/explicit/0/lhs",
                    lambda d: d["equations"]["explicit"][0].update(lhs="head(backbone(x)")),
    "term-unknown-arrow": ("unknown-arrow", "/equations/explicit/0/rhs",
                           lambda d: d["equations"]["explicit"][0].update(rhs="oracle(x)")),
    "term-arity": ("term-arity", "/equations/explicit/0/rhs",
                   lambda d: d["equations"]["explicit"][0].update(rhs="teacher(x, x)")),
    "term-type-mismatch": ("term-type-mismatch", "/equations/explicit/0/lhs",
                           lambda d: d["equations"]["explicit"][0].update(lhs="head(x)")),
    "term-not-rooted": ("term-not-rooted", "/equations/explicit/0/rhs",
                        lambda d: d["equations"]["explicit"][0].update(rhs="teacher")),
    "term-mixed-data": ("term-mixed-data", "/equations/explicit/0/lhs",
                        lambda d: (d["objects"].append({"name": "E", "kind": "data"}),
                                   add_arrow(d, {"name": "x2", "kind": "data", "source": "E", "target": "X",
                                                 "column": "x2"}),
                                   add_arrow(d, {"name": "mix", "kind": "function", "op": "add",
                                                 "source": ["H", "H"], "target": "H"}),
                                   d["equations"]["explicit"][0].update(lhs="head(mix(backbone(x), backbone(x2)))"))),
    "equation-object-mismatch": ("equation-object-mismatch", "/equations/explicit/0",
                                 lambda d: d["equations"]["explicit"][0].update(rhs="backbone(x)")),
    "duplicate-equation": ("duplicate-equation", "/equations/explicit/1",
                           lambda d: d["equations"]["explicit"].append(
                               {"lhs": "teacher(x)", "rhs": "head(backbone(x))", "weight": 2.0})),
    "duplicate-equation-name": ("duplicate-name", "/equations/explicit/1/name",
                                lambda d: d["equations"]["explicit"].append(
                                    {"name": "distill", "lhs": "teacher(x)", "rhs": "y"})),
    "mse-on-categorical": ("distance-not-allowed", "/objects/3/distance",
                           lambda d: d["objects"][3].update(distance={"name": "mse"})),
    "kl-on-tensor": ("distance-not-allowed", "/equations/explicit/0/distance",
                     lambda d: set_explicit(d, {"lhs": "backbone(x)", "rhs": "backbone(x)",
                                                "distance": {"name": "kl_div"}})),
    "too-many-equations": ("too-many-equations", "/objects/3", lambda d: d.update(max_equations=1)),
    "too-many-equations-explicit": ("too-many-equations", "/equations/explicit/1",
                                    lambda d: (d.update(max_equations=2), d["equations"]["explicit"].append(
                                        {"name": "constant", "lhs": "teacher(x)", "rhs": "y"}))),
    "labels-on-the-left": ("distance-input-mismatch", "/equations/explicit/0",
                           lambda d: set_explicit(d, {"lhs": "y", "rhs": "head(backbone(x))"})),
}


# --- JSON text (SPEC §1) that json.dumps cannot write: a case's mutation puts a placeholder
# string, which build() replaces by the raw text. Every reader must give the one expected problem.
def explicit(d: dict) -> dict:
    return d["equations"]["explicit"][0]


def nested_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


TEXT_CASES: dict[str, Case] = {
    # 1e400 is read as infinite (bad-value at its place), even where an x- key would hide it
    "number-overflows-to-infinity": ("bad-value", "/equations/explicit/0/weight",
                                     lambda d: (explicit(d).update(weight="@1e400@"),
                                                d.update({"x-ignored": "@1e400@"}))),
    # 1e-400 is read as 0.0, so a temperature of 1e-400 is a temperature of zero
    "number-underflows-to-zero": ("bad-value", "/equations/explicit/0/distance/temperature",
                                  lambda d: explicit(d)["distance"].update(temperature="@1e-400@")),
    "nan-literal": ("malformed-json", "", lambda d: explicit(d).update(weight=float("nan"))),
    "infinity-literal": ("malformed-json", "", lambda d: d.update({"x-big": float("inf")})),
    "duplicate-key": ("malformed-json", "", lambda d: d.update({"x-twice": "@duplicate@"})),
    "nesting-too-deep": ("malformed-json", "", lambda d: d.update({"x-deep": "@deep513@"})),
}
PLACEHOLDERS = {'"@1e400@"': "1e400", '"@1e-400@"': "1e-400",
                '"@duplicate@"': '{"k": 1, "k": 2}', '"@deep513@"': nested_arrays(512)}
CASES.update(TEXT_CASES)


def doubling_chain(d: dict, n: int) -> None:
    """A1..An after H, A_i = add(A_{i-1}, A_{i-1}): one term each, of size 2, 5, 11, ... (A9: 1535 > 1000)."""
    for i in range(1, n + 1):
        d["objects"].append({"name": f"A{i}", "kind": "tensor", "shape": [3], "dtype": "float32"})
        prev = "H" if i == 1 else f"A{i - 1}"
        add_arrow(d, {"name": f"double{i}", "kind": "function", "op": "add", "source": [prev, prev],
                      "target": f"A{i}"})


def scale_chain(d: dict, n: int) -> None:
    """H1..Hn after H, each a scale of the one before: H_k's terms nest k + 1 arrows deep (H100: 101 > 100)."""
    for i in range(1, n + 1):
        d["objects"].append({"name": f"H{i}", "kind": "tensor", "shape": [3], "dtype": "float32"})
        add_arrow(d, {"name": f"s{i}", "kind": "function", "op": "scale", "factor": 1.0,
                      "source": "H" if i == 1 else f"H{i - 1}", "target": f"H{i}"})


def image_object(d: dict) -> None:
    d["objects"].append({"name": "I", "kind": "tensor", "shape": [1, 4, 4], "dtype": "float32"})


NEEDS_IMAGE = {"conv-kernel-too-large", "conv-groups", "pool-padding-as-large-as-kernel"}


def build(name: str) -> tuple[str, dict]:
    """The case's diagram text and expected result."""
    code, ptr, mutate = CASES[name]
    d = copy.deepcopy(BASE)
    if name in NEEDS_IMAGE:
        image_object(d)
    mutate(d)
    text = json.dumps(d, indent=2) + "\n"
    for placeholder, raw in PLACEHOLDERS.items():
        text = text.replace(placeholder, raw)
    return text, {"code": code, "pointer": ptr}


def main() -> None:
    for old in HERE.glob("*/"):
        if not old.name.startswith(("weights-", "batch-")):
            shutil.rmtree(old)
    for name in CASES:
        text, expected = build(name)
        folder = HERE / name
        folder.mkdir(parents=True)
        (folder / "diagram.json").write_text(text)
        (folder / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    folder = HERE / "malformed-json"
    folder.mkdir()
    (folder / "diagram.json").write_text(json.dumps(BASE, indent=2)[:200])
    (folder / "expected.json").write_text(json.dumps({"code": "malformed-json", "pointer": ""}, indent=2) + "\n")
    print(f"wrote {len(CASES) + 1} invalid diagram cases to {HERE}")


if __name__ == "__main__":
    main()
