"""Shared number formatting for every renderer (terminal, Markdown, HTML via Jinja2 filters)."""

from __future__ import annotations


def fmt_int(v: float | int | None) -> str:
    return "n/a" if v is None else f"{int(round(v)):,}"


def fmt_pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v * 100:.{digits}f}%"


def fmt_ci(ci: tuple[float, float] | list[float] | None, digits: int = 1) -> str:
    return "n/a" if not ci else f"{ci[0] * 100:.{digits}f}–{ci[1] * 100:.{digits}f}%"


def fmt_money(v: float | None, currency: str | None = "") -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f} {currency}".strip() if abs(v) >= 100 else f"{v:,.2f} {currency}".strip()


def fmt_seconds(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v < 60:
        return f"{v:.0f} s"
    if v < 3600:
        return f"{v / 60:.1f} min"
    if v < 86400:
        return f"{v / 3600:.1f} h"
    return f"{v / 86400:.1f} d"
