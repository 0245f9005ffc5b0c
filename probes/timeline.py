"""Reading the request timeline (`timeline.parquet`, one row per request) written by loadgen.

Columns (DESIGN 3): `t_start` (epoch s), `latency_ms`, `kind` (predict | write | canary),
`ok` (HTTP 2xx), `status` (0 = connection error), `error`, `residency`, `region`,
`model_digest`, `score`, `client`, `seq`, `expected`, `correct`. The first six are
required; an absent optional column reads as all-null, so a probe that needs it
reports `no-data` rather than guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from infra.errors import ConfigError, MalformedInput
from infra.types import TIMELINE_COLUMNS, TIMELINE_REQUIRED, timeline_type_problem

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
#: The engine's type for each Arrow type of the contract (`TIMELINE_COLUMNS`).
_SQL_TYPES = {
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "int32": "INTEGER",
    "int64": "BIGINT",
}


def _checked_columns(path: Path) -> set[str]:
    """The column names of the timeline at `path`, once its schema is known to be usable.

    Raises ConfigError when the file is missing, unreadable or lacks a required column,
    MalformedInput when a column has the wrong type.
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
    return names


def read_timeline(path: Path, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The timeline sorted by `t_start`, strings as categoricals (compact for 10⁶ rows).

    Raises ConfigError naming the file and the column when the file is missing,
    unreadable or lacks a required column. A null `ok` reads as False (not a success).
    `columns` limits the optional columns read (the required ones are always read).
    """
    names = _checked_columns(path)
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


# ------------------------------------------------------------------ bounded memory
#: DuckDB's own memory cap while it scans and sorts (it spills to disk beyond it); the
#: arrays handed to Python come on top. See docs/measurement.md, "Memory model".
ENGINE_MEMORY = "1GB"


@dataclass(frozen=True)
class Stream:
    """One stream's requests around a fault, as `probes.rto.rto_of` takes them.

    `starts`/`ok`/`latency_ms` hold, sorted by start, every request of the stream started
    in `[fault_at, until]`, preceded by the last request started before the fault and by
    the earlier failures that may still have been in flight at the fault (their end
    within `IN_FLIGHT_SLACK` of it or later); `total` counts the whole stream.
    """

    starts: npt.NDArray[np.float64]
    ok: npt.NDArray[np.bool_]
    latency_ms: npt.NDArray[np.float64]
    total: int


#: Rows per batch copied from the engine into a stream's arrays.
FETCH_ROWS = 1 << 17

#: Pre-fault failures are fetched when they ended after `fault_at - IN_FLIGHT_SLACK`:
#: a loose bound in the engine; the exact test (end > fault) is numpy's, as in memory.
IN_FLIGHT_SLACK = 1.0


class Timeline:
    """`timeline.parquet` queried in place with DuckDB: nothing is loaded whole.

    Checks the file as `read_timeline` does (ConfigError/MalformedInput naming file and
    column) when opened. Every answer equals the in-memory path's on the same file: rows
    come in `t_start` order, ties in file order (the stable sort of `normalise`), a null
    `ok` reads False, and absent optional columns read as null.
    """

    def __init__(self, path: Path, memory_limit: str = ENGINE_MEMORY) -> None:
        import duckdb

        names = _checked_columns(path)
        self.path = path
        self.columns = names
        self._db = duckdb.connect(config={"memory_limit": memory_limit, "threads": 2})
        types = dict(TIMELINE_COLUMNS)
        select = []
        for name, kind in TIMELINE_COLUMNS:
            sql_type = _SQL_TYPES[kind]
            if name not in names:
                select.append(f"NULL::{sql_type} AS {name}")
            elif name == "ok":
                select.append("coalesce(ok, false) AS ok")
            else:
                select.append(f"{name}::{_SQL_TYPES[types[name]]} AS {name}")
        source = str(path).replace("'", "''")
        try:
            self._db.execute(
                f"CREATE VIEW tl AS SELECT {', '.join(select)}, file_row_number AS row_n "
                f"FROM read_parquet('{source}', file_row_number = true)"
            )
            head = self._db.execute(
                "SELECT count(*), min(t_start), max(t_start), "
                "count(*) FILTER (WHERE t_start IS NULL OR isnan(t_start)) FROM tl"
            ).fetchall()[0]
        except duckdb.Error as exc:
            raise ConfigError(f"{path}: cannot read the timeline: {exc}") from exc
        if head[3]:
            raise ConfigError(f"{path}: column 't_start' has null values")
        self.rows = int(head[0])
        self.span: tuple[float, float] | None = (
            (float(head[1]), float(head[2])) if self.rows else None
        )

    def close(self) -> None:
        """Release the engine."""
        self._db.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of `sql` over the view `tl` (the timeline, normalised)."""
        return self._db.execute(sql, list(params)).fetchall()

    def table(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """The answer of `sql` over the view `tl` as a frame, strings as categoricals."""
        answer = self._db.sql(sql, params=list(params)).to_arrow_table()
        frame: pd.DataFrame = answer.to_pandas(strings_to_categorical=True)
        return frame

    def residencies(self) -> list[str]:
        """The residencies that have requests, sorted."""
        rows = self.query("SELECT DISTINCT residency FROM tl WHERE residency IS NOT NULL")
        return sorted(str(r[0]) for r in rows)

    def residency_sizes(self) -> dict[str, int]:
        """Requests per residency (every kind, a null kind included), sorted by residency."""
        rows = self.query(
            "SELECT residency, count(*) FROM tl WHERE residency IS NOT NULL GROUP BY ALL"
        )
        return dict(sorted((str(r), int(n)) for r, n in rows))

    def groups(self) -> list[tuple[str, str, int]]:
        """(kind, residency, requests) of every stream (a null kind or residency: none)."""
        rows = self.query(
            "SELECT kind, residency, count(*) FROM tl "
            "WHERE kind IS NOT NULL AND residency IS NOT NULL GROUP BY ALL"
        )
        return [(str(k), str(r), int(n)) for k, r, n in rows]

    def stream(
        self, kind: str | None, residency: str, total: int, fault_at: float, until: float
    ) -> Stream:
        """The requests of stream (`kind`, all kinds when None; `residency`) that
        `probes.rto.rto_of` needs for a fault at `fault_at` observed until `until`."""
        where = "residency = ?" + (" AND kind = ?" if kind is not None else "")
        params: list[Any] = [residency] + ([kind] if kind is not None else [])
        columns = "t_start, ok, latency_ms"
        before = self._db.execute(
            f"WITH s AS (SELECT {columns}, row_n FROM tl WHERE {where} AND t_start < ?) "
            f"SELECT {columns} FROM s WHERE (NOT ok AND t_start + coalesce(latency_ms, 0) "
            "/ 1000.0 > ?) OR t_start = (SELECT max(t_start) FROM s) ORDER BY t_start, row_n",
            [*params, fault_at, fault_at - IN_FLIGHT_SLACK],
        ).fetchnumpy()
        window = f"SELECT {columns} FROM tl WHERE {where} AND t_start >= ? AND t_start <= ?"
        span = [*params, fault_at, until]
        head = int(before["t_start"].size)
        rows = self.query(f"SELECT count(*) FROM ({window})", span)[0][0]
        out = Stream(
            starts=np.empty(head + rows, dtype=np.float64),
            ok=np.empty(head + rows, dtype=bool),
            latency_ms=np.empty(head + rows, dtype=np.float64),
            total=total,
        )
        out.starts[:head] = _floats(before["t_start"])
        out.ok[:head] = np.asarray(before["ok"], dtype=bool)
        out.latency_ms[:head] = _floats(before["latency_ms"])
        # A timeline as the recorder writes it is sorted: the scan keeps the file's order
        # (ties included), so the engine need not sort the window; else it does.
        self._fill(out, head, window, span)
        if not _sorted(out.starts[head:]):
            self._fill(out, head, window + " ORDER BY t_start, row_n", span)
        return out

    def _fill(self, out: Stream, at: int, sql: str, params: list[Any]) -> None:
        """Copy the rows of `sql` into `out` from index `at`, one engine batch at a time
        (the whole result is never held twice)."""
        i = at
        for batch in self._db.sql(sql, params=params).to_arrow_reader(FETCH_ROWS):
            n = batch.num_rows
            out.starts[i : i + n] = batch.column(0).to_numpy(zero_copy_only=False)
            out.ok[i : i + n] = batch.column(1).to_numpy(zero_copy_only=False)
            out.latency_ms[i : i + n] = batch.column(2).to_numpy(zero_copy_only=False)
            i += n
        if i != out.starts.size:
            raise ConfigError(f"{self.path}: the timeline changed while it was read")

    def frame(
        self, columns: tuple[str, ...], where: str = "", params: Sequence[Any] = ()
    ) -> pd.DataFrame:
        """The rows matching `where` (SQL over the file's own columns) as `read_timeline`
        gives them: the required columns plus `columns`, strings as categoricals,
        sorted by `t_start`. Only those rows and columns are read."""
        wanted = tuple(c for c in OPTIONAL if c in columns)
        present = [c for c in (*REQUIRED, *wanted) if c in self.columns]
        clause = f" WHERE {where}" if where else ""
        sql = (
            f"SELECT {', '.join(present)} FROM read_parquet(?, file_row_number = true)"
            f"{clause} ORDER BY file_row_number"
        )
        table = self._db.sql(sql, params=[str(self.path), *params]).to_arrow_table()
        frame = table.to_pandas(strings_to_categorical=True)
        return normalise(frame, source=str(self.path), columns=wanted)


def _floats(values: Any) -> npt.NDArray[np.float64]:
    """A fetched column as float64, null as NaN."""
    return np.ma.filled(np.ma.asarray(values, dtype=np.float64), np.nan)


def _sorted(values: npt.NDArray[np.float64], step: int = 1 << 20) -> bool:
    """Whether `values` is non-decreasing (checked in steps: no full-size temporary)."""
    for a in range(0, max(values.size - 1, 0), step):
        part = values[a : a + step + 1]
        if not bool(np.all(part[1:] >= part[:-1])):
            return False
    return True
