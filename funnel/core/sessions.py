"""Purchase paths: one record per entity (session, or user in user-level mode).

The record holds the funnel level and the best attempt's step times, exit step, backtracks,
repeats, cart value, shipping cost, what happened after the exit step, and the entity's
segment attributes. It feeds diagnosis (funnel.core.reasons) and partials.
"""

from __future__ import annotations

import polars as pl

from ..config import Config
from ..schema import (CART_VALUE, CURRENCY, ENTITY, EVENT, PAYMENT, SESSION, SHIPPING, STEP, TS,
                      URL, USER)
from .funnel import LEVEL, apply_exclusions, funnel_levels, step_time_col


def map_steps(lf: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """Add ``_step`` (0-based step index; null for events outside the funnel) and ``_entity``."""
    mapping = {e: i for i, s in enumerate(cfg.steps) for e in s.events}
    ent = pl.col(SESSION) if cfg.level == "session" else pl.coalesce(USER, SESSION)
    return lf.with_columns(
        pl.col(EVENT).replace_strict(mapping, default=None, return_dtype=pl.Int32).alias(STEP),
        ent.alias(ENTITY),
    )


def _first_non_null(c: str) -> pl.Expr:
    return pl.col(c).drop_nulls().first().alias(c)


def session_records(ev: pl.LazyFrame, cfg: Config, attrs: list[str]) -> pl.LazyFrame:
    """``ev``: usable events with ``_entity`` and ``_step``. One row per entity."""
    k = len(cfg.steps)
    steps = ev.filter(pl.col(STEP).is_not_null()).select(ENTITY, TS, STEP)
    levels = funnel_levels(steps, k, cfg.window, cfg.order)
    if cfg.exclude:
        exc = ev.filter(pl.col(EVENT).is_in(list(cfg.exclude))).select(ENTITY, TS)
        levels = apply_exclusions(levels, exc)
    ordered = ev.sort(ENTITY, TS, pl.col(STEP).fill_null(-1), maintain_order=True)
    # Backtracks and repeats among step events, in time order.
    st = pl.col(STEP)
    prev_step = st.shift(1).over(ENTITY)
    prev_max = st.cum_max().shift(1).over(ENTITY)
    flags = (
        ordered.filter(st.is_not_null())
        .select(ENTITY, (st < prev_max).alias("_back"), (st == prev_step).alias("_rep"))
        .group_by(ENTITY)
        .agg(pl.col("_back").sum().cast(pl.Int32).alias("backtracks"),
             pl.col("_rep").sum().cast(pl.Int32).alias("repeats"))
    )
    base = ordered.group_by(ENTITY, maintain_order=False).agg(
        _first_non_null(SESSION),
        _first_non_null(USER),
        pl.col(TS).min().alias("first_ts"),
        pl.col(TS).max().alias("last_ts"),
        pl.len().cast(pl.Int32).alias("n_events"),
        pl.col(CART_VALUE).max().alias(CART_VALUE),
        pl.col(SHIPPING).max().alias(SHIPPING),
        _first_non_null(CURRENCY),
        pl.col(PAYMENT).drop_nulls().last().alias(PAYMENT),
        pl.col(EVENT).last().alias("last_event"),
        pl.col(URL).drop_nulls().last().alias("last_page"),
        *(_first_non_null(a) for a in attrs),
    )
    rec = (
        base.join(levels, on=ENTITY, how="left")
        .join(flags, on=ENTITY, how="left")
        .with_columns(
            pl.col(LEVEL).fill_null(0).cast(pl.Int32),
            pl.col("backtracks").fill_null(0),
            pl.col("repeats").fill_null(0),
        )
    )
    if "_excluded" not in rec.collect_schema().names():
        rec = rec.with_columns(pl.lit(False).alias("_excluded"))
    else:  # entities without a reached step are absent from ``levels``: never excluded
        rec = rec.with_columns(pl.col("_excluded").fill_null(False))
    exit_t = pl.coalesce([pl.col(step_time_col(i)) for i in range(k - 1, -1, -1)])
    rec = rec.with_columns(exit_t.alias("exit_ts"))
    # Next event after the exit step (where did they go?).
    after = (
        ordered.select(ENTITY, TS, EVENT)
        .join(rec.select(ENTITY, "exit_ts"), on=ENTITY)
        .filter(pl.col(TS) > pl.col("exit_ts"))
        .group_by(ENTITY)
        .agg(pl.col(EVENT).sort_by(TS).first().alias("next_event"))
    )
    return rec.join(after, on=ENTITY, how="left")


def with_recovery(rec: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """``recovered``: an abandoned cart whose user purchases in a later session within the
    recovery horizon. Only meaningful for session-level funnels (a user funnel has no 'later')."""
    k = len(cfg.steps)
    purchase_t = pl.when(pl.col(LEVEL) >= k).then(pl.col(step_time_col(k - 1)))
    if cfg.level != "session":
        return rec.with_columns(pl.lit(False).alias("recovered"))
    nxt = (
        pl.col("_pt").shift(-1).backward_fill().over(USER, order_by="first_ts")
    )
    out = rec.with_columns(purchase_t.alias("_pt")).with_columns(nxt.alias("_next_purchase"))
    abandoned = (pl.col(LEVEL) >= 1) & (pl.col(LEVEL) < k)
    recovered = (
        abandoned & pl.col(USER).is_not_null() & pl.col("_next_purchase").is_not_null()
        & ((pl.col("_next_purchase") - pl.col("last_ts")).dt.total_microseconds() <= cfg.recovery_horizon)
        & (pl.col("_next_purchase") > pl.col("last_ts"))
    )
    return out.with_columns(recovered.fill_null(False).alias("recovered")).drop("_pt", "_next_purchase")
