"""Accuracy of both RTO instruments against ground truth, with a real Prometheus.

A local HTTP server answers requests and counts its answers the way HAProxy does
(`haproxy_backend_http_responses_total{proxy="jur_us", code=…}`); it is made to answer
503 for known intervals (two outage lengths). A client thread sends requests and keeps
the timeline; a real `prometheus` scrapes the server every second. The `jur_eu` series
simply vanish for a while (a dead target): that must count as an outage, not as "no
errors". Both measured RTOs are compared with the true outage length.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from probes.prometheus import (
    PromClient,
    PrometheusUnavailable,
    compare_rto,
    prometheus_rto_table,
    replication_lag,
)
from probes.rto import RtoParams, rto_table
from probes.rundir import Fault
from probes.timeline import normalise
from tests.integration.prometheus_process import PROMETHEUS, running_prometheus

SCRAPE = 1.0
PARAMS = RtoParams(window_seconds=1.0, threshold=0.99, stability_seconds=4.0, min_requests=5)
US_OUTAGES = (3.0, 5.0)  # seconds: one per fault
EU_ABSENT = 2.0  # the jur_eu series vanish for this long at the first fault

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary needed")


@dataclass
class Router:
    """What the fake router does now: outages (us answers 503) and absences (no eu series)."""

    started: float = field(default_factory=time.time)
    outages: list[tuple[float, float]] = field(default_factory=list)
    absences: list[tuple[float, float]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"2xx": 0, "5xx": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def inside(now: float, spans: list[tuple[float, float]]) -> bool:
        return any(a <= now < b for a, b in spans)

    def answer(self) -> int:
        code = 503 if self.inside(time.time(), self.outages) else 200
        with self.lock:
            self.counts["5xx" if code == 503 else "2xx"] += 1
        return code

    def metrics(self) -> str:
        now = time.time()
        with self.lock:
            us = dict(self.counts)
        lines = [
            f'haproxy_backend_http_responses_total{{proxy="jur_us",code="{code}"}} {n}'
            for code, n in us.items()
        ]
        if not self.inside(now, self.absences):
            eu = int(100 * (now - self.started))  # 100 answers per second, all 2xx
            lines += [
                f'haproxy_backend_http_responses_total{{proxy="jur_eu",code="2xx"}} {eu}',
                'haproxy_backend_http_responses_total{proxy="jur_eu",code="5xx"} 0',
            ]
        lines.append('gameday_replication_lag_seconds{jurisdiction="us",region="us-west"} 0.25')
        return "\n".join(lines) + "\n"


def serve(router: Router) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, code = router.metrics().encode(), 200
            else:
                code = router.answer()
                body = b"{}"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def client(url: str, stop: threading.Event, rows: list[dict[str, Any]]) -> None:
    """Requests every ~10 ms until `stop` (bounded: at most 10 minutes of requests)."""
    for _ in range(60_000):
        if stop.is_set():
            return
        started = time.time()
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        rows.append(
            {
                "t_start": started,
                "latency_ms": (time.time() - started) * 1000,
                "kind": "predict",
                "ok": 200 <= status < 300,
                "status": status,
                "residency": "us",
            }
        )
        time.sleep(0.01)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Router, int]]:
    assert PROMETHEUS is not None
    base = tmp_path_factory.mktemp("prom")
    router = Router()
    server = serve(router)
    target = f"127.0.0.1:{server.server_address[1]}"
    try:
        with running_prometheus(base, "haproxy", target) as url:
            yield url, router, server.server_address[1]
    finally:
        server.shutdown()


def wait_for_first_sample(url: str, timeout: float = 25.0) -> None:
    prom = PromClient(url, timeout=1.0, record=False)  # as the drill's live view polls
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = prom.query('haproxy_backend_http_responses_total{proxy="jur_us"}', time.time())
        except PrometheusUnavailable:
            found = []
        if found:
            assert prom.log == []
            return
        time.sleep(0.25)
    pytest.fail(f"prometheus at {url} held no sample after {timeout} s")


def test_both_instruments_match_the_true_outage(
    prometheus: tuple[str, Router, int], tmp_path: Path
) -> None:
    url, router, port = prometheus
    rows: list[dict[str, Any]] = []
    stop = threading.Event()
    worker = threading.Thread(target=client, args=(f"http://127.0.0.1:{port}/", stop, rows))
    worker.start()
    try:
        wait_for_first_sample(url)
        time.sleep(3.0)  # baseline
        faults = []
        for n, outage in enumerate(US_OUTAGES):
            t_f = time.time()
            router.outages.append((t_f, t_f + outage))
            if n == 0:
                router.absences.append((t_f, t_f + EU_ABSENT))
            faults.append(Fault(f"f{n}", "kill-region", "us-east", t_f))
            time.sleep(outage + PARAMS.stability_seconds + 2.5)
    finally:
        stop.set()
        worker.join(timeout=5)
    time.sleep(1.5)  # one more scrape after the last request
    frame = normalise(pd.DataFrame(rows), columns=())
    until = float(frame["t_start"].iloc[-1])

    client_rows = {
        (e["fault_id"], e["residency"]): e
        for e in rto_table(frame, faults, PARAMS, until)
        if e["kind"] == "all"
    }
    prom = PromClient(url, timeout=5.0)
    prom_rows = {
        (e["fault_id"], e["jurisdiction"]): e
        for e in prometheus_rto_table(prom, faults, until, PARAMS, SCRAPE, ("us", "eu"))
    }
    assert len(prom.log) == len(faults)  # one stored query per fault, for the run dir
    report = []
    for fault, outage in zip(faults, US_OUTAGES, strict=True):
        mine, theirs = client_rows[fault.id, "us"], prom_rows[fault.id, "us"]
        report.append((outage, mine["rto_seconds"], theirs["rto_seconds"]))
        assert mine["status"] == theirs["status"] == "ok", (mine, theirs)
        assert mine["recovered"] and theirs["recovered"], (mine, theirs)
        # client side: within two request gaps of the truth
        gap = float(mine["uncertainty_seconds"])
        assert abs(mine["rto_seconds"] - outage) <= 2 * gap + 0.02, report
        # Prometheus side: 0 to 1 scrape interval late (the stated bias), plus jitter
        assert -0.1 <= theirs["rto_seconds"] - outage <= SCRAPE + 0.25, report
        assert theirs["queries"] and "[" in theirs["queries"][0]
        assert compare_rto(theirs, mine, SCRAPE)["instrumentation_mismatch"] is False
    print("outage s, client RTO s, Prometheus RTO s:", report)
    eu = prom_rows["f0", "eu"]
    assert eu["impact"] is True, eu  # vanished series are an outage, not "no errors"
    assert eu["missing_intervals"] >= 1
    assert -0.1 <= eu["rto_seconds"] - EU_ABSENT <= SCRAPE + 0.25, eu
    assert prom_rows["f1", "eu"]["impact"] is False

    # An EU fault recorded 2 s after f0 does not end f0's US observation, on either
    # side, once the topology says where each fault struck (without it, it would: the
    # US figures of f0 would be no-data, their observation too short).
    eu_fault = Fault("eu", "kill-region", "eu-west", faults[0].applied_at + 2.0)
    mixed = sorted([*faults, eu_fault], key=lambda f: f.applied_at)
    regions = {"us-east": "us", "eu-west": "eu"}
    mixed_prom = {
        (e["fault_id"], e["jurisdiction"]): e
        for e in prometheus_rto_table(
            prom, mixed, until, PARAMS, SCRAPE, ("us", "eu"), region_jurisdiction=regions
        )
    }
    mixed_client = {
        (e["fault_id"], e["residency"]): e
        for e in rto_table(frame, mixed, PARAMS, until, regions)
        if e["kind"] == "all"
    }
    for key in (("f0", "us"), ("f1", "us")):
        assert mixed_prom[key]["rto_seconds"] == prom_rows[key]["rto_seconds"], key
        assert mixed_client[key]["rto_seconds"] == client_rows[key]["rto_seconds"], key
    assert mixed_prom["f0", "eu"]["observation_ended_by"] == "eu"
    blind = prometheus_rto_table(prom, mixed, until, PARAMS, SCRAPE, ("us", "eu"))
    assert (
        next(e for e in blind if (e["fault_id"], e["jurisdiction"]) == ("f0", "us"))["status"]
        == "no-data"
    )

    promql, lags = replication_lag(prom, faults[0].applied_at)
    assert lags == {"us": 0.25}
    assert "max_over_time" in promql
    prom.close()
