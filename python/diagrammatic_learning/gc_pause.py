"""A pause of Python's cyclic garbage collector while a large diagram is read or compiled.

Reading a 10,000-arrow diagram or building its modules allocates hundreds of
thousands of containers that all stay alive; the collector, triggered every
few hundred allocations, walks them again and again (measured: half the time
of ``load`` on a 1.6 MB file). Nothing these steps build holds a reference
cycle that must be freed before they end, and the memory they may take is
bounded by the readers' limits, so the collector is paused for their
duration and resumed (if it was running) when they end, however they end.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off; on again afterwards if it was on before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
