"""Period-over-period comparison of two finished reports (current vs previous period).

Works on the reports' merged counts only. Every change is ``current - previous`` in
percentage points (positive = the rate went up), with a 95% Newcombe interval for the
difference and the two-sided p-value of the pooled two-proportion z-test; ``significant``
means p < 0.05 (one test per row, not adjusted for multiplicity).

Rows: ``conversion`` (last step / first step), ``abandonment_rate`` (abandoned / carts) and,
for every step after the first, conversion from the previous step.
"""

from __future__ import annotations

from ..model import Comparison, FunnelResult, Period, Rate, Report, StepChange
from .stats import diff_interval, ratio, two_proportion_test, wilson

ALPHA = 0.05


def _rate(k: int, n: int) -> Rate:
    return Rate(int(k), int(n), ratio(k, n), wilson(k, n))


def step_change(name: str, k1: int, n1: int, k0: int, n0: int) -> StepChange:
    """Change of ``k1/n1`` (current) against ``k0/n0`` (previous), in percentage points."""
    cur, prev = _rate(k1, n1), _rate(k0, n0)
    change = None
    if cur.rate is not None and prev.rate is not None:
        change = round((k1 / n1 - k0 / n0) * 100, 4)
    ci = diff_interval(k1, n1, k0, n0)
    p = two_proportion_test(k1, n1, k0, n0)
    return StepChange(
        name=name, current=cur, previous=prev, change_points=change,
        ci95_points=(round(ci[0] * 100, 4), round(ci[1] * 100, 4)) if ci else None,
        p_value=p, significant=bool(p is not None and p < ALPHA),
    )


def _reached(fn: FunnelResult | None, names: list[str]) -> list[int]:
    if fn is None:
        return [0] * len(names)
    by = {s.name: s.sessions for s in fn.steps}
    return [int(by.get(n, 0)) for n in names]


def compare_reports(current: Report, previous: Report | None, current_period: Period,
                    previous_period: Period) -> Comparison:
    """``Comparison`` of ``current`` against ``previous`` (``None``: the previous period had no
    data — every previous rate is then undefined and no change is computed)."""
    names = [s.name for s in current.funnel.steps]
    now = _reached(current.funnel, names)
    before = _reached(previous.funnel if previous else None, names)
    steps = [step_change(names[i], now[i], now[i - 1], before[i], before[i - 1]) for i in range(1, len(names))]
    ab1 = current.abandonment
    ab0 = previous.abandonment if previous else None
    return Comparison(
        current=current_period,
        previous=previous_period,
        steps=steps,
        abandonment_rate=step_change("abandonment_rate", ab1.abandoned, ab1.carts,
                                     ab0.abandoned if ab0 else 0, ab0.carts if ab0 else 0),
        conversion=step_change("conversion", now[-1], now[0], before[-1], before[0]),
    )


__all__ = ["compare_reports", "step_change"]
