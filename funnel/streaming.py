"""Funnel-only analysis in a few streaming passes, without materialising every row.

The full analysis collects the usable events once (diagnosis and paths need them). Counting
the funnel does not: one streaming aggregate per entity (which also counts rejected rows per
cause and exact duplicates), the step events alone (a small share of a log), and the rejected
rows. The numbers are those of ``api.shard_funnel`` on the materialised events
(tests/test_funnel_only.py); inputs that need the full row-level treatment — sessions to build
from inactivity, bot-like sessions over the cap, exclusion events — return None and the caller
takes the materialising path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from .config import Config
from .core.normalize import _BOOKKEEPING, normalize
from .core.sessions import map_steps
from .schema import CART_VALUE, CURRENCY, ENTITY, LOAD_MS, REJECT, SESSION, SHIPPING, STEP, TS, USER

if TYPE_CHECKING:  # pragma: no cover
    from .api import Analysis, Progress

# What the funnel and the reject rules read; other columns are never touched.
_COLUMNS = (TS, "event", SESSION, USER, CART_VALUE, CURRENCY, SHIPPING, LOAD_MS)


def analyze_funnel_only(sources: list[str], cfg: Config, say: Progress) -> Analysis | None:
    from . import api
    from .io.load import load_events
    from .model import Count, InputSummary, Period

    if cfg.exclude:
        return None
    loaded = load_events(sources, cfg)
    names = loaded.lf.collect_schema().names()
    keep = [c for c in names if c in _COLUMNS or c.startswith("_")]
    dropped = [c for c in names if c not in keep]
    lf = loaded.lf.select(*keep, *([pl.struct(dropped).hash(0).alias("_dup_key")] if dropped else []))
    lf = map_steps(normalize(lf, cfg.timezone), cfg)
    row_cols = [c for c in lf.collect_schema().names() if c not in _BOOKKEEPING]
    usable = pl.col(REJECT).is_null()
    say("counting the funnel")
    per_entity = (
        lf.with_columns(pl.struct(row_cols).hash(0).alias("_h"))
        .group_by(ENTITY)
        .agg(
            pl.len().alias("rows"),
            pl.col(REJECT).drop_nulls().value_counts().alias("causes"),
            pl.col("_h").filter(usable).n_unique().alias("distinct"),
            (pl.col(SESSION).is_null() & pl.col(USER).is_not_null() & usable).sum().alias("unsessioned"),
            first_usable(USER), pl.col(TS).filter(usable).min().alias("first_ts"),
            pl.col(TS).filter(usable).max().alias("last_ts"), pl.col(CART_VALUE).filter(usable).max(),
            first_usable(CURRENCY), pl.col(USER).filter(usable).drop_nulls().unique().alias("_users"),
        )
    )
    steps = lf.filter(usable & pl.col(STEP).is_not_null()).select(ENTITY, TS, STEP)
    rejected = lf.filter(pl.col(REJECT).is_not_null())
    try:
        ent, st, rej = pl.collect_all([per_entity, steps, rejected], engine="streaming")
    except api.READ_ERRORS as exc:
        raise api.read_error(loaded, exc) from None
    if ent.height == 0 or int(ent["unsessioned"].sum()) or int(ent["distinct"].max() or 0) > cfg.max_events_per_session:
        return None
    dups = int(ent.filter(pl.col(ENTITY).is_not_null()).select(
        (pl.col("rows") - pl.col("causes").list.eval(pl.element().struct.field("count")).list.sum().fill_null(0)
         - pl.col("distinct")).sum()).item() or 0)
    if dups:  # name the duplicate rows too (rare): one more pass over the usable rows
        dup_rows = lf.filter(usable).filter(~pl.struct(row_cols).hash(0).is_first_distinct()) \
            .with_columns(pl.lit("duplicate").alias(REJECT)).collect()
        rej = pl.concat([rej, dup_rows], how="diagonal_relaxed")
    base = ent.filter(pl.col(ENTITY).is_not_null() & pl.col("first_ts").is_not_null()).select(
        ENTITY, USER, "first_ts", "last_ts", pl.col("distinct").cast(pl.Int32).alias("n_events"), CART_VALUE, CURRENCY)
    p = api.shard_funnel(pl.LazyFrame(), cfg, base=base.lazy(), steps=st.lazy())
    counts = rej.group_by(REJECT).agg(pl.len().alias("n")).sort(REJECT)
    totals = p["totals"].row(0, named=True)
    users = ent.select(pl.col("_users").explode().drop_nulls().n_unique()).item()
    inp = InputSummary(
        files=[str(f.path) for f in loaded.files], format=loaded.format, columns=dict(loaded.columns),
        rows_read=int(ent["rows"].sum()), rows_rejected=rej.height,
        rejected=[Count(k, int(n)) for k, n in counts.iter_rows()],
        events=int(totals["n_events"] or 0), sessions=int(totals["n_entities"] or 0), users=int(users),
        period=Period(api._iso(totals["min_ts"]), api._iso(totals["max_ts"])), sessions_log=None,
        sessionized=False, capped_sessions=0,
    )
    report = api.build_report(p, cfg, inp, [], funnel_only=True)
    return api.Analysis(report=report, carts=pl.DataFrame(), rejects=api.reject_table(rej))


def first_usable(c: str) -> pl.Expr:
    """First non-null value of ``c`` in time order among usable rows (as api.first_in_time)."""
    ok = pl.col(REJECT).is_null() & pl.col(c).is_not_null()
    return pl.col(c).filter(ok).get(pl.col(TS).filter(ok).arg_min()).alias(c)
