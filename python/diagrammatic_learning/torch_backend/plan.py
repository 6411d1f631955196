"""The evaluation plan: every distinct subterm of the equations once, children first, built at compile time.

Evaluating a diagram on a batch then is a loop over ``steps`` filling a list of
values by index, and a loop over ``equations`` reading two of them (SPEC §9).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..diagram import DataArrow, Diagram, TensorObject
from ..equations import Equation, TermInfo, applied_info, term_info
from ..terms import Term


@dataclass(frozen=True)
class Step:
    """Compute one distinct term: read a column, apply a function, or apply a model to earlier values."""

    term: Term
    text: str
    kind: str                     # the arrow's kind: "data", "function" or "model"
    arrow: str
    args: tuple[int, ...]         # indices of the argument values in the plan
    column: str | None = None     # data steps: the column read
    float_column: bool = False    # data steps: cast to the compute dtype (else int64 stays)
    int_columns: tuple[str, ...] = ()  # model steps: columns behind int64 arguments (for index errors)


@dataclass(frozen=True)
class EquationStep:
    """One equation of the loss, its sides given as indices into the plan's values."""

    equation: Equation
    lhs: int
    rhs: int
    rhs_encoding: str | None


@dataclass(frozen=True)
class Plan:
    """The steps in evaluation order (children before parents) and the equations in canonical order."""

    steps: tuple[Step, ...]
    equations: tuple[EquationStep, ...]


def _int_column(diagram: Diagram, term: Term) -> str | None:
    """The column behind an int64 tensor term (int64 terms are a data leaf under unary reshapes)."""
    obj = diagram.objects[diagram.arrows[term.arrow].target]
    if not isinstance(obj, TensorObject) or obj.is_float:
        return None
    while term.args:
        term = term.args[0]
    arrow = diagram.arrows[term.arrow]
    return arrow.column if isinstance(arrow, DataArrow) else None


def build_plan(diagram: Diagram, equations: list[Equation]) -> Plan:
    """The steps computing every term the equations use, each distinct subterm exactly once.

    Steps come children first, in the order the equations first reach them; a
    term already planned is not walked again, and each step's type is made from
    its arguments' types, so the work is linear in the number of distinct
    subterms, not in the sum of the equations' sizes.
    """
    index: dict[Term, int] = {}
    steps: list[Step] = []
    infos: list[TermInfo] = []

    def add(term: Term) -> int:
        at = index.get(term)
        if at is not None:
            return at
        args = tuple(add(a) for a in term.args)  # as deep as a term nests: at most MAX_TERM_DEPTH
        arrow = diagram.arrows[term.arrow]
        if isinstance(arrow, DataArrow):
            target = diagram.objects[arrow.target]
            is_float = (target.is_float if isinstance(target, TensorObject)
                        else (arrow.encoding or "index") == "probabilities")
            step = Step(term, str(term), "data", arrow.name, args, arrow.column, is_float)
            info = term_info(diagram, term)
        else:
            columns = tuple(c for c in (_int_column(diagram, a) for a in term.args) if c is not None)
            step = Step(term, str(term), arrow.kind, arrow.name, args, int_columns=columns)
            info = applied_info(diagram, term.arrow, [infos[i] for i in args])
        index[term] = len(steps)
        steps.append(step)
        infos.append(info)
        return index[term]

    eq_steps = []
    for eq in equations:
        lhs, rhs = add(eq.lhs), add(eq.rhs)
        eq_steps.append(EquationStep(eq, lhs, rhs, infos[rhs].encoding))
    return Plan(tuple(steps), tuple(eq_steps))
