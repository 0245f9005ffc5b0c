"""The request timeline: one row per request, written in batches to Parquet.

Schema (`SCHEMA`; the probes read these names and types):

| column | type | meaning |
|---|---|---|
| t_start | float64 | wall-clock epoch seconds (µs) when the request was sent |
| latency_ms | float64 | until the answer was read (or the error happened) |
| kind | string | predict, write or canary |
| ok | bool | HTTP outcome only: a 2xx answer |
| status | int32 | HTTP status; 0 = connection error or timeout |
| error | string | why it failed (`; answer: …`: what a failed answer said); null when ok |
| residency | string | the jurisdiction the request named (platform file's jurisdictions) |
| region | string | X-Region of the answer; null if absent |
| model_digest | string | X-Model-Digest of the answer; null if absent |
| score | float64 | `score` of a prediction's JSON answer; null if none |
| client | string | writes: the writer's client id; null otherwise |
| seq | int64 | writes: the client's sequence number (1, 2, ...); null otherwise |
| expected | float64 | canaries: the golden score; null otherwise |
| correct | bool | canaries with an HTTP answer: `score` within 1e-6 of `expected` |

Writes with `ok` are the ledger of acknowledged writes (t_ack = t_start + latency_ms/1000).

Crash safety: a `Recorder` keeps at most `batch_rows` rows (default 5000) or
`batch_seconds` (default 1 s) of rows in memory, whichever fills first, and writes each
batch as its own small Parquet file (written to a temporary name, then renamed), so a
crashed process loses at most that one batch and every earlier batch stays readable.
`close` (normal stop, SIGINT, SIGTERM) writes the last batch and compacts the batches into
one file sorted by `t_start`; `merge` does the same across processes (and recovers the
batches a crashed process left behind).

Bounded memory: `merge` sorts with DuckDB under a memory cap (`MERGE_MEMORY`), spilling
to a scratch folder beside its output, and streams the sorted rows out one row group at a
time: an hour's soak (36 M rows) compacts in about the same memory as a minute's.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from infra.types import timeline_schema
from loadgen.errors import LoadRunError

__all__ = [
    "BATCH_ROWS",
    "BATCH_SECONDS",
    "COLUMNS",
    "MERGE_MEMORY",
    "ROW_GROUP_ROWS",
    "SCHEMA",
    "MergeResult",
    "Recorder",
    "Row",
    "empty_table",
    "merge",
    "percentiles",
    "read_timeline",
    "row_from_request",
]

BATCH_ROWS = 5000
#: Rows per Parquet row group of a timeline. 65 536 rows is about 6.5 s of a 10 000
#: requests/s soak and about 1.5 MiB of column data: small enough that a time-range
#: filter on `t_start` (row-group min/max statistics) reads little beyond the range,
#: large enough that the per-group overhead stays negligible (550 groups per hour).
ROW_GROUP_ROWS = 1 << 16
BATCH_SECONDS = 1.0
#: DuckDB's memory cap while `merge` sorts; past it the sort spills to disk (about 160
#: bytes a row). 256 MB keeps a whole merge near 0.65 GiB of RSS from 5 M rows to 36 M
#: (an hour's soak; docs/loadgen.md); a 1 GB cap was no faster there.
MERGE_MEMORY = "256MB"
SCORE_TOLERANCE = 1e-6
#: The `error` column's longest value; what a failed answer said is kept within it.
ERROR_CHARS = 300
ANSWER_MARK = "; answer: "
#: How much of a failed answer is read (its JSON `error`, else its text), and kept.
ANSWER_BYTES = 2048
ANSWER_CHARS = 150

SCHEMA = timeline_schema()  # declared once, in infra.types (the run-directory contract)
COLUMNS = tuple(SCHEMA.names)
_NAMES = list(COLUMNS)

# One row, in COLUMNS order.
Row = tuple[
    float,
    float,
    str,
    bool,
    int,
    str | None,
    str | None,
    str | None,
    str | None,
    float | None,
    str | None,
    int | None,
    float | None,
    bool | None,
]

_SEGMENT_PREFIX = "seg-"
_WARM_UP_ROW: Row = (0.0, 0.0, "predict", True, 200, "x", "j", "r", "d", 0.5, "c", 1, 0.5, True)


def _text(value: Any) -> str | None:
    # geventhttpclient returns a list when a header is repeated: keep the last one
    if value is None or isinstance(value, str):
        return value
    return str(value[-1]) if isinstance(value, list) and value else None


def _answer_error(content: bytes | None) -> str | None:
    """What a failed answer said, at most ANSWER_CHARS characters: the `error` string of
    a JSON body, or the text of a body that is not JSON (a router's own error page),
    whitespace collapsed; None for an empty body or JSON without an `error` string."""
    if not content:
        return None
    head = content[:ANSWER_BYTES]
    try:
        body = json.loads(head)
    except ValueError:
        text = head.decode("utf-8", errors="replace")
    else:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, str):
            return None
        text = error
    said = " ".join(text.split())[:ANSWER_CHARS]
    return said or None


def row_from_request(
    start_time: float,
    response_time_ms: float,
    status: int,
    exception: BaseException | None,
    headers: Mapping[str, Any] | None,
    content: bytes | None,
    context: Mapping[str, Any],
) -> Row:
    """One timeline row from what Locust's `request` event carries. `context` holds what
    the user sent: `kind`, `residency`, and `client`/`seq` (writes) or `expected`
    (canaries), and `reader` (an `infra.shapes.AnswerReader`: where the platform's
    answers hold score, region and digest; without it, the reference API's). The score
    is parsed only from 2xx answers to canaries. (The hot path of the recorder: a few µs
    per request.)"""
    kind: str = context["kind"]
    reader = context.get("reader")
    ok = exception is None and 200 <= status < 300
    error: str | None = None
    score: float | None = None
    if not ok:
        error = (
            f"{type(exception).__name__}: {exception}"[:ERROR_CHARS]
            if exception
            else f"http {status}"
        )
        said = _answer_error(content) if status else None
        if said is not None:
            # Which component refused, and why: a 503 alone does not say (a region's
            # service naming its store, or the router with no server left).
            error = error[: ERROR_CHARS - len(ANSWER_MARK) - len(said)] + ANSWER_MARK + said
    elif kind == "canary" and content:
        # Only canaries need their answer read: parsing every prediction's body would
        # cost the recorder more than everything else it does.
        score = reader.score_of(content) if reader is not None else _reference_score(content)
    expected: float | None = context.get("expected")
    correct: bool | None = None
    if expected is not None and ok:
        correct = score is not None and abs(score - expected) <= SCORE_TOLERANCE
    region = digest = None
    if reader is not None:
        region = reader.region(headers, content if reader.answer.region_field else None)
        digest = reader.digest(headers)
    elif headers is not None:
        region = _text(headers.get("X-Region"))
        digest = _text(headers.get("X-Model-Digest"))
    return (
        round(start_time, 6),
        response_time_ms,
        kind,
        ok,
        status,
        error,
        context.get("residency"),
        region,
        digest,
        score,
        context.get("client"),
        context.get("seq"),
        expected,
        correct,
    )


def _reference_score(content: bytes) -> float | None:
    try:
        value = json.loads(content)["score"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return float(value)
    return None


def empty_table() -> pa.Table:
    """A timeline with no rows (and the full schema)."""
    return SCHEMA.empty_table()


def _table(rows: list[Row]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(values, type=fld.type) for values, fld in zip(columns, SCHEMA, strict=True)]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _tmp_name(path: Path) -> Path:
    # not *.parquet: a half-written file is never taken for a batch by a later merge
    return path.with_name(path.name + f".{os.getpid()}.tmp")


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = _tmp_name(path)
    try:
        pq.write_table(table, tmp, row_group_size=max(1, min(table.num_rows, ROW_GROUP_ROWS)))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Recorder:
    """Buffers rows and writes them in batches as segment files under `segments_dir`.

    Not thread-safe (Locust runs it on one OS thread, in greenlets that do not switch
    inside `add`). `clock` is injectable for tests; it only decides when a batch is due.
    """

    def __init__(
        self,
        segments_dir: Path,
        batch_rows: int = BATCH_ROWS,
        batch_seconds: float = BATCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_rows <= 0 or batch_seconds <= 0:
            raise ValueError(f"batch size must be positive, got {batch_rows}, {batch_seconds}")
        self.segments_dir = segments_dir
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.rows_written = 0
        self._clock = clock
        self._rows: list[Row] = []
        self._segments = 0
        self._due = clock() + batch_seconds
        self._closed = False
        segments_dir.mkdir(parents=True, exist_ok=True)
        # pyarrow initialises its conversion and Parquet code on first use (~0.1 s): do it
        # now, not in the middle of the load where it would stall every request in flight.
        pq.write_table(_table([_WARM_UP_ROW]), pa.BufferOutputStream())

    @property
    def buffered(self) -> int:
        """Rows not yet on disk."""
        return len(self._rows)

    def add(self, row: Row) -> None:
        """Keep one row; write the batch once it is full or `batch_seconds` old."""
        rows = self._rows
        rows.append(row)
        if len(rows) >= self.batch_rows or self._clock() >= self._due:
            self.flush()

    def flush(self) -> Path | None:
        """Write the buffered rows as one segment file (None when there were none)."""
        self._due = self._clock() + self.batch_seconds
        if not self._rows:
            return None
        rows, self._rows = self._rows, []
        self._segments += 1
        path = self.segments_dir / f"{_SEGMENT_PREFIX}{self._segments:07d}.parquet"
        _write_atomic(_table(rows), path)
        self.rows_written += len(rows)
        return path

    def close(self, target: Path) -> MergeResult:
        """Flush, then compact every segment into `target` (sorted by `t_start`) and
        remove the segments. Safe to call twice (the second call does nothing)."""
        if self._closed:
            return MergeResult(target, 0, 0, [])
        self.flush()
        self._closed = True
        result = merge(target, [self.segments_dir])
        shutil.rmtree(self.segments_dir, ignore_errors=True)
        return result


@dataclass(frozen=True)
class MergeResult:
    """What `merge` wrote: `rows` rows from `files` files; `skipped` could not be read."""

    path: Path
    rows: int
    files: int
    skipped: list[str]


def _parquet_files(sources: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files.extend(sorted(p for p in source.rglob("*.parquet") if p.is_file()))
        elif source.is_file():
            files.append(source)
    return files


def merge(out: Path, sources: Iterable[Path], memory_limit: str = MERGE_MEMORY) -> MergeResult:
    """Write one timeline at `out` holding every row of `sources` (Parquet files, or
    folders searched for them: parts and segments), sorted by `t_start` (stable: ties
    keep the order of the files as listed, then of the rows within a file).

    Unreadable files (not Parquet, a column of `SCHEMA` missing, a value that does not
    cast to its type) are skipped and named in the result; no source means no rows.
    Memory stays bounded whatever the size: DuckDB sorts under `memory_limit`, spilling
    to a scratch folder beside `out` (removed afterwards), and the result is written a
    row group at a time to a temporary name, then renamed: `out` is never half written.
    Raises LoadRunError when the engine fails on files that Arrow reads.
    """
    files = [f for f in _parquet_files(sources) if f.resolve() != out.resolve()]
    out.parent.mkdir(parents=True, exist_ok=True)
    skipped: dict[int, str] = {}
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".merge", dir=out.parent))
    try:
        inputs = _conformed(files, scratch, skipped)
        try:
            rows = _write_sorted(out, inputs, scratch, memory_limit)
        except LoadRunError:
            # The footers were fine but a page is not: find the file(s) as the
            # in-memory read would, skip them, and sort once more.
            bad = {i: problem for i, path in inputs.items() if (problem := _unreadable(path))}
            if not bad:
                raise
            for i, problem in bad.items():
                skipped[i] = f"{files[i]}: {problem}"
                del inputs[i]
            rows = _write_sorted(out, inputs, scratch, memory_limit)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return MergeResult(out, rows, len(files) - len(skipped), [skipped[i] for i in sorted(skipped)])


def _conformed(files: list[Path], scratch: Path, skipped: dict[int, str]) -> dict[int, Path]:
    """The readable `files` by position, each of exactly `SCHEMA`: a batch as the recorder
    writes it as is (only its footer is read), any other file cast a batch at a time
    into `scratch` as the in-memory merge would cast it. Problems go to `skipped`."""
    inputs: dict[int, Path] = {}
    for i, path in enumerate(files):
        try:
            schema = pq.read_schema(path)
            if schema.equals(SCHEMA):
                inputs[i] = path
                continue
            missing = [c for c in COLUMNS if c not in schema.names]
            if missing:
                raise KeyError(f"no column {missing[0]!r}")
            # not *.parquet: a merge interrupted here leaves nothing a later one would read
            inputs[i] = scratch / f"{i:07d}.conformed"
            with pq.ParquetWriter(inputs[i], SCHEMA) as writer:
                for batch in pq.ParquetFile(path).iter_batches(ROW_GROUP_ROWS, columns=_NAMES):
                    writer.write_table(pa.Table.from_batches([batch]).select(_NAMES).cast(SCHEMA))
        except (OSError, pa.ArrowException, KeyError) as exc:
            inputs.pop(i, None)
            skipped[i] = f"{path}: {exc}"
    return inputs


def _unreadable(path: Path) -> str | None:
    """Why Arrow cannot read every row of `path` (None when it can), a batch at a time."""
    try:
        for _ in pq.ParquetFile(path).iter_batches(ROW_GROUP_ROWS, columns=_NAMES):
            pass
    except (OSError, pa.ArrowException) as exc:
        return str(exc)
    return None


def _write_sorted(out: Path, inputs: dict[int, Path], scratch: Path, memory_limit: str) -> int:
    """Sort the rows of `inputs` (files of exactly `SCHEMA`) by `t_start`, then input
    position, then row within the file, into `out` in row groups of `ROW_GROUP_ROWS`;
    the number of rows. Raises LoadRunError when the engine fails."""
    import duckdb  # here, not at the top: a recorder needs the engine only when it closes

    if not inputs:
        _write_atomic(empty_table(), out)
        return 0
    order = sorted(inputs)
    paths = [str(inputs[i]) for i in order]
    # file_index is a file's place in `paths`; it stands for its place in `inputs`, and
    # with the row number it makes the order total: the engine's own sort need not be
    # stable for the result to equal the stable in-memory sort.
    sql = (
        f"SELECT {', '.join(COLUMNS)} FROM read_parquet($paths, file_row_number = true) "
        "ORDER BY t_start ASC NULLS LAST, file_index, file_row_number"
    )
    tmp = _tmp_name(out)
    rows = 0
    db = duckdb.connect(config={"memory_limit": memory_limit, "threads": 2})
    try:
        db.execute("SET enable_progress_bar = false")
        spill = str(scratch / "spill").replace("'", "''")
        db.execute(f"SET temp_directory = '{spill}'")
        reader = db.sql(sql, params={"paths": paths}).to_arrow_reader(ROW_GROUP_ROWS)
        with pq.ParquetWriter(tmp, SCHEMA) as writer:
            for group in _row_groups(reader):
                writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
                rows += group.num_rows
            if not rows:  # files without rows: one empty row group, as `_write_atomic`
                writer.write_table(empty_table(), row_group_size=1)
        os.replace(tmp, out)
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        # an engine error met while the rows stream out reaches us as Arrow's OSError
        raise LoadRunError(f"cannot merge {len(paths)} timeline files into {out}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        db.close()
    return rows


def _row_groups(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """`batches` regrouped into tables of exactly `ROW_GROUP_ROWS` rows (the last one
    shorter), cast to `SCHEMA`: the engine's batches have sizes of their own."""
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += batch.num_rows
        while count >= ROW_GROUP_ROWS:
            table = pa.Table.from_batches(held).cast(SCHEMA)
            yield table.slice(0, ROW_GROUP_ROWS)
            rest = table.slice(ROW_GROUP_ROWS)
            held, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(held).cast(SCHEMA)


def read_timeline(path: Path) -> pa.Table:
    """Read a timeline file, checked against `SCHEMA` (ValueError when it differs)."""
    table = pq.read_table(path)
    if not table.schema.equals(SCHEMA):
        raise ValueError(f"{path}: not a timeline: schema {table.schema} differs from {SCHEMA}")
    return table


def percentiles(values: pa.Array | pa.ChunkedArray, points: Iterable[float]) -> list[float | None]:
    """Percentiles (0..100) by linear interpolation between closest ranks; None when
    there are no values."""
    points = list(points)
    if len(values) - values.null_count == 0:
        return [None for _ in points]
    found = pc.quantile(values, q=[p / 100.0 for p in points], interpolation="linear")
    return [float(v) for v in found.to_pylist()]


def main(argv: list[str]) -> int:
    """`python -m loadgen.timeline OUT SOURCE...`: merge parts (e.g. from many machines)."""
    if len(argv) < 2:
        print("usage: python -m loadgen.timeline OUT.parquet PART_OR_FOLDER...", file=sys.stderr)
        return 2
    result = merge(Path(argv[0]), [Path(a) for a in argv[1:]])
    for problem in result.skipped:
        print(f"skipped unreadable {problem}", file=sys.stderr)
    print(f"{result.path}: {result.rows} rows from {result.files} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
