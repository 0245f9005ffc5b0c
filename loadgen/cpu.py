"""CPU use of the generator's processes, read from /proc (no psutil).

`CpuSampler.sample` is called about every 0.5 s with the pids; a process's use is its
user+system CPU time over wall time, in % of one core, averaged over a sliding window of
at least `window_s` (1 s) so one busy half second does not decide saturation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["SATURATION_PERCENT", "CpuSampler", "CpuSummary", "cpu_seconds"]

SATURATION_PERCENT = 90.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User+system CPU seconds `pid` has used so far (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces or parentheses); utime and
    # stime are fields 14 and 15 of proc(5), i.e. 11 and 12 after the state field.
    fields = raw.rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


@dataclass(frozen=True)
class CpuSummary:
    """`max_percent`: the highest windowed use of any one process; `mean_percent`: the
    mean use of the busiest process over the sampled time (both in % of one core)."""

    max_percent: float
    mean_percent: float
    per_process: dict[str, dict[str, float]]
    samples: int

    @property
    def saturated(self) -> bool:
        """True when a process passed SATURATION_PERCENT of one core."""
        return self.max_percent > SATURATION_PERCENT


@dataclass
class _History:
    points: list[tuple[float, float]] = field(default_factory=list)
    busy_s: float = 0.0
    wall_s: float = 0.0
    max_percent: float = 0.0


class CpuSampler:
    """Collects samples; only samples taken while `active` count (start-up imports and the
    final timeline merge are not load generation)."""

    def __init__(
        self,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        reader: Callable[[int], float | None] = cpu_seconds,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._reader = reader
        self._history: dict[str, _History] = {}
        self.samples = 0

    def sample(self, pids: Mapping[str, int], active: bool) -> None:
        """Read every process once; inactive samples break the windows."""
        now = self._clock()
        if active:
            self.samples += 1
        for name, pid in pids.items():
            history = self._history.setdefault(name, _History())
            used = self._reader(pid)
            if used is None or not active:
                history.points = []
                continue
            if history.points:
                last_t, last_used = history.points[-1]
                history.busy_s += used - last_used
                history.wall_s += now - last_t
            history.points.append((now, used))
            # The newest point at least `window_s` old gives the windowed use.
            older = [p for p in history.points if now - p[0] >= self.window_s - 1e-9]
            if older:
                t0, used0 = older[-1]
                history.max_percent = max(history.max_percent, 100.0 * (used - used0) / (now - t0))
                history.points = history.points[history.points.index(older[-1]) :]

    def summary(self) -> CpuSummary:
        """The figures so far."""
        per_process = {
            name: {
                "max_percent": round(h.max_percent, 1),
                "mean_percent": round(100.0 * h.busy_s / h.wall_s, 1) if h.wall_s else 0.0,
            }
            for name, h in self._history.items()
        }
        max_percent = max((p["max_percent"] for p in per_process.values()), default=0.0)
        mean_percent = max((p["mean_percent"] for p in per_process.values()), default=0.0)
        return CpuSummary(max_percent, mean_percent, per_process, self.samples)
