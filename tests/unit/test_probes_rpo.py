"""RPO maths on a constructed ledger (an in-memory store; the Redis reader is integration).

Writer c1 sends seq 0…99 every 0.5 s from T0, each acknowledged 10 ms later:
t_ack(seq) = T0 + 0.5 seq + 0.01. The fault is at T0 + 25 (seq 50 is the first write
acknowledged after it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from probes.rpo import MemoryWriteStore, StoreUnavailable, fault_for, ledger, rpo_table
from probes.rundir import Fault
from probes.timeline import normalise

T0 = 1_700_000_000.0
FAULT = Fault("f1", "kill-region", "us-east", T0 + 25.0, details={"jurisdiction": "us"})


def writes(
    seqs: Sequence[int],
    ok: bool = True,
    status: int = 201,
    residency: str = "us",
    client: str | None = "c1",
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "t_start": [T0 + 0.5 * s for s in seqs],
            "latency_ms": 10.0,
            "kind": "write",
            "ok": ok,
            "status": np.int32(status),
            "residency": residency,
            "client": client,
            "seq": pd.array(list(seqs), dtype="Int64"),
        }
    )


def timeline(*parts: pd.DataFrame) -> pd.DataFrame:
    predict = pd.DataFrame(
        {"t_start": [T0], "latency_ms": 1.0, "kind": "predict", "ok": True, "status": 200,
         "residency": "us", "client": None, "seq": pd.array([None], dtype="Int64")}
    )  # fmt: skip
    return normalise(pd.concat([predict, *parts], ignore_index=True), columns=("client", "seq"))


def keys(seqs: Sequence[int], client: str = "c1") -> set[str]:
    return {f"ev:{client}:{s}" for s in seqs}


@dataclass(frozen=True)
class Case:
    stored: set[str]
    lost: int
    lost_after_fault: int
    rpo: float
    first_lost: float | None


ACKED = range(100)
CASES = {
    "nothing-lost": Case(keys(ACKED), 0, 0, 0.0, None),
    # seq 40-49 acknowledged 20.01 … 24.51 s, all before the fault: RPO = 25 - 20.01.
    "loss-before-the-fault": Case(keys(ACKED) - keys(range(40, 50)), 10, 0, 4.99, 20.01),
    # seq 45-59 lost, 50-59 acknowledged after the fault (split brain): 29.51 - 22.51.
    "loss-after-the-fault-split-brain": Case(keys(ACKED) - keys(range(45, 60)), 15, 10, 7.0, 22.51),
    "everything-lost": Case(set(), 100, 50, 49.5, 0.01),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rpo_exact_answers(case: Case) -> None:
    frame = timeline(writes(ACKED))
    (entry,) = rpo_table(frame, [FAULT], {"us": MemoryWriteStore(case.stored)})
    assert entry["status"] == "ok"
    assert entry["acknowledged"] == 100
    assert entry["lost"] == case.lost
    assert entry["lost_after_fault"] == case.lost_after_fault
    assert entry["rpo_seconds"] == pytest.approx(case.rpo, abs=1e-6)
    assert entry["ambiguous"] == 0
    assert len(entry["lost_writes"]) == case.lost
    if case.first_lost is not None:
        assert entry["first_lost_ack_at"] == pytest.approx(T0 + case.first_lost, abs=1e-6)
        assert entry["lost_writes"][0]["t_ack"] == entry["first_lost_ack_at"]
    assert entry["fault_id"] == "f1"
    assert entry["store"] == {"store": "memory", "keys": len(case.stored)}


def test_ambiguous_writes_are_failed_for_the_client_but_present() -> None:
    frame = timeline(
        writes(range(10)),
        writes([100, 101, 102], ok=False, status=503),
        writes([105], ok=False, status=0),
        writes([106], ok=False, status=400),  # a refusal: never written, not ambiguous
    )
    store = MemoryWriteStore(keys(range(10)) | keys([100, 101, 105, 106]))
    (entry,) = rpo_table(frame, [FAULT], {"us": store})
    assert (entry["lost"], entry["ambiguous"], entry["failed_writes_checked"]) == (0, 3, 4)
    assert entry["acknowledged"] == 10


def test_a_retried_write_counts_once_from_its_first_acknowledgement() -> None:
    frame = timeline(writes([7], ok=False, status=503), writes([7]), writes([7]))
    (entry,) = rpo_table(frame, [FAULT], {"us": MemoryWriteStore(set())})
    assert (entry["acknowledged"], entry["lost"], entry["ambiguous"]) == (1, 1, 0)
    assert entry["first_lost_ack_at"] == pytest.approx(T0 + 3.5 + 0.01)


def test_jurisdictions_are_read_back_from_their_own_store() -> None:
    frame = timeline(writes(range(4)), writes(range(4), residency="eu", client="e1"))
    stores = {"us": MemoryWriteStore(keys(range(4))), "eu": MemoryWriteStore(keys([0], "e1"))}
    eu_fault = Fault("f2", "kill-region", "eu-west", T0 + 1.0)
    table = rpo_table(frame, [FAULT, eu_fault], stores, {"eu-west": "eu", "us-east": "us"})
    by = {e["residency"]: e for e in table}
    assert (by["us"]["lost"], by["eu"]["lost"]) == (0, 3)
    assert by["eu"]["fault_id"] == "f2"  # the fault that touched the eu jurisdiction
    assert by["eu"]["lost_after_fault"] == 2  # seq 2, 3 acknowledged at 1.01, 1.51


class DeadStore:
    def present(self, keys: Sequence[str]) -> set[str]:
        raise StoreUnavailable("redis at 10.0.0.1:6379: connection refused")

    def describe(self) -> dict[str, Any]:
        return {"store": "dead"}


@pytest.mark.parametrize(
    ("stores", "faults", "status", "reason"),
    [
        (None, [FAULT], "no-data", "no store"),
        ({"us": DeadStore()}, [FAULT], "error", "connection refused"),
        ({"us": MemoryWriteStore()}, [], "no-data", "no fault"),
    ],
    ids=["no-store", "store-unreachable", "no-fault"],
)
def test_rpo_without_a_readable_store_is_never_ok(
    stores: dict[str, Any] | None, faults: list[Fault], status: str, reason: str
) -> None:
    (entry,) = rpo_table(timeline(writes(range(5))), faults, stores)
    assert entry["status"] == status
    assert reason in entry["reason"]
    assert entry["acknowledged"] == 5
    assert entry["lost"] is None
    assert entry["rpo_seconds"] is None


def test_acknowledged_writes_without_keys_are_an_error() -> None:
    frame = timeline(writes(range(3)), writes([9], client=None))
    (entry,) = rpo_table(frame, [FAULT], {"us": MemoryWriteStore(keys(range(3)))})
    assert entry["status"] == "error"
    assert "1 acknowledged writes lack client or seq" in entry["reason"]


def test_ledger_keys_match_the_service() -> None:
    book = ledger(timeline(writes([3, 4])))
    assert sorted(book["key"]) == ["ev:c1:3", "ev:c1:4"]
    assert book["t_ack"].tolist() == pytest.approx([T0 + 1.51, T0 + 2.01])


def test_fault_for_prefers_the_jurisdiction_it_touched() -> None:
    partition = Fault("p", "partition", "eu-west|eu-central,us-east", T0)
    kill = Fault("k", "kill-region", "us-east", T0 + 1, details={"jurisdiction": "us"})
    region_jur = {"eu-west": "eu", "eu-central": "eu", "us-east": "us"}
    assert fault_for("us", [partition, kill], region_jur) is kill
    assert fault_for("eu", [partition, kill], region_jur) is partition
    assert fault_for("xx", [partition, kill], region_jur) is partition
    assert fault_for("us", [], region_jur) is None


# -- class 4: nothing to check is no-data, never "RPO 0, nothing lost"
def test_a_jurisdiction_without_an_acknowledged_write_is_no_data() -> None:
    frame = timeline(writes(range(5), ok=False, status=503))
    (entry,) = rpo_table(frame, [FAULT], {"us": MemoryWriteStore(set())})
    assert entry["status"] == "no-data"
    assert entry["reason"] == "no acknowledged write of this residency: nothing to check"
    assert (entry["acknowledged"], entry["writes"]) == (0, 5)
    assert (entry["rpo_seconds"], entry["lost"], entry["lost_after_fault"]) == (None, None, None)


def test_acknowledged_after_fault_is_reported() -> None:
    (entry,) = rpo_table(timeline(writes(ACKED)), [FAULT], {"us": MemoryWriteStore(keys(ACKED))})
    # seq 50…99 acknowledged at 25.01 … 49.51, after the fault at 25.
    assert (entry["acknowledged_after_fault"], entry["lost_after_fault"]) == (50, 0)
    assert entry["lost_after_fault_reason"] is None


def test_zero_lost_after_the_fault_without_writes_after_it_is_not_a_count() -> None:
    # Writes stop at seq 49 (t_ack 24.51 s), before the fault at 25 s: "0 lost after the
    # fault" would be vacuous.
    frame = timeline(writes(range(50)))
    (entry,) = rpo_table(frame, [FAULT], {"us": MemoryWriteStore(keys(range(50)))})
    assert entry["status"] == "ok"
    assert (entry["rpo_seconds"], entry["lost"]) == (0.0, 0)
    assert entry["acknowledged_after_fault"] == 0
    assert entry["lost_after_fault"] is None
    assert "no write acknowledged after the fault" in entry["lost_after_fault_reason"]


# -- class 5: ledger holes
def null_latency(frame: pd.DataFrame, seqs: Sequence[int]) -> pd.DataFrame:
    out = frame.copy()
    out.loc[out["seq"].isin(list(seqs)), "latency_ms"] = np.nan
    return out


def test_a_lost_write_without_latency_started_after_the_fault_is_lost_after_it() -> None:
    # seq 60 starts at 30.0 s, after the fault at 25 s: its t_ack is unknown but >= 30.
    frame = timeline(null_latency(writes(ACKED), [60]))
    (entry,) = rpo_table(frame, [FAULT], {"us": MemoryWriteStore(keys(ACKED) - keys([60]))})
    assert (entry["lost"], entry["lost_after_fault"], entry["lost_ack_time_unknown"]) == (
        1,
        1,
        0 + 1,
    )
    assert entry["acknowledged_after_fault"] == 50
    # Its t_start stands in for t_ack: RPO = max(25, 30.0) - 30.0 = 0.
    assert entry["rpo_seconds"] == 0.0
    assert entry["lost_writes"] == [{"key": "ev:c1:60", "t_ack": T0 + 30.0}]


def test_a_lost_write_without_latency_started_before_the_fault_leaves_the_count_open() -> None:
    # seq 49 starts at 24.5 s, before the fault: acknowledged before or after it, unknown.
    frame = timeline(null_latency(writes(ACKED), [49]))
    (entry,) = rpo_table(frame, [FAULT], {"us": MemoryWriteStore(keys(ACKED) - keys([49]))})
    assert (entry["lost"], entry["lost_ack_time_unknown"]) == (1, 1)
    assert entry["lost_after_fault"] is None
    assert entry["lost_after_fault_reason"].startswith("1 lost writes started before the fault")


def test_a_sequence_hole_missing_from_the_store_too_is_unaccounted() -> None:
    # The rows of seq 20-29 were lost by the recorder; the store holds 20-24 (written,
    # never lost) but not 25-29: they may have been acknowledged and lost.
    recorded = [s for s in ACKED if not 20 <= s < 30]
    stored = keys(recorded) | keys(range(20, 25))
    (entry,) = rpo_table(timeline(writes(recorded)), [FAULT], {"us": MemoryWriteStore(stored)})
    assert entry["status"] == "no-data"
    assert entry["reason"].startswith("5 sequence numbers are missing from both the timeline")
    assert "ev:c1:25, ev:c1:26, ev:c1:27, …" in entry["reason"]
    assert (entry["sequence_holes"], entry["unrecorded_present"], entry["unaccounted"]) == (
        10,
        5,
        5,
    )
    assert entry["unaccounted_keys"] == sorted(
        keys(range(25, 30)), key=lambda k: int(k.split(":")[2])
    )
    assert (entry["acknowledged"], entry["lost"]) == (90, 0)


def test_a_sequence_hole_found_in_the_store_keeps_the_entry_ok() -> None:
    recorded = [s for s in ACKED if s != 42]
    (entry,) = rpo_table(timeline(writes(recorded)), [FAULT], {"us": MemoryWriteStore(keys(ACKED))})
    assert entry["status"] == "ok"
    assert (entry["sequence_holes"], entry["unrecorded_present"], entry["unaccounted"]) == (1, 1, 0)


def test_a_write_without_residency_is_attributed_to_its_client() -> None:
    frame = writes(range(10))
    frame["residency"] = frame["residency"].astype(object)
    frame.loc[frame["seq"] == 7, "residency"] = None
    (entry,) = rpo_table(timeline(frame), [FAULT], {"us": MemoryWriteStore(keys(range(7)))})
    assert (entry["residency"], entry["acknowledged"], entry["lost"]) == ("us", 10, 3)
    assert entry["residency_from_client"] == 1


def test_a_write_whose_residency_cannot_be_attributed_is_counted_as_unknown() -> None:
    orphan = writes([1, 2], client="c9")
    orphan["residency"] = None
    table = rpo_table(
        timeline(writes(range(5)), orphan), [FAULT], {"us": MemoryWriteStore(keys(range(5)))}
    )
    by = {e["residency"]: e for e in table}
    assert set(by) == {"us", "unknown"}
    assert by["unknown"]["status"] == "error"
    assert (by["unknown"]["acknowledged"], by["unknown"]["writes"]) == (2, 2)
    assert "have no residency" in by["unknown"]["reason"]
    assert by["us"]["status"] == "ok"


def test_the_lag_at_the_fault_is_quoted_even_without_prometheus() -> None:
    (entry,) = rpo_table(timeline(writes(ACKED)), [FAULT], {"us": MemoryWriteStore(keys(ACKED))})
    assert entry["replication_lag_estimate"] == {
        "status": "no-data",
        "reason": "no Prometheus to ask",
    }
