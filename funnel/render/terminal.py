"""Terminal renderer: rich tables for the analyst at a prompt."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..model import Report
from .filters import fmt_ci, fmt_counts, fmt_int, fmt_money, fmt_pct, fmt_seconds


def print_warnings(warnings: list[str], console: Console) -> None:
    """Warnings (a report's, or ``funnel validate``'s), one line each."""
    for w in warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)


def _table(title: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> Table:
    """A table of ``columns`` (header, justify) and ``rows`` (rich markup) that fits a narrow
    terminal without cutting a value: a right-aligned (number) column is exactly as wide as
    its widest value or header word (the header wraps between words), so rich shrinks only the
    text columns, which wrap, and fold a word longer than the column (a step name), never
    ending it with an ellipsis. Justify ``"whole"``: a left-aligned column kept whole as a number
    is (a time: the order of events seconds apart). Pipes and CI logs are 80 columns wide."""
    t = Table(title=title, title_justify="left")
    for i, (head, just) in enumerate(columns):
        if just in ("right", "whole"):
            width = max([cell_len(w) for w in head.split()] + [Text.from_markup(r[i]).cell_len for r in rows])
            t.add_column(head, justify="right" if just == "right" else "left", width=width)
        else:
            t.add_column(head, justify=just, overflow="fold")  # type: ignore[arg-type]
    for r in rows:
        t.add_row(*r)
    return t


def print_report(report: Report, console: Console, top: int = 5, diagnosis: bool = True) -> None:
    """The report's tables; ``diagnosis=False`` (a funnel-only run, which diagnoses nothing)
    leaves out the reasons table rather than print it empty."""
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
    console.print(_table(
        f"Funnel ({fn.order}, window {report.settings.window}, per {fn.unit})",
        (("step", "left"), (f"{fn.unit}s", "right"), ("from previous", "right"), ("95% CI", "right"),
         ("from start", "right"), ("dropped", "right"), ("median time", "right")),
        [(escape(s.name), fmt_int(s.sessions), fmt_pct(s.conversion_from_previous), fmt_ci(s.ci95),
          fmt_pct(s.conversion_from_start), fmt_int(s.dropped), fmt_seconds(s.median_seconds_from_previous))
         for s in fn.steps]))
    if diagnosis:
        console.print(_table(
            "Why carts were abandoned",
            (("reason", "left"), ("carts", "right"), ("share", "right"), ("95% CI", "right"), ("value", "right"),
             ("top evidence", "left")),
            [(rs.reason, fmt_int(rs.sessions), fmt_pct(rs.share), fmt_ci(rs.ci95), escape(fmt_money(rs.value, cur)),
              escape("; ".join(f"{e.description} ({fmt_int(e.sessions)})" for e in rs.evidence[:2]) or "—"))
             for rs in ab.reasons]))
    if report.recommendations:
        console.print(_table(
            "Fixes worth most",
            (("#", "right"), ("fix", "left"), ("reason", "left"), ("where", "left"), ("orders", "right"),
             ("revenue", "right")),
            [(str(i), escape(rec.title), rec.reason, escape(" · ".join(x for x in (rec.step, rec.segment) if x)),
              fmt_int(round(rec.estimated_orders)), escape(fmt_money(rec.estimated_revenue, cur)))
             for i, rec in enumerate(report.recommendations[:top], 1)]))
    if report.comparison:
        c = report.comparison
        console.print(_table(
            f"Change vs {c.previous.start} → {c.previous.end}",
            (("metric", "left"), ("current", "right"), ("previous", "right"), ("change (pts)", "right"),
             ("significant", "left")),
            [(escape(ch.name), fmt_pct(ch.current.rate), fmt_pct(ch.previous.rate),
              "n/a" if ch.change_points is None else f"{ch.change_points:+.1f}", "yes" if ch.significant else "no")
             for ch in [c.conversion, c.abandonment_rate, *c.steps]]))
    for g in report.gates:
        val = "n/a" if g.value is None else f"{g.value:.4g}"
        mark = "[red]FIRED[/]" if g.fired else "[green]ok[/]"
        console.print(f"gate {escape(g.rule)}: {val} {mark}")


_STATUS_COLOUR = {"reached": "green", "tie": "red", "window": "red", "order": "red", "interrupted": "red",
                  "ignored": "dim", "duplicate": "dim"}


def explain_table(ex) -> Table:
    """``funnel explain``'s table of one visitor's events (``core.explain.Explanation``), by the
    rule of the report's tables (``_table``): its times are never cut."""
    def status(s: str) -> str:
        c = _STATUS_COLOUR.get(s, "")
        return f"[{c}]{s}[/]" if c else s

    return _table(f"{ex.unit} {escape(ex.entity)} · {ex.order} funnel, window {ex.window}",
                  (("time", "whole"), ("event", "left"), ("step", "left"), ("status", "left"), ("why", "left")),
                  [(escape(e.time), escape(e.event), escape(e.step or ""), status(e.status), escape(e.detail))
                   for e in ex.events])
