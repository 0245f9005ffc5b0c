"""`loadgen.timeline.merge` (bounded memory) gives exactly what the in-memory merge gave."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadgen.errors import LoadRunError
from loadgen.timeline import ROW_GROUP_ROWS, SCHEMA, MergeResult, merge, read_timeline


def _in_memory(files: list[Path]) -> pa.Table:
    """The merge as it was before it was bounded: every readable file whole in memory,
    concatenated in the order given, then a stable sort on `t_start` (the oracle)."""
    tables = []
    for path in files:
        try:
            tables.append(pq.read_table(path).select(SCHEMA.names).cast(SCHEMA))
        except (OSError, pa.ArrowException, KeyError):
            continue
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    return table.sort_by([("t_start", "ascending")]) if table.num_rows else table


def _same(got: pa.Table, expected: pa.Table) -> bool:
    """Equal schemas and equal rows in the same order, a NaN equal to a NaN (which
    `Table.equals` does not grant)."""
    rows = [repr(r) for r in got.to_pylist()]
    return got.schema.equals(expected.schema) and rows == [repr(r) for r in expected.to_pylist()]


def _batch(path: Path, t_starts: list[float | None], tag: str, **types: pa.DataType) -> Path:
    """A batch file of one row per `t_starts`, told apart by `client` = tag and `seq` = row
    number; `types` override a column's type (the file then differs from SCHEMA)."""
    n = len(t_starts)
    columns: dict[str, pa.Array] = {f.name: pa.nulls(n, f.type) for f in SCHEMA}
    columns["t_start"] = pa.array(t_starts, pa.float64())
    columns["latency_ms"] = pa.array([1.5] * n)
    columns["kind"] = pa.array(["write"] * n)
    columns["ok"] = pa.array([True] * n)
    columns["status"] = pa.array([201] * n, pa.int32())
    columns["residency"] = pa.array(["eu"] * n)
    columns["client"] = pa.array([tag] * n)
    columns["seq"] = pa.array(range(n), pa.int64())
    table = pa.table(columns, schema=SCHEMA)
    for name, kind in types.items():
        i = SCHEMA.get_field_index(name)
        table = table.set_column(i, pa.field(name, kind), table.column(name).cast(kind))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _order(table: pa.Table) -> list[tuple[float | None, str, int]]:
    return list(
        zip(
            table.column("t_start").to_pylist(),
            table.column("client").to_pylist(),
            table.column("seq").to_pylist(),
            strict=True,
        )
    )


def test_ties_across_files_keep_the_file_order_then_the_row_order(tmp_path: Path) -> None:
    src = tmp_path / "parts"
    files = [
        _batch(src / "a" / "seg-1.parquet", [3.0, 1.0, 2.0, 1.0], "a1"),  # unsorted inside
        _batch(src / "a" / "seg-2.parquet", [2.0, 0.5], "a2"),
        _batch(src / "b" / "seg-1.parquet", [1.0, 2.0, 1.0], "b1"),
    ]
    result = merge(tmp_path / "t.parquet", [src])
    table = read_timeline(tmp_path / "t.parquet")
    assert _order(table) == [
        (0.5, "a2", 1),
        (1.0, "a1", 1),
        (1.0, "a1", 3),
        (1.0, "b1", 0),
        (1.0, "b1", 2),
        (2.0, "a1", 2),
        (2.0, "a2", 0),
        (2.0, "b1", 1),
        (3.0, "a1", 0),
    ]
    assert _same(table, _in_memory(files))
    assert result == MergeResult(tmp_path / "t.parquet", 9, 3, [])


def test_sources_keep_the_order_they_are_given_in(tmp_path: Path) -> None:
    """Folders are searched in sorted order, but the sources themselves stay as listed."""
    second = _batch(tmp_path / "z.parquet", [1.0], "z")
    first = _batch(tmp_path / "a.parquet", [1.0], "a")
    merge(tmp_path / "out" / "t.parquet", [second, first])
    assert _order(read_timeline(tmp_path / "out" / "t.parquet")) == [(1.0, "z", 0), (1.0, "a", 0)]


def test_equals_the_in_memory_merge_on_awkward_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    other_types = {
        "status": pa.int64(),
        "client": pa.large_string(),
        "seq": pa.int32(),
        "kind": pa.dictionary(pa.int8(), pa.string()),
    }
    files = [
        _batch(src / "01.parquet", [5.0, float("nan"), None, 0.0, -0.0], "plain"),
        _batch(src / "02.parquet", [], "empty"),
        _batch(src / "03.parquet", [0.0, 5.0, -1.0], "other-types", **other_types),
        _batch(src / "04.parquet", [None, -0.0], "dictionary", kind=other_types["kind"]),
        src / "05.parquet",  # corrupt
        src / "06.parquet",  # a column missing
        src / "07.parquet",  # an extra column
        src / "08.parquet",  # a value that does not fit the column's type
    ]
    files[4].write_bytes(b"PAR1 not really")
    pq.write_table(pq.read_table(files[0]).drop_columns(["residency"]), files[5])
    pq.write_table(pq.read_table(files[0]).append_column("extra", pa.array([1] * 5)), files[6])
    wide = pq.read_table(files[0])
    i = SCHEMA.get_field_index("status")
    pq.write_table(wide.set_column(i, "status", pa.array([2**40] * 5, pa.int64())), files[7])

    result = merge(tmp_path / "t.parquet", [src])

    table = read_timeline(tmp_path / "t.parquet")
    assert table.schema.equals(SCHEMA)
    assert _same(table, _in_memory(files))
    assert table.num_rows == 5 + 0 + 3 + 2 + 5 == result.rows
    assert result.files == 5
    assert [s.split(":")[0] for s in result.skipped] == [str(f) for f in files[4:6] + files[7:]]
    assert "'residency'" in result.skipped[1]
    # -0.0 ties with 0.0 (file order kept), NaN after every number, nulls last
    assert [repr(v) for v in table.column("t_start").to_pylist()] == [
        "-1.0", *["0.0", "-0.0"] * 3, *["5.0"] * 3, *["nan"] * 2, *["None"] * 3
    ]  # fmt: skip
    assert table.column("client").to_pylist()[-3:] == ["plain", "dictionary", "plain"]


def test_a_file_with_a_corrupt_page_is_skipped_and_named(tmp_path: Path) -> None:
    """The footer reads, a data page does not: the engine fails, the merge finds the file
    and skips it as the in-memory read would have."""
    good = _batch(tmp_path / "src" / "a.parquet", [2.0, 1.0], "a")
    bad = _batch(tmp_path / "src" / "b.parquet", [float(i) for i in range(5000)], "b")
    data = bytearray(bad.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    for at in range(8, len(data) - footer, 7):
        data[at] ^= 0x5A
    bad.write_bytes(bytes(data))
    assert pq.read_schema(bad).equals(SCHEMA)  # the cheap check passes it

    result = merge(tmp_path / "t.parquet", [tmp_path / "src"])

    assert (result.rows, result.files) == (2, 1)
    assert len(result.skipped) == 1 and result.skipped[0].startswith(f"{bad}: ")
    assert _same(read_timeline(tmp_path / "t.parquet"), _in_memory([good, bad]))


@pytest.mark.parametrize(
    "sources",
    [[], ["absent"], ["empty-folder"], ["empty-folder", "absent"]],
    ids=["no-sources", "absent-path", "empty-folder", "both"],
)
def test_merge_of_nothing_is_an_empty_timeline(tmp_path: Path, sources: list[str]) -> None:
    (tmp_path / "empty-folder").mkdir()
    result = merge(tmp_path / "out" / "t.parquet", [tmp_path / s for s in sources])
    table = read_timeline(tmp_path / "out" / "t.parquet")
    assert table.num_rows == 0 and table.schema.equals(SCHEMA)
    assert (result.rows, result.files, result.skipped) == (0, 0, [])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t.parquet"]


def test_files_without_rows_give_an_empty_timeline(tmp_path: Path) -> None:
    files = [_batch(tmp_path / "src" / f"{i}.parquet", [], str(i)) for i in range(2)]
    result = merge(tmp_path / "t.parquet", files)
    table = read_timeline(tmp_path / "t.parquet")
    assert table.num_rows == 0 and table.schema.equals(SCHEMA)
    assert (result.rows, result.files) == (0, 2)
    assert pq.read_metadata(tmp_path / "t.parquet").num_row_groups == 1  # as before: one, empty


def test_row_groups_are_exactly_row_group_rows_across_files(tmp_path: Path) -> None:
    per_file = 50_000
    files = [
        _batch(tmp_path / "src" / f"{k}.parquet", [float(k + 3 * i) for i in range(per_file)], "x")
        for k in range(3)
    ]
    merge(tmp_path / "t.parquet", files)
    meta = pq.ParquetFile(tmp_path / "t.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 3 * per_file - 2 * ROW_GROUP_ROWS]
    t = read_timeline(tmp_path / "t.parquet").column("t_start").to_pylist()
    assert t == [float(i) for i in range(3 * per_file)]


def test_a_failed_merge_leaves_no_output_and_no_scratch(tmp_path: Path) -> None:
    """The engine fails (a memory cap it cannot work in) on files Arrow reads: the error
    names the output; nothing is written at `out`, no temporary file, no scratch."""
    files = [
        _batch(tmp_path / "src" / f"{k}.parquet", [float(i) for i in range(20_000)], "x")
        for k in range(3)
    ]
    out = tmp_path / "out" / "t.parquet"
    with pytest.raises(LoadRunError, match=r"into .*/out/t\.parquet: "):
        merge(out, files, memory_limit="1KB")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_merge_that_cannot_put_its_output_in_place_leaves_nothing(tmp_path: Path) -> None:
    """The sorted file is written, but the rename fails (`out` is a folder): the error
    names the output, `out` is untouched, no temporary file or scratch is left."""
    files = [_batch(tmp_path / "src" / "a.parquet", [2.0, 1.0], "a")]
    out = tmp_path / "out" / "t.parquet"
    (out / "inside").mkdir(parents=True)
    with pytest.raises(LoadRunError, match=r"into .*/out/t\.parquet: .*directory"):
        merge(out, files)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["t.parquet"]
    assert [p.name for p in out.iterdir()] == ["inside"]


def test_an_interrupted_merge_leaves_nothing_a_later_one_reads(tmp_path: Path) -> None:
    """A killed merge leaves a temporary file and its scratch folder (spill files and
    conformed copies): none of them is named *.parquet, so a merge of the folder later
    reads only the batches."""
    batch = _batch(tmp_path / "parts" / "a.parquet", [1.0], "a")
    (tmp_path / "parts" / "t.parquet.123.tmp").write_bytes(batch.read_bytes())
    scratch = tmp_path / "parts" / ".t.parquet.abc.merge"
    scratch.mkdir()
    (scratch / "0000000.conformed").write_bytes(batch.read_bytes())
    result = merge(tmp_path / "t.parquet", [tmp_path / "parts"])
    assert (result.rows, result.files) == (1, 1)


def test_the_output_is_never_read_as_its_own_source(tmp_path: Path) -> None:
    """`merge(timeline, [timeline, parts])` (a single process's file plus the batches a
    crash left) must not read the old timeline it replaces."""
    out = _batch(tmp_path / "t.parquet", [9.0], "old")
    _batch(tmp_path / "parts" / "a.parquet", [1.0], "a")
    result = merge(out, [out, tmp_path / "parts"])
    assert (result.rows, result.files) == (1, 1)
    assert _order(read_timeline(out)) == [(1.0, "a", 0)]


def test_many_ties_over_many_rows_keep_the_stable_order(tmp_path: Path) -> None:
    """Enough rows that the engine sorts in parallel runs: only the explicit tie-break
    (file, then row) keeps the stable order there."""
    files = [
        _batch(tmp_path / "src" / f"{k}.parquet", [float((7 * i + k) % 5) for i in range(40_000)],
               f"f{k}")
        for k in range(4)
    ]  # fmt: skip
    merge(tmp_path / "t.parquet", files)
    assert _same(read_timeline(tmp_path / "t.parquet"), _in_memory(files))
