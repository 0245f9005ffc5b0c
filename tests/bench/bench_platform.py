"""The local platform: cold start, removal, and its own failover times after a region kill."""

from __future__ import annotations

import json
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from infra.local import world
from tests.bench.common import BenchResult

SECTION = "Local platform"
PORTS = {"router": 0, "prometheus": 0, "haproxy_stats": 0}
RUNS = 3
KILLS = 5


def _post(url: str, path: str, body: dict[str, object]) -> tuple[int, str | None]:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), method="POST", headers={"X-Residency": "us"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return response.status, response.headers.get("X-Region")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Region")
    except OSError:
        return 0, None


def _failover(base: Path, url: str, seq: list[int]) -> tuple[float, float]:
    """Kill the US primary; seconds until a prediction and a write succeed elsewhere."""
    primary = world.status(base)["primaries"]["us"]
    record = world.fault("kill-region", {"region": primary}, base=base)
    t_f = record["applied_at"]
    predict = write = None
    deadline = time.time() + 30
    while time.time() < deadline and (predict is None or write is None):
        started = time.time()
        if predict is None:
            code, region = _post(url, "/v1/predict", {"entity_id": "us-1"})
            if code == 200 and region != primary:
                predict = started - t_f
        if write is None:
            seq[0] += 1
            code, region = _post(
                url, "/v1/events", {"client": "bench", "seq": seq[0], "payload": {}}
            )
            if code == 201 and region != primary:
                write = started - t_f
        time.sleep(0.02)
    world.fault("restore-region", {"region": primary}, base=base)
    if predict is None or write is None:
        raise RuntimeError("no failover within 30 s")
    return predict, write


def run() -> list[BenchResult]:
    ups: list[float] = []
    downs: list[float] = []
    predicts: list[float] = []
    writes: list[float] = []
    for attempt in range(RUNS):
        with tempfile.TemporaryDirectory(prefix="gd-bench-") as tmp:
            base = Path(tmp)
            started = time.monotonic()
            info = world.up(base=base, ports=PORTS)
            ups.append(time.monotonic() - started)
            if attempt == 0:
                seq = [0]
                for _ in range(KILLS):
                    p, w = _failover(base, info.urls["router_url"], seq)
                    predicts.append(p)
                    writes.append(w)
                    time.sleep(2)  # let the restored region rejoin the router
            started = time.monotonic()
            world.down(base)
            downs.append(time.monotonic() - started)
    return [
        BenchResult.of(
            SECTION,
            "cold `testbed up` to all regions ready",
            ups,
            "s",
            f"`world.up` wall time, 4 regions, 10 000 entities per jurisdiction, {RUNS} runs",
            "< 20 s",
            20.0,
        ),
        BenchResult.of(
            SECTION,
            "`testbed down`",
            downs,
            "s",
            f"`world.down` wall time until no process of the world is left, {RUNS} runs",
            "< 5 s",
            5.0,
        ),
        BenchResult.of(
            SECTION,
            "predict failover after killing the US primary",
            predicts,
            "s",
            "first 200 answered by another region after the fault's applied_at; "
            f"client polls every 20 ms; {KILLS} kills of the current primary",
            "a few seconds",
        ),
        BenchResult.of(
            SECTION,
            "write failover after killing the US primary",
            writes,
            "s",
            "first 201 acknowledged by the promoted primary's region after "
            f"applied_at; same {KILLS} kills",
            "a few seconds",
        ),
    ]
