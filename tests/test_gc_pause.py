"""Reading and compiling pause the garbage collector and always leave it as they found it."""

from __future__ import annotations

import gc

import pytest

from diagrammatic_learning import load
from diagrammatic_learning.errors import DiagramError
from diagrammatic_learning.gc_pause import gc_paused


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_left_as_it_was_even_after_an_error(enabled):
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled() == enabled
        with pytest.raises(DiagramError):
            load({"format": "learning-diagram"})
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()
