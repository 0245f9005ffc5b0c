"""Load generator: what the timeline recorder costs, side by side against one endpoint.

One stub server (`loadgen.stub`, its own process) serves every run. One Locust process
with PredictUsers sending flat out (no wait), run alternately without any request
listener ("plain": what stock Locust does) and with the timeline recorder, three runs
each; then `--workers 2` through the runner. Requests/s come from Locust's own stats
(requests over the time between the first and the last request); CPU per request from
/proc while the load ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from loadgen.cpu import CpuSampler
from loadgen.profile import KindMix, Profile
from loadgen.runner import LoadSettings
from loadgen.runner import run as run_load
from loadgen.stub import running_stub
from tests.bench.common import BenchResult

SECTION = "Load generator"
USERS = 10
SECONDS = 5
RUNS = 3
LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadgen" / "locustfile.py"
PROFILE = Profile(
    users=USERS,
    duration_s=SECONDS,
    mix={"predict": KindMix(1, 0.0), "write": KindMix(0, 0.0), "canary": KindMix(0, 0.0)},
)


@dataclass(frozen=True)
class _Run:
    rps: float
    cpu_us_per_request: float
    requests: int


def _one_process(url: str, work: Path, record: bool) -> _Run:
    """One headless Locust process for SECONDS, with or without the recorder."""
    work.mkdir(parents=True)
    (work / "profile.json").write_text(json.dumps(PROFILE.to_dict(with_golden_scores=True)))
    argv = [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url),
        *("-u", str(USERS), "-r", str(USERS), "-t", f"{SECONDS}s", "--only-summary"),
        *("--exit-code-on-error", "0", "--load-profile", str(work / "profile.json")),
        *("--json-file", str(work / "stats"), "--progress-file", str(work / "progress.json")),
    ]
    if record:
        argv += ["--timeline", str(work / "timeline.parquet")]
    sampler = CpuSampler()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEDAY_")}
    with (work / "locust.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + SECONDS + 30
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    state = json.loads((work / "progress.json").read_text()).get("state")
                except (OSError, ValueError):
                    state = None
                sampler.sample({"locust": proc.pid}, state == "running")
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    stats = json.loads((work / "stats.json").read_text())
    entry = next(e for e in stats if e["name"] == "predict")
    span = entry["last_request_timestamp"] - entry["start_time"]
    rps = entry["num_requests"] / span
    cpu = sampler.summary().per_process["locust"]["mean_percent"]
    return _Run(rps, cpu / 100.0 / rps * 1e6, entry["num_requests"])


def run() -> list[BenchResult]:
    plain: list[_Run] = []
    recorded: list[_Run] = []
    workers: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as tmp, running_stub() as url:
        base = Path(tmp)
        for i in range(RUNS):  # interleaved, so drift hits both alike
            plain.append(_one_process(url, base / f"plain-{i}", record=False))
            recorded.append(_one_process(url, base / f"recorded-{i}", record=True))
        for i in range(RUNS):
            result = run_load(
                LoadSettings(host=url, profile=PROFILE, workers=2), base / f"workers-{i}"
            )
            workers.append(result.rps)
    overhead = [100.0 * (1.0 - r.rps / p.rps) for p, r in zip(plain, recorded, strict=True)]
    cpu_overhead = [
        100.0 * (r.cpu_us_per_request / p.cpu_us_per_request - 1.0)
        for p, r in zip(plain, recorded, strict=True)
    ]
    how = (
        f"{USERS} PredictUsers flat out for {SECONDS} s against loadgen.stub on 127.0.0.1, "
        "one Locust process; requests/s from Locust's stats"
    )
    return [
        BenchResult.of(
            SECTION,
            "requests/s, plain FastHttpUser (no listener)",
            [p.rps for p in plain],
            "req/s",
            how,
        ),
        BenchResult.of(
            SECTION,
            "requests/s, same user with the timeline recorder",
            [r.rps for r in recorded],
            "req/s",
            how + "; interleaved with the plain runs",
        ),
        BenchResult.of(
            SECTION,
            "recorder overhead (throughput)",
            overhead,
            "%",
            "1 - recorder/plain requests/s, per interleaved pair",
            target="< 10 %",
            limit=10.0,
        ),
        BenchResult.of(
            SECTION,
            "generator CPU per request, plain",
            [p.cpu_us_per_request for p in plain],
            "µs",
            "Locust process user+system CPU (/proc, while running) / requests",
        ),
        BenchResult.of(
            SECTION,
            "generator CPU per request, with recorder",
            [r.cpu_us_per_request for r in recorded],
            "µs",
            "as above; the recorder's cost when the server is the bottleneck",
        ),
        BenchResult.of(
            SECTION,
            "recorder overhead (CPU per request)",
            cpu_overhead,
            "%",
            "recorder/plain CPU per request - 1, per interleaved pair",
            target="< 10 %",
            limit=10.0,
        ),
        BenchResult.of(
            SECTION,
            "requests/s with --workers 2 (recorder on)",
            workers,
            "req/s",
            f"gameday load runner, 1 master + 2 workers, {USERS} users, {SECONDS} s, merged "
            f"timeline rows over its time span; {os.cpu_count()} cores shared with the server",
        ),
    ]
