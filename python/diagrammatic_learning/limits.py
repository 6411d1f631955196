"""The bound on what compiling a diagram may allocate (SPEC §8): parameters are counted before any is made.

The sizes a diagram declares are the JSON's to choose: an 823-byte file can ask for gigabytes.
Every backend counts the parameters of the architecture models in declaration order, in exact
integer arithmetic, and refuses (``too-many-parameters``) a diagram whose count exceeds the limit:
``MAX_PARAMETERS`` by default, raised with ``compile(..., max_parameters=N)`` or the environment
variable ``DLEARN_MAX_PARAMETERS``.
"""

from __future__ import annotations

import os
from math import prod

from .diagram import Architecture, Diagram
from .errors import DiagramError, pointer
from .fingerprint import recall, remember
from .layers import architecture_parameter_shapes

MAX_PARAMETERS = 1 << 28  # 268,435,456: 1 GiB in float32, 2 GiB in float64
ENVIRONMENT_VARIABLE = "DLEARN_MAX_PARAMETERS"


def max_parameters(limit: int | None = None) -> int:
    """The limit in force: ``limit`` if given, else ``$DLEARN_MAX_PARAMETERS``, else ``MAX_PARAMETERS``."""
    if limit is None:
        text = os.environ.get(ENVIRONMENT_VARIABLE)
        if text is None:
            return MAX_PARAMETERS
        try:
            limit = int(text)
        except ValueError:
            raise DiagramError.one("bad-value", ENVIRONMENT_VARIABLE,
                                   f"{ENVIRONMENT_VARIABLE} must be an integer, got {text!r}") from None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise DiagramError.one("bad-value", "max_parameters", f"the parameter limit must be an integer ≥ 0, "
                                                              f"got {limit!r}")
    return limit


def architecture_parameter_count(arch: Architecture) -> int:
    """How many numbers an architecture's parameters hold (SPEC §4 shapes), exactly, without allocating."""
    return sum(prod(shape) for shape in architecture_parameter_shapes(arch).values())


def _refuse(where: str, count: int, limit: int, what: str) -> DiagramError:
    return DiagramError.one("too-many-parameters", where,
                            f"{what} {count:,} parameters, more than the limit of {limit:,}; raise it with "
                            f"max_parameters= or {ENVIRONMENT_VARIABLE} if you mean it")


def check_parameter_count(diagram: Diagram, limit: int | None = None) -> int:
    """The diagram's parameter count; ``too-many-parameters`` at the model arrow where the running count
    (declaration order) first exceeds the limit."""
    limit = max_parameters(limit)
    counts = recall(diagram, "parameter counts")  # compile counts before reading weights and before building
    if counts is None:
        counts = tuple((arrow.name, architecture_parameter_count(arrow.architecture))
                       for arrow in diagram.model_arrows() if arrow.architecture is not None)
        remember(diagram, "parameter counts", counts)
    total = 0
    for name, count in counts:
        total += count
        if total > limit:
            raise _refuse(pointer("arrows", diagram.position(name)), total, limit,
                          f"with model {name!r} the diagram has")
    return total


def check_architecture_parameters(arch: Architecture, where: str = "architecture", limit: int | None = None) -> int:
    """One architecture's parameter count; ``too-many-parameters`` at ``where`` if it exceeds the limit."""
    limit = max_parameters(limit)
    count = architecture_parameter_count(arch)
    if count > limit:
        raise _refuse(where, count, limit, "the architecture has")
    return count
