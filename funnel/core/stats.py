"""Statistics on merged counts (never on rows): Wilson intervals, two-proportion tests,
risk ratios with Katz log intervals, Benjamini-Hochberg, quantiles from log-spaced histograms."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Wilson score interval for k successes out of n (None when n == 0)."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6))


def ratio(k: int, n: int) -> float | None:
    return round(k / n, 6) if n > 0 else None


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def two_proportion_test(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test (None when undefined)."""
    if n1 <= 0 or n2 <= 0:
        return None
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (k1 / n1 - k2 / n2) / se
    return round(2 * (1 - _phi(abs(z))), 8)


def diff_interval(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Newcombe (Wilson-based) interval for p1 - p2."""
    a, b = wilson(k1, n1, z), wilson(k2, n2, z)
    if a is None or b is None:
        return None
    p1, p2 = k1 / n1, k2 / n2
    d = p1 - p2
    lo = d - math.sqrt((p1 - a[0]) ** 2 + (b[1] - p2) ** 2)
    hi = d + math.sqrt((a[1] - p1) ** 2 + (p2 - b[0]) ** 2)
    return (round(lo, 6), round(hi, 6))


def risk_ratio(k1: int, n1: int, k2: int, n2: int, z: float = Z95
               ) -> tuple[float | None, tuple[float, float] | None]:
    """(p1/p2, Katz log 95% interval), with a 0.5 continuity correction when a count is 0."""
    if n1 <= 0 or n2 <= 0:
        return None, None
    if k1 == 0 or k2 == 0:
        k1, k2, n1, n2 = k1 + 0.5, k2 + 0.5, n1 + 0.5, n2 + 0.5
    rr = (k1 / n1) / (k2 / n2)
    se = math.sqrt(max(0.0, 1 / k1 - 1 / n1 + 1 / k2 - 1 / n2))
    return round(rr, 6), (round(rr * math.exp(-z * se), 6), round(rr * math.exp(z * se), 6))


def benjamini_hochberg(pvalues: list[float | None]) -> list[float | None]:
    """BH-adjusted q-values, same order as the input; None stays None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    if not m:
        return out
    order = sorted(idx, key=lambda i: pvalues[i])  # type: ignore[arg-type,return-value]
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, pvalues[i] * m / rank)  # type: ignore[operator]
        out[i] = round(min(1.0, running), 8)
    return out


# Fixed log-spaced histogram buckets for durations (seconds), shared by every shard so that
# histograms merge by addition. Upper edges: 1 s .. ~27 days (10^6.375 s), 64 buckets per
# decade (3.7% apart) for the quantiles; the charts show them 8 to a decade (``shown``). With
# each bucket's smallest and largest value (``min_seconds``/``max_seconds`` in the partials,
# merged by min/max), a quantile lies between values that occur: exact where a bucket holds one
# value, never past the largest.
BUCKETS_PER_DECADE = 64
SHOWN_PER_DECADE = 8
BUCKET_UPPER: tuple[float, ...] = tuple(
    round(10 ** (i / BUCKETS_PER_DECADE), 6) for i in range(51 * BUCKETS_PER_DECADE // 8 + 1)
)
_SHOWN = BUCKETS_PER_DECADE // SHOWN_PER_DECADE
SHOWN_UPPER: tuple[float, ...] = BUCKET_UPPER[::_SHOWN]


def shown(counts: list[int]) -> list[int]:
    """Counts per ``BUCKET_UPPER`` bucket regrouped into the charts' ``SHOWN_UPPER`` buckets
    (each shown bucket is exactly ``_SHOWN`` of them: the edges coincide)."""
    out = [0] * len(SHOWN_UPPER)
    for i, c in enumerate(counts):
        out[-(-i // _SHOWN)] += c
    return out


def histogram_quantile(counts: list[int], q: float, lows: list[float | None] | None = None,
                       highs: list[float | None] | None = None) -> float | None:
    """Quantile from bucket counts aligned with BUCKET_UPPER, log-interpolated in the bucket
    between its edges, narrowed to the smallest and largest value seen in it (``lows`` and
    ``highs``, per bucket, when known)."""
    total = sum(counts)
    if total == 0:
        return None
    target = q * total
    cum = 0
    for i, c in enumerate(counts):
        if c and cum + c >= target:
            hi = BUCKET_UPPER[min(i, len(BUCKET_UPPER) - 1)]
            lo = BUCKET_UPPER[i - 1] if i > 0 else 0.0
            if lows is not None and highs is not None and lows[i] is not None and highs[i] is not None:
                lo, hi = max(lo, lows[i]), min(hi, highs[i])
                if i == len(counts) - 1:   # (the last bucket also holds every longer value)
                    hi = highs[i]
            frac = (target - cum) / c
            if hi <= lo:
                return round(lo, 3)
            if lo <= 0:
                return round(lo + (hi - lo) * frac, 3)
            return round(lo * (hi / lo) ** frac, 3)
        cum += c
    return BUCKET_UPPER[-1]
