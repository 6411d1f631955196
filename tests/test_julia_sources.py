"""The Julia package's sources, checked without Julia (none can be installed here).

Every ``.jl`` file must parse with tree-sitter-julia without ERROR or MISSING nodes; every
function the package calls by bare name must be defined in it, imported, or a Base name; and
the vocabularies it hard-codes (layer defaults, distances, codes, ops) must agree with the
Python library and the JSON Schema, so that a change on one side fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pytest

from diagrammatic_learning import distances, layers

ROOT = Path(__file__).resolve().parent.parent
JULIA = ROOT / "julia"
SRC = JULIA / "src"
OWN_FILES = sorted(SRC.glob("*.jl"))

tree_sitter = pytest.importorskip("tree_sitter")
tree_sitter_julia = pytest.importorskip("tree_sitter_julia")
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))


def nodes(node) -> Iterator:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def tree(path: Path):
    return PARSER.parse(path.read_bytes())


def all_julia_files() -> list[Path]:
    return sorted(JULIA.rglob("*.jl"))


def test_there_are_julia_sources_and_tests():
    names = {p.name for p in all_julia_files()}
    assert {"DiagrammaticLearning.jl", "evaluate.jl", "runtests.jl", "conformance.jl"} <= names


@pytest.mark.parametrize("path", all_julia_files(), ids=lambda p: str(p.relative_to(JULIA)))
def test_parses_without_errors(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    bad = [f"{path.relative_to(ROOT)}:{n.start_point[0] + 1}: {'MISSING' if n.is_missing else 'ERROR'} near "
           f"{lines[n.start_point[0]].strip()[:80]!r}"
           for n in nodes(tree(path).root_node) if n.type == "ERROR" or n.is_missing]
    assert not bad, "\n".join(bad)


# ----------------------------------------------------------------------------- names


def defined_names(root) -> set[str]:
    """Functions (long and short form), structs, constants and local functions a file defines."""
    names = set()
    for n in nodes(root):
        head = None
        if n.type == "function_definition" and len(n.children) > 1:
            head = n.children[1]
        elif n.type == "assignment" and n.children[0].type in ("call_expression", "where_expression"):
            head = n.children[0]
        elif n.type == "struct_definition":
            head = next((c for c in n.children if c.type not in ("struct", "mutable")), None)
        elif n.type == "const_statement" and n.children[1].children:
            head = n.children[1].children[0]
        while head is not None and head.type != "identifier":
            head = head.children[0] if head.children else None
        if head is not None:
            names.add(head.text.decode())
    return names


def imported_names(root) -> set[str]:
    names = set()
    for n in nodes(root):
        if n.type in ("using_statement", "import_statement"):
            for sub in nodes(n):
                if sub.type == "identifier":
                    names.add(sub.text.decode())
    return names


def called_names(root) -> dict[str, int]:
    """Bare identifiers in call position (``f(x)``, ``f.(x)``), with a line where each is called."""
    called: dict[str, int] = {}
    for n in nodes(root):
        if n.type in ("call_expression", "broadcast_call_expression") and n.children[0].type == "identifier":
            called.setdefault(n.children[0].text.decode(), n.start_point[0] + 1)
    return called


# Base and Core functions and types the package calls by bare name.
BASE = {
    "Any", "Array", "AbstractArray", "ArgumentError", "BigInt", "Char", "Colon", "Dict", "DimensionMismatch", "Float32",
    "Float64", "Int", "Int64", "IOBuffer", "NamedTuple", "Ref", "Regex", "Set", "String", "Symbol", "Tuple",
    "UInt8", "UInt16", "UInt32", "abs", "abs2", "abspath", "all", "any", "append!", "axes", "basename", "cat", "clamp", "close",
    "codeunits", "collect", "copy", "count", "dirname", "eachindex", "eltype", "enumerate", "error", "exp",
    "expm1", "extrema", "findfirst", "findlast", "first", "fld", "get", "get!", "getfield", "hasproperty", "haskey",
    "hash", "identity", "ifelse", "include", "isempty", "isfile", "isfinite", "isinf", "isinteger", "isnan", "isspace", "isvalid", "iszero",
    "join", "joinpath", "keys", "lastindex", "length", "log", "log1p", "lowercase", "map", "match", "max", "maximum",
    "merge", "merge!", "min", "mktemp", "mv", "ncodeunits", "ndims", "new", "normpath", "ntuple", "occursin", "one", "ones", "oftype", "open",
    "pairs", "parse", "permutedims", "print", "prod", "push!", "read", "replace", "repr", "reshape", "rethrow", "reverse", "rm",
    "size", "something", "sort", "sort!", "split", "sprint", "sqrt", "stack", "startswith", "string", "sum",
    "summary", "take!", "tanh", "tempname", "throw", "tryparse", "typemax", "typemin", "typeof", "union!", "unique", "unique!",
    "values", "vcat", "view", "write", "zero", "zeros", "zip",
    "ispath", "argmax", "vec",
    # reading files and numbers safely (issue 9)
    "big", "chop", "endswith", "filesize", "floatmax", "ltoh", "pop!", "reinterpret",
    "get!", "delete!", "fill", "searchsortedfirst", "objectid",
    # writing files (issue 9): read in JuliaLang/julia base/file.jl, stat.jl, iostream.jl, libuv.jl
    "SystemError", "ccall", "chmod", "fd", "filemode", "flush", "isdir", "islink", "readlink", "systemerror",
}
# Local variables holding functions (arguments, closures), called by name.
LOCALS = {"f", "m", "T", "pool", "model", "branch", "back", "offset", "expect_name", "term", "want_tensor", "src_tensor",
          "step_of", "first_positions", "rebuild", "action"}


def test_every_called_function_exists():
    defined: set[str] = set()
    imported: set[str] = set()
    trees = {p: tree(p).root_node for p in sorted(SRC.glob("*.jl"))}
    for root in trees.values():
        defined |= defined_names(root)
        imported |= imported_names(root)
    unknown = []
    for path in OWN_FILES:
        for name, line in called_names(trees[path]).items():
            if name not in defined | imported | BASE | LOCALS:
                unknown.append(f"{path.name}:{line}: {name}")
    assert not unknown, "called but defined nowhere:\n" + "\n".join(sorted(unknown))


def test_every_exported_name_is_defined():
    defined: set[str] = set()
    for path in SRC.glob("*.jl"):
        defined |= defined_names(tree(path).root_node)
    module = (SRC / "DiagrammaticLearning.jl").read_text()
    exported = {name.strip() for line in re.findall(r"^export (.+)$", module, re.M) for name in line.split(",")}
    assert {"load_diagram", "compile_diagram", "evaluate_diagram"} <= exported
    assert sorted(exported - defined) == []


# ----------------------------------------------------------------------------- vocabularies


def julia_block(path: Path, start: str) -> str:
    """The text of a `const NAME = Dict(...)` block: from its first line to the line that closes it."""
    text = path.read_text(encoding="utf-8")
    begin = text.index(start)
    depth, i = 0, text.index("(", begin)
    for i in range(text.index("(", begin), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            break
    return text[begin:i + 1]


def test_elementwise_layers_agree_with_python():
    # the defaults are read from the schema by both (tests/test_registries.py)
    elementwise = julia_block(SRC / "layers.jl", "const ELEMENTWISE_LAYERS")
    assert set(re.findall(r'"(\w+)"', elementwise)) == layers.ELEMENTWISE


def test_distances_are_allowed_on_the_same_kinds_as_in_python():
    allowed = julia_block(SRC / "distances.jl", "const DISTANCES_ALLOWED_ON")
    got = {kind: set(re.findall(r'"(\w+)"', names)) for kind, names in re.findall(r'"(\w+)" => \(([^)]*)\)', allowed)}
    assert got == distances.ALLOWED_ON


def schema() -> dict:
    return json.loads((ROOT / "schema" / "learning-diagram.schema.json").read_text())


def test_every_layer_op_and_distance_of_the_schema_is_computed():
    s = schema()["$defs"]
    build = (SRC / "build.jl").read_text()
    numerics = (SRC / "numerics.jl").read_text()
    exported = (SRC / "export.jl").read_text()
    for t in s["layer"]["properties"]["type"]["enum"]:
        assert f'"{t}"' in build, f"build.jl does not build layer {t}"
        assert f'"{t}"' in exported or t in ("tanh", "identity"), f"export.jl does not export layer {t}"
    ops = next(x for x in s["arrow"]["allOf"] if x["if"]["properties"]["kind"]["const"] == "function")
    for op in ops["then"]["properties"]["op"]["enum"]:
        assert f"op === :{op}" in numerics, f"numerics.jl does not compute function op {op}"
    for name in s["distance"]["properties"]["name"]["enum"]:
        assert f"=== :{name}" in numerics, f"numerics.jl does not compute distance {name}"


def spec_codes() -> set[str]:
    spec = (ROOT / "schema" / "SPEC.md").read_text()
    section = spec[spec.index("## 10. Error codes"):]
    return set(re.findall(r"`([a-z]+(?:-[a-z]+)+|[a-z]+)`", section))


def test_every_error_code_the_package_gives_is_in_the_spec():
    call = re.compile(r'(?:Problem|DiagramError|LayerError|TermError|add!)\((?:c, )?"([a-z]+(?:-[a-z]+)*)"')
    given = set()
    for path in OWN_FILES:
        given |= set(call.findall(path.read_text()))
    given |= set(re.findall(r'=> "([a-z]+-[a-z-]+)"', (SRC / "schema.jl").read_text()))  # schema keyword codes
    assert {"shape-mismatch", "weights-missing-key", "batch-index-range", "external-shape", "too-many-terms",
            "missing-key", "unknown-key", "wrong-type"} <= given
    assert given <= spec_codes(), given - spec_codes()


def test_project_and_juliapkg_declare_the_same_packages():
    project = (JULIA / "Project.toml").read_text()
    deps = dict(re.findall(r'^(\w+) = "([0-9a-f-]{36})"$', project.split("[compat]")[0], re.M))
    compat = dict(re.findall(r'^(\w+) = "([^"]+)"$', project.split("[compat]")[1].split("[extras]")[0], re.M))
    juliapkg = json.loads((ROOT / "python" / "diagrammatic_learning" / "juliapkg.json").read_text())
    for name, spec in juliapkg["packages"].items():
        assert deps[name] == spec["uuid"], name
        assert compat[name] == spec["version"], name
    assert compat["julia"] == juliapkg["julia"]
    from diagrammatic_learning.julia.runtime import JULIA_PACKAGE, JULIA_PACKAGE_UUID

    assert re.search(rf'^name = "{JULIA_PACKAGE}"$', project, re.M)
    assert re.search(rf'^uuid = "{JULIA_PACKAGE_UUID}"$', project, re.M)
    assert (SRC / f"{JULIA_PACKAGE}.jl").is_file()


# ----------------------------------------------------------------------------- Test macros

# Julia's Test stdlib (stdlib/Test/src/Test.jl, read for Julia 1.10–1.12) expands `@test ex kws...`
# by dropping `broken=`/`skip=` and passing the rest to `test_expr!`, which throws "invalid test
# macro call" at expansion — so the whole file fails to load — unless `ex` is an `Expr(:call)` and
# every keyword an `Expr(:(=))`. `@test_broken` and `@test_skip` pass all trailing arguments to
# `test_expr!`. `@test_throws` takes exactly two arguments (no keyword form). In Julia's syntax
# `a ≈ b`, `a == b`, `!a`, `isapprox(a, b)` are calls; `a && b`, `a || b`, chained comparisons
# `a < b < c`, `a <: b`, blocks, `f.(x)` (a broadcast, `Expr(:.)`) are not.

COMMENTS = ("line_comment", "block_comment", "comment")
COMPARISONS = {"<", ">", "<=", ">=", "==", "!=", "===", "!==", "≈", "≉", "≤", "≥", "≠", "in", "∈", "∉", "isa", "<:",
               ">:", "⊆", "⊇", "⊂", "⊃", "∋", "∌", ".<", ".>", ".<=", ".>=", ".==", ".!=", ".≈"}
NOT_CALLS = {"&&", "||", "<:", ">:", "-->", ".&&", ".||"}


def unparenthesized(node):
    while node.type == "parenthesized_expression":
        inner = [c for c in node.named_children if c.type not in COMMENTS]
        if len(inner) != 1:
            break
        node = inner[0]
    return node


def binary_operator(node) -> str | None:
    ops = [c for c in node.children if c.type == "operator"]
    return ops[0].text.decode() if node.type == "binary_expression" and ops else None


def is_call_expr(node) -> bool:
    """Whether Julia parses this expression to `Expr(:call, …)` (what `test_expr!` requires)."""
    node = unparenthesized(node)
    if node.type in ("call_expression", "unary_expression"):
        return True
    op = binary_operator(node)
    if op is None or op in NOT_CALLS:
        return False
    left = node.named_children[0]
    return not (op in COMPARISONS and binary_operator(left) in COMPARISONS)  # a < b < c is Expr(:comparison)


def macro_name(node) -> str:
    ident = [c for c in node.children if c.type == "macro_identifier"]
    return ident[0].text.decode() if ident else ""


def assignment_key(node) -> str | None:
    """`k` for an argument `k = v` (an `Expr(:(=))`), else None."""
    if node.type != "assignment":
        return None
    ops = [c for c in node.children if c.type == "operator"]
    if not ops or ops[0].text.decode() != "=" or node.named_children[0].type != "identifier":
        return None
    return node.named_children[0].text.decode()


def macro_call_problems(root) -> list[tuple[int, str]]:
    """Calls of Test's macros that throw when Julia expands them, as (line, reason)."""
    problems = []
    for n in nodes(root):
        if n.type != "macrocall_expression":
            continue
        name = macro_name(n)
        if name not in ("@test", "@test_broken", "@test_skip", "@test_throws"):
            continue
        lists = [c for c in n.children if c.type == "macro_argument_list"]
        args = [c for c in lists[0].named_children if c.type not in COMMENTS] if lists else []
        line = n.start_point[0] + 1
        if name == "@test_throws":
            if len(args) != 2:
                problems.append((line, f"@test_throws takes two arguments, got {len(args)}"))
            continue
        if not args:
            continue
        trailing = args[1:]
        if name == "@test":
            trailing = [a for a in trailing if assignment_key(a) not in ("broken", "skip")]
        if not trailing:
            continue
        if any(assignment_key(a) is None for a in trailing):
            problems.append((line, f"{name}: a trailing argument is not `key = value`"))
        elif not is_call_expr(args[0]):
            problems.append((line, f"{name} with keywords on a tested expression that is not a call"))
    return problems


def test_the_macro_check_catches_what_julia_rejects():
    bad = b"""@test reply["ok"] === true && x \xe2\x89\x88 y rtol = 1e-12
@test a || b atol = 1
@test a < b < c atol = 1
@test begin x end k = 1
@test f.(x) k = 1
@test x \xe2\x89\x88 y 1e-3
@test_broken a && b rtol = 1
@test_throws E f(x) k = 1
@test a <: b k = 1
"""
    good = b"""@test x \xe2\x89\x88 y rtol = 1e-12
@test (x \xe2\x89\x88 y) atol = 1
@test isapprox(a, b; rtol = 1)
@test a == b broken = true
@test a && b skip = true
@test a && b
@test a < b atol = 1
@test (a < b) < c atol = 1
@test_throws E f(x)
"""
    assert [line for line, _ in macro_call_problems(PARSER.parse(bad).root_node)] == list(range(1, 10))
    assert macro_call_problems(PARSER.parse(good).root_node) == []


@pytest.mark.parametrize("path", all_julia_files(), ids=lambda p: str(p.relative_to(JULIA)))
def test_test_macros_expand(path: Path):
    problems = macro_call_problems(tree(path).root_node)
    assert not problems, "\n".join(f"{path.relative_to(ROOT)}:{line}: {why}" for line, why in problems)
