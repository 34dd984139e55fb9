"""Shared number formatting for every renderer (terminal, Markdown, HTML via Jinja2 filters).

Pure functions of plain numbers; every one returns ``"n/a"`` for a missing value (None, NaN,
infinity) so a report never prints ``nan%``. Rates are fractions (0.7019 -> ``70.2%``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

NA = "n/a"


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def fmt_int(v: float | None) -> str:
    """Thousands-separated whole number: ``12,345``."""
    return NA if _missing(v) else f"{int(round(v)):,}"  # type: ignore[arg-type]


def fmt_counts(counts: Sequence) -> str:
    """Counts per key (``model.Count``: rejected rows per cause): ``duplicate 1, missing_id 2``."""
    return ", ".join(f"{c.key} {fmt_int(c.count)}" for c in counts)


def fmt_pct(v: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.7019`` -> ``70.2%``."""
    return NA if _missing(v) else f"{v * 100:.{digits}f}%"  # type: ignore[operator]


def fmt_ci(ci: Sequence[float] | None, digits: int = 1) -> str:
    """A 95% interval of a fraction: ``(0.68, 0.71)`` -> ``68.0–71.0%``."""
    if not ci or len(ci) != 2 or _missing(ci[0]) or _missing(ci[1]):
        return NA
    return f"{ci[0] * 100:.{digits}f}–{ci[1] * 100:.{digits}f}%"


def fmt_money(v: float | None, currency: str | None = "") -> str:
    """An amount with its currency code after it; cents only below 100: ``168,000 EUR``."""
    if _missing(v):
        return NA
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"  # type: ignore[arg-type]
    return f"{text} {currency}" if currency else text


def fmt_seconds(v: float | None) -> str:
    """A duration in the largest fitting unit: ``45 s``, ``2.5 min``, ``1.2 h``, ``3.0 d``."""
    if _missing(v):
        return NA
    if v < 60:  # type: ignore[operator]
        return f"{v:.0f} s"
    if v < 3600:  # type: ignore[operator]
        return f"{v / 60:.1f} min"
    if v < 86400:  # type: ignore[operator]
        return f"{v / 3600:.1f} h"
    return f"{v / 86400:.1f} d"


def fmt_points(v: float | None, digits: int = 1) -> str:
    """A signed change in percentage points (already in points): ``+5.0 pp``."""
    return NA if _missing(v) else f"{v:+.{digits}f} pp"


def fmt_ratio(v: float | None, digits: int = 1) -> str:
    """A multiplicative lift: ``2.3×``."""
    return NA if _missing(v) else f"{v:.{digits}f}×"


def fmt_p(v: float | None) -> str:
    """A p- or q-value: ``0.003``, ``< 0.001``."""
    if _missing(v):
        return NA
    return "< 0.001" if v < 0.001 else f"{v:.3f}"  # type: ignore[operator]


def fmt_ts(v: str | None) -> str:
    """An ISO 8601 UTC time stamp for people: ``2026-09-28T07:05:00Z`` -> ``2026-09-28 07:05 UTC``."""
    if not v:
        return NA
    s = str(v)
    if len(s) >= 16 and s[10] == "T" and (s.endswith("Z") or s.endswith("+00:00")):
        return f"{s[:10]} {s[11:16]} UTC"
    return s


def fmt_basis(b: Any) -> str:
    """How a recommendation's estimate is made, in one line from its ``basis``
    (``model.EstimateBasis``), so a reader sees which carts and factors give the number:
    ``(52 carts × 44.7% (shipping.quick_exit) + 122 carts × 16.3% (shipping.info_page)) × 109 EUR
    (average order value)``. Only the parts with carts are shown (a signal with carts but no
    significant excess shows × 0.0%, one without a with/without comparison — leaving at the
    payment or account step — × 0, which is why an estimate can be 0); the JSON has every input."""
    def carts(n: int, what: str = "") -> str:
        return f"{fmt_int(n)} {what}cart{'' if n == 1 else 's'}"

    def factor(s: Any) -> str:   # (a signal defined by the exit itself has nothing to compare: factor 0)
        return f"0 ({s.signal}: no with/without comparison)" if s.comparison is None else f"{fmt_pct(s.factor)} ({s.signal})"

    parts = [f"{carts(s.lost_carts)} × {factor(s)}" for s in b.signals if s.lost_carts]
    if (st := b.step_rule) is not None and st.lost_carts and st.significant:
        parts.append(f"{carts(st.lost_carts)} with no reason found at {st.step} × {fmt_pct(st.share)}")
    if (r := b.reminder) is not None:
        parts.append(f"{carts(r.reachable_carts, 'reachable ')} × {fmt_pct(r.recovery_rate.rate)} "
                     "recovered today without a reminder")
    text = " + ".join(parts) or "0 carts"
    if len(parts) > 1:
        text = f"({text})"
    if (sg := b.segment_share) is not None:
        text += f" × {fmt_pct(sg.share)} ({sg.segment}'s share of the carts)"
    return f"{text} × {fmt_money(b.order_value, b.currency)} ({b.order_value_of})"


FILTERS = {
    "fmt_int": fmt_int,
    "fmt_counts": fmt_counts,
    "fmt_pct": fmt_pct,
    "fmt_ci": fmt_ci,
    "fmt_money": fmt_money,
    "fmt_seconds": fmt_seconds,
    "fmt_points": fmt_points,
    "fmt_ratio": fmt_ratio,
    "fmt_p": fmt_p,
    "fmt_ts": fmt_ts,
    "fmt_basis": fmt_basis,
}
