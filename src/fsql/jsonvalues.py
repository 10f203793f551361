"""The one JSON form of floats JSON cannot hold, for every JSON fsql writes (HTTP responses,
``--json``): NaN and the infinities travel as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (protobuf's JSON mapping), never as bare ``NaN`` (not JSON) or ``null``
(indistinguishable from a missing value)."""

from __future__ import annotations

import math
from typing import Any

NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_float(value: float) -> float | str:
    """``value`` itself when finite, else its string form (``NON_FINITE``)."""
    return value if math.isfinite(value) else NON_FINITE[repr(value)]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float inside dicts, lists and tuples replaced by its
    string form."""
    if isinstance(value, float):
        return json_float(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
