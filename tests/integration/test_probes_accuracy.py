"""Accuracy of both RTO instruments against ground truth, with the real load generator.

A local HTTP server (`tests/integration/outage_server.py`) serves the platform's API and
answers 503 to every `X-Residency: us` request arriving in `[t0, t0 + D)` on its own
wall clock. The real load generator (`loadgen.runner.run`: Locust, predict and write
users, all `us`, about 120 requests/s) runs against it and writes its run directory
(`timeline.parquet`, `load.json`); the test adds `events.jsonl` (fault applied at `t0`,
reverted at `t0 + D`). A real `prometheus` scrapes the server's router-style counters
(`haproxy_backend_http_responses_total{proxy="jur_us"|"jur_eu", code=...}`) every
second. `probes.measure.measure_run` measures the run as `gameday measure` does. The
true RTO is D by construction; D = 2, 4 and 6 s.

- Client side (per kind and all kinds): |RTO - D| at most two request gaps, both the
  largest gap within 0.25 s of t0 + D computed here from the timeline and the probe's
  own `uncertainty_seconds` (itself checked against the timeline), plus the one-way
  delay of a request (bounded by the largest latency there): the server decides by
  arrival time, the clients see send times. The users are in lockstep (bursts of 6
  requests about every 50 ms), so a gap here is about 50 ms.
- Prometheus side: its stated bias is "0 to 1 scrape interval late", so RTO - D must lie
  in [0, 1 scrape interval], widened by 0.1 s for scrape-timestamp jitter and for a
  scrape falling between the last failure and t0 + D.
- `jur_eu`, whose counters stand still (no eu traffic), must be `no-data`, never `ok`.

The stability period is 3 s instead of the default 10 s (client and Prometheus side),
to keep the runs short; otherwise the definition is the default one (W = 1 s, S = 0.99,
min_requests = 5). One Prometheus and one server serve every outage length.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from infra.types import FaultRecord, append_event
from loadgen.profile import KindMix, Profile
from loadgen.runner import LoadSettings, run
from probes.measure import Options, measure_run
from probes.rto import RtoParams
from probes.timeline import read_timeline
from tests.integration.outage_server import OutageServer
from tests.integration.prometheus_process import PROMETHEUS, running_prometheus

SCRAPE = 1.0
PARAMS = RtoParams(window_seconds=1.0, threshold=0.99, stability_seconds=3.0, min_requests=5)
OUTAGES = (2.0, 4.0, 6.0)  # seconds: the true RTOs
#: 6 users at 20 requests/s each, about 120/s in all. (Users paced at a constant
#: throughput fall into lockstep: the timeline holds a burst of 6 about every 50 ms, so
#: a "request gap" here is about 50 ms; the tolerance is computed from the timeline.)
USERS, RATE = 6, 20.0
BASELINE = 3.0  # healthy load before the outage (after the first request)
#: after recovery: stability + one window must be observed, plus a margin
TAIL = PARAMS.stability_seconds + PARAMS.window_seconds + 2.0
NEAR = 0.25  # s: the neighbourhood of t0 + D whose request gaps set the client tolerance
#: a Prometheus RTO may be off its stated bias [0, 1 scrape] by this much (see docstring)
PROM_SLACK = 0.1

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary needed")

RESULTS: dict[float, dict[str, Any]] = {}


def _has_sample(url: str) -> bool:
    query = urllib.parse.urlencode(
        {"query": 'haproxy_backend_http_responses_total{proxy="jur_us"}'}
    )
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=1.0) as answer:
            return bool(json.loads(answer.read())["data"]["result"])
    except (OSError, ValueError, KeyError):
        return False


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OutageServer, str]]:
    """The failing server and a Prometheus scraping it every second (its first sample in)."""
    assert PROMETHEUS is not None
    base = tmp_path_factory.mktemp("prom")
    server = OutageServer()
    server.start()
    prometheus = running_prometheus(base, "router", server.target, SCRAPE)
    try:
        with prometheus as url:
            for _ in range(120):  # bounded: 30 s
                if _has_sample(url):
                    break
                time.sleep(0.25)
            if not _has_sample(url):
                pytest.fail(f"prometheus at {url} held no sample (see its log in {base})")
            yield server, url
    finally:
        server.stop()
        if RESULTS:
            print("\nD s | client RTO s (gap s) | Prometheus RTO s")
            for outage, r in sorted(RESULTS.items()):
                print(f"{outage:g} | {r['client']} ({r['gap']}) | {r['prometheus']}")


def _near(
    starts: npt.NDArray[np.float64], latency_ms: npt.NDArray[np.float64], at: float
) -> tuple[float, float]:
    """The client's resolution around `at`: the largest gap between consecutive request
    starts within `at` ± NEAR, and the largest latency (s) of those requests.

    A request started before `at` is answered 200 only if it *arrived* after `at`, so the
    clients can see the server's recovery early by up to a request's one-way delay, which
    its latency bounds.
    """
    lo = int(np.searchsorted(starts, at - NEAR, side="left"))
    hi = int(np.searchsorted(starts, at + NEAR, side="right"))
    assert hi - lo >= 3, "too few requests around the recovery"
    return float(np.diff(starts[lo:hi]).max()), float(latency_ms[lo:hi].max()) / 1000


def _check_client(entry: dict[str, Any], rows: pd.DataFrame, outage: float, t_end: float) -> float:
    """Client-side RTO within two request gaps of the truth; returns the gap."""
    assert entry["status"] == "ok", entry
    assert entry["impact"] is True and entry["recovered"] is True, entry
    starts = rows["t_start"].to_numpy(dtype=np.float64)
    gap, delay = _near(starts, rows["latency_ms"].to_numpy(dtype=np.float64), t_end)
    measured = float(entry["rto_seconds"])
    error = measured - outage
    assert abs(error) <= 2 * gap + delay, (
        f"{entry['kind']}/{entry['residency']}: RTO {measured:.4f} s for a true {outage:g} s "
        f"(off by {error:+.4f} s; two request gaps around t0 + D = {2 * gap:.4f} s, "
        f"one-way delay <= {delay:.4f} s)"
    )
    # The probe's uncertainty is the larger gap next to its recovery: redo it, and the
    # truth must lie within it (give or take the one-way delay).
    rec = float(entry["recovered_at"])
    k = int(np.searchsorted(starts, rec - 5e-7))
    assert k > 0 and abs(starts[k] - rec) < 2e-6, "recovered_at is not a request start"
    after = starts[k + 1] if k + 1 < starts.size else rec
    uncertainty = float(entry["uncertainty_seconds"])
    assert uncertainty == pytest.approx(max(rec - starts[k - 1], after - rec), abs=2e-6), entry
    assert abs(error) <= 2 * uncertainty + delay, entry
    return gap


@pytest.mark.parametrize("outage", OUTAGES, ids=[f"{d:g}s" for d in OUTAGES])
def test_measured_rto_matches_the_true_outage(
    world: tuple[OutageServer, str], tmp_path: Path, outage: float
) -> None:
    server, prom_url = world
    server.arm(BASELINE, outage, residency="us")
    profile = Profile(
        users=USERS,
        duration_s=BASELINE + outage + TAIL,
        mix={"predict": KindMix(4, RATE), "write": KindMix(2, RATE), "canary": KindMix(0, 0.0)},
        residency={"us": 1.0, "eu": 0.0},  # users draw their residency once: all us
    )
    run_dir = tmp_path / "run"
    result = run(LoadSettings(host=server.url, profile=profile), run_dir)
    assert not result.saturated, f"load generator saturated: {result.summary['cpu_max_percent']}%"

    window = server.outage
    assert window is not None, "the server saw no request"
    t0, true_end = window
    assert true_end - t0 == pytest.approx(outage)
    append_event(
        run_dir / "events.jsonl",
        FaultRecord(
            "fault", "outage-503", "us-east", "f1", applied_at=t0, details={"jurisdiction": "us"}
        ),
    )
    append_event(
        run_dir / "events.jsonl",
        FaultRecord(
            "revert",
            "outage-503",
            "us-east",
            "r1",
            reverted_at=true_end,
            details={"fault_ids": ["f1"]},
        ),
    )

    # The server did what it was told: 503 exactly to us requests arriving in [t0, t0 + D).
    answered = list(server.answered)
    for a in answered:
        inside = a.residency == "us" and t0 <= a.at < true_end
        assert (a.status == 503) == inside, a
    failed_on_server = sum(a.status == 503 for a in answered)
    assert failed_on_server > 20 * outage  # tens per second: the outage was seen

    frame = read_timeline(run_dir / "timeline.parquet", columns=())
    assert int((~frame["ok"]).sum()) == failed_on_server  # every 503 is in the timeline
    until = float(frame["t_start"].iloc[-1])
    assert until >= true_end + TAIL - 1.0, "load ended too soon after recovery"
    time.sleep(max(0.0, until + 1.6 * SCRAPE - time.time()))  # a scrape after the end

    doc = measure_run(run_dir, Options(prometheus_url=prom_url, rto=PARAMS, scrape_interval=SCRAPE))
    assert doc["inputs"]["events"]["faults"] == 1
    assert doc["load"] == {"saturated": False, "valid": True}
    rto = {(e["kind"], e["residency"]): e for e in doc["rto"]}
    us = frame[frame["residency"] == "us"]

    # --- client side, per traffic kind (those the us users sent) and all together
    gap = _check_client(rto["all", "us"], us, outage, true_end)
    _check_client(rto["predict", "us"], us[us["kind"] == "predict"], outage, true_end)
    _check_client(rto["write", "us"], us[us["kind"] == "write"], outage, true_end)
    client = rto["all", "us"]
    starts, ok = us["t_start"].to_numpy(), us["ok"].to_numpy()
    ends = starts + us["latency_ms"].to_numpy() / 1000
    # A request sent just before t0 may arrive after it and fail: it is not "after the
    # fault" for the clients, but it must have been answered after t0.
    assert np.all(ends[~ok & (starts < t0)] >= t0)
    assert client["failed_after_fault"] == int(np.sum(~ok & (starts >= t0)))
    # A forward window with at most (1 - S) failures is healthy: the last failures of the
    # outage may fall at or after `recovered_at` (forgiven; not in `failed`), no more
    # than (1 - S) of the requests of the window at `recovered_at`.
    rec = float(client["recovered_at"])
    forgiven = int(np.sum(~ok & (starts >= rec - 5e-7)))
    in_window = int(np.sum((starts >= rec - 5e-7) & (starts < rec + PARAMS.window_seconds)))
    assert forgiven <= (1 - PARAMS.threshold) * in_window, (forgiven, in_window)
    assert client["failed"] == client["failed_after_fault"] - forgiven
    # One clean outage: brownout = RTO (the span from t0 to the first request after it
    # included), less the last request gaps before recovery whose windows were already
    # healthy (their failures a share below 1 - S): at most the forgiven failures' span.
    last_failures = starts[~ok & (starts >= t0)]
    healthy_tail = (
        rec - float(last_failures[-1])
        if forgiven == 0
        else rec - float(last_failures[-forgiven - 1])
    )
    assert 0 <= client["rto_seconds"] - client["brownout_seconds"] <= healthy_tail + 1e-6, client
    assert client["fault_at"] == pytest.approx(t0, abs=1e-6)

    # --- Prometheus side: 0 to 1 scrape interval late (its stated bias), plus jitter
    prom = {e["jurisdiction"]: e for e in doc["rto_prometheus"]}
    mine = prom["us"]
    assert mine["status"] == "ok", mine
    assert mine["impact"] is True and mine["recovered"] is True, mine
    assert isinstance(mine["bias"], str) and mine["bias"], mine  # the bias is stated
    late = float(mine["rto_seconds"]) - outage
    assert -PROM_SLACK <= late <= SCRAPE + PROM_SLACK, (
        f"Prometheus RTO {mine['rto_seconds']} s for a true {outage:g} s "
        f"(off by {late:+.3f} s; stated bias 0..{SCRAPE:g} s, slack {PROM_SLACK} s)"
    )
    assert mine["missing_intervals"] == 0, mine
    assert mine["queries"] and "[" in mine["queries"][0] and "rate(" not in mine["queries"][0]
    assert mine["instrumentation_mismatch"] is False, mine
    # jur_eu answered nothing: its counters stand still, which proves nothing (never "ok")
    assert prom["eu"]["status"] == "no-data", prom["eu"]

    RESULTS[outage] = {
        "client": client["rto_seconds"],
        "gap": round(gap, 4),
        "uncertainty": client["uncertainty_seconds"],
        "prometheus": mine["rto_seconds"],
        "rps": result.rps,
        "cpu_max_percent": result.cpu_max_percent,
    }
    print(f"D={outage:g}s", RESULTS[outage])
