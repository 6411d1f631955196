"""The Julia package installs from its own folder: what it reads at run time is inside `julia/`.

`Pkg.add(url = ..., subdir = "julia")` copies only that folder, and the Python wheel ships it as
`_data/julia`, so the package must not reach for `../schema`. It ships a copy of the JSON Schema,
kept byte-identical to `schema/` by this test (`make julia-schema` rewrites the copy).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JULIA = ROOT / "julia"


def test_the_julia_package_ships_the_schema_byte_for_byte():
    copy = JULIA / "schema" / "learning-diagram.schema.json"
    assert copy.read_bytes() == (ROOT / "schema" / "learning-diagram.schema.json").read_bytes(), (
        "julia/schema/learning-diagram.schema.json differs from schema/: run `make julia-schema`")


def test_the_julia_sources_read_nothing_outside_their_folder():
    outside = []
    for path in sorted((JULIA / "src").glob("*.jl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r'"\.\."\s*,\s*"\.\."', line) or "../../" in line:
                outside.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not outside, "\n".join(outside)
    schema_jl = (JULIA / "src" / "schema.jl").read_text(encoding="utf-8")
    assert 'joinpath(@__DIR__, "..", "schema", "learning-diagram.schema.json")' in schema_jl
