"""Reading the request timeline (`timeline.parquet`, one row per request) written by loadgen.

Columns (DESIGN 3): `t_start` (epoch s), `latency_ms`, `kind` (predict | write | canary),
`ok` (HTTP 2xx), `status` (0 = connection error), `error`, `residency`, `region`,
`model_digest`, `score`, `client`, `seq`, `expected`, `correct`. The first six are
required; an absent optional column reads as all-null, so a probe that needs it
reports `no-data` rather than guessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from infra.errors import ConfigError, MalformedInput
from infra.types import TIMELINE_REQUIRED, timeline_type_problem

__all__: list[str] = []

REQUIRED = TIMELINE_REQUIRED
OPTIONAL = (
    "error",
    "region",
    "model_digest",
    "score",
    "client",
    "seq",
    "expected",
    "correct",
)
KINDS = ("predict", "write", "canary")
_NUMERIC = ("t_start", "latency_ms", "status")


def read_timeline(path: Path, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The timeline sorted by `t_start`, strings as categoricals (compact for 10⁶ rows).

    Raises ConfigError naming the file and the column when the file is missing,
    unreadable or lacks a required column. A null `ok` reads as False (not a success).
    `columns` limits the optional columns read (the required ones are always read).
    """
    if not path.is_file():
        raise ConfigError(f"{path}: timeline not found")
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"{path}: cannot read the timeline as Parquet: {exc}") from exc
    names = set(schema.names)
    for fld in schema:
        problem = timeline_type_problem(fld.name, fld.type)
        if problem:
            raise MalformedInput(f"{path}: {problem}")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ConfigError(f"{path}: timeline lacks column {missing[0]!r}")
    wanted = OPTIONAL if columns is None else tuple(c for c in OPTIONAL if c in columns)
    present = [c for c in (*REQUIRED, *wanted) if c in names]
    try:
        table = pq.read_table(path, columns=present)
        frame = table.to_pandas(strings_to_categorical=True)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"{path}: cannot read the timeline: {exc}") from exc
    return normalise(frame, source=str(path), columns=wanted)


def normalise(
    frame: pd.DataFrame, source: str = "<timeline>", columns: tuple[str, ...] = OPTIONAL
) -> pd.DataFrame:
    """Check types, add absent optional columns as null, sort by `t_start` (stable)."""
    for column in REQUIRED:
        if column not in frame.columns:
            raise ConfigError(f"{source}: timeline lacks column {column!r}")
    for column in _NUMERIC:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise ConfigError(
                f"{source}: column {column!r} must be numeric (got {frame[column].dtype})"
            )
    for column in ("ok", "correct"):
        if column in frame.columns and not _boolean(frame[column]):
            raise MalformedInput(
                f"{source}: column {column!r} must be boolean (got {frame[column].dtype})"
            )
    out = frame.copy()
    for column in columns:
        if column not in out.columns:
            out[column] = pd.Series([None] * len(out), dtype="object")
    out["t_start"] = out["t_start"].astype(np.float64)
    out["latency_ms"] = out["latency_ms"].astype(np.float64)
    out["ok"] = out["ok"].fillna(False).astype(bool)
    if np.isnan(out["t_start"].to_numpy()).any():
        raise ConfigError(f"{source}: column 't_start' has null values")
    out = out.sort_values("t_start", kind="stable").reset_index(drop=True)
    return out


def _boolean(column: pd.Series) -> bool:
    """Booleans, possibly with nulls: a bool dtype, or objects that are all bool or null."""
    if pd.api.types.is_bool_dtype(column):
        return True
    if isinstance(column.dtype, pd.CategoricalDtype) or column.dtype != object:
        return False
    values = column.dropna()
    return bool(values.map(lambda v: isinstance(v, bool | np.bool_)).all())


def span(frame: pd.DataFrame) -> tuple[float, float] | None:
    """First and last request start, or None for an empty timeline."""
    if frame.empty:
        return None
    times = frame["t_start"].to_numpy()
    return float(times[0]), float(times[-1])
