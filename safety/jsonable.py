"""Plain JSON values of what vla-deploy writes out: the one converter, used by the safety
limits' ``to_dict()`` and by the agent's recorder (events, ``safety_limits.json``,
``summary.json``). Pure Python and numpy, like the rest of ``safety``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["json_number", "jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars, dataclasses, mappings (keys as ``str``), tuples
    and sets turned into lists, dicts and plain numbers; a NaN float becomes None (JSON has no
    NaN). Anything else is returned as is."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def json_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (JSON has no NaN or inf; so is anything that is not
    a number)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
