"""The RPO ledger built a slice of clients at a time gives the whole ledger's entries.

A constructed timeline of 12 writers (us and eu) sending on a 0.5 s grid, so that
acknowledgements of different clients tie: some writes have no latency, some failed
(connection error, 503), some rows lost their residency (attributed from their client),
each writer has sequence holes (at the edges of the slices when a slice is one or a few
clients), and the fault falls in the middle of the writes. `rpo_table` on the whole
frame is the reference; `rpo_table_scan` must equal it for every slice size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from probes import rpo
from probes.rpo import (
    MemoryWriteStore,
    StoreUnavailable,
    WriteStore,
    ledger_slices,
    rpo_table,
    rpo_table_scan,
)
from probes.rundir import Fault
from probes.timeline import Timeline, read_timeline

T0 = 1_700_000_000.0
FAULTS = [Fault("f1", "kill-region", "us-east", T0 + 20.0, details={"jurisdiction": "us"})]
CLIENTS = [f"{res}-w{n:02d}" for res in ("us", "eu") for n in range(6)]


def _rows(drop_residency: bool = True) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {
        c: [] for c in ("t_start", "latency_ms", "kind", "ok", "status", "residency")
    }
    cols["client"], cols["seq"] = [], []
    for i, client in enumerate(CLIENTS):
        res = client[:2]
        for seq in range(80):
            # Holes: the first writer's second number, every writer's 40th and 41st, the
            # last writer's second-to-last number (first/last client of a slice).
            if (i == 0 and seq == 1) or seq in (40, 41) or (i == len(CLIENTS) - 1 and seq == 78):
                continue
            ok = (seq + i) % 9 != 0
            cols["t_start"].append(T0 + 0.5 * seq)  # every client on the same grid: ties
            cols["latency_ms"].append(None if (seq + i) % 13 == 0 else 10.0 + (i % 3))
            cols["kind"].append("write")
            cols["ok"].append(ok)
            cols["status"].append(201 if ok else (0 if seq % 2 else 503))
            lost_res = drop_residency and (seq * 7 + i) % 17 == 0
            cols["residency"].append(None if lost_res else res)
            cols["client"].append(client)
            cols["seq"].append(seq)
    return cols


def _write(path: Path, cols: dict[str, list[Any]]) -> Path:
    types = {"t_start": pa.float64(), "latency_ms": pa.float64(), "kind": pa.string()}
    types |= {"ok": pa.bool_(), "status": pa.int32(), "residency": pa.string()}
    types |= {"client": pa.string(), "seq": pa.int64()}
    table = pa.table({k: pa.array(v, types.get(k)) for k, v in cols.items()})
    pq.write_table(table, path, row_group_size=37)
    return path


def _stores(cols: dict[str, list[Any]]) -> dict[str, WriteStore]:
    """Every write present but one in five (lost), and the holes of seq 40 (written)."""
    out: dict[str, set[str]] = {"us": set(), "eu": set()}
    for client, seq in zip(cols["client"], cols["seq"], strict=True):
        if client is not None and (seq * 3 + len(client)) % 5:
            out[client[:2]].add(f"ev:{client}:{seq}")
    for client in CLIENTS:
        out[client[:2]].add(f"ev:{client}:40")
    return {j: MemoryWriteStore(keys) for j, keys in out.items()}


def _both(
    path: Path, stores: dict[str, WriteStore], group_rows: int, residencies: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    frame = read_timeline(path, columns=("client", "seq"))
    whole = rpo_table(frame, FAULTS, stores, {}, None, residencies)
    timeline = Timeline(path)
    try:
        sliced = rpo_table_scan(timeline, FAULTS, stores, {}, None, residencies, group_rows)
    finally:
        timeline.close()
    return whole, sliced


@pytest.mark.parametrize("listed", [3, 1000], ids=["list-truncated", "list-whole"])
@pytest.mark.parametrize("group_rows", [1, 30, 80, 150, 400, 1 << 20])
def test_sliced_ledger_equals_the_whole_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group_rows: int, listed: int
) -> None:
    monkeypatch.setattr(rpo, "LOST_LISTED", listed)
    cols = _rows()
    path = _write(tmp_path / "timeline.parquet", cols)
    whole, sliced = _both(path, _stores(cols), group_rows, ("us", "eu", "apac"))
    assert sliced == whole
    us = next(e for e in whole if e["residency"] == "us")
    # The case proves what it claims: losses on both sides of the fault, tied
    # acknowledgements among the listed losses, holes both recorded and unaccounted,
    # attributed residencies.
    assert us["status"] == "no-data" and us["unaccounted"] > 0 and us["unrecorded_present"] > 0
    assert 0 < us["lost_after_fault"] < us["lost"]
    assert us["residency_from_client"] > 0 and us["ambiguous"] > 0
    assert us["lost_writes_truncated"] is (listed == 3)
    times = [w["t_ack"] for w in us["lost_writes"]]
    assert times == sorted(times) and len(set(times)) < len(times)
    assert [e["residency"] for e in whole] == ["apac", "eu", "us"]


def test_slices_pack_small_clients_cut_big_ones_and_put_unkeyed_writes_last(
    tmp_path: Path,
) -> None:
    cols = _rows()
    for name in cols:
        cols[name].append(cols[name][-1])
    cols["client"][-1] = None
    cols["seq"][-1] = None
    path = _write(tmp_path / "timeline.parquet", cols)
    timeline = Timeline(path)
    try:
        packed = ledger_slices(timeline, 160)
        cut = ledger_slices(timeline, 30)
    finally:
        timeline.close()
    # 77-78 writes per client: two clients per slice of 160 writes at most.
    assert [p for _, p in packed[:2]] == [["eu-w00", "eu-w01"], ["eu-w02", "eu-w03"]]
    assert len(packed) == 7 and packed[-1] == ("client IS NULL OR seq IS NULL", [])
    # seq 0…79 in three ranges of 27 numbers per client.
    assert [p for _, p in cut[:4]] == [
        ["eu-w00", 0, 27],
        ["eu-w00", 27, 54],
        ["eu-w00", 54, 81],
        ["eu-w01", 0, 27],
    ]
    assert len(cut) == 12 * 3 + 1


def test_an_acknowledged_write_without_client_fails_its_residency_alike(tmp_path: Path) -> None:
    cols = _rows(drop_residency=False)
    cols["client"][5] = None
    path = _write(tmp_path / "timeline.parquet", cols)
    whole, sliced = _both(path, _stores(cols), 80)
    assert sliced == whole
    assert [e["status"] for e in whole] == ["no-data", "error"]  # eu: its seq-41 holes
    assert "lack client or seq" in whole[1]["reason"]


@pytest.mark.parametrize("group_rows", [30, 80])
def test_too_many_holes_over_several_slices_are_an_error_alike(
    tmp_path: Path, group_rows: int
) -> None:
    cols = _rows(drop_residency=False)
    # Two writers each missing 60 000 numbers: only together over the limit.
    for client in ("us-w01", "us-w04"):
        at = cols["client"].index(client)
        cols["seq"][at] = -60_000
    path = _write(tmp_path / "timeline.parquet", cols)
    whole, sliced = _both(path, _stores(cols), group_rows)
    assert sliced == whole
    us = whole[1]
    assert us["status"] == "error"
    assert us["reason"].startswith("timeline column 'seq': client 'us-w04': ")


class _Failing:
    """A store that answers its first `answers` calls, then is unavailable."""

    def __init__(self, keys: set[str], answers: int) -> None:
        self.inner = MemoryWriteStore(keys)
        self.answers = answers

    def present(self, keys: Sequence[str]) -> set[str]:
        if self.answers <= 0:
            raise StoreUnavailable("redis at 10.0.0.1:6379: connection refused")
        self.answers -= 1
        return self.inner.present(keys)

    def describe(self) -> dict[str, Any]:
        return {"store": "failing"}


def test_a_store_failing_mid_scan_is_an_error_not_a_partial_count(tmp_path: Path) -> None:
    cols = _rows(drop_residency=False)
    path = _write(tmp_path / "timeline.parquet", cols)
    keys = {f"ev:{c}:{s}" for c in CLIENTS for s in range(80)}  # holes written too
    timeline = Timeline(path)
    try:
        entries = rpo_table_scan(
            timeline, FAULTS, {"us": _Failing(keys, 2), "eu": MemoryWriteStore(keys)}, group_rows=80
        )
    finally:
        timeline.close()
    us = entries[1]
    assert (us["status"], us["lost"], us["writes"]) == ("error", None, 6 * 78 - 1)
    assert us["reason"] == "redis at 10.0.0.1:6379: connection refused"
    assert entries[0]["status"] == "ok" and entries[0]["lost"] == 0


def test_no_writes_is_no_data_for_every_residency_named(tmp_path: Path) -> None:
    cols = _rows()
    cols = {k: v[:0] for k, v in cols.items()}
    path = _write(tmp_path / "timeline.parquet", cols)
    whole, sliced = _both(path, {}, 80, ("us",))
    assert sliced == whole
    assert [(e["residency"], e["status"], e["writes"]) for e in sliced] == [("us", "no-data", 0)]
