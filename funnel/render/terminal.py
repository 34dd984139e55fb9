"""Terminal renderer: rich tables for the analyst at a prompt."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..model import Report
from .filters import fmt_ci, fmt_counts, fmt_int, fmt_money, fmt_pct, fmt_seconds


def print_warnings(warnings: list[str], console: Console) -> None:
    """Warnings (a report's, or ``funnel validate``'s), one line each."""
    for w in warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)


def print_report(report: Report, console: Console, top: int = 5) -> None:
    ab, fn, inp = report.abandonment, report.funnel, report.input
    cur = ab.currency or ""
    console.print(
        f"[bold]{fmt_int(ab.carts)} carts, {fmt_pct(ab.rate)} abandoned[/] "
        f"(95% CI {fmt_ci(ab.ci95)}; industry average {fmt_pct(ab.benchmark_rate)}, Baymard) · "
        f"value at stake [bold]{escape(fmt_money(ab.value_at_stake, cur))}[/] · recovered later {fmt_int(ab.recovered)}"
    )
    console.print(
        f"period {inp.period.start} → {inp.period.end} · {fmt_int(inp.sessions)} {fn.unit}s · "
        f"{fmt_int(inp.rows_read)} rows read, {fmt_int(inp.rows_rejected)} rejected"
        + (f" ({escape(fmt_counts(inp.rejected))})" if inp.rejected else "")
    )
    if inp.sessions_log_rejected:
        console.print(f"[yellow]sessions log:[/] {fmt_int(sum(c.count for c in inp.sessions_log_rejected))} rows "
                      f"not used ({escape(fmt_counts(inp.sessions_log_rejected))}; the first row of a session is used)",
                      soft_wrap=True)
    print_warnings(report.warnings, console)
    t = Table(title=f"Funnel ({fn.order}, window {report.settings.window}, per {fn.unit})", title_justify="left")
    for col, just in (("step", "left"), (f"{fn.unit}s", "right"), ("from previous", "right"),
                      ("95% CI", "right"), ("from start", "right"), ("dropped", "right"), ("median time", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for s in fn.steps:
        t.add_row(escape(s.name), fmt_int(s.sessions), fmt_pct(s.conversion_from_previous), fmt_ci(s.ci95),
                  fmt_pct(s.conversion_from_start), fmt_int(s.dropped), fmt_seconds(s.median_seconds_from_previous))
    console.print(t)
    r = Table(title="Why carts were abandoned", title_justify="left")
    for col, just in (("reason", "left"), ("carts", "right"), ("share", "right"), ("95% CI", "right"),
                      ("value", "right"), ("top evidence", "left")):
        r.add_column(col, justify=just)  # type: ignore[arg-type]
    for rs in ab.reasons:
        ev = "; ".join(f"{e.description} ({fmt_int(e.sessions)})" for e in rs.evidence[:2]) or "—"
        r.add_row(rs.reason, fmt_int(rs.sessions), fmt_pct(rs.share), fmt_ci(rs.ci95),
                  escape(fmt_money(rs.value, cur)), escape(ev))
    console.print(r)
    if report.recommendations:
        f = Table(title="Fixes worth most", title_justify="left")
        for col, just in (("#", "right"), ("fix", "left"), ("reason", "left"), ("where", "left"),
                          ("orders", "right"), ("revenue", "right")):
            f.add_column(col, justify=just)  # type: ignore[arg-type]
        for i, rec in enumerate(report.recommendations[:top], 1):
            where = " · ".join(x for x in (rec.step, rec.segment) if x)
            f.add_row(str(i), escape(rec.title), rec.reason, escape(where), fmt_int(round(rec.estimated_orders)),
                      escape(fmt_money(rec.estimated_revenue, cur)))
        console.print(f)
    if report.comparison:
        c = report.comparison
        k = Table(title=f"Change vs {c.previous.start} → {c.previous.end}", title_justify="left")
        for col in ("metric", "current", "previous", "change (pts)", "significant"):
            k.add_column(col)
        for ch in [c.conversion, c.abandonment_rate, *c.steps]:
            pts = "n/a" if ch.change_points is None else f"{ch.change_points:+.1f}"
            k.add_row(escape(ch.name), fmt_pct(ch.current.rate), fmt_pct(ch.previous.rate), pts,
                      "yes" if ch.significant else "no")
        console.print(k)
    for g in report.gates:
        val = "n/a" if g.value is None else f"{g.value:.4g}"
        mark = "[red]FIRED[/]" if g.fired else "[green]ok[/]"
        console.print(f"gate {escape(g.rule)}: {val} {mark}")
