"""Measure then score constructed run directories: a defect in the data is never a PASS.

The clean run is the control (it PASSes, so each case below can fail: both jurisdictions
write, the deployed digest is known); each case
changes one thing the issue's classes 4-6 describe and must leave the named gate
INCONCLUSIVE or FAIL, and the run not PASS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probes.measure import Options, measure_run
from probes.models import write_measurements
from probes.rpo import MemoryWriteStore
from scorecards.evaluate import Verdict, evaluate
from scorecards.gates import parse_gates
from scorecards.rundir import load_run
from scorecards.sample import TARGET_GATES
from tests.unit.test_probes_measure import T0, make_run, stores

Edit = Callable[[Path], dict[str, MemoryWriteStore]]


def edit_timeline(run: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = run / "timeline.parquet"
    change(pd.read_parquet(path)).to_parquet(path)


def clean(run: Path) -> dict[str, MemoryWriteStore]:
    return stores()


def writes_stop_before_the_fault(run: Path) -> dict[str, MemoryWriteStore]:
    # Class 4: no write acknowledged after the fault at 10 s: "0 lost after it" is vacuous.
    edit_timeline(run, lambda f: f[(f["kind"] != "write") | (f["t_start"] < T0 + 10.0)])
    return stores()


def no_write_acknowledged(run: Path) -> dict[str, MemoryWriteStore]:
    # Class 4: every write failed (a 4xx refusal): nothing to check, not RPO 0.
    def refuse(frame: pd.DataFrame) -> pd.DataFrame:
        writes = frame["kind"] == "write"
        frame.loc[writes, "ok"] = False
        frame.loc[writes, "status"] = np.int32(400)
        return frame

    edit_timeline(run, refuse)
    return {"us": MemoryWriteStore(set())}


def a_lost_recorder_batch(run: Path) -> dict[str, MemoryWriteStore]:
    # Class 5: the rows of seq 200-209 are gone, and so are the writes from the store.
    gone = range(200, 210)
    edit_timeline(run, lambda f: f[~((f["kind"] == "write") & f["seq"].isin(list(gone)))])
    return stores(lost=gone)


def a_lost_write_without_latency(run: Path) -> dict[str, MemoryWriteStore]:
    # Class 5: seq 300 (started at 37.5 s, after the fault) is lost and has no latency.
    def unknown_latency(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[(frame["kind"] == "write") & (frame["seq"] == 300), "latency_ms"] = np.nan
        return frame

    edit_timeline(run, unknown_latency)
    return stores(lost=range(300, 301))


def no_deployed_digest(run: Path) -> dict[str, MemoryWriteStore]:
    # Class 6: nothing says which model was deployed, and no answer before the fault
    # carried a digest: the digests after it cannot be checked.
    (run / "world.json").unlink()

    def no_digest_before(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[frame["t_start"] < T0 + 10.0, "model_digest"] = None
        return frame

    edit_timeline(run, no_digest_before)
    return stores()


def eu_does_not_write(run: Path) -> dict[str, MemoryWriteStore]:
    # Class 4: eu has traffic but no write at all: its RPO is unknown, not 0.
    edit_timeline(run, lambda f: f[~((f["kind"] == "write") & (f["residency"] == "eu"))])
    return stores()


def a_writer_without_residency(run: Path) -> dict[str, MemoryWriteStore]:
    # Class 5: client w9's writes lost their residency; no other row of w9 names one.
    def orphan(frame: pd.DataFrame) -> pd.DataFrame:
        rows = frame[(frame["kind"] == "write") & (frame["client"] == "w1")].head(5).copy()
        rows["client"], rows["residency"] = "w9", None
        return pd.concat([frame, rows], ignore_index=True)

    edit_timeline(run, orphan)
    return stores()


def eu_writes(frame: pd.DataFrame) -> pd.DataFrame:
    """The eu clients write too (seq 0…479 of client e1, all acknowledged)."""
    eu = frame[(frame["kind"] == "predict") & (frame["residency"] == "eu")].copy()
    eu["kind"], eu["client"], eu["model_digest"] = "write", "e1", None
    eu["seq"] = np.arange(len(eu))
    return pd.concat([frame, eu], ignore_index=True)


EU_STORE = MemoryWriteStore({f"ev:e1:{n}" for n in range(480)})


CASES: dict[str, tuple[Edit, str, Verdict]] = {
    "clean": (clean, "lost_after_fault[us]", Verdict.PASS),
    "writes-stop-before-the-fault": (
        writes_stop_before_the_fault, "lost_after_fault[us]", Verdict.INCONCLUSIVE),
    "no-write-acknowledged": (no_write_acknowledged, "rpo_seconds[us]", Verdict.INCONCLUSIVE),
    "lost-recorder-batch": (a_lost_recorder_batch, "rpo_seconds[us]", Verdict.INCONCLUSIVE),
    "lost-write-without-latency": (
        a_lost_write_without_latency, "lost_after_fault[us]", Verdict.FAIL),
    "no-deployed-digest": (no_deployed_digest, "wrong_answers[us]", Verdict.INCONCLUSIVE),
    "eu-does-not-write": (eu_does_not_write, "rpo_seconds[eu]", Verdict.INCONCLUSIVE),
    "writer-without-residency": (
        a_writer_without_residency, "rpo_seconds[unknown]", Verdict.INCONCLUSIVE),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_defective_data_is_never_a_pass(tmp_path: Path, case: tuple[Edit, str, Verdict]) -> None:
    edit, gate_id, expected = case
    run = make_run(tmp_path / "run")
    (run / "world.json").write_text(json.dumps({"model": {"digest": "sha256:m"}}))
    edit_timeline(run, eu_writes)
    write_stores = {"eu": EU_STORE, **edit(run)}
    doc = measure_run(run, Options(topology_path=run / "topology.yaml"), write_stores)
    write_measurements(run, doc)
    card = evaluate([load_run(run)], parse_gates(TARGET_GATES, Path("gates.yaml")), T0)
    found = {g.id: g for g in card.gates}
    assert found[gate_id].verdict == expected, found[gate_id].reason
    if expected == Verdict.PASS:
        assert card.verdict == Verdict.PASS, [
            (g.id, g.reason) for g in card.gates if g.verdict != Verdict.PASS
        ]
    else:
        assert card.verdict != Verdict.PASS
