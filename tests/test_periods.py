"""Periods: parsing, resolution against the data's end or --as-of, and the first-event rule."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, UTC

import polars as pl
import pytest

from conftest import SAMPLE_EVENTS, run_cli
from funnel.errors import ConfigError
from funnel.periods import (PeriodSpec, Span, entities_in, iso, label_for, last_week, month, overlap_warning,
                            parse_instant, previous_span, resolve_periods)

UTC = UTC
DATA_START = datetime(2026, 9, 28, 0, 10, 21, 892000, tzinfo=UTC)   # first event of the sample
DATA_END = datetime(2026, 11, 23, 0, 1, 30, 371000, tzinfo=UTC)     # last event of the sample (a Monday)


def d(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def resolve(**kw: str) -> tuple[Span | None, Span | None]:
    return PeriodSpec(**kw).resolve(DATA_START, DATA_END)


@pytest.mark.parametrize("text, expected", [
    ("2026-11-16", d(2026, 11, 16)),
    ("2026-11-16T08:30", d(2026, 11, 16, 8, 30)),               # naive = UTC
    ("2026-11-16T08:30:00Z", d(2026, 11, 16, 8, 30)),
    ("2026-11-16T10:30:00+02:00", d(2026, 11, 16, 8, 30)),
    (" 2026-11-16 ", d(2026, 11, 16)),
])
def test_parse_instant(text, expected):
    assert parse_instant(text, "--since") == expected


def test_parse_instant_error_names_the_flag_and_shows_the_form():
    with pytest.raises(ConfigError, match=r"invalid --until '16/11/2026'.*2026-11-16"):
        parse_instant("16/11/2026", "--until")


def test_last_week_is_the_last_complete_iso_week_before_as_of():
    # the sample ends on Monday 2026-11-23 00:01: the week Mon 16 .. Mon 23 is complete
    cur, prev = resolve(period="last-week")
    assert (cur.start, cur.end, cur.label) == (d(2026, 11, 16), d(2026, 11, 23), "2026-W47")
    assert prev is None
    # mid-week as-of: the week before the current one
    assert last_week(d(2026, 11, 19, 12)).label == "2026-W46"
    # as-of exactly at Monday 00:00: the week that just ended is complete
    assert last_week(d(2026, 11, 23)).label == "2026-W47"
    assert last_week(d(2026, 11, 22, 23, 59)).label == "2026-W46"
    # across a year boundary (2027-01-04 is the Monday of 2027-W01; 2026 has 53 ISO weeks)
    assert last_week(d(2027, 1, 5)).label == "2026-W53"


def test_as_of_overrides_the_data_end():
    cur, _ = resolve(period="last-week", as_of="2026-11-05")
    assert cur.label == "2026-W44" and cur.start == d(2026, 10, 26)


def test_last_7d_ends_at_as_of_and_includes_the_last_event():
    cur, prev = resolve(period="last-7d", compare="previous")
    assert cur.end == DATA_END + timedelta(microseconds=1)   # the last event is inside [start, end)
    assert cur.end - cur.start == timedelta(days=7)
    assert (prev.start, prev.end) == (cur.start - timedelta(days=7), cur.start)
    cur, _ = resolve(period="last-7d", as_of="2026-11-10")
    assert (cur.start, cur.end, cur.label) == (d(2026, 11, 3), d(2026, 11, 10), "2026-11-03_2026-11-10")


def test_iso_week_month_and_explicit_range():
    assert resolve(period="2026-W44")[0] == Span(d(2026, 10, 26), d(2026, 11, 2), "2026-W44")
    assert resolve(period="2026-w44")[0].label == "2026-W44"
    assert resolve(period="2026-11")[0] == Span(d(2026, 11, 1), d(2026, 12, 1), "2026-11")
    assert resolve(period="2026-12")[0].end == d(2027, 1, 1)
    cur, _ = resolve(period="2026-11-02..2026-11-09")
    assert cur == Span(d(2026, 11, 2), d(2026, 11, 9), "2026-W45")   # a whole ISO week gets its label


def test_since_until_are_inclusive_exclusive_and_open_ends_use_the_data():
    cur, _ = resolve(since="2026-11-01", until="2026-11-16")
    assert (cur.start, cur.end, cur.label) == (d(2026, 11, 1), d(2026, 11, 16), "2026-11-01_2026-11-16")
    assert resolve(since="2026-11-01")[0].end == DATA_END + timedelta(microseconds=1)
    assert resolve(until="2026-10-01")[0].start == DATA_START
    assert resolve()[0] is None


def test_compare_previous_is_the_equal_span_before():
    cur, prev = resolve(period="last-week", compare="previous")
    assert (prev.start, prev.end, prev.label) == (d(2026, 11, 9), d(2026, 11, 16), "2026-W46")
    _, prev = resolve(since="2026-11-10T12:00", until="2026-11-13T12:00", compare="previous")
    assert (prev.start, prev.end) == (d(2026, 11, 7, 12), d(2026, 11, 10, 12))
    # a calendar month compares with the previous calendar month (also across a year)
    assert resolve(period="2026-11", compare="previous")[1].label == "2026-10"
    assert resolve(period="2026-01", compare="previous")[1] == month(2025, 12)
    _, prev = resolve(period="last-week", compare="2026-10-26..2026-11-02")
    assert prev.label == "2026-W44"


def test_label_for():
    assert label_for(d(2026, 11, 16), d(2026, 11, 23)) == "2026-W47"
    assert label_for(d(2026, 2, 1), d(2026, 3, 1)) == "2026-02"
    assert label_for(d(2026, 11, 17), d(2026, 11, 24)) == "2026-11-17_2026-11-24"   # not a Monday
    assert label_for(d(2026, 11, 16, 1), d(2026, 11, 23, 1)) == "2026-11-16_2026-11-23"
    assert iso(d(2026, 11, 16)) == "2026-11-16T00:00:00Z"
    assert iso(d(2026, 11, 16) + timedelta(microseconds=1500)) == "2026-11-16T00:00:00.001500Z"


@pytest.mark.parametrize("kw, message", [
    ({"period": "lastweek"}, r"invalid --period 'lastweek'.*did you mean 'last-week'"),
    ({"period": "2026-W54"}, r"invalid ISO week 2026-W54.*W01 to W53"),
    ({"period": "2026-13"}, r"invalid month 2026-13"),
    ({"period": "last-week", "since": "2026-11-01"}, r"--period cannot be combined with --since/--until"),
    ({"since": "2026-11-20", "until": "2026-11-10"}, r"end .* must be after the start"),
    ({"since": "2026-11-20", "until": "2026-11-20"}, r"end .* must be after the start"),
    ({"compare": "previous"}, r"--compare previous needs a period"),
    ({"period": "last-week", "compare": "prev"}, r"invalid --compare 'prev'.*did you mean 'previous'"),
    ({"period": "last-week", "compare": "2026-11-01.."}, r"invalid --compare"),
    ({"as_of": "yesterday"}, r"invalid --as-of 'yesterday'"),
])
def test_bad_period_flags_are_config_errors_before_reading(kw, message):
    with pytest.raises(ConfigError, match=message):
        PeriodSpec(**kw).resolve(DATA_START, DATA_END)


@pytest.mark.parametrize("kw, hint", [
    ({"period": "last-week", "compare": "2026-10-20..2026-10-13"},
     "the range is reversed: give the earlier time first, e.g. 2026-10-13..2026-10-20"),
    ({"period": "2026-11-20..2026-11-10"}, "the range is reversed: give the earlier time first, e.g. 2026-11-10..2026-11-20"),
    ({"period": "last-week", "compare": "2026-10-20T10:00..2026-10-20T09:00"},
     "the range is reversed: give the earlier time first, e.g. 2026-10-20T09:00:00Z..2026-10-20T10:00:00Z"),
    ({"since": "2026-11-20", "until": "2026-11-10"}, "--until is before --since: swap them"),
    ({"since": "2026-11-20", "until": "2026-11-20"}, "--since is inclusive and --until exclusive; widen the range"),
    ({"period": "last-week", "compare": "2026-10-20..2026-10-20"}, "START is inclusive and END exclusive; widen the range"),
])
def test_bug_reversed_range_hint_spoke_of_since_and_until(kw, hint):
    """A reversed --compare START..END got '--since is inclusive and --until exclusive' (QA)."""
    with pytest.raises(ConfigError) as e:
        PeriodSpec(**kw).resolve(DATA_START, DATA_END)
    assert str(e.value).endswith(f"— {hint}")


def test_resolve_periods_accepts_datetime_pairs():
    ev = pl.LazyFrame({"ts": [DATA_START, DATA_END]})
    cur, prev = resolve_periods(ev, (datetime(2026, 11, 1), datetime(2026, 11, 8)), "previous")
    assert (cur.start, cur.end, prev.start) == (d(2026, 11, 1), d(2026, 11, 8), d(2026, 10, 25))
    cur, prev = resolve_periods(ev, PeriodSpec(period="last-week"), (d(2026, 1, 1), d(2026, 2, 1)))
    assert cur.label == "2026-W47" and prev.label == "2026-01"
    assert resolve_periods(ev, None, None) == (None, None)
    assert previous_span(None, cur) is None


def test_entities_belong_to_the_period_of_their_first_event():
    span = Span(d(2026, 11, 16), d(2026, 11, 23), "2026-W47")
    ev = pl.LazyFrame({
        "_entity": ["before", "before", "straddles", "straddles", "at_start", "at_end", "inside"],
        "ts": [d(2026, 11, 15, 23, 50), d(2026, 11, 16, 0, 10),    # started before: out, even its later event
               d(2026, 11, 22, 23, 55), d(2026, 11, 23, 0, 20),    # started inside: in, with its later event
               d(2026, 11, 16), d(2026, 11, 23), d(2026, 11, 18)],
    }).with_columns(pl.col("ts").dt.cast_time_unit("us"))
    got = entities_in(ev, span).collect()
    assert sorted(set(got["_entity"])) == ["at_start", "inside", "straddles"]
    assert got.filter(pl.col("_entity") == "straddles").height == 2


def test_analyze_with_a_period_counts_exactly_the_sessions_starting_in_it(tmp_path):
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--since", "2026-11-01", "--until", "2026-11-16", "--json", "-", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["input"]["period"] == {"start": "2026-11-01T00:00:00Z", "end": "2026-11-16T00:00:00Z"}
    first = (pl.read_csv(SAMPLE_EVENTS).group_by("session_id")
             .agg(pl.col("timestamp").str.to_datetime(time_zone="UTC").min().alias("first")))
    expected = first.filter((pl.col("first") >= d(2026, 11, 1)) & (pl.col("first") < d(2026, 11, 16))).height
    assert doc["input"]["sessions"] == doc["funnel"]["entities"] == expected
    assert doc["input"]["rows_read"] == 41803                      # the whole input was read
    assert doc["comparison"] is None and doc["gates"] == []


def test_a_period_without_data_is_an_input_error():
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--period", "2027-01", "--json", "-", "-q")
    assert r.returncode == 2 and r.stdout == ""
    assert "no sessions start in the period 2027-01" in r.stderr and "the data covers 2026-09-28" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_comparison_period_that_overlaps_the_analysed_one_is_warned_of():
    """--compare accepted a period overlapping the analysed one silently: sessions starting in
    both are in both reports, so the comparison's test is not between independent samples. A
    report warning now says so (with a period, or against the data's own span without one)."""
    from funnel.model import Period

    data = Period("2026-09-28T00:10:21Z", "2026-11-23T00:01:30Z")
    october, week = month(2026, 10), Span(d(2026, 10, 8), d(2026, 10, 15), "")
    [w] = overlap_warning(october, data, week, "session")
    assert w.startswith("the comparison period 2026-10-08T00:00:00Z → 2026-10-15T00:00:00Z overlaps the analysed "
                        "period 2026-10-01T00:00:00Z → 2026-11-01T00:00:00Z: sessions starting in both")
    assert "not between independent samples" in w
    [w] = overlap_warning(None, data, week, "user")
    assert "overlaps the analysed data (no --period: 2026-09-28T00:10:21Z to 2026-11-23T00:01:30Z): users" in w
    assert overlap_warning(october, data, month(2026, 9), "session") == []            # touching is not overlapping
    assert overlap_warning(None, data, Span(d(2026, 11, 23, 0, 1, 31), d(2026, 12, 1), ""), "session") == []
    assert overlap_warning(None, data, Span(d(2026, 11, 23, 0, 1, 30), d(2026, 12, 1), ""), "session")  # last event
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--period", "2026-10", "--compare", "2026-10-08..2026-10-15",
                "--json", "-", "-q")
    assert r.returncode == 0, r.stderr
    assert [w for w in json.loads(r.stdout)["warnings"] if "overlaps" in w] == \
        overlap_warning(october, data, week, "session")
    assert "warning: the comparison period 2026-10-08T00:00:00Z" in r.stderr   # (-q: still on the terminal)
