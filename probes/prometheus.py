"""Prometheus-side RTO and the replication-lag estimate, via `prometheus-api-client`.

Method (the second, independent instrument of DESIGN 4): the router's response
counters `haproxy_backend_http_responses_total{proxy="jur_<jurisdiction>", code=…}`
are read as *raw samples* (a range-vector selector `metric{…}[Ns]` evaluated at the end
of the observation: every scrape with its own timestamp, no `rate()`, no step grid).
Between two consecutive scrapes the increments of the counters give the responses of
that interval; the interval's success ratio is `Δ2xx / Δall` (a counter that went down
was reset: its new value is the increment). The RTO definition of `probes.rto` is then
applied with the scrape interval as the window: an interval is healthy when it holds at
least `min_requests` responses and a ratio of at least `threshold`; recovery is the
earliest scrape after the fault from which every interval for `stability_seconds` is
healthy.

Missing data is unhealthy, never "no errors": a scrape gap longer than 1.5 intervals, a
code series absent at one end of an interval, or no samples at all up to the end of
the observation make those intervals unhealthy.

Bias (stated in every result): recovery is quantised to scrape timestamps, so it is
reported between 0 and one scrape interval after the true recovery; and HAProxy counts
a response when it completes, so slow failing responses (timeouts) can push the
reported recovery later by up to the router's server timeout.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from probes.result import failed, record, seconds
from probes.rto import NULL_RTO, RtoParams, earliest_stable
from probes.rundir import Fault

__all__ = ["prometheus_rto", "replication_lag_at_fault"]

ROUTER_METRIC = "haproxy_backend_http_responses_total"
LAG_METRIC = "gameday_replication_lag_seconds"
METHOD = (
    "increments between consecutive raw scrape samples of the router's response "
    "counters (range-vector selector, no rate() window); success = code 2xx"
)
BIAS = (
    "recovery is quantised to scrape timestamps: reported 0 to 1 scrape interval after "
    "the true recovery; responses are counted when they complete, so slow failing "
    "responses can delay it further by up to the router's server timeout"
)
GAP_FACTOR = 1.5  # a scrape gap longer than this many intervals is missing data


class PrometheusUnavailable(Exception):
    """Prometheus did not answer, or answered with an error (the message says which)."""


@dataclass
class PromClient:
    """A Prometheus HTTP API client with a timeout on every call and no retries.

    Every query and its raw result are kept in `log` so a run can store them
    (`RUN_DIR/prometheus/`) and a reader can run them again; `record=False` keeps
    nothing (a live view polled every second for the length of a drill).
    """

    url: str
    timeout: float = 5.0
    log: list[dict[str, Any]] = field(default_factory=list)
    record: bool = True

    def __post_init__(self) -> None:
        # prometheus-api-client retries with backoff by default; one try, the caller
        # decides. Its `timeout` reaches every requests call it makes.
        self._conn = PrometheusConnect(
            url=self.url.rstrip("/"), timeout=self.timeout, retry=Retry(total=0)
        )

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        """Instant query `promql` evaluated at `at` (epoch s); raises PrometheusUnavailable."""
        try:
            result = self._conn.custom_query(
                promql, params={"time": f"{at:.3f}"}, timeout=self.timeout
            )
        except (requests.RequestException, PrometheusApiClientException) as exc:
            raise PrometheusUnavailable(f"prometheus at {self.url}: {exc}") from exc
        except (ValueError, KeyError) as exc:
            raise PrometheusUnavailable(f"prometheus at {self.url}: bad answer: {exc}") from exc
        if not isinstance(result, list):
            raise PrometheusUnavailable(f"prometheus at {self.url}: unexpected answer {result!r}")
        if self.record:
            self.log.append({"query": promql, "time": at, "result": result})
        return result

    def samples(self, selector: str, start: float, end: float) -> tuple[str, list[dict[str, Any]]]:
        """Raw samples of `selector` in `[start, end]`: (the PromQL run, its matrix)."""
        span = max(1, math.ceil(end - start))
        promql = f"{selector}[{span}s]"
        return promql, self.query(promql, end)

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True)
class Intervals:
    """Scrape intervals of one group of counters: start, end, healthy, why not."""

    starts: np.ndarray
    ends: np.ndarray
    healthy: np.ndarray
    missing: np.ndarray
    total: np.ndarray
    good: np.ndarray


def intervals_from_series(
    series: list[dict[str, Any]],
    params: RtoParams,
    scrape_interval: float,
    success_code: str = "2xx",
    code_label: str = "code",
) -> Intervals:
    """Per-scrape-interval increments and health of one jurisdiction's counter series.

    `series` are Prometheus matrix entries (`metric`, `values`) of one group, one per
    code. Raises ValueError on an empty group.
    """
    if not series:
        raise ValueError("no series")
    columns: dict[str, pd.Series] = {}
    success: list[str] = []
    for n, entry in enumerate(series):
        labels = entry.get("metric", {})
        name = f"{n}:{labels.get(code_label, '')}"
        values = entry.get("values", [])
        stamps = np.round(np.array([float(v[0]) for v in values], dtype=np.float64), 3)
        numbers = np.array([float(v[1]) for v in values], dtype=np.float64)
        columns[name] = pd.Series(numbers, index=stamps).groupby(level=0).last()
        if labels.get(code_label) == success_code:
            success.append(name)
    table = pd.DataFrame(columns).sort_index()
    stamps = table.index.to_numpy(dtype=np.float64)
    values = table.to_numpy(dtype=np.float64)
    diffs = values[1:] - values[:-1]
    diffs = np.where(diffs < 0, values[1:], diffs)  # counter reset: the new value counts
    absent = np.isnan(values[1:]).any(axis=1) | np.isnan(values[:-1]).any(axis=1)
    gaps = (stamps[1:] - stamps[:-1]) > GAP_FACTOR * scrape_interval
    total = np.nansum(diffs, axis=1)
    mask = np.array([c in success for c in table.columns], dtype=bool)
    good = np.nansum(diffs[:, mask], axis=1) if mask.any() else np.zeros_like(total)
    ratio = good / np.maximum(total, 1)
    missing = absent | gaps
    healthy = ~missing & (total >= params.min_requests) & (ratio >= params.threshold)
    return Intervals(stamps[:-1], stamps[1:], healthy, missing, total, good)


def rto_of_intervals(
    iv: Intervals,
    fault_at: float,
    until: float,
    params: RtoParams,
    scrape_interval: float,
) -> dict[str, Any]:
    """The RTO definition on scrape intervals (see the module docstring)."""
    starts, ends, healthy, missing = iv.starts, iv.ends, iv.healthy, iv.missing
    keep = starts < until
    starts, ends, healthy, missing = starts[keep], ends[keep], healthy[keep], missing[keep]
    # The interval the fault falls in is judged from the fault on: it holds the first
    # responses after it (or the first missing scrapes).
    starts = np.where((starts < fault_at) & (ends > fault_at), fault_at, starts)
    # Missing coverage between the fault and the first sample, or after the last one
    # up to `until`, is an unhealthy interval of its own.
    if starts.size == 0 or starts[0] > fault_at + GAP_FACTOR * scrape_interval:
        lead = starts[0] if starts.size else until
        starts, ends = np.append(fault_at, starts), np.append(lead, ends)
        healthy, missing = np.append(False, healthy), np.append(True, missing)
    if ends[-1] < until - GAP_FACTOR * scrape_interval:
        starts, ends = np.append(starts, ends[-1]), np.append(ends, until)
        healthy, missing = np.append(healthy, False), np.append(missing, True)
    after = starts >= fault_at
    if not after.any():
        return failed("no-data", "no scrape interval starts after the fault")
    if not (iv.total >= params.min_requests).any():
        return failed(
            "no-data",
            f"no scrape interval holds min_requests ({params.min_requests}) responses",
        )
    idx = earliest_stable(
        starts, healthy, fault_at, params.stability_seconds, until - scrape_interval
    )
    first = int(np.searchsorted(starts, fault_at, side="left"))
    impact = idx != first
    if idx is None:
        recovered_at: float | None = None
        rto: float | None = None
        uncertainty: float | None = None
    elif not impact:
        recovered_at, rto = fault_at, 0.0
        uncertainty = float(ends[idx] - starts[idx])
    else:
        recovered_at = float(starts[idx])
        rto = recovered_at - fault_at
        uncertainty = float(max(starts[idx] - starts[idx - 1], ends[idx] - starts[idx]))
    stop = recovered_at if recovered_at is not None else until
    window = after & (starts < stop)
    return record(
        {
            "status": "ok",
            "reason": None,
            "impact": bool(impact),
            "recovered": idx is not None,
            "rto_seconds": seconds(rto),
            "recovered_at": seconds(recovered_at),
            "uncertainty_seconds": seconds(uncertainty),
            "unhealthy_intervals": int(np.sum(window & ~healthy)),
            "missing_intervals": int(np.sum(window & missing)),
            "intervals_after_fault": int(np.sum(after)),
        }
    )


def router_selector(group_label: str = "proxy", group_prefix: str = "jur_") -> str:
    """The PromQL selector of the router's per-jurisdiction response counters."""
    return f'{ROUTER_METRIC}{{{group_label}=~"{group_prefix}.+"}}'


def prometheus_rto_table(
    client: PromClient,
    faults: list[Fault],
    until: float,
    params: RtoParams | None = None,
    scrape_interval: float = 1.0,
    jurisdictions: tuple[str, ...] = (),
    group_label: str = "proxy",
    group_prefix: str = "jur_",
    success_code: str = "2xx",
) -> list[dict[str, Any]]:
    """Prometheus-side RTO per fault and per jurisdiction (router backend).

    Each fault is observed until the next one (or `until`). `jurisdictions` that have
    no series at all get an entry with status "no-data"; Prometheus unreachable gives
    status "error" with the reason.
    """
    params = params or RtoParams()
    selector = router_selector(group_label, group_prefix)
    table: list[dict[str, Any]] = []
    for n, fault in enumerate(faults):
        fault_until = until if n + 1 == len(faults) else min(until, faults[n + 1].applied_at)
        start = fault.applied_at - params.stability_seconds - 5 * scrape_interval
        end = fault_until + 2 * scrape_interval
        inputs = {
            **params.as_dict(),
            "window_seconds": scrape_interval,
            "scrape_interval_seconds": scrape_interval,
            "success_code": success_code,
        }
        common = {
            **NULL_RTO,
            **fault.describe(),
            "observed_until": seconds(fault_until),
            "method": METHOD,
            "bias": BIAS,
            "inputs": inputs,
        }
        try:
            promql, matrix = client.samples(selector, start, end)
        except PrometheusUnavailable as exc:
            names = jurisdictions or ("all",)
            table += [
                {
                    "jurisdiction": j,
                    "residency": j,
                    **common,
                    **failed("error", str(exc)),
                    "queries": [],
                }
                for j in names
            ]
            continue
        groups: dict[str, list[dict[str, Any]]] = {}
        for entry in matrix:
            label = str(entry.get("metric", {}).get(group_label, ""))
            groups.setdefault(label.removeprefix(group_prefix), []).append(entry)
        for jurisdiction in sorted(set(groups) | set(jurisdictions)):
            base = {
                "jurisdiction": jurisdiction,
                "residency": jurisdiction,
                **common,
                "queries": [promql],
            }
            series = groups.get(jurisdiction, [])
            if not series:
                table.append(
                    {**base, **failed("no-data", f"no series of {selector} for this group")}
                )
                continue
            iv = intervals_from_series(series, params, scrape_interval, success_code)
            base["samples"] = len(iv.starts) + 1
            table.append(
                {
                    **base,
                    **rto_of_intervals(iv, fault.applied_at, fault_until, params, scrape_interval),
                }
            )
    return table


def compare_rto(
    prom: dict[str, Any], client: dict[str, Any] | None, scrape_interval: float = 1.0
) -> dict[str, Any]:
    """Fields flagging an instrumentation mismatch between the two RTO figures.

    The bound is `max(2 * scrape interval, 2 s)` plus the completion lag: how long after
    the client-side recovery the last failed request completed (`last_failure_completed_at
    - recovered_at`, never negative). The router counts a response when it completes, so
    that much of the difference is the stated bias, explained by the clients' own
    latencies, not a disagreement. One instrument seeing a recovery and the other not
    is a mismatch too. None (unknown) when either side has no figure.
    """
    base = max(2 * scrape_interval, 2.0)
    lag = _completion_lag(client)
    out: dict[str, Any] = {
        "mismatch_bound_seconds": seconds(base + lag),
        "completion_lag_seconds": seconds(lag),
        "client_rto_seconds": None,
    }
    if client is None or client.get("status") != "ok" or prom.get("status") != "ok":
        return {**out, "instrumentation_mismatch": None}
    out["client_rto_seconds"] = client.get("rto_seconds")
    a, b = prom.get("rto_seconds"), client.get("rto_seconds")
    if a is None or b is None:
        flag = (a is None) != (b is None)
        return {**out, "instrumentation_mismatch": flag}
    flag = abs(float(a) - float(b)) > base + lag
    return {
        **out,
        "difference_seconds": seconds(float(a) - float(b)),
        "instrumentation_mismatch": flag,
    }


def _completion_lag(client: dict[str, Any] | None) -> float:
    """Seconds from the client-side recovery to the completion of the last failed request."""
    if client is None or client.get("status") != "ok":
        return 0.0
    done, recovered = client.get("last_failure_completed_at"), client.get("recovered_at")
    if not isinstance(done, int | float) or not isinstance(recovered, int | float):
        return 0.0
    return max(0.0, float(done) - float(recovered))


def replication_lag(
    client: PromClient, at: float, lookback: float = 5.0
) -> tuple[str, dict[str, float]]:
    """Worst replication lag per jurisdiction over `[at - lookback, at]`: (PromQL, lags)."""
    promql = f"max by (jurisdiction) (max_over_time({LAG_METRIC}[{lookback:g}s]))"
    result = client.query(promql, at)
    lags: dict[str, float] = {}
    for entry in result:
        value = entry.get("value", [None, "nan"])[1]
        number = float(value)
        if not math.isnan(number):
            lags[str(entry.get("metric", {}).get("jurisdiction", ""))] = number
    return promql, lags


def lag_estimate(client: PromClient | None, fault_at: float, jurisdiction: str) -> dict[str, Any]:
    """The replication lag at the fault as the RPO entries quote it."""
    if client is None:
        return failed("no-data", "no Prometheus to ask")
    try:
        promql, lags = replication_lag(client, fault_at)
    except PrometheusUnavailable as exc:
        return failed("error", str(exc))
    if jurisdiction not in lags:
        return failed("no-data", f"no {LAG_METRIC} sample before the fault", query=promql)
    return {
        "status": "ok",
        "reason": None,
        "lag_seconds": seconds(lags[jurisdiction], 3),
        "query": promql,
        "at": seconds(fault_at),
    }


def prometheus_rto(
    prometheus_url: str,
    fault_at: float,
    jurisdiction: str,
    until: float | None = None,
    threshold: float = 0.99,
    stability_seconds: float = 10.0,
    min_requests: int = 5,
    scrape_interval_seconds: float = 1.0,
    timeout_seconds: float = 5.0,
) -> dict[str, Any]:
    """Recovery time (RTO, seconds) of a jurisdiction as the global Prometheus saw it.

    Reads the router's response counters (`haproxy_backend_http_responses_total` of
    backend `jur_<jurisdiction>`) scrape by scrape, without `rate()` windows, and
    applies the client-side definition with the scrape interval as the window:
    recovery is the first scrape after `fault_at` (epoch s) from which every interval,
    for `stability_seconds`, holds `min_requests` responses with a 2xx share of at
    least `threshold`. Absent series and missed scrapes count as unhealthy.
    The observation ends at `until` (default: now). The result lists the PromQL it
    ran and states its bias (0 to 1 scrape interval late). `status` is "error" when
    Prometheus cannot be reached (never "ok"), "no-data" when it has no such series.
    """
    client = PromClient(prometheus_url, timeout=timeout_seconds)
    try:
        params = RtoParams(scrape_interval_seconds, threshold, stability_seconds, min_requests)
        fault = Fault(id="", fault="", target="", applied_at=float(fault_at))
        end = time.time() if until is None else float(until)
        rows = prometheus_rto_table(
            client, [fault], end, params, scrape_interval_seconds, (jurisdiction,)
        )
    except ValueError as exc:
        return failed("error", str(exc), jurisdiction=jurisdiction)
    finally:
        client.close()
    return next(r for r in rows if r["jurisdiction"] in (jurisdiction, "all"))


def replication_lag_at_fault(
    prometheus_url: str,
    fault_at: float,
    jurisdiction: str,
    timeout_seconds: float = 5.0,
) -> dict[str, Any]:
    """Replication lag (seconds) of a jurisdiction's replicas just before a fault.

    The worst `gameday_replication_lag_seconds` sample in the 5 s before `fault_at`:
    how far behind the replicas were when the fault hit, i.e. the RPO an asynchronous
    failover would be expected to cost. `status` "error" when Prometheus cannot be
    reached, "no-data" when it has no sample.
    """
    client = PromClient(prometheus_url, timeout=timeout_seconds)
    try:
        return {"jurisdiction": jurisdiction, **lag_estimate(client, float(fault_at), jurisdiction)}
    finally:
        client.close()
