"""Funnel-only analysis on a narrow projection of the input.

The full analysis collects every column of the usable events (diagnosis and paths need them).
Counting the funnel does not: the input is read and normalised once into a narrow frame
(entity, time, step, user, cart value, currency and a row hash for exact duplicates), the
rejected rows are kept aside, and the per-entity aggregate, the totals and the step events are
computed from that. The numbers are those of ``api.shard_funnel`` on the materialised events
(tests/test_funnel_only.py); inputs that need the full row-level treatment — sessions to build
from inactivity, bot-like sessions over the cap, exclusion events — return None and the caller
takes the materialising path. Inputs over 10M rows are read in user shards (``shard_count``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from .config import Config
from .core.normalize import _BOOKKEEPING, DETAIL, normalize
from .core.sessions import funnel_base, map_steps
from .schema import (CART_VALUE, CURRENCY, ENTITY, EVENT, LOAD_MS, REJECT, ROW, SESSION, SHIPPING,
                     SOURCE_FILE, STEP, TS, USER)

if TYPE_CHECKING:  # pragma: no cover
    from .api import Analysis, Progress

# What the funnel and the reject rules read; other columns are never touched.
_COLUMNS = (TS, EVENT, SESSION, USER, CART_VALUE, CURRENCY, SHIPPING, LOAD_MS)


SHARD_ROWS = 10_000_000        # funnel-only: rows per shard (the narrow frame, ~2 GB)
FULL_SHARD_ROWS = 25_000_000   # full analysis: every column and the per-entity records; each extra
                               # shard costs a re-read of the input, so only large inputs are split


def shard_count(loaded, rows_per_shard: int = SHARD_ROWS) -> int:
    """How many user shards to read the input in (1 for ordinary logs)."""
    total = 0
    for f in loaded.files:
        if f.format == "parquet":   # exact and cheap: the row count is in the file's metadata
            total += pl.scan_parquet(str(f.path)).select(pl.len()).collect().item()
        else:                        # text: ~100 bytes per event is typical of analytics exports
            total += f.size // 100 * (5 if f.compression else 1)
    return max(1, -(-total // rows_per_shard))


def analyze_funnel_only(sources: list[str], cfg: Config, say: Progress,
                        shards: int | None = None) -> Analysis | None:
    """The funnel-only analysis, or None when the input needs the row-level path.

    Large inputs are read in ``shards`` passes, each keeping the users (or, without a user
    id, the sessions) whose id hashes to that shard: a user's events are never split, so the
    shards' partials merge by addition to the one-pass result (tests/test_funnel_only.py).
    """
    from . import api
    from .core import partials as parts
    from .io.load import load_events
    from .model import Count, InputSummary, Period

    if cfg.exclude:
        return None
    loaded = load_events(sources, cfg)
    k = shards or shard_count(loaded)
    results = []
    for i in range(k):
        say(f"counting the funnel{f' (shard {i + 1} of {k})' if k > 1 else ''}")
        got = _shard(loaded, cfg, i, k)
        if got is None:
            return None
        results.append(got)
    if not sum(r[1]["usable"] for r in results):
        return None   # the row-level path says why nothing is usable
    p = parts.merge([r[0] for r in results])
    rows, users = sum(r[1]["rows"] for r in results), sum(r[1]["users"] for r in results)
    rej = pl.concat([r[2] for r in results], how="diagonal_relaxed")
    counts = rej.group_by(REJECT).agg(pl.len().alias("n")).sort(REJECT)
    totals = p["totals"].row(0, named=True)
    inp = InputSummary(
        files=[str(f.path) for f in loaded.files], format=loaded.format, columns=dict(loaded.columns),
        rows_read=int(rows), rows_rejected=rej.height,
        rejected=[Count(k_, int(n)) for k_, n in counts.iter_rows()],
        events=int(totals["n_events"] or 0), sessions=int(totals["n_entities"] or 0), users=int(users),
        period=Period(api._iso(totals["min_ts"]), api._iso(totals["max_ts"])), sessions_log=None,
        sessionized=False, capped_sessions=0,
    )
    report = api.build_report(p, cfg, inp, [], funnel_only=True)
    return api.Analysis(report=report, carts=pl.DataFrame(), rejects=api.reject_table(rej))


def _shard(loaded, cfg: Config, i: int, k: int):
    """(partials, totals, rejected rows) of shard ``i`` of ``k``; None: needs the row-level path."""
    from . import api
    from .core import partials as parts

    lf = parts.shard_rows(api.project_input(loaded.lf, cfg, _COLUMNS), i, k)   # before normalising: only this shard is normalised
    lf = map_steps(normalize(lf, cfg.timezone), cfg)
    row_cols = [c for c in lf.collect_schema().names() if c not in _BOOKKEEPING]
    usable = pl.col(REJECT).is_null()
    # Normalising is the costly part: do it once, keep only what the counts need (narrow),
    # and run every aggregate on that.
    have = lf.collect_schema().names()
    kept = [c for c in (SOURCE_FILE, ROW, DETAIL, EVENT) if c in have]
    narrow = lf.select(ENTITY, TS, STEP, USER, SESSION, CART_VALUE, CURRENCY, REJECT, *kept,
                       pl.struct(row_cols).hash(0).alias("_h"))
    try:
        whole = narrow.collect(engine="streaming")
    except api.READ_ERRORS as exc:
        raise api.read_error(loaded, exc) from None
    df = whole.filter(usable).drop(REJECT)
    rej = whole.filter(pl.col(REJECT).is_not_null()).drop("_h")   # --rejects: the funnel's columns
    del whole
    per_entity = funnel_base(df.lazy())
    overall = df.lazy().select(
        (pl.len() + rej.height).alias("rows"),
        pl.len().alias("usable"),
        pl.col("_h").n_unique().alias("distinct"),
        pl.col(USER).drop_nulls().n_unique().alias("users"),
        (pl.col(SESSION).is_null() & pl.col(USER).is_not_null()).sum().alias("unsessioned"),
    )
    steps = df.lazy().filter(pl.col(STEP).is_not_null()).select(ENTITY, TS, STEP)
    ent, tot, st = pl.collect_all([per_entity, overall, steps])
    tot = tot.row(0, named=True)
    if tot["unsessioned"] or int(ent["n_events"].max() or 0) > cfg.max_events_per_session:
        return None
    dups = int(tot["usable"] - tot["distinct"])
    if dups:  # name the duplicate rows too (rare): one more pass over the usable rows
        dup_rows = lf.filter(usable).filter(~pl.struct(row_cols).hash(0).is_first_distinct()) \
            .with_columns(pl.lit("duplicate").alias(REJECT)).collect()
        rej = pl.concat([rej, dup_rows], how="diagonal_relaxed")
    p = api.shard_funnel(pl.LazyFrame(), cfg, base=ent.lazy(), steps=st.lazy())
    # Events per entity above count duplicates; the total must not (as in the row-level path).
    p["totals"] = p["totals"].with_columns(pl.lit(tot["distinct"]).cast(p["totals"]["n_events"].dtype).alias("n_events"))
    return p, tot, rej
