"""Funnel-only runs (``--funnel-only``, or ``--steps`` with only ``--json``) give the same funnel
and abandonment counts as the full analysis, and the input projection changes no result."""

from __future__ import annotations

import polars as pl
import pytest

from funnel.api import analyze
from funnel.config import parse_steps
from funnel.io.sample import generate_sample


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    ev = generate_sample(n_sessions=800, seed=5).events
    path = tmp_path_factory.mktemp("fo") / "events.parquet"
    ev = ev.with_columns(pl.lit("unused").alias("user_agent"))
    ev.write_parquet(path)
    return str(path)


def _abandonment_counts(ab: dict) -> dict:
    keep = ("carts", "abandoned", "rate", "value_at_stake", "recovered", "currency")
    out = {k: ab[k] for k in keep}
    out["by_step"] = [(s["step"], s["abandoned"], s["value"]) for s in ab["by_step"]]
    return out


def test_funnel_only_matches_full_analysis(log):
    full = analyze(log).report.to_dict()
    only = analyze(log, funnel_only=True).report.to_dict()
    assert only["funnel"] == full["funnel"]
    assert _abandonment_counts(only["abandonment"]) == _abandonment_counts(full["abandonment"])
    assert only["input"] == full["input"]
    assert only["paths"] is None and only["recommendations"] == []


def test_unused_columns_do_not_change_duplicates(tmp_path):
    """Rows equal in every analysed column but different elsewhere are not duplicates."""
    rows = {"timestamp": ["2026-01-01T10:00:00Z"] * 2 + ["2026-01-01T10:05:00Z"],
            "event": ["add_to_cart", "add_to_cart", "purchase"], "session_id": ["s1"] * 3,
            "note": ["a", "b", "c"]}
    p = tmp_path / "e.csv"
    pl.DataFrame(rows).write_csv(p)
    rep = analyze(str(p), steps=parse_steps("add_to_cart,purchase"), funnel_only=True).report
    assert rep.input.rows_rejected == 0 and rep.input.events == 3
    pl.DataFrame({**rows, "note": ["a", "a", "c"]}).write_csv(p)
    rep = analyze(str(p), steps=parse_steps("add_to_cart,purchase"), funnel_only=True).report
    assert rep.input.rows_rejected == 1
