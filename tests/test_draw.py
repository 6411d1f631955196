"""Drawing diagrams: SVG/PNG through Graphviz, DOT source, Mermaid text, equation highlighting, `dlearn draw`."""

import re
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from diagrammatic_learning import Architecture, Diagram, DiagramError, load, mlp
from diagrammatic_learning.draw import (LHS_COLOR, RHS_COLOR, GraphvizNotFound, draw, drawing, to_graphviz,
                                        to_mermaid)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's `dot` is not installed (apt-get install graphviz)")
SVG = "{http://www.w3.org/2000/svg}"


def built() -> list[Diagram]:
    """Diagrams made here: a product arrow with functions, a cycle, a frozen and an external model."""
    a = Diagram("product")
    a.data("D"); a.tensor("A", [3]); a.tensor("B", [2]); a.tensor("C", [5]); a.categorical("Y", 5)
    a.data_arrow("a", "D", "A", "left")
    a.data_arrow("b", "D", "B", "right \"quoted\" <col>")
    a.function("cat", ["A", "B"], "C", "concat")
    a.model("net", ["A", "B"], "Y", Architecture(mlp(5, 5).layers, ((), ()), "concat"))
    a.model("frozen_head", "C", "Y", mlp(5, 5), trainable=False)
    a.data_arrow("y", "D", "Y", "label")
    c = Diagram()  # no name
    c.data("D"); c.tensor("X", [4]); c.tensor("Z", [2])
    c.data_arrow("x", "D", "X", "x")
    c.model("enc", "X", "Z", mlp(4, 2))
    c.model("dec", "Z", "X", external=True)
    return [a, c]


def cases() -> list[tuple[str, Diagram]]:
    return [(p.stem, load(p)) for p in EXAMPLES] + [(f"built{i}", d) for i, d in enumerate(built())]


CASES = cases()
IDS = [name for name, _ in CASES]


def svg_texts(data: bytes) -> str:
    root = ET.fromstring(data)  # raises on invalid XML
    assert root.tag == SVG + "svg"
    return "\n".join(t.text or "" for t in root.iter(SVG + "text"))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_there_are_examples_to_draw():
    assert len(EXAMPLES) >= 2


@needs_dot
@pytest.mark.parametrize("name,d", CASES, ids=IDS)
def test_svg_names_every_object_and_arrow(name, d):
    texts = svg_texts(drawing(d, "svg"))
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", texts))
    for part in [*d.objects, *d.arrows]:
        assert part in words, f"{part} missing from the SVG of {name}"


@needs_dot
@pytest.mark.parametrize("name,d", CASES, ids=IDS)
def test_png_is_a_png_of_reasonable_size(name, d):
    data = drawing(d, "png")
    width, height = png_size(data)
    assert 100 < width < 5000 and 30 < height < 5000


@pytest.mark.parametrize("name,d", CASES, ids=IDS)
def test_mermaid_has_every_part(name, d):
    text = to_mermaid(d)
    lines = text.splitlines()
    assert "flowchart LR" in lines[:2]
    for o in d.objects:
        assert sum(line.startswith(f"  o_{o}[") or line.startswith(f"  o_{o}(") for line in lines) == 1
    for a in d.arrows.values():
        assert f'"{a.name} ' in text or f'"{a.name}"' in text
    links = [line for line in lines if re.match(r"  \S+ (-\.->|-\.-x|-->|==>|---\|)", line)]
    styles = [line for line in lines if line.startswith("  linkStyle ")]
    # Mermaid reads "#abc;" as an HTML entity, so style properties are separated by commas, never ";".
    assert not [line for line in lines if line.lstrip().startswith(("linkStyle", "style", "classDef")) and ";" in line]
    assert len(links) == len(styles) == sum(len(a.sources) + (len(a.sources) > 1) for a in d.arrows.values())
    assert '"' not in "".join(re.findall(r'"([^"]*)"', text)).replace("#quot;", "")  # quotes are escaped


def test_dot_source_styles_by_kind():
    product = built()[0]
    src = to_graphviz(product).source
    # The two-source model: two numbered legs into a junction, then one edge to Y.
    assert re.search(r'A -> "net/join" \[.*label=1', src) and re.search(r'B -> "net/join" \[.*label=2', src)
    assert re.search(r'"net/join" -> Y \[.*label=net', src)
    assert re.search(r'"net/join" \[.*shape=point', src)
    edge = lambda n: re.search(rf'\[[^\]]*id="?arrow-{n}"?[^\]]*\]', src).group(0)  # noqa: E731
    assert "dashed" in edge("a")
    assert "#1f4e9c" in edge("net") and "#1f4e9c" not in edge("frozen_head") and "frozen" in edge("frozen_head")
    assert re.search(r'\bD \[.*shape=cylinder', src) and re.search(r'\bY \[.*shape=ellipse', src)
    assert re.search(r'\bA \[.*shape=box', src)


def test_equation_highlight_colours_each_side():
    d = Diagram("distill")
    d.data("D"); d.tensor("X", [4]); d.categorical("Y", 3)
    d.data_arrow("x", "D", "X", "image"); d.data_arrow("y", "D", "Y", "label")
    d.model("teacher", "X", "Y", mlp(4, 3), trainable=False)
    d.model("student", "X", "Y", mlp(4, 3))
    d.equation("student(x)", "teacher(x)", "kl_div", weight=0.5, name="distill")
    for which in ("distill", 1, "1"):
        src = to_graphviz(d, which).source
        edge = lambda n: re.search(rf'\[[^\]]*id="?arrow-{n}"?[^\]]*\]', src).group(0)  # noqa: E731
        assert f'color="{LHS_COLOR}"' in edge("student")
        assert f'color="{RHS_COLOR}"' in edge("teacher")
        assert f'color="{LHS_COLOR}:{RHS_COLOR}"' in edge("x")  # both sides read x
        assert LHS_COLOR not in edge("y") and RHS_COLOR not in edge("y")
        assert "distill" in src and "0.5" in src
    mmd = to_mermaid(d, "distill")
    assert f"stroke:{LHS_COLOR}" in mmd and f"stroke:{RHS_COLOR}" in mmd and "style o_Y" in mmd
    for bad in (2, "nope"):
        with pytest.raises(DiagramError) as e:
            to_graphviz(d, bad)
        assert e.value.code == "bad-value" and e.value.pointer == "--equation"


def test_without_dot_svg_says_how_to_install_and_dot_still_works(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on this PATH
    d = built()[1]
    with pytest.raises(GraphvizNotFound, match="apt-get install graphviz"):
        drawing(d, "svg")
    assert drawing(d, "dot").startswith(b"digraph")
    draw(d, tmp_path / "out.gv")
    assert (tmp_path / "out.gv").read_text().startswith("digraph")
    assert not (tmp_path / "out.svg").exists()


def test_cli_draw_formats(tmp_path, run_cli):
    from diagrammatic_learning import save
    d = built()[0]
    save(d, tmp_path / "d.json")
    assert run_cli("draw", str(tmp_path / "d.json"), "-o", str(tmp_path / "d.mmd")) == 0
    assert (tmp_path / "d.mmd").read_text() == to_mermaid(load(tmp_path / "d.json"))
    assert run_cli("draw", str(tmp_path / "d.json"), "-o", str(tmp_path / "d.txt"), "--format", "dot") == 0
    assert (tmp_path / "d.txt").read_text().startswith("digraph")
    assert run_cli("draw", str(tmp_path / "d.json"), "-o", str(tmp_path / "d.pdf")) == 1
    assert run_cli.error.code == "bad-value" and not (tmp_path / "d.pdf").exists()


@needs_dot
def test_cli_draw_svg_with_an_equation(tmp_path, run_cli):
    from diagrammatic_learning import save
    d = built()[0]
    save(d, tmp_path / "d.json")
    assert run_cli("draw", str(tmp_path / "d.json"), "-o", str(tmp_path / "d.svg"), "--equation", "0") == 0
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", svg_texts((tmp_path / "d.svg").read_bytes())))
    assert {*d.objects, *d.arrows} <= words


def test_cli_draw_error_names_the_file(tmp_path, run_cli):
    (tmp_path / "bad.json").write_text('{"format": "learning-diagram", "format_version": "1.0", "objects": 3, '
                                       '"arrows": []}')
    assert run_cli("draw", str(tmp_path / "bad.json"), "-o", str(tmp_path / "x.svg")) == 1
    assert run_cli.error.pointer == f"{tmp_path / 'bad.json'}#/objects"
