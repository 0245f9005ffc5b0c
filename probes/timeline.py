"""Reading the request timeline (`timeline.parquet`, one row per request) written by loadgen.

Columns (DESIGN 3): `t_start` (epoch s), `latency_ms`, `kind` (predict | write | canary),
`ok` (HTTP 2xx), `status` (0 = connection error), `error`, `residency`, `region`,
`model_digest`, `score`, `client`, `seq`, `expected`, `correct`. The first six are
required; an absent optional column reads as all-null, so a probe that needs it
reports `no-data` rather than guessing.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from infra.errors import ConfigError, MalformedInput
from infra.types import TIMELINE_COLUMNS, TIMELINE_REQUIRED, timeline_type_problem
from probes.result import seconds

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
#: arrays handed to Python come on top. See docs/measurement.md, "Scale: the memory model".
ENGINE_MEMORY = "1GB"


#: A `BinnedSpread` bins latencies by the top `KEY_BITS` bits of an order-keeping
#: integer key of each float (1/256 of an octave per bin): 8 MiB of counts, and the bin
#: holding a percentile holds a small share of the values.
KEY_BITS = 20
_SIGN = np.uint64(1 << 63)


class Unsorted(Exception):
    """The timeline is not sorted by `t_start` in the file: read it again, sorted."""


#: A stream's requests: starts, `ok`, latencies (ms; NaN when unknown).
Rows = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.float64]]


#: Row groups of the sorted copy of the writes (`Timeline.writes`).
WRITE_GROUP_ROWS = 65_536

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
        self._db.execute("SET enable_progress_bar = false")
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
        self._scratch: Path | None = None
        self.rows = int(head[0])
        self.span: tuple[float, float] | None = (
            (float(head[1]), float(head[2])) if self.rows else None
        )

    def close(self) -> None:
        """Release the engine and remove its scratch files."""
        self._db.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def writes(self, columns: str) -> str:
        """The name of a view of the write rows (`columns` of the view `tl`, and
        `row_n`), sorted by client and then seq (nulls last).

        Written once, on first use, to a scratch Parquet file in row groups of
        `WRITE_GROUP_ROWS`: a slice of the ledger (a range of clients, or of one
        client's seq) then reads only the row groups whose statistics overlap it, so
        the slices together read the writes once, where each would read the whole
        timeline. The engine spills its sort to the same scratch folder.
        """
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="gameday-measure-"))
            spill = str(self._scratch / "spill").replace("'", "''")
            self._db.execute(f"SET temp_directory = '{spill}'")
            target = str(self._scratch / "writes.parquet").replace("'", "''")
            self._db.execute(
                f"COPY (SELECT {columns}, row_n FROM tl WHERE kind = 'write' "
                "ORDER BY client NULLS LAST, seq NULLS LAST, row_n) "
                f"TO '{target}' (FORMAT parquet, ROW_GROUP_SIZE {WRITE_GROUP_ROWS})"
            )
            self._db.execute(f"CREATE VIEW wr AS SELECT * FROM read_parquet('{target}')")
        return "wr"

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

    def _where(self, kind: str | None, residency: str) -> tuple[str, list[Any]]:
        where = "residency = ?" + (" AND kind = ?" if kind is not None else "")
        return where, [residency] + ([kind] if kind is not None else [])

    def before(self, kind: str | None, residency: str, fault_at: float) -> Rows:
        """The requests of stream (`kind`, all kinds when None; `residency`) before the
        fault that `probes.rto.rto_scan` needs: the last one, and the failures that may
        still have been in flight at the fault (their end within `IN_FLIGHT_SLACK` of
        it or later), sorted by start."""
        where, params = self._where(kind, residency)
        columns = "t_start, ok, latency_ms"
        rows = self._db.execute(
            f"WITH s AS (SELECT {columns}, row_n FROM tl WHERE {where} AND t_start < ?) "
            f"SELECT {columns} FROM s WHERE (NOT ok AND t_start + coalesce(latency_ms, 0) "
            "/ 1000.0 > ?) OR t_start = (SELECT max(t_start) FROM s) ORDER BY t_start, row_n",
            [*params, fault_at, fault_at - IN_FLIGHT_SLACK],
        ).fetchnumpy()
        return (
            _floats(rows["t_start"]),
            np.asarray(rows["ok"], dtype=bool),
            _floats(rows["latency_ms"]),
        )

    def blocks(
        self, kind: str | None, residency: str, fault_at: float, until: float, ordered: bool
    ) -> Iterator[Rows]:
        """The stream's requests started in `[fault_at, until]`, sorted, `FETCH_ROWS` at a
        time.

        A timeline as the recorder writes it is sorted: the scan keeps the file's order
        (ties included) and the engine sorts nothing. Not `ordered`, it raises Unsorted
        at the first row out of order, and the caller asks again `ordered` (the engine
        then sorts, spilling to disk past its memory cap).
        """
        where, params = self._where(kind, residency)
        sql = (
            f"SELECT t_start, ok, latency_ms FROM tl WHERE {where} "
            "AND t_start >= ? AND t_start <= ?"
        )
        if ordered:
            sql += " ORDER BY t_start, row_n"
        last = -math.inf
        answer = self._db.sql(sql, params=[*params, fault_at, until])
        for batch in answer.to_arrow_reader(FETCH_ROWS):
            t = _floats(batch.column(0).to_numpy(zero_copy_only=False))
            if not t.size:
                continue
            if not ordered and (t[0] < last or not bool(np.all(t[1:] >= t[:-1]))):
                raise Unsorted(str(self.path))
            last = float(t[-1])
            ok = np.asarray(batch.column(1).to_numpy(zero_copy_only=False), dtype=bool)
            yield t, ok, _floats(batch.column(2).to_numpy(zero_copy_only=False))

    def spread(
        self, kind: str | None, residency: str, fault_at: float, lat_end: float, until: float
    ) -> BinnedSpread:
        """A `BinnedSpread` of the stream's requests started in `[fault_at, until]`
        before `lat_end`: `probes.rto.rto_scan` adds their latencies as it reads them;
        the few values near each percentile are then fetched from here."""
        where, params = self._where(kind, residency)
        cond = f"{where} AND t_start >= ? AND t_start <= ? AND t_start < ?"
        args: list[Any] = [*params, fault_at, until, lat_end]

        def fetch(ranges: Sequence[tuple[float, float]]) -> list[tuple[float, int]]:
            within = " OR ".join("latency_ms BETWEEN ? AND ?" for _ in ranges)
            bounds = [v for pair in ranges for v in pair]
            rows = self.query(
                f"SELECT latency_ms, count(*) FROM tl WHERE {cond} AND ({within}) "
                "GROUP BY 1 ORDER BY 1",
                [*args, *bounds],
            )
            return [(float(v), int(c)) for v, c in rows]

        return BinnedSpread(fetch, str(self.path))

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


def _linear_percentiles(
    n: int, percents: Sequence[float], select: Callable[[list[int]], dict[int, float]]
) -> list[float]:
    """numpy's default (linear) percentiles of `n` values, given `select(ranks)` that
    returns the values at those 0-based ranks in ascending order: the same virtual
    index, weight and interpolation as `numpy.percentile`, so the same floats."""
    quantiles = np.true_divide(np.asarray(percents, dtype=np.float64), 100)
    virtual = (n - 1) * quantiles
    below = np.floor(virtual)
    above = np.minimum(below + 1, n - 1)
    values = select(sorted({int(i) for i in (*below, *above)}))
    a = np.array([values[int(i)] for i in below])
    b = np.array([values[int(i)] for i in above])
    gamma = virtual - below
    diff = b - a
    out = a + diff * gamma
    out = np.where(gamma >= 0.5, b - diff * (1 - gamma), out)
    return [float(v) for v in out]


def _keys(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint64]:
    """An integer per float, in the floats' order (negative ones below positive ones)."""
    bits = (values + 0.0).view(np.uint64)  # + 0.0: -0.0 is 0.0, as in SQL
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def _float_of(key: int) -> float:
    """The float whose `_keys` is `key`."""
    k = np.uint64(key)
    bits = k & ~_SIGN if k & _SIGN else ~k
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def _bounds(low: int, high: int) -> tuple[float, float]:
    """The least and greatest float whose keys lie in `[low, high]` (NaN patterns at
    either end of the key range stand for the infinities)."""
    lo, hi = _float_of(low), _float_of(high)
    return (-math.inf if math.isnan(lo) else lo), (math.inf if math.isnan(hi) else hi)


class BinnedSpread:
    """Exact latency percentiles of rows read once, in bounded memory.

    `add` counts every latency into a histogram of `2**KEY_BITS` bins; `result` finds
    the bin of each rank a percentile needs and asks `fetch` (the engine) for the
    distinct values of those bins with their counts: the ranked values, then numpy's
    linear interpolation (`_linear_percentiles`). Percentiles are null when a latency
    is unknown (numpy gives NaN).
    """

    def __init__(
        self, fetch: Callable[[Sequence[tuple[float, float]]], list[tuple[float, int]]], source: str
    ) -> None:
        self._fetch = fetch
        self._source = source
        self.bits = KEY_BITS
        self.counts = np.zeros(1 << self.bits, dtype=np.int64)
        self.n = 0
        self.unknown = 0

    def add(self, latency_ms: npt.NDArray[np.float64]) -> None:
        self.n += int(latency_ms.size)
        known = latency_ms[~np.isnan(latency_ms)]
        self.unknown += int(latency_ms.size - known.size)
        if known.size:
            bins = (_keys(known) >> np.uint64(64 - self.bits)).astype(np.intp)
            self.counts += np.bincount(bins, minlength=self.counts.size)

    def result(self) -> dict[str, Any]:
        if not self.n or self.unknown:
            return {"p50": None, "p95": None, "p99": None, "requests": self.n}
        ends = np.cumsum(self.counts)
        values = _linear_percentiles(self.n, (50.0, 95.0, 99.0), lambda r: self._ranked(ends, r))
        p50, p95, p99 = (seconds(v, 3) for v in values)
        return {"p50": p50, "p95": p95, "p99": p99, "requests": self.n}

    def _ranked(self, ends: npt.NDArray[np.int64], ranks: list[int]) -> dict[int, float]:
        """The values at 0-based `ranks`, from the fetched values of their bins."""
        where = {r: int(np.searchsorted(ends, r, side="right")) for r in ranks}
        bins = sorted(set(where.values()))
        shift = 64 - self.bits
        ranges = [_bounds(b << shift, ((b + 1) << shift) - 1) for b in bins]
        rows = self._fetch(ranges)
        out: dict[int, float] = {}
        for b, (lo, hi) in zip(bins, ranges, strict=True):
            inside = [(v, c) for v, c in rows if lo <= v <= hi]
            if sum(c for _, c in inside) != int(self.counts[b]):
                raise ConfigError(f"{self._source}: the timeline changed while it was read")
            values = np.array([v for v, _ in inside], dtype=np.float64)
            upto = np.cumsum([c for _, c in inside])
            first = int(ends[b - 1]) if b else 0
            for r, at in where.items():
                if at == b:
                    out[r] = float(values[int(np.searchsorted(upto, r - first, side="right"))])
        return out
