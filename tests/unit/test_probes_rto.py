"""Client-side RTO on constructed timelines with exactly known answers.

Requests start every 0.125 s (8 per 1 s window; a binary fraction, so every time
below is exact in float64) from T0 to T0 + 59.875; the fault is at T0 + 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from probes.rto import (
    RtoParams,
    client_rto,
    coverage,
    earliest_stable,
    rto_of,
    rto_table,
    window_health,
)
from probes.rundir import Fault
from probes.timeline import normalise

T0 = 1_700_000_000.0
DT = 0.125
FAULT = T0 + 10.0
END = T0 + 59.875


def stream(
    fails: list[tuple[float, float]], dt: float = DT, seconds: float = 60.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Request starts T0, T0+dt, …; failing when the offset lies in one of `fails`."""
    offsets = np.arange(0, int(seconds / dt)) * dt
    ok = np.ones(offsets.size, dtype=bool)
    for start, end in fails:
        ok &= ~((offsets >= start) & (offsets < end))
    return T0 + offsets, ok, np.full(offsets.size, 10.0)


def measure(fails: list[tuple[float, float]], **kwargs: Any) -> dict[str, Any]:
    starts, ok, latency = stream(fails, **kwargs)
    return rto_of(starts, ok, latency, FAULT, float(starts[-1]), RtoParams())


@dataclass(frozen=True)
class Case:
    fails: list[tuple[float, float]]
    impact: bool
    recovered: bool
    rto: float | None
    failed: int
    brownout: float
    last_failure: float | None
    uncertainty: float | None


CASES = {
    "clean-outage": Case([(10, 15)], True, True, 5.0, 40, 5.0, 14.875, 0.125),
    # Fails 10-12, works 12-14, fails 14-15: the good spell at 12 is not stable.
    # Unhealthy windows: starts in [10, 12), [13.125, 14) (they reach the failure
    # at 14) and [14, 15): 2 + 0.875 + 1 = 3.875 s of brownout.
    "flapping-recovery": Case([(10, 12), (14, 15)], True, True, 5.0, 24, 3.875, 14.875, 0.125),
    "no-impact": Case([], False, True, 0.0, 0, 0.0, None, 0.125),
    # Failures only before the fault: not this fault's impact.
    "failures-before-fault-only": Case([(5, 9)], False, True, 0.0, 0, 0.0, None, 0.125),
    # Brownout of a never-recovered stream runs to the last judged window (until - W).
    "never-recovered": Case([(10, 60)], True, False, None, 400, 48.875, 59.875, None),
    # Recovers at 48.875; its stability ends at 58.875 = until - W: just observable.
    "recovery-at-the-observable-limit": Case(
        [(10, 48.875)], True, True, 38.875, 311, 38.875, 48.75, 0.125
    ),
    # Recovers at 49: stability would need windows beyond the end of the timeline.
    "outage-at-the-very-end": Case([(10, 49)], True, False, None, 312, 39.0, 48.875, None),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rto_exact_answers(case: Case) -> None:
    result = measure(case.fails)
    assert result["status"] == "ok"
    assert result["impact"] is case.impact
    assert result["recovered"] is case.recovered
    assert result["rto_seconds"] == case.rto
    assert result["failed"] == case.failed
    assert result["brownout_seconds"] == pytest.approx(case.brownout, abs=1e-6)
    expected_last = None if case.last_failure is None else T0 + case.last_failure
    assert result["last_failure_at"] == expected_last
    assert result["uncertainty_seconds"] == case.uncertainty
    if case.recovered and case.rto is not None:
        assert result["recovered_at"] == pytest.approx(FAULT + case.rto, abs=1e-6)
    assert result["inputs"] == {
        "window_seconds": 1.0,
        "threshold": 0.99,
        "stability_seconds": 10.0,
        "min_requests": 5,
        "requests": 480,
    }


def test_clean_outage_reports_onset_and_latency() -> None:
    result = measure([(10, 15)])
    assert result["impact_onset_at"] == FAULT
    assert result["failed_after_fault"] == 40
    assert result["latency_ms"]["p50"] == 10.0
    assert result["latency_ms"]["requests"] == 399  # [t_f, until): 10.0 … 59.75
    assert result["unhealthy_windows"] == {"below_threshold": 40, "too_few_requests": 0}
    assert (result["relapses"], result["failed_after_recovery"]) == ([], 0)
    assert (result["unobserved_seconds"], result["unobserved_before_recovery_seconds"]) == (0, 0)


def test_sparse_errors_below_the_threshold_are_not_an_outage() -> None:
    # 128 requests per window; one failure every 2 s: r = 127/128 = 0.992 >= 0.99.
    dt = 1 / 128
    fails = [(10.5 + 2 * k, 10.5 + 2 * k + dt) for k in range(20)]
    result = measure(fails, dt=dt)
    assert result["status"] == "ok"
    assert (result["impact"], result["rto_seconds"], result["failed"]) == (False, 0.0, 0)
    assert result["failed_after_fault"] == 20
    assert result["impact_onset_at"] == T0 + 10.5


def test_two_failures_in_one_window_break_the_threshold() -> None:
    dt = 1 / 128
    # 126/128 = 0.984 < 0.99 for the windows holding both (starts in (19.5, 20.0]).
    result = measure([(20.0, 20.0 + dt), (20.5, 20.5 + dt)], dt=dt)
    assert result["impact"] is True
    assert result["rto_seconds"] == pytest.approx(10.0 + dt)
    assert (result["failed"], result["failed_after_fault"]) == (1, 2)


@pytest.mark.parametrize(
    ("dt", "seconds", "fault", "reason"),
    [
        (0.5, 60.0, FAULT, "min_requests"),
        (DT, 60.0, T0 + 55.0, "shorter than stability"),
        (DT, 9.0, FAULT, "no request started at or after the fault"),
    ],
    ids=["too-few-requests-per-window", "observation-too-short", "no-request-after-fault"],
)
def test_no_data(dt: float, seconds: float, fault: float, reason: str) -> None:
    starts, ok, latency = stream([], dt=dt, seconds=seconds)
    result = rto_of(starts, ok, latency, fault, T0 + 59.875, RtoParams())
    assert result["status"] == "no-data"
    assert reason in result["reason"]
    assert (result["rto_seconds"], result["recovered"], result["impact"]) == (None, None, None)


def test_empty_stream_is_no_data() -> None:
    empty = np.array([], dtype=np.float64)
    result = rto_of(empty, empty.astype(bool), empty, FAULT, END, RtoParams())
    assert (result["status"], result["reason"]) == (
        "no-data",
        "no requests of this kind and residency",
    )


def test_window_health_counts_requests_sharing_a_start() -> None:
    starts = np.array([0.0, 0.0, 0.5, 1.0, 1.0])
    ok = np.array([True, False, True, True, True])
    counts, ratio, healthy = window_health(starts, ok, 1.0, 0.7, 3)
    assert counts.tolist() == [3, 3, 3, 2, 2]
    assert ratio.tolist() == pytest.approx([2 / 3, 2 / 3, 1.0, 1.0, 1.0])
    assert healthy.tolist() == [False, False, True, False, False]


def test_earliest_stable_respects_the_horizon() -> None:
    starts = np.arange(10, dtype=np.float64)
    healthy = np.array([False, False, True, True, True, True, True, True, True, True])
    assert earliest_stable(starts, healthy, 0.0, 3.0, 9.0) == 2
    assert earliest_stable(starts, healthy, 0.0, 3.0, 4.0) is None


def frame(rows: list[tuple[str, str, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    parts = []
    for kind, residency, starts, ok in rows:
        parts.append(
            pd.DataFrame(
                {
                    "t_start": starts,
                    "latency_ms": np.full(starts.size, 5.0),
                    "kind": kind,
                    "ok": ok,
                    "status": np.where(ok, 200, 503).astype(np.int32),
                    "residency": residency,
                }
            )
        )
    return normalise(pd.concat(parts, ignore_index=True), columns=())


def test_two_jurisdictions_with_different_outcomes() -> None:
    us_starts, us_ok, _ = stream([(10, 15)])
    eu_starts, eu_ok, _ = stream([])
    data = frame([("predict", "us", us_starts, us_ok), ("predict", "eu", eu_starts, eu_ok)])
    fault = Fault("f1", "kill-region", "us-east", FAULT)
    table = {(e["kind"], e["residency"]): e for e in rto_table(data, [fault])}
    assert set(table) == {("predict", "eu"), ("predict", "us"), ("all", "eu"), ("all", "us")}
    assert table["predict", "us"]["rto_seconds"] == 5.0
    assert table["all", "us"]["rto_seconds"] == 5.0
    assert table["predict", "eu"]["impact"] is False
    assert table["predict", "eu"]["rto_seconds"] == 0.0
    assert table["predict", "us"]["fault_id"] == "f1"
    assert table["predict", "us"]["target"] == "us-east"


def test_next_fault_ends_the_observation_of_the_previous_one() -> None:
    starts, ok, _ = stream([(10, 15), (40, 45)])
    data = frame([("write", "us", starts, ok)])
    faults = [Fault("a", "x", "us-east", FAULT), Fault("b", "x", "us-east", T0 + 40.0)]
    first, _all_first, second, _all_second = rto_table(data, faults)
    assert first["observed_until"] == T0 + 40.0
    assert first["rto_seconds"] == 5.0
    assert second["rto_seconds"] == 5.0


def test_latency_window_ends_at_the_revert() -> None:
    starts, ok, latency = stream([(10, 15)])
    latency[starts >= T0 + 20.0] = 1000.0
    result = rto_of(starts, ok, latency, FAULT, END, RtoParams(), latency_until=T0 + 20.0)
    assert result["latency_ms"]["requests"] == 80
    assert result["latency_ms"]["p99"] == 10.0


@pytest.mark.parametrize(
    "params",
    [{"window_seconds": 0}, {"threshold": 1.5}, {"stability_seconds": -1}, {"min_requests": 0}],
    ids=["zero-window", "threshold-above-one", "negative-stability", "zero-min-requests"],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RtoParams(**params)


def test_client_rto_probe_reads_files(tmp_path: Path) -> None:
    starts, ok, _ = stream([(10, 15)])
    data = frame([("predict", "us", starts, ok)])
    path = tmp_path / "timeline.parquet"
    data.to_parquet(path)
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"type": "fault", "fault": "kill-region", "target": "us-east", "id": "f1", '
        f'"applied_at": {FAULT}, "details": {{"jurisdiction": "us"}}}}\n'
    )
    result = client_rto(str(path), events_path=str(events), residency="us")
    assert (result["status"], result["rto_seconds"], result["fault_id"]) == ("ok", 5.0, "f1")
    assert client_rto(str(path))["status"] == "no-data"
    missing = client_rto(str(tmp_path / "nope.parquet"), fault_at=FAULT)
    assert missing["status"] == "error"
    assert "timeline not found" in missing["reason"]


def gap(start: float, end: float, fails: list[tuple[float, float]] | None = None) -> dict[str, Any]:
    """The stream with no request started in `[T0 + start, T0 + end)`, judged to END."""
    starts, ok, latency = stream(fails or [])
    keep = ~((starts >= T0 + start) & (starts < T0 + end))
    return rto_of(starts[keep], ok[keep], latency[keep], FAULT, END, RtoParams())


def test_a_gap_after_the_fault_counts_like_a_failure() -> None:
    # Changed from the old rule ("no failed request after the fault is no impact,
    # however thin the traffic"): a 2 s gap right after the fault is unobserved time,
    # so the stream is not shown healthy until the first request after it.
    quiet = gap(10, 12)
    assert quiet["status"] == "ok"
    assert (quiet["impact"], quiet["recovered"], quiet["rto_seconds"]) == (True, True, 2.0)
    assert quiet["recovered_at"] == T0 + 12.0
    assert (quiet["unobserved_seconds"], quiet["unobserved_before_recovery_seconds"]) == (2.0, 2.0)
    assert (quiet["failed"], quiet["relapses"]) == (0, [])
    # The same gap with one failure after it: the same figure, one request later.
    hit = gap(10, 12, [(12.0, 12.125)])
    assert (hit["impact"], hit["rto_seconds"], hit["failed"]) == (True, 2.125, 1)


def test_a_gap_of_tens_of_seconds_is_never_no_impact() -> None:
    result = gap(10, 40)
    assert (result["impact"], result["rto_seconds"]) == (True, 30.0)
    assert result["unobserved_seconds"] == 30.0


def test_a_lead_shorter_than_the_window_is_observed() -> None:
    # The first request 0.5 s after the fault: within W, the usual sampling gap.
    result = gap(10, 10.5)
    assert (result["impact"], result["rto_seconds"], result["unobserved_seconds"]) == (
        False,
        0.0,
        0.0,
    )


@pytest.mark.parametrize(
    "fails", [[], [(10, 12)]], ids=["healthy-then-silent", "failing-then-silent"]
)
def test_clients_that_stop_after_the_fault_give_no_data(fails: list[tuple[float, float]]) -> None:
    # The stream's clients stop 2 s after the fault while the run goes on to END.
    starts, ok, latency = stream(fails)
    keep = starts < T0 + 12.0
    result = rto_of(starts[keep], ok[keep], latency[keep], FAULT, END, RtoParams())
    assert result["status"] == "no-data"
    assert "went unobserved" in result["reason"]
    assert (result["rto_seconds"], result["recovered"], result["impact"]) == (None, None, None)
    # Spans of the windows at 11.5, 11.625, 11.75 (3 requests or fewer, no failure) and
    # from 11.875 to the last judged window start (END - W): 0.375 + 47 s.
    if not fails:
        assert result["unobserved_seconds"] == 47.375


def test_bursts_leave_the_time_between_them_unobserved() -> None:
    # After 20 s the clients send 6 requests at once every 3 s: each burst's window is
    # healthy, but nothing watched the 2 s after it, so no stability can be shown.
    starts, ok, _latency = stream([(10, 15)])
    dense = starts < T0 + 20.0
    bursts = np.repeat(T0 + np.arange(20.0, 60.0, 3.0), 6)
    t = np.concatenate([starts[dense], bursts])
    good = np.concatenate([ok[dense], np.ones(bursts.size, dtype=bool)])
    lat = np.full(t.size, 10.0)
    result = rto_of(t, good, lat, FAULT, float(t[-1]), RtoParams())
    assert result["status"] == "no-data"


def test_coverage_marks_gaps_longer_than_the_window() -> None:
    t = np.array([0.0, 0.5, 2.0, 2.5])
    assert coverage(t, 2.5, 1.0).tolist() == [True, False, True, True]
    assert coverage(t, 9.0, 1.0).tolist() == [True, False, True, False]


def test_a_relapse_after_recovery_is_reported_and_counted() -> None:
    # Outage 10-15, stable recovery at 15, then 30 s of failures from 40 to 70.
    starts, ok, latency = stream([(10, 15), (40, 70)], seconds=120.0)
    result = rto_of(starts, ok, latency, FAULT, float(starts[-1]), RtoParams())
    assert (result["recovered"], result["rto_seconds"]) == (True, 5.0)
    assert result["relapses"] == [
        {
            "start_at": T0 + 40.0,
            "end_at": T0 + 70.0,
            "length_seconds": 30.0,
            "failures": 240,
            "ongoing": False,
        }
    ]
    assert (result["failed"], result["failed_after_recovery"]) == (40, 240)
    assert result["failed_after_fault"] == 280


def test_a_relapse_still_failing_at_the_end_is_ongoing() -> None:
    starts, ok, latency = stream([(10, 15), (40, 60)])
    result = rto_of(starts, ok, latency, FAULT, END, RtoParams())
    assert result["relapses"] == [
        {
            "start_at": T0 + 40.0,
            "end_at": None,
            "length_seconds": 19.875,
            "failures": 160,
            "ongoing": True,
        }
    ]


def test_silence_after_the_recovery_is_reported_as_unobserved() -> None:
    # Recovered at 15 (stable to 25), then no request from 30 to 40: 10 s in which a
    # relapse could hide; before the recovery everything was watched.
    result = gap(30, 40, [(10, 15)])
    assert (result["rto_seconds"], result["relapses"]) == (5.0, [])
    # The window at 29.875 holds one request (its span 29.875-40 is unseen), and those
    # at 29.5, 29.625, 29.75 hold 4, 3, 2: 10.125 + 0.375 s.
    assert result["unobserved_after_recovery_seconds"] == 10.5
    assert result["unobserved_before_recovery_seconds"] == 0.0


def test_a_stream_never_recovered_has_no_relapses_to_count() -> None:
    assert measure([(10, 60)])["relapses"] is None


def test_dense_traffic_recovers_at_the_first_good_request() -> None:
    # 256 requests a second: the window starting at the last failed request holds one
    # failure in 256 (ratio above 0.99), yet recovery is at the next request, not at it.
    dt = 1 / 256
    starts, ok, latency = stream([(10, 15)], dt=dt)
    result = rto_of(starts, ok, latency, FAULT, float(starts[-1]), RtoParams())
    assert result["recovered_at"] == T0 + 15.0
    assert result["rto_seconds"] == 5.0
    assert result["failed"] == 5 * 256
    assert result["last_failure_at"] == pytest.approx(T0 + 15.0 - dt, abs=1e-6)


def test_brownout_counts_from_the_fault_to_the_first_request() -> None:
    # The fault lands half-way between two request starts.
    starts, ok, latency = stream([(10, 15)])
    fault = FAULT - DT / 2
    result = rto_of(starts, ok, latency, fault, float(starts[-1]), RtoParams())
    assert result["rto_seconds"] == 5.0 + DT / 2
    assert result["brownout_seconds"] == 5.0 + DT / 2


def test_last_failure_completed_at_is_the_latest_end_of_a_failed_request() -> None:
    # The outage's failures take 10 ms, except one time-out of 900 ms started at
    # T0 + 14.5: it ends after the last failure (T0 + 14.875 + 0.010) and after recovery.
    starts, ok, latency = stream([(10, 15)])
    latency[np.searchsorted(starts, T0 + 14.5)] = 900.0
    result = rto_of(starts, ok, latency, FAULT, float(starts[-1]), RtoParams())
    assert result["recovered_at"] == T0 + 15.0
    assert result["last_failure_completed_at"] == T0 + 15.4
    clean = measure([(10, 15)])
    assert clean["last_failure_completed_at"] == T0 + 14.885
    assert measure([])["last_failure_completed_at"] is None


def test_a_failure_in_flight_at_the_fault_counts_where_it_completed() -> None:
    # A request sent at T0 + 9.875 is caught by the fault and hangs 6 s (a router's
    # server time-out): it started before the fault yet ended at T0 + 15.875, after
    # recovery. A failure that ended before the fault (T0 + 5) is not the fault's.
    starts, ok, latency = stream([(10, 15)])
    for offset, millis in ((9.875, 6000.0), (5.0, 10.0)):
        i = np.searchsorted(starts, T0 + offset)
        ok[i], latency[i] = False, millis
    result = rto_of(starts, ok, latency, FAULT, float(starts[-1]), RtoParams())
    assert (result["rto_seconds"], result["failed"]) == (5.0, 40)  # starts decide the RTO
    assert result["last_failure_completed_at"] == T0 + 15.875


REGIONS = {"us-east": "us", "us-west": "us", "eu-west": "eu", "eu-central": "eu"}


def two_kills(eu_fails: list[tuple[float, float]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """A US kill at T0 + 10 (US outage 10-15) and an EU kill 3 s later."""
    us_starts, us_ok, _ = stream([(10, 15)])
    eu_starts, eu_ok, _ = stream(eu_fails)
    data = frame([("predict", "us", us_starts, us_ok), ("predict", "eu", eu_starts, eu_ok)])
    faults = [
        Fault("us-kill", "kill-region", "us-east", FAULT),
        Fault("eu-kill", "kill-region", "eu-west", T0 + 13.0),
    ]
    table = rto_table(data, faults, region_jurisdiction=REGIONS)
    return {(e["fault_id"], e["kind"], e["residency"]): e for e in table}


def test_each_outage_is_measured_from_its_own_fault() -> None:
    table = two_kills([(13, 16)])
    us = table["us-kill", "all", "us"]
    assert (us["status"], us["rto_seconds"], us["observed_until"]) == ("ok", 5.0, END)
    assert (us["observation_ended_by"], us["covered_by"]) == (None, None)
    eu = table["eu-kill", "all", "eu"]
    assert (eu["status"], eu["rto_seconds"], eu["covered_by"]) == ("ok", 3.0, None)
    # The EU stream under the US kill: cut by the EU kill 3 s later, and clean until
    # then, so the EU kill's entry judges it.
    cut = table["us-kill", "all", "eu"]
    assert (cut["status"], cut["observation_ended_by"], cut["covered_by"]) == (
        "no-data",
        "eu-kill",
        "eu-kill",
    )
    # The US stream under the EU kill is still the US kill's: its entry covers it.
    assert table["eu-kill", "all", "us"]["covered_by"] == "us-kill"


def test_a_failure_before_the_other_jurisdictions_fault_is_not_covered() -> None:
    # The EU stream failed at T0 + 11, under the US kill, before its own fault: that
    # failure belongs to no entry but the cut one, which stays no-data (inconclusive).
    cut = two_kills([(11, 11.125), (13, 16)])["us-kill", "all", "eu"]
    assert (cut["status"], cut["covered_by"]) == ("no-data", None)


def test_without_a_topology_every_fault_ends_the_previous_observation() -> None:
    starts, ok, _ = stream([(10, 15)])
    data = frame([("predict", "us", starts, ok)])
    faults = [Fault("a", "x", "us-east", FAULT), Fault("b", "x", "eu-west", T0 + 13.0)]
    first = rto_table(data, faults)[0]
    assert (first["status"], first["observed_until"]) == ("no-data", T0 + 13.0)
    with_topology = rto_table(data, faults, region_jurisdiction=REGIONS)[0]
    assert (with_topology["status"], with_topology["rto_seconds"]) == ("ok", 5.0)


def test_a_second_fault_on_the_same_jurisdiction_ends_the_first() -> None:
    starts, ok, _ = stream([(10, 15), (40, 45)])
    data = frame([("predict", "us", starts, ok)])
    faults = [Fault("a", "x", "us-east", FAULT), Fault("b", "x", "us-west", T0 + 40.0)]
    first, _, second, _ = rto_table(data, faults, region_jurisdiction=REGIONS)
    assert (first["observed_until"], first["rto_seconds"], first["relapses"]) == (
        T0 + 40.0,
        5.0,
        [],
    )
    assert (second["rto_seconds"], second["covered_by"]) == (5.0, None)
