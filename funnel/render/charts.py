"""Plotly figure builders for the HTML report: one small pure function per chart.

Each function takes report sections (typed records, never raw rows) and returns a plotly
``Figure``. Plotly is imported inside the functions so ``import funnel`` stays light.

Every string that comes from the data goes through :func:`label` before it reaches plotly:
plotly renders a subset of HTML in labels (``<b>``, ``<a href>``, ``<br>``) and decodes
entities, so escaping ``&``, ``<`` and ``>`` makes it show the text literally instead of
interpreting it. Colours are the Okabe-Ito palette (colour-blind safe); stacked reasons also
get a fill pattern so they stay distinct in grey-scale print.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..model import ExitStep, ReasonEpisode, SegmentBreakdown, StepResult, TimeDistribution, Transition, TrendPoint
from .filters import fmt_ci, fmt_int, fmt_pct

if TYPE_CHECKING:  # pragma: no cover
    from plotly.graph_objects import Figure

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
REASONS = ["payment", "shipping", "returns", "ui_friction", "unknown"]
REASON_LABELS = {"payment": "Payment", "shipping": "Shipping cost / delivery", "returns": "Returns",
                 "ui_friction": "UI friction", "unknown": "Unknown"}
REASON_COLORS = {"payment": "#0072B2", "shipping": "#E69F00", "returns": "#009E73",
                 "ui_friction": "#CC79A7", "unknown": "#9A9A9A"}
REASON_PATTERNS = {"payment": "/", "shipping": "\\", "returns": "x", "ui_friction": ".", "unknown": ""}
CONVERTERS, ABANDONERS = "#0072B2", "#D55E00"
EXIT_NODE = "(exit)"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
MAX_LABEL = 48


def label(text: object, limit: int = MAX_LABEL) -> str:
    """A data string made safe and short for plotly: truncated, then ``&<>`` escaped."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return html.escape(s, quote=False)


def reason_label(reason: str) -> str:
    return REASON_LABELS.get(reason, label(reason))


def _figure(data: list[Any], height: int, **layout: Any) -> Figure:
    """A figure with the report's look. No title: the page gives each chart an HTML heading
    and caption (responsive, accessible), so legends can sit on top without overlapping."""
    import plotly.graph_objects as go

    base: dict[str, Any] = dict(
        template=go.layout.Template(),
        font=dict(family=FONT, size=13, color="#1a1a1a"),
        colorway=OKABE_ITO,
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        height=height,
        margin=dict(l=8, r=16, t=16, b=8),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
        hoverlabel=dict(align="left"),
    )
    base.update(layout)
    fig = go.Figure(data=data, layout=base)
    fig.update_xaxes(automargin=True, gridcolor="#e3e3e3", zerolinecolor="#bdbdbd", linecolor="#767676")
    fig.update_yaxes(automargin=True, gridcolor="#e3e3e3", zerolinecolor="#bdbdbd", linecolor="#767676")
    return fig


def _pct(v: float | None) -> float | None:
    return None if v is None else round(v * 100, 4)


def funnel_chart(steps: Sequence[StepResult]) -> Figure:
    """Share of the first step reaching each step, with 95% Wilson intervals as error bars."""
    import plotly.graph_objects as go

    y = [label(s.name) for s in steps]
    x = [_pct(s.conversion_from_start) or 0.0 for s in steps]
    lo = [(_pct(s.conversion_from_start) or 0) - (_pct(s.ci95_from_start[0]) or 0) if s.ci95_from_start else 0
          for s in steps]
    hi = [(_pct(s.ci95_from_start[1]) or 0) - (_pct(s.conversion_from_start) or 0) if s.ci95_from_start else 0
          for s in steps]
    text = [f"{fmt_int(s.sessions)} · {fmt_pct(s.conversion_from_start)}" for s in steps]
    hover = [
        f"{fmt_int(s.sessions)} reached<br>{fmt_pct(s.conversion_from_start)} of first step "
        f"(95% CI {fmt_ci(s.ci95_from_start)})<br>"
        + (f"{fmt_pct(s.conversion_from_previous)} of previous step (95% CI {fmt_ci(s.ci95)})"
           if s.conversion_from_previous is not None else "first step")
        for s in steps
    ]
    bar = go.Bar(
        x=x, y=y, orientation="h", marker=dict(color=OKABE_ITO[0]), text=text,
        textposition="inside", insidetextanchor="start",
        error_x=dict(type="data", symmetric=False, array=[round(v, 4) for v in hi],
                     arrayminus=[round(v, 4) for v in lo], color="#000000", thickness=1.5),
        customdata=hover, hovertemplate="<b>%{y}</b><br>%{customdata}<extra></extra>", name="reached",
    )
    return _figure([bar], 60 + 48 * len(steps),
                   showlegend=False, xaxis=dict(title=dict(text="% of first step"), range=[0, 105], ticksuffix="%"),
                   yaxis=dict(autorange="reversed"))


def dropoff_chart(by_step: Sequence[ExitStep]) -> Figure:
    """Abandoned carts by the step where they stopped, stacked by primary reason."""
    import plotly.graph_objects as go

    x = [label(s.step) for s in by_step]
    data = [
        go.Bar(name=reason_label(r), x=x, y=[s.reasons.get(r, 0) for s in by_step],
               marker=dict(color=REASON_COLORS[r], line=dict(color="#ffffff", width=0.5),
                           pattern=dict(shape=REASON_PATTERNS[r], fillmode="overlay", fgcolor="#ffffff",
                                        size=8, solidity=0.25)),
               hovertemplate="%{x}<br>" + reason_label(r) + ": %{y:,} carts<extra></extra>")
        for r in REASONS
    ]
    return _figure(data, 400, barmode="stack",
                   yaxis=dict(title=dict(text="abandoned carts")), xaxis=dict(title=dict(text="exit step")))


def sankey_chart(transitions: Sequence[Transition], step_names: Sequence[str]) -> Figure:
    """Flows between steps: forward moves, backtracks (to an earlier step) and exits."""
    import plotly.graph_objects as go

    nodes = list(step_names)
    for t in transitions:
        for n in (t.source, t.target):
            if n not in nodes and n != EXIT_NODE:
                nodes.append(n)
    nodes.append(EXIT_NODE)
    index = {n: i for i, n in enumerate(nodes)}
    order = {n: i for i, n in enumerate(step_names)}

    def kind(t: Transition) -> str:
        if t.target == EXIT_NODE:
            return "exit"
        if t.source in order and t.target in order and order[t.target] < order[t.source]:
            return "backtrack"
        return "forward"

    colors = {"forward": "rgba(0,114,178,0.35)", "backtrack": "rgba(230,159,0,0.6)",
              "exit": "rgba(213,94,0,0.35)"}
    kinds = [kind(t) for t in transitions]
    link = dict(
        source=[index[t.source] for t in transitions], target=[index[t.target] for t in transitions],
        value=[t.sessions for t in transitions], color=[colors[k] for k in kinds],
        customdata=kinds, hovertemplate="%{source.label} → %{target.label}<br>%{value:,} (%{customdata})"
                                        "<extra></extra>",
    )
    node = dict(label=[label(n, 32) for n in nodes], pad=18, thickness=16,
                color=[OKABE_ITO[0] if n in order else ("#D55E00" if n == EXIT_NODE else "#767676")
                       for n in nodes],
                hovertemplate="%{label}<br>%{value:,}<extra></extra>")
    return _figure([go.Sankey(node=node, link=link, arrangement="snap")], 440)


def _week_of(day: str) -> str:
    y, w, _ = _dt.date.fromisoformat(day[:10]).isocalendar()
    return f"{y}-W{w:02d}"


def time_to_next_chart(dists: Sequence[TimeDistribution]) -> Figure:
    """Per step: distribution of time to the next step (converters) vs dwell before leaving
    (abandoners), as % of each group per log-spaced bucket."""
    from plotly.subplots import make_subplots

    import plotly.graph_objects as go

    steps: list[str] = []
    for d in dists:
        if d.step not in steps:
            steps.append(d.step)
    nonzero = [i for d in dists for i, c in enumerate(d.bucket_counts) if c]
    first, last = (min(nonzero), max(nonzero)) if nonzero else (0, 0)
    rows = max(1, len(steps))
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=min(0.06, 0.5 / rows))
    for r, step in enumerate(steps, start=1):
        # the panel's name inside its top-left corner (subplot titles would collide with the legend)
        fig.add_annotation(text=label(step, 80), xref="x domain" if r == 1 else f"x{r} domain", x=0.01,
                           yref="y domain" if r == 1 else f"y{r} domain", y=0.98, xanchor="left", yanchor="top",
                           showarrow=False, bgcolor="rgba(255,255,255,0.85)", font=dict(size=12))
        for d in dists:
            if d.step != step:
                continue
            total = sum(d.bucket_counts) or 1
            conv = d.group == "converters"
            fig.add_trace(go.Scatter(
                x=d.bucket_upper_seconds[first:last + 1],
                y=[round(100 * c / total, 4) for c in d.bucket_counts[first:last + 1]],
                name=label(d.group), legendgroup=label(d.group), showlegend=r == 1, mode="lines",
                line=dict(shape="hv", color=CONVERTERS if conv else ABANDONERS, dash="solid" if conv else "dash",
                          width=2),
                hovertemplate="≤ %{x:,.0f} s: %{y:.1f}% of " + label(d.group) + "<extra></extra>",
            ), row=r, col=1)
    base = _figure([], 90 + 150 * rows)
    fig.update_layout(base.layout)
    fig.update_xaxes(type="log", automargin=True, gridcolor="#e3e3e3", linecolor="#767676")
    fig.update_xaxes(title=dict(text="seconds (log scale, bucket upper edge)"), row=rows, col=1)
    fig.update_yaxes(automargin=True, gridcolor="#e3e3e3", linecolor="#767676", ticksuffix="%", rangemode="tozero")
    return fig


def segment_chart(breakdown: SegmentBreakdown) -> Figure:
    """Conversion (first step → purchase) and cart abandonment per segment value, grouped on
    one % axis with 95% intervals; values whose conversion differs significantly from the rest
    (BH q < 0.05) get ★ and an outlined bar."""
    import plotly.graph_objects as go

    groups = breakdown.groups
    y = [label(("★ " if g.significant else "") + g.value, 32) for g in groups]

    def bar(rates: list[Any], color: str, name: str, mark: bool) -> Any:
        x = [_pct(r.rate) or 0.0 for r in rates]
        lo = [x[i] - (_pct(r.ci95[0]) or 0) if r.ci95 else 0 for i, r in enumerate(rates)]
        hi = [(_pct(r.ci95[1]) or 0) - x[i] if r.ci95 else 0 for i, r in enumerate(rates)]
        return go.Bar(
            x=x, y=y, orientation="h", name=name,
            marker=dict(color=color, line=dict(color="#000000", width=[2.5 if (mark and g.significant) else 0
                                                                       for g in groups])),
            error_x=dict(type="data", symmetric=False, array=[round(v, 4) for v in hi],
                         arrayminus=[round(v, 4) for v in lo], color="#000000", thickness=1.2),
            customdata=[f"{fmt_pct(r.rate)} (95% CI {fmt_ci(r.ci95)}), n = {fmt_int(r.denominator)}" for r in rates],
            hovertemplate="%{y}<br>" + name + ": %{customdata}<extra></extra>",
        )

    data = [bar([g.conversion for g in groups], OKABE_ITO[0], "conversion (★ = significant)", True),
            bar([g.abandonment for g in groups], OKABE_ITO[1], "cart abandonment", False)]
    return _figure(data, 90 + 46 * max(1, len(groups)), barmode="group", bargap=0.25,
                   xaxis=dict(ticksuffix="%", range=[0, 100]), yaxis=dict(autorange="reversed"))


def trend_chart(trend: Sequence[TrendPoint], step_names: Sequence[str]) -> Figure:
    """Weekly conversion from the previous step for each step, and the weekly abandonment rate."""
    import plotly.graph_objects as go

    weeks = [t.week for t in trend]
    data = []
    for i in range(1, len(step_names)):
        y = [round(100 * t.steps[i] / t.steps[i - 1], 4) if len(t.steps) > i and t.steps[i - 1] else None
             for t in trend]
        data.append(go.Scatter(x=weeks, y=y, mode="lines+markers", name=label(step_names[i], 28),
                               line=dict(color=OKABE_ITO[(i - 1) % 7], width=2),
                               marker=dict(symbol=["circle", "square", "diamond", "triangle-up", "x", "cross",
                                                   "star"][(i - 1) % 7], size=7),
                               hovertemplate="%{x}: %{y:.1f}% of previous step<extra>%{fullData.name}</extra>"))
    data.append(go.Scatter(x=weeks, y=[_pct(t.abandonment.rate) for t in trend], mode="lines", name="abandonment",
                           line=dict(color="#000000", dash="dot", width=2),
                           hovertemplate="%{x}: abandonment %{y:.1f}%<extra></extra>"))
    return _figure(data, 400,
                   xaxis=dict(type="category"),
                   yaxis=dict(ticksuffix="%", range=[0, 105]))


def reason_trend_chart(trend: Sequence[TrendPoint], episodes: Sequence[ReasonEpisode] = ()) -> Figure:
    """Share of each primary reason among abandoned carts per week; shaded weeks are detected
    episodes (a reason's share jumped, e.g. a payment outage)."""
    import plotly.graph_objects as go

    weeks = [t.week for t in trend]
    totals = [sum(t.reasons.values()) for t in trend]
    data = [
        go.Bar(name=reason_label(r), x=weeks,
               y=[round(100 * t.reasons.get(r, 0) / n, 4) if n else 0 for t, n in zip(trend, totals, strict=True)],
               customdata=[t.reasons.get(r, 0) for t in trend],
               marker=dict(color=REASON_COLORS[r], line=dict(color="#ffffff", width=0.5),
                           pattern=dict(shape=REASON_PATTERNS[r], fillmode="overlay", fgcolor="#ffffff",
                                        size=8, solidity=0.25)),
               hovertemplate="%{x}<br>" + reason_label(r) + ": %{y:.1f}% (%{customdata:,} carts)<extra></extra>")
        for r in REASONS
    ]
    shown = list(episodes)
    fig = _figure(data, 400, barmode="stack", xaxis=dict(type="category"), yaxis=dict(ticksuffix="%", range=[0, 100]))
    pos = {w: i for i, w in enumerate(weeks)}
    for k, ep in enumerate(shown):
        try:
            a, b = pos.get(_week_of(ep.start)), pos.get(_week_of(ep.end))
        except ValueError:
            continue
        if a is None or b is None:
            continue
        fig.add_vrect(x0=a - 0.5, x1=b + 0.5, fillcolor="#000000", opacity=0.08, line_width=0, layer="below")
        # numbered like the list of episodes under the chart; inside the plot, stacked downwards
        fig.add_annotation(x=a - 0.45, xanchor="left", y=1.0, yref="paper", yanchor="top", yshift=-2 - 20 * k,
                           showarrow=False, text=f"<b>{k + 1}</b> {reason_label(ep.reason)}", font=dict(size=11),
                           bgcolor="rgba(255,255,255,0.9)", bordercolor="#000000", borderwidth=1)
    return fig
