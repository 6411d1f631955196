"""Term enumeration and the equations of a diagram, in canonical order (SPEC §5–6).

Works on a structurally valid ``Diagram`` (see ``validate``); ``equations``
raises ``DiagramError`` for problems only visible here (term bound, explicit
equation terms, distances).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import product
from typing import Iterator

from .diagram import CategoricalObject, Diagram, Distance
from .distances import DEFAULT_DISTANCE, check_distance, full_distance
from .errors import DiagramError, Problem, pointer
from .fingerprint import recall, remember
from .gc_pause import gc_paused
from .term_graph import MAX_TERM_DEPTH, TermGraph
from .terms import Term, TermSyntaxError, applied, parse_term


@dataclass(frozen=True)
class TermInfo:
    """What a term computes: its object, data object, encoding (categorical only) and trainability."""

    object: str
    data_object: str
    encoding: str | None
    trainable: bool


@dataclass(frozen=True)
class Equation:
    """One equation of the loss: ``weight · distance(lhs, rhs)`` on ``object`` over ``data_object``.

    ``label`` is the name given in the file, or None: then ``name`` is ``"<lhs> = <rhs>"``,
    made when asked for (a diagram's equations are checked without writing out every name).
    """

    label: str | None
    object: str
    data_object: str
    lhs: Term
    rhs: Term
    distance: Distance
    weight: float
    explicit: bool = False

    @property
    def name(self) -> str:
        return self.label if self.label is not None else f"{self.lhs} = {self.rhs}"

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


class _TooMany(Exception):
    """An object past a bound of SPEC §5.3: ``code`` is ``too-many-terms`` or ``term-too-large``, or
    ``cycles`` / ``total`` when the steps inside cycles / the terms over all objects run out."""

    def __init__(self, obj: str, code: str):
        self.obj = obj
        self.code = code


_NO_ARROWS: frozenset[str] = frozenset()


_BATCH_FROM = 4  # one-source arrows over this many terms or more take _keep_applied's batched path
MAX_CYCLIC_STEPS = 10_000  # enumeration steps under non-empty forbidden sets (SPEC §5.3)


class TermEnumerator:
    """Enumerates terms with no arrow twice on a root-to-leaf path (SPEC §5.2), bounded (§5.3).

    ``terms(obj, forbidden)`` is memoized on ``forbidden`` cut down to the arrows whose
    target is in ``obj``'s strongly connected component: only those can occur in terms of
    ``obj`` (any other forbidden arrow lies above ``obj`` on the path and is not upstream
    of it), so an acyclic diagram is enumerated once per object. Only live arrows
    (``TermGraph``) are followed, so recursion never goes deeper than the depth bound.
    Work under non-empty forbidden sets (only inside cycles) is counted in steps, one per
    computation and one per term found, and stops past ``MAX_CYCLIC_STEPS``. Every term
    found, in any computation, counts toward ``max_total_terms`` (``found``), so the work
    over all objects is bounded too.

    Each object's list is built in canonical order (§5.4) without comparing terms: arrows
    into the object are visited in declaration order, and for one arrow the argument lists
    are already in canonical order, so their product in lexicographic order is too (keys
    are prefix codes). Products never try combinations that mix data objects, so the work
    for one arrow is bounded by the bound times its number of sources.
    """

    def __init__(self, diagram: Diagram, graph: TermGraph | None = None):
        self.d = diagram
        self.bound = diagram.term_bound
        self.size_bound = diagram.term_size_bound
        self.total_bound = diagram.total_term_bound
        self.found = 0  # terms found in every computation so far (SPEC §5.3, max_total_terms)
        self.graph = graph if graph is not None else TermGraph(diagram)
        g = self.graph
        self.steps = 0
        self._infos: dict[tuple, TermInfo] = {}
        self.into: dict[str, list[tuple]] = {o: [] for o in g.inhabited}
        # arrows whose target is in each cyclic component: what a forbidden set is cut down to
        self.within: dict[int, set[str]] = {c: set() for c, cyclic in enumerate(g.cyclic) if cyclic}
        for a in diagram.arrows.values():
            if a.kind == "data":
                if a.target in self.into:
                    leaf = (Term(a.name), self._info(a.target, a.source, _apply_encoding(diagram, a.name, []), False))
                    self.into[a.target].append((a.name, leaf))
            elif a.name in g.live:
                c = g.component[a.target]
                if c in self.within:
                    self.within[c].add(a.name)
                checked = a.kind == "function" and (a.op in ACCEPTS or a.op in ("identity", "stop_gradient"))
                fixed = None if checked else (
                    "logits" if isinstance(diagram.objects[a.target], CategoricalObject) else None)
                inside = tuple([g.component[s] == c for s in a.sources])
                stops = a.kind == "function" and a.op == "stop_gradient"  # its terms are constant (SPEC §5.1)
                self.into[a.target].append((a.name, (a.sources, inside, checked, fixed,
                                                     a.kind == "model" and a.trainable, stops)))
        self.memo: dict[tuple[str, frozenset[str]], list[tuple[Term, TermInfo]]] = {}

    def _info(self, obj: str, data_object: str, encoding: str | None, trainable: bool) -> TermInfo:
        key = (obj, data_object, encoding, trainable)
        info = self._infos.get(key)
        if info is None:
            info = self._infos[key] = TermInfo(obj, data_object, encoding, trainable)
        return info

    def _step(self, obj: str) -> None:
        self.steps += 1
        if self.steps > MAX_CYCLIC_STEPS:
            raise _TooMany(obj, "cycles")

    def _keep(self, obj: str, out: list[tuple[Term, TermInfo]], t: Term, info: TermInfo, counting: bool) -> None:
        """Add one term of ``obj`` to ``out``, checking in SPEC §5.3's order: the step inside a cycle,
        the term's size, the object's count, then the count over all objects."""
        out.append((t, info))
        if counting:
            self._step(obj)
        if t.size > self.size_bound:
            raise _TooMany(obj, "term-too-large")
        if len(out) > self.bound:
            raise _TooMany(obj, "too-many-terms")
        self.found += 1
        if self.found > self.total_bound:
            raise _TooMany(obj, "total")

    def _keep_applied(self, obj: str, out: list[tuple[Term, TermInfo]], name: str, args: list[tuple[Term, TermInfo]],
                      encoding: str | None, trains: bool, stops: bool) -> None:
        """``_keep`` for every term ``name(x)``, ``x`` in ``args`` (a one-source arrow whose encoding is fixed,
        for an object whose steps are not counted), with the same checks in the same order, but in a few passes
        over lists: the first term that fails a check is found from the sizes and the room left under the counts."""
        if len(args) < _BATCH_FROM:  # a few terms: one by one costs less than the passes below
            for sub, i in args:
                self._keep(obj, out, applied(name, sub),
                           self._info(obj, i.data_object, encoding, (trains or i.trainable) and not stops), False)
            return
        room_count = self.bound - len(out)  # the term at this offset would pass max_terms
        room_total = self.total_bound - self.found  # ... max_total_terms
        end = min(len(args), room_count + 1, room_total + 1)  # no term after these is ever kept
        if end < len(args):
            args = args[:end]
        size_bound = self.size_bound - 1
        too_large = next((k for k, (sub, _) in enumerate(args) if sub.size > size_bound), end) \
            if max(sub.size for sub, _ in args) > size_bound else end
        infos = {id(i): self._info(obj, i.data_object, encoding, (trains or i.trainable) and not stops)
                 for i in {id(i): i for _, i in args}.values()}
        first = min(too_large, room_count, room_total)  # the first term that fails a check, or end
        out += [(applied(name, sub), infos[id(i)]) for sub, i in (args if first == end else args[:first + 1])]
        if first == end:
            self.found += end
            return
        if too_large == first:
            self.found += first
            raise _TooMany(obj, "term-too-large")
        if room_count == first:
            self.found += first
            raise _TooMany(obj, "too-many-terms")
        self.found += first + 1
        raise _TooMany(obj, "total")

    def terms(self, obj: str, forbidden: frozenset[str] = _NO_ARROWS) -> list[tuple[Term, TermInfo]]:
        into = self.into.get(obj)
        if into is None:
            return []  # not inhabited: no terms
        if forbidden:
            within = self.within.get(self.graph.component[obj])
            forbidden = forbidden & within if within is not None else _NO_ARROWS
        key = (obj, forbidden)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        counting = bool(forbidden)  # work inside a cycle: steps are counted (SPEC §5.3)
        if counting:
            self._step(obj)
        out: list[tuple[Term, TermInfo]] = []
        bound, keep, info_of = self.bound, self._keep, self._info
        for name, how in into:
            if name in forbidden:
                continue
            if isinstance(how[0], Term):  # a data arrow: its leaf (size 1, within every size bound)
                keep(obj, out, how[0], how[1], counting)
            else:
                sources, inside, checked, fixed, trains, stops = how
                inner = forbidden | {name} if any(inside) else _NO_ARROWS
                choices = [self.terms(s, inner if ins else _NO_ARROWS) for s, ins in zip(sources, inside)]
                if len(choices) == 1 and not (counting or checked):
                    self._keep_applied(obj, out, name, choices[0], fixed, trains, stops)
                elif len(choices) == 1:
                    for x in choices[0]:
                        sub, i = x
                        if checked:
                            try:
                                encoding = _apply_encoding(self.d, name, [i])
                            except TermError:
                                continue  # an encoding the arrow does not accept: not a term
                        else:
                            encoding = fixed
                        keep(obj, out, Term(name, (sub,)),
                             info_of(obj, i.data_object, encoding, (trains or i.trainable) and not stops), counting)
                else:
                    for combo in _combinations(choices):
                        trainable = (trains or any(x[1].trainable for x in combo)) and not stops
                        keep(obj, out, Term(name, tuple(x[0] for x in combo)),
                             info_of(obj, combo[0][1].data_object, fixed, trainable), counting)
            if len(out) > bound:
                raise _TooMany(obj, "too-many-terms")
        self.memo[key] = out
        return out


def _combinations(choices: list[list[tuple[Term, TermInfo]]]) -> Iterator[tuple[tuple[Term, TermInfo], ...]]:
    """The combinations of one term per list over one data object, in lexicographic order.

    Combinations mixing data objects are never formed: after the first argument, each
    list is cut down to the first argument's data object (and skipped when one is empty).
    """
    first, rest = choices[0], choices[1:]
    if not rest:
        for x in first:
            yield (x,)
        return
    groups: list[dict[str, list[tuple[Term, TermInfo]]]] = []
    for ts in rest:
        g: dict[str, list[tuple[Term, TermInfo]]] = {}
        for x in ts:
            g.setdefault(x[1].data_object, []).append(x)
        groups.append(g)
    for x in first:
        data_object = x[1].data_object
        lists = [g.get(data_object) for g in groups]
        if any(lst is None for lst in lists):
            continue
        for tail in product(*lists):
            yield (x, *tail)


def _objects_problem(diagram: Diagram, code: str, objs: list[str], message) -> DiagramError:
    index = {n: i for i, n in enumerate(diagram.objects)}
    return DiagramError([Problem(code if isinstance(code, str) else code[o], pointer("objects", index[o]), message(o))
                         for o in sorted(objs, key=index.__getitem__)])


def enumerate_terms(diagram: Diagram) -> dict[str, list[tuple[Term, TermInfo]]]:
    """Every non-data object's enumerated terms in canonical order, within the bounds of SPEC §5.3.

    ``too-many-terms`` for objects whose terms may nest more than 100 arrows deep (checked
    first, in linear time) or that have more than ``max_terms`` terms; ``term-too-large``
    for objects with a term of more than ``max_term_size`` arrows; ``too-many-total-terms``
    for the object under way when more than ``max_total_terms`` terms have been found in all.
    """
    graph = TermGraph(diagram)
    deep = graph.too_deep()
    if deep:
        raise _objects_problem(diagram, "too-many-terms", deep,
                               lambda o: f"object {o!r} may have terms that nest more than {MAX_TERM_DEPTH} "
                                         f"arrows deep (SPEC §5.3)")
    enum = TermEnumerator(diagram, graph)
    out: dict[str, list[tuple[Term, TermInfo]]] = {}
    over: dict[str, str] = {}
    for name, obj in diagram.objects.items():
        if obj.kind == "data":
            continue
        try:
            out[name] = enum.terms(name)
        except _TooMany as e:
            if e.code in ("cycles", "total"):  # a budget is spent: the object under way is reported, nothing more
                over.setdefault(name, e.code)
                break
            over.setdefault(e.obj, e.code)
    if over:
        def message(o: str) -> str:
            if over[o] == "term-too-large":
                return (f"object {o!r} has a term of more than {diagram.term_size_bound} arrows; raise "
                        f"max_term_size or write explicit equations")
            if over[o] == "cycles":
                return (f"enumerating the terms of object {o!r} takes more than {MAX_CYCLIC_STEPS} steps "
                        f"inside cycles (SPEC §5.3)")
            if over[o] == "total":
                return (f"the diagram's objects have more than {diagram.total_term_bound} terms in all (found while "
                        f"enumerating object {o!r}); raise max_total_terms or write explicit equations")
            return f"object {o!r} has more than {diagram.term_bound} terms; raise max_terms or write explicit equations"
        codes = {o: {"cycles": "too-many-terms", "total": "too-many-total-terms"}.get(c, c) for o, c in over.items()}
        raise _objects_problem(diagram, codes, list(over), message)
    return out


def object_distance(diagram: Diagram, obj: str) -> Distance:
    o = diagram.objects[obj]
    return full_distance(o.distance or Distance(DEFAULT_DISTANCE[o.kind]))


def _by_data_object(ts: list[tuple[Term, TermInfo]], data_index: dict[str, int]) -> list[list[tuple[Term, TermInfo]]]:
    """An object's terms grouped by data object, groups in declaration order, canonical order inside."""
    groups: dict[str, list[tuple[Term, TermInfo]]] = {}
    for x in ts:
        groups.setdefault(x[1].data_object, []).append(x)
    return [groups[k] for k in sorted(groups, key=data_index.__getitem__)]


def _pair_count(group: list[tuple[Term, TermInfo]]) -> int:
    """Automatic equations of one group: pairs with at least one trainable side."""
    n = len(group)
    constant = sum(1 for _, i in group if not i.trainable)
    return n * (n - 1) // 2 - constant * (constant - 1) // 2


def _automatic(diagram: Diagram, groups: dict[str, list[list[tuple[Term, TermInfo]]]]
               ) -> Iterator[tuple[Equation, TermInfo]]:
    """SPEC §6.1's equations in order; pairs of constant terms are never visited (work: output + terms)."""
    for obj, per_data in groups.items():
        distance = object_distance(diagram, obj)
        for group in per_data:
            trainable_at = [k for k, (_, i) in enumerate(group) if i.trainable]
            for a, (ta, ia) in enumerate(group):
                if ia.trainable:
                    for tb, _ in group[a + 1:]:
                        yield Equation(None, obj, ia.data_object, ta, tb, distance, 1.0), ia
                else:
                    for b in trainable_at[bisect_right(trainable_at, a):]:
                        tb, ib = group[b]
                        yield Equation(None, obj, ia.data_object, tb, ta, distance, 1.0), ib


def _explicit_name_pair(name: str) -> tuple[Term, Term] | None:
    """The terms (lhs, rhs) whose automatic equation is named ``name``, or None if no such name."""
    parts = name.split(" = ")
    if len(parts) != 2:
        return None
    try:
        lhs, rhs = parse_term(parts[0]), parse_term(parts[1])
    except TermSyntaxError:
        return None
    if str(lhs) != parts[0] or str(rhs) != parts[1]:
        return None
    return lhs, rhs


def equations(diagram: Diagram) -> list[Equation]:
    """The diagram's equations in canonical order (SPEC §6); ``DiagramError`` lists every problem."""
    cached = recall(diagram, "equations")  # validating and then compiling one diagram builds them once
    if cached is not None:
        return list(cached)
    result = _equations(diagram)
    remember(diagram, "equations", tuple(result))
    return result


@gc_paused()  # up to max_total_terms terms and max_equations equations, none of them garbage
def _equations(diagram: Diagram) -> list[Equation]:
    terms = enumerate_terms(diagram)
    problems: list[Problem] = []
    explicit: list[tuple[int, Equation, TermInfo, TermInfo]] = []
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
        explicit.append((k, Equation(eq.name, li.object, li.data_object, lt, rt, distance,
                                     1.0 if eq.weight is None else float(eq.weight), explicit=True), li, ri))
    if problems:
        raise DiagramError(problems)

    object_index = {n: i for i, n in enumerate(diagram.objects)}
    data_index = {n: i for i, n in enumerate(diagram.data_objects())}
    groups = {obj: _by_data_object(ts, data_index) for obj, ts in terms.items() if len(ts) > 1} \
        if diagram.automatic else {}
    enumerated = {t for ts in terms.values() for t, _ in ts} if diagram.automatic and explicit else set()
    _check_equation_count(diagram, groups, explicit, enumerated, object_index)

    # Places are kept as pointer parts and written out only for a problem.
    by_pair = {frozenset([e.lhs, e.rhs]): (k, e, li) for k, e, li, _ in explicit}
    used: set[int] = set()
    result: list[tuple[tuple, Equation, TermInfo]] = []
    # Automatic names are distinct (distinct pairs of terms have distinct texts), so only explicit
    # equations and the automatic ones an explicit name spells out can take part in a duplicate.
    spelled = {pair for pair in (_explicit_name_pair(e.name) for _, e, _, _ in explicit) if pair is not None}
    clash: set[int] = set()
    for eq, lhs_info in _automatic(diagram, groups):
        if by_pair:
            hit = by_pair.get(frozenset([eq.lhs, eq.rhs]))
            if hit is not None and hit[1].object == eq.object:
                used.add(hit[0])
                result.append((("equations", "explicit", hit[0]), hit[1], hit[2]))
                continue
        if spelled and (eq.lhs, eq.rhs) in spelled:
            clash.add(len(result))
        result.append((("objects", object_index[eq.object]), eq, lhs_info))
    result += [(("equations", "explicit", k), e, li) for k, e, li, _ in explicit if k not in used]

    named = {("equations", "explicit", k) for k, e in enumerate(diagram.explicit) if e.name is not None}
    categorical = {n for n, o in diagram.objects.items() if isinstance(o, CategoricalObject)}
    names: dict[str, tuple] = {}
    for n, (where, eq, lhs_info) in enumerate(result):
        if eq.explicit or n in clash:
            if eq.name in names:
                problems.append(Problem("duplicate-name", pointer(*where, *(("name",) if where in named else ())),
                                        f"two equations are named {eq.name!r}"))
            names[eq.name] = where
        if lhs_info.encoding != "logits" and eq.object in categorical:
            problems.append(Problem("distance-input-mismatch", pointer(*where),
                                    f"{eq.distance.name} needs logits on the left, but {eq.lhs} has "
                                    f"encoding {lhs_info.encoding}"))
    if problems:
        raise DiagramError(problems)
    return [eq for _, eq, _ in result]


def _check_equation_count(diagram: Diagram, groups: dict[str, list[list[tuple[Term, TermInfo]]]],
                          explicit: list[tuple[int, Equation, TermInfo, TermInfo]], enumerated: set[Term],
                          object_index: dict[str, int]) -> None:
    """``too-many-equations`` (SPEC §6) before any equation is built: counted, not listed."""
    bound = diagram.equation_bound
    total = 0
    for obj, per_data in groups.items():
        total += sum(_pair_count(g) for g in per_data)
        if total > bound:
            raise DiagramError.one("too-many-equations", pointer("objects", object_index[obj]),
                                   f"the automatic equations up to object {obj!r} number {total}, more than "
                                   f"{bound}; raise max_equations or set equations.automatic to false")
    for k, e, li, ri in explicit:
        replaces = (diagram.automatic and e.lhs != e.rhs and e.lhs in enumerated and e.rhs in enumerated
                    and (li.trainable or ri.trainable))
        if not replaces:
            total += 1
            if total > bound:
                raise DiagramError.one("too-many-equations", pointer("equations", "explicit", k),
                                       f"the diagram has more than {bound} equations; raise max_equations")
