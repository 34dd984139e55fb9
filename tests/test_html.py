"""The HTML report as text: content, escaping, CSP, offline assets, determinism, redaction."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from funnel.render import render
from funnel.render import filters as F
from funnel.render.html import escape_json, redact, render_html

try:
    from _report_factory import XSS_ALL, XSS_IMG, XSS_SCRIPT, make_report
    from conftest import run_cli
except ImportError:  # tests/ imported as a package
    from tests._report_factory import XSS_ALL, XSS_IMG, XSS_SCRIPT, make_report
    from tests.conftest import run_cli


class _Doc(HTMLParser):
    """Collects scripts (attrs + raw text), elements with src/href, and the CSP meta."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._in: dict[str, str | None] | None = None
        self._buf: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "script":
            self._in, self._buf = a, []

    def handle_data(self, data):
        if self._in is not None:
            self._buf.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._in is not None:
            self.scripts.append((self._in, "".join(self._buf)))
            self._in = None

    @property
    def csp(self) -> str:
        return next(a["content"] for t, a in self.tags
                    if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")


def parse(html: str) -> _Doc:
    d = _Doc()
    d.feed(html)
    return d


@pytest.fixture(scope="module")
def report():
    return make_report()


@pytest.fixture(scope="module")
def html(report):
    return render_html(report)


@pytest.fixture(scope="module")
def cdn_html(report):
    return render_html(report, plotlyjs="cdn")


@pytest.fixture(scope="module")
def hostile_html():
    return render_html(make_report(hostile=True), plotlyjs="cdn")


def _json_blocks(doc: _Doc) -> dict[str, str]:
    return {a["id"]: text for a, text in doc.scripts if a.get("type") == "application/json"}


# --- content -----------------------------------------------------------------------------------

def test_headline_has_carts_rate_benchmark_value_recovered_period_and_top_fixes(report, html):
    head = html[html.index('id="summary"'):html.index('id="funnel"')]
    assert "4,000" in head and "70.0%" in head
    assert "70.19%" in head and "Baymard Institute" in head
    assert "168,000 EUR" in head
    assert "Recovered later" in head and ">120<" in head
    assert "2026-09-28 00:00 UTC" in head and "2026-11-22 23:59 UTC" in head
    for rec in report.recommendations[:3]:
        assert rec.title in head
    assert report.recommendations[3].title not in head


def test_every_chart_has_a_holder_a_json_block_and_a_table(html):
    doc = parse(html)
    holders = [a["id"] for t, a in doc.tags if t == "div" and "data-chart" in a]
    assert holders == ["chart-funnel", "chart-dropoff", "chart-sankey", "chart-time", "chart-segment-0",
                       "chart-segment-1", "chart-trend", "chart-reasons-trend"]
    blocks = _json_blocks(doc)
    assert sorted(blocks) == sorted(f"{h}-data" for h in holders)
    for h in holders:
        fig = json.loads(blocks[f"{h}-data"])
        assert fig["data"], h
        # the figure after the holder has its table equivalent
        after = html[html.index(f'id="{h}"'):]
        assert after.index("<details>") < after.index("</figure>")
        assert "<table>" in after[:after.index("</figure>")]


def test_one_template_per_reason_renders_each_card(report, html):
    for i, rec in enumerate(report.recommendations, start=1):
        card = html[html.index(f'id="fix-{i}"'):]
        card = card[:card.index("</article>")]
        assert f"reason-{rec.reason}" in html[html.rindex("<article", 0, html.index(f'id="fix-{i}"')):][:80]
        for text in (rec.title, rec.why, rec.research, rec.method):
            assert text in card
        assert "orders" in card and "EUR" in card
    assert "“I don't have my card here”" in html.replace("&#39;", "'")  # payment.html.j2
    assert "How much is shipping?" in html  # shipping.html.j2


def test_methods_section_lists_input_rejects_semantics_definitions_and_version(html):
    m = html[html.index('id="methods"'):]
    for text in ("sample_data/events.csv", "120,345", "unparseable_timestamp 300", "ordered", "24h", "30m",
                 "7d", "Wilson", "conversion from previous", "value at stake", "version: 0.1.0"):
        assert text in m, text


def test_registry_renders_html(report, html):
    assert render(report, "html") == html


def test_sparse_report_renders(report):
    """No paths, trend, segments, recommendations, comparison; rates missing."""
    import dataclasses

    ab = dataclasses.replace(report.abandonment, rate=None, ci95=None, carts=0, abandoned=0, by_step=[],
                             signals=[], shipping_bands=[], episodes=[])
    sparse = dataclasses.replace(report, paths=None, trend=[], segments=[], recommendations=[], comparison=None,
                                 gates=[], abandonment=ab)
    out = render_html(sparse)
    assert "No recommendation" in out and "n/a" in out
    assert 'id="chart-funnel"' in out and 'id="chart-sankey"' not in out


# --- self-contained, CSP ------------------------------------------------------------------------

def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_inline_is_self_contained_with_plotly_once(html):
    doc = parse(html)
    code = [(a, t) for a, t in doc.scripts if a.get("type") != "application/json"]
    assert len(code) == 2 and all("src" not in a for a, _ in code)
    assert html.count("Plotly=") + html.count("Plotly =") >= 1
    assert sum("plotly.js v" in t or "* plotly.js" in t for _, t in code) == 1
    assert not [(t, a) for t, a in doc.tags if t in ("link", "img", "iframe", "object", "embed")]
    for t, a in doc.tags:
        for attr in ("src", "href"):
            v = a.get(attr)
            assert v is None or v.startswith("#"), (t, a)
    css = html[html.index("<style>"):html.index("</style>")]
    assert "url(" not in css and "@import" not in css and "@font-face" not in css
    assert 3_000_000 < len(html.encode()) < 6_500_000


def test_csp_allows_exactly_the_inline_scripts(html):
    doc = parse(html)
    csp = doc.csp
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in directives["script-src"]
    assert "connect-src" not in directives and "http" not in csp
    hashes = sorted(re.findall(r"'sha256-[^']+'", directives["script-src"]))
    code = [t for a, t in doc.scripts if a.get("type") != "application/json"]
    assert hashes == sorted(_hash(t) for t in code)
    assert directives["base-uri"] == "'none'" and directives["form-action"] == "'none'"


def test_cdn_option_is_small_and_allows_only_the_cdn(cdn_html):
    doc = parse(cdn_html)
    srcs = [a["src"] for a, _ in doc.scripts if a.get("src")]
    assert len(srcs) == 1 and re.fullmatch(r"https://cdn\.plot\.ly/plotly-[0-9.]+\.min\.js", srcs[0])
    assert "https://cdn.plot.ly" in doc.csp and len(cdn_html.encode()) < 400_000


def test_plotlyjs_option_is_validated(report):
    with pytest.raises(ValueError, match="inline"):
        render_html(report, plotlyjs="directory")


# --- escaping ------------------------------------------------------------------------------------

def test_hostile_strings_are_escaped_in_html(hostile_html):
    assert "window.__pwned" in hostile_html  # the text is there ...
    assert "<script>window.__pwned" not in hostile_html  # ... but never as markup
    assert "<img" not in hostile_html
    assert 'onmouseover="window' not in hostile_html
    assert "&lt;img src=x onerror=window.__pwned=1&gt;" in hostile_html
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned=1&lt;/script&gt;" in hostile_html
    doc = parse(hostile_html)
    assert [t for t, _ in doc.tags].count("script") == 2 + len(_json_blocks(doc))
    for _, a in doc.tags:
        assert not any(k.startswith("on") for k in a), a


def test_hostile_strings_are_escaped_in_embedded_json(hostile_html):
    doc = parse(hostile_html)
    blocks = _json_blocks(doc)
    assert blocks
    for text in blocks.values():
        assert not re.search("[<>&\u2028\u2029]", text)
        json.loads(text)
    decoded = " ".join(json.dumps(json.loads(t), ensure_ascii=False) for t in blocks.values())
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned=1&lt;/script&gt;" in decoded
    assert "</script>" not in decoded
    # Labels are HTML-escaped for plotly (which renders a subset of HTML in labels):
    funnel = json.loads(blocks["chart-funnel-data"])
    assert any("&lt;img src=x onerror" in y for y in funnel["data"][0]["y"])


def test_escape_json_covers_script_breakers():
    assert escape_json('"</script><!--&\u2028\u2029"') == '"\\u003c/script\\u003e\\u003c!--\\u0026\\u2028\\u2029"'


def test_plotly_own_json_escapes_script_end_tags():
    """Pins the plotly behaviour we would rely on if we used fig.to_html: it escapes '</script>'."""
    import plotly.graph_objects as go
    import plotly.io as pio

    fig = go.Figure(go.Bar(x=[XSS_SCRIPT, XSS_IMG], y=[1, 2]))
    inline = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id="x")
    assert XSS_SCRIPT not in inline and XSS_IMG not in inline


def test_css_and_scripts_are_not_html_escaped(html):
    """Regression: autoescaping the inlined CSS turned quotes into &#34; and broke the font stack."""
    css = html[html.index("<style>"):html.index("</style>")]
    assert "&#34;" not in css and "&gt;" not in css and '"Segoe UI"' in css


# --- privacy, determinism, lightness ---------------------------------------------------------------

def test_ids_are_masked_unless_include_ids(report, html):
    assert "jane.doe@example.com" not in html and "abc123" not in html and "u-42" not in html
    assert "email=[redacted]&amp;sid=[redacted]" in html
    kept = render_html(report, include_ids=True, plotlyjs="cdn")
    assert "jane.doe@example.com" in kept and "user_id=u-42" in kept


@pytest.mark.parametrize("text, expected", [
    ("/returns?email=a.b@c.de&sid=123", "/returns?email=[redacted]&sid=[redacted]"),
    ("contact bob@shop.example now", "contact [email] now"),
    ("/order/123e4567-e89b-12d3-a456-426614174000/pay", "/order/[id]/pay"),
    ("/help?session_id=s1&page=2&userId=9", "/help?session_id=[redacted]&page=2&userId=[redacted]"),
    ("/cart?token=xyz#top", "/cart?token=[redacted]#top"),
    ("/unsubscribe/jane.doe%40example.com", "/unsubscribe/[email]"),      # URL-encoded, anywhere in the address
    ("/a/jane.doe%2Bshop%40Example%2Ecom/orders", "/a/[email]/orders"),
    ("100%40 off.com", "100%40 off.com"),
    ("checkout", "checkout"),
    ("/search?q=sid", "/search?q=sid"),
])
def test_redact(text, expected):
    assert redact(text) == expected


def _log_with_ids_in_pages(tmp_path):
    """40 abandoned carts whose last page and campaign carry the session's own ids."""
    import polars as pl

    rows, log = [], []
    for i in range(40):
        s, u = f"sess-{i:04d}-9f8e7d", (f"cust_{i:05d}" if i % 2 else f"user{i}@mail.example")
        page = (f"/cart?session={s}", f"/account/{u}/orders/{s}", f"/cart/{i:07d}", f"/p/{u}")[i % 4]
        rows += [(f"2026-03-02T{i % 24:02d}:00:00Z", s, u, "add_to_cart", "/p", 10.0),
                 (f"2026-03-02T{i % 24:02d}:00:05Z", s, u, "page_view", page, None)]
        log.append((s, u, f"newsletter-{u}" if i % 3 else "spring7"))
    cols = ["timestamp", "session_id", "user_id", "event", "page_url", "cart_value"]
    pl.DataFrame(rows, schema=cols, orient="row").write_csv(tmp_path / "events.csv")
    pl.DataFrame(log, schema=["session_id", "user_id", "campaign"], orient="row").write_csv(tmp_path / "s.csv")
    return str(tmp_path / "events.csv"), str(tmp_path / "s.csv")


@pytest.mark.parametrize("shards", [1, 3])
def test_own_ids_are_masked_in_pages_and_segments_before_aggregation(tmp_path, shards):
    """A session's own session and user ids in its last page (path segment or query value) or
    in a segment value are masked unless --include-ids, in every output, before the counts:
    one '/cart/[id]' row of 10, not five rows of 1. Shards agree."""
    from funnel.api import analyze

    ev, log = _log_with_ids_in_pages(tmp_path)
    rep = analyze(ev, sessions=log, segments=("campaign",), shards=shards, min_segment_size=5).report
    pages = {c.key: c.count for c in rep.paths.after_exit[0].last_pages}
    assert pages == {"/cart?session=[redacted]": 10, "/account/[id]/orders/[id]": 10, "/cart/[id]": 10,
                     "/p/[id]": 10}
    assert {g.value: g.sessions for g in rep.segments[0].groups} == {"newsletter-[id]": 26, "spring7": 14}
    for fmt in ("json", "markdown", "html"):
        text = render(rep, fmt)
        assert not re.search(r"sess-\d|cust_\d|user\d+@", text), fmt
    kept = analyze(ev, sessions=log, segments=("campaign",), shards=shards, include_ids=True).report
    assert "/account/cust_00001/orders/sess-0001-9f8e7d" in {c.key for c in kept.paths.after_exit[0].last_pages}
    assert "newsletter-cust_00001" in {g.value for g in kept.segments[0].groups} | set(kept.segments[0].other)


@pytest.mark.parametrize("page, expected", [
    ("/checkout?step=2&utm_source=mail#pay", "/checkout?step=[redacted]&utm_source=[redacted]#pay"),
    ("/a;jsessionid=XYZ?x=1#access_token=t", "/a;jsessionid=[redacted]?x=[redacted]#access_token=[redacted]"),
    ("/order/123e4567-e89b-12d3-a456-426614174000", "/order/[id]"),
    ("/orders/20261102-77/track", "/orders/[id]/track"),
    ("/product/light-wool-cardigan-1097", "/product/light-wool-cardigan-1097"),
    ("/x/ann@mail.example/y", "/x/[id]/y"),
    ("/newsletter/unsubscribe/jane.doe%40example.com", "/newsletter/unsubscribe/[id]"),
    ("/account/jane.doe%2Bshop%40example.com/orders", "/account/[id]/orders"),
    ("/account/JANE%2bX%40EXAMPLE.COM", "/account/[id]"),
    ("/u/jane@example.com.html", "/u/[id]"),                    # a segment holding an address
    ("/phone/+358401234567", "/phone/[id]"),                    # a phone number in international form
    ("/phone/%2B358401234567/x", "/phone/[id]/x"),
    ("/phone/%2b3584012", "/phone/[id]"),
    ("/p/c++-primer-5th-edition", "/p/c++-primer-5th-edition"),  # ordinary slugs with + stay
    ("/p/+123456", "/p/+123456"),                               # (too short for a phone number)
    ("/p/tv+sound+bar+4000", "/p/tv+sound+bar+4000"),
    ("https://shop1234.example/cart", "https://shop1234.example/cart"),
    (None, None),
])
def test_masked_page(page, expected):
    """What looks like an identifier in a page, whoever's (masked on the partials' distinct values)."""
    import polars as pl

    from funnel.core.partials import masked_page

    assert pl.DataFrame({"url": [page]}, schema={"url": pl.String}).select(masked_page(pl.col("url"))).item() == expected


def test_url_encoded_emails_and_phone_numbers_are_masked_in_every_output(tmp_path):
    """QA: an e-mail address with its @ (and +) URL-encoded, in a last page or a segment value,
    and a phone number as a path segment reached the JSON, Markdown and HTML; all are masked."""
    rows = ["timestamp,event,session_id,user_id,page_url,landing"]
    for i, page in enumerate(["/newsletter/unsubscribe/jane.doe%40example.com",
                              "/newsletter/unsubscribe/jane.doe@example.com",
                              "/account/jane.doe%2Bshop%40example.com/orders",
                              "/phone/+358401234567", "/phone/%2B358401234567"]):
        rows.append(f"2026-11-02T10:00:00Z,add_to_cart,s{i},u{i},{page},/unsubscribe/bob%40example.com")
    (tmp_path / "pii.csv").write_text("\n".join(rows) + "\n")
    out = {f: tmp_path / f"r.{f}" for f in ("json", "md", "html")}
    run = run_cli("analyze", str(tmp_path / "pii.csv"), "--segment", "landing",
                  "--json", str(out["json"]), "--markdown", str(out["md"]), "--html", str(out["html"]))
    assert run.returncode == 0, run.stderr
    report = json.loads(out["json"].read_text())
    pages = {p["key"]: p["count"] for p in report["paths"]["after_exit"][0]["last_pages"]}
    assert pages == {"/newsletter/unsubscribe/[id]": 2, "/account/[id]/orders": 1, "/phone/[id]": 2}
    for text in (run.stdout, run.stderr, *(p.read_text() for p in out.values())):
        assert not re.search(r"jane|bob|358401234567", text)


@pytest.mark.parametrize("text, expected", [
    ("/u/bobx/x", "/u/[id]/x"),             # the record's own user id, in any shape
    ("/hello-bobx", "/hello-[id]"),
    ("/s9/x", "/s9/x"),                     # (an id under 4 characters would mask parts of words)
    ("newsletter-bobx", "newsletter-[id]"),
    (None, None),
])
def test_own_ids_masked(text, expected):
    """A record's own session and user id, wherever they are in its page or segment value."""
    import polars as pl

    from funnel.config import Config
    from funnel.core.partials import own_ids_masked

    df = pl.DataFrame({"session_id": ["s9"], "user_id": ["bobx"], "v": [text]}, schema_overrides={"v": pl.String})
    assert df.select(own_ids_masked(pl.col("v"), Config())).item() == expected
    assert df.select(own_ids_masked(pl.col("v"), Config(include_ids=True))).item() == text


def test_same_report_gives_byte_identical_html(report, html):
    assert render_html(copy.deepcopy(report)) == html
    assert "2026-11-23 08:00 UTC" in html  # generated_at is the only time stamp


def test_import_stays_light():
    code = ("import sys, funnel.render.html, funnel.render.charts, funnel.render.filters; "
            "print(any(m == 'plotly' or m.startswith('plotly.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_real_sample_report_renders(sample_analysis):
    out = render_html(sample_analysis.report, plotlyjs="cdn")
    doc = parse(out)
    assert len(_json_blocks(doc)) >= 6
    assert "70.19%" in out
    assert out == render_html(sample_analysis.report, plotlyjs="cdn")


# --- filters ---------------------------------------------------------------------------------------

def test_filters():
    assert F.fmt_int(12345.4) == "12,345" and F.fmt_int(None) == "n/a"
    assert F.fmt_pct(0.7019, 2) == "70.19%" and F.fmt_pct(float("nan")) == "n/a"
    assert F.fmt_ci((0.68, 0.714)) == "68.0–71.4%" and F.fmt_ci(None) == "n/a"
    assert F.fmt_money(168000, "EUR") == "168,000 EUR" and F.fmt_money(12.5, None) == "12.50"
    assert F.fmt_seconds(45) == "45 s" and F.fmt_seconds(150) == "2.5 min" and F.fmt_seconds(7200) == "2.0 h"
    assert F.fmt_points(5) == "+5.0 pp" and F.fmt_ratio(2.345) == "2.3×" and F.fmt_p(0.0001) == "< 0.001"
    assert F.fmt_ts("2026-09-28T07:05:00Z") == "2026-09-28 07:05 UTC" and F.fmt_ts(None) == "n/a"


def test_all_hostile_fixture_strings_reach_the_page(hostile_html):
    """Guard for the hostile fixture itself: each string is present (escaped) somewhere."""
    from markupsafe import escape

    for s in XSS_ALL:
        assert str(escape(s)) in hostile_html, s


def test_headings_form_an_outline(html):
    levels = [int(m) for m in re.findall(r"<h([1-6])[ >]", html)]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False))
    assert '<html lang="en">' in html and 'name="viewport"' in html
