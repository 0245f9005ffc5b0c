"""What every probe returns: a status, its reason, its inputs and its figures.

Results are plain JSON-serialisable dicts (Chaos Toolkit passes them on as they are);
these helpers keep the conversions in one place: numpy scalars become Python numbers,
NaN becomes null, times are rounded to the microsecond (the timeline's resolution).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

Status = Literal["ok", "no-data", "error"]
STATUSES: tuple[Status, ...] = ("ok", "no-data", "error")


def seconds(value: Any, digits: int = 6) -> float | None:
    """A time or duration as a float rounded to `digits` decimals; None for None/NaN."""
    if value is None:
        return None
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return None
    return round(number, digits)


def jsonable(value: Any) -> Any:
    """`value` with numpy scalars, arrays and NaN turned into JSON-safe Python values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return None if math.isnan(number) or math.isinf(number) else number
    return value


def record(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` made JSON-safe (see `jsonable`)."""
    out = jsonable(fields)
    assert isinstance(out, dict)
    return out


def failed(status: Status, reason: str, **fields: Any) -> dict[str, Any]:
    """A result that could not be measured: `status` is "no-data" or "error"."""
    return record({**fields, "status": status, "reason": reason})
