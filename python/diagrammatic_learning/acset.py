"""A diagram as an attributed C-set in Catlab's JSON layout, and back: interop with AlgebraicJulia.

Catlab/ACSets.jl write an acset as one JSON object with a table per object of
the schema (``generate_json_acset``): a list of rows, each row ``{"_id": i}``
(1-based, equal to the row number) plus one entry per morphism out of that
table (the ``_id`` of the row it points to) and per attribute (the value);
then one (here always empty) table per attribute type, listing attribute
variables. ``read_json_acset`` / ``parse_json_acset`` read it back given the
schema, which ``acset_schema_json()`` gives in Catlab's schema JSON layout
(``parse_json_acset_schema``).

The schema, ``SchLearningDiagram``:

* ``V``: the diagram's objects, in declaration order. Attributes ``vname``
  (Name), ``vkind`` (Kind: data, tensor, categorical), ``vspec`` (JSON: the
  object's other keys as JSON text, e.g. ``{"shape": [64], "dtype": "float32"}``).
* ``E``: the arrows' legs. ``src``, ``tgt``: E → V. An arrow with one source
  is one edge; an arrow with n sources is n consecutive edges, one per
  source, all with the arrow's target. Attributes ``ename`` (Name, shared by
  the legs of one arrow), ``ekind`` (Kind: data, function, model),
  ``eindex`` (Position: which source, 1-based), ``espec`` (JSON: the arrow's
  keys other than name, kind, source and target).
* ``Equation``: the explicit equations in order, attribute ``eqspec`` (JSON:
  the entry as written in the diagram file).
* ``Diagram``: one row, attribute ``dspec`` (JSON: format, format_version,
  name, description, max_terms, max_term_size, max_equations, max_total_terms and
  ``equations.automatic``).

So the graph, the names and the kinds are plain columns for Catlab, and the
rest rides along as JSON text: ``from_acset_json(to_acset_json(d))`` gives
back ``d`` exactly. In Julia, with ``schema.json`` holding
``acset_schema_json()`` and ``d.json`` holding ``to_acset_json(d)``::

    using ACSets, JSON3
    S = parse_json_acset_schema(BasicSchema, JSON3.read(read("schema.json", String)))
    @acset_type LearningDiagramGraph(S, index=[:src, :tgt])
    g = read_json_acset(LearningDiagramGraph{String,String,Int,String}, "d.json")
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from .diagram import Diagram
from .errors import DiagramError, Problem, pointer
from .io import load, to_json

OBS = ["V", "E", "Equation", "Diagram"]
HOMS = [("src", "E", "V"), ("tgt", "E", "V")]
ATTRTYPES = ["Name", "Kind", "Position", "JSON"]
ATTRS = [("vname", "V", "Name"), ("vkind", "V", "Kind"), ("vspec", "V", "JSON"),
         ("ename", "E", "Name"), ("ekind", "E", "Kind"), ("eindex", "E", "Position"), ("espec", "E", "JSON"),
         ("eqspec", "Equation", "JSON"), ("dspec", "Diagram", "JSON")]
COLUMNS = {ob: [h for h, dom, _ in HOMS if dom == ob] + [a for a, dom, _ in ATTRS if dom == ob] for ob in OBS}


def acset_schema_json() -> dict[str, Any]:
    """``SchLearningDiagram`` in Catlab's schema JSON layout (read it with ``parse_json_acset_schema``)."""
    return {
        "version": {"ACSetSchema": "0.0.1", "ACSets": "0.0.0"},
        "Ob": [{"name": ob} for ob in OBS],
        "Hom": [{"name": n, "dom": d, "codom": c} for n, d, c in HOMS],
        "AttrType": [{"name": t} for t in ATTRTYPES],
        "Attr": [{"name": n, "dom": d, "codom": c} for n, d, c in ATTRS],
        "equations": [],
    }


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def to_acset_json(d: Diagram) -> dict[str, Any]:
    """The diagram as a JSON-able acset of ``SchLearningDiagram`` (see the module docstring)."""
    doc = to_json(load(d))
    vertex = {o["name"]: i + 1 for i, o in enumerate(doc["objects"])}
    V = [{"_id": vertex[o["name"]], "vname": o["name"], "vkind": o["kind"],
          "vspec": _text({k: v for k, v in o.items() if k not in ("name", "kind")})} for o in doc["objects"]]
    E: list[dict[str, Any]] = []
    for a in doc["arrows"]:
        sources = [a["source"]] if isinstance(a["source"], str) else a["source"]
        spec = _text({k: v for k, v in a.items() if k not in ("name", "kind", "source", "target")})
        for k, source in enumerate(sources):
            E.append({"_id": len(E) + 1, "src": vertex[source], "tgt": vertex[a["target"]], "ename": a["name"],
                      "ekind": a["kind"], "eindex": k + 1, "espec": spec})
    equations = doc.get("equations", {})
    Eq = [{"_id": i + 1, "eqspec": _text(e)} for i, e in enumerate(equations.get("explicit", []))]
    header = {k: v for k, v in doc.items() if k not in ("objects", "arrows", "equations")}
    if "equations" in doc:
        header["equations"] = {"automatic": equations.get("automatic", True)}
    return {"V": V, "E": E, "Equation": Eq, "Diagram": [{"_id": 1, "dspec": _text(header)}],
            **{t: [] for t in ATTRTYPES}}


class _Reader:
    """Reads the tables of an acset document, collecting problems with JSON pointers into it."""

    def __init__(self, doc: Any):
        self.doc = doc
        self.problems: list[Problem] = []

    def table(self, ob: str, required: bool = True) -> list[Mapping[str, Any]]:
        rows = self.doc.get(ob)
        if rows is None:
            if required:
                self.problems.append(Problem("missing-key", pointer(ob), f"the acset has no table {ob!r}"))
            return []
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            self.problems.append(Problem("wrong-type", pointer(ob), f"table {ob!r} is a list of rows (objects)"))
            return []
        good = []
        for i, row in enumerate(rows):
            if row.get("_id") != i + 1:
                self.problems.append(Problem("bad-value", pointer(ob, i, "_id"),
                                             f"row {i + 1} of {ob!r} must have _id {i + 1}, got {row.get('_id')!r}"))
                good.append({})  # keep the numbering: later rows still point at this one by position
                continue
            missing = [c for c in COLUMNS[ob] if c not in row]
            for c in missing:
                self.problems.append(Problem("missing-key", pointer(ob, i, c), f"row {i + 1} of {ob!r} has no {c!r}"))
            for c in row:
                if c != "_id" and c not in COLUMNS[ob]:
                    self.problems.append(Problem("unknown-key", pointer(ob, i, c),
                                                 f"{c!r} is not a column of {ob!r} in SchLearningDiagram"))
            variables = [c for c in COLUMNS[ob] if isinstance(row.get(c), Mapping) and "_var" in row[c]]
            for c in variables:
                self.problems.append(Problem("bad-value", pointer(ob, i, c),
                                             "attribute variables are not supported: every value must be given"))
            if not missing and not variables:
                good.append(row)
            else:
                good.append({})
        return good

    def string(self, row: Mapping[str, Any], at: str, column: str) -> str | None:
        value = row.get(column)
        if not isinstance(value, str):
            if row:
                self.problems.append(Problem("wrong-type", at + pointer(column), f"{column} must be a string"))
            return None
        return value

    def spec(self, row: Mapping[str, Any], at: str, column: str) -> dict[str, Any]:
        text = self.string(row, at, column)
        if text is None:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            self.problems.append(Problem("malformed-json", at + pointer(column), f"{column} is not JSON text: {e}"))
            return {}
        if not isinstance(value, dict):
            self.problems.append(Problem("wrong-type", at + pointer(column), f"{column} must hold a JSON object"))
            return {}
        return value


def from_acset_json(acset: Mapping[str, Any] | str) -> Diagram:
    """The diagram an acset of ``SchLearningDiagram`` describes (a JSON-able object or its text), validated.

    Problems with the acset point into it (``/E/3/src``); problems with the
    diagram it describes point into that diagram's document, as ``load`` does.
    """
    if isinstance(acset, str):
        try:
            acset = json.loads(acset)
        except json.JSONDecodeError as e:
            raise DiagramError.one("malformed-json", "", f"invalid JSON: {e}") from None
    if not isinstance(acset, Mapping):
        raise DiagramError.one("not-a-diagram", "", "an acset is a JSON object with one table per part type")
    r = _Reader(acset)
    V, E = r.table("V"), r.table("E")
    eq_rows, header_rows = r.table("Equation", required=False), r.table("Diagram")
    if r.problems and not V:
        raise DiagramError(r.problems)  # without vertices every edge would be reported too
    for t in ATTRTYPES:
        if acset.get(t, []) != []:
            r.problems.append(Problem("bad-value", pointer(t), "attribute variables are not supported"))
    for key in acset:
        if key not in OBS and key not in ATTRTYPES:
            r.problems.append(Problem("unknown-key", pointer(key), f"{key!r} is not a table of SchLearningDiagram"))

    objects = []
    for i, row in enumerate(V):
        at = pointer("V", i)
        name, kind = r.string(row, at, "vname"), r.string(row, at, "vkind")
        objects.append({"name": name, "kind": kind, **r.spec(row, at, "vspec")})

    arrows: dict[str, dict[str, Any]] = {}
    legs: dict[str, list[tuple[int, int, str]]] = {}
    for i, row in enumerate(E):
        at = pointer("E", i)
        name = r.string(row, at, "ename")
        if name is None:
            continue
        ends = []
        for column in ("src", "tgt"):
            v = row.get(column)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= len(V):
                r.problems.append(Problem("unknown-object", at + pointer(column),
                                          f"{column} must be the _id of a row of V (1 to {len(V)}), got {v!r}"))
                break
            ends.append(objects[v - 1]["name"])
        else:
            index = row.get("eindex")
            if not isinstance(index, int) or isinstance(index, bool):
                r.problems.append(Problem("wrong-type", at + pointer("eindex"), "eindex must be an integer"))
                continue
            arrow = {"name": name, "kind": r.string(row, at, "ekind"), "target": ends[1], **r.spec(row, at, "espec")}
            if name in arrows and arrows[name] != arrow:
                r.problems.append(Problem("bad-value", at, f"the legs of arrow {name!r} disagree on its kind, target "
                                                           "or espec"))
            arrows.setdefault(name, arrow)
            legs.setdefault(name, []).append((index, i, ends[0]))
    for name, ls in legs.items():
        if sorted(k for k, _, _ in ls) != list(range(1, len(ls) + 1)):
            r.problems.append(Problem("bad-value", pointer("E", ls[0][1], "eindex"),
                                      f"the legs of arrow {name!r} must have eindex 1 to {len(ls)}"))
            continue
        sources = [s for _, _, s in sorted(ls)]
        arrows[name]["source"] = sources[0] if len(sources) == 1 else sources

    header: dict[str, Any] = {}
    if len(header_rows) != 1:
        if "Diagram" in acset:
            r.problems.append(Problem("bad-value", pointer("Diagram"), "table 'Diagram' must have exactly one row"))
    else:
        header = r.spec(header_rows[0], pointer("Diagram", 0), "dspec")
    explicit = [r.spec(row, pointer("Equation", i), "eqspec") for i, row in enumerate(eq_rows)]
    if r.problems:
        raise DiagramError(r.problems)

    doc = dict(header)
    doc["objects"] = objects
    doc["arrows"] = [{k: a[k] for k in ("name", "kind", "source", "target") if k in a}
                     | {k: v for k, v in a.items() if k not in ("name", "kind", "source", "target")}
                     for a in arrows.values()]
    if explicit:
        doc["equations"] = {**doc.get("equations", {}), "explicit": explicit}
    return load(doc)
