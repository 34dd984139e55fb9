"""Money in the report: one value at stake in every table, and carts in several currencies."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import run_cli


def test_value_at_stake_is_one_figure_in_every_table(sample_analysis):
    """Regression: the exit-step table's values included the recovered carts (128,660 EUR on the
    sample) while value_at_stake and the reasons' values left them out (117,724 EUR), so two
    tables of the report did not add up to the headline. All three now count the lost carts."""
    ab = sample_analysis.report.abandonment
    assert ab.recovered > 0
    assert sum(s.value for s in ab.by_step) == pytest.approx(ab.value_at_stake, abs=0.05)
    assert sum(r.value for r in ab.reasons) == pytest.approx(ab.value_at_stake, abs=0.05)



def test_carts_in_several_currencies_are_flagged_and_the_cart_table_names_each(tmp_path):
    """Regression: carts of 10 EUR, 1000 USD and 30 SEK were added into 'value at stake
    1,040 EUR' without a word, and the cart table had no currency. Now the report warns (JSON,
    terminal) and each cart row carries its currency."""
    rows = [("2026-01-01T10:00:00Z", "s1", "add_to_cart", 10.0, "EUR"),
            ("2026-01-01T10:05:00Z", "s2", "add_to_cart", 1000.0, "USD"),
            ("2026-01-01T10:11:00Z", "s3", "add_to_cart", 30.0, "SEK"),
            ("2026-01-01T10:20:00Z", "s4", "add_to_cart", 20.0, "EUR")]
    log = tmp_path / "events.csv"
    pl.DataFrame(rows, schema=["timestamp", "session_id", "event", "cart_value", "currency"],
                 orient="row").write_csv(log)
    r = run_cli("analyze", str(log), "--json", str(tmp_path / "r.json"), "--carts", str(tmp_path / "c.csv"))
    assert r.returncode == 0, r.stderr
    import json

    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["abandonment"]["currency"] == "EUR"
    [w] = [w for w in doc["warnings"] if "currencies" in w]
    assert "3 currencies (carts: EUR 2, SEK 1, USD 1)" in w and "without conversion" in w
    assert "3 currencies" in r.stdout + r.stderr
    carts = pl.read_csv(tmp_path / "c.csv")
    assert dict(zip(carts["session_id"], carts["currency"], strict=True)) == \
        {"s1": "EUR", "s2": "USD", "s3": "SEK", "s4": "EUR"}


def test_one_currency_gives_no_warning(sample_analysis):
    assert not [w for w in sample_analysis.report.warnings if "currencies" in w]


@pytest.mark.parametrize("spelling", ["same ids", "other spelling", "half of them"])
def test_a_sessions_log_that_misses_the_sessions_is_flagged(spelling, tmp_path, monkeypatch):
    """Regression: a sessions log whose ids matched none of the events' sessions (``S0000``
    against ``s0``) was joined without a word: every session fell in '(none)' of its columns.
    The report now warns when fewer than half of the sessions are in it, the same in one pass
    and in user shards."""
    from funnel.api import analyze
    from funnel.io.sample import generate_sample

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    s = generate_sample(n_sessions=300, seed=3)
    log = s.sessions
    if spelling == "other spelling":
        log = log.with_columns(pl.col("session_id").str.to_uppercase())
    elif spelling == "half of them":
        log = log.filter(pl.int_range(pl.len()) % 3 == 0)
    events, sessions = tmp_path / "events.parquet", tmp_path / "sessions.csv"
    s.events.write_parquet(events)
    log.write_csv(sessions)
    one, many = (analyze(str(events), sessions=str(sessions), shards=n) for n in (1, 3))
    assert one.report.to_dict() == many.report.to_dict()
    warned = [w for w in one.report.warnings if "sessions log" in w]
    if spelling == "same ids":
        assert not warned
    else:
        n = one.report.input.sessions
        found = 0 if spelling == "other spelling" else len(set(log["session_id"]) & set(s.events["session_id"]))
        want = (f"only {found:,} of the {n:,} sessions ({found / n:.0%}) are in the sessions log {sessions}: "
                "check that both files spell the session ids alike (their breakdowns by its columns read '(none)')")
        assert warned == [want]
