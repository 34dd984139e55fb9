"""Segment breakdowns: Wilson intervals, BH-corrected tests, (other) grouping, reasons per group."""

from __future__ import annotations

from conftest import SAMPLE_EVENTS, SAMPLE_SESSIONS


def test_segment_groups_add_up(sample_analysis):
    rep = sample_analysis.report
    by_col = {s.column: s for s in rep.segments}
    assert {"device", "channel", "country", "user_type"} <= set(by_col)
    for seg in rep.segments:
        assert sum(g.abandonment.denominator for g in seg.groups) == rep.abandonment.carts
        assert sum(g.abandonment.numerator for g in seg.groups) == rep.abandonment.abandoned
        for g in seg.groups:
            assert sum(g.reasons.values()) == g.abandonment.numerator
            lo, hi = g.conversion.ci95
            assert lo <= g.conversion.rate <= hi
            assert (g.q_value is None) or g.q_value >= (g.p_value or 0)
        assert abs(sum(g.value_at_stake for g in seg.groups) - sum(r.value for r in rep.abandonment.reasons)) < 1.0


def test_mobile_ui_bug_stands_out(sample_analysis):
    """The sample plants a mobile form bug: mobile's UI-friction carts dominate and its conversion
    differs significantly from the rest."""
    device = next(s for s in sample_analysis.report.segments if s.column == "device")
    g = {x.value: x for x in device.groups}
    assert g["mobile"].reasons["ui_friction"] > 2 * g["desktop"].reasons["ui_friction"]
    assert g["mobile"].significant and g["mobile"].conversion.rate < g["desktop"].conversion.rate


def test_small_groups_are_other(tmp_path):
    from funnel.api import analyze

    a = analyze(str(SAMPLE_EVENTS), sessions=str(SAMPLE_SESSIONS), segments=("country",), min_segment_size=600)
    country = next(s for s in a.report.segments if s.column == "country")
    assert country.other and "(other)" in {g.value for g in country.groups}
    assert all(v not in {g.value for g in country.groups} for v in country.other)


def test_segment_by_a_column_the_record_holds(tmp_path):
    """``--segment payment_method`` / ``currency`` (columns every record already holds) crashed
    with a duplicate column. They segment by the record's value: the session's last payment
    method and first currency; sessions without one are '(none)'. The shards agree."""
    import polars as pl
    from conftest import run_cli

    from funnel.api import analyze

    ev = pl.read_csv(SAMPLE_EVENTS)
    last_pay = ev.filter(pl.col("payment_method").is_not_null()).sort("timestamp") \
        .group_by("session_id").agg(pl.col("payment_method").last())
    for col in ("payment_method", "currency"):
        one, two = (analyze(str(SAMPLE_EVENTS), segments=(col,), shards=k).report for k in (1, 3))
        seg = next(s for s in one.segments if s.column == col)
        assert seg.groups and sum(g.sessions for g in seg.groups) == one.funnel.entities - one.funnel.excluded
        assert [s.to_dict() for s in two.segments] == [s.to_dict() for s in one.segments]
    seg = next(s for s in analyze(str(SAMPLE_EVENTS), segments=("payment_method",)).report.segments)
    sizes = {g.value: g.sessions for g in seg.groups}
    want = last_pay.group_by("payment_method").len()
    for value, n in want.iter_rows():
        if value in sizes:
            assert sizes[value] == n
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--segment", "payment_method", "--json", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
