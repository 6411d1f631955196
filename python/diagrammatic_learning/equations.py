"""Term enumeration and the equations of a diagram, in canonical order (SPEC §5–6).

Works on a structurally valid ``Diagram`` (see ``validate``); ``equations``
raises ``DiagramError`` for problems only visible here (term bound, explicit
equation terms, distances).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Iterator

from .diagram import CategoricalObject, Diagram, Distance
from .distances import DEFAULT_DISTANCE, check_distance, full_distance
from .errors import DiagramError, Problem, pointer
from .terms import Term, TermSyntaxError, parse_term, term_key


@dataclass(frozen=True)
class TermInfo:
    """What a term computes: its object, data object, encoding (categorical only) and trainability."""

    object: str
    data_object: str
    encoding: str | None
    trainable: bool


@dataclass(frozen=True)
class Equation:
    """One equation of the loss: ``weight · distance(lhs, rhs)`` on ``object`` over ``data_object``."""

    name: str
    object: str
    data_object: str
    lhs: Term
    rhs: Term
    distance: Distance
    weight: float
    explicit: bool = False

    def __str__(self) -> str:
        w = "" if self.weight == 1 else f"{self.weight:g} · "
        params = ", ".join(f"{k}={v}" for k, v in self.distance.params.items())
        return f"{w}{self.distance.name}({params}) : {self.lhs} = {self.rhs}   [{self.object} over {self.data_object}]"


class TermError(ValueError):
    """A term that is not well formed; ``code`` is a SPEC §10 code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


ACCEPTS = {"softmax": "logits", "log_softmax": "logits", "one_hot": "index"}


def _apply_encoding(diagram: Diagram, arrow_name: str, args: list[TermInfo]) -> str | None:
    """The encoding of arrow applied to args, or raise TermError if the arrow refuses one."""
    arrow = diagram.arrows[arrow_name]
    target = diagram.objects[arrow.target]
    if arrow.kind == "function":
        need = ACCEPTS.get(arrow.op)
        if need and args[0].encoding is not None and args[0].encoding != need:
            raise TermError("term-type-mismatch", f"{arrow.op} applies to {need} terms, not {args[0].encoding}")
        if arrow.op in ("identity", "stop_gradient"):
            return args[0].encoding
    if not isinstance(target, CategoricalObject):
        return None
    if arrow.kind == "data":
        return arrow.encoding or "index"
    return "logits"


def term_info(diagram: Diagram, term: Term) -> TermInfo:
    """Type a term (SPEC §5.1); ``TermError`` if it is not a term of the diagram."""
    if term.arrow not in diagram.arrows:
        raise TermError("unknown-arrow", f"no arrow named {term.arrow!r}")
    arrow = diagram.arrows[term.arrow]
    if arrow.kind == "data":
        if term.args:
            raise TermError("term-arity", f"data arrow {term.arrow!r} is a leaf and takes no arguments")
        return TermInfo(arrow.target, arrow.source, _apply_encoding(diagram, term.arrow, []), False)
    if not term.args:
        raise TermError("term-not-rooted", f"{term.arrow!r} is not a data arrow, so it needs arguments "
                                            f"({len(arrow.sources)})")
    if len(term.args) != len(arrow.sources):
        raise TermError("term-arity", f"{term.arrow!r} takes {len(arrow.sources)} argument(s), "
                                      f"got {len(term.args)}")
    infos = [term_info(diagram, a) for a in term.args]
    for k, (info, src) in enumerate(zip(infos, arrow.sources)):
        if info.object != src:
            raise TermError("term-type-mismatch", f"argument {k + 1} of {term.arrow!r} is a term of "
                                                  f"{info.object!r}, but the arrow's source there is {src!r}")
    return applied_info(diagram, term.arrow, infos)


def applied_info(diagram: Diagram, arrow_name: str, infos: list[TermInfo]) -> TermInfo:
    """The type of non-data arrow ``arrow_name`` applied to arguments of types ``infos`` (in its source order)."""
    arrow = diagram.arrows[arrow_name]
    data_objects = {i.data_object for i in infos}
    if len(data_objects) > 1:
        raise TermError("term-mixed-data", f"the arguments of {arrow_name!r} come from different data objects "
                                           f"{sorted(data_objects)}")
    encoding = _apply_encoding(diagram, arrow_name, infos)
    # no gradient leaves a stop_gradient: its terms are constant whatever they contain (SPEC §5.1)
    trainable = (any(i.trainable for i in infos) or (arrow.kind == "model" and arrow.trainable)) and not (
        arrow.kind == "function" and arrow.op == "stop_gradient")
    return TermInfo(arrow.target, infos[0].data_object, encoding, trainable)


class _TooManyTerms(Exception):
    def __init__(self, obj: str):
        self.obj = obj


class TermEnumerator:
    """Enumerates terms with no arrow twice on a root-to-leaf path (SPEC §5.2), bounded.

    ``terms(obj, forbidden)`` is memoized on ``forbidden`` cut down to the arrows
    that can occur in terms of ``obj`` at all (those on some path into it): other
    forbidden arrows change nothing, and dropping them lets an acyclic chain be
    enumerated once per object instead of once per path.
    """

    def __init__(self, diagram: Diagram):
        self.d = diagram
        self.bound = diagram.term_bound
        self.position = {name: i for i, name in enumerate(diagram.arrows)}
        self.into: dict[str, list[str]] = {o: [] for o in diagram.objects}
        for a in diagram.arrows.values():
            self.into[a.target].append(a.name)
        self.upstream = self._upstream_arrows()
        self.memo: dict[tuple[str, frozenset[str]], list[tuple[Term, TermInfo]]] = {}

    def _upstream_arrows(self) -> dict[str, frozenset[str]]:
        """For each object, every arrow on some path that ends at it."""
        out: dict[str, frozenset[str]] = {}
        for obj in self.d.objects:
            seen: set[str] = set()
            todo = [obj]
            visited = {obj}
            while todo:
                for name in self.into[todo.pop()]:
                    seen.add(name)
                    for s in self.d.arrows[name].sources:
                        if s not in visited:
                            visited.add(s)
                            todo.append(s)
            out[obj] = frozenset(seen)
        return out

    def terms(self, obj: str, forbidden: frozenset[str] = frozenset()) -> list[tuple[Term, TermInfo]]:
        key = (obj, forbidden & self.upstream[obj])
        if key in self.memo:
            return self.memo[key]
        forbidden = key[1]
        out: list[tuple[Term, TermInfo]] = []
        for name in self.into[obj]:
            if name in forbidden:
                continue
            arrow = self.d.arrows[name]
            if arrow.kind == "data":
                out.append((Term(name), term_info(self.d, Term(name))))
            else:
                inner = forbidden | {name}
                choices = [self.terms(s, inner) for s in arrow.sources]
                for combo in product(*choices):
                    try:
                        info = applied_info(self.d, name, [i for _, i in combo])
                    except TermError:
                        continue  # mixed data objects, or an encoding the arrow does not accept: not a term
                    out.append((Term(name, tuple(t for t, _ in combo)), info))
                    if len(out) > self.bound:
                        raise _TooManyTerms(obj)
            if len(out) > self.bound:
                raise _TooManyTerms(obj)
        out.sort(key=lambda ti: term_key(ti[0], self.position.__getitem__))
        self.memo[key] = out
        return out


def enumerate_terms(diagram: Diagram) -> dict[str, list[tuple[Term, TermInfo]]]:
    """Every non-data object's enumerated terms in canonical order; ``too-many-terms`` past the bound."""
    enum = TermEnumerator(diagram)
    out: dict[str, list[tuple[Term, TermInfo]]] = {}
    over: list[str] = []
    deep: list[str] = []
    for i, (name, obj) in enumerate(diagram.objects.items()):
        if obj.kind == "data":
            continue
        try:
            out[name] = enum.terms(name)
        except _TooManyTerms as e:
            if e.obj not in over:
                over.append(e.obj)
        except RecursionError:
            deep.append(name)
    if deep:
        index = {n: i for i, n in enumerate(diagram.objects)}
        raise DiagramError([Problem("too-many-terms", pointer("objects", index[o]),
                                    f"object {o!r} has terms that nest deeper than this reader can follow "
                                    f"(SPEC §5.3)") for o in deep])
    if over:
        index = {n: i for i, n in enumerate(diagram.objects)}
        raise DiagramError([Problem("too-many-terms", pointer("objects", index[o]),
                                    f"object {o!r} has more than {diagram.term_bound} terms; raise max_terms "
                                    f"or write explicit equations") for o in sorted(over, key=index.get)])
    return out


def object_distance(diagram: Diagram, obj: str) -> Distance:
    o = diagram.objects[obj]
    return full_distance(o.distance or Distance(DEFAULT_DISTANCE[o.kind]))


def _automatic(diagram: Diagram, terms: dict[str, list[tuple[Term, TermInfo]]]) -> Iterator[Equation]:
    for obj, ts in terms.items():
        for data_object in diagram.data_objects():
            group = [(t, i) for t, i in ts if i.data_object == data_object]
            for a in range(len(group)):
                for b in range(a + 1, len(group)):
                    (ta, ia), (tb, ib) = group[a], group[b]
                    if not ia.trainable and not ib.trainable:
                        continue
                    lhs, rhs = (tb, ta) if not ia.trainable else (ta, tb)
                    yield Equation(f"{lhs} = {rhs}", obj, data_object, lhs, rhs,
                                   object_distance(diagram, obj), 1.0)


def equations(diagram: Diagram) -> list[Equation]:
    """The diagram's equations in canonical order (SPEC §6); ``DiagramError`` lists every problem."""
    terms = enumerate_terms(diagram)
    problems: list[Problem] = []
    explicit: list[tuple[int, Equation]] = []
    seen_pairs: dict[frozenset, int] = {}
    for k, eq in enumerate(diagram.explicit):
        where = ("equations", "explicit", k)
        sides: list[tuple[Term, TermInfo]] = []
        for side in ("lhs", "rhs"):
            text = getattr(eq, side)
            try:
                t = parse_term(text)
                sides.append((t, term_info(diagram, t)))
            except TermSyntaxError as e:
                problems.append(Problem("term-syntax", pointer(*where, side), f"cannot read term {text!r}: {e}"))
            except TermError as e:
                problems.append(Problem(e.code, pointer(*where, side), f"{text!r} is not a term: {e}"))
        if len(sides) != 2:
            continue
        (lt, li), (rt, ri) = sides
        if (li.object, li.data_object) != (ri.object, ri.data_object):
            problems.append(Problem("equation-object-mismatch", pointer(*where),
                                    f"lhs is a term of {li.object!r} over {li.data_object!r}, rhs of "
                                    f"{ri.object!r} over {ri.data_object!r}"))
            continue
        pair = frozenset([lt, rt])
        if pair in seen_pairs:
            problems.append(Problem("duplicate-equation", pointer(*where),
                                    f"the same pair of terms as explicit equation {seen_pairs[pair]}"))
            continue
        seen_pairs[pair] = k
        distance = object_distance(diagram, li.object) if eq.distance is None else full_distance(eq.distance)
        for code, msg in check_distance(diagram.objects[li.object], distance):
            problems.append(Problem(code, pointer(*where, "distance"), msg))
        explicit.append((k, Equation(eq.name or f"{lt} = {rt}", li.object, li.data_object, lt, rt, distance,
                                     1.0 if eq.weight is None else float(eq.weight), explicit=True)))
    if problems:
        raise DiagramError(problems)

    by_pair = {frozenset([e.lhs, e.rhs]): (k, e) for k, e in explicit}
    used: set[int] = set()
    result: list[tuple[str, Equation]] = []
    if diagram.automatic:
        for eq in _automatic(diagram, terms):
            hit = by_pair.get(frozenset([eq.lhs, eq.rhs]))
            if hit is not None and hit[1].object == eq.object:
                used.add(hit[0])
                result.append((pointer("equations", "explicit", hit[0]), hit[1]))
            else:
                index = list(diagram.objects).index(eq.object)
                result.append((pointer("objects", index), eq))
    result += [(pointer("equations", "explicit", k), e) for k, e in explicit if k not in used]

    named = {pointer("equations", "explicit", k) for k, e in enumerate(diagram.explicit) if e.name is not None}
    names: dict[str, str] = {}
    for where, eq in result:
        if eq.name in names:
            problems.append(Problem("duplicate-name", where + ("/name" if where in named else ""),
                                    f"two equations are named {eq.name!r}"))
        names[eq.name] = where
        obj = diagram.objects[eq.object]
        if isinstance(obj, CategoricalObject):
            enc = term_info(diagram, eq.lhs).encoding
            if enc != "logits":
                problems.append(Problem("distance-input-mismatch", where,
                                        f"{eq.distance.name} needs logits on the left, but {eq.lhs} has "
                                        f"encoding {enc}"))
    if problems:
        raise DiagramError(problems)
    return [eq for _, eq in result]
