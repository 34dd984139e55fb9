"""The HTML report in a real browser: headless Debian chromium driven by playwright-python.

Opens the report from a file:// URL (offline, inline plotly.js), checks that there are no
console errors or CSP violations, that every chart renders an SVG, and that a report full of
hostile strings injects nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from funnel.render.html import render_html

try:
    from _report_factory import XSS_IMG, XSS_SCRIPT, make_report
except ImportError:  # tests/ imported as a package
    from tests._report_factory import XSS_IMG, XSS_SCRIPT, make_report

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"browser tests need Debian chromium at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright-python")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _open(browser, path: Path, **context):
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.add_init_script("""
        window.__csp = [];
        document.addEventListener('securitypolicyviolation',
            e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
    """)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function(
        "() => [...document.querySelectorAll('div[data-chart]')]"
        ".every(h => h.querySelector('svg.main-svg') || h.classList.contains('chart-failed'))",
        timeout=15000)
    return ctx, page, problems, requests


def _rendered(page) -> tuple[int, int]:
    return page.evaluate("""() => {
        const holders = [...document.querySelectorAll('div[data-chart]')];
        const drawn = holders.filter(h => h.classList.contains('js-plotly-plot') && h.querySelector('svg.main-svg'));
        return [holders.length, drawn.length];
    }""")


@pytest.fixture(scope="module")
def hostile_page(browser, tmp_path_factory):
    path = tmp_path_factory.mktemp("html") / "hostile.html"
    path.write_text(render_html(make_report(hostile=True)), encoding="utf-8")
    ctx, page, problems, requests = _open(browser, path)
    yield page, problems, requests
    ctx.close()


def test_every_chart_renders_without_errors(hostile_page):
    page, problems, _ = hostile_page
    holders, drawn = _rendered(page)
    assert holders >= 7
    assert drawn == holders
    assert problems == []
    assert page.evaluate("window.__csp") == []


def test_hostile_strings_inject_nothing(hostile_page):
    page, _, requests = hostile_page
    # Hover labels render data strings too: they must show the text, not interpret it.
    page.hover("#chart-funnel .bars path", force=True)
    page.wait_for_selector("#chart-funnel .hoverlayer .hovertext", timeout=3000)
    hover = page.text_content("#chart-funnel .hoverlayer") or ""
    assert "<img src=x onerror=window.__pwned=1>" in hover or "</script><script>" in hover
    page.hover("#chart-sankey .sankey-node", force=True)
    page.hover("#chart-segment-0 .bars path", force=True)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    # Only our three scripts (plotly.js, boot) + JSON data blocks; nothing injected.
    kinds = page.evaluate("[...document.scripts].map(s => s.type || 'js')")
    assert kinds.count("js") == 2
    assert set(kinds) == {"js", "application/json"}
    assert page.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
    # The hostile text is shown literally, in tables and in chart labels.
    body = page.inner_text("main")
    assert XSS_SCRIPT in body and XSS_IMG in body
    labels = page.evaluate("[...document.querySelectorAll('#chart-funnel .ytick text')].map(t => t.textContent)")
    assert any("<img src=x" in t for t in labels)
    # Offline: nothing but the file itself was requested.
    assert all(u.startswith("file://") for u in requests)


@pytest.fixture(scope="module")
def sample_page(browser, tmp_path_factory, sample_analysis):
    path = tmp_path_factory.mktemp("html") / "sample.html"
    path.write_text(render_html(sample_analysis.report), encoding="utf-8")
    ctx, page, problems, requests = _open(browser, path)
    yield page, problems, requests
    ctx.close()


def test_real_sample_report_in_browser(sample_page):
    page, problems, requests = sample_page
    holders, drawn = _rendered(page)
    assert holders >= 7 and drawn == holders
    assert problems == [] and page.evaluate("window.__csp") == []
    assert all(u.startswith("file://") for u in requests)


def test_phone_viewport_and_print(sample_page):
    page, problems, _ = sample_page
    page.set_viewport_size({"width": 375, "height": 740})
    page.wait_for_timeout(300)  # plotly's responsive resize
    # No horizontal scrolling of the page itself (wide tables scroll inside their wrapper).
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert page.evaluate("[...document.querySelectorAll('.js-plotly-plot')]"
                         ".every(p => p.getBoundingClientRect().width <= 375)")
    # Printing: navigation hidden, every table equivalent opened.
    page.emulate_media(media="print")
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    assert page.evaluate("getComputedStyle(document.querySelector('nav.toc')).display") == "none"
    assert page.evaluate("[...document.querySelectorAll('details')].every(d => d.open)")
    assert problems == []


def test_cdn_option_offline_falls_back_to_tables(browser, tmp_path):
    path = tmp_path / "cdn.html"
    path.write_text(render_html(make_report(), plotlyjs="cdn"), encoding="utf-8")
    ctx = browser.new_context()
    ctx.route("https://cdn.plot.ly/**", lambda route: route.abort())
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(path.as_uri(), wait_until="load")
        assert errors == []
        assert "no-plotly" in page.evaluate("document.documentElement.className")
        assert page.evaluate("document.querySelectorAll('.js-plotly-plot').length") == 0
        assert page.evaluate("document.querySelectorAll('figure.chart details table').length") >= 7
    finally:
        ctx.close()


CONTRAST_JS = """() => {
  const lum = c => {
    const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const bg = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      const m = c.match(/[\\d.]+/g);
      if (m && (m.length < 4 || Number(m[3]) > 0.5)) return c;
    }
    return 'rgb(255, 255, 255)';
  };
  const bad = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el || el.closest('svg, script, style, .js-plotly-plot')) continue;
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const st = getComputedStyle(el);
    const [a, b] = [lum(st.color), lum(bg(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const large = parseFloat(st.fontSize) >= 24 || (parseFloat(st.fontSize) >= 18.66 && Number(st.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) bad.push(`${n.textContent.trim().slice(0, 40)}: ${ratio.toFixed(2)}`);
  }
  return bad;
}"""


def test_text_contrast_meets_wcag_aa(sample_page):
    page, _, _ = sample_page
    page.emulate_media(media="screen")
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert page.evaluate(CONTRAST_JS) == []
