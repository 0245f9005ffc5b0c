"""Statistics of repeated drills, and plain statements of what n drills can show.

Percentiles use linear interpolation between order statistics (numpy's default).
The bootstrap interval is the percentile interval of the mean over `resamples`
resamples drawn with a fixed seed, so the same drills always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20_240_501
# 1 - 0.95**n >= 0.95 first holds at n = 59: only then is the worst of n drills an upper
# bound of the p95 with 95 % confidence.
P95_FROM_MAX_MIN_N = 59


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation; raises ValueError when empty."""
    if not values:
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def bootstrap_ci(
    values: Sequence[float],
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: (low, high); one value gives (v, v)."""
    if not values:
        raise ValueError("bootstrap of no values")
    data = np.asarray(values, dtype=float)
    if len(data) == 1 or np.all(data == data[0]):
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(data), size=(resamples, len(data)))
    means = data[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def failure_rate_upper_bound(failures: int, n: int, confidence: float = 0.95) -> float:
    """Exact (Clopper-Pearson) one-sided upper bound of a failure rate from n trials."""
    if n <= 0:
        return 1.0
    if failures >= n:
        return 1.0
    alpha = 1.0 - confidence

    def cdf(p: float) -> float:
        return sum(math.comb(n, k) * p**k * (1.0 - p) ** (n - k) for k in range(failures + 1))

    low, high = 0.0, 1.0
    for _ in range(100):
        mid = (low + high) / 2.0
        if cdf(mid) > alpha:
            low = mid
        else:
            high = mid
    return high


def max_covers_p95_confidence(n: int) -> float:
    """Probability that the worst of n drills is at or above the true p95: 1 - 0.95**n."""
    return 1.0 - 0.95**n


@dataclass(frozen=True)
class Distribution:
    """Summary of one figure over repeated drills (seconds)."""

    n: int
    median: float
    p95: float
    max: float
    ci_low: float
    ci_high: float
    confidence: float


def distribution(values: Sequence[float], confidence: float = 0.95) -> Distribution:
    """Median, p95, max and the bootstrap interval of the mean of `values` (non-empty)."""
    low, high = bootstrap_ci(values, confidence)
    return Distribution(
        n=len(values),
        median=percentile(values, 50),
        p95=percentile(values, 95),
        max=float(max(values)),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
    )


RULE_OF_THREE_MIN_N = 10


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f} %"


def statements(n: int, failures: int) -> list[str]:
    """What n drills with `failures` failed ones can and cannot show, in plain words."""
    if n == 0:
        return ["No drill in the window: nothing can be said."]
    out: list[str] = []
    if failures == 0 and n >= RULE_OF_THREE_MIN_N:
        out.append(
            f"0 failures in {n} drills: with 95 % confidence the "
            f"failure rate is below 3/{n} = {_pct(3 / n)} (rule of three; exact bound "
            f"{_pct(failure_rate_upper_bound(0, n))})."
        )
    elif failures == 0:
        # 3/n is only a good approximation of the exact bound for larger n (and above
        # 100 % for n < 3): say the exact figure and what it would take.
        out.append(
            f"0 failures in {n} drill{'s' if n != 1 else ''}: with 95 % confidence the "
            f"failure rate is below {_pct(failure_rate_upper_bound(0, n))} (exact binomial "
            f"bound; the rule of three, 3/n, holds from about {RULE_OF_THREE_MIN_N} drills)."
        )
    else:
        out.append(
            f"{failures} failure{'s' if failures != 1 else ''} in {n} drills: observed "
            f"failure rate {_pct(failures / n)}; with 95 % confidence it is below "
            f"{_pct(failure_rate_upper_bound(failures, n))} (exact binomial bound)."
        )
    if n < P95_FROM_MAX_MIN_N:
        out.append(
            f"The worst of {n} drill{'s' if n != 1 else ''} is an upper bound of the p95 "
            f"RTO with only {max_covers_p95_confidence(n) * 100:.0f} % confidence; it takes "
            f"{P95_FROM_MAX_MIN_N} drills to reach 95 %."
        )
    else:
        out.append(
            f"The worst of {n} drills bounds the p95 RTO with "
            f"{_pct(max_covers_p95_confidence(n))} confidence (95 % needs 59 or more)."
        )
    if n < 2:
        out.append("One drill shows one outcome: no spread, no interval.")
    return out
