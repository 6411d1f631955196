"""Building diagrams from diagrams: gluing (a pushout), disjoint union, renaming, restriction, model swaps.

Every operation is a pure function: it reads ``Diagram``s, returns a new,
validated ``Diagram`` and never touches its inputs. The result is an ordinary
diagram that saves in the ordinary format; nothing about how it was composed
is needed to use it.

Gluing
------
``glue(d1, d2, along)`` identifies a common part of two diagrams and keeps
everything else apart. ``along`` names the common part, mapping names of
``d1`` to names of ``d2``::

    {"objects": {"D": "D", "X": "X", "H": "H"},
     "arrows":  {"x": "x", "backbone": "backbone"}}

Either map may also be a list of names used by both sides (``["D", "X"]``
means ``{"D": "D", "X": "X"}``), and ``along`` itself may be one such list,
each name sorted into objects or arrows by what it is in ``d1``. Missing
keys mean "nothing of that sort".

Rules:

* The common part must be a sub-diagram: an identified arrow's sources and
  target must be identified with the other arrow's sources (in order) and
  target. Identifications are one-to-one.
* Identified objects must agree: kind, shape, class count, dtype class
  (float or int64) and effective distance. Identified arrows must agree:
  kind; for data arrows column and encoding; for functions op and
  parameters; for models ``trainable``, ``external`` and the architecture
  (layers compared with their defaults filled in). A disagreement is a
  ``DiagramError`` naming it (``kind-mismatch``, ``shape-mismatch``,
  ``dtype-mismatch``, or ``bad-value``), pointing into ``along``.
* The glued diagram lists ``d1``'s objects and arrows in their order, under
  their names and with their declarations, then the rest of ``d2``'s in
  their order. A part of ``d2`` that is not identified but whose name is
  used in ``d1`` is renamed ``<prefix>_<name>`` (``prefix`` defaults to
  ``d2``'s name made into a valid name, else ``right``).
* Equations: automatic equations are formed on the whole, so the result has
  both sides' equations and the new ones the shared parts create (two terms
  of one object that came from different sides). ``automatic`` must be the
  same on both sides. Explicit equations are carried over, ``d1``'s first;
  ``d2``'s term texts are rewritten with the new arrow names, and a given
  equation name used in ``d1`` gets the prefix too. An explicit equation
  present on both sides (same terms, distance, weight and name) is kept
  once; two different ones on the same pair of terms are
  ``duplicate-equation``.

``gluing`` returns the diagram together with where every name of each side
went, and ``rename_weights`` moves a part's weights to those names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

from .diagram import (Architecture, Arrow, CategoricalObject, DataArrow, Diagram, Distance, ExplicitEquation,
                      FunctionArrow, ModelArrow, Object, TensorObject)
from .distances import DEFAULT_DISTANCE, full_distance
from .errors import DiagramError, Problem, pointer
from .io import load
from .layers import full_params
from .terms import Term, parse_term
from .versions import later

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME = 64


# ----------------------------------------------------------------------------- the common part


@dataclass(frozen=True)
class Along:
    """The common part of a gluing: names of the first diagram → names of the second."""

    objects: Mapping[str, str]
    arrows: Mapping[str, str]


def parse_along(doc: Any, d1: Diagram, source: str = "along") -> Along:
    """Read an ``along`` document (see the module docstring); names are classified with ``d1``.

    Problems point into the document as ``<source>#<JSON pointer>``.
    """
    problems: list[Problem] = []
    where = lambda *parts: f"{source}#{pointer(*parts)}"  # noqa: E731
    if isinstance(doc, Along):
        return doc
    if isinstance(doc, (list, tuple)):
        objects, arrows = {}, {}
        for i, name in enumerate(doc):
            if not isinstance(name, str):
                problems.append(Problem("wrong-type", where(i), f"expected a name, got {name!r}"))
            elif name in d1.arrows:
                arrows[name] = name
            else:
                objects[name] = name  # unknown names are reported with the objects
        if problems:
            raise DiagramError(problems)
        return Along(objects, arrows)
    if not isinstance(doc, Mapping):
        raise DiagramError.one("wrong-type", where(), "along is an object {\"objects\": {...}, \"arrows\": {...}} "
                                                      "or a list of shared names")
    for key in doc:
        if key not in ("objects", "arrows") and not str(key).startswith("x-"):
            problems.append(Problem("unknown-key", where(key), f"unknown key {key!r}; expected objects, arrows"))
    maps: dict[str, dict[str, str]] = {}
    for key in ("objects", "arrows"):
        value = doc.get(key, {})
        if isinstance(value, (list, tuple)):
            value = {v: v for v in value if isinstance(v, str)} if all(isinstance(v, str) for v in value) else None
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            problems.append(Problem("wrong-type", where(key), f"{key} maps names of the first diagram to names "
                                                              "of the second (strings), or lists shared names"))
            continue
        maps[key] = dict(value)
    if problems:
        raise DiagramError(problems)
    return Along(maps["objects"], maps["arrows"])


# ----------------------------------------------------------------------------- checking the identifications


def _dtype_class(obj: TensorObject) -> str:
    return "int64" if obj.dtype == "int64" else "float"


def _effective_distance(obj: Object) -> Distance | None:
    if obj.kind == "data":
        return None
    return full_distance(obj.distance or Distance(DEFAULT_DISTANCE[obj.kind]))


def _object_mismatch(o1: Object, o2: Object) -> tuple[str, str] | None:
    """(code, what differs) between two objects to identify, or None if they agree."""
    if o1.kind != o2.kind:
        return "kind-mismatch", f"kinds differ: {o1.kind} vs {o2.kind}"
    if isinstance(o1, TensorObject) and isinstance(o2, TensorObject):
        if o1.shape != o2.shape:
            return "shape-mismatch", f"shapes differ: {list(o1.shape)} vs {list(o2.shape)}"
        if _dtype_class(o1) != _dtype_class(o2):
            return "dtype-mismatch", f"dtypes differ: {o1.dtype} vs {o2.dtype}"
    if isinstance(o1, CategoricalObject) and isinstance(o2, CategoricalObject):
        if o1.classes != o2.classes:
            return "shape-mismatch", f"class counts differ: {o1.classes} vs {o2.classes}"
        if o1.shape != o2.shape:
            return "shape-mismatch", f"shapes differ: {list(o1.shape)} vs {list(o2.shape)}"
    e1, e2 = _effective_distance(o1), _effective_distance(o2)
    if e1 != e2:
        return "bad-value", f"distances differ: {e1.to_json()} vs {e2.to_json()}"
    return None


def _layers_text(layers: Sequence) -> list[str]:
    """Each layer as ``type(param=value, ...)`` with defaults filled, so equal layers give equal text."""
    return [f"{x.type}(" + ", ".join(f"{k}={v}" for k, v in sorted(full_params(x).items())) + ")" for x in layers]


def _architecture_mismatch(a1: Architecture, a2: Architecture) -> str | None:
    if a1.combine != a2.combine:
        return f"combine steps differ: {a1.combine} vs {a2.combine}"
    branches1, branches2 = a1.inputs or (), a2.inputs or ()
    if len(branches1) != len(branches2) and (branches1 or branches2):
        # No inputs at all means an empty branch per source; compare with that in mind.
        n = max(len(branches1), len(branches2))
        branches1 = branches1 or ((),) * n
        branches2 = branches2 or ((),) * n
    parts = [(f"inputs/{k}", b1, b2) for k, (b1, b2) in enumerate(zip(branches1, branches2))]
    parts.append(("layers", a1.layers, a2.layers))
    for label, l1, l2 in parts:
        t1, t2 = _layers_text(l1), _layers_text(l2)
        if len(t1) != len(t2):
            return f"{label} has {len(t1)} layers vs {len(t2)}"
        for i, (x1, x2) in enumerate(zip(t1, t2)):
            if x1 != x2:
                return f"{label}/{i}: {x1} vs {x2}"
    return None


def _arrow_mismatch(a1: Arrow, a2: Arrow) -> tuple[str, str] | None:
    """(code, what differs) between two arrows to identify, endpoints aside, or None if they agree."""
    if a1.kind != a2.kind:
        return "kind-mismatch", f"kinds differ: {a1.kind} vs {a2.kind}"
    if isinstance(a1, DataArrow) and isinstance(a2, DataArrow):
        if a1.column != a2.column:
            return "bad-value", f"columns differ: {a1.column!r} vs {a2.column!r}"
        if (a1.encoding or "index") != (a2.encoding or "index"):
            return "bad-value", f"encodings differ: {a1.encoding or 'index'} vs {a2.encoding or 'index'}"
    if isinstance(a1, FunctionArrow) and isinstance(a2, FunctionArrow):
        if a1.op != a2.op:
            return "bad-value", f"ops differ: {a1.op} vs {a2.op}"
        if dict(a1.params) != dict(a2.params):
            return "bad-value", f"op parameters differ: {dict(a1.params)} vs {dict(a2.params)}"
    if isinstance(a1, ModelArrow) and isinstance(a2, ModelArrow):
        if a1.trainable != a2.trainable:
            return "bad-value", f"one is trainable and the other frozen ({a1.trainable} vs {a2.trainable})"
        if a1.external != a2.external:
            return "bad-value", "one is external and the other has an architecture"
        if a1.architecture is not None and a2.architecture is not None:
            diff = _architecture_mismatch(a1.architecture, a2.architecture)
            if diff:
                return "bad-value", f"architectures differ, {diff}"
    return None


def _label(d: Diagram, fallback: str) -> str:
    return f"{fallback} ({d.name})" if d.name else fallback


def _check_along(d1: Diagram, d2: Diagram, along: Along, source: str) -> None:
    """Every problem with identifying ``along``'s parts, as one ``DiagramError``."""
    problems: list[Problem] = []
    first, second = _label(d1, "the first diagram"), _label(d2, "the second diagram")
    for key, table1, table2, code in (("objects", d1.objects, d2.objects, "unknown-object"),
                                      ("arrows", d1.arrows, d2.arrows, "unknown-arrow")):
        mapping = getattr(along, key)
        seen: dict[str, str] = {}
        for n1, n2 in mapping.items():
            where = f"{source}#{pointer(key, n1)}"
            singular = key[:-1]
            if n1 not in table1:
                problems.append(Problem(code, where, f"{first} has no {singular} {n1!r}"))
                continue
            if n2 not in table2:
                problems.append(Problem(code, where, f"{second} has no {singular} {n2!r}"))
                continue
            if n2 in seen:
                problems.append(Problem("bad-value", where, f"{seen[n2]!r} and {n1!r} are both identified with "
                                                            f"{n2!r}; identifications are one-to-one"))
                continue
            seen[n2] = n1
            check = _object_mismatch if key == "objects" else _arrow_mismatch
            diff = check(table1[n1], table2[n2])
            if diff:
                problems.append(Problem(diff[0], where, f"cannot identify {singular} {n1!r} with {n2!r}: {diff[1]}"))
    for n1, n2 in along.arrows.items():
        a1, a2 = d1.arrows.get(n1), d2.arrows.get(n2)
        if a1 is None or a2 is None or a1.kind != a2.kind:
            continue
        mapped = tuple(along.objects.get(s) for s in a1.sources)
        if mapped != a2.sources or along.objects.get(a1.target) != a2.target:
            problems.append(Problem(
                "bad-value", f"{source}#{pointer('arrows', n1)}",
                f"arrow {n1!r} goes {_ends(a1)} in {first} and {n2!r} goes {_ends(a2)} in {second}; identify "
                f"their sources and targets too (under \"objects\") to identify the arrows"))
    if problems:
        raise DiagramError(problems)


def _ends(arrow: Arrow) -> str:
    src = arrow.sources[0] if len(arrow.sources) == 1 else "(" + ", ".join(arrow.sources) + ")"
    return f"{src} → {arrow.target}"


# ----------------------------------------------------------------------------- renaming


def _rename_term(term: Term, names: Mapping[str, str]) -> Term:
    return Term(names.get(term.arrow, term.arrow), tuple(_rename_term(a, names) for a in term.args))


def rename_term_text(text: str, arrows: Mapping[str, str]) -> str:
    """A term's text with its arrows renamed (canonical text)."""
    return str(_rename_term(parse_term(text), arrows))


def _rename_object(obj: Object, name: str) -> Object:
    return replace(obj, name=name)


def _rename_arrow(arrow: Arrow, names: Mapping[str, str]) -> Arrow:
    new = names.get(arrow.name, arrow.name)
    target = names.get(arrow.target, arrow.target)
    if isinstance(arrow, DataArrow):
        return replace(arrow, name=new, source=names.get(arrow.source, arrow.source), target=target)
    return replace(arrow, name=new, sources=tuple(names.get(s, s) for s in arrow.sources), target=target)


def _rename_equation(eq: ExplicitEquation, names: Mapping[str, str], eq_names: Mapping[str, str]) -> ExplicitEquation:
    name = eq_names.get(eq.name, eq.name) if eq.name is not None else None
    return replace(eq, lhs=rename_term_text(eq.lhs, names), rhs=rename_term_text(eq.rhs, names), name=name)


def _check_names(names: Iterable[str], where: str) -> None:
    problems = [Problem("bad-value", where, f"{n!r} is not a valid name (letters, digits, _, at most {MAX_NAME})")
                for n in names if not NAME.match(n) or len(n) > MAX_NAME]
    if problems:
        raise DiagramError(problems)


def rename(d: Diagram, names: Mapping[str, str]) -> Diagram:
    """``d`` with objects and arrows renamed by ``names`` (others kept); terms of explicit equations follow.

    Batch columns keep their names: they name data, not parts of the diagram.
    """
    d = load(d)
    unknown = [n for n in names if n not in d.objects and n not in d.arrows]
    if unknown:
        raise DiagramError([Problem("unknown-object", "", f"the diagram has no object or arrow {n!r}")
                            for n in unknown])
    _check_names(names.values(), "")
    out = Diagram(d.name, d.description, automatic=d.automatic, max_terms=d.max_terms,
                  format_version=d.format_version, max_term_size=d.max_term_size, max_equations=d.max_equations,
                  max_total_terms=d.max_total_terms)
    out.objects = {names.get(n, n): _rename_object(o, names.get(n, n)) for n, o in d.objects.items()}
    out.arrows = {names.get(n, n): _rename_arrow(a, names) for n, a in d.arrows.items()}
    out.explicit = [_rename_equation(e, names, {}) for e in d.explicit]
    if len(out.objects) + len(out.arrows) != len(d.objects) + len(d.arrows) or set(out.objects) & set(out.arrows):
        raise DiagramError.one("duplicate-name", "", "the renaming gives two parts the same name")
    return load(out)


def namespace(d: Diagram, prefix: str) -> Diagram:
    """``d`` with every object, arrow and given equation name written ``<prefix>_<name>``."""
    d = load(d)
    names = {n: f"{prefix}_{n}" for n in [*d.objects, *d.arrows]}
    _check_names(names.values(), "")
    out = rename(d, names)
    out.explicit = [replace(e, name=None if e.name is None else f"{prefix}_{e.name}") for e in out.explicit]
    return load(out)


def rename_weights(weights: Mapping[str, Any], arrows: Mapping[str, str]) -> dict[str, Any]:
    """Weights keyed ``<arrow>.<path>`` moved to ``<arrows[arrow]>.<path>``; arrows not in the map keep their keys."""
    out: dict[str, Any] = {}
    for key, value in weights.items():
        arrow, dot, rest = key.partition(".")
        out[arrows.get(arrow, arrow) + dot + rest] = value
    return out


# ----------------------------------------------------------------------------- gluing


@dataclass(frozen=True)
class Gluing:
    """A glued diagram and where each side's names went (objects and arrows, every name of that side)."""

    diagram: Diagram
    left: Mapping[str, str]
    right: Mapping[str, str]

    def weights(self, left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
        """Both sides' weights under the glued names; for a shared arrow the left side's weights win."""
        return {**rename_weights(right, self.right), **rename_weights(left, self.left)}


def default_prefix(d: Diagram) -> str:
    """The namespace for a diagram's clashing names: its name made into a valid name, else ``right``."""
    if d.name:
        candidate = re.sub(r"[^A-Za-z0-9_]", "_", d.name)[:32]
        if NAME.match(candidate):
            return candidate
    return "right"


def gluing(d1: Diagram, d2: Diagram, along: Any, prefix: str | None = None, name: str | None = None,
           along_source: str = "along") -> Gluing:
    """Glue ``d2`` onto ``d1`` along a common part (see the module docstring); the result and the name maps.

    ``along_source`` names the ``along`` document in error pointers
    (``<along_source>#/arrows/backbone``).
    """
    d1, d2 = load(d1), load(d2)
    common = parse_along(along, d1, along_source)
    _check_along(d1, d2, common, along_source)
    if d1.automatic != d2.automatic:
        raise DiagramError.one("bad-value", f"{along_source}#",
                               "one diagram forms automatic equations and the other does not; set "
                               "equations.automatic the same on both before gluing")
    prefix = default_prefix(d2) if prefix is None else prefix
    _check_names([f"{prefix}_x"], "prefix")

    left = {n: n for n in [*d1.objects, *d1.arrows]}
    used = set(left)
    back = {**{v: k for k, v in common.objects.items()}, **{v: k for k, v in common.arrows.items()}}
    right: dict[str, str] = {}
    for n in [*d2.objects, *d2.arrows]:
        right[n] = back[n] if n in back else (f"{prefix}_{n}" if n in used else n)
    fresh = [right[n] for n in right if n not in back]
    clashes = sorted({n for n in fresh if n in used or fresh.count(n) > 1})
    if clashes:
        raise DiagramError.one("duplicate-name", "prefix", f"renaming with prefix {prefix!r} still clashes on "
                                                           f"{clashes}; choose another prefix")
    _check_names(fresh, "prefix")

    out = Diagram(name if name is not None else (" + ".join(x.name for x in (d1, d2) if x.name) or None),
                  automatic=d1.automatic, format_version=later(d1.format_version, d2.format_version),
                  max_terms=max((m for m in (d1.max_terms, d2.max_terms) if m is not None), default=None),
                  max_term_size=max((m for m in (d1.max_term_size, d2.max_term_size) if m is not None), default=None),
                  max_equations=max((m for m in (d1.max_equations, d2.max_equations) if m is not None), default=None),
                  # both diagrams' objects are enumerated together: their total bounds add up
                  max_total_terms=(None if d1.max_total_terms is None and d2.max_total_terms is None
                                   else d1.total_term_bound + d2.total_term_bound))
    out.objects = dict(d1.objects)
    out.objects.update({right[n]: _rename_object(o, right[n]) for n, o in d2.objects.items() if n not in back})
    out.arrows = dict(d1.arrows)
    out.arrows.update({right[n]: _rename_arrow(a, right) for n, a in d2.arrows.items() if n not in back})
    out.explicit = list(d1.explicit) + _carried_equations(d1, d2, right, prefix)
    return Gluing(load(out), left, right)


def _carried_equations(d1: Diagram, d2: Diagram, right: Mapping[str, str], prefix: str) -> list[ExplicitEquation]:
    """``d2``'s explicit equations under the glued names, without those ``d1`` already has."""
    given = {e.name for e in d1.explicit if e.name is not None}
    mine = {frozenset([parse_term(e.lhs), parse_term(e.rhs)]): (k, e) for k, e in enumerate(d1.explicit)}
    out = []
    for k, eq in enumerate(d2.explicit):
        renamed = _rename_equation(eq, right, {n: f"{prefix}_{n}" for n in given})
        pair = frozenset([parse_term(renamed.lhs), parse_term(renamed.rhs)])
        if pair in mine:
            j, other = mine[pair]
            same = (parse_term(other.lhs), parse_term(other.rhs), other.distance, other.weight, other.name) == \
                   (parse_term(renamed.lhs), parse_term(renamed.rhs), renamed.distance, renamed.weight, eq.name)
            if same:
                continue
            raise DiagramError.one("duplicate-equation", pointer("equations", "explicit", k),
                                   f"explicit equation {k} of the second diagram is on the same terms as explicit "
                                   f"equation {j} of the first ({renamed.lhs} = {renamed.rhs}) but differs")
        out.append(renamed)
    return out


def glue(d1: Diagram, d2: Diagram, along: Any, prefix: str | None = None, name: str | None = None) -> Diagram:
    """The pushout of ``d1`` and ``d2`` over their common part ``along`` (see the module docstring)."""
    return gluing(d1, d2, along, prefix, name).diagram


def disjoint_union(d1: Diagram, d2: Diagram, prefix: str | None = None, name: str | None = None) -> Diagram:
    """Both diagrams side by side, nothing shared; ``d2``'s clashing names get ``prefix``."""
    return glue(d1, d2, {}, prefix, name)


# ----------------------------------------------------------------------------- sub-diagrams and model swaps


def restrict(d: Diagram, keep: Iterable[str], direction: str = "backward") -> Diagram:
    """The sub-diagram of the objects and arrows reachable from ``keep``.

    ``backward``: everything that feeds the named parts (every arrow into a
    kept object, with its sources), e.g. what computes one task's output.
    ``forward``: everything computed from them (an arrow is kept once all its
    sources are). A named arrow brings its sources and target. Explicit
    equations are kept when all their arrows are.
    """
    d = load(d)
    keep = list(keep)
    if direction not in ("backward", "forward"):
        raise DiagramError.one("bad-value", "direction", f"direction is backward or forward, not {direction!r}")
    unknown = [n for n in keep if n not in d.objects and n not in d.arrows]
    if unknown:
        raise DiagramError([Problem("unknown-object", "", f"the diagram has no object or arrow {n!r}")
                            for n in unknown])
    objects = {n for n in keep if n in d.objects}
    arrows = {n for n in keep if n in d.arrows}
    for n in arrows:
        objects.update(d.arrows[n].sources)
        objects.add(d.arrows[n].target)
    changed = True
    while changed:
        changed = False
        for a in d.arrows.values():
            if a.name in arrows:
                continue
            if direction == "backward" and a.target in objects:
                arrows.add(a.name)
                objects.update(a.sources)
                changed = True
            elif direction == "forward" and all(s in objects for s in a.sources):
                arrows.add(a.name)
                objects.add(a.target)
                changed = True
    out = Diagram(d.name, d.description, automatic=d.automatic, max_terms=d.max_terms,
                  format_version=d.format_version, max_term_size=d.max_term_size, max_equations=d.max_equations,
                  max_total_terms=d.max_total_terms)
    out.objects = {n: o for n, o in d.objects.items() if n in objects}
    out.arrows = {n: a for n, a in d.arrows.items() if n in arrows}
    out.explicit = [e for e in d.explicit
                    if set(parse_term(e.lhs).arrows()) | set(parse_term(e.rhs).arrows()) <= arrows]
    return load(out)


def replace_model(d: Diagram, arrow: str, architecture: Architecture | None = None, *,
                  external: bool = False, trainable: bool | None = None) -> Diagram:
    """``d`` with model arrow ``arrow`` given a new architecture (or made external), in the same place.

    ``trainable`` keeps the arrow's setting unless given. The new model must
    still fit the arrow's sources and target (checked as on load).
    """
    d = load(d)
    if arrow not in d.arrows:
        raise DiagramError.one("unknown-arrow", "", f"the diagram has no arrow {arrow!r}")
    old = d.arrows[arrow]
    if not isinstance(old, ModelArrow):
        raise DiagramError.one("kind-mismatch", "", f"{arrow!r} is a {old.kind} arrow, not a model")
    if (architecture is None) == (not external):
        raise DiagramError.one("bad-value", "", "give exactly one of an architecture or external=True")
    new = replace(old, architecture=architecture, external=external,
                  trainable=old.trainable if trainable is None else trainable)
    out = Diagram(d.name, d.description, dict(d.objects), {**d.arrows, arrow: new}, d.automatic, list(d.explicit),
                  d.max_terms, d.format_version, d.max_term_size, d.max_equations, d.max_total_terms)
    return load(out)
