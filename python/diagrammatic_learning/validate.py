"""Checking a diagram: the document's form (JSON Schema) and its meaning (SPEC §1–7).

``check_document`` checks a parsed JSON document against the schema;
``check_diagram`` checks what the schema cannot (names, references, kinds,
shapes, distances, terms, equations). Both raise ``DiagramError`` with every
problem found. Reading files is ``io``'s job, above this module.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from math import prod
from collections.abc import Mapping
from typing import Any

import jsonschema

from .diagram import Architecture, CategoricalObject, DataArrow, Diagram, FunctionArrow, ModelArrow, TensorObject
from .distances import check_distance, full_distance
from .equations import equations
from .errors import DiagramError, Problem, pointer
from .fast_schema import surely_valid
from .gc_pause import gc_paused
from .layers import LayerError, combine_output, layer_output
from .resources import schema_path
from .versions import OP_SINCE, op_allowed


# SPEC §1: arrays and objects nest at most this deep (the top-level object is depth 1).
MAX_NESTING = 512
# SPEC §1: integers lie within ±(2^53 − 1) (I-JSON, RFC 7493), so that every reader holds them exactly.
MAX_INTEGER = 2 ** 53 - 1


def _is_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema counts 3.0 as an integer; SPEC §1 does not (sizes must not reach the code as floats)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


@lru_cache(maxsize=None)
def ecma_regex(pattern: str) -> re.Pattern:
    """A schema ``pattern`` with ECMA-262's meaning of a final ``$``: the end of the text, not before a final newline.

    Python's ``$`` also matches before a trailing ``"\\n"``, so ``"X\\n"`` would pass ``^[A-Z]+$``.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    return _StrictValidator(schema)


_KEYWORD_CODES = {"required": "missing-key", "additionalProperties": "unknown-key", "type": "wrong-type"}


def _schema_problems(doc: Any) -> list[Problem]:
    problems: list[Problem] = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(err.absolute_path)
        code = _KEYWORD_CODES.get(err.validator, "bad-value")
        if err.validator == "required":
            missing = [k for k in err.validator_value if k not in err.instance]
            for key in missing:
                problems.append(Problem(code, pointer(*path, key), f"missing required key {key!r}"))
            continue
        if err.validator == "additionalProperties":
            allowed = set(err.schema.get("properties", {}))
            for key in err.instance:
                if key not in allowed and not key.startswith("x-"):
                    problems.append(Problem(code, pointer(*path, key), f"unknown key {key!r}"))
            continue
        if err.validator in ("oneOf", "anyOf", "not"):
            message = f"does not match: {err.schema.get('description', 'none of the allowed forms fits')}"
        else:
            message = err.message if len(err.message) < 300 else err.message[:300] + "…"
        problems.append(Problem(code, pointer(*path), message))
    unique: dict[tuple[str, str], Problem] = {}
    for p in problems:
        unique.setdefault((p.code, p.pointer), p)
    return list(unique.values())


def nesting_depth(doc: Any, limit: int) -> int:
    """How deep arrays and objects nest in ``doc`` (a scalar is 0), counting at most to ``limit + 1``; no recursion.

    Walked one level at a time, looking only at containers, so a large flat document costs one
    type test per value.
    """
    level = [doc] if _is_container(doc) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return depth
        below = []
        for value in level:
            below.extend(v for v in (value.values() if isinstance(value, (dict, Mapping)) else value) if _is_container(v))
        level = below
    return depth


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _is_container(value: Any) -> bool:
    kind = type(value)
    if kind is dict or kind is list:
        return True
    return kind not in _SCALARS and isinstance(value, (Mapping, list))


@gc_paused()  # as in io.load: a large document's checks make many containers and no garbage to collect
def check_document(doc: Any) -> None:
    """Check a parsed document's form: format, version, nesting, then the JSON Schema and every value (SPEC §1)."""
    if not isinstance(doc, Mapping):
        raise DiagramError.one("not-a-diagram", "", "a diagram document is a JSON object")
    if doc.get("format") != "learning-diagram":
        raise DiagramError.one("not-a-diagram", "/format",
                               f'"format" must be "learning-diagram", got {doc.get("format")!r}')
    plain = surely_valid(doc)  # then it nests at most fast_schema.MAX_NESTING (32) deep: no need to count
    if not plain and nesting_depth(doc, MAX_NESTING) > MAX_NESTING:
        raise DiagramError.one("malformed-json", "", f"arrays and objects nest more than {MAX_NESTING} deep (SPEC §1)")
    version = doc.get("format_version")
    if isinstance(version, str):
        if not re.fullmatch(r"[0-9]+\.[0-9]+", version):
            raise DiagramError.one("unsupported-version", "/format_version",
                                   f'"format_version" must be "MAJOR.MINOR", got {version!r}')
        if version.split(".")[0] != "1":
            raise DiagramError.one("unsupported-version", "/format_version",
                                   f"format version {version} is not supported; this reader reads 1.x")
    # a missing or non-string version is reported by the schema (missing-key, wrong-type) with everything else
    problems: dict[tuple[str, str], Problem] = {}
    if not plain:  # the full passes run only when the compiled one may disagree or finds a problem
        for p in _schema_problems(doc) + _bad_scalars(doc):  # one problem per code and place (inf > maximum)
            problems.setdefault((p.code, p.pointer), p)
    # a value of the wrong type is not also a bad value, nor is anything in it ("$schema": [2^53] is wrong-type)
    wrong_type = [where for code, where in problems if code == "wrong-type"]
    problems = {k: p for k, p in problems.items()
                if not (k[0] == "bad-value" and any(k[1] == w or k[1].startswith(w + "/") for w in wrong_type))}
    if problems:
        raise DiagramError([_printable(p) for p in problems.values()])


def _bad_scalars(doc: Any) -> list[Problem]:
    """``bad-value`` for every number that is not finite, every integer beyond ±(2^53 − 1) and every string
    that is not Unicode text (SPEC §1).

    ``1e400`` reads as infinite (and a document given as data may hold NaN); integers are read
    exactly (``io`` stands in for those over Python's 4300-digit limit); a lone surrogate
    (``"\\ud800"``) is valid JSON but no UTF-8 text can hold it. Keys count as strings; values
    under ``x-`` keys are ignored.
    """
    problems: list[Problem] = []
    stack: list[tuple[Any, tuple]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem("bad-value", pointer(*path), f"{value} is not a finite number (or is beyond "
                                                                 f"float64)"))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
            problems.append(Problem("bad-value", pointer(*path), f"{value} is beyond ±(2^53 − 1), the integers every "
                                                                 f"reader holds exactly (SPEC §1)"))
        elif isinstance(value, str) and not _is_text(value):
            problems.append(Problem("bad-value", pointer(*path), "the text holds a lone surrogate (\\ud800–\\udfff), "
                                                                 "which is not Unicode text"))
        elif isinstance(value, Mapping):
            problems.extend(Problem("bad-value", pointer(*path, k), "the key holds a lone surrogate, which is not "
                                                                    "Unicode text")
                            for k in value if isinstance(k, str) and not _is_text(k))
            stack.extend((v, (*path, k)) for k, v in reversed(list(value.items()))
                         if not isinstance(k, str) or (_is_text(k) and not k.startswith("x-")))
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(value))))
    return problems


def _printable(p: Problem) -> Problem:
    """The problem with lone surrogates in its pointer or message escaped (``\\ud800``), so that it can be printed."""
    if _is_text(p.pointer) and _is_text(p.message):
        return p
    esc = lambda s: s.encode("utf-8", "backslashreplace").decode("utf-8")  # noqa: E731
    return Problem(p.code, esc(p.pointer), esc(p.message))


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ----------------------------------------------------------------------------- meaning


class _Checker:
    def __init__(self, d: Diagram, doc: Mapping[str, Any] | None):
        self.d = d
        self.doc = doc
        self.problems: list[Problem] = []
        self.fitting: set[tuple] = set()  # architecture keys (see architecture_key) checked without a problem
        if doc is None:  # else names() takes the positions from the document
            self.obj_index = {n: i for i, n in enumerate(d.objects)}
            self.arrow_index = {n: i for i, n in enumerate(d.arrows)}

    def add(self, code: str, where: str, message: str) -> None:
        self.problems.append(Problem(code, where, message))

    def arrow_ptr(self, name: str, *rest: Any) -> str:
        return pointer("arrows", self.arrow_index[name], *rest)

    # -- names

    def names(self) -> None:
        if self.doc is None:
            return
        seen: dict[str, tuple[str, int]] = {}  # name -> where it is first used (pointers made only for a problem)
        index: dict[str, dict[str, int]] = {}
        for section in ("objects", "arrows"):
            names = [item["name"] for item in self.doc[section]]
            before = len(seen)
            for i, name in enumerate(names):
                seen.setdefault(name, (section, i))
            if len(seen) - before == len(names):  # all new: positions are the document's
                index[section] = {n: i for i, n in enumerate(names)}
                continue
            first: dict[str, int] = {}
            for i, name in enumerate(names):  # positions follow the document: the first use of a name
                if seen[name] != (section, i):
                    self.add("duplicate-name", pointer(section, i, "name"),
                             f"the name {name!r} is already used at {pointer(*seen[name], 'name')}")
                first.setdefault(name, i)
            index[section] = first
        self.obj_index, self.arrow_index = index["objects"], index["arrows"]

    # -- arrows

    def source_ptr(self, arrow, k: int) -> str:
        return self.arrow_ptr(arrow.name, "source", *([k] if len(arrow.sources) > 1 else []))

    def references(self) -> bool:
        ok = True
        for a in self.d.arrows.values():
            for k, s in enumerate(a.sources):
                if s not in self.d.objects:
                    self.add("unknown-object", self.source_ptr(a, k), f"arrow {a.name!r}: no object named {s!r}")
                    ok = False
            if a.target not in self.d.objects:
                self.add("unknown-object", self.arrow_ptr(a.name, "target"),
                         f"arrow {a.name!r}: no object named {a.target!r}")
                ok = False
        return ok

    def structure(self) -> None:
        for a in self.d.arrows.values():
            target = self.d.objects[a.target]
            if target.kind == "data":
                self.add("arrow-into-data", self.arrow_ptr(a.name, "target"),
                         f"arrow {a.name!r} targets data object {a.target!r}; data objects only have outgoing arrows")
                continue
            if isinstance(a, DataArrow):
                if not isinstance(a.source, str):
                    self.add("data-arrow-source", self.arrow_ptr(a.name, "source"),
                             f"data arrow {a.name!r} reads from one data object, not a product of {len(a.sources)}")
                elif self.d.objects[a.source].kind != "data":
                    self.add("data-arrow-source", self.arrow_ptr(a.name, "source"),
                             f"data arrow {a.name!r} must start at a data object, {a.source!r} is a "
                             f"{self.d.objects[a.source].kind} object")
                if a.encoding is not None and not isinstance(target, CategoricalObject):
                    self.add("bad-value", self.arrow_ptr(a.name, "encoding"),
                             "encoding is only for data arrows into categorical objects")
                continue
            bad = [k for k, s in enumerate(a.sources) if self.d.objects[s].kind == "data"]
            for k in bad:
                self.add("arrow-from-data", self.source_ptr(a, k),
                         f"{a.kind} arrow {a.name!r} leaves data object {a.sources[k]!r}; only data arrows may")
            if bad:
                continue
            if isinstance(a, FunctionArrow):
                self.function(a)
            elif isinstance(a, ModelArrow):
                self.model(a)

    def value_type(self, name: str) -> tuple[tuple[int, ...], str]:
        o = self.d.objects[name]
        if isinstance(o, TensorObject):
            return o.shape, "float" if o.is_float else "int64"
        return o.shape + (o.classes,), "float"  # categorical as logits / probabilities

    def function(self, a: FunctionArrow) -> None:
        op, n = a.op, len(a.sources)
        if not op_allowed(op, self.d.format_version):
            self.add("bad-value", self.arrow_ptr(a.name, "op"),
                     f"the op {op} needs format_version {OP_SINCE[op]} or later; this document is "
                     f"{self.d.format_version}")
            return
        srcs = [self.d.objects[s] for s in a.sources]
        tgt = self.d.objects[a.target]
        multi = op in ("add", "concat")
        if (n < 2) if multi else (n != 1):
            self.add("function-arity", self.arrow_ptr(a.name, "source"),
                     f"{op} takes {'two or more sources' if multi else 'one source'}, got {n}")
            return

        def want_tensor(shape: tuple[int, ...], float_: bool | None) -> None:
            if not isinstance(tgt, TensorObject):
                self.add("kind-mismatch", self.arrow_ptr(a.name, "target"),
                         f"{op} produces a tensor, but {tgt.name!r} is {tgt.kind}")
                return
            if tgt.shape != tuple(shape):
                self.add("shape-mismatch", self.arrow_ptr(a.name, "target"),
                         f"{op} produces shape {list(shape)}, but {tgt.name!r} has shape {list(tgt.shape)}")
            if float_ is not None and tgt.is_float != float_:
                self.add("dtype-mismatch", self.arrow_ptr(a.name, "target"),
                         f"{op} produces {'float' if float_ else 'int64'} values, but {tgt.name!r} is {tgt.dtype}")

        def src_tensor(k: int, float_: bool = True, nonempty: bool = False) -> TensorObject | None:
            s = srcs[k]
            if not isinstance(s, TensorObject):
                self.add("kind-mismatch", self.source_ptr(a, k), f"{op} needs a tensor source, {s.name!r} is {s.kind}")
                return None
            if float_ and not s.is_float:
                self.add("dtype-mismatch", self.source_ptr(a, k), f"{op} needs a float source, {s.name!r} is int64")
                return None
            if nonempty and not s.shape:
                self.add("shape-mismatch", self.source_ptr(a, k), f"{op} needs at least one axis, {s.name!r} is a scalar")
                return None
            return s

        s = srcs[0]
        if op in ("identity", "stop_gradient"):
            same = s.kind == tgt.kind and (
                (isinstance(s, TensorObject) and s.shape == tgt.shape and s.is_float == tgt.is_float)
                or (isinstance(s, CategoricalObject) and (s.classes, s.shape) == (tgt.classes, tgt.shape)))
            if not same:
                self.add("shape-mismatch", self.arrow_ptr(a.name, "target"),
                         f"{op} needs source and target of the same kind and shape: {s.name!r} → {tgt.name!r}")
        elif op in ("softmax", "log_softmax"):
            if isinstance(s, CategoricalObject):
                want_tensor(s.shape + (s.classes,), True)
            elif src_tensor(0, nonempty=True):
                want_tensor(s.shape, True)
        elif op == "one_hot":
            if not isinstance(s, CategoricalObject):
                self.add("kind-mismatch", self.source_ptr(a, 0), f"one_hot needs a categorical source, {s.name!r} is {s.kind}")
            else:
                want_tensor(s.shape + (s.classes,), True)
        elif op == "flatten":
            if src_tensor(0, float_=False):
                want_tensor((prod(s.shape),), s.is_float)
        elif op == "reshape":
            if src_tensor(0, float_=False):
                if prod(a.params["shape"]) != prod(s.shape):
                    self.add("shape-mismatch", self.arrow_ptr(a.name, "shape"),
                             f"reshape of {list(s.shape)} to {a.params['shape']}: sizes differ")
                else:
                    want_tensor(tuple(a.params["shape"]), s.is_float)
        elif op in ("scale", "normalize"):
            if src_tensor(0, nonempty=op == "normalize"):
                want_tensor(s.shape, True)
        elif op in ("add", "concat"):
            ok = [src_tensor(k, nonempty=op == "concat") for k in range(n)]
            if all(ok):
                try:
                    shape, _ = combine_output(op, [(x.shape, "float") for x in ok])
                except LayerError as e:
                    self.add(e.code, self.arrow_ptr(a.name, "source"), str(e))
                    return
                want_tensor(shape, True)

    def model(self, a: ModelArrow) -> None:
        ok = True
        for k, s in enumerate(a.sources):
            if not isinstance(self.d.objects[s], TensorObject):
                self.add("kind-mismatch", self.source_ptr(a, k),
                         f"model {a.name!r}: sources must be tensor objects, {s!r} is {self.d.objects[s].kind}")
                ok = False
        tgt = self.d.objects[a.target]
        if isinstance(tgt, TensorObject) and not tgt.is_float:
            self.add("dtype-mismatch", self.arrow_ptr(a.name, "target"),
                     f"model {a.name!r}: a model produces float values, {tgt.name!r} is int64")
            ok = False
        if not ok or a.architecture is None:
            return
        key = self.architecture_key(a)
        if key is not None and key in self.fitting:
            return
        before = len(self.problems)
        self.architecture(a, a.architecture)
        if key is not None and len(self.problems) == before:
            self.fitting.add(key)

    def architecture_key(self, a: ModelArrow) -> tuple | None:
        """What ``architecture`` looks at for one model (its value types and layers as values), or None if a
        layer holds a list: models alike in all of it fit alike (files repeat one architecture many times)."""
        arch = a.architecture
        layer = lambda x: (x.type, tuple([(k, v, type(v)) for k, v in x.params.items()]))  # noqa: E731
        key = (tuple([self.value_type(s) for s in a.sources]), self.value_type(a.target), arch.combine,
               tuple([layer(x) for x in arch.layers]),
               None if arch.inputs is None else tuple(tuple([layer(x) for x in b]) for b in arch.inputs))
        try:
            hash(key)
        except TypeError:
            return None
        return key

    def architecture(self, a: ModelArrow, arch: Architecture) -> None:
        base = ("architecture",)
        n = len(a.sources)
        if n == 1 and (arch.combine is not None or arch.inputs is not None):
            key = "combine" if arch.combine is not None else "inputs"
            self.add("function-arity", self.arrow_ptr(a.name, *base, key),
                     f"model {a.name!r} has one source: {key} is only for products")
            return
        if n > 1 and arch.combine is None:
            self.add("missing-key", self.arrow_ptr(a.name, *base, "combine"),
                     f"model {a.name!r} has {n} sources and needs a combine step")
            return
        if arch.inputs is not None and len(arch.inputs) != n:
            self.add("function-arity", self.arrow_ptr(a.name, *base, "inputs"),
                     f"model {a.name!r} has {n} sources but {len(arch.inputs)} input branches")
            return
        types = [self.value_type(s) for s in a.sources]
        for k, branch in enumerate(arch.inputs or ()):
            vt = self.chain(a, branch, types[k], (*base, "inputs", k))
            if vt is None:
                return
            types[k] = vt
        if n > 1:
            try:
                vt = combine_output(arch.combine, types)
            except LayerError as e:
                self.add(e.code, self.arrow_ptr(a.name, *base, "combine"), f"model {a.name!r}: {e}")
                return
        else:
            vt = types[0]
        vt = self.chain(a, arch.layers, vt, (*base, "layers"))
        if vt is None:
            return
        want = self.value_type(a.target)
        if vt != want:
            self.add("shape-mismatch", self.arrow_ptr(a.name, *base, "layers"),
                     f"model {a.name!r} produces {vt[1]} values of shape {list(vt[0])}, but target "
                     f"{a.target!r} needs {want[1]} values of shape {list(want[0])}")

    def chain(self, a: ModelArrow, layers, vt, where) -> tuple | None:
        for i, layer in enumerate(layers):
            try:
                vt = layer_output(layer, vt)
            except LayerError as e:
                self.add(e.code, self.arrow_ptr(a.name, *where, i), f"model {a.name!r}, layer {i} ({layer.type}): {e}")
                return None
        return vt

    def distances(self) -> None:
        for name, o in self.d.objects.items():
            dist = getattr(o, "distance", None)
            if dist is not None:
                for code, msg in check_distance(o, full_distance(dist)):
                    self.add(code, pointer("objects", self.obj_index[name], "distance"), msg)


@gc_paused()
def check_meaning(d: Diagram, doc: Mapping[str, Any] | None = None) -> None:
    """Check names, references, structure and distances of a schema-valid diagram: everything before
    its terms and equations; raise ``DiagramError`` with every problem."""
    c = _Checker(d, doc)
    c.names()
    if c.references():
        c.structure()
    c.distances()
    if c.problems:
        raise DiagramError(c.problems)


def check_diagram(d: Diagram, doc: Mapping[str, Any] | None = None) -> None:
    """Check the meaning of a schema-valid diagram (SPEC §1–7); raise ``DiagramError`` with every problem."""
    check_meaning(d, doc)
    try:
        equations(d)
    except RecursionError:
        raise DiagramError.one("too-many-terms", "", "the diagram's terms nest deeper than this reader can "
                                                     "follow (SPEC §5.3)") from None

