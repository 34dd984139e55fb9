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
from .funnel import LEVEL, RUN, apply_exclusions, entity_run, exit_time, funnel_levels, shift_in_entity, step_time_col


def map_steps(lf: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """Add ``_step`` (0-based step index; null for events outside the funnel) and ``_entity``."""
    mapping = {e: i for i, s in enumerate(cfg.steps) for e in s.events}
    ent = pl.col(SESSION) if cfg.level == "session" else pl.coalesce(USER, SESSION)
    return lf.with_columns(
        pl.col(EVENT).replace_strict(mapping, default=None, return_dtype=pl.Int32).alias(STEP),
        ent.alias(ENTITY),
    )


KEY2 = "_key2"   # the entity id's second hash (entity_keys)
PURCHASE_TS = "purchase_ts"   # an entity's first purchase event (the last step's), in or out of the funnel
BOUGHT_TS = "bought_ts"   # its first purchase event after the exit step (bought_here)
BOUGHT_HERE = "bought_here"   # a cart bought later in its own session or user, off the funnel's chain (with_recovery)


def entity_keys(ids: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Two independent 64-bit hashes of the entity ids. The first keys the entity in the engine
    (grouping, sorting and joining integers is ~3x cheaper than strings); where the second
    differs inside one key, two ids share it (odds ~1e-7 at 2.5M ids) and the ids are kept."""
    return ids.hash(0x5EED_0001), ids.hash(0x5EED_0002)


def shared_key() -> pl.Expr:
    """Inside a group-by on the first key of ``entity_keys`` (with the second in ``KEY2``):
    true where two ids share the key (the second hash differs inside it)."""
    return pl.col(KEY2).min() != pl.col(KEY2).max()


def hashed_entities(ev: pl.DataFrame) -> pl.DataFrame:
    """The events ``ev`` with ``_entity`` replaced by its 64-bit key (``entity_keys``), unless
    two of its ids share a key: then ``ev`` itself. The entity's own ids stay in the session
    and user columns, which every output reads (records, the cart table); the key only groups."""
    if ev[ENTITY].dtype != pl.String:
        return ev
    e1, e2 = entity_keys(pl.col(ENTITY))
    keyed = ev.with_columns(e1.alias(ENTITY), e2.alias(KEY2))
    shared = keyed.lazy().group_by(ENTITY).agg(shared_key().alias("s")).select(pl.col("s").any()).collect().item()
    return ev if shared else keyed.drop(KEY2)


_ORD = "_ord"   # an entity's event order as one unique integer: (time in µs, step index, row)


def _order_key() -> pl.Expr:
    """(ts, step, row) packed into one Int128, so that order statistics need no sort of the
    frame: events of equal (ts, step) are ordered as the rows are (the input order), and the key
    is unique, so ``min_by``/``max_by`` — polars' fast group aggregations — pick exactly the
    row that an ordered scan would."""
    ts_step = pl.col(TS).dt.epoch("us") * 1024 + (pl.col(STEP).fill_null(-1) + 1)
    return ts_step.cast(pl.Int128) * (1 << 32) + pl.int_range(pl.len(), dtype=pl.Int64).cast(pl.Int128)


def _first_non_null(c: str, alias: str | None = None) -> pl.Expr:
    """The first non-null value of ``c`` in (time, step) order, inside a group_by."""
    # the nulls of the masked key are skipped: no filtered copies of the group
    return pl.col(c).min_by(pl.when(pl.col(c).is_not_null()).then(pl.col(_ORD))).alias(alias or c)


def _last_non_null(c: str, alias: str | None = None) -> pl.Expr:
    """The last non-null value of ``c`` in (time, step) order (the last of equal keys)."""
    return pl.col(c).max_by(pl.when(pl.col(c).is_not_null()).then(pl.col(_ORD))).alias(alias or c)


_LO, _HI = "_lo", "_hi"   # an entity's first / last event: the min / max of its key


def _order_picks(keyed: pl.LazyFrame, frame: pl.DataFrame | None, firsts: list[tuple[str, str]],
                 lasts: list[tuple[str, str]], at_last: list[tuple[str, str]],
                 plain: list[pl.Expr]) -> pl.LazyFrame:
    """One row per entity of ``keyed`` (events with ``_ORD``): the ``plain`` aggregations, plus
    ``(column, alias)`` pairs: the first non-null value of each of ``firsts``, the last non-null
    of ``lasts`` and the value at the last event of ``at_last``.

    Each is an order statistic of its own (``min_by``/``max_by``), except when ``frame`` (the
    events ``keyed`` was built from, collected) is given: then the entity's first and last
    event are found once (min and max of the key, whose low 32 bits are the row) and the value
    at them is gathered, for every ``at_last`` column and every other column without nulls
    (whose first non-null value is the first event's). Same values (tests/test_engine_properties.py)."""
    dense = set() if frame is None else \
        {c for c, _ in (*firsts, *lasts, *at_last) if c in frame.columns and frame[c].null_count() == 0}
    gather_first = [(c, a) for c, a in firsts if c in dense]
    gather_last = [(c, a) for c, a in lasts if c in dense] + (at_last if frame is not None else [])
    aggs = [*plain,
            *(_first_non_null(c, a) for c, a in firsts if c not in dense),
            *(_last_non_null(c, a) for c, a in lasts if c not in dense)]
    if frame is None:
        return keyed.group_by(ENTITY).agg(*aggs, *(pl.col(c).max_by(_ORD).alias(a) for c, a in at_last))
    picks = [(_LO, pl.col(_ORD).min(), gather_first), (_HI, pl.col(_ORD).max(), gather_last)]
    picks = [p for p in picks if p[2]]
    out = keyed.group_by(ENTITY).agg(*aggs, *(key.alias(name) for name, key, _ in picks)).collect()
    row = lambda name: (pl.col(name) % pl.lit(1 << 32, pl.Int128)).cast(pl.UInt32)
    for name, _, cols in picks:
        idx = out.select(row(name)).to_series()
        out = out.with_columns(frame[c].gather(idx).alias(a) for c, a in cols).drop(name)
    return out.lazy()


def purchase_time(k: int) -> pl.Expr:
    """Over step events: the time of a purchase event (step ``k - 1``), else null. Its minimum
    per entity is ``PURCHASE_TS``, what a later session's recovery looks for
    (``with_recovery``), whether or not that session went through the funnel again."""
    return pl.when(pl.col(STEP) == k - 1).then(pl.col(TS)).alias(PURCHASE_TS)


def first_purchase() -> pl.Expr:
    """Inside a group-by on the entity, over step events with ``purchase_time``: the first
    purchase event (``PURCHASE_TS``), what a later session's recovery looks for. The one
    definition for every route that builds records."""
    return pl.col(PURCHASE_TS).min()


def bought_after_exit(steps: pl.LazyFrame, levels: pl.LazyFrame, k: int) -> pl.LazyFrame:
    """Per entity of ``levels`` that has one: its first purchase event (step ``k - 1``) after the
    furthest step its best attempt reached (``BOUGHT_TS``), what ``bought_here`` reads. Only
    the purchase events are joined to the exits (a few of the step events). The one definition
    for every route that builds records."""
    return (
        steps.filter(pl.col(STEP) == k - 1).select(ENTITY, TS)
        .join(levels.select(ENTITY, exit_time(k).alias("_exit")), on=ENTITY)
        .filter(pl.col(TS) > pl.col("_exit"))
        .group_by(ENTITY).agg(pl.col(TS).min().alias(BOUGHT_TS))
    )


def funnel_base(ev: pl.LazyFrame) -> pl.LazyFrame:
    """Per entity, what the funnel-only pass needs: user, first/last event time, events, cart
    value and currency — the same rules as ``session_records`` (first non-null in (time, step)
    order), so both paths agree even on ties."""
    return ev.with_columns(_order_key().alias(_ORD)).group_by(ENTITY).agg(
        _first_non_null(USER), pl.col(TS).min().alias("first_ts"), pl.col(TS).max().alias("last_ts"),
        pl.len().cast(pl.Int32).alias("n_events"), pl.col(CART_VALUE).max().alias(CART_VALUE),
        _first_non_null(CURRENCY),
    )


_LIGHT_NULLS = {CART_VALUE: pl.Float64, SHIPPING: pl.Float64, CURRENCY: pl.String, PAYMENT: pl.String,
                "last_event": pl.String, "last_page": pl.String}   # (a record without a step event)


def session_records(ev: pl.LazyFrame | pl.DataFrame, cfg: Config, attrs: list[str]) -> pl.LazyFrame:
    """``ev``: usable events with ``_entity`` and ``_step``. One row per entity.

    Order-dependent fields (first user, last page, next event after the exit, ...) are taken
    by arg-min/arg-max of the (time, step) key inside each group, so the events are never sorted
    as a whole (the costliest step on large logs); only the step events are sorted, for the
    backtrack and repeat counts. Given the events collected (a DataFrame), a column without
    nulls takes its first/last value from the entity's first/last event (one min and one max
    of the key, then a gather) instead of an order statistic of its own (``_order_picks``).

    An entity without a step event (most of a log) has level 0, no step time, exit or
    backtrack, and nothing of it is read but its ids, times, event count and attributes (the
    totals, segments and trend; ``explain`` its ids): its record holds just those, and null
    cart value, shipping, currency, payment, last event and last page. Those are the order
    statistics on nullable columns, so they are taken over the step entities' events only
    (the order statistics of a 4.8M-event shard 0.70 s -> 0.55 s). A segment attribute that
    is one of those columns (``--segment payment_method``) is computed for every entity.
    """
    frame = ev if isinstance(ev, pl.DataFrame) else None
    ev = ev.lazy()
    k = len(cfg.steps)
    if k > 1000:
        from ..errors import ConfigError

        raise ConfigError(f"{k} funnel steps is more than the 1000 supported")
    steps = ev.filter(pl.col(STEP).is_not_null()).select(ENTITY, TS, STEP)
    levels = funnel_levels(steps, k, cfg.window, cfg.order)
    if cfg.exclude:
        exc = ev.filter(pl.col(EVENT).is_in(list(cfg.exclude))).select(ENTITY, TS)
        levels = apply_exclusions(levels, exc)
    # (keyed before the split: the key's row is the row of ``frame``, which _order_picks gathers from)
    keyed = ev.with_columns(_order_key().alias(_ORD))
    stepped = pl.col(ENTITY).is_in(steps.select(pl.col(ENTITY).unique()).collect().to_series().implode())
    # Backtracks and repeats among step events, in (time, step) order. One sort by entity puts
    # each entity's events together, so "the row above in the entity" is a guarded plain shift
    # (``shift_in_entity``), and the running max of the steps so far is one cum_max of (run,
    # step) packed into an integer (the run code only grows): ~4x cheaper than entity windows.
    st = pl.col(STEP)
    e = pl.col(RUN).cast(pl.Int64) * 1024     # steps are < 1024 (checked above)
    prev_max = shift_in_entity((e + st).cum_max()) - e
    flags = (
        steps.sort(ENTITY, TS, STEP)
        .with_columns(entity_run())
        .select(ENTITY, RUN, (st < prev_max).alias("_back"), (st == shift_in_entity(st)).alias("_rep"),
                purchase_time(k))
        .group_by(RUN)
        .agg(pl.col(ENTITY).first(),
             pl.col("_back").sum().cast(pl.Int32).alias("backtracks"),
             pl.col("_rep").sum().cast(pl.Int32).alias("repeats"),
             first_purchase())
        .drop(RUN)
    )
    # The record's own columns, each by its rule; a segment attribute of the same name (e.g.
    # ``--segment payment_method``) is that column, not a second one.
    firsts = [(SESSION, SESSION), (USER, USER)]
    plain = [pl.col(TS).min().alias("first_ts"), pl.col(TS).max().alias("last_ts"),
             pl.len().cast(pl.Int32).alias("n_events")]
    # (the columns of _LIGHT_NULLS: null on an entity without a step event)
    held_firsts, held_lasts, held_at_last = [(CURRENCY, CURRENCY)], [(PAYMENT, PAYMENT), (URL, "last_page")], \
        [(EVENT, "last_event")]
    held_plain = [pl.col(CART_VALUE).max().alias(CART_VALUE), pl.col(SHIPPING).max().alias(SHIPPING)]
    own = [a for a in attrs if a not in (SESSION, USER, *_LIGHT_NULLS)]
    firsts += [(a, a) for a in own]
    cols = [ENTITY, SESSION, USER, "first_ts", "last_ts", "n_events", *_LIGHT_NULLS, *own]
    full = _order_picks(keyed.filter(stepped), frame, [*firsts, *held_firsts], held_lasts, held_at_last,
                        [*plain, *held_plain]).select(cols)
    # (entities without a step event: only what is read of them, attributes included)
    seg = lambda pairs: [(c, a) for c, a in pairs if a in attrs]
    light = _order_picks(keyed.filter(~stepped), frame, [*firsts, *seg(held_firsts)], seg(held_lasts),
                         seg(held_at_last), [*plain, *(e for e in held_plain if e.meta.output_name() in attrs)])
    light = light.with_columns(pl.lit(None, t).alias(c) for c, t in _LIGHT_NULLS.items()
                               if c not in light.collect_schema().names())
    light = light.select(pl.col(c).cast(t) for c, t in full.collect_schema().items())
    rec = (
        pl.concat([full, light])
        .join(levels, on=ENTITY, how="left")
        .join(flags, on=ENTITY, how="left")
        .join(bought_after_exit(steps, levels, k), on=ENTITY, how="left")
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
    exit_t = exit_time(k)
    rec = rec.with_columns(exit_t.alias("exit_ts"))
    # Next event after the exit step (where did they go?). (Exits from the levels alone: the
    # records' plan is not run twice.)
    after = (
        keyed.select(ENTITY, TS, EVENT, _ORD)
        .join(levels.select(ENTITY, exit_t.alias("exit_ts")).filter(pl.col("exit_ts").is_not_null()), on=ENTITY)
        .filter(pl.col(TS) > pl.col("exit_ts"))
        .group_by(ENTITY)
        .agg(pl.col(EVENT).min_by(_ORD).alias("next_event"))
    )
    return rec.join(after, on=ENTITY, how="left")


def _abandoned(k: int) -> pl.Expr:
    """Over records: a cart that did not reach the last of the ``k`` steps."""
    return (pl.col(LEVEL) >= 1) & (pl.col(LEVEL) < k)


def bought_here(cfg: Config) -> pl.Expr:
    """Over records (``session_records``): ``BOUGHT_HERE``, an abandoned cart whose own session
    (or user) bought within the recovery horizon after its exit step (``BOUGHT_TS``). With
    ``--order any`` order is ignored: a purchase event anywhere in the entity (its purchase
    step time) is its buying."""
    k = len(cfg.steps)
    if cfg.order == "any":
        bought = pl.col(step_time_col(k - 1)).is_not_null()
    else:
        bought = (pl.col(BOUGHT_TS) - pl.col("exit_ts")).dt.total_microseconds() <= cfg.recovery_horizon
    return (_abandoned(k) & bought).fill_null(False).alias(BOUGHT_HERE)


def with_recovery(rec: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """``recovered``: an abandoned cart that was bought after all, so not lost. Either
    (``BOUGHT_HERE``) its own session (or user) has a purchase event within the recovery horizon
    after the exit step (``--order any``: anywhere in it): the buyer skipped a step, or the shop does not track it (a session without an
    ``add_payment_info`` event that buys a minute later); the ordered funnel still counts it as
    stopping at the exit step, as windowFunnel does, but it is no cart to win back. Or its user
    purchases in a later session within the recovery horizon: a purchase event
    (``PURCHASE_TS``), whether or not that session went through the funnel again (a buyer who
    comes back to a saved cart often goes straight to checkout); only for session-level
    funnels (a user funnel has no 'later').
    A user's sessions are ordered by first event, then last event, then purchase time: sessions
    that start at the same instant are then in one order whatever order the records come in
    (they come from a group-by, whose order varies between runs)."""
    k = len(cfg.steps)
    rec = rec.with_columns(bought_here(cfg))
    if cfg.level != "session":
        return rec.with_columns(pl.col(BOUGHT_HERE).alias("recovered"))
    nxt = (
        pl.col("_pt").shift(-1).backward_fill().over(USER, order_by=["first_ts", "last_ts", "_pt"])
    )
    out = rec.with_columns(pl.col(PURCHASE_TS).alias("_pt")).with_columns(nxt.alias("_next_purchase"))
    later = (
        _abandoned(k) & pl.col(USER).is_not_null() & pl.col("_next_purchase").is_not_null()
        & ((pl.col("_next_purchase") - pl.col("last_ts")).dt.total_microseconds() <= cfg.recovery_horizon)
        & (pl.col("_next_purchase") > pl.col("last_ts"))
    )
    return out.with_columns((pl.col(BOUGHT_HERE) | later.fill_null(False)).alias("recovered")) \
        .drop("_pt", "_next_purchase")
