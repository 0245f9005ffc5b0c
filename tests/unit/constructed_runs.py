"""Constructed run directories for the equality test of the bounded-memory measurement.

Built with numpy and pyarrow only (no project code), so that the same runs can be
measured by an older checkout: `tests/golden/soak/*.json` are the measurements the
in-memory path (before issue 15) gave on them, written by
`python -m tests.unit.constructed_runs OUT_DIR` run against that checkout.
Row groups are tiny (`ROW_GROUP`, prime) so that faults, relapses and ties fall on
and near row-group edges.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.bench.bench_probes import TOPOLOGY

T0 = 1_700_000_000.0
ROW_GROUP = 37
#: Keys the stores lost (every 7th write of us-w0 and eu-w1).
LOST = {f"ev:{client}:{seq}" for client in ("us-w0", "eu-w1") for seq in range(0, 2000, 7)}
SCENARIOS = ("kill-at-edge", "overlapping", "sparse", "unsorted", "no-fault")


def _fault(fid: str, fault: str, target: str, at: float, **extra: Any) -> str:
    record = {"type": "fault", "fault": fault, "target": target, "id": fid, "applied_at": at}
    return json.dumps({**record, "reverted_at": None, "details": {}, **extra}) + "\n"


def _rows(rng: np.random.Generator, n: int, seconds: float, rate_us: float = 1.0) -> dict[str, Any]:
    t = np.sort(T0 + rng.uniform(0.0, seconds, n))
    t[10:20] = t[10]  # ties: requests sharing a start
    kind = rng.choice(np.array(["predict", "write", "canary"]), n, p=[0.6, 0.25, 0.15])
    residency = np.where(rng.random(n) < rate_us / (1.0 + rate_us), "us", "eu")
    return {"t": t, "kind": kind, "residency": residency}


def build(path: Path, scenario: str, seed: int = 5) -> Path:
    """Write run directory `path` for `scenario` (one of SCENARIOS); returns it."""
    rng = np.random.default_rng(seed)
    n, seconds = (900, 60.0) if scenario == "sparse" else (6000, 80.0)
    base = _rows(rng, n, seconds)
    t, kind, residency = base["t"], base["kind"], base["residency"]
    us, eu = residency == "us", residency == "eu"
    # The first fault falls exactly on the first start of a row group.
    fault_at = float(t[ROW_GROUP * 50]) if scenario != "sparse" else T0 + 20.0
    ok = np.ones(n, dtype=bool)
    ok &= ~(us & (t >= fault_at) & (t < fault_at + 5.0))
    ok &= ~(us & (t >= fault_at + 25.0) & (t < fault_at + 26.5))  # a relapse
    ok &= rng.random(n) > 0.002
    latency = rng.gamma(2.0, 5.0, n)
    # Failures in flight at the fault: started before it, hanging past it.
    caught = us & (t < fault_at) & (t > fault_at - 3.0) & (rng.random(n) < 0.3)
    ok &= ~caught
    latency[caught] = 2500.0
    latency[rng.random(n) < 0.01] = np.nan
    events = _fault("kill-us", "kill-region", "us-east", fault_at, details={"jurisdiction": "us"})
    if scenario == "overlapping":
        eu_at = fault_at + 3.0
        ok &= ~(eu & (t >= eu_at) & (t < eu_at + 4.0))
        events += _fault("kill-eu", "kill-region", "eu-west", eu_at)
        events += json.dumps(
            {"type": "revert", "fault": "kill-region", "target": "us-east", "id": "kill-us",
             "applied_at": fault_at + 8.0, "reverted_at": fault_at + 8.0, "details": {}}
        ) + "\n"  # fmt: skip
        events += _fault("corrupt", "corrupt-model-replica", "us-west", fault_at + 30.0)
    if scenario == "sparse":
        # us canaries stop at the fault; eu has none at all.
        keep = ~((kind == "canary") & ((eu) | (t >= fault_at)))
        t, kind, residency, ok, latency = (
            a[keep] for a in (t, kind, residency, ok, latency)
        )  # fmt: skip
        n = t.size
        us, eu = residency == "us", residency == "eu"
    region = np.where(us, np.where(t < fault_at, "us-east", "us-west"), "eu-west")
    if scenario == "overlapping":
        region = np.where(us & (t >= fault_at + 30.0) & (t < fault_at + 33.0), "us-west", region)
        region = np.where(eu & (rng.random(n) < 0.01), "us-west", region)  # violations
    answered = ok & (kind != "write")
    digest = np.where(rng.random(n) < 0.01, "sha256:bad", "sha256:good")
    writes = kind == "write"
    ordinal = np.zeros(n, dtype=np.int64)
    for name in ("us", "eu"):
        mine = writes & (residency == name)
        ordinal[mine] = np.arange(int(mine.sum()))
    client = np.char.add(residency, np.where(ordinal % 2 == 0, "-w0", "-w1"))
    correct = rng.random(n) > 0.02
    null_ok = rng.random(n) < 0.005
    lost_residency = (rng.random(n) < 0.01) & (scenario == "unsorted")
    columns = {
        "t_start": pa.array(t),
        "latency_ms": pa.array(latency, from_pandas=True),
        "kind": pa.array(kind),
        "ok": pa.array(ok, mask=null_ok),
        "status": pa.array(np.where(ok, 200, np.where(rng.random(n) < 0.5, 0, 503)), pa.int32()),
        "error": pa.array(np.full(n, "boom"), mask=ok),
        # unsorted: 1 % of the rows lost their residency (writes attributed by client)
        "residency": pa.array(residency, mask=lost_residency),
        "region": pa.array(region, mask=~ok),
        "model_digest": pa.array(digest, mask=~answered),
        "score": pa.array(np.full(n, 0.5), mask=~answered),
        "client": pa.array(client, mask=~writes),
        "seq": pa.array(ordinal // 2, mask=~writes),
        "expected": pa.array(np.full(n, 0.5), mask=kind != "canary"),
        "correct": pa.array(correct, mask=~((kind == "canary") & ok)),
    }
    table = pa.table(columns)
    if scenario == "unsorted":
        table = table.take(pa.array(rng.permutation(n)))
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "timeline.parquet", row_group_size=ROW_GROUP)
    if scenario != "no-fault":
        (path / "events.jsonl").write_text(events)
    (path / "load.json").write_text('{"saturated": false}')
    (path / "topology.yaml").write_text(TOPOLOGY)
    return path


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    """The measurements of `doc` without what changes from one measuring to the next."""
    keep = {
        k: v for k, v in doc.items() if k not in ("measured_at", "run_dir", "seconds_to_measure")
    }
    inputs = dict(keep["inputs"])
    inputs["timeline"] = {k: v for k, v in inputs["timeline"].items() if k != "sha256"}
    inputs["topology"] = {k: v for k, v in inputs["topology"].items() if k != "source"}
    # Which platform file was read is provenance, added after the golden runs were taken;
    # the constructed runs have none, and the figures do not depend on it.
    assert inputs.pop("platform", None) is None
    keep["inputs"] = inputs
    out: dict[str, Any] = json.loads(json.dumps(keep))
    return out


def measure_all(out: Path) -> None:
    """Measure every scenario (built under `out`) and write `out/SCENARIO.json`."""
    from probes.measure import Options, measure_run
    from probes.rpo import MemoryWriteStore

    for scenario in SCENARIOS:
        run = build(out / scenario, scenario)
        stores = {j: MemoryWriteStore(_present(run, j)) for j in ("us", "eu")}
        options = Options(topology_path=run / "topology.yaml", expected_digest="sha256:good")
        doc = measure_run(run, options, stores)
        (out / f"{scenario}.json").write_text(json.dumps(figures(doc), indent=1, sort_keys=True))


def _present(run: Path, jurisdiction: str) -> set[str]:
    table = pq.read_table(run / "timeline.parquet", columns=["kind", "residency", "client", "seq"])
    keys = set()
    for kind, res, client, seq in zip(
        *(table[c].to_pylist() for c in table.column_names), strict=True
    ):
        if kind == "write" and res == jurisdiction and client is not None and seq is not None:
            keys.add(f"ev:{client}:{seq}")
    return keys - LOST


if __name__ == "__main__":
    measure_all(Path(sys.argv[1]))
