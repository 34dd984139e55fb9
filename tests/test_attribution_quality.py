"""Attribution quality against the sample generator's planted causes (labels.csv).

The rules in funnel.core.signals / funnel.core.reasons were tuned on seed 7 only; these seeds
were not looked at while tuning. Macro-F1 is over the five classes payment, shipping, returns,
ui_friction and unknown, for every abandoned cart, through the whole pipeline (funnel.api).
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from funnel.api import analyze
from funnel.io.sample import sample_plan, write_sample
from funnel.schema import ALL_REASONS

TEST_SEEDS = (11, 23)
MIN_MACRO_F1 = 0.8


def macro_f1(labels: pl.DataFrame, carts: pl.DataFrame) -> tuple[float, dict[str, float]]:
    j = labels.join(carts.select("session_id", "reason"), on="session_id", how="left").with_columns(
        pl.col("reason").fill_null("(missing)"))
    per = {}
    for r in ALL_REASONS:
        tp = j.filter((pl.col("true_reason") == r) & (pl.col("reason") == r)).height
        fp = j.filter((pl.col("true_reason") != r) & (pl.col("reason") == r)).height
        fn = j.filter((pl.col("true_reason") == r) & (pl.col("reason") != r)).height
        per[r] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return sum(per.values()) / len(per), per


@pytest.fixture(scope="module", params=TEST_SEEDS)
def seeded(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"sample{request.param}")
    write_sample(out, n_sessions=6000, seed=request.param)
    analysis = analyze(str(out / "events.csv"), sessions=str(out / "sessions.csv"))
    return request.param, pl.read_csv(out / "labels.csv"), analysis


def test_macro_f1_on_unseen_seeds(seeded):
    seed, labels, analysis = seeded
    score, per = macro_f1(labels, analysis.carts)
    assert analysis.carts.height == labels.height           # every abandoned cart gets a verdict
    assert score >= MIN_MACRO_F1, f"seed {seed}: macro-F1 {score:.3f} {per}"
    assert min(per.values()) >= 0.6, f"seed {seed}: a class collapsed {per}"


def test_confidence_tracks_correctness(seeded):
    _, labels, analysis = seeded
    j = labels.join(analysis.carts, on="session_id").filter(pl.col("reason") != "unknown")
    right = j.filter(pl.col("reason") == pl.col("true_reason"))["confidence"].mean()
    wrong = j.filter(pl.col("reason") != pl.col("true_reason"))["confidence"].mean()
    assert right > wrong


def test_planted_episodes_are_found(seeded):
    _, _, analysis = seeded
    plan = sample_plan(date(2026, 9, 28), 8)
    eps = analysis.report.abandonment.episodes
    pay = [e for e in eps if e.reason == "payment"]
    assert pay, eps
    # the payment outage window overlaps the detected payment episode
    assert any(e.start <= plan.outage_end.isoformat() and e.end >= plan.outage_start.isoformat()
               for e in pay)
    ui = [e for e in eps if e.reason == "ui_friction"]
    assert any(e.end >= plan.ui_bug_start.isoformat() for e in ui), eps


def test_signal_lifts_point_the_right_way(seeded):
    _, _, analysis = seeded
    lifts = {s.signal: s for s in analysis.report.abandonment.signals}
    for sid in ("payment.error", "shipping.high_share", "returns.policy_view"):
        assert lifts[sid].significant and lifts[sid].ratio > 1, lifts[sid]
    bands = analysis.report.abandonment.shipping_bands
    assert bands[0].label == "free"
    assert bands[-1].abandonment.rate > bands[0].abandonment.rate
