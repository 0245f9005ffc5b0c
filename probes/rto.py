"""Client-side recovery time (RTO) from the request timeline (DESIGN 4).

Definitions (times are UTC epoch seconds, `t_f` is the fault's `applied_at`):

- forward success ratio `r(u)`: share of `ok` among the requests *started* in
  `[u, u + W)`, evaluated at every request start `u`; a window is *healthy* when it
  holds at least `min_requests` requests and `r(u) >= S`;
- `t_recovered`: the earliest request start `t >= t_f` such that every window starting
  in `[t, t + stability]` is healthy and followed by the next start within W (no
  unobserved gap), and those windows were fully observed (`t + stability + W <= until`,
  `until` being the end of the observation);
- `RTO = t_recovered - t_f`. No impact (RTO 0, `impact: false`, `recovered_at = t_f`)
  only when the first request after `t_f` comes within W and already qualifies: time
  without enough requests is unobserved, never healthy, and counts against the RTO as
  a failure would. When no start qualifies before `until`, `recovered: false` and RTO
  null if the stream was seen failing to the end; "no-data" if part of the time after
  its last failing window went unobserved (it may have recovered unseen).
- relapses: every run of failing windows after the recovery, with its start, length
  and failures; the failures after recovery count in `failed_after_fault`.

The computation is vectorised (sorted arrays, `searchsorted`, cumulative sums): no
Python loop per request. `__all__` lists the Chaos Toolkit probe; `rto_table` and
`rto_of` are the library API `probes.measure` uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from infra.errors import ConfigError
from probes.result import failed, record, seconds
from probes.rundir import Fault, read_faults
from probes.timeline import KINDS, Timeline, read_timeline

__all__ = ["client_rto"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int32]
ALL = "all"
#: The figures every RTO entry carries; null when the status is not "ok".
NULL_RTO: dict[str, Any] = {
    "impact": None,
    "recovered": None,
    "rto_seconds": None,
    "recovered_at": None,
    "uncertainty_seconds": None,
    "relapses": None,
}


@dataclass(frozen=True)
class RtoParams:
    """The inputs of the RTO definition; quoted in every result."""

    window_seconds: float = 1.0
    threshold: float = 0.99
    stability_seconds: float = 10.0
    #: A window with fewer requests proves nothing: it counts as unhealthy. 5 requests
    #: in W = 1 s is well below any useful drill load (tens to hundreds per second) and
    #: above the noise of a load generator that stalled.
    min_requests: int = 5

    def __post_init__(self) -> None:
        if not self.window_seconds > 0:
            raise ValueError(f"window_seconds must be > 0 (got {self.window_seconds!r})")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1] (got {self.threshold!r})")
        if not self.stability_seconds >= 0:
            raise ValueError(f"stability_seconds must be >= 0 (got {self.stability_seconds!r})")
        if self.min_requests < 1:
            raise ValueError(f"min_requests must be >= 1 (got {self.min_requests!r})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_health(
    starts: FloatArray, ok: BoolArray, window: float, threshold: float, min_requests: int
) -> tuple[npt.NDArray[np.int64], FloatArray, BoolArray]:
    """Per request start: requests in its forward window, their success ratio, healthy.

    `starts` must be sorted. Requests sharing a start share a window.
    """
    counts, ratio = _windows(starts, ok, window)
    healthy = (counts >= min_requests) & (ratio >= threshold)
    return counts.astype(np.int64), ratio, healthy


#: Rows per step of the per-window arithmetic: the temporaries of a step stay a few
#: tens of MiB however long the stream (docs/measurement.md, "Memory model").
CHUNK_ROWS = 1 << 20


def _windows(starts: FloatArray, ok: BoolArray, window: float) -> tuple[IntArray, FloatArray]:
    """Requests in each start's forward window and their success ratio."""
    counts = np.empty(starts.size, dtype=np.int32)
    ratio = np.empty(starts.size, dtype=np.float64)
    for a, width, part in _window_steps(starts, ok, window):
        counts[a : a + width.size] = width
        ratio[a : a + width.size] = part
    return counts, ratio


def _failing_windows(
    starts: FloatArray, ok: BoolArray, window: float, threshold: float
) -> tuple[IntArray, BoolArray]:
    """Requests in each start's forward window, and whether its ratio is below
    `threshold`: `_windows` without a full-size array of ratios."""
    counts = np.empty(starts.size, dtype=np.int32)
    failing = np.empty(starts.size, dtype=bool)
    for a, width, part in _window_steps(starts, ok, window):
        counts[a : a + width.size] = width
        failing[a : a + width.size] = part < threshold
    return counts, failing


def _window_steps(
    starts: FloatArray, ok: BoolArray, window: float
) -> Iterator[tuple[int, npt.NDArray[np.int64], FloatArray]]:
    """(first index, window sizes, success ratios) of `CHUNK_ROWS` starts at a time."""
    ok_cum = np.concatenate(([0], np.cumsum(ok, dtype=np.int64)))
    for a in range(0, starts.size, CHUNK_ROWS):
        part = starts[a : a + CHUNK_ROWS]
        lo = np.searchsorted(starts, part, side="left")
        hi = np.searchsorted(starts, part + window, side="left")
        width = (hi - lo).astype(np.int64)
        yield a, width, (ok_cum[hi] - ok_cum[lo]) / np.maximum(width, 1)


def earliest_stable(
    starts: FloatArray,
    healthy: BoolArray,
    t_from: float,
    stability: float,
    horizon: float,
    ok: BoolArray | None = None,
) -> int | None:
    """Index of the earliest start >= `t_from` whose next `stability` seconds are healthy.

    Every window starting in `[s, s + stability]` must be healthy, and
    `s + stability <= horizon` (the last window that can be judged). With `ok`, the
    request at `s` must itself have succeeded: in a dense window the last failure alone
    keeps the ratio above the threshold, and recovery is not *at* a failed request.
    None when no start qualifies.
    """
    first = int(np.searchsorted(starts, t_from, side="left"))
    if first >= len(starts):
        return None
    bad_cum = np.concatenate(([0], np.cumsum(~healthy, dtype=np.int64)))
    # Step by step from the fault on: the recovery is usually near it, so the steps
    # after the first hit are never computed.
    for a in range(first, len(starts), CHUNK_ROWS):
        cand = starts[a : a + CHUNK_ROWS]
        lo = np.searchsorted(starts, cand, side="left")
        hi = np.searchsorted(starts, cand + stability, side="right")
        valid = (bad_cum[hi] - bad_cum[lo] == 0) & (cand + stability <= horizon)
        if ok is not None:
            valid &= ok[a : a + CHUNK_ROWS]
        hits = np.flatnonzero(valid)
        if hits.size:
            return a + int(hits[0])
    return None


def _percentiles(latency: FloatArray) -> dict[str, float | None]:
    if latency.size == 0:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(latency, [50, 95, 99])
    return {"p50": seconds(p50, 3), "p95": seconds(p95, 3), "p99": seconds(p99, 3)}


def coverage(t: FloatArray, until: float, window: float) -> BoolArray:
    """Per request start: whether the next start follows within W (no unobserved gap).

    The last start is followed by `until` (the end of the observation): a stream that
    stops before the end leaves the rest of the observation uncovered.
    """
    return np.asarray((_following(t, until) - t) <= window)


def _following(t: FloatArray, until: float) -> FloatArray:
    """The next request start after each one; `until` after the last."""
    return np.append(t[1:], max(until, float(t[-1])) if t.size else until)


@dataclass(frozen=True)
class _Stream:
    """One stream's requests in `[t_f, until]` and the state of each forward window."""

    t: FloatArray
    ok: BoolArray
    counts: IntArray
    healthy: BoolArray
    #: the window holds a failure that puts it below the threshold (however few requests)
    failing: BoolArray
    #: healthy and followed by the next start within W: usable for a stability period
    stable: BoolArray
    #: seconds of each start's span `[t_i, min(t_{i+1}, horizon))` that nothing observed
    unobserved: FloatArray
    fault_at: float
    horizon: float
    window: float

    @property
    def lead(self) -> float:
        """Seconds from the fault to the first request after it."""
        return float(self.t[0] - self.fault_at)

    def lead_unobserved(self) -> float:
        """The lead when it is longer than W (nothing judged it), else 0."""
        return (
            min(self.lead, max(self.horizon - self.fault_at, 0.0))
            if self.lead > self.window
            else 0.0
        )

    def unobserved_in(self, begin: float, end: float) -> float:
        """Unobserved seconds of the spans starting in `[begin, end)` (plus the lead)."""
        span = (self.t >= begin) & (self.t < end)
        lead = self.lead_unobserved() if begin <= self.fault_at else 0.0
        return lead + float(np.sum(self.unobserved[span]))


def _stream(
    t: FloatArray, ok: BoolArray, fault_at: float, until: float, params: RtoParams
) -> _Stream:
    window = params.window_seconds
    counts, failing = _failing_windows(t, ok, window, params.threshold)
    healthy = (counts >= params.min_requests) & ~failing
    horizon = until - window
    n = t.size
    stable = np.empty(n, dtype=bool)
    unobserved = np.empty(n, dtype=np.float64)
    last = max(until, float(t[-1])) if n else until
    for a in range(0, n, CHUNK_ROWS):
        b = min(a + CHUNK_ROWS, n)
        here = t[a:b]
        following = np.append(t[a + 1 : b + 1], last) if b == n else t[a + 1 : b + 1]
        stable[a:b] = healthy[a:b] & ((following - here) <= window)
        span = np.clip(np.minimum(following, horizon) - here, 0.0, None)
        # A window with too few requests and no failure shows nothing; a window that
        # holds requests shows W seconds, and a longer gap to the next start is unseen.
        thin = (counts[a:b] < params.min_requests) & ~failing[a:b]
        unobserved[a:b] = np.where(thin, span, np.clip(span - window, 0.0, None))
    return _Stream(t, ok, counts, healthy, failing, stable, unobserved, fault_at, horizon, window)


def rto_of(
    starts: FloatArray,
    ok: BoolArray,
    latency_ms: FloatArray,
    fault_at: float,
    until: float,
    params: RtoParams,
    latency_until: float | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """The RTO figures of one stream of requests (sorted `starts`) for one fault.

    `until` ends the observation (the last request start of the run, or the next
    fault on this stream's jurisdiction); requests after it are ignored.
    `latency_until` ends the "during the fault" latency window (default `until`; the
    fault's revert when known). `total` is the stream's size when `starts` holds only
    the part a fault needs (`probes.timeline.Stream`). Returns the result dict;
    `status` is "no-data" (with
    `reason`) when the stream cannot show a recovery: no requests after the fault, an
    observation shorter than `stability + W`, no window after the fault holding
    `min_requests` requests, or no recovery while part of the observation after the
    last failing window went unobserved (too few requests, or a gap longer than W).
    """
    window = params.window_seconds
    stability = params.stability_seconds
    size = int(starts.size) if total is None else total
    base: dict[str, Any] = {
        **NULL_RTO,
        "fault_at": seconds(fault_at),
        "observed_until": seconds(until),
        "inputs": {**params.as_dict(), "requests": size},
    }
    end = int(np.searchsorted(starts, until, side="right"))
    begin = int(np.searchsorted(starts, fault_at, side="left"))
    after = end - begin
    base["requests_after_fault"] = after
    if size == 0:
        return failed("no-data", "no requests of this kind and residency", **base)
    if after <= 0:
        return failed("no-data", "no request started at or after the fault", **base)
    if until - fault_at < stability + window:
        return failed(
            "no-data",
            f"observation after the fault ({until - fault_at:.3f} s) is shorter than "
            f"stability + window ({stability + window:g} s)",
            **base,
        )
    # Only requests in [t_f, until] matter: a window judged for recovery ends by `until`.
    t = starts[begin:end]
    good = ok[begin:end]
    lat = latency_ms[begin:end]
    s = _stream(t, good, fault_at, until, params)
    counts, healthy = s.counts, s.healthy
    judged = t + window <= until
    if not (counts[judged] >= params.min_requests).any():
        return failed(
            "no-data",
            f"no window after the fault holds min_requests ({params.min_requests}) "
            f"requests: the request rate is too low for W = {window:g} s",
            **base,
        )
    unobserved_total = s.unobserved_in(fault_at, math.inf)
    base["unobserved_seconds"] = seconds(unobserved_total)
    idx = earliest_stable(t, s.stable, fault_at, stability, s.horizon, good)
    if idx is None:
        hidden = _unobserved_after_last_failure(s)
        if hidden > 0:
            return failed(
                "no-data",
                f"no recovery shown, and {hidden:.3f} s of the observation after the last "
                "failing window went unobserved (too few requests): it may have recovered "
                "unseen",
                **base,
            )
    # No impact only when the stream was seen healthy from the fault on: a first
    # request more than W after the fault leaves that span unobserved, which counts
    # against the RTO exactly as a failure there would.
    impact = not (idx == 0 and s.lead <= window)
    recovered = idx is not None
    t_rec = float(t[idx]) if idx is not None else None
    stop = t_rec if t_rec is not None else until - window  # end of the impact period
    n_stop = int(np.searchsorted(t, stop, side="left"))
    failures = ~good
    fail_idx = np.flatnonzero(failures)
    before_stop = fail_idx[fail_idx < n_stop] if t_rec is not None else fail_idx
    # Brownout: r(u) held from one request start to the next, summed where unhealthy.
    nxt = np.minimum(np.append(t[1:], stop), stop)[:n_stop]
    brownout = float(np.sum((nxt - t[:n_stop])[~healthy[:n_stop]]))
    if n_stop and not healthy[0]:
        # From the fault to the first request after it, the ratio was already the first
        # window's (the window starting just before the fault holds its failures).
        brownout += float(t[0] - fault_at)
    if not impact:
        recovered_at: float | None = fault_at
        rto: float | None = 0.0
        prev = starts[begin - 1] if begin > 0 else fault_at
        uncertainty: float | None = float(t[0] - prev)
    elif t_rec is not None and idx is not None:
        recovered_at, rto = t_rec, t_rec - fault_at
        prev_t = t[idx - 1] if idx > 0 else fault_at
        next_t = t[idx + 1] if idx + 1 < t.size else t_rec
        uncertainty = float(max(t_rec - prev_t, next_t - t_rec))
    else:
        recovered_at = rto = uncertainty = None
    relapses = _relapses(s, idx, until) if idx is not None else None
    lat_end = until if latency_until is None else min(latency_until, until)
    during = lat[t < lat_end]
    judged_stop = judged[:n_stop]
    return record(
        {
            **base,
            "status": "ok",
            "reason": None,
            "impact": bool(impact),
            "recovered": recovered,
            "rto_seconds": seconds(rto),
            "recovered_at": seconds(recovered_at),
            "uncertainty_seconds": seconds(uncertainty),
            "impact_onset_at": seconds(t[fail_idx[0]]) if fail_idx.size else None,
            "last_failure_at": seconds(t[before_stop[-1]]) if before_stop.size else None,
            "last_failure_completed_at": _completed(
                starts[:begin], ok[:begin], latency_ms[:begin], fault_at, t, lat, before_stop
            ),
            "failed": int(before_stop.size),
            "failed_after_fault": int(fail_idx.size),
            "failed_after_recovery": int(fail_idx.size - before_stop.size),
            "relapses": relapses,
            "unobserved_before_recovery_seconds": seconds(
                s.unobserved_in(fault_at, t_rec) if t_rec is not None else unobserved_total
            ),
            # A relapse could hide in time no window watched after the recovery.
            "unobserved_after_recovery_seconds": seconds(
                s.unobserved_in(t_rec, math.inf) if t_rec is not None else None
            ),
            "brownout_seconds": seconds(brownout),
            "unhealthy_windows": {
                "below_threshold": int(
                    np.sum(
                        judged_stop & ~healthy[:n_stop] & (counts[:n_stop] >= params.min_requests)
                    )
                ),
                "too_few_requests": int(
                    np.sum(judged_stop & (counts[:n_stop] < params.min_requests))
                ),
            },
            "requests": after,
            "p99_latency_ms_during_fault": _percentiles(during)["p99"],
            "latency_ms": {
                **_percentiles(during),
                "requests": int(during.size),
                "from": seconds(fault_at),
                "until": seconds(lat_end),
            },
        }
    )


def _unobserved_after_last_failure(s: _Stream) -> float:
    """Unobserved seconds after the last window seen failing (from the fault if none)."""
    seen = np.flatnonzero(s.failing & (s.t <= s.horizon))
    if not seen.size:
        return s.unobserved_in(s.fault_at, math.inf)
    return s.unobserved_in(float(s.t[seen[-1]]), math.inf)


def _relapses(s: _Stream, idx: int, until: float) -> list[dict[str, Any]]:
    """Every return of failures after the recovery at start `idx`.

    A relapse is a maximal run of request starts after the recovery whose windows are
    not stable (unhealthy, or followed by a gap longer than W) and that holds at least
    one failed request; a run with no failure is unobserved time, not a relapse. It
    starts at its first failed request and ends at the first stable start after it
    (`end_at` null, `ongoing` true, when the observation ended first).
    """
    n_h = int(np.searchsorted(s.t, s.horizon, side="right"))
    bad = ~s.stable[idx + 1 : n_h]
    edges = np.diff(np.concatenate(([0], bad.astype(np.int8), [0])))
    out: list[dict[str, Any]] = []
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        first, stop = idx + 1 + int(a), idx + 1 + int(b)
        end_at = float(s.t[stop]) if stop < n_h else None
        if end_at is not None:
            limit = int(np.searchsorted(s.t, end_at, side="left"))
        else:
            limit = int(np.searchsorted(s.t, until, side="right"))
        fails = np.flatnonzero(~s.ok[first:limit])
        if not fails.size:
            continue
        start_at = float(s.t[first + int(fails[0])])
        out.append(
            {
                "start_at": seconds(start_at),
                "end_at": seconds(end_at),
                "length_seconds": seconds((end_at if end_at is not None else until) - start_at),
                "failures": int(fails.size),
                "ongoing": end_at is None,
            }
        )
    return out


def _completed(
    pre_t: FloatArray,
    pre_ok: BoolArray,
    pre_lat: FloatArray,
    fault_at: float,
    t: FloatArray,
    lat: FloatArray,
    idx: npt.NDArray[np.intp],
) -> float | None:
    """When the last failed request of the impact ended (start + latency; start if unknown).

    The impact's failures are `idx` (started after the fault, before recovery) and the
    failures that were in flight at the fault (started before it, ended after it: a
    request caught by a region kill hangs until the router's server time-out). A
    server-side counter records a response when it completes, so this, not the last
    failure's start, is the last instant the router's counters can show the outage.
    None when neither kind of failure exists.
    """
    pre_end = pre_t + np.nan_to_num(pre_lat, nan=0.0) / 1000.0
    caught = pre_end[~pre_ok & (pre_end > fault_at)]
    ends = np.concatenate([caught, t[idx] + np.nan_to_num(lat[idx], nan=0.0) / 1000.0])
    if not ends.size:
        return None
    return seconds(float(np.max(ends)))


def _groups(frame: pd.DataFrame) -> list[tuple[str, str, npt.NDArray[np.intp]]]:
    """(kind, residency, row indices) for every kind and residency, plus kind "all"."""
    out: list[tuple[str, str, npt.NDArray[np.intp]]] = []
    pairs: dict[Any, Any] = frame.groupby(["kind", "residency"], observed=True, sort=False).indices
    by_pair = {(str(k), str(r)): rows for (k, r), rows in pairs.items()}
    by_res = {str(r): rows for r, rows in frame.groupby("residency", observed=True).indices.items()}
    residencies = sorted(by_res)
    kinds = sorted({k for k, _ in by_pair}, key=lambda k: (*KINDS, k).index(k))
    for kind in (*kinds, ALL):
        for res in residencies:
            rows = by_res[res] if kind == ALL else by_pair.get((kind, res))
            if rows is not None:
                out.append((kind, res, np.asarray(rows, dtype=np.intp)))
    return out


def touches(fault: Fault, residency: str, region_jurisdiction: Mapping[str, str]) -> bool:
    """Whether `fault` touches the jurisdiction `residency`; unknown jurisdictions touch all."""
    theirs = fault.jurisdictions(dict(region_jurisdiction))
    return not theirs or residency in theirs


def observation_end(
    faults: Sequence[Fault],
    n: int,
    residency: str,
    end: float,
    region_jurisdiction: Mapping[str, str],
) -> tuple[float, Fault | None]:
    """Where fault `n`'s observation of a `residency` stream ends, and the fault ending it.

    At the next fault that touches the same jurisdiction as fault `n`, or the stream's
    own: a fault elsewhere does not end it (a US kill followed by an EU kill keeps the
    US outage on the US fault). A fault whose jurisdictions are unknown (no topology,
    no `details.jurisdiction`) touches every one. `faults` must be in time order.
    """
    mapping = dict(region_jurisdiction)
    mine = faults[n].jurisdictions(mapping)
    for later in faults[n + 1 :]:
        theirs = later.jurisdictions(mapping)
        if not mine or not theirs or residency in theirs or theirs & mine:
            return min(end, later.applied_at), later
    return end, None


def covering_fault(
    faults: Sequence[Fault],
    n: int,
    residency: str,
    end: float,
    region_jurisdiction: Mapping[str, str],
    starts: FloatArray,
    ok: BoolArray,
    window: float,
) -> str | None:
    """The fault whose entry judges this stream instead of fault `n`'s, if any.

    Only for a fault that does not touch the stream's jurisdiction (its entry is a
    blast-radius check): an earlier fault on the stream's jurisdiction still under
    observation covers the same time; a later one that cut the observation short
    covers it when the stream had no failure and no gap longer than W until then.
    None when the entry is the stream's only judge.
    """
    fault = faults[n]
    if not fault.jurisdictions(dict(region_jurisdiction)) or touches(
        fault, residency, region_jurisdiction
    ):
        return None
    for m in range(n):
        if touches(faults[m], residency, region_jurisdiction):
            until_m, _ = observation_end(faults, m, residency, end, region_jurisdiction)
            if until_m > fault.applied_at:
                return faults[m].id
    until, cut = observation_end(faults, n, residency, end, region_jurisdiction)
    if cut is None or not touches(cut, residency, region_jurisdiction):
        return None
    lo, hi = np.searchsorted(starts, [fault.applied_at, until], side="left")
    edges = np.concatenate(([fault.applied_at], starts[lo:hi], [until]))
    clean = bool(ok[lo:hi].all()) and float(np.max(np.diff(edges))) <= window
    return cut.id if clean else None


def rto_table(
    frame: pd.DataFrame,
    faults: list[Fault],
    params: RtoParams | None = None,
    until: float | None = None,
    region_jurisdiction: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """RTO per fault, per traffic kind (and "all") and per residency.

    Each fault's observation of a stream ends at the next fault that touches the
    fault's jurisdiction or the stream's (`observation_end`; `region_jurisdiction`
    maps the fault targets' regions), or where the timeline ends (`until` overrides
    the end). An entry whose stream is judged by another fault's entry names it in
    `covered_by` (see `covering_fault`); the gates skip it. `frame` must be sorted by
    `t_start` (see `probes.timeline.normalise`).
    """
    params = params or RtoParams()
    mapping = region_jurisdiction or {}
    if frame.empty:
        return []
    starts = frame["t_start"].to_numpy(dtype=np.float64)
    ok = frame["ok"].to_numpy(dtype=bool)
    latency = frame["latency_ms"].to_numpy(dtype=np.float64)
    end = float(starts[-1]) if until is None else until
    groups = _groups(frame)
    table: list[dict[str, Any]] = []
    for n, fault in enumerate(faults):
        for kind, residency, rows in groups:
            fault_until, cut = observation_end(faults, n, residency, end, mapping)
            entry = rto_of(
                starts[rows],
                ok[rows],
                latency[rows],
                fault.applied_at,
                fault_until,
                params,
                latency_until=fault.reverted_at,
            )
            covered = covering_fault(
                faults, n, residency, end, mapping, starts[rows], ok[rows], params.window_seconds
            )
            table.append(
                {
                    "kind": kind,
                    "residency": residency,
                    **fault.describe(),
                    **entry,
                    "observation_ended_by": cut.id if cut is not None else None,
                    "covered_by": covered,
                }
            )
    return table


def rto_table_scan(
    timeline: Timeline,
    faults: list[Fault],
    params: RtoParams | None = None,
    until: float | None = None,
    region_jurisdiction: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """`rto_table` over a timeline queried in place: the same entries, in the same order.

    Each (fault, stream) reads only the rows `rto_of` needs (`Timeline.stream`): the
    stream from the fault to the end of its observation, and a few rows before it.
    """
    params = params or RtoParams()
    mapping = region_jurisdiction or {}
    if timeline.span is None:
        return []
    end = timeline.span[1] if until is None else until
    sizes = timeline.groups()
    by_res = timeline.residency_sizes()
    kinds = sorted({k for k, _, _ in sizes}, key=lambda k: (*KINDS, k).index(k))
    count = {(k, r): n for k, r, n in sizes}
    streams = [
        (kind, res, by_res[res] if kind == ALL else count[(kind, res)])
        for kind in (*kinds, ALL)
        for res in sorted(by_res)
        if kind == ALL or (kind, res) in count
    ]
    table: list[dict[str, Any]] = []
    for n, fault in enumerate(faults):
        for kind, residency, total in streams:
            fault_until, cut = observation_end(faults, n, residency, end, mapping)
            s = timeline.stream(
                None if kind == ALL else kind, residency, total, fault.applied_at, fault_until
            )
            entry = rto_of(
                s.starts,
                s.ok,
                s.latency_ms,
                fault.applied_at,
                fault_until,
                params,
                latency_until=fault.reverted_at,
                total=total,
            )
            covered = covering_fault(
                faults, n, residency, end, mapping, s.starts, s.ok, params.window_seconds
            )
            table.append(
                {
                    "kind": kind,
                    "residency": residency,
                    **fault.describe(),
                    **entry,
                    "observation_ended_by": cut.id if cut is not None else None,
                    "covered_by": covered,
                }
            )
            del s
    return table


def client_rto(
    timeline_path: str,
    fault_at: float | None = None,
    events_path: str = "",
    kind: str = "all",
    residency: str = "all",
    window_seconds: float = 1.0,
    threshold: float = 0.99,
    stability_seconds: float = 10.0,
    min_requests: int = 5,
) -> dict[str, Any]:
    """Measured recovery time (RTO, seconds) of the clients' requests after a fault.

    Reads the load generator's `timeline.parquet`. The fault time is `fault_at`
    (epoch seconds) or, when not given, the first fault recorded in `events_path`
    (a run's `events.jsonl`). `kind` is predict, write, canary or all; `residency` is a
    jurisdiction (us, eu) or all.

    Recovery is the earliest request start after the fault from which every 1 s
    (`window_seconds`) forward window, for `stability_seconds`, holds at least
    `min_requests` requests and a success ratio of at least `threshold`. The result has
    `rto_seconds` (0 with `impact: false` when nothing was affected; null with
    `recovered: false` when it did not recover before the timeline ends),
    `recovered_at`, `uncertainty_seconds`, failures, each relapse after the recovery,
    the seconds no window watched (`unobserved_seconds`: time without enough requests
    is never healthy), brownout seconds and latency percentiles during the fault, and
    `status`: "ok", "no-data" (too few requests, no fault, observation too short, or
    unobserved time where a recovery could have hidden: never a pass) or "error"
    (unreadable input).
    """
    context = {"kind": kind, "residency": residency}
    try:
        params = RtoParams(window_seconds, threshold, stability_seconds, min_requests)
        frame = read_timeline(Path(timeline_path), columns=())
        fault = _fault(fault_at, events_path)
    except (ConfigError, ValueError) as exc:
        return failed("error", str(exc), **context)
    if fault is None:
        return failed("no-data", "no fault time: give fault_at or an events_path", **context)
    mask = np.ones(len(frame), dtype=bool)
    if kind != ALL:
        mask &= (frame["kind"].astype(str) == kind).to_numpy()
    if residency != ALL:
        mask &= (frame["residency"].astype(str) == residency).to_numpy()
    sub = frame[mask]
    end = float(frame["t_start"].iloc[-1]) if len(frame) else fault.applied_at
    entry = rto_of(
        sub["t_start"].to_numpy(dtype=np.float64),
        sub["ok"].to_numpy(dtype=bool),
        sub["latency_ms"].to_numpy(dtype=np.float64),
        fault.applied_at,
        end,
        params,
        latency_until=fault.reverted_at,
    )
    return {**context, **fault.describe(), **entry}


def _fault(fault_at: float | None, events_path: str) -> Fault | None:
    if fault_at is not None:
        return Fault(id="", fault="", target="", applied_at=float(fault_at))
    if events_path:
        faults = read_faults(Path(events_path))
        return faults[0] if faults else None
    return None
