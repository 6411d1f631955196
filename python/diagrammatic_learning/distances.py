"""The distance vocabulary's metadata (SPEC §7): defaults (from the schema) and where each distance is allowed."""

from __future__ import annotations

from typing import Any

from .diagram import Distance, Object
from .vocabulary import distance_defaults

DEFAULT_DISTANCE = {"tensor": "mse", "categorical": "cross_entropy"}
# Distance → {parameter: default}, read from the schema's `default` keywords (SPEC §7).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = distance_defaults()
ALLOWED_ON = {
    "tensor": {"mse", "l1", "huber", "cosine", "bce_logits"},
    "categorical": {"cross_entropy", "kl_div"},
}


def full_distance(distance: Distance) -> Distance:
    """The distance with every default parameter filled in (floats, in canonical key order)."""
    params = dict(DEFAULT_PARAMS[distance.name])
    params.update({k: float(v) for k, v in distance.params.items() if not k.startswith("x-")})
    return Distance(distance.name, params)


def check_distance(obj: Object, distance: Distance) -> list[tuple[str, str]]:
    """Problems (code, message) with using ``distance`` on ``obj``."""
    if distance.name not in ALLOWED_ON.get(obj.kind, set()):
        allowed = ", ".join(sorted(ALLOWED_ON.get(obj.kind, set())))
        return [("distance-not-allowed", f"{distance.name} is not allowed on {obj.kind} object {obj.name!r}; "
                                         f"allowed: {allowed}")]
    if distance.name == "bce_logits" and obj.kind == "tensor" and obj.dtype == "int64":
        return [("distance-not-allowed", f"bce_logits needs a float tensor, {obj.name!r} is int64")]
    return []
