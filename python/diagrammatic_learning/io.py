"""Reading and writing diagram files: JSON text ↔ ``Diagram`` (SPEC §1–4, §6.2).

``load`` validates (see ``validate``); ``save`` writes atomically with a stable
key order, so load → save → load is exact and saving twice gives the same bytes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Union

from .diagram import (Architecture, CategoricalObject, DataArrow, DataObject, Diagram, Distance,
                      ExplicitEquation, FunctionArrow, Layer, ModelArrow, TensorObject, FORMAT)
from .errors import DiagramError

Source = Union[str, os.PathLike, Mapping[str, Any], Diagram]


def _clean(d: Mapping[str, Any], drop: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in drop and not k.startswith("x-")}


def _distance(d: Mapping[str, Any] | None) -> Distance | None:
    return None if d is None else Distance(d["name"], _clean(d, ("name",)))


def _layers(items: list) -> tuple[Layer, ...]:
    return tuple(Layer(x["type"], _clean(x, ("type",))) for x in items)


def _sources(s: str | list) -> tuple[str, ...]:
    return (s,) if isinstance(s, str) else tuple(s)


def from_json(doc: Mapping[str, Any]) -> Diagram:
    """Build a ``Diagram`` from a schema-valid document (no semantic checks; the first of duplicate names wins)."""
    d = Diagram(name=doc.get("name"), description=doc.get("description"), max_terms=doc.get("max_terms"),
                format_version=doc["format_version"])
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
    return doc


def read_document(source: str | os.PathLike) -> Any:
    """Parse a JSON file; ``file-not-found`` if there is none, ``malformed-json`` naming the file, line and
    column if it cannot be read or parsed."""
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DiagramError.one("file-not-found", str(path), f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DiagramError.one("malformed-json", str(path), f"cannot read {path}: {e}") from None
    try:
        doc = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise DiagramError.one("malformed-json", "", f"{path}: invalid JSON at line {e.lineno}, "
                                                     f"column {e.colno}: {e.msg}") from None
    except _NotJSON as e:
        raise DiagramError.one("malformed-json", "", f"{path}: {e}") from None
    except RecursionError:
        raise DiagramError.one("malformed-json", "", f"{path}: arrays and objects nest more than "
                                                     f"{MAX_JSON_DEPTH} deep") from None
    if _too_deep(doc):
        raise DiagramError.one("malformed-json", "", f"{path}: arrays and objects nest more than {MAX_JSON_DEPTH} deep")
    return doc


MAX_JSON_DEPTH = 512  # SPEC §1


class _NotJSON(Exception):
    """What SPEC §1 rejects beyond Python's json: NaN/Infinity literals, a key given twice."""


def _no_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not a JSON value (SPEC §1)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _NotJSON(f"the key {key!r} appears twice in one object (SPEC §1)")
    return d


def _too_deep(doc: Any) -> bool:
    """Whether arrays and objects nest more than MAX_JSON_DEPTH deep (iteratively: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def load(source: Source) -> Diagram:
    """Read and validate a diagram from a path, a parsed document, or a ``Diagram``.

    Raises ``DiagramError`` listing every problem found.
    """
    from .validate import check_diagram, check_document

    if isinstance(source, Diagram):
        doc = to_json(source)
    elif isinstance(source, Mapping):
        doc = source
    else:
        doc = read_document(source)
    check_document(doc)
    diagram = from_json(doc)
    check_diagram(diagram, doc)
    return diagram


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


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a half-written file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "cannot write a file over a directory", str(path))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(2, f"cannot write {path}: no such folder", str(folder))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save(diagram: Diagram, path: str | os.PathLike) -> None:
    """Validate ``diagram`` and write it to ``path`` atomically."""
    load(diagram)
    atomic_write(path, dumps(diagram).encode("utf-8"))
