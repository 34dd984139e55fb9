"""Markdown renderer for $GITHUB_STEP_SUMMARY and pull-request comments (tables, no ANSI)."""

from __future__ import annotations

import re
from typing import Any

from ..model import Report
from .filters import fmt_basis, fmt_ci, fmt_counts, fmt_int, fmt_money, fmt_pct, fmt_seconds

# Markdown (CommonMark/GFM, as GitHub renders step summaries and comments) and HTML that a data
# string could start: emphasis, code, links and images, strikethrough, math, table cells, tags
# and entities (``translate`` maps each character once: a backslash added is not escaped again).
# An underscore between two letters or digits never opens or closes emphasis: add_to_cart stays.
_MD_ESCAPES = str.maketrans({**{ch: "\\" + ch for ch in "\\`*[]|~$"},
                             "<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " ", "\r": " "})
_EMPHASIS_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")


def _md(text: Any) -> str:
    """A data string as literal Markdown text, in or out of a table (currency, step and event
    names, segment values, reasons, evidence, warnings): every character Markdown or HTML
    reads as markup escaped, line breaks as spaces. The one escape of this renderer."""
    return _EMPHASIS_UNDERSCORE.sub(r"\\_", str(text).translate(_MD_ESCAPES))


def render_markdown(report: Report, **_: Any) -> str:
    ab, fn, inp = report.abandonment, report.funnel, report.input
    cur = _md(ab.currency or "")
    out: list[str] = []
    period = f"{inp.period.start or '?'} → {inp.period.end or '?'}"
    out.append("# Checkout funnel report\n")
    out.append(f"**{fmt_int(ab.carts)} carts, {fmt_pct(ab.rate)} abandoned** "
               f"(95% CI {fmt_ci(ab.ci95)}; industry average {fmt_pct(ab.benchmark_rate)}, Baymard Institute). "
               f"Value at stake: **{fmt_money(ab.value_at_stake, cur)}**; recovered later: {fmt_int(ab.recovered)}.  ")
    unused = ""
    if inp.sessions_log_rejected:
        unused = f" Sessions log rows not used: {fmt_counts(inp.sessions_log_rejected)}."
    out.append(f"Period {period} · {fmt_int(inp.sessions)} {fn.unit}s · {fmt_int(inp.rows_read)} rows read, "
               f"{fmt_int(inp.rows_rejected)} rejected.{unused}\n")
    for w in report.warnings:
        out.append(f"> **Warning:** {_md(w)}\n")
    if report.gates:
        out.append("## Gates\n")
        out.append("| rule | value | result |\n|---|---:|---|")
        for g in report.gates:
            val = "n/a" if g.value is None else f"{g.value:.4g}"
            out.append(f"| {_md(g.rule)} | {val} | {'❌ fired' if g.fired else '✅ ok'} |")
        out.append("")
    out.append("## Funnel\n")
    out.append(f"| step | {fn.unit}s | from previous | 95% CI | from start | median time from previous |")
    out.append("|---|---:|---:|---|---:|---:|")
    for s in fn.steps:
        out.append(f"| {_md(s.name)} | {fmt_int(s.sessions)} | {fmt_pct(s.conversion_from_previous)} | "
                   f"{fmt_ci(s.ci95)} | {fmt_pct(s.conversion_from_start)} | "
                   f"{fmt_seconds(s.median_seconds_from_previous)} |")
    out.append("")
    if report.comparison:
        c = report.comparison
        out.append(f"## Change vs previous period ({c.previous.start} → {c.previous.end})\n")
        out.append("| metric | current | previous | change (points) | 95% CI | significant |")
        out.append("|---|---:|---:|---:|---|---|")
        for ch in [c.conversion, c.abandonment_rate, *c.steps]:
            pts = "n/a" if ch.change_points is None else f"{ch.change_points:+.1f}"
            ci = "n/a" if ch.ci95_points is None else f"{ch.ci95_points[0]:+.1f} – {ch.ci95_points[1]:+.1f}"
            out.append(f"| {_md(ch.name)} | {fmt_pct(ch.current.rate)} | {fmt_pct(ch.previous.rate)} | "
                       f"{pts} | {ci} | {'yes' if ch.significant else 'no'} |")
        out.append("")
    out.append("## Why carts were abandoned\n")
    out.append("| reason | carts | share | 95% CI | value at stake | top evidence |")
    out.append("|---|---:|---:|---|---:|---|")
    for r in ab.reasons:
        ev = "; ".join(f"{_md(e.description)} ({fmt_int(e.sessions)})" for e in r.evidence[:2]) or "—"
        out.append(f"| {r.reason} | {fmt_int(r.sessions)} | {fmt_pct(r.share)} | {fmt_ci(r.ci95)} | "
                   f"{fmt_money(r.value, cur)} | {ev} |")
    out.append("")
    out.append("## Fixes worth most\n")
    if not report.recommendations:
        out.append("No fix stands out in this data.\n")
    for i, rec in enumerate(report.recommendations[:5], 1):
        where = " · ".join(x for x in (rec.step and f"step {rec.step}", rec.segment) if x)
        out.append(f"{i}. **{_md(rec.title)}** ({rec.reason}{', ' + _md(where) if where else ''}) — "
                   f"≈ {fmt_int(round(rec.estimated_orders))} orders, {fmt_money(rec.estimated_revenue, cur)} "
                   f"= {_md(fmt_basis(rec.basis))}. "
                   f"{_md(rec.why)} _Research: {_md(rec.research)}_")
    out.append("")
    out.append(f"<sub>funnel {report.tool['version']} · {fn.order} funnel, window {report.settings.window}, "
               f"per {fn.unit} · generated {report.generated_at}</sub>\n")
    return "\n".join(out)
