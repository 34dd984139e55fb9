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


def test_a_segment_column_not_found_names_where_it_was_asked_for_and_what_can_be_used(tmp_path):
    """'segment column 'devise' not found … — available: none': from funnel.toml it named
    neither the file nor the key, and 'none' was wrong: an event table's extra columns (a CSV's
    'store', an NDJSON object 'props') segment too. The error names the flag or the file and
    key, the closest column and the columns that can be used — the ones `funnel validate
    --json` lists as segment_columns."""
    import json

    import pytest
    from conftest import run_cli

    from funnel.api import analyze
    from funnel.config import load_config
    from funnel.errors import ConfigError

    csv = tmp_path / "ev.csv"
    csv.write_text("timestamp,session_id,event,store,currency\n2026-11-10T10:00:00Z,a,add_to_cart,s1,EUR\n"
                   "2026-11-10T10:01:00Z,a,purchase,s1,EUR\n")
    nd = tmp_path / "ev.ndjson"
    nd.write_text('{"timestamp":"2026-11-10T10:00:00Z","session_id":"a","event":"add_to_cart","props":{"c":"red"}}\n')
    with pytest.raises(ConfigError) as e:
        analyze(str(csv), segments=["stor"])
    assert str(e.value) == ("--segment 'stor': no such column in the events or the sessions log — did you mean "
                            "'store'? columns that can be used: store, currency")
    with pytest.raises(ConfigError, match="'region'.* columns that can be used: props$"):
        analyze(str(nd), segments=["region"])
    with pytest.raises(ConfigError, match="did you mean 'device'.* can be used: currency, payment_method, device, "):
        analyze(str(SAMPLE_EVENTS), sessions=str(SAMPLE_SESSIONS), segments=["devise"])
    assert analyze(str(csv), segments=["store"]).report.segments[0].column == "store"
    (tmp_path / "c.toml").write_text('[segments]\ncolumns = ["devise"]\n')
    with pytest.raises(ConfigError, match=r"^.*c\.toml \[segments\] columns 'devise': no such column .* can be used: "
                                          "currency, payment_method$"):
        analyze(str(SAMPLE_EVENTS), load_config(tmp_path / "c.toml"))
    r = run_cli("analyze", str(csv), "-c", str(tmp_path / "c.toml"), "-q", "--json", "-")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"error: {tmp_path / 'c.toml'} [segments] columns 'devise': no such column"), r.stderr
    for path, cols in ((csv, ["store", "currency"]), (nd, ["props"])):
        r = run_cli("validate", str(path), "--json", "-")
        assert json.loads(r.stdout)["segment_columns"] == cols, r.stdout
