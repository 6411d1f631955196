"""Pictures of diagrams: Graphviz (SVG, PNG, DOT source) and Mermaid text, optionally one equation highlighted.

Objects are nodes, shaped by kind (data: cylinder, tensor: box, categorical:
ellipse) and labelled with their shapes. Arrows are edges, styled by kind:
data arrows dashed grey with their column, functions thin with their op,
trainable models thick blue, frozen models thick grey marked "(frozen)",
``stop_gradient`` dotted red with a blocked end ("no gradient"). An
arrow with several sources is drawn as one leg per source (numbered in source
order) into a small junction, then one edge to the target.

With an equation chosen, its left-hand term's arrows are red, its right-hand
term's green (both colours where a term shares an arrow), its object bold,
everything else faded, and the equation is written under the picture.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import graphviz

from .diagram import Arrow, CategoricalObject, DataArrow, Diagram, FunctionArrow, ModelArrow, Object, TensorObject
from .equations import Equation, equations
from .errors import DiagramError
from .io import atomic_write

LHS_COLOR = "#d62728"
RHS_COLOR = "#2ca02c"
FADED = "#c8c8c8"
FORMATS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid"}


class GraphvizNotFound(RuntimeError):
    """Graphviz's ``dot`` program is not installed, so SVG and PNG cannot be made (DOT and Mermaid still can)."""


# ----------------------------------------------------------------------------- what to draw


def object_label(obj: Object) -> str:
    """The second line of an object's label: its kind and shape."""
    if isinstance(obj, TensorObject):
        return f"{list(obj.shape)} {obj.dtype}"
    if isinstance(obj, CategoricalObject):
        return f"{obj.classes} classes" + (f" at {list(obj.shape)}" if obj.shape else "")
    return "data"


def arrow_label(arrow: Arrow) -> str:
    """An arrow's edge label: its name plus its column, op or model status."""
    if isinstance(arrow, DataArrow):
        return f"{arrow.name} ← {arrow.column}"
    if isinstance(arrow, FunctionArrow):
        return f"{arrow.name} = {arrow.op}" + (" (no gradient)" if arrow.op == "stop_gradient" else "")
    notes = [] if arrow.trainable else ["frozen"]
    if isinstance(arrow, ModelArrow) and arrow.external:
        notes.append("external")
    return arrow.name + (f" ({', '.join(notes)})" if notes else "")


def arrow_style(arrow: Arrow) -> str:
    """``data``, ``function``, ``stop_gradient``, ``trainable`` or ``frozen``: the five ways an edge is drawn."""
    if isinstance(arrow, ModelArrow):
        return "trainable" if arrow.trainable else "frozen"
    if isinstance(arrow, FunctionArrow) and arrow.op == "stop_gradient":
        return "stop_gradient"
    return arrow.kind


def pick_equation(d: Diagram, which: int | str | Equation | None) -> Equation | None:
    """The equation to highlight: by position (0-based, as ``dlearn show`` numbers them) or by name."""
    if which is None or isinstance(which, Equation):
        return which
    eqs = equations(d)
    if isinstance(which, int) or (isinstance(which, str) and which.isdigit()):
        i = int(which)
        if 0 <= i < len(eqs):
            return eqs[i]
        raise DiagramError.one("bad-value", "--equation", f"the diagram has {len(eqs)} equations (0 to "
                                                          f"{len(eqs) - 1}); there is no equation {i}")
    for eq in eqs:
        if eq.name == which:
            return eq
    names = ", ".join(repr(e.name) for e in eqs) or "none"
    raise DiagramError.one("bad-value", "--equation", f"no equation named {which!r}; the equations are {names}")


@dataclass(frozen=True)
class Highlight:
    """Which arrows each side of an equation uses, and its object."""

    lhs: frozenset[str]
    rhs: frozenset[str]
    object: str
    caption: str

    @classmethod
    def of(cls, eq: Equation | None) -> "Highlight | None":
        if eq is None:
            return None
        params = ", ".join(f"{k}={v:g}" for k, v in eq.distance.params.items())
        weight = "" if eq.weight == 1 else f"{eq.weight:g} · "
        distance = eq.distance.name + (f"({params})" if params else "")
        caption = (f"{eq.name}:  {weight}{distance}  "
                   f"lhs {eq.lhs} (red)  rhs {eq.rhs} (green)")
        return cls(frozenset(eq.lhs.arrows()), frozenset(eq.rhs.arrows()), eq.object, caption)

    def color(self, arrow: str) -> str | None:
        sides = [c for c, s in ((LHS_COLOR, self.lhs), (RHS_COLOR, self.rhs)) if arrow in s]
        return ":".join(sides) if sides else None


# ----------------------------------------------------------------------------- Graphviz


_NODE = {
    "data": {"shape": "cylinder", "style": "filled", "fillcolor": "#eeeeee"},
    "tensor": {"shape": "box", "style": "rounded,filled", "fillcolor": "#e8f0fb"},
    "categorical": {"shape": "ellipse", "style": "filled", "fillcolor": "#fdf1e0"},
}
_EDGE = {
    "data": {"style": "dashed", "color": "#7f7f7f", "fontcolor": "#555555"},
    "function": {"style": "solid", "color": "#444444", "penwidth": "1"},
    "stop_gradient": {"style": "dotted", "color": "#b03a2e", "fontcolor": "#b03a2e", "penwidth": "1.6",
                      "arrowhead": "teetee"},
    "trainable": {"style": "solid", "color": "#1f4e9c", "fontcolor": "#1f4e9c", "penwidth": "2.4"},
    "frozen": {"style": "solid", "color": "#777777", "fontcolor": "#555555", "penwidth": "2.4"},
}


def _text(text: str) -> str:
    """Any text as a DOT label showing exactly that text.

    ``graphviz.escape`` doubles backslashes, but DOT's lexer reads ``\\"`` as an escaped quote,
    so a text ending in a backslash would end the file's string early: a space after it keeps
    the quote a quote.
    """
    escaped = graphviz.escape(text)
    return graphviz.escape(text + " ") if escaped.endswith("\\") else escaped


def _junction(arrow: str) -> str:
    return f"{arrow}/join"  # '/' is not allowed in names, so this never clashes with an object


def to_graphviz(d: Diagram, equation: int | str | Equation | None = None) -> graphviz.Digraph:
    """The diagram as a ``graphviz.Digraph`` (left to right), with ``equation`` highlighted if given."""
    hl = Highlight.of(pick_equation(d, equation))
    g = graphviz.Digraph("diagram")  # the graph's own name is never shown; d.name is the label
    g.attr(rankdir="LR", fontname="Helvetica", fontsize="11", nodesep="0.35", ranksep="0.6")
    g.attr("node", fontname="Helvetica", fontsize="11")
    g.attr("edge", fontname="Helvetica", fontsize="10")
    if d.name:
        g.attr(label=_text(d.name), labelloc="t", fontsize="13")
    if hl is not None:
        g.attr(label=_text((d.name + "\n" if d.name else "") + hl.caption), labelloc="b")

    for obj in d.objects.values():
        attrs = dict(_NODE[obj.kind])
        if hl is not None and obj.name == hl.object:
            attrs.update(penwidth="2.6", color="#000000")
        elif hl is not None:
            attrs.update(color=FADED)
        g.node(obj.name, graphviz.escape(obj.name) + r"\n" + graphviz.escape(object_label(obj)),
               id=f"object-{obj.name}", tooltip=obj.kind, **attrs)

    for arrow in d.arrows.values():
        attrs = dict(_EDGE[arrow_style(arrow)])
        if hl is not None:
            color = hl.color(arrow.name)
            if color:
                attrs.update(color=color, fontcolor=color.split(":")[0], penwidth="2.8")
            else:
                attrs.update(color=FADED, fontcolor=FADED)
        label = graphviz.escape(arrow_label(arrow))
        if len(arrow.sources) == 1:
            g.edge(arrow.sources[0], arrow.target, label=label, id=f"arrow-{arrow.name}", tooltip=arrow.kind,
                   **attrs)
            continue
        join = _junction(arrow.name)
        g.node(join, "", shape="point", width="0.09", color=attrs["color"].split(":")[0], id=f"join-{arrow.name}")
        for k, source in enumerate(arrow.sources):
            g.edge(source, join, label=str(k + 1), arrowhead="none", id=f"arrow-{arrow.name}-{k + 1}", **attrs)
        g.edge(join, arrow.target, label=label, id=f"arrow-{arrow.name}", tooltip=arrow.kind, **attrs)
    return g


def graphviz_bytes(d: Diagram, fmt: str, equation: int | str | Equation | None = None) -> bytes:
    """The drawing rendered by ``dot`` as ``svg`` or ``png`` bytes, or the DOT source for ``dot``."""
    g = to_graphviz(d, equation)
    if fmt == "dot":
        return g.source.encode("utf-8")
    try:
        return g.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFound(f"drawing {fmt.upper()} needs Graphviz's `dot` program, which is not installed: "
                               "install it with `apt-get install graphviz` (Debian/Ubuntu) or `brew install "
                               "graphviz`, or write .dot or .mmd instead") from None


# ----------------------------------------------------------------------------- Mermaid


def _mermaid_text(text: str) -> str:
    return (text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
            .replace("\n", "<br/>"))


_MERMAID_SHAPE = {"data": ('[("', '")]'), "tensor": ('["', '"]'), "categorical": ('(["', '"])')}
_MERMAID_LINK = {"data": "-.->", "function": "-->", "stop_gradient": "-.-x", "trainable": "==>", "frozen": "==>"}
_MERMAID_STROKE = {"data": "stroke:#7f7f7f", "function": "stroke:#444444", "stop_gradient": "stroke:#b03a2e",
                   "trainable": "stroke:#1f4e9c", "frozen": "stroke:#777777"}


def to_mermaid(d: Diagram, equation: int | str | Equation | None = None) -> str:
    """The diagram as a Mermaid flowchart (text), with ``equation`` highlighted if given.

    Node ids are ``o_<object>`` and ``j_<arrow>`` (junctions), so that no name
    can collide with a Mermaid keyword.
    """
    hl = Highlight.of(pick_equation(d, equation))
    lines = ["flowchart LR"]
    if d.name or hl:
        title = (d.name or "") + (f" — {hl.caption}" if hl else "")
        lines.insert(0, "%% " + " ".join(title.split()))  # a comment is one line
    for obj in d.objects.values():
        open_, close = _MERMAID_SHAPE[obj.kind]
        lines.append(f"  o_{obj.name}{open_}{_mermaid_text(obj.name + chr(10) + object_label(obj))}{close}")
    links: list[str] = []  # one style per link, in link order: Mermaid numbers links as they appear
    for arrow in d.arrows.values():
        style = arrow_style(arrow)
        stroke = _MERMAID_STROKE[style] + (",stroke-width:3px" if style in ("trainable", "frozen") else "")
        if hl is not None:
            color = hl.color(arrow.name)
            stroke = f"stroke:{color.split(':')[0]},stroke-width:3px" if color else f"stroke:{FADED}"
        label = _mermaid_text(arrow_label(arrow))
        link = _MERMAID_LINK[style]
        if len(arrow.sources) == 1:
            lines.append(f'  o_{arrow.sources[0]} {link}|"{label}"| o_{arrow.target}')
            links.append(stroke)
            continue
        lines.append(f'  j_{arrow.name}(("×"))')
        for k, source in enumerate(arrow.sources):
            lines.append(f'  o_{source} ---|"{k + 1}"| j_{arrow.name}')
            links.append(stroke)
        lines.append(f'  j_{arrow.name} {link}|"{label}"| o_{arrow.target}')
        links.append(stroke)
    lines += [f"  linkStyle {i} {s}" for i, s in enumerate(links)]
    lines += ["  classDef data fill:#eeeeee,stroke:#555555", "  classDef tensor fill:#e8f0fb,stroke:#555555",
              "  classDef categorical fill:#fdf1e0,stroke:#555555"]
    for kind in ("data", "tensor", "categorical"):
        members = [f"o_{o.name}" for o in d.objects.values() if o.kind == kind]
        if members:
            lines.append(f"  class {','.join(members)} {kind}")
    if hl is not None:
        lines.append(f"  style o_{hl.object} stroke:#000000,stroke-width:3px")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- files


def output_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format to write: ``fmt`` if given, else from the file's suffix (.svg .png .dot .gv .mmd)."""
    if fmt is not None:
        if fmt not in ("svg", "png", "dot", "mermaid"):
            raise DiagramError.one("bad-value", "--format", f"unknown format {fmt!r}; use svg, png, dot or mermaid")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DiagramError.one("bad-value", str(path), f"cannot tell the format from {suffix or 'no suffix'!r}; "
                                                       "use .svg, .png, .dot, .mmd or --format")
    return FORMATS[suffix]


def drawing(d: Diagram, fmt: str, equation: int | str | Equation | None = None) -> bytes:
    """The drawing of ``d`` in ``fmt`` (svg, png, dot or mermaid) as bytes."""
    if fmt == "mermaid":
        return to_mermaid(d, equation).encode("utf-8")
    return graphviz_bytes(d, fmt, equation)


def draw(d: Diagram, path: str | os.PathLike, fmt: str | None = None,
         equation: int | str | Equation | None = None) -> str:
    """Write the drawing of ``d`` to ``path`` atomically; returns the format used."""
    fmt = output_format(path, fmt)
    atomic_write(path, drawing(d, fmt, equation))
    return fmt
