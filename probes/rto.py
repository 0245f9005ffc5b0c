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
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from infra.errors import ConfigError
from probes.result import failed, record, seconds
from probes.rundir import Fault, read_faults
from probes.timeline import KINDS, Timeline, Unsorted, read_timeline

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
#: tens of MiB however long the stream (docs/measurement.md, "Scale: the memory model").
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


#: Request starts a frame of the RTO scan owns (`_frames`): per-window arrays are built
#: one frame at a time, so a stream of any length needs memory for one frame and its
#: look-ahead only (docs/measurement.md, "Scale: the memory model").
FRAME_ROWS = 1 << 20


class Spread(Protocol):
    """Latency percentiles of the requests a scan adds, as `_percentiles` gives them
    (with `requests`, their count)."""

    def add(self, latency_ms: FloatArray) -> None: ...

    def result(self) -> dict[str, Any]: ...


class HeldSpread:
    """`Spread` over the values themselves, kept: numpy's percentiles."""

    def __init__(self) -> None:
        self._parts: list[FloatArray] = []

    def add(self, latency_ms: FloatArray) -> None:
        self._parts.append(latency_ms.copy())

    def result(self) -> dict[str, Any]:
        during = np.concatenate(self._parts) if self._parts else np.empty(0)
        return {**_percentiles(during), "requests": int(during.size)}


#: A sorted run of requests of one stream: starts, `ok`, latencies (ms, NaN unknown).
Block = tuple[FloatArray, BoolArray, FloatArray]
#: An RTO entry, and whether its stream was clean over the observation (`rto_scan`).
Scanned = tuple[dict[str, Any], bool]


def _frames(blocks: Iterable[Block], lookahead: float) -> Iterator[tuple[Block, int]]:
    """Cut the rows of `blocks` (sorted by start, arriving in any sizes) into frames.

    Yields `(rows, own)`: the first `own` rows are the frame's; the rest reach at
    least `lookahead` seconds past the first row after them and only serve to judge the
    frame's own (a window, the next start, a stability period). A frame never splits
    rows sharing a start. The cuts depend only on the rows, never on how they arrived,
    so every reader of the same stream computes on the same frames. The last frame owns
    all its rows.
    """
    rows: Block = (np.empty(0), np.empty(0, dtype=bool), np.empty(0))
    pending: list[Block] = []
    held, need = 0, FRAME_ROWS + 1
    for block in blocks:
        if not block[0].size:
            continue
        pending.append(block)
        held += int(block[0].size)
        if held < need:
            continue
        rows = _join([rows, *pending])
        pending = []
        rows = yield from _cut_frames(rows, lookahead)
        held = int(rows[0].size)
        # Wait for twice as many rows when a look-ahead is missing: each row is copied a
        # bounded number of times however sparse the stream.
        need = max(FRAME_ROWS + 1, 2 * held)
    rows = yield from _cut_frames(_join([rows, *pending]), lookahead)
    if rows[0].size:
        yield rows, int(rows[0].size)


def _cut_frames(rows: Block, lookahead: float) -> Generator[tuple[Block, int], None, Block]:
    """Yield every frame `rows` holds with its look-ahead; return the rows left."""
    t, ok, lat = rows
    pos = 0
    while (cut := _cut(t[pos:], lookahead)) is not None:
        own, end = cut
        yield (t[pos : pos + end], ok[pos : pos + end], lat[pos : pos + end]), own
        pos += own
    return t[pos:], ok[pos:], lat[pos:]


def _join(parts: list[Block]) -> Block:
    """The rows of `parts` as one block (without a copy when only one holds rows)."""
    full = [p for p in parts if p[0].size]
    if len(full) <= 1:
        return full[0] if full else parts[0]
    return (
        np.concatenate([p[0] for p in full]),
        np.concatenate([p[1] for p in full]),
        np.concatenate([p[2] for p in full]),
    )


def _cut(t: FloatArray, lookahead: float) -> tuple[int, int] | None:
    """(rows owned, rows in the frame) of a frame cut from the front of `t`, or None
    while `t` lacks the rows to own `FRAME_ROWS` or their look-ahead."""
    if t.size <= FRAME_ROWS:
        return None
    own = int(np.searchsorted(t, t[FRAME_ROWS - 1], side="right"))
    if own >= t.size:
        return None
    reach = int(np.searchsorted(t, t[own] + lookahead, side="left"))
    if reach >= t.size:
        return None
    return own, reach + 1


class _Scan:
    """The running figures of `rto_of` over a stream's frames, in start order.

    Everything `rto_of` reports is a sum, a count, an extremum or a run over the rows,
    so it is carried from frame to frame: the result does not depend on the frames'
    sizes. Rows are numbered from the fault (`n` rows seen so far).
    """

    def __init__(
        self, fault_at: float, until: float, params: RtoParams, lat_end: float, spread: Spread
    ) -> None:
        self.fault_at, self.until, self.params, self.lat_end = fault_at, until, params, lat_end
        self.horizon = until - params.window_seconds
        self.n = 0
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.enough = False  # some judged window holds min_requests requests
        self.unobserved = 0.0
        self.unobserved_pre = 0.0  # of the rows before the recovery
        self.unobserved_after = 0.0  # of the rows from the recovery on
        self.seen_failing = False
        self.since_failing = 0.0  # unobserved from the last window seen failing on
        self.fails = 0
        self.first_fail: float | None = None
        # The impact: rows before the recovery (all rows while none is found).
        self.impact_fails = 0
        self.impact_last_fail: float | None = None
        self.impact_last_end: float | None = None
        self.brownout = 0.0
        self.below = 0
        self.too_few = 0
        self.idx: int | None = None
        self.t_rec = self.prev_t = self.next_t = math.nan
        # Relapses: the run of unstable starts being read, if any.
        self.relapses: list[dict[str, Any]] = []
        self.run_open = False
        self.run_fails = 0
        self.run_first_fail: float | None = None
        self.past_horizon = False
        # Whether the stream had no failure and no gap over W in [fault_at, until).
        self.clean = True
        self.edge = fault_at
        self.spread = spread

    def feed(self, rows: Block, own: int) -> None:
        t, ok, lat = rows
        p = self.params
        s = _stream(t, ok, self.fault_at, self.until, p)
        mine, good = t[:own], ok[:own]
        if self.first_t is None:
            self.first_t = float(t[0])
        judged = mine + p.window_seconds <= self.until
        self.enough = self.enough or bool(np.any(judged & (s.counts[:own] >= p.min_requests)))
        unobserved = s.unobserved[:own]
        total = float(np.sum(unobserved))
        self.unobserved += total
        seen = np.flatnonzero(s.failing[:own] & (mine <= self.horizon))
        if seen.size:
            since = int(np.searchsorted(mine, mine[seen[-1]], side="left"))
            self.since_failing = float(np.sum(unobserved[since:]))
            self.seen_failing = True
        else:
            self.since_failing += total
        fails = np.flatnonzero(~good)
        if fails.size and self.first_fail is None:
            self.first_fail = float(mine[fails[0]])
        self.fails += int(fails.size)
        self.observe(mine, good)
        self.spread.add(lat[:own][mine < self.lat_end])
        if self.idx is None:
            self._impact(t, ok, lat, s, own, fails, unobserved)
        else:
            self.unobserved_after += total
            self._relapse_rows(t, ok, s.stable, 0, own)
        self.n += own
        self.last_t = float(mine[-1])

    def observe(self, mine: FloatArray, good: BoolArray) -> None:
        """Carry `clean` over the next rows (the gap to `until` is the caller's)."""
        cut = int(np.searchsorted(mine, self.until, side="left"))
        if not cut:
            return
        self.clean = self.clean and bool(good[:cut].all())
        gaps = np.diff(np.concatenate(([self.edge], mine[:cut])))
        if gaps.size and float(np.max(gaps)) > self.params.window_seconds:
            self.clean = False
        self.edge = float(mine[cut - 1])

    def _impact(
        self,
        t: FloatArray,
        ok: BoolArray,
        lat: FloatArray,
        s: _Stream,
        own: int,
        fails: npt.NDArray[np.intp],
        unobserved: FloatArray,
    ) -> None:
        """Look for the recovery among the frame's own rows; add up the impact before it."""
        p = self.params
        hit = earliest_stable(t, s.stable, self.fault_at, p.stability_seconds, s.horizon, ok)
        found = hit is not None and hit < own
        mine = t[:own]
        stop = float(t[hit]) if found and hit is not None else self.horizon
        n_stop = int(np.searchsorted(mine, stop, side="left"))
        healthy = s.healthy[:n_stop]
        # Brownout: r(u) held from one request start to the next, summed where unhealthy.
        nxt = np.minimum(np.append(t[1:], stop)[:n_stop], stop)
        self.brownout += float(np.sum((nxt - t[:n_stop])[~healthy]))
        if self.n == 0 and n_stop and not healthy[0]:
            # From the fault to the first request after it, the ratio was already the
            # first window's (the window starting just before the fault holds its failures).
            self.brownout += float(t[0] - self.fault_at)
        judged = t[:n_stop] + p.window_seconds <= self.until
        enough = s.counts[:n_stop] >= p.min_requests
        self.below += int(np.sum(judged & ~healthy & enough))
        self.too_few += int(np.sum(judged & ~enough))
        impact = fails[fails < n_stop] if found else fails
        if impact.size:
            self.impact_fails += int(impact.size)
            self.impact_last_fail = float(mine[impact[-1]])
            ends = float(np.max(mine[impact] + np.nan_to_num(lat[impact], nan=0.0) / 1000.0))
            last = self.impact_last_end
            self.impact_last_end = ends if last is None else max(last, ends)
        if not found or hit is None:
            self.unobserved_pre += float(np.sum(unobserved))
            return
        self.unobserved_pre += float(np.sum(unobserved[:n_stop]))
        self.unobserved_after += float(np.sum(unobserved[n_stop:]))
        self.idx = self.n + hit
        self.t_rec = float(t[hit])
        if hit:
            self.prev_t = float(t[hit - 1])
        else:
            self.prev_t = self.last_t if self.last_t is not None else self.fault_at
        self.next_t = float(t[hit + 1]) if hit + 1 < t.size else self.t_rec
        self._relapse_rows(t, ok, s.stable, hit + 1, own)

    def _relapse_rows(
        self, t: FloatArray, ok: BoolArray, stable: BoolArray, at: int, own: int
    ) -> None:
        """Read the runs of unstable starts in rows `[at, own)` (see `rto_of`: relapses)."""
        if self.past_horizon:
            if self.run_open:
                self._count(t, ok, at, own)
            return
        hi = max(at, int(np.searchsorted(t[:own], self.horizon, side="right")))
        reached = hi < own  # the last start that can be judged is in this frame
        bad = ~stable[at:hi]
        if self.run_open and (not bad.size or not bad[0]):
            if bad.size:
                self._end_run(t, ok, at, at)
            elif reached:
                self._count(t, ok, at, own)
        edges = np.diff(np.concatenate(([0], bad.astype(np.int8), [0])))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            first, stop = at + int(a), at + int(b)
            if not (self.run_open and first == at):
                self.run_open, self.run_fails, self.run_first_fail = True, 0, None
            if stop < hi:
                self._end_run(t, ok, first, stop)
            else:
                # Open at the frame's end, or at the horizon: then it is still going on at
                # the end of the observation, and every later failure is its own.
                self._count(t, ok, first, own)
        self.past_horizon = reached

    def _count(self, t: FloatArray, ok: BoolArray, a: int, b: int) -> None:
        fails = np.flatnonzero(~ok[a:b])
        if fails.size:
            if self.run_first_fail is None:
                self.run_first_fail = float(t[a + int(fails[0])])
            self.run_fails += int(fails.size)

    def _end_run(self, t: FloatArray, ok: BoolArray, first: int, stop: int) -> None:
        """The open run ends at the stable start `stop`: its failures are those before
        the first request sharing that start."""
        end_at = float(t[stop])
        limit = int(np.searchsorted(t, end_at, side="left"))
        self._count(t, ok, first, max(first, limit))
        self._close(end_at)

    def _close(self, end_at: float | None) -> None:
        if self.run_open and self.run_fails and self.run_first_fail is not None:
            start_at = self.run_first_fail
            self.relapses.append(
                {
                    "start_at": seconds(start_at),
                    "end_at": seconds(end_at),
                    "length_seconds": seconds(
                        (end_at if end_at is not None else self.until) - start_at
                    ),
                    "failures": self.run_fails,
                    "ongoing": end_at is None,
                }
            )
        self.run_open = False

    def lead_unobserved(self) -> float:
        """Seconds from the fault to the first request after it, when longer than W."""
        lead = float(self.first_t if self.first_t is not None else self.until) - self.fault_at
        w = self.params.window_seconds
        return min(lead, max(self.horizon - self.fault_at, 0.0)) if lead > w else 0.0


def rto_of(
    starts: FloatArray,
    ok: BoolArray,
    latency_ms: FloatArray,
    fault_at: float,
    until: float,
    params: RtoParams,
    latency_until: float | None = None,
) -> dict[str, Any]:
    """The RTO figures of one stream of requests (sorted `starts`) for one fault.

    `until` ends the observation (the last request start of the run, or the next
    fault on this stream's jurisdiction); requests after it are ignored.
    `latency_until` ends the "during the fault" latency window (default `until`; the
    fault's revert when known). See `rto_scan` for the statuses.
    """
    return _scan_held((starts, ok, latency_ms), fault_at, until, params, latency_until)[0]


def _scan_held(
    rows: Block, fault_at: float, until: float, params: RtoParams, latency_until: float | None
) -> Scanned:
    """`rto_scan` of a whole stream already in memory (sorted by start)."""
    starts, ok, latency_ms = rows
    begin = int(np.searchsorted(starts, fault_at, side="left"))
    end = int(np.searchsorted(starts, until, side="right"))
    before = (starts[:begin], ok[:begin], latency_ms[:begin])
    window = (starts[begin:end], ok[begin:end], latency_ms[begin:end])
    return rto_scan(before, [window], fault_at, until, params, int(starts.size), latency_until)


def rto_scan(
    before: Block,
    blocks: Iterable[Block],
    fault_at: float,
    until: float,
    params: RtoParams,
    total: int,
    latency_until: float | None = None,
    spread: Spread | None = None,
) -> Scanned:
    """The RTO figures of one stream for one fault, read frame by frame; and whether the
    stream was clean over the observation (`covering_fault`).

    `blocks` holds the stream's requests started in `[fault_at, until]`, sorted, in
    blocks of any size; `before` its requests before the fault, at least the last one
    and the failures possibly still in flight at the fault; `total` the stream's size.
    `spread` takes the latencies of the requests started before `latency_until` and
    gives their percentiles (default `HeldSpread`: numpy's, over values it keeps).
    `status` is "no-data" (with `reason`) when the stream cannot show a recovery: no
    requests after the fault, an observation shorter than `stability + W`, no window
    after the fault holding `min_requests` requests, or no recovery while part of the
    observation after the last failing window went unobserved (too few requests, or a
    gap longer than W). Memory: one frame (`FRAME_ROWS` rows and `stability + 2 W`
    seconds of look-ahead), whatever the stream's length.
    """
    window = params.window_seconds
    stability = params.stability_seconds
    lat_end = until if latency_until is None else min(latency_until, until)
    base: dict[str, Any] = {
        **NULL_RTO,
        "fault_at": seconds(fault_at),
        "observed_until": seconds(until),
        "inputs": {**params.as_dict(), "requests": total},
    }
    scan = _Scan(fault_at, until, params, lat_end, spread or HeldSpread())
    short = total == 0 or until - fault_at < stability + window
    if short:
        # Nothing to judge: the rows are only counted (and checked for `covering_fault`).
        for t, ok, _lat in blocks:
            scan.n += int(t.size)
            scan.observe(t, ok)
    else:
        for rows, own in _frames(blocks, stability + 2 * window):
            scan.feed(rows, own)
    clean = scan.clean and until - scan.edge <= window
    base["requests_after_fault"] = scan.n
    if total == 0:
        return failed("no-data", "no requests of this kind and residency", **base), clean
    if scan.n <= 0:
        return failed("no-data", "no request started at or after the fault", **base), clean
    if short:
        return failed(
            "no-data",
            f"observation after the fault ({until - fault_at:.3f} s) is shorter than "
            f"stability + window ({stability + window:g} s)",
            **base,
        ), clean
    return _finish(scan, before, base), clean


def _finish(scan: _Scan, before: Block, base: dict[str, Any]) -> dict[str, Any]:
    """The entry of a stream read to its end."""
    p = scan.params
    window = p.window_seconds
    fault_at = scan.fault_at
    if not scan.enough:
        return failed(
            "no-data",
            f"no window after the fault holds min_requests ({p.min_requests}) "
            f"requests: the request rate is too low for W = {window:g} s",
            **base,
        )
    unobserved_total = scan.lead_unobserved() + scan.unobserved
    base["unobserved_seconds"] = seconds(unobserved_total)
    if scan.idx is None:
        hidden = scan.since_failing if scan.seen_failing else unobserved_total
        if hidden > 0:
            return failed(
                "no-data",
                f"no recovery shown, and {hidden:.3f} s of the observation after the last "
                "failing window went unobserved (too few requests): it may have recovered "
                "unseen",
                **base,
            )
    first_t = float(scan.first_t if scan.first_t is not None else fault_at)
    # No impact only when the stream was seen healthy from the fault on: a first
    # request more than W after the fault leaves that span unobserved, which counts
    # against the RTO exactly as a failure there would.
    impact = not (scan.idx == 0 and first_t - fault_at <= window)
    recovered = scan.idx is not None
    t_rec = scan.t_rec if recovered else None
    uncertainty: float | None
    if not impact:
        recovered_at: float | None = fault_at
        rto: float | None = 0.0
        uncertainty = first_t - (float(before[0][-1]) if before[0].size else fault_at)
    elif t_rec is not None:
        recovered_at, rto = t_rec, t_rec - fault_at
        uncertainty = max(t_rec - scan.prev_t, scan.next_t - t_rec)
    else:
        recovered_at = rto = uncertainty = None
    relapses: list[dict[str, Any]] | None = None
    if recovered:
        scan._close(None)
        relapses = scan.relapses
    spread = scan.spread.result()
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
            "impact_onset_at": seconds(scan.first_fail),
            "last_failure_at": seconds(scan.impact_last_fail),
            "last_failure_completed_at": _completed(before, fault_at, scan.impact_last_end),
            "failed": scan.impact_fails,
            "failed_after_fault": scan.fails,
            "failed_after_recovery": scan.fails - scan.impact_fails,
            "relapses": relapses,
            "unobserved_before_recovery_seconds": seconds(
                scan.lead_unobserved() + scan.unobserved_pre
                if t_rec is not None
                else unobserved_total
            ),
            # A relapse could hide in time no window watched after the recovery.
            "unobserved_after_recovery_seconds": seconds(
                scan.unobserved_after if t_rec is not None else None
            ),
            "brownout_seconds": seconds(scan.brownout),
            "unhealthy_windows": {
                "below_threshold": scan.below,
                "too_few_requests": scan.too_few,
            },
            "requests": scan.n,
            "p99_latency_ms_during_fault": spread["p99"],
            "latency_ms": {
                "p50": spread["p50"],
                "p95": spread["p95"],
                "p99": spread["p99"],
                "requests": spread["requests"],
                "from": seconds(fault_at),
                "until": seconds(scan.lat_end),
            },
        }
    )


def _completed(before: Block, fault_at: float, impact_end: float | None) -> float | None:
    """When the last failed request of the impact ended (start + latency; start if unknown).

    The impact's failures are those started after the fault, before recovery (the
    latest of their ends is `impact_end`) and the failures that were in flight at the
    fault (started before it, ended after it: a request caught by a region kill hangs
    until the router's server time-out). A server-side counter records a response when
    it completes, so this, not the last failure's start, is the last instant the
    router's counters can show the outage. None when neither kind of failure exists.
    """
    pre_t, pre_ok, pre_lat = before
    pre_end = pre_t + np.nan_to_num(pre_lat, nan=0.0) / 1000.0
    caught = pre_end[~pre_ok & (pre_end > fault_at)]
    ends = [float(np.max(caught))] if caught.size else []
    if impact_end is not None:
        ends.append(impact_end)
    return seconds(max(ends)) if ends else None


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
    clean: bool,
) -> str | None:
    """The fault whose entry judges this stream instead of fault `n`'s, if any.

    Only for a fault that does not touch the stream's jurisdiction (its entry is a
    blast-radius check): an earlier fault on the stream's jurisdiction still under
    observation covers the same time; a later one that cut the observation short
    covers it when the stream was `clean` until then: no failure and no gap longer than
    W from fault `n` to the cut (`rto_scan` tells). None when the entry is the stream's
    only judge.
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
    _, cut = observation_end(faults, n, residency, end, region_jurisdiction)
    if cut is None or not touches(cut, residency, region_jurisdiction):
        return None
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
    streams = {(kind, res): rows for kind, res, rows in _groups(frame)}

    def measure(kind: str, residency: str, fault: Fault, fault_until: float) -> Scanned:
        rows = streams[(kind, residency)]
        held = (starts[rows], ok[rows], latency[rows])
        return _scan_held(held, fault.applied_at, fault_until, params, fault.reverted_at)

    return _entries(faults, list(streams), end, mapping, measure)


def _entries(
    faults: Sequence[Fault],
    streams: Sequence[tuple[str, str]],
    end: float,
    mapping: Mapping[str, str],
    measure: Callable[[str, str, Fault, float], Scanned],
) -> list[dict[str, Any]]:
    """The RTO table: per fault, per (kind, residency) stream in order, the entry
    `measure` gives for the fault observed until `observation_end`, and who covers it."""
    table: list[dict[str, Any]] = []
    for n, fault in enumerate(faults):
        for kind, residency in streams:
            fault_until, cut = observation_end(faults, n, residency, end, mapping)
            entry, clean = measure(kind, residency, fault, fault_until)
            table.append(
                {
                    "kind": kind,
                    "residency": residency,
                    **fault.describe(),
                    **entry,
                    "observation_ended_by": cut.id if cut is not None else None,
                    "covered_by": covering_fault(faults, n, residency, end, mapping, clean),
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

    Each (fault, stream) is read from the fault to the end of its observation, one
    batch at a time (`Timeline.blocks`), with a few rows before it (`Timeline.before`):
    memory stays that of one frame (`rto_scan`) however long the run.
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
    streams = {
        (kind, res): by_res[res] if kind == ALL else count[(kind, res)]
        for kind in (*kinds, ALL)
        for res in sorted(by_res)
        if kind == ALL or (kind, res) in count
    }

    def measure(kind: str, residency: str, fault: Fault, fault_until: float) -> Scanned:
        total = streams[(kind, residency)]
        stream_kind = None if kind == ALL else kind
        return _scan_stream(timeline, stream_kind, residency, total, fault, fault_until, params)

    return _entries(faults, list(streams), end, mapping, measure)


def _scan_stream(
    timeline: Timeline,
    kind: str | None,
    residency: str,
    total: int,
    fault: Fault,
    until: float,
    params: RtoParams,
) -> Scanned:
    """`rto_scan` of one stream of `timeline`, read in the file's order while it is
    sorted there, else (rarely: a merged or hand-made file) sorted by the engine."""
    before = timeline.before(kind, residency, fault.applied_at)
    lat_end = until if fault.reverted_at is None else min(fault.reverted_at, until)

    for ordered in (False, True):
        blocks = timeline.blocks(kind, residency, fault.applied_at, until, ordered=ordered)
        try:
            return rto_scan(
                before,
                blocks,
                fault.applied_at,
                until,
                params,
                total,
                latency_until=fault.reverted_at,
                spread=timeline.spread(kind, residency, fault.applied_at, lat_end, until),
            )
        except Unsorted:
            continue
    raise AssertionError("unreachable: the engine's order is sorted")


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
