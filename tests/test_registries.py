"""One place per vocabulary entry: the schema lists layers, ops and distances and gives their defaults;
every backend's registry has exactly those entries, and nothing keeps a defaults table of its own.

The registries compared with the schema's enums, in both directions:

- NumPy reference: ``reference/layers.py`` LAYERS, ``reference/functions.py`` FUNCTIONS,
  ``reference/distances.py`` TENSOR_DISTANCES and CATEGORICAL_DISTANCES;
- PyTorch: ``torch_backend/layer_modules.py`` LAYERS, ``torch_backend/functions.py`` FUNCTIONS,
  ``torch_backend/distances.py`` TENSOR_DISTANCES and CATEGORICAL_DISTANCES;
- Julia (read from the sources, no Julia here): ``build_layer`` in ``build.jl``, ``apply_function``,
  ``distance_value`` and ``categorical_distance`` in ``numerics.jl``.

The defaults are checked against SPEC.md's tables, which are written independently of the schema.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import pytest

from diagrammatic_learning import distances, layers, vocabulary
from diagrammatic_learning.diagram import Layer
from diagrammatic_learning.reference import distances as ref_distances
from diagrammatic_learning.reference import functions as ref_functions
from diagrammatic_learning.reference import layers as ref_layers

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "julia" / "src"
SPEC = (ROOT / "schema" / "SPEC.md").read_text(encoding="utf-8")


def discrepancies(where: str, what: str, have: Iterable[str], schema: Iterable[str]) -> list[str]:
    """What a registry lacks and what it has beyond the schema's enum, named with the registry's place."""
    have, schema = set(have), set(schema)
    out = []
    if schema - have:
        out.append(f"{where} lacks the {what} {sorted(schema - have)} of the schema")
    if have - schema:
        out.append(f"{where} has {what} {sorted(have - schema)} that the schema's enum does not list")
    return out


def test_the_comparison_names_both_directions():
    found = discrepancies("reference FUNCTIONS", "function ops", {"identity", "swish"}, {"identity", "scale"})
    assert found == ["reference FUNCTIONS lacks the function ops ['scale'] of the schema",
                     "reference FUNCTIONS has function ops ['swish'] that the schema's enum does not list"]
    assert discrepancies("x", "layers", {"relu"}, {"relu"}) == []


def test_the_schema_lists_the_vocabulary():
    assert {"linear", "conv2d", "lstm", "relu"} <= set(vocabulary.layer_types())
    assert {"identity", "normalize", "concat"} <= set(vocabulary.function_ops())
    assert {"mse", "cross_entropy", "kl_div"} <= set(vocabulary.distance_names())
    assert set(vocabulary.layer_defaults()) == set(vocabulary.layer_types())
    assert set(vocabulary.function_defaults()) == set(vocabulary.function_ops())
    assert set(vocabulary.distance_defaults()) == set(vocabulary.distance_names())


# ----------------------------------------------------------------------------- Python registries


def test_reference_registries_match_the_schema():
    problems = (
        discrepancies("reference/layers.py LAYERS", "layer types", ref_layers.LAYERS, vocabulary.layer_types())
        + discrepancies("reference/functions.py FUNCTIONS", "function ops", ref_functions.FUNCTIONS,
                        vocabulary.function_ops())
        + discrepancies("reference/distances.py TENSOR_DISTANCES + CATEGORICAL_DISTANCES", "distances",
                        set(ref_distances.TENSOR_DISTANCES) | set(ref_distances.CATEGORICAL_DISTANCES),
                        vocabulary.distance_names()))
    assert not problems, "\n".join(problems)
    assert set(ref_distances.TENSOR_DISTANCES) == distances.ALLOWED_ON["tensor"]
    assert set(ref_distances.CATEGORICAL_DISTANCES) == distances.ALLOWED_ON["categorical"]


def test_torch_registries_match_the_schema():
    pytest.importorskip("torch")
    from diagrammatic_learning.torch_backend import distances as torch_distances
    from diagrammatic_learning.torch_backend import functions as torch_functions
    from diagrammatic_learning.torch_backend import layer_modules

    problems = (
        discrepancies("torch_backend/layer_modules.py LAYERS", "layer types", layer_modules.LAYERS,
                      vocabulary.layer_types())
        + discrepancies("torch_backend/functions.py FUNCTIONS", "function ops", torch_functions.FUNCTIONS,
                        vocabulary.function_ops())
        + discrepancies("torch_backend/distances.py TENSOR_DISTANCES + CATEGORICAL_DISTANCES", "distances",
                        set(torch_distances.TENSOR_DISTANCES) | set(torch_distances.CATEGORICAL_DISTANCES),
                        vocabulary.distance_names()))
    assert not problems, "\n".join(problems)
    assert set(torch_distances.TENSOR_DISTANCES) == distances.ALLOWED_ON["tensor"]
    assert set(torch_distances.CATEGORICAL_DISTANCES) == distances.ALLOWED_ON["categorical"]


def test_every_distance_is_allowed_somewhere():
    allowed = set().union(*distances.ALLOWED_ON.values())
    problems = discrepancies("distances.py ALLOWED_ON", "distances", allowed, vocabulary.distance_names())
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- Julia registries

tree_sitter = pytest.importorskip("tree_sitter")
tree_sitter_julia = pytest.importorskip("tree_sitter_julia")
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))


def julia_function(path: Path, name: str) -> str:
    """The text of every method of the Julia function ``name`` defined (long form) in ``path``."""
    root = PARSER.parse(path.read_bytes()).root_node
    texts, stack = [], [root]
    while stack:
        n = stack.pop()
        stack.extend(n.children)
        if n.type != "function_definition" or len(n.children) < 2:
            continue
        head = n.children[1]
        while head is not None and head.type != "identifier":
            head = head.children[0] if head.children else None
        if head is not None and head.text.decode() == name:
            texts.append(n.text.decode())
    assert texts, f"{path.name} defines no function {name}"
    return "\n".join(texts)


def julia_dict_keys(path: Path, const: str) -> set[str]:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"const {const}")
    return set(re.findall(r'"(\w+)" =>', text[start:text.index("\n)", start)]))


def julia_layer_registry() -> set[str]:
    body = julia_function(SRC / "build.jl", "build_layer")
    names = set(re.findall(r'\bt == "(\w+)"', body))
    for group in re.findall(r"\bt in \(([^)]*)\)", body):
        names |= set(re.findall(r'"(\w+)"', group))
    if "haskey(PLAIN_ACTIVATIONS, t)" in body:
        names |= julia_dict_keys(SRC / "build.jl", "PLAIN_ACTIVATIONS")
    return names


def julia_op_registry() -> set[str]:
    return set(re.findall(r"\bop === :(\w+)", julia_function(SRC / "numerics.jl", "apply_function")))


def julia_distance_registry() -> tuple[set[str], set[str]]:
    tensor = set(re.findall(r"\bname === :(\w+)", julia_function(SRC / "numerics.jl", "distance_value")))
    categorical = set(re.findall(r"\bspec\.name === :(\w+)", julia_function(SRC / "numerics.jl",
                                                                           "categorical_distance")))
    return tensor, categorical


def test_the_julia_readers_find_entries():
    # guards the regular expressions: a registry read as empty would make the comparison below vacuous
    assert {"linear", "conv2d", "relu", "softmax"} <= julia_layer_registry()
    assert {"identity", "scale", "concat"} <= julia_op_registry()
    tensor, categorical = julia_distance_registry()
    assert "mse" in tensor and "kl_div" in categorical


def test_julia_registries_match_the_schema():
    tensor, categorical = julia_distance_registry()
    problems = (
        discrepancies("julia/src/build.jl build_layer", "layer types", julia_layer_registry(),
                      vocabulary.layer_types())
        + discrepancies("julia/src/numerics.jl apply_function", "function ops", julia_op_registry(),
                        vocabulary.function_ops())
        + discrepancies("julia/src/numerics.jl distance_value + categorical_distance", "distances",
                        tensor | categorical, vocabulary.distance_names()))
    assert not problems, "\n".join(problems)
    assert tensor == distances.ALLOWED_ON["tensor"] and categorical == distances.ALLOWED_ON["categorical"]


def test_julia_keeps_no_defaults_table():
    """Julia reads the defaults from the schema (vocabulary.jl) where it used to keep its own tables."""
    for path in SRC.glob("*.jl"):
        text = path.read_text(encoding="utf-8")
        assert "LAYER_DEFAULTS" not in text and "DISTANCE_DEFAULTS" not in text, path.name
    assert "layer_defaults(layer.type)" in julia_function(SRC / "layers.jl", "full_params")
    assert "distance_defaults(distance.name)" in julia_function(SRC / "distances.jl", "full_distance")
    assert "function_defaults(arrow.op)" in julia_function(SRC / "evaluate.jl", "plan_step")
    vocabulary_jl = (SRC / "vocabulary.jl").read_text(encoding="utf-8")
    assert "loaded_schema()" in vocabulary_jl and '"default"' in vocabulary_jl


# ----------------------------------------------------------------------------- defaults


def spec_rows(heading: str) -> dict[str, str]:
    """Name → params cell of every table row in the SPEC.md section under ``heading`` (to the next heading)."""
    section = SPEC[SPEC.index(heading):]
    section = section[:re.search(r"\n#{2,3} ", section[1:]).start() + 1]
    rows: dict[str, str] = {}
    column = None
    for line in section.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:  # a table's header row
            column = next((i for i, c in enumerate(cells) if c.startswith("params")), -1)
        elif column >= 0 and not set(cells[0]) <= set("-: "):
            for name in re.findall(r"`(\w+)`", cells[0]):
                rows[name] = cells[column]
    for name, cell in rows.items():  # "as `max_pool2d`"
        same = re.fullmatch(r"as `(\w+)`", cell)
        if same:
            rows[name] = rows[same.group(1)]
    return rows


def spec_defaults(cell: str) -> dict[str, object]:
    """``name`` (value) pairs of a params cell whose value reads as JSON; ``default X`` inside the parentheses too."""
    out = {}
    for name, inside in re.findall(r"`(\w+)(?: \[[^\]]*\])?`(?: \S+)? \(([^)]*)\)", cell):
        text = re.sub(r"^.*default ", "", inside).replace(" ", "")
        try:
            out[name] = json.loads(text)
        except json.JSONDecodeError:
            continue  # "(list)", "(= kernel_size)": not a default value
    return out


@pytest.mark.parametrize("heading, schema_defaults", [
    ("## 4. Architectures and the layer vocabulary", vocabulary.layer_defaults),
    ("### 3.2 `function` arrows", vocabulary.function_defaults),
    ("## 7. Distances", vocabulary.distance_defaults)], ids=["layers", "function ops", "distances"])
def test_schema_defaults_agree_with_the_spec_tables(heading, schema_defaults):
    rows = spec_rows(heading)
    defaults = schema_defaults()
    assert set(defaults) <= set(rows), f"SPEC.md {heading} has no row for {sorted(set(defaults) - set(rows))}"
    problems = [f"{name}: SPEC.md says {spec_defaults(rows[name])}, the schema {want}"
                for name, want in defaults.items() if spec_defaults(rows[name]) != want]
    assert not problems, "\n".join(problems)


def test_python_fills_the_schema_defaults():
    assert layers.DEFAULTS == vocabulary.layer_defaults()
    assert distances.DEFAULT_PARAMS == vocabulary.distance_defaults()
    conv = layers.full_params(Layer("conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": [3, 3]}))
    assert conv["stride"] == [1, 1] and conv["padding"] == [0, 0, 0, 0] and conv["groups"] == 1
    conv["stride"].append(7)  # a caller's change does not reach the next layer's defaults
    assert layers.full_params(Layer("conv2d", {}))["stride"] == [1, 1]
    assert layers.full_params(Layer("max_pool2d", {"kernel_size": [2, 3]}))["stride"] == [2, 3]
    assert vocabulary.function_params("normalize", {"x-note": 1}) == {"eps": 1e-12}
    assert vocabulary.function_params("scale", {"factor": 2.0}) == {"factor": 2.0}
