"""Prometheus-side RTO on constructed raw samples (exact answers, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from probes.prometheus import compare_rto, intervals_from_series, rto_of_intervals
from probes.rto import RtoParams

T0 = 1_700_000_000.0
PARAMS = RtoParams(window_seconds=1.0, stability_seconds=10.0, min_requests=5)


def series(
    code: str,
    rates: list[float],
    skip: frozenset[int] | set[int] = frozenset(),
    reset_at: int | None = None,
) -> dict[str, Any]:
    """A counter scraped every second from T0, rising by rates[k] in second k."""
    values, total = [], 0.0
    for k in range(len(rates) + 1):
        if k:
            total = rates[k - 1] if k == reset_at else total + rates[k - 1]
        if k not in skip:
            values.append([T0 + k, str(total)])
    return {"metric": {"proxy": "jur_us", "code": code}, "values": values}


def rto(ok: list[float], bad: list[float], fault: float = 10.0, **kw: Any) -> dict[str, Any]:
    iv = intervals_from_series(
        [series("2xx", ok, **kw.get("ok_kw", {})), series("5xx", bad, **kw.get("bad_kw", {}))],
        PARAMS,
        1.0,
    )
    return rto_of_intervals(iv, T0 + fault, T0 + len(ok), PARAMS, 1.0)


def outage(start: int, end: int, n: int = 60) -> tuple[list[float], list[float]]:
    ok = [0.0 if start <= k < end else 100.0 for k in range(n)]
    return ok, [100.0 - v for v in ok]


def test_clean_outage() -> None:
    result = rto(*outage(10, 15))
    assert (result["impact"], result["recovered"], result["rto_seconds"]) == (True, True, 5.0)
    assert result["unhealthy_intervals"] == 5
    assert result["uncertainty_seconds"] == 1.0


def test_no_impact() -> None:
    result = rto(*outage(0, 0))
    assert (result["impact"], result["rto_seconds"]) == (False, 0.0)


def test_missing_scrapes_are_unhealthy_never_no_errors() -> None:
    ok, bad = outage(0, 0)
    skip = {11, 12, 13}  # no sample of either series at T0+11 … T0+13
    result = rto(ok, bad, ok_kw={"skip": skip}, bad_kw={"skip": skip})
    assert result["impact"] is True
    assert result["rto_seconds"] == 4.0  # the interval (10, 14] spans the gap
    assert result["missing_intervals"] == 1


def test_an_absent_code_series_is_unhealthy() -> None:
    ok, bad = outage(0, 0)
    result = rto(ok, bad, bad_kw={"skip": {12}})
    assert (result["impact"], result["rto_seconds"]) == (True, 3.0)


def test_counter_reset_counts_the_new_value() -> None:
    ok, bad = outage(0, 0)
    result = rto(ok, bad, ok_kw={"reset_at": 20})
    assert result["impact"] is False


def test_series_ending_before_the_observation_is_not_a_recovery() -> None:
    ok, bad = outage(10, 15)
    skip = set(range(40, 61))
    result = rto(ok, bad, ok_kw={"skip": skip}, bad_kw={"skip": skip})
    assert result["recovered"] is True  # 15 + 10 s of stability fit before 40
    late_ok, late_bad = outage(10, 35)
    late = rto(late_ok, late_bad, ok_kw={"skip": skip}, bad_kw={"skip": skip})
    assert late["recovered"] is False  # 35 + 10 would need samples after 40


def test_too_few_responses_is_no_data() -> None:
    result = rto([1.0] * 60, [0.0] * 60)
    assert result["status"] == "no-data"


def test_an_observation_shorter_than_the_stability_period_is_no_data() -> None:
    ok, bad = outage(10, 15)
    iv = intervals_from_series([series("2xx", ok), series("5xx", bad)], PARAMS, 1.0)
    cut = rto_of_intervals(iv, T0 + 10.0, T0 + 13.0, PARAMS, 1.0)
    assert (cut["status"], cut.get("rto_seconds")) == ("no-data", None)
    assert "shorter than stability" in cut["reason"]


def test_no_series_is_refused() -> None:
    with pytest.raises(ValueError, match="no series"):
        intervals_from_series([], PARAMS, 1.0)


@pytest.mark.parametrize(
    ("prom", "client", "mismatch"),
    [
        (5.0, 4.0, False),
        (5.0, 2.5, True),
        (None, 4.0, True),
        (None, None, False),
    ],
    ids=["within-bound", "beyond-bound", "one-side-not-recovered", "neither-recovered"],
)
def test_instrumentation_mismatch(prom: float | None, client: float | None, mismatch: bool) -> None:
    a = {"status": "ok", "rto_seconds": prom}
    b = {"status": "ok", "rto_seconds": client}
    result = compare_rto(a, b, 1.0)
    assert result["instrumentation_mismatch"] is mismatch
    assert result["instrumentation_mismatch"] is mismatch
    assert result["mismatch_bound_seconds"] == 2.0
    assert compare_rto(a, {"status": "no-data"})["instrumentation_mismatch"] is None


@pytest.mark.parametrize(
    ("completed", "bound", "mismatch"),
    [(None, 2.0, True), (11.0, 2.0, True), (12.0, 3.0, False), (12.5, 3.5, False)],
    ids=["no-failures", "completed-before-recovery", "lag-1s", "lag-1.5s"],
)
def test_the_completion_lag_of_failed_requests_widens_the_bound(
    completed: float | None, bound: float, mismatch: bool
) -> None:
    # Client recovery at 11 (RTO 1); the router counted the last failure when it ended.
    # Prometheus reports 3.8 s, 2.8 s after the client: beyond 2 s unless the last failed
    # request completed at least 0.8 s after the clients' recovery.
    client = {"status": "ok", "rto_seconds": 1.0, "recovered_at": 11.0}
    client["last_failure_completed_at"] = completed
    result = compare_rto({"status": "ok", "rto_seconds": 3.8}, client, 1.0)
    assert result["mismatch_bound_seconds"] == bound
    assert result["completion_lag_seconds"] == bound - 2.0
    assert result["instrumentation_mismatch"] is mismatch


def labelled(entry: dict[str, Any], shift: float = 0.0, **labels: str) -> dict[str, Any]:
    """`entry` with more labels, its samples `shift` seconds later."""
    values = [[t + shift, v] for t, v in entry["values"]]
    return {"metric": {**entry["metric"], **labels}, "values": values}


def judged(entries: list[dict[str, Any]], until: float = 60.0) -> tuple[dict[str, Any], Any]:
    iv = intervals_from_series(entries, PARAMS, 1.0)
    return rto_of_intervals(iv, T0 + 10.0, T0 + until, PARAMS, 1.0), iv


def test_the_same_counters_scraped_by_two_jobs_count_once() -> None:
    # Before: the two jobs' samples 0.4 s apart never lined up, and the entry was
    # "no-data: no scrape interval holds min_requests responses".
    ok, bad = outage(10, 15)
    entries = []
    for job, shift in (("haproxy", 0.0), ("haproxy-again", 0.4)):
        entries += [
            labelled(series("2xx", ok), shift, job=job),
            labelled(series("5xx", bad), shift, job=job),
        ]
    result, iv = judged(entries)
    assert (result["rto_seconds"], result["missing_intervals"]) == (5.0, 0)
    assert iv.total[0] == 100.0  # not 200: one counter, read twice


def test_of_two_jobs_the_one_that_kept_scraping_is_read() -> None:
    # Job a stops scraping at T0 + 20 but took more samples before (every 0.25 s):
    # job b, which covers the whole observation, is the one read.
    ok, bad = outage(10, 15)
    dense = [
        labelled(series(code, rates), 0.0, job="a") for code, rates in (("2xx", ok), ("5xx", bad))
    ]
    for entry in dense:
        quarters = [[t + q, v] for t, v in entry["values"] for q in (0.0, 0.25, 0.5, 0.75)]
        entry["values"] = quarters[:80]
    full = [
        labelled(series(code, rates), 0.2, job="b") for code, rates in (("2xx", ok), ("5xx", bad))
    ]
    result, _ = judged(dense + full)
    assert (result["recovered"], result["missing_intervals"]) == (True, 0)


def test_a_router_restarted_under_a_new_instance_continues_the_count() -> None:
    # The router restarts at T0 + 30 as instance b: its counters start from 0 and
    # its first scrape (T0 + 31) holds the responses of second 30. Before: every
    # interval was missing (one instance absent at each end) and it never recovered.
    ok, bad = outage(10, 15)
    old = [series("2xx", ok[:30]), series("5xx", bad[:30])]
    entries = [labelled(e, instance="a") for e in old]
    for code, rates in (("2xx", ok), ("5xx", bad)):
        fresh = series(code, [0.0] * 30 + rates[30:])
        fresh["values"] = fresh["values"][31:]
        entries.append(labelled(fresh, instance="b"))
    result, iv = judged(entries)
    assert (result["rto_seconds"], result["missing_intervals"]) == (5.0, 0)
    assert iv.total.tolist() == [100.0] * 60
    assert not iv.missing.any()


def test_two_routers_of_one_jurisdiction_are_summed() -> None:
    ok, bad = outage(10, 15)
    half_ok, half_bad = [v / 2 for v in ok], [v / 2 for v in bad]
    entries = [
        labelled(series("2xx", half_ok), 0.0, instance="a"),
        labelled(series("5xx", half_bad), 0.0, instance="a"),
        labelled(series("2xx", half_ok), 0.3, instance="b"),
        labelled(series("5xx", half_bad), 0.3, instance="b"),
    ]
    result, iv = judged(entries)
    # A scrape round is dated by its latest sample (router b's, 0.3 s later): the
    # recovery is known at T0 + 15.3.
    assert (result["rto_seconds"], result["unhealthy_intervals"]) == (5.3, 5)
    assert iv.total[0] == 100.0


def test_a_counter_reset_inside_an_outage_is_not_a_recovery() -> None:
    ok, bad = outage(10, 15)
    result, _ = judged([series("2xx", ok), series("5xx", bad, reset_at=12)])
    assert result["rto_seconds"] == 5.0


def test_a_series_gone_without_a_successor_is_missing() -> None:
    # The 5xx series vanishes at T0 + 20 while 2xx goes on: its errors are unknown
    # from then on, never "no errors".
    ok, bad = outage(10, 15)
    result, _ = judged([series("2xx", ok), series("5xx", bad, skip=set(range(21, 61)))])
    assert result["recovered"] is False
    assert result["missing_intervals"] == 40
