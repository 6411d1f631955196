"""Reading and writing diagram files: JSON text ↔ ``Diagram`` (SPEC §1–4, §6.2).

``load`` validates (see ``validate``); ``save`` writes atomically with a stable
key order, so load → save → load is exact and saving twice gives the same bytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Union

from .diagram import (Architecture, CategoricalObject, DataArrow, DataObject, Diagram, Distance,
                      ExplicitEquation, FunctionArrow, Layer, ModelArrow, TensorObject, FORMAT)
from .errors import DiagramError, Problem
from .files import MAX_DOCUMENT_BYTES, UnreadableFile, atomic_write, read_text
from .fingerprint import carry, recall, remember
from .gc_pause import gc_paused
from .json_text import NotJSON, fast_loads, strict_loads
from .validate import MAX_NESTING, check_diagram, check_document, nesting_depth

__all__ = ["MAX_DOCUMENT_BYTES", "MAX_NESTING", "atomic_write", "dumps", "from_json", "load", "parse_document",
           "problems", "read_document", "save", "to_json", "validate"]

Source = Union[str, os.PathLike, Mapping[str, Any], Diagram]


def _clean(d: Mapping[str, Any], drop: tuple[str, ...]) -> dict[str, Any]:
    """``d`` without the keys in ``drop`` and the ``x-`` keys, in its order."""
    out = dict(d)
    for k in drop:
        out.pop(k, None)
    if "\0x-" in "\0" + "\0".join(out):  # (one test of all the keys at once; rarely true)
        out = {k: v for k, v in out.items() if not k.startswith("x-")}
    return out


def _distance(d: Mapping[str, Any] | None) -> Distance | None:
    return None if d is None else Distance(d["name"], _clean(d, ("name",)))


def _layers(items: list) -> tuple[Layer, ...]:
    return tuple([Layer(x["type"], _clean(x, ("type",))) for x in items])


def _sources(s: str | list) -> tuple[str, ...]:
    return (s,) if isinstance(s, str) else tuple(s)


@gc_paused()
def from_json(doc: Mapping[str, Any]) -> Diagram:
    """Build a ``Diagram`` from a schema-valid document (no semantic checks; the first of duplicate names wins)."""
    d = Diagram(name=doc.get("name"), description=doc.get("description"), max_terms=doc.get("max_terms"),
                format_version=doc["format_version"], max_term_size=doc.get("max_term_size"),
                max_equations=doc.get("max_equations"), max_total_terms=doc.get("max_total_terms"))
    for o in doc["objects"]:
        if o["name"] in d.objects:
            continue
        kind = o["kind"]
        if kind == "data":
            obj = DataObject(o["name"])
        elif kind == "tensor":
            obj = TensorObject(o["name"], tuple(o["shape"]), o["dtype"], _distance(o.get("distance")))
        else:
            obj = CategoricalObject(o["name"], o["classes"], tuple(o.get("shape", ())), _distance(o.get("distance")))
        d.objects[obj.name] = obj
    for a in doc["arrows"]:
        if a["name"] in d.arrows or a["name"] in d.objects:
            continue
        kind = a["kind"]
        if kind == "data":
            source = a["source"] if isinstance(a["source"], str) else tuple(a["source"])
            arrow = DataArrow(a["name"], source, a["target"], a["column"], a.get("encoding"))
        elif kind == "function":
            arrow = FunctionArrow(a["name"], _sources(a["source"]), a["target"], a["op"],
                                  _clean(a, ("name", "kind", "source", "target", "op")))
        else:
            arch = a.get("architecture")
            architecture = None if arch is None else Architecture(
                _layers(arch["layers"]),
                None if "inputs" not in arch else tuple(_layers(b) for b in arch["inputs"]),
                arch.get("combine"))
            arrow = ModelArrow(a["name"], _sources(a["source"]), a["target"], a["trainable"], architecture,
                               bool(a.get("external", False)))
        d.arrows[arrow.name] = arrow
    eqs = doc.get("equations", {})
    d.automatic = eqs.get("automatic", True)
    d.explicit = [ExplicitEquation(e["lhs"], e["rhs"], _distance(e.get("distance")), e.get("weight"), e.get("name"))
                  for e in eqs.get("explicit", [])]
    return d


def to_json(d: Diagram) -> dict[str, Any]:
    """The document for a diagram, keys in a stable order, defaults left out where they were left out."""
    doc: dict[str, Any] = {"format": FORMAT, "format_version": d.format_version}
    if d.name is not None:
        doc["name"] = d.name
    if d.description is not None:
        doc["description"] = d.description
    objects = []
    for o in d.objects.values():
        j: dict[str, Any] = {"name": o.name, "kind": o.kind}
        if isinstance(o, TensorObject):
            j.update(shape=list(o.shape), dtype=o.dtype)
        elif isinstance(o, CategoricalObject):
            j["classes"] = o.classes
            if o.shape:
                j["shape"] = list(o.shape)
        if getattr(o, "distance", None) is not None:
            j["distance"] = o.distance.to_json()
        objects.append(j)
    doc["objects"] = objects
    arrows = []
    for a in d.arrows.values():
        src = a.sources[0] if len(a.sources) == 1 else list(a.sources)
        j = {"name": a.name, "kind": a.kind, "source": src, "target": a.target}
        if isinstance(a, DataArrow):
            j["column"] = a.column
            if a.encoding is not None:
                j["encoding"] = a.encoding
        elif isinstance(a, FunctionArrow):
            j["op"] = a.op
            j.update(a.params)
        elif isinstance(a, ModelArrow):
            j["trainable"] = a.trainable
            if a.external:
                j["external"] = True
            else:
                arch = a.architecture
                aj: dict[str, Any] = {}
                if arch.inputs is not None:
                    aj["inputs"] = [[x.to_json() for x in b] for b in arch.inputs]
                if arch.combine is not None:
                    aj["combine"] = arch.combine
                aj["layers"] = [x.to_json() for x in arch.layers]
                j["architecture"] = aj
        arrows.append(j)
    doc["arrows"] = arrows
    if not d.automatic or d.explicit:
        eqs: dict[str, Any] = {"automatic": d.automatic}
        if d.explicit:
            eqs["explicit"] = []
            for e in d.explicit:
                ej: dict[str, Any] = {}
                if e.name is not None:
                    ej["name"] = e.name
                ej.update(lhs=e.lhs, rhs=e.rhs)
                if e.distance is not None:
                    ej["distance"] = e.distance.to_json()
                if e.weight is not None:
                    ej["weight"] = e.weight
                eqs["explicit"].append(ej)
        doc["equations"] = eqs
    if d.max_terms is not None:
        doc["max_terms"] = d.max_terms
    if d.max_term_size is not None:
        doc["max_term_size"] = d.max_term_size
    if d.max_equations is not None:
        doc["max_equations"] = d.max_equations
    if d.max_total_terms is not None:
        doc["max_total_terms"] = d.max_total_terms
    return doc


MAX_JSON_DEPTH = MAX_NESTING  # SPEC §1: 512


def parse_document(text: str, source: str = "the document") -> Any:
    """Parse JSON text as SPEC §1 says; ``malformed-json`` with the line and column, for NaN/Infinity literals,
    repeated keys, and nesting beyond ``MAX_NESTING``."""
    with gc_paused():  # many containers, none of them garbage: collecting while they are made is wasted work
        fast = fast_loads(text, MAX_NESTING)
        if fast is not None:
            return fast[0]
        try:
            doc = strict_loads(text)
        except json.JSONDecodeError as e:
            raise DiagramError.one("malformed-json", "", f"{source}: invalid JSON at line {e.lineno}, "
                                                         f"column {e.colno}: {e.msg}") from None
        except NotJSON as e:
            raise DiagramError.one("malformed-json", "", f"{source}: {e}") from None
        except RecursionError:
            doc = None
            depth = MAX_NESTING + 1
        else:
            depth = nesting_depth(doc, MAX_NESTING)
    if depth > MAX_NESTING:
        raise DiagramError.one("malformed-json", "", f"{source}: arrays and objects nest more than {MAX_NESTING} "
                                                     f"deep (SPEC §1)")
    return doc


def read_document(source: str | os.PathLike) -> Any:
    """Parse a JSON file; ``file-not-found`` if there is none, ``malformed-json`` naming the file, line and
    column if it cannot be read or parsed.

    Only a regular file of at most ``MAX_DOCUMENT_BYTES`` is read (SPEC §1): a FIFO or a device
    is refused without blocking.
    """
    path = Path(source)
    try:
        text = read_text(path, MAX_DOCUMENT_BYTES)
    except UnreadableFile as e:
        raise DiagramError.one("file-not-found" if e.missing else "malformed-json", str(path), str(e)) from None
    return parse_document(text, str(path))


def load(source: Source) -> Diagram:
    """Read and validate a diagram from a path, a parsed document, or a ``Diagram``.

    Raises ``DiagramError`` listing every problem found. A ``Diagram`` that ``load`` returned, unchanged
    since, is not checked again: ``load`` returns a copy of it (new containers, the same frozen parts).
    """
    with gc_paused():
        if isinstance(source, Diagram):
            if recall(source, "valid"):
                return _copy(source)
            doc = to_json(source)
        elif isinstance(source, Mapping):
            doc = source
        else:
            doc = read_document(source)
        check_document(doc)
        diagram = from_json(doc)
        check_diagram(diagram, doc)
        remember(diagram, "valid", True)
    return diagram


def _copy(d: Diagram) -> Diagram:
    """A new ``Diagram`` holding the same parts, with what was remembered of ``d``."""
    out = replace(d, objects=dict(d.objects), arrows=dict(d.arrows), explicit=list(d.explicit))
    carry(d, out)
    return out


def problems(source: Any) -> list[Problem]:
    """Every problem with a diagram (path, document or ``Diagram``), or ``[]`` if it is valid."""
    try:
        load(source)
    except DiagramError as e:
        return e.problems
    return []


def validate(source: Any) -> None:
    """Raise ``DiagramError`` if the diagram (path, document or ``Diagram``) is invalid."""
    load(source)


def _is_flat(value: Any) -> bool:
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, list):
        return all(isinstance(v, scalar) for v in value)
    if isinstance(value, dict):
        return all(isinstance(v, scalar) or (isinstance(v, list) and _is_flat(v)) for v in value.values())
    return True


def _format(value: Any, indent: int) -> str:
    """JSON with one line per object or array, except flat ones (layers, shapes) that fit in 100 columns."""
    compact = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if _is_flat(value) and indent + len(compact) <= 100:
        return compact
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_format(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"
    if isinstance(value, list):
        items = [inner + _format(v, indent + 2) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]" if items else "[]"
    return compact


def dumps(diagram: Diagram) -> str:
    """The diagram as JSON text in a stable layout, ending with a newline."""
    return _format(to_json(diagram), 0) + "\n"


def save(diagram: Diagram, path: str | os.PathLike) -> None:
    """Validate ``diagram`` and write it to ``path`` atomically."""
    load(diagram)
    atomic_write(path, dumps(diagram).encode("utf-8"))
