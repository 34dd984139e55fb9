"""The shareable HTML report: one self-contained, offline, deterministic file.

compute (core) -> structure (``report_context``: charts as JSON, sections from the Report)
-> render (Jinja2 templates in ``funnel/render/templates``; one template per reason).

Safety: Jinja2 autoescapes every string; chart data is embedded as JSON in
``<script type="application/json">`` blocks with ``<``, ``>``, ``&``, U+2028 and U+2029
escaped, and plotly labels are HTML-escaped (plotly renders a subset of HTML in labels). A
Content-Security-Policy meta tag allows only the scripts whose SHA-256 hashes it lists
(plotly.js and the small boot script), so even an injected ``<script>`` would not run.
Unless ``include_ids``, e-mail addresses (URL-encoded too: ``core.partials.EMAIL``), UUIDs and
identifier-like URL query parameters are masked in every data string (pages and segment values
come masked from the partials already: ``core.partials.own_ids_masked``, ``masked_partials``).

Determinism: chart ids are fixed, JSON key order follows the Report, and the only time
stamp is ``report.generated_at``; the same Report gives byte-identical HTML.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ..core.partials import EMAIL, ID_MASK, REDACTED
from ..model import Report
from . import charts
from .filters import FILTERS

PLOTLY_CDN = "https://cdn.plot.ly"

_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_JSON_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")

_EMAIL_RE = re.compile(EMAIL)
_UUID_RE = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_ID_PARAM_RE = re.compile(
    r"(?i)([?&;](?:[a-z_]*?(?:user|session|sess|visitor|client|customer|anon|member|account)[_-]?id|"
    r"uid|sid|cid|gclid|fbclid|email|e-mail|mail|token|auth|key|phone|ssid|userid|sessionid)=)[^&#;\s\"'<>]*"
)


def escape_json(text: str) -> str:
    """Make JSON text safe inside an HTML ``<script>`` element (also U+2028/2029 for JS)."""
    return _JSON_ESCAPE_RE.sub(lambda m: _JSON_ESCAPES[m.group(0)], text)


def redact(text: str) -> str:
    """Mask personal identifiers in a data string: e-mails, UUIDs, id-like query parameters."""
    text = _EMAIL_RE.sub("[email]", text)
    text = _UUID_RE.sub(ID_MASK, text)
    return _ID_PARAM_RE.sub(lambda m: m.group(1) + REDACTED, text)


def _scrub(v: Any) -> Any:
    if isinstance(v, str):
        return redact(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.replace(v, **{f.name: _scrub(getattr(v, f.name)) for f in dataclasses.fields(v)
                                         if f.init})
    if isinstance(v, list):
        return [_scrub(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_scrub(x) for x in v)
    if isinstance(v, dict):
        return {_scrub(k): _scrub(x) for k, x in v.items()}
    return v


def redact_report(report: Report) -> Report:
    """The same Report with identifiers masked in every string (see :func:`redact`)."""
    return _scrub(report)


@dataclass(frozen=True)
class Chart:
    id: str               # DOM id of the chart div; the JSON block is ``<id>-data``
    title: str            # plain text (autoescaped by the template)
    figure_json: str      # escaped, safe to place inside <script type="application/json">


def figure_json(fig: Any) -> str:
    import plotly.io as pio

    return escape_json(pio.to_json(fig, validate=False, pretty=False, engine="json"))


def build_charts(report: Report) -> dict[str, Chart]:
    """Every chart of the report, keyed by section, in page order (deterministic ids)."""
    steps = [s.name for s in report.funnel.steps]
    out: dict[str, Chart] = {}

    def add(key: str, title: str, fig: Any) -> None:
        out[key] = Chart(f"chart-{key}", title, figure_json(fig))

    ab, paths = report.abandonment, report.paths
    if report.funnel.steps:
        add("funnel", "Share of the first step reaching each step (95% CI)", charts.funnel_chart(report.funnel.steps))
    if ab.by_step:
        add("dropoff", "Where carts were abandoned, by primary reason", charts.dropoff_chart(ab.by_step))
    if paths and paths.transitions:
        add("sankey", "Purchase paths: forward (blue), backtracks (orange), exits (red)",
            charts.sankey_chart(paths.transitions, steps))
    if paths and paths.time_to_next:
        add("time", "Time to the next step: converters vs abandoners", charts.time_to_next_chart(paths.time_to_next))
    for i, seg in enumerate(report.segments):
        if seg.groups:
            add(f"segment-{i}", f"Conversion and cart abandonment by {seg.column}", charts.segment_chart(seg))
    if report.trend:
        add("trend", "Weekly conversion from the previous step", charts.trend_chart(report.trend, steps))
        add("reasons-trend", "Reasons over time (share of abandoned carts)",
            charts.reason_trend_chart(report.trend, ab.episodes))
    return out


@functools.cache
def _plotly_js() -> tuple[str, str]:
    """(inline plotly.js, its version); ``</script`` cannot occur, but is neutralised anyway."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    return re.sub(r"(?i)</(script)", r"<\\/\1", get_plotlyjs()), get_plotlyjs_version()


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(script_hashes: list[str], cdn: bool) -> str:
    """Only the listed inline scripts (and the plotly CDN when asked) may run; nothing may be
    fetched, framed, posted or embedded. Styles must be inline (plotly sets style attributes)."""
    script_src = " ".join(script_hashes + ([PLOTLY_CDN] if cdn else []))
    return ("default-src 'none'; "
            f"script-src {script_src}; "
            "style-src 'unsafe-inline'; "
            "img-src data:; "
            "base-uri 'none'; form-action 'none'")


@functools.cache
def environment() -> Any:
    """The one Jinja2 environment: package templates, autoescape, shared number filters."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("funnel.render", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(FILTERS)
    env.globals.update(reason_label=charts.reason_label, reason_colors=charts.REASON_COLORS, reasons=charts.REASONS)
    return env


@functools.cache
def _static(name: str) -> str:
    """A packaged asset from ``funnel/render/static`` (the CSS and the boot script)."""
    from importlib.resources import files

    return files("funnel.render").joinpath("static", name).read_text(encoding="utf-8")


def report_context(report: Report, plotlyjs: str, include_ids: bool = False) -> dict[str, Any]:
    """Structure for the templates: the Report itself plus charts, derived shares and assets."""
    ab = report.abandonment
    trend_shares = []
    for t in report.trend:
        total = sum(t.reasons.values())
        trend_shares.append({r: (t.reasons.get(r, 0) / total if total else None) for r in charts.REASONS})
    boot = _static("boot.js")
    css = _static("report.css")
    inline_js, version = _plotly_js()
    scripts = [boot] if plotlyjs == "cdn" else [inline_js, boot]
    return dict(
        r=report,
        ab=ab,
        cur=ab.currency or "",
        charts=build_charts(report),
        top_fixes=report.recommendations[:3],
        trend_shares=trend_shares,
        css=css,
        boot_js=boot,
        plotly_inline=inline_js if plotlyjs == "inline" else None,
        plotly_src=f"{PLOTLY_CDN}/plotly-{version}.min.js" if plotlyjs == "cdn" else None,
        plotly_version=version,
        csp=content_security_policy([_sha256(s) for s in scripts], cdn=plotlyjs == "cdn"),
        steps=[s.name for s in report.funnel.steps],
        include_ids=include_ids,
    )


def render_html(report: Report, *, plotlyjs: str = "inline", include_ids: bool = False) -> str:
    """The report as one HTML document.

    ``plotlyjs="inline"`` embeds plotly.js once (works offline, ~5 MB); ``"cdn"`` loads it from
    cdn.plot.ly (small file, charts need network; tables always work). ``include_ids`` keeps
    e-mails, UUIDs and id-like URL parameters that appear in data strings.
    """
    if plotlyjs not in ("inline", "cdn"):
        raise ValueError(f"plotlyjs must be 'inline' or 'cdn', not {plotlyjs!r}")
    if not include_ids:
        report = redact_report(report)
    return environment().get_template("report.html.j2").render(**report_context(report, plotlyjs, include_ids))
