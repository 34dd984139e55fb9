"""Synthetic checkout logs for the scale benchmark, generated vectorized with polars.

Rows come out in random order (as merged server logs do): each chunk of ~5M events holds a
disjoint set of sessions spread over the whole period and is shuffled before it is written,
so neither time nor session order survives in the file. Randomness is a seeded hash of the
row index (no numpy, no python loops over rows). Sessions have 1+ events; about 35 % reach
the cart, then 60/70/80/75 % convert step by step.
"""

from __future__ import annotations

from datetime import datetime, UTC
from pathlib import Path

import polars as pl

STEPS = ("add_to_cart", "begin_checkout", "add_shipping_info", "add_payment_info", "purchase")
OTHER = ("page_view", "view_item", "search", "view_cart")
START_US = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1_000_000)
PERIOD_US = 8 * 7 * 86_400 * 1_000_000
CHUNK = 5_000_000
EVENTS_PER_SESSION = 8.0


def _u(idx: pl.Expr, seed: int) -> pl.Expr:
    """Uniform [0, 1) from a seeded hash of an integer column."""
    return (idx.hash(seed) % (1 << 52)).cast(pl.Float64) / float(1 << 52)


def _chunk(first_session: int, n_sessions: int, seed: int) -> pl.DataFrame:
    s = pl.int_range(first_session, first_session + n_sessions, dtype=pl.Int64, eager=True).alias("s")
    sess = pl.DataFrame(s).with_columns(
        # events per session: 1 + geometric-ish (mean ~EVENTS_PER_SESSION)
        (1 + (-(1 - _u(pl.col("s"), seed + 1)).log() * (EVENTS_PER_SESSION - 1)).floor()
         .cast(pl.Int64)).alias("n"),
        _u(pl.col("s"), seed + 2).alias("u_level"),
        (pl.lit(START_US) + (_u(pl.col("s"), seed + 3) * PERIOD_US).cast(pl.Int64)).alias("start"),
        (pl.col("s") // 3).alias("user"),  # about three sessions per user
        (_u(pl.col("s"), seed + 4) * 3).cast(pl.Int64).alias("dev"),
    )
    # funnel level reached: 0..5
    u = pl.col("u_level")
    level = (pl.when(u < 0.65).then(0).when(u < 0.65 + 0.35 * 0.40).then(1)
             .when(u < 0.65 + 0.35 * (0.40 + 0.6 * 0.3)).then(2)
             .when(u < 0.65 + 0.35 * (0.40 + 0.6 * (0.3 + 0.7 * 0.2))).then(3)
             .when(u < 0.65 + 0.35 * (0.40 + 0.6 * (0.3 + 0.7 * (0.2 + 0.8 * 0.25)))).then(4)
             .otherwise(5))
    sess = sess.with_columns(level.alias("level")).with_columns(
        pl.max_horizontal("n", pl.col("level") + 1).alias("n"))
    ev = (
        sess.select("s", "n", "level", "start", "user", "dev",
                    pl.int_ranges(0, "n").alias("j"))
        .explode("j")
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("i"))
    )
    gap = (-(1 - _u(pl.col("i") + first_session * 16, seed + 5)).log() * 40_000_000).cast(pl.Int64)
    is_step = (pl.col("j") >= 1) & (pl.col("j") <= pl.col("level"))
    step_idx = (pl.col("j") - 1).clip(0, len(STEPS) - 1)
    other_idx = (_u(pl.col("i") + first_session * 16, seed + 6) * len(OTHER)).cast(pl.Int64)
    event = pl.when(is_step).then(step_idx.replace_strict(list(range(len(STEPS))), list(STEPS),
                                                          return_dtype=pl.String)) \
        .otherwise(other_idx.replace_strict(list(range(len(OTHER))), list(OTHER), return_dtype=pl.String))
    value = (20 + _u(pl.col("s"), seed + 7) * 180).round(2)
    ev = ev.with_columns(
        (pl.col("start") + gap.cum_sum().over("s")).alias("t"),
        event.alias("event"),
    )
    st = pl.col("event")
    out = ev.select(
        pl.from_epoch("t", time_unit="us").dt.replace_time_zone("UTC").alias("timestamp"),
        "event",
        pl.format("s{}", "s").alias("session_id"),
        pl.format("u{}", "user").alias("user_id"),
        pl.when(is_step).then(pl.format("/checkout/{}", "j")).otherwise(pl.format("/p/{}", "i"))
        .alias("url"),
        pl.when(st.is_in(list(STEPS))).then(value).alias("cart_value"),
        pl.when(st.is_in(list(STEPS))).then(pl.lit("EUR")).alias("currency"),
        pl.when(st == "add_shipping_info").then((_u(pl.col("s"), seed + 8) * 12).round(2))
        .alias("shipping_cost"),
        pl.when(st == "add_payment_info").then(pl.lit("card")).alias("payment_method"),
        (50 + _u(pl.col("i") + first_session * 16, seed + 9) * 2500).round(0).alias("load_ms"),
        pl.col("dev").replace_strict([0, 1, 2], ["mobile", "desktop", "tablet"],
                                     return_dtype=pl.String).alias("device"),
        # a column the analysis never reads (projection must drop it)
        pl.format("Mozilla/5.0 (agent {})", pl.col("i") % 97).alias("user_agent"),
    )
    return out.sample(fraction=1.0, shuffle=True, seed=seed + first_session % 1000)


def parse_size(text: str) -> int:
    t = text.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(t[-1], 1)
    return int(float(t[:-1] if t[-1] in "KMG" else t) * mult)


def generate(n_events: int, path: Path, seed: int = 11) -> Path:
    """Write about ``n_events`` events (exact count differs by < 0.1 %) to ``path`` (Parquet)."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    sessions_total = max(1, round(n_events / EVENTS_PER_SESSION))
    per_chunk = max(1, round(CHUNK / EVENTS_PER_SESSION))
    writer = None
    try:
        for first in range(0, sessions_total, per_chunk):
            df = _chunk(first, min(per_chunk, sessions_total - first), seed)
            table = df.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=1_000_000)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    return path


def cached(n_events: int, data_dir: Path, seed: int = 11) -> Path:
    path = data_dir / f"events_{n_events}_seed{seed}.parquet"
    if not path.exists():
        generate(n_events, path, seed)
    return path


if __name__ == "__main__":
    import sys

    for size in sys.argv[1:]:
        print(cached(parse_size(size), Path(__file__).parent / "data"))
