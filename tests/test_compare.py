"""Period comparison: per-step changes in percentage points, intervals and significance."""

from __future__ import annotations

import json
import math

import pytest

from conftest import SAMPLE_EVENTS, SAMPLE_SESSIONS, run_cli
from funnel.api import analyze
from funnel.core.compare import compare_reports, step_change
from funnel.core.stats import diff_interval
from funnel.model import Period
from funnel.periods import PeriodSpec


def _z_test(k1: int, n1: int, k0: int, n0: int) -> float:
    """Textbook pooled two-proportion z-test, two-sided (independent of funnel.core.stats)."""
    p = (k1 + k0) / (n1 + n0)
    z = (k1 / n1 - k0 / n0) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n0))
    return math.erfc(abs(z) / math.sqrt(2))


def test_step_change_in_points_with_interval_and_test():
    ch = step_change("payment", 30, 100, 20, 100)
    assert (ch.current.numerator, ch.current.denominator, ch.current.rate) == (30, 100, 0.3)
    assert (ch.previous.numerator, ch.previous.denominator, ch.previous.rate) == (20, 100, 0.2)
    assert ch.change_points == pytest.approx(10.0)
    lo, hi = diff_interval(30, 100, 20, 100)
    assert ch.ci95_points == (pytest.approx(lo * 100), pytest.approx(hi * 100))
    assert ch.ci95_points[0] < 0 < ch.ci95_points[1]        # +10 points on 100 each: not significant
    assert ch.p_value == pytest.approx(_z_test(30, 100, 20, 100), abs=1e-6)
    assert ch.p_value == pytest.approx(0.1025, abs=1e-3)
    assert not ch.significant


def test_the_same_change_on_more_data_is_significant():
    ch = step_change("payment", 300, 1000, 200, 1000)
    assert ch.change_points == pytest.approx(10.0)
    assert ch.p_value < 1e-5 and ch.significant
    assert 0 < ch.ci95_points[0] < 10 < ch.ci95_points[1]
    down = step_change("payment", 200, 1000, 300, 1000)
    assert down.change_points == pytest.approx(-10.0) and down.significant


def test_no_previous_data_gives_no_change():
    ch = step_change("conversion", 20, 100, 0, 0)
    assert ch.previous.rate is None and ch.previous.ci95 is None
    assert ch.change_points is None and ch.ci95_points is None and ch.p_value is None and not ch.significant


@pytest.fixture(scope="module")
def weeks():
    """W44 (the planted payment outage) compared with W43, plus each week analysed alone."""
    kw = dict(sessions=str(SAMPLE_SESSIONS))
    both = analyze(str(SAMPLE_EVENTS), period=PeriodSpec(period="2026-W44", compare="previous"), **kw).report
    w44 = analyze(str(SAMPLE_EVENTS), period=PeriodSpec(period="2026-W44"), **kw).report
    w43 = analyze(str(SAMPLE_EVENTS), period=PeriodSpec(period="2026-W43"), **kw).report
    return both, w44, w43


def test_the_comparison_uses_both_periods_counts(weeks):
    both, w44, w43 = weeks
    c = both.comparison
    assert c.current == both.input.period == Period("2026-10-26T00:00:00Z", "2026-11-02T00:00:00Z")
    assert c.previous == Period("2026-10-19T00:00:00Z", "2026-10-26T00:00:00Z")
    assert [s.name for s in c.steps] == [s.name for s in w44.funnel.steps[1:]]
    for i, ch in enumerate(c.steps, 1):
        assert (ch.current.numerator, ch.current.denominator) == (w44.funnel.steps[i].sessions,
                                                                 w44.funnel.steps[i - 1].sessions)
        assert (ch.previous.numerator, ch.previous.denominator) == (w43.funnel.steps[i].sessions,
                                                                   w43.funnel.steps[i - 1].sessions)
        assert ch.current.rate == w44.funnel.steps[i].conversion_from_previous
    assert (c.conversion.current.numerator, c.conversion.current.denominator) == (
        w44.funnel.overall.numerator, w44.funnel.overall.denominator)
    assert (c.abandonment_rate.previous.numerator, c.abandonment_rate.previous.denominator) == (
        w43.abandonment.abandoned, w43.abandonment.carts)
    # the funnel starts at the cart: abandonment = 1 - conversion, so the changes mirror
    assert c.abandonment_rate.change_points == pytest.approx(-c.conversion.change_points)
    # the current report itself is unchanged by the comparison
    assert both.funnel == w44.funnel and both.abandonment == w44.abandonment


def test_the_payment_outage_shows_as_a_significant_drop_at_purchase(weeks):
    ch = next(s for s in weeks[0].comparison.steps if s.name == "purchase")
    assert ch.change_points < -10 and ch.significant and ch.ci95_points[1] < 0


def test_a_previous_period_without_data_compares_with_nothing():
    # the sample starts on Monday 2026-09-28 (2026-W40): W39 is empty
    rep = analyze(str(SAMPLE_EVENTS), period=PeriodSpec(period="2026-W40", compare="previous")).report
    c = rep.comparison
    assert c.previous == Period("2026-09-21T00:00:00Z", "2026-09-28T00:00:00Z")
    for ch in [c.conversion, c.abandonment_rate, *c.steps]:
        assert ch.previous.denominator == 0 and ch.change_points is None and not ch.significant
    assert c.conversion.current.denominator == rep.funnel.steps[0].sessions > 0


def test_compare_reports_without_previous_report(sample_analysis):
    rep = sample_analysis.report
    c = compare_reports(rep, None, rep.input.period, Period("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))
    assert c.conversion.current.rate == rep.funnel.overall.rate and c.conversion.previous.rate is None


def test_cli_compare_explicit_range_in_json_and_markdown(tmp_path):
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--period", "last-week", "--compare", "2026-11-02..2026-11-09",
                "--json", str(tmp_path / "r.json"), "--markdown", "-", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    c = doc["comparison"]
    assert list(c) == ["current", "previous", "steps", "abandonment_rate", "conversion"]
    assert c["current"] == doc["input"]["period"] == {"start": "2026-11-16T00:00:00Z", "end": "2026-11-23T00:00:00Z"}
    assert c["previous"] == {"start": "2026-11-02T00:00:00Z", "end": "2026-11-09T00:00:00Z"}
    assert list(c["conversion"]) == ["name", "current", "previous", "change_points", "ci95_points", "p_value",
                                     "significant"]
    assert "## Change vs previous period (2026-11-02T00:00:00Z → 2026-11-09T00:00:00Z)" in r.stdout
    assert "| conversion |" in r.stdout and "| purchase |" in r.stdout


def test_a_comparison_period_without_sessions_is_warned_of(tmp_path):
    """QA: --compare previous right after the data starts (the sample's 2026-W40) gave 'previous'
    0/0 and n/a everywhere without a word. A report warning (JSON, terminal even with -q,
    Markdown, HTML; every route) says the comparison period has no sessions, with its dates; a
    gate on a comparison metric still does not fire (its value is null), others still do."""
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--period", "2026-W40", "--compare", "previous", "-q",
                "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"),
                "--html", str(tmp_path / "r.html"), "--fail-on", "conversion_drop>5", "--fail-on", "carts<1")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    said = ("no sessions start in the comparison period 2026-09-21T00:00:00Z → 2026-09-28T00:00:00Z, so nothing can "
            "be compared: its rates and every change are n/a, and a gate on them does not fire — compare with a "
            "period the data covers (--compare START..END)")
    assert said in doc["warnings"]
    assert said in " ".join(r.stderr.split())
    assert f"> **Warning:** {said}" in (tmp_path / "r.md").read_text()
    assert said in (tmp_path / "r.html").read_text()
    assert [(g["metric"], g["value"], g["fired"]) for g in doc["gates"]] == [("conversion_drop", None, False),
                                                                          ("carts", doc["abandonment"]["carts"], False)]
    fired = run_cli("analyze", str(SAMPLE_EVENTS), "--period", "2026-W40", "--compare", "previous", "-q",
                    "--json", str(tmp_path / "f.json"), "--fail-on", "conversion_drop>5", "--fail-on", "carts>1")
    assert fired.returncode == 1 and json.loads((tmp_path / "f.json").read_text())["gates"][1]["fired"]
    # every route says it, as it happens; a comparison period with sessions is not warned of
    spec = PeriodSpec(period="2026-W40", compare="previous")
    assert said in analyze(str(SAMPLE_EVENTS), period=spec, shards=3, tables=False).report.warnings
    busy = analyze(str(SAMPLE_EVENTS), period=PeriodSpec(period="2026-W41", compare="previous"), tables=False)
    assert not [w for w in busy.report.warnings if "comparison period" in w]
    assert busy.report.comparison.conversion.previous.denominator > 0
