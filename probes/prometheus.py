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

The series of one jurisdiction are aggregated before taking increments: series equal
but for `job` (one counter scraped by two jobs) count once, and the others (a router
restarted under a new `instance`, two routers) are made cumulative across their own
resets and summed per code on common scrape rounds.

Missing data is unhealthy, never "no errors": a gap between scrape rounds longer than
1.5 intervals, a series absent from a round while it was alive or gone with no
successor, or no samples at all up to the end of the observation make those intervals
unhealthy.

Bias (stated in every result): recovery is quantised to scrape timestamps, so it is
reported between 0 and one scrape interval after the true recovery; and HAProxy counts
a response when it completes, so slow failing responses (timeouts) can push the
reported recovery later by up to the router's server timeout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from probes.result import failed, record, seconds
from probes.rto import NULL_RTO, RtoParams, earliest_stable, observation_end
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


#: Labels that do not tell one counter from another: the same counter scraped by two
#: jobs differs only in `job`.
SCRAPE_LABELS = ("job",)
#: Labels that change when the counter's process is replaced (a restarted router).
PROCESS_LABELS = ("instance",)


def _labels(entry: dict[str, Any], drop: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    labels = entry.get("metric", {})
    return tuple(sorted((str(k), str(v)) for k, v in labels.items() if k not in drop))


def distinct_counters(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One series per counter: series equal but for `job` are one counter scraped twice.

    Of such duplicates the one spanning the longest time (then: with the most samples)
    is kept: summing both would count every response twice, and interleaving their
    samples would read scrape jitter between the two as counter resets.
    """
    best: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for entry in series:
        key = _labels(entry, ("__name__", *SCRAPE_LABELS))
        if key not in best or _coverage(entry) > _coverage(best[key]):
            best[key] = entry
    return list(best.values())


def _coverage(entry: dict[str, Any]) -> tuple[float, int]:
    """(seconds from first to last sample, samples) of a matrix entry."""
    stamps = [float(v[0]) for v in entry.get("values", [])]
    return (max(stamps) - min(stamps) if stamps else -1.0, len(stamps))


def scrape_grid(stamps: list[np.ndarray], scrape_interval: float) -> np.ndarray:
    """One time per scrape round: stamps within 0.9 interval of a round's first join it.

    Series scraped at different offsets (two routers, two targets) fall into the same
    round; a round is dated by its latest sample, so every sample of it is known then.
    """
    every = np.unique(np.concatenate(stamps)) if stamps else np.array([], dtype=np.float64)
    rounds: list[float] = []
    first = -math.inf
    for stamp in every.tolist():
        if stamp - first > 0.9 * scrape_interval:
            first = stamp
            rounds.append(stamp)
        else:
            rounds[-1] = stamp
    return np.array(rounds, dtype=np.float64)


@dataclass(frozen=True)
class _Counter:
    """One counter's samples, made cumulative across resets."""

    labels: tuple[tuple[str, str], ...]
    code: str
    stamps: np.ndarray
    cumulative: np.ndarray
    first_value: float

    @classmethod
    def of(cls, entry: dict[str, Any], code_label: str) -> _Counter:
        values = sorted((round(float(v[0]), 3), float(v[1])) for v in entry.get("values", []))
        stamps = np.array([v[0] for v in values], dtype=np.float64)
        numbers = np.array([v[1] for v in values], dtype=np.float64)
        stamps, keep = np.unique(stamps, return_index=True)
        numbers = numbers[keep]
        steps = np.diff(numbers)
        steps = np.where(steps < 0, numbers[1:], steps)  # a reset: the new value counts
        cumulative = np.concatenate(([0.0], np.cumsum(steps)))
        code = str(entry.get("metric", {}).get(code_label, ""))
        labels = _labels(entry, ("__name__", *SCRAPE_LABELS, *PROCESS_LABELS))
        return cls(labels, code, stamps, cumulative, float(numbers[0]) if numbers.size else 0.0)


def intervals_from_series(
    series: list[dict[str, Any]],
    params: RtoParams,
    scrape_interval: float,
    success_code: str = "2xx",
    code_label: str = "code",
) -> Intervals:
    """Per-scrape-round increments and health of one jurisdiction's counter series.

    `series` are Prometheus matrix entries (`metric`, `values`) of one jurisdiction:
    one per code, and possibly per router process (`instance`) and scrape job.
    Duplicates scraped by two jobs count once (`distinct_counters`); the others are
    summed per code after each was made cumulative across its own resets, so a router
    restarted under a new `instance` continues the old one's count: the new series'
    first value is what it counted since it appeared. A series absent from a round
    while it was alive, or gone before the end with no successor (the same labels but
    `instance`), makes the intervals around it missing. Raises ValueError on an empty
    group.
    """
    if not series:
        raise ValueError("no series")
    counters = [_Counter.of(e, code_label) for e in distinct_counters(series)]
    counters = [c for c in counters if c.stamps.size]
    if not counters:
        raise ValueError("no samples")
    grid = scrape_grid([c.stamps for c in counters], scrape_interval)
    n = grid.size
    total_cum = np.zeros(n)
    good_cum = np.zeros(n)
    absent = np.zeros(n, dtype=bool)
    for counter in counters:
        # The round each sample belongs to, and the counter's value as of each round.
        rounds = np.searchsorted(grid, counter.stamps, side="left")
        born = rounds[0] > 0
        at = np.searchsorted(counter.stamps, grid, side="right") - 1
        value = np.where(at >= 0, counter.cumulative[np.maximum(at, 0)], 0.0)
        if born:
            value = np.where(at >= 0, value + counter.first_value, 0.0)
        total_cum += value
        if counter.code == success_code:
            good_cum += value
        alive = np.zeros(n, dtype=bool)
        last = int(rounds[-1])
        if last < n - 1 and not _succeeded(counter, counters):
            last = n - 1  # gone for good: every later round misses it
        alive[int(rounds[0]) : last + 1] = True
        seen = np.zeros(n, dtype=bool)
        seen[rounds] = True
        absent |= alive & ~seen
    total = np.diff(total_cum)
    good = np.diff(good_cum)
    gaps = np.diff(grid) > GAP_FACTOR * scrape_interval
    missing = absent[1:] | absent[:-1] | gaps
    ratio = good / np.maximum(total, 1)
    healthy = ~missing & (total >= params.min_requests) & (ratio >= params.threshold)
    return Intervals(grid[:-1], grid[1:], healthy, missing, total, good)


def _succeeded(counter: _Counter, counters: list[_Counter]) -> bool:
    """Whether a later series carries on `counter` (same labels but `instance`)."""
    end = float(counter.stamps[-1])
    return any(
        other is not counter
        and other.labels == counter.labels
        and other.code == counter.code
        and float(other.stamps[0]) > end
        for other in counters
    )


def rto_of_intervals(
    iv: Intervals,
    fault_at: float,
    until: float,
    params: RtoParams,
    scrape_interval: float,
) -> dict[str, Any]:
    """The RTO definition on scrape intervals (see the module docstring).

    "no-data" when the observation after the fault is shorter than the stability period
    plus one interval (as on the client side: no recovery could be shown), or holds no
    interval with `min_requests` responses.
    """
    if until - fault_at < params.stability_seconds + scrape_interval:
        return failed(
            "no-data",
            f"observation after the fault ({until - fault_at:.3f} s) is shorter than "
            f"stability + scrape interval ({params.stability_seconds + scrape_interval:g} s)",
        )
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


def router_selector(
    group_label: str = "proxy", group_prefix: str = "jur_", metric: str = ROUTER_METRIC
) -> str:
    """The PromQL selector of the router's per-jurisdiction response counters."""
    return f'{metric}{{{group_label}=~"{group_prefix}.+"}}'


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
    region_jurisdiction: Mapping[str, str] | None = None,
    metric: str = ROUTER_METRIC,
) -> list[dict[str, Any]]:
    """Prometheus-side RTO per fault and per jurisdiction (router backend).

    Each fault's observation of a jurisdiction ends at the next fault touching the
    fault's jurisdiction or that one (`probes.rto.observation_end`, with
    `region_jurisdiction` mapping regions), or at `until`. The series of a
    jurisdiction are aggregated before taking increments (`intervals_from_series`).
    `jurisdictions` that have no series at all get an entry with status "no-data";
    Prometheus unreachable gives status "error" with the reason.
    """
    params = params or RtoParams()
    mapping = region_jurisdiction or {}
    selector = router_selector(group_label, group_prefix, metric)
    table: list[dict[str, Any]] = []
    for n, fault in enumerate(faults):
        # One query per fault, long enough for any jurisdiction: a stream of no
        # jurisdiction ("all") is cut only by faults on the fault's own.
        names = jurisdictions or ("all",)
        longest, _ = observation_end(faults, n, "all", until, mapping)
        start = fault.applied_at - params.stability_seconds - 5 * scrape_interval
        end = max(longest, fault.applied_at) + 2 * scrape_interval
        inputs = {
            **params.as_dict(),
            "window_seconds": scrape_interval,
            "scrape_interval_seconds": scrape_interval,
            "success_code": success_code,
        }
        common = {
            **NULL_RTO,
            **fault.describe(),
            "method": METHOD,
            "bias": BIAS,
            "inputs": inputs,
        }
        try:
            promql, matrix = client.samples(selector, start, end)
        except PrometheusUnavailable as exc:
            table += [
                {
                    "jurisdiction": j,
                    "residency": j,
                    **common,
                    "observed_until": seconds(observation_end(faults, n, j, until, mapping)[0]),
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
            fault_until, cut = observation_end(faults, n, jurisdiction, until, mapping)
            base = {
                "jurisdiction": jurisdiction,
                "residency": jurisdiction,
                **common,
                "observed_until": seconds(fault_until),
                "observation_ended_by": cut.id if cut is not None else None,
                "queries": [promql],
            }
            series = groups.get(jurisdiction, [])
            if not series:
                table.append(
                    {**base, **failed("no-data", f"no series of {selector} for this group")}
                )
                continue
            try:
                iv = intervals_from_series(series, params, scrape_interval, success_code)
            except ValueError as exc:
                table.append({**base, **failed("no-data", f"{selector}: {exc}")})
                continue
            base["samples"] = len(iv.starts) + 1
            base["series"] = len(series)
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
