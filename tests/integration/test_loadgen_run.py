"""Real Locust against a real local HTTP server (loadgen.stub): the timeline is complete,
typed as documented, and says what the clients saw."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadgen.profile import KindMix, Profile
from loadgen.runner import LoadSettings, Progress, run
from loadgen.stub import MODEL_DIGEST, REGIONS, running_stub, score_of
from loadgen.timeline import SCHEMA, read_timeline
from tests.conftest import stop_processes
from tests.integration.prometheus_process import free_port

REPO = Path(__file__).resolve().parents[2]
# One wrong canary per jurisdiction: a canary user sticks to one residency.
WRONG = ("us-3", "eu-1")
GOLDEN = {e: score_of(e) for e in ("us-3", "us-4", "eu-1")}
FAIL_EVERY = 13


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    with running_stub(
        *(a for w in WRONG for a in ("--wrong-canary", w)), "--fail-every", str(FAIL_EVERY)
    ) as url:
        yield url


def _profile(users: int, duration: float, **kwargs: Any) -> Profile:
    return Profile(
        users=users,
        duration_s=duration,
        mix={"predict": KindMix(3, 20.0), "write": KindMix(2, 10.0), "canary": KindMix(1, 10.0)},
        golden_scores=dict(GOLDEN),
        **kwargs,
    )


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(
        tuple(row.values()) for row in table.to_pylist()
    )  # None sorts only among equal prefixes here: t_start is unique per row in practice


def _check_writes_have_no_gaps(table: pa.Table) -> int:
    writes = table.filter(pa.compute.equal(table.column("kind"), "write"))
    seqs: dict[str, list[int]] = {}
    for client, seq in zip(
        writes.column("client").to_pylist(), writes.column("seq").to_pylist(), strict=True
    ):
        seqs.setdefault(client, []).append(seq)
    for client, got in seqs.items():
        assert sorted(got) == list(range(1, len(got) + 1)), client
    return len(seqs)


def test_one_process_records_every_request_as_locust_counted_it(stub: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    sd_file = tmp_path / "sd" / "loadgen.json"
    seen: dict[str, Any] = {}

    def progress(p: Progress) -> None:
        # during the run: the counters are served and the file_sd target is listed
        if p.requests and "metrics" not in seen:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as answer:
                seen["metrics"] = answer.read().decode()
            seen["sd"] = json.loads(sd_file.read_text())

    settings = LoadSettings(
        host=stub,
        profile=_profile(users=6, duration=3.0),
        metrics_port=metrics_port,
        prometheus_sd_file=sd_file,
    )
    result = run(settings, tmp_path / "load", progress=progress, progress_every_s=1.0)

    table = pq.read_table(result.timeline)
    assert table.schema.equals(SCHEMA)
    assert table.num_rows == result.requests == result.locust_requests
    assert table.num_rows > 50
    summary = json.loads(result.load_json.read_text())
    assert summary["failures"] == summary["locust_failures"] > 0
    t_start = table.column("t_start").to_pylist()
    assert t_start == sorted(t_start)
    assert set(table.column("kind").to_pylist()) == {"predict", "write", "canary"}

    rows = table.to_pylist()
    for row in rows:
        assert row["ok"] == (row["status"] in (200, 201)), row
        assert (row["error"] is None) == row["ok"], row
        assert row["region"] == REGIONS[row["residency"]], row
        if row["status"] == 503:
            assert row["error"].startswith("LocustBadStatusCode"), row
            # ...and what the answer said, read from the body Locust received
            assert row["error"].endswith("; answer: unavailable (on purpose)"), row
    answered = [r for r in rows if r["kind"] != "write" and r["ok"]]
    assert all(r["model_digest"] == MODEL_DIGEST for r in answered)
    # Only canaries' answers are read (a score to check); predictions' bodies are not.
    assert all((r["score"] is not None) == (r["kind"] == "canary") for r in answered)
    assert all(r["client"] is None and r["seq"] is None for r in rows if r["kind"] != "write")

    assert _check_writes_have_no_gaps(table) == 2  # two writer users, one client each
    writes = [r for r in rows if r["kind"] == "write"]
    assert all(r["score"] is None and r["expected"] is None for r in writes)

    canaries = [r for r in rows if r["kind"] == "canary"]
    assert {r["expected"] for r in canaries} <= set(GOLDEN.values())
    for r in canaries:
        if not r["ok"]:
            assert r["correct"] is None
        else:
            assert r["correct"] == (r["expected"] not in {GOLDEN[w] for w in WRONG}), r
    assert result.wrong_answers == sum(r["correct"] is False for r in canaries) > 0

    assert set(summary) >= {
        "version", "host", "profile", "users", "duration_s", "workers", "started_at",
        "ended_at", "requests", "failures", "by_kind", "cpu_max_percent", "cpu_mean_percent",
        "saturated", "p50_ms", "p95_ms", "p99_ms", "rps",
    }  # fmt: skip
    assert summary["by_kind"] == {
        kind: sum(r["kind"] == kind for r in rows) for kind in ("predict", "write", "canary")
    }
    assert summary["started_at"] < t_start[0] and t_start[-1] < summary["ended_at"]
    assert summary["profile"]["golden_entities"] == 3
    assert 0 < summary["cpu_max_percent"] <= 100 * 2 and summary["cpu_samples"] > 0

    assert 'gameday_load_requests_total{kind="predict",outcome="ok"' in seen["metrics"]
    assert seen["sd"] == [
        {
            "targets": [f"127.0.0.1:{metrics_port}"],
            "labels": {"job": "gameday-loadgen", "gameday_load_dir": str(tmp_path / "load")},
        }
    ]
    assert not sd_file.exists()  # removed with the generator
    assert not (tmp_path / "load" / "loadgen" / "parts").exists()


def test_two_workers_merge_into_the_union_of_their_parts(stub: str, tmp_path: Path) -> None:
    settings = LoadSettings(
        host=stub, profile=_profile(users=6, duration=3.0), workers=2, keep_parts=True
    )
    result = run(settings, tmp_path / "load")

    parts = sorted((tmp_path / "load" / "loadgen" / "parts").glob("*.parquet"))
    assert len(parts) == 2
    part_tables = [read_timeline(p) for p in parts]
    assert all(t.num_rows > 0 for t in part_tables)  # both workers sent load
    merged = read_timeline(result.timeline)
    assert merged.num_rows == sum(t.num_rows for t in part_tables) == result.locust_requests
    assert _rows(merged) == _rows(pa.concat_tables(part_tables))
    t_start = merged.column("t_start").to_pylist()
    assert t_start == sorted(t_start)
    assert _check_writes_have_no_gaps(merged) == 2
    assert result.summary["workers"] == 2
    assert set(result.summary["cpu_per_process"]) == {"master", "worker-1", "worker-2"}


RUN_UNTIL_SIGTERM = """
import json, sys
from pathlib import Path
from loadgen.profile import KindMix, Profile
from loadgen.runner import LoadSettings, run
profile = Profile(
    shape="step", users=4, duration_s=60.0, step_users=2, step_seconds=1.0,
    mix={"predict": KindMix(1, 20.0), "write": KindMix(1, 20.0), "canary": KindMix(0, 1.0)},
)
settings = LoadSettings(
    host=sys.argv[1], profile=profile, workers=int(sys.argv[3]), batch_rows=10**6,
    batch_seconds=600,
)
result = run(settings, Path(sys.argv[2]))
print(json.dumps({"interrupted": result.interrupted, "requests": result.requests}))
"""


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "two-workers"])
def test_sigterm_stops_the_run_and_the_last_batch_is_written(
    stub: str, tmp_path: Path, workers: int
) -> None:
    out = tmp_path / "load"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_UNTIL_SIGTERM, stub, str(out), str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 40
        progress = out / "loadgen" / "progress.json"
        requests = 0
        while time.monotonic() < deadline and requests < 40:
            time.sleep(0.25)
            try:
                requests = json.loads(progress.read_text())["requests"]
            except (OSError, ValueError):
                continue
        assert requests >= 40, "the load did not start"
        # batches of 10**6 rows or 600 s: nothing is on disk yet, everything is in memory
        assert not list((out / "loadgen").rglob("*.parquet"))
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    reported = json.loads(stdout.strip().splitlines()[-1])
    assert reported["interrupted"] == "SIGTERM"
    table = read_timeline(out / "timeline.parquet")
    summary = json.loads((out / "load.json").read_text())
    assert table.num_rows == reported["requests"] == summary["locust_requests"] >= 40
    assert summary["interrupted"] == "SIGTERM"
    assert _check_writes_have_no_gaps(table) >= 1
    log = (out / "loadgen" / ("master.log" if workers else "locust.log")).read_text()
    assert "Shape test updating to 2 users" in log  # the step shape: 2 users, then 4
    assert "Shape test updating to 4 users" in log


def _locust() -> str:
    return str(Path(sys.executable).with_name("locust"))


def test_the_locustfile_runs_on_its_own_headless(stub: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(_locust(), "-f", str(REPO / "loadgen" / "locustfile.py"), "--headless"),
            *("--host", stub, "-u", "3", "-r", "3", "-t", "2s", "--exit-code-on-error", "0"),
            *("--only-summary", "--timeline", "t.parquet", "--json-file", "stats"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("GAMEDAY_")},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    table = read_timeline(tmp_path / "t.parquet")
    assert table.num_rows == sum(e["num_requests"] for e in stats) > 0
    assert {e["name"] for e in stats} <= {"predict", "write"}  # no golden scores: no canaries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json", "t.parquet"]


def test_the_locustfile_serves_the_web_ui(stub: str, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            *(_locust(), "-f", str(REPO / "loadgen" / "locustfile.py"), "--host", stub),
            *("--web-host", "127.0.0.1", "--web-port", str(port)),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        page = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not page:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                    page = answer.read().decode()
            except OSError:
                time.sleep(0.3)
        assert "locust" in page.lower()
        assert proc.poll() is None
    finally:
        stop_processes([proc])
    assert list(tmp_path.iterdir()) == []  # no --timeline: nothing recorded
