"""The sample generator: deterministic, well-formed, and its planted stories are visible."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from funnel.io.sample import (
    EVENT_COLUMNS,
    LABEL_COLUMNS,
    SESSION_COLUMNS,
    Sample,
    generate_sample,
    sample_plan,
    write_sample,
)
from funnel.schema import ALL_REASONS

SIGNAL_PAGES = ("/returns-policy", "/shipping-info", "/account/login")


@pytest.fixture(scope="module")
def sample() -> Sample:
    return generate_sample()


@pytest.fixture(scope="module")
def per_session(sample: Sample) -> pl.DataFrame:
    e = sample.events
    return e.group_by("session_id").agg(
        cart=(pl.col("event") == "add_to_cart").any(),
        purchase=(pl.col("event") == "purchase").any(),
        returns_page=(pl.col("page_url") == "/returns-policy").any(),
        payment_failed=(pl.col("event") == "payment_failed").any(),
        form_error=(pl.col("event") == "form_error").any(),
        ship_share=(pl.col("shipping_cost") / pl.col("cart_value"))
        .filter(pl.col("event") == "add_shipping_info").max(),
        start=pl.col("timestamp").min(),
        end=pl.col("timestamp").max(),
    )


def test_same_seed_gives_identical_frames():
    a, b = generate_sample(800, seed=3), generate_sample(800, seed=3)
    assert a.events.equals(b.events)
    assert a.sessions.equals(b.sessions)
    assert a.labels.equals(b.labels)


def test_different_seed_gives_different_frames():
    a, b = generate_sample(800, seed=3), generate_sample(800, seed=4)
    assert not a.events.equals(b.events)
    assert not a.labels.equals(b.labels)


def test_columns_and_types(sample: Sample):
    e, s, lab = sample.events, sample.sessions, sample.labels
    assert tuple(e.columns) == EVENT_COLUMNS
    assert tuple(s.columns) == SESSION_COLUMNS
    assert tuple(lab.columns) == LABEL_COLUMNS
    assert e.schema["timestamp"] == pl.Datetime("ms", "UTC")
    for col in ("cart_value", "shipping_cost"):
        assert e.schema[col] == pl.Float64
    assert e.schema["load_ms"] == pl.Int64
    for col in ("session_id", "user_id", "event", "page_url", "currency", "payment_method",
                "error_type"):
        assert e.schema[col] == pl.String
    assert all(dt == pl.String for dt in s.schema.values())
    assert all(dt == pl.String for dt in lab.schema.values())


def test_shape_and_ids(sample: Sample):
    e, s = sample.events, sample.sessions
    assert s.height == 6000
    assert s["session_id"].n_unique() == 6000
    assert s["session_id"].str.contains(r"^s_\d{6}$").all()
    assert s["user_id"].str.contains(r"^u_\d{5}$").all()
    assert set(e["session_id"].unique()) == set(s["session_id"])
    # events carry the session's user
    pairs = e.select("session_id", "user_id").unique().join(s, on="session_id")
    assert (pairs["user_id"] == pairs["user_id_right"]).all()
    # some returning users come back several times
    visits = s.group_by("user_id").len()
    assert visits.filter(pl.col("len") > 1).height > 100
    assert set(s["user_type"]) == {"new", "returning"}
    assert set(s["device"]) == {"mobile", "desktop", "tablet"}
    assert set(s["channel"]) == {"organic", "paid_search", "social", "email", "direct"}
    assert {"FI", "SE", "DE"} <= set(s["country"])
    mobile = (s["device"] == "mobile").mean()
    assert 0.48 < mobile < 0.62


def test_events_sorted_and_well_formed(sample: Sample):
    e = sample.events
    assert e["timestamp"].is_sorted()
    # strictly increasing time within each session
    gaps = e.select(pl.col("timestamp").diff().over("session_id").alias("gap"))["gap"]
    assert gaps.drop_nulls().dt.total_milliseconds().min() > 0
    assert e["page_url"].null_count() == 0
    pv = e.filter(pl.col("event") == "page_view")
    assert pv["load_ms"].null_count() == 0
    assert e.filter(pl.col("event") != "page_view")["load_ms"].null_count() == \
        e.filter(pl.col("event") != "page_view").height
    assert pv["load_ms"].quantile(0.5) < 2500
    assert (pv["load_ms"] > 4000).sum() > 0
    for ev in ("add_to_cart", "begin_checkout", "add_shipping_info", "purchase"):
        rows = e.filter(pl.col("event") == ev)
        assert rows["cart_value"].null_count() == 0, ev
        assert (rows["currency"] == "EUR").all(), ev
    assert e.filter(pl.col("event") == "add_shipping_info")["shipping_cost"].null_count() == 0
    purchases = e.filter(pl.col("event") == "purchase")
    assert purchases["shipping_cost"].null_count() == 0
    assert purchases["payment_method"].null_count() == 0
    methods = set(e["payment_method"].drop_nulls())
    assert methods == {"card", "paypal", "klarna", "mobilepay", "apple_pay"}
    errors = e.filter(pl.col("error_type").is_not_null()).group_by("event").agg(
        pl.col("error_type").unique().sort())
    by_event = {r["event"]: set(r["error_type"]) for r in errors.to_dicts()}
    assert by_event == {"payment_failed": {"card_declined", "PAYMENT_ERROR"},
                        "form_error": {"INPUT_INVALID", "INPUT_REQUIRED"},
                        "exception": {"js_error"}}
    assert set(SIGNAL_PAGES) <= set(e["page_url"])


def test_cart_values_and_period(sample: Sample, per_session: pl.DataFrame):
    e = sample.events
    values = e.filter(pl.col("event") == "begin_checkout")["cart_value"]
    assert 40 <= values.median() <= 150
    plan = sample_plan()
    days = e["timestamp"].dt.date()
    assert days.min() == plan.start
    assert days.max() <= plan.end
    assert days.n_unique() >= 50
    # a large share of sessions never add to cart
    assert per_session["cart"].mean() < 0.5
    # some sessions cross midnight
    assert per_session.filter(pl.col("start").dt.date() != pl.col("end").dt.date()).height > 0


def test_labels_cover_exactly_abandoned_carts(sample: Sample, per_session: pl.DataFrame):
    abandoned = per_session.filter(pl.col("cart") & ~pl.col("purchase"))["session_id"]
    assert sample.labels["session_id"].n_unique() == sample.labels.height
    assert set(sample.labels["session_id"]) == set(abandoned)
    assert sample.labels["session_id"].is_sorted()


def test_every_reason_is_well_represented(sample: Sample):
    shares = dict(sample.labels["true_reason"].value_counts(normalize=True).iter_rows())
    assert set(shares) == set(ALL_REASONS)
    assert all(share >= 0.04 for share in shares.values()), shares
    assert max(shares, key=shares.get) == "unknown"
    assert 0.35 <= shares["unknown"] <= 0.6


def test_abandonment_rate_is_realistic(per_session: pl.DataFrame):
    carts = per_session.filter("cart")
    rate = 1 - carts["purchase"].mean()
    assert 0.6 <= rate <= 0.8


def test_payment_failures_concentrate_in_the_outage(sample: Sample):
    plan = sample_plan()
    fails = sample.events.filter(pl.col("event") == "payment_failed").with_columns(
        inside=pl.col("timestamp").dt.date().is_between(plan.outage_start, plan.outage_end,
                                                        closed="left"))
    outage_days = (plan.outage_end - plan.outage_start).days
    other_days = (plan.end - plan.start).days - outage_days
    inside = fails["inside"].sum()
    assert inside / outage_days > 5 * (fails.height - inside) / other_days
    errors = fails.filter(pl.col("error_type") == "PAYMENT_ERROR")
    assert errors["inside"].mean() > 0.6
    assert (date(2026, 10, 28), date(2026, 11, 1)) == (plan.outage_start, plan.outage_end)


def test_planted_shipping_shock_and_mobile_bug(sample: Sample):
    plan = sample_plan()
    e = sample.events.with_columns(day=pl.col("timestamp").dt.date())
    ship = e.filter(pl.col("event") == "add_shipping_info")
    before = ship.filter(pl.col("day") < plan.shipping_shock)
    after = ship.filter(pl.col("day") >= plan.shipping_shock)
    assert before["shipping_cost"].max() < after["shipping_cost"].max()
    assert (before["shipping_cost"] > 0).mean() < (after["shipping_cost"] > 0).mean()
    # free shipping from 50 EUR before the shock, from 100 EUR after it
    assert before.filter((pl.col("cart_value") >= 50) & (pl.col("shipping_cost") == 4.9)).height == 0
    assert after.filter((pl.col("cart_value") < 100) & (pl.col("shipping_cost") == 0)).height == 0
    errors = e.filter(pl.col("event") == "form_error").join(sample.sessions, on="session_id")
    mobile = errors.filter(pl.col("device") == "mobile")
    bug = mobile.filter(pl.col("day") >= plan.ui_bug_start)
    assert bug.height > 3 * (mobile.height - bug.height)


def test_signals_are_noisy_both_ways(sample: Sample, per_session: pl.DataFrame):
    s = per_session.join(sample.labels, on="session_id", how="left")
    buyers = s.filter("purchase")
    # confounders: converters who show each signal
    assert buyers["returns_page"].sum() > 10
    assert buyers["payment_failed"].sum() > 5
    assert buyers["form_error"].sum() > 10
    assert (buyers["ship_share"] > 0.12).sum() > 10
    # signals point the right way on average
    by_reason = s.filter(pl.col("true_reason").is_not_null()).group_by("true_reason").agg(
        pl.col("returns_page", "payment_failed", "form_error").mean(),
        pl.col("ship_share").mean())
    r = {row["true_reason"]: row for row in by_reason.to_dicts()}
    assert r["returns"]["returns_page"] == 1.0
    assert r["payment"]["payment_failed"] > r["unknown"]["payment_failed"]
    assert r["ui_friction"]["form_error"] > 3 * r["unknown"]["form_error"]
    assert r["shipping"]["ship_share"] > r["unknown"]["ship_share"]
    # ... but never perfectly: some unknown abandoners carry a stray signal
    assert r["unknown"]["returns_page"] > 0


def test_small_and_short_samples_work():
    s = generate_sample(50, seed=1, weeks=1)
    assert s.sessions.height == 50
    assert tuple(s.events.columns) == EVENT_COLUMNS
    with pytest.raises(ValueError):
        generate_sample(0)


def test_write_sample_round_trips(tmp_path, sample: Sample):
    paths = write_sample(tmp_path / "out", n_sessions=6000, seed=7)
    assert [p.name for p in paths] == ["events.csv", "sessions.csv", "labels.csv"]
    assert all(p.is_file() for p in paths)
    first = paths[0].read_text().splitlines()
    assert first[0] == ",".join(EVENT_COLUMNS)
    assert first[1].split(",")[0].endswith("Z")
    assert len(first[1].split(",")[0]) == len("2026-10-05T14:03:22.120Z")
    events = pl.read_csv(paths[0], try_parse_dates=True, schema_overrides={
        "error_type": pl.String, "payment_method": pl.String, "currency": pl.String})
    expected = sample.events.with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    assert events.equals(expected)
    assert pl.read_csv(paths[1]).equals(sample.sessions)
    assert pl.read_csv(paths[2]).equals(sample.labels)
    # byte-identical on a second run
    again = write_sample(tmp_path / "again", n_sessions=6000, seed=7)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
