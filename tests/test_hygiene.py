"""Package hygiene and the schema's identity: one version, a licence, types, resources, `$schema` and `$id`."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diagrammatic_learning as dl
from diagrammatic_learning import DiagramError, load
from diagrammatic_learning.resources import data_path, schema_path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))


def test_the_version_is_defined_once():
    declared = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert dl.__version__ == metadata.version("diagrammatic-learning") == declared
    package = Path(dl.__file__).parent
    assert not re.search(r'__version__ = "[0-9]+\.[0-9]', (package / "__init__.py").read_text())  # read, not written
    julia = re.search(r'^version = "([^"]+)"$', (ROOT / "julia" / "Project.toml").read_text(), re.M).group(1)
    assert julia == declared  # the Julia package is released with the same number


def test_licence_and_type_marker_are_there():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert re.search(r'^license = "MIT"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert (Path(dl.__file__).parent / "py.typed").is_file()


def test_resources_are_found_through_importlib_resources():
    source = (Path(dl.__file__).parent / "resources.py").read_text()
    assert "importlib" in source and "__file__" not in source
    assert schema_path().is_file() and (data_path("julia") / "Project.toml").is_file()


def test_the_schema_id_is_an_identifier_not_a_borrowed_domain():
    schema = json.loads(schema_path().read_text())
    assert schema["$id"].startswith("urn:diagrammatic-learning:")
    assert schema["$id"] in (ROOT / "schema" / "SPEC.md").read_text()


def test_a_schema_key_is_accepted_and_ignored():
    doc = json.loads(EXAMPLES[0].read_text())
    plain = {k: v for k, v in doc.items() if k != "$schema"}
    assert load({**plain, "$schema": "https://example.org/anything.json"}) == load(plain)
    assert "$schema" not in dl.to_json(load(doc))  # writers do not keep it
    with pytest.raises(DiagramError) as e:
        load({**plain, "$schema": 1})
    assert (e.value.code, e.value.pointer) == ("wrong-type", "/$schema")


# Integers within SPEC §1's range: one beyond it is a bad-value of its own, besides the wrong type.
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                        max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(value=JSON_VALUES | st.text())
def test_any_schema_value_is_ignored_or_a_wrong_type(value):
    doc = {k: v for k, v in json.loads(EXAMPLES[0].read_text()).items() if k != "$schema"}
    if isinstance(value, str):
        assert load({**doc, "$schema": value}) == load(doc)
    else:
        with pytest.raises(DiagramError) as e:
            load({**doc, "$schema": value})
        assert [(p.code, p.pointer) for p in e.value.problems] == [("wrong-type", "/$schema")]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_names_the_shipped_schema(path):
    reference = json.loads(path.read_text())["$schema"]
    assert (path.parent / reference).resolve() == schema_path().resolve()
    assert not reference.startswith(("http:", "https:"))  # no network needed, and no domain we do not own


def test_contributing_says_how_to_add_to_the_vocabulary():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for place in ("schema/learning-diagram.schema.json", "schema/SPEC.md", "reference/", "torch_backend/",
                  "julia/src/", "conformance/generate.py", "tests/test_registries.py"):
        assert place in text, place
