"""What a benchmark returns, and the statistics every benchmark quotes."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BenchResult:
    """One figure of `docs/benchmarks.md`.

    `value` is the median of `samples` (or the single measurement when there is one);
    `how` says how it was measured so a reader can redo it.
    """

    section: str
    name: str
    value: float
    unit: str
    how: str
    target: str = ""
    met: bool | None = None
    samples: list[float] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        section: str,
        name: str,
        samples: list[float],
        unit: str,
        how: str,
        target: str = "",
        limit: float | None = None,
        lower_is_better: bool = True,
    ) -> BenchResult:
        """The median of `samples`; `limit` (if given) decides `met`."""
        value = statistics.median(samples)
        met = None
        if limit is not None:
            met = value <= limit if lower_is_better else value >= limit
        return cls(section, name, value, unit, how, target, met, list(samples))
