"""Shared fixtures: the bundled sample and a runner for the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EVENTS = ROOT / "sample_data" / "events.csv"
SAMPLE_SESSIONS = ROOT / "sample_data" / "sessions.csv"


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None
            ) -> subprocess.CompletedProcess:
    """Run `python -m funnel ...` as a user would (real process, real exit code)."""
    e = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "SOURCE_DATE_EPOCH": "1790000000", **(env or {})}
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "funnel", *args], cwd=cwd or ROOT, env=e, input=input,
                          capture_output=True, text=True, timeout=300)


def capped_payments(tmp_path: Path):
    """(log, config): a session of 5 events, one per step, and one of 2, with a session cap of 3
    (``tmp_path/cap.toml``): every payment and purchase event is set aside by the cap."""
    from funnel.config import load_config

    rows = [("10:00", "add_to_cart", "s1"), ("10:01", "begin_checkout", "s1"), ("10:02", "add_shipping_info", "s1"),
            ("10:03", "add_payment_info", "s1"), ("10:04", "purchase", "s1"),
            ("11:00", "add_to_cart", "s2"), ("11:01", "begin_checkout", "s2")]
    log = tmp_path / "t1.csv"
    log.write_text("timestamp,event,session_id,user_id\n"
                   + "".join(f"2026-11-02T{t}:00Z,{e},{s},u{s}\n" for t, e, s in rows))
    (tmp_path / "cap.toml").write_text("[input]\nmax_events_per_session = 3\n")
    return str(log), load_config(str(tmp_path / "cap.toml"))


@pytest.fixture(scope="session")
def sample_analysis():
    """The analysis of the bundled sample (computed once per test session)."""
    from funnel.api import analyze

    return analyze(str(SAMPLE_EVENTS), sessions=str(SAMPLE_SESSIONS))


def bought_with_a_guest(ev, guest: str = "0-guest"):
    """``ev`` (a generated log) typed, without repeated (session, time, event) keys, where every
    session that buys ends with a row of another user id, ``guest`` (as a shared device or a
    placeholder id would give; smaller than every generated id, it owns those sessions). That
    session goes whole to the guest's shard, so a buyer's earlier abandoned cart, recovered by
    this purchase, sits in another shard for most buyers."""
    import polars as pl

    if ev["timestamp"].dtype == pl.String:
        ev = ev.with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC"))
    ev = ev.unique(subset=["session_id", "timestamp", "event"], keep="first", maintain_order=True)
    bought = ev.filter(pl.col("event") == "purchase")["session_id"].unique()
    ends = ev.filter(pl.col("session_id").is_in(bought.implode())).group_by("session_id") \
        .agg(pl.all().sort_by("timestamp").last())
    extra = ends.with_columns(pl.lit(guest).alias("user_id"), pl.col("timestamp") + pl.duration(seconds=1),
                              pl.lit("page_view").alias("event")).select(ev.columns)
    return pl.concat([ev, extra]).sort("timestamp", "session_id")


def anonymous_until_login(ev, share: int = 4, other_user: bool = False):
    """``ev`` (a generated log) with the early half of one session in ``share`` anonymous (no
    user id: logged in at the cart, the usual case) — rows a user-id shard key would split; with
    ``other_user`` another quarter's early rows carry one shared other user id."""
    import polars as pl

    h = pl.col("session_id").hash(3) % share
    first = pl.col("timestamp").min().over("session_id")
    last = pl.col("timestamp").max().over("session_id")
    early = pl.col("timestamp") < first + (last - first) / 2
    return ev.with_columns(
        pl.when((h == 0) & early).then(None)
        .when((h == 1) & early & other_user).then(pl.lit("someone-else"))
        .otherwise(pl.col("user_id")).alias("user_id"))
