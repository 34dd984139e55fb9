"""An independent SQL oracle for the ordered funnel, written in DuckDB with ASOF joins.

One ASOF JOIN per step mirrors "the latest qualifying previous-step event at or before t";
strict ``<`` and the window from the inherited anchor are plain filters. The oracle reads the
CSV itself (no funnel reader involved) and is compared with the polars engine directly, with
``funnel.api.analyze`` and with the CLI's ``--json -`` output.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, UTC
from pathlib import Path

import polars as pl
import pytest

from conftest import SAMPLE_EVENTS, run_cli

duckdb = pytest.importorskip("duckdb")

STEPS = ("add_to_cart", "begin_checkout", "add_shipping_info", "add_payment_info", "purchase")
DAY_US = 86_400_000_000


def oracle_sql(n_steps: int) -> str:
    """Levels per entity from table ``s(entity, t, step)`` (distinct step events, t in µs).

    Only integers from this module shape the text; the window is the parameter ``$window``."""
    ctes = ["q0 AS (SELECT entity, t, t AS anchor FROM s WHERE step = 0)"]
    for k in range(1, int(n_steps)):
        ctes.append(
            f"q{k} AS (SELECT c.entity, c.t, p.anchor "
            f"FROM (SELECT entity, t FROM s WHERE step = {k}) c "
            f"ASOF JOIN q{k - 1} p ON c.entity = p.entity AND c.t >= p.t "
            f"WHERE p.t < c.t AND c.t - p.anchor <= $window)"
        )
    union = " UNION ALL ".join(f"SELECT entity, {k + 1} AS level FROM q{k}" for k in range(int(n_steps)))
    return (f"WITH {', '.join(ctes)} "
            f"SELECT entity, max(level)::INTEGER AS level FROM ({union}) GROUP BY entity ORDER BY entity")


def oracle_levels(con, n_steps: int, window_us: int) -> dict[str, int]:
    return dict(con.execute(oracle_sql(n_steps), {"window": window_us}).fetchall())


def load_csv(con, path: Path, steps: tuple[str, ...], unit: str = "session") -> None:
    """Table ``s`` from an events CSV: usable rows of funnel steps, exact duplicates removed."""
    con.execute("CREATE OR REPLACE TABLE steps_map (event VARCHAR, step INTEGER)")
    con.executemany("INSERT INTO steps_map VALUES (?, ?)", [(e, i) for i, e in enumerate(steps)])
    entity = "session_id" if unit == "session" else "coalesce(user_id, session_id)"
    con.execute(
        f"""CREATE OR REPLACE TABLE s AS
        SELECT DISTINCT {entity} AS entity,
               epoch_us(CAST(timestamp AS TIMESTAMPTZ)) AS t, m.step
        FROM read_csv(?, all_varchar = true, header = true) r
        JOIN steps_map m ON m.event = r.event
        WHERE timestamp IS NOT NULL AND {entity} IS NOT NULL""",
        [str(path)],
    )


def counts(levels: dict[str, int], n_steps: int) -> list[int]:
    return [sum(1 for v in levels.values() if v >= k) for k in range(1, n_steps + 1)]


def tie_heavy_log(path: Path, seed: int, n_sessions: int = 400) -> None:
    """Sessions on a coarse one-second grid: ties, repeats, restarts, duplicates, window edges
    (a 30 s window; gaps of exactly 30 s are common), rows written out of order."""
    rng = random.Random(seed)
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    rows = []
    for i in range(n_sessions):
        sid, uid = f"s{i:04d}", f"u{i % (n_sessions // 3):04d}"
        t = rng.randrange(0, 3 * 86_400)
        cur = 0
        for _ in range(rng.randrange(1, 16)):
            t += rng.choice((0, 0, 1, 3, 5, 10, 15, 30, 31))
            r = rng.random()
            if r < 0.1:
                ev = rng.choice(("page_view", "view_cart"))
            else:   # mostly forward, sometimes a repeat, a step back or a restart
                cur = cur + 1 if r < 0.6 else cur if r < 0.75 else max(cur - 1, 0) if r < 0.9 else 0
                cur = min(cur, len(STEPS) - 1)
                ev = STEPS[cur]
            ts = (t0 + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")
            rows.append((ts, sid, uid, ev))
            if rng.random() < 0.05:
                rows.append((ts, sid, uid, ev))
    rng.shuffle(rows)
    lines = ["timestamp,session_id,user_id,event"] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    yield c
    c.close()


def engine_levels(path: Path, window_us: int, unit: str = "session") -> dict[str, int]:
    from funnel.config import Config, parse_steps
    from funnel.core.funnel import LEVEL, funnel_levels
    from funnel.api import prepare
    from funnel.schema import ENTITY, STEP, TS

    cfg = Config(steps=parse_steps(",".join(STEPS)), window=window_us, level=unit)
    ev = prepare([str(path)], cfg).events.filter(pl.col(STEP).is_not_null()).select(ENTITY, TS, STEP)
    out = funnel_levels(ev, len(STEPS), window_us).collect()
    return dict(zip(out[ENTITY].to_list(), out[LEVEL].to_list(), strict=True))


def test_sql_oracle_matches_the_named_examples(con):
    con.execute("CREATE OR REPLACE TABLE s (entity VARCHAR, t BIGINT, step INTEGER)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [
        ("tie", 10, 0), ("tie", 10, 1),
        ("ship", 0, 0), ("ship", 10, 1), ("ship", 20, 2), ("ship", 50, 2), ("ship", 50, 3),
        ("edge", 0, 0), ("edge", 5, 1), ("edge", 100, 2),
        ("restart", 0, 0), ("restart", 95, 0), ("restart", 96, 1), ("restart", 150, 2),
    ])
    assert oracle_levels(con, 4, 100) == {"edge": 3, "restart": 3, "ship": 3, "tie": 1}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_equals_sql_oracle_on_tie_heavy_logs(con, tmp_path, seed):
    path = tmp_path / "events.csv"
    tie_heavy_log(path, seed)
    window = 30_000_000
    for unit in ("session", "user"):
        load_csv(con, path, STEPS, unit)
        want = oracle_levels(con, len(STEPS), window)
        assert engine_levels(path, window, unit) == want
        assert max(want.values()) == len(STEPS)        # the logs exercise every step


def test_engine_equals_sql_oracle_on_generated_sample(con, tmp_path):
    from funnel.io.sample import write_sample

    events, _, _ = write_sample(tmp_path, n_sessions=1500, seed=11)
    load_csv(con, events, STEPS)
    for window in (60_000_000, 30 * 60_000_000, DAY_US):
        assert engine_levels(events, window) == oracle_levels(con, len(STEPS), window)


def test_analyze_step_counts_equal_sql_oracle(con):
    from funnel.api import analyze
    from funnel.config import parse_steps

    load_csv(con, SAMPLE_EVENTS, STEPS)
    want = counts(oracle_levels(con, len(STEPS), DAY_US), len(STEPS))
    report = analyze(str(SAMPLE_EVENTS), steps=parse_steps(",".join(STEPS)), window=DAY_US).report
    assert [s.sessions for s in report.funnel.steps] == want
    assert report.abandonment.carts == want[0]
    assert report.abandonment.abandoned == want[0] - want[-1]


def test_cli_json_step_counts_equal_sql_oracle(con, tmp_path):
    load_csv(con, SAMPLE_EVENTS, STEPS)
    want = counts(oracle_levels(con, len(STEPS), DAY_US), len(STEPS))
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--steps", ",".join(STEPS), "--window", "24h",
                "--json", "-", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [s["name"] for s in doc["funnel"]["steps"]] == list(STEPS)
    assert [s["sessions"] for s in doc["funnel"]["steps"]] == want
