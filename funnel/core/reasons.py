"""Why carts were abandoned: per-cart attribution from the signal catalogue, and aggregates.

Attribution (``diagnose``), per abandoned cart (reached the cart step, not the purchase step,
not excluded):

1. Each catalogue signal (funnel.core.signals) is looked for in the cart's own span: from its
   first cart event (``_t0``) to the end of the session (to the purchase for converters).
   Policy pages read before the cart, or after the purchase, are not evidence.
2. A signal seen at or after the exit step was reached (``exit_ts``) counts with its full
   weight; one the buyer moved past (a later step was reached after it) keeps only
   ``resolved_factor`` of it: the last thing that went wrong matters most.
3. Inferred signals are weighed by what the data supports (``evidence_factors``, from the
   ``base:signals`` baseline over all shards): at the cart's exit step, the share of leaving
   with the signal that is in excess of carts without it, AF = (p_with - p_without) / p_with;
   AF >= ``full_weight_af`` keeps the full weight, less scales it down, none removes it. A
   shipping cost shown to everyone at the cart, or a login page every buyer passes, is then
   no evidence. Explicit signals (error events) always keep their weight.
4. A reason's raw score is its strongest signal's weight plus ``corroboration`` x the others'.
   Reasons below ``min_score`` are not eligible: weak inferred evidence alone (merely leaving
   at the payment step, going back to the cart, a long dwell) leaves the cart ``unknown`` —
   many abandoners were just browsing.
5. Among eligible reasons the one whose last substantive signal came last gets
   ``recency_bonus`` (x(1+b)); the highest boosted score wins (ties: payment, shipping,
   returns, ui_friction).
6. Confidence = (1 - e^-s1) * s1 / (s1 + s2) with s1 the winner's raw score and s2 the best
   other; for ``unknown``, 1 - (best raw score / min_score).

Explicit signals weigh 2.0, inferred 0.2-0.8, so one explicit error at the exit outweighs any
inferred combination. Every signal is also computed for converters (``sig__<id>``), which is
what the with/without-signal lifts compare.

Global quantities (movers' dwell per step, signal support) come only from ``baseline``
partials, so sharded runs give identical results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import polars as pl

from ..config import Config
from ..model import Band, EvidenceItem, Rate, ReasonEpisode, ReasonShare, SignalLift
from ..schema import (ALL_REASONS, CART_VALUE, ENTITY, ERROR, EVENT, LOAD_MS, PAYMENT, REASONS,
                      SHIPPING, STEP, TS, UNKNOWN, URL, USER)
from .funnel import LEVEL, RUN, step_time_col
from .partials import NONE, SECONDS, bucket_counts, histogram, own_ids_masked, segment_columns
from .sessions import _ORD, _order_key
from .signals import GENERIC_EVENTS, Catalogue, Signal, catalogue
from .stats import (benjamini_hochberg, histogram_quantile, ratio, risk_ratio, two_proportion_test,
                    wilson)

MIN_BASELINE = 10          # movers needed at a step before its dwell threshold is trusted
SIGSTEP = "_sigstep__"     # per signal: funnel step index where it was first seen (or null)
SHIP_SHARE = "_ship_share"  # first shipping cost shown / cart value (null: never shown)
BAND_EDGES: tuple[float, ...] = (0.05, 0.10, 0.15, 0.25)


def _sigstep_column(signal_id: str) -> str:
    return f"{SIGSTEP}{signal_id}"


@dataclass(frozen=True)
class Diagnosis:
    reasons: list[ReasonShare]
    signals: list[SignalLift]
    shipping_bands: list[Band]
    episodes: list[ReasonEpisode]


# --- baseline ----------------------------------------------------------------------------

def baseline_partials(ev: pl.LazyFrame, rec: pl.LazyFrame, cfg: Config,
                      agg: pl.LazyFrame | None = None) -> dict[str, pl.LazyFrame]:
    """What diagnosis needs from all data before judging one cart (merge by addition):

    * ``base:dwell``: histogram (stats.BUCKET_UPPER) of the time movers spent at each step
      (step i -> step i+1 of the best attempt);
    * ``base:signals``: per inferred signal, carts by the step where it was first seen and
      their level — how often carts leave at that step with and without it.
    """
    k = len(cfg.steps)
    inc = rec.filter(~pl.col("_excluded"))
    parts = [
        inc.filter(pl.col(LEVEL) >= i + 2)
        .select(pl.lit(i, pl.Int32).alias("step"),
                ((pl.col(step_time_col(i + 1)) - pl.col(step_time_col(i))).dt.total_microseconds() / 1e6)
                .alias(SECONDS))
        for i in range(k - 1)
    ]
    # (an 'any'-order funnel may reach a step without the one before it: no dwell between them)
    dwell = histogram(pl.concat(parts), "n_movers")
    cat = catalogue(cfg)
    d, order = _signal_table(ev, rec.filter(pl.col(LEVEL) >= 1), cfg, cat, {}, agg)   # the rows read below
    return {"base:dwell": dwell, "base:signals": _hazard_rows(d, order, k, cat)}


def dwell_thresholds(baseline: dict[str, pl.DataFrame], cfg: Config, cat: Catalogue) -> dict[int, float]:
    """Seconds above which dwell at step i is 'long': dwell_ratio x movers' quantile."""
    df = baseline.get("base:dwell")
    out: dict[int, float] = {}
    if df is None or not df.height:
        return out
    th = cat.thresholds
    for i in range(len(cfg.steps) - 1):
        counts, lows, highs = bucket_counts(df, "n_movers", step=i)
        if sum(counts) >= MIN_BASELINE:
            q = histogram_quantile(counts, th.dwell_quantile, lows, highs)
            if q is not None:
                out[i] = q * th.dwell_ratio
    return out


# --- event-level signals -----------------------------------------------------------------

_EV_L, _ERR_L, _PATH, _BY_ERR = "_ev_l", "_err_l", "_path", "_by_err"   # _row_inputs' columns


def _lower_in(col: str, values: tuple[str, ...]) -> pl.Expr:
    """``col`` (a lowercased column of ``_row_inputs``) is one of ``values``, case-insensitively."""
    return pl.col(col).is_in([v.lower() for v in values]).fill_null(False)


def _row_inputs(cat: Catalogue) -> list[list[pl.Expr]]:
    """What ``_row_matchers`` reads, as columns added in these stages (one ``with_columns``
    each): the lowercased event and error type, the URL's path, and whether the error type
    decides the row's signal. As columns they are computed once: written into every matcher,
    polars lowercased the events again at each use (the matchers of a 1.4M-event shard,
    evaluated alone, 0.94 s -> 0.18 s with their inputs; the whole aggregates, whose plan
    shared some of it, 0.97-1.04 s -> 0.87-0.93 s)."""
    known = sorted({e.lower() for s in cat.active for e in s.error_types})
    claimed = tuple(sorted({e.lower() for s in cat.active for e in s.events}))
    generic = _lower_in(_EV_L, GENERIC_EVENTS)
    # the error type decides for generic or unlisted events; a listed specific event decides itself
    by_error = pl.col(_ERR_L).is_in(known).fill_null(False) & (generic | ~_lower_in(_EV_L, claimed))
    first = [pl.col(EVENT).str.to_lowercase().alias(_EV_L), pl.col(ERROR).str.to_lowercase().alias(_ERR_L)]
    if any(s.url_regex for s in cat.active):
        first.append(pl.col(URL).str.replace(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*", "").alias(_PATH))  # URL path only
    return [first, [by_error.alias(_BY_ERR)]]


class _Matcher(NamedTuple):
    """A signal seen on single events: its row predicate in up to two parts, and how many rows
    it takes. ``unordered`` reads the row alone (the columns of ``_row_inputs`` and the cart's
    step times), so it is evaluated on the rows as they come, text columns and all; ``ordered``
    reads the entity's earlier rows, so it is evaluated on the rows sorted by (``RUN``,
    ``_ORD``) — a narrow frame of the few columns it reads — with the unordered part as the
    column ``_m_col(id)``. Either may be None (not both)."""
    unordered: pl.Expr | None
    ordered: pl.Expr | None
    min_n: int


def _m_col(sid: str) -> str:
    return f"_m__{sid}"


def _row_matchers(cat: Catalogue, cfg: Config) -> dict[str, _Matcher]:
    """signal id -> ``_Matcher`` for the signals seen on single events."""
    th = cat.thresholds
    by_error = pl.col(_BY_ERR)
    pay = cat.role_step("payment", cfg)
    out: dict[str, _Matcher] = {}
    for s in cat.active:
        if s.events or s.url_patterns or s.error_types:
            m = pl.lit(False)
            if s.error_types:
                m = m | (by_error & _lower_in(_ERR_L, s.error_types))
            if s.events:
                m = m | (~by_error & _lower_in(_EV_L, s.events))
            if s.url_regex:
                m = m | pl.col(_PATH).str.contains(s.url_regex).fill_null(False)
            out[s.id] = _Matcher(m, None, 1)
    step = pl.col(STEP)
    # The rows are sorted by entity (``_event_aggregates``): "the last value before this row in
    # the entity" is a forward fill of the whole frame, kept only when the row it came from
    # (its entity run code ``RUN``, filled alike) is of the same entity — no windows per entity.
    def before(value: pl.Expr, present: pl.Expr) -> pl.Expr:
        src = pl.when(present).then(pl.col(RUN)).forward_fill().shift(1)
        return pl.when(src == pl.col(RUN)).then(value.forward_fill().shift(1))

    e = pl.col(RUN).cast(pl.Int64) * 1024   # steps are < 1024
    prev_step = before(step, step.is_not_null())
    prev_max = before((e + step).cum_max(), step.is_not_null()) - e
    bt = "ui_friction.backtrack"
    if bt in out:
        after_checkout = (pl.col(TS) > pl.col(step_time_col(1))).fill_null(False)
        out[bt] = _Matcher(out[bt].unordered & after_checkout, (pl.col(_m_col(bt)) | (step < prev_max)).fill_null(False), 1)
    active = {s.id for s in cat.active}
    if "ui_friction.slow_page" in active:
        out["ui_friction.slow_page"] = _Matcher((pl.col(LOAD_MS) > th.slow_page_ms).fill_null(False), None, 1)
    if "payment.retry" in active and pay is not None:
        out["payment.retry"] = _Matcher((step == pay).fill_null(False), None, th.payment_attempts)
    if "payment.method_switch" in active:
        prev_m = before(pl.col(PAYMENT), pl.col(PAYMENT).is_not_null())
        out["payment.method_switch"] = _Matcher(None, (pl.col(PAYMENT) != prev_m).fill_null(False), 1)
    if "ui_friction.repeat_submit" in active:
        rep = (step == prev_step) & (step > 0)
        if pay is not None:
            rep = rep & (step != pay)
        out["ui_friction.repeat_submit"] = _Matcher(None, rep.fill_null(False), max(1, th.repeat_submits - 1))
    return out


def _span_end(k: int) -> pl.Expr:
    return pl.when(pl.col(LEVEL) >= k).then(pl.col(step_time_col(k - 1))).otherwise(pl.col("last_ts"))


def event_aggregates(ev: pl.LazyFrame, rec: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """Per cart, all that the diagnosis reads from the events (``_event_aggregates``). It does
    not depend on the baseline: a shard computes it once, for its baseline (pass 1) and its
    diagnosis (pass 2; ``agg=`` of ``baseline_partials``/``diagnose``)."""
    return _event_aggregates(ev, rec, cfg, catalogue(cfg))


def _event_aggregates(ev: pl.LazyFrame, rec: pl.LazyFrame, cfg: Config, cat: Catalogue) -> pl.LazyFrame:
    """Per cart: for each row-level signal n/first/last/at-exit, plus the last shipping cost
    shown before buying and when (the latest display: what the buyer saw before leaving).

    The carts' events are matched as they come out of the join; only a narrow frame (ids, time,
    step, payment method, shipping cost and the row predicates so far) is sorted, for the
    predicates that read earlier events, and only when one is active: sorting the text columns
    along (URLs, mostly distinct) was half of the cost. Every aggregate takes "first"/"last"
    by the order key ``_ORD`` (time, step, input row: unique), the order of the sort."""
    k = len(cfg.steps)
    # Each cart gets an integer code (``RUN``): its events are grouped (and sorted) by it, ~3x
    # cheaper than by the string id (the row matchers only need a code shared within an entity).
    spans = rec.filter(pl.col(LEVEL) >= 1).select(
        ENTITY, "exit_ts", _span_end(k).alias("_end"), *dict.fromkeys(step_time_col(i) for i in (0, 1, k - 1)),
        pl.int_range(pl.len(), dtype=pl.UInt32).alias(RUN))
    names = set(ev.collect_schema().names())
    cols = [c for c in (ENTITY, TS, EVENT, URL, ERROR, LOAD_MS, SHIPPING, PAYMENT, STEP) if c in names]
    e = (
        ev.select(*cols, _order_key().alias(_ORD))   # (the order key before the join, which reorders rows)
        .join(spans, on=ENTITY, how="inner")
        .filter((pl.col(TS) >= pl.col(step_time_col(0))) & (pl.col(TS) <= pl.col("_end")))
    )
    missing = [c for c in (URL, ERROR, LOAD_MS, SHIPPING, PAYMENT) if c not in names]
    if missing:
        e = e.with_columns(pl.lit(None, pl.String if c in (URL, ERROR, PAYMENT) else pl.Float64).alias(c)
                           for c in missing)
    for stage in _row_inputs(cat):
        e = e.with_columns(stage)
    matchers = _row_matchers(cat, cfg)
    # a shipping cost counts as shown before buying: not the one on the purchase event itself
    shown = pl.col(SHIPPING).is_not_null() & (pl.col(TS) < pl.col(step_time_col(k - 1))).fill_null(True)
    e = e.select(RUN, ENTITY, _ORD, TS, STEP, PAYMENT, SHIPPING, (pl.col(TS) >= pl.col("exit_ts")).alias("_at_exit"),
                 shown.alias("_shown"),
                 *(m.unordered.alias(_m_col(sid)) for sid, m in matchers.items() if m.unordered is not None))
    ordered = {sid: m.ordered for sid, m in matchers.items() if m.ordered is not None}
    if ordered:   # each entity's events together, in the order of the records: time, step, input row
        e = e.sort(RUN, _ORD).with_columns(x.alias(_m_col(sid)) for sid, x in ordered.items())
    at_exit, shown = pl.col("_at_exit"), pl.col("_shown")
    # Conditional min/max as a masked min/max, first/last as min_by/max_by of the order key:
    # polars' fast group aggregations, where a filter inside the aggregation is evaluated per group.
    ts_if = lambda cond: pl.when(cond).then(pl.col(TS))
    aggs: list[pl.Expr] = []
    for sid in matchers:
        m = pl.col(_m_col(sid))
        aggs += [m.sum().cast(pl.Int32).alias(f"_n__{sid}"),
                 ts_if(m).min().alias(f"_f__{sid}"),
                 ts_if(m).max().alias(f"_l__{sid}"),
                 (m & at_exit).any().alias(f"_x__{sid}")]
    row_if_shown = pl.when(shown).then(pl.col(_ORD))
    aggs += [ts_if(shown).max().alias("_reveal_ts"),
             pl.col(SHIPPING).max_by(row_if_shown).alias("_ship"),
             ts_if(shown).min().alias("_reveal_first"),
             pl.col(SHIPPING).min_by(row_if_shown).alias("_ship_first"),
             ts_if(shown & (pl.col(SHIPPING) > 0)).min().alias("_reveal_paid")]
    return e.group_by(RUN).agg(pl.col(ENTITY).first(), *aggs).drop(RUN)


# --- diagnosis ---------------------------------------------------------------------------

def _step_of(ts: pl.Expr, k: int) -> pl.Expr:
    """Funnel step index the entity was at when ``ts`` happened (best attempt)."""
    reached = pl.sum_horizontal([(pl.col(step_time_col(i)) <= ts).fill_null(False).cast(pl.Int32)
                                 for i in range(k)])
    return pl.when(ts.is_not_null()).then((reached - 1).clip(lower_bound=0)).cast(pl.Int32)


def _signal_table(ev: pl.LazyFrame, rec: pl.LazyFrame, cfg: Config, cat: Catalogue,
                  dwell_thr: dict[int, float], agg: pl.LazyFrame | None = None
                  ) -> tuple[pl.LazyFrame, list[Signal]]:
    """``rec`` plus, per computable signal: ``sig__<id>`` (seen in the cart's span),
    ``_sigstep__<id>`` (step where first seen), ``_xx__<id>`` (seen at or after the exit step was reached) and ``_xl__<id>`` (its last time
    then); plus the shipping columns (``_ship``: last cost shown, ``_reveal``: when;
    ``_ship_first``, ``_reveal_step``: the first cost shown and the step then)."""
    th = cat.thresholds
    k = len(cfg.steps)
    if agg is None:
        agg = _event_aggregates(ev, rec, cfg, cat)
    d = rec.join(agg, on=ENTITY, how="left")
    if "recovered" not in d.collect_schema().names():
        d = d.with_columns(pl.lit(False).alias("recovered"))
    level = pl.col(LEVEL)
    abandoned = _abandoned(k)
    t_exit = pl.col("exit_ts")
    end = _span_end(k)
    # entity-level signals -> (present, first ts, last ts, at exit)
    sig: dict[str, tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]] = {}
    for sid, m in _row_matchers(cat, cfg).items():   # the signals aggregated per row
        present = (pl.col(f"_n__{sid}") >= m.min_n).fill_null(False)
        sig[sid] = (present, pl.col(f"_f__{sid}"), pl.col(f"_l__{sid}"),
                    present & pl.col(f"_x__{sid}").fill_null(False))
    active = {s.id for s in cat.active}
    ship_idx = cat.role_step("shipping", cfg)
    reveal = pl.col("_reveal_ts")
    if ship_idx is not None:
        reveal = pl.coalesce(reveal, pl.col(step_time_col(ship_idx)))
    share = pl.when(pl.col(CART_VALUE) > 0).then(pl.col("_ship") / pl.col(CART_VALUE))
    d = d.with_columns(reveal.alias("_reveal"), share.alias(SHIP_SHARE))
    reveal, share = pl.col("_reveal"), pl.col(SHIP_SHARE)
    d = d.with_columns(_step_of(pl.col("_reveal_first"), k).alias("_reveal_step"))  # first shown
    reveal_at_exit = (reveal >= t_exit).fill_null(False)
    if "shipping.high_share" in active:
        p = (share >= th.shipping_share).fill_null(False)
        sig["shipping.high_share"] = (p, reveal, reveal, p & reveal_at_exit)
    if "shipping.quick_exit" in active:
        # left soon after a non-zero cost *first* appeared, at the step they left from (a cost
        # repeated on later events, as Shopify's checkout events carry it, does not restart it)
        paid = pl.col("_reveal_paid")
        p = (abandoned & (paid >= t_exit).fill_null(False)
             & ((end - paid).dt.total_microseconds() <= th.quick_exit_us).fill_null(False))
        sig["shipping.quick_exit"] = (p, paid, paid, p)
    pay = cat.role_step("payment", cfg)
    if "payment.exit_at_step" in active and pay is not None:
        p = abandoned & (level == pay + 1)
        sig["payment.exit_at_step"] = (p, t_exit, t_exit, p)
    if "ui_friction.long_dwell" in active and dwell_thr:
        sig["ui_friction.long_dwell"] = _long_dwell(dwell_thr, k, abandoned)
    acc = cat.role_step("ui_friction", cfg)
    if "ui_friction.exit_at_account" in active and acc is not None:
        # defined by leaving, as payment.exit_at_step: evidence for the cart's reason, but no
        # with/without comparison (its 'with' carts all left there); forced_account is only
        # what the buyer was seen to be shown
        p = abandoned & (level == acc + 1)
        sig["ui_friction.exit_at_account"] = (p, t_exit, t_exit, p)
    order = [s for s in cat.active if s.id in sig]
    d = d.with_columns(
        *(sig[s.id][0].fill_null(False).alias(s.column) for s in order),
        *(pl.when(sig[s.id][0]).then(_step_of(sig[s.id][1], k)).alias(_sigstep_column(s.id))
          for s in order),
        *(pl.when(sig[s.id][3]).then(sig[s.id][2]).alias(f"_xl__{s.id}") for s in order),
        *(sig[s.id][3].fill_null(False).alias(f"_xx__{s.id}") for s in order),
    )
    return d, order


def _abandoned(k: int) -> pl.Expr:
    return (pl.col(LEVEL) >= 1) & (pl.col(LEVEL) < k) & ~pl.col("_excluded").fill_null(False)


# Exposure compared with another group instead of 'never showed it' (signals defined by leaving).
FREE_SHIPPING = "~shipping.free"
LOW_SHARE = "~shipping.low_share"
_COMPARE_WITH = {"shipping.quick_exit": FREE_SHIPPING, "shipping.high_share": LOW_SHARE}


def _hazard_rows(d: pl.LazyFrame, order: list[Signal], k: int, cat: Catalogue) -> pl.LazyFrame:
    """(signal, sig_step, level) -> n_carts for carts: step where a signal was first seen (-1:
    never) — first, so that the exposure comes before the outcome. Shipping costs are compared
    when first shown: ``shipping.quick_exit`` as 'a non-zero cost' vs ``~shipping.free``,
    ``shipping.high_share`` as 'share >= threshold' vs ``~shipping.low_share``."""
    carts = d.filter((pl.col(LEVEL) >= 1) & ~pl.col("_excluded").fill_null(False))
    step_i = pl.col("_reveal_step")
    cols = {s.id: pl.col(_sigstep_column(s.id)) for s in order
            if s.kind != "explicit" and (s.lift or s.id in _COMPARE_WITH)}
    if "shipping.quick_exit" in cols:
        cols["shipping.quick_exit"] = pl.when(pl.col("_ship_first") > 0).then(step_i)
        cols[FREE_SHIPPING] = pl.when(pl.col("_ship_first") == 0).then(step_i)
    if "shipping.high_share" in cols:
        first_share = pl.col("_ship_first") / pl.col(CART_VALUE)
        high = (pl.col(CART_VALUE) > 0) & (first_share >= cat.thresholds.shipping_share)
        cols["shipping.high_share"] = pl.when(high).then(step_i)
        cols[LOW_SHARE] = pl.when((pl.col(CART_VALUE) > 0) & ~high).then(step_i)
    parts = [carts.group_by(pl.lit(sid).alias("signal"),
                            c.fill_null(-1).cast(pl.Int32).alias("sig_step"), LEVEL)
             .agg(pl.len().cast(pl.Int64).alias("n_carts"))
             for sid, c in cols.items()]
    empty = pl.LazyFrame(schema={"signal": pl.String, "sig_step": pl.Int32, LEVEL: pl.Int32,
                                 "n_carts": pl.Int64})
    return pl.concat(parts) if parts else empty


def evidence_factors(baseline: dict[str, pl.DataFrame], cfg: Config, cat: Catalogue,
                     min_carts: int = 30) -> dict[str, dict[int, float]]:
    """Per inferred signal and step, how much of its catalogue weight the data supports: among
    carts at that step, the attributable share of leaving there with the signal,
    AF = (p_with - p_without) / p_with, scaled so AF >= ``full_weight_af`` keeps the full
    weight. Steps with fewer than ``min_carts`` carts showing it keep the full weight (too
    little data to judge); a signal nearly every cart at the step shows (fewer than
    ``min_carts`` without it) gets none: it cannot tell leavers from buyers there."""
    df = baseline.get("base:signals")
    out: dict[str, dict[int, float]] = {}
    if df is None or not df.height:
        return out
    full = cat.thresholds.full_weight_af
    for sid in sorted(set(df["signal"].to_list()) - set(_COMPARE_WITH.values())):
        sub = df.filter(pl.col("signal") == sid)
        for s in sorted(set(sub.filter(pl.col("sig_step") >= 0)["sig_step"].to_list())):
            w = sub.filter(pl.col("sig_step") == s)
            if sid in _COMPARE_WITH:
                wo = df.filter((pl.col("signal") == _COMPARE_WITH[sid]) & (pl.col("sig_step") == s))
            else:
                wo = sub.filter((pl.col("sig_step") < 0) & (pl.col(LEVEL) >= s + 1))
            n1, n2 = int(w["n_carts"].sum()), int(wo["n_carts"].sum()) if wo.height else 0
            if n1 < min_carts:
                continue
            if n2 < min_carts:   # nearly every cart there shows it: it tells carts apart no more
                out.setdefault(sid, {})[int(s)] = 0.0
                continue
            k1 = int(w.filter(pl.col(LEVEL) == s + 1)["n_carts"].sum())
            k2 = int(wo.filter(pl.col(LEVEL) == s + 1)["n_carts"].sum())
            af = max(0.0, (k1 / n1 - k2 / n2) / (k1 / n1)) if k1 else 0.0
            out.setdefault(sid, {})[int(s)] = round(min(1.0, af / full), 6) if full > 0 else 1.0
    return out


def diagnose(ev: pl.LazyFrame, rec: pl.LazyFrame, cfg: Config,
             baseline: dict[str, pl.DataFrame], agg: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """``rec`` plus ``reason``, ``confidence``, ``evidence``, ``sig__<id>`` for every catalogue
    signal (all entities), ``_sigstep__<id>`` (step where first seen) and ``_ship_share``.

    Only carts (level >= 1) are scored (``score``): an entity that never reached the first
    step has no span of events, so scoring gives it no reason, no signal, no evidence —
    exactly what it gets here without the work (most entities of a log; tests/test_reasons.py
    checks the two agree)."""
    carts = score(ev, rec.filter(pl.col(LEVEL) >= 1), cfg, baseline, agg)
    schema = carts.collect_schema()
    have = set(rec.collect_schema().names())

    def unscored(c: str, t: pl.DataType) -> pl.Expr:
        if c in have:
            return pl.col(c)
        value = False if t == pl.Boolean else ([] if isinstance(t, pl.List) else None)
        return pl.lit(value, dtype=t).alias(c)

    others = rec.filter(pl.col(LEVEL) < 1).select(unscored(c, t) for c, t in schema.items())
    return pl.concat([carts, others])


def score(ev: pl.LazyFrame, rec: pl.LazyFrame, cfg: Config,
          baseline: dict[str, pl.DataFrame], agg: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """``diagnose`` on every entity of ``rec``, carts or not (``agg``: ``event_aggregates``)."""
    cat = catalogue(cfg)
    th = cat.thresholds
    k = len(cfg.steps)
    d, order = _signal_table(ev, rec, cfg, cat, dwell_thresholds(baseline, cfg, cat), agg)
    factors = evidence_factors(baseline, cfg, cat)
    abandoned = _abandoned(k)

    def weight(s: Signal) -> pl.Expr:
        """The signal's weight for this cart: scaled by the data's support at the exit step."""
        f = factors.get(s.id) if s.kind != "explicit" else None
        if not f:
            return pl.lit(s.weight)
        return s.weight * (pl.col(LEVEL) - 1).replace_strict(list(f), list(f.values()), default=1.0,
                                                             return_dtype=pl.Float64)

    # scores per reason
    rf = th.resolved_factor
    raw, last = {}, {}
    for r in REASONS:
        mine = [s for s in order if s.reason == r]
        contrib = [pl.when(pl.col(f"_xx__{s.id}")).then(weight(s))
                   .when(pl.col(s.column)).then(weight(s) * rf).otherwise(0.0) for s in mine]
        if contrib:
            top = pl.max_horizontal(contrib)
            raw[r] = top + th.corroboration * (pl.sum_horizontal(contrib) - top)
        else:
            raw[r] = pl.lit(0.0)
        # the timing of a reason's evidence: its last substantive signal (weak ones do not count)
        timed = [pl.when(weight(s) >= th.min_score).then(pl.col(f"_xl__{s.id}")) for s in mine]
        last[r] = pl.max_horizontal(timed) if timed else pl.lit(None)
    d = d.with_columns(*(weight(s).alias(f"_w__{s.id}") for s in order))
    d = d.with_columns(*(raw[r].alias(f"_raw__{r}") for r in REASONS),
                       *(last[r].alias(f"_last__{r}") for r in REASONS))
    latest = pl.max_horizontal([pl.col(f"_last__{r}") for r in REASONS])
    boosted = [
        pl.when(pl.col(f"_raw__{r}") >= th.min_score)
        .then(pl.col(f"_raw__{r}") * pl.when(pl.col(f"_last__{r}") == latest)
              .then(1 + th.recency_bonus).otherwise(1.0))
        .otherwise(-1.0)
        for r in REASONS
    ]
    best = pl.concat_list(boosted).list.arg_max()
    top = pl.max_horizontal(boosted)
    choice = pl.when(top < 0).then(pl.lit(UNKNOWN)).otherwise(
        best.replace_strict(list(range(len(REASONS))), list(REASONS), return_dtype=pl.String))
    d = d.with_columns(pl.when(abandoned).then(choice).alias("reason"))
    raws = [pl.col(f"_raw__{r}") for r in REASONS]
    s1 = pl.coalesce([pl.when(pl.col("reason") == r).then(pl.col(f"_raw__{r}")) for r in REASONS])
    s2 = pl.max_horizontal([pl.when(pl.col("reason") != r).then(pl.col(f"_raw__{r}")).otherwise(0.0)
                            for r in REASONS])
    conf_known = (1 - (-s1).exp()) * s1 / (s1 + s2)
    conf_unknown = (1 - pl.max_horizontal(raws) / th.min_score).clip(0.0, 1.0)
    confidence = (pl.when(pl.col("reason") == UNKNOWN).then(conf_unknown)
                  .when(pl.col("reason").is_not_null()).then(conf_known))
    # Evidence, strongest first: signals at the exit by weight, then those the buyer moved past.
    by_weight = sorted(order, key=lambda s: -s.weight)
    mine = pl.col("reason")
    w = {s.id: pl.col(f"_w__{s.id}") > 0 for s in order}    # signals the data does not support: out
    evidence = pl.concat_list(
        [pl.when((mine == s.reason) & pl.col(f"_xx__{s.id}") & w[s.id]).then(pl.lit(s.id))
         for s in by_weight]
        + [pl.when((mine == s.reason) & pl.col(s.column) & ~pl.col(f"_xx__{s.id}") & w[s.id])
           .then(pl.lit(s.id)) for s in by_weight]
    ).list.drop_nulls() if order else pl.lit([], pl.List(pl.String))
    d = d.with_columns(confidence.round(4).cast(pl.Float64).alias("confidence"),
                       evidence.alias("evidence"))
    # catalogue signals that could not be computed here still get a column (all False)
    done = {s.id for s in order}
    d = d.with_columns(pl.lit(False).alias(s.column) for s in cat.active if s.id not in done)
    internal = [c for c in d.collect_schema().names()
                if c.startswith(("_n__", "_f__", "_l__", "_x__", "_xl__", "_xx__", "_w__",
                                 "_raw__", "_last__"))
                or c in ("_reveal_ts", "_ship", "_reveal", "_reveal_step", "_reveal_first", "_ship_first",
                                "_reveal_paid")]
    return d.drop(internal)


def _long_dwell(thr: dict[int, float], k: int, abandoned: pl.Expr
                ) -> tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]:
    """Dwell at a step above its threshold: movers (step i -> i+1) and, at the exit step,
    abandoners (exit -> end of session)."""
    if not thr:
        return pl.lit(False), pl.lit(None, pl.Datetime("us", "UTC")), pl.lit(None, pl.Datetime("us", "UTC")), pl.lit(False)
    secs = lambda a, b: (b - a).dt.total_microseconds() / 1e6
    level = pl.col(LEVEL)
    moved = [(level >= i + 2) & (secs(pl.col(step_time_col(i)), pl.col(step_time_col(i + 1))) > t)
             for i, t in sorted(thr.items()) if i + 1 < k]
    exit_thr = level.replace_strict([i + 1 for i in thr], list(thr.values()), default=None,
                                    return_dtype=pl.Float64)
    at_exit = (abandoned & (secs(pl.col("exit_ts"), pl.col("last_ts")) > exit_thr)).fill_null(False)
    first_moved = pl.coalesce([pl.when(m.fill_null(False)).then(pl.col(step_time_col(i)))
                               for m, i in zip(moved, sorted(thr), strict=False)]) if moved else pl.lit(None)
    present = pl.any_horizontal([m.fill_null(False) for m in moved] + [at_exit])
    first = pl.coalesce(first_moved, pl.when(at_exit).then(pl.col("exit_ts")))
    last = pl.when(at_exit).then(pl.col("exit_ts")).otherwise(first_moved)
    return present, first, last, at_exit


# --- partials ----------------------------------------------------------------------------

def _band_expr(share: pl.Expr) -> pl.Expr:
    e = pl.when(share <= 0).then(0)
    for i, edge in enumerate(BAND_EDGES):
        e = e.when(share <= edge).then(i + 1)
    return e.otherwise(len(BAND_EDGES) + 1).cast(pl.Int32)


def diagnosis_partials(diag: pl.LazyFrame, cfg: Config) -> dict[str, pl.LazyFrame]:
    """Additive partials of the diagnosis (value columns n_*/sum_*; see core.partials)."""
    k = len(cfg.steps)
    cat = catalogue(cfg)
    names = diag.collect_schema().names()
    carts = diag.filter((pl.col(LEVEL) >= 1) & ~pl.col("_excluded").fill_null(False))
    lost = carts.filter(pl.col("reason").is_not_null())
    value = pl.col(CART_VALUE).fill_null(0.0)
    out: dict[str, pl.LazyFrame] = {}
    out["diag:reasons"] = lost.group_by("reason", LEVEL, pl.col("recovered").fill_null(False)).agg(
        pl.len().cast(pl.Int64).alias("n_carts"), value.sum().alias("sum_value"))
    out["diag:primary"] = (   # the strongest evidence of each attributed cart (no double counting)
        lost.filter(pl.col("evidence").list.len() > 0)
        .group_by("reason", pl.col("evidence").list.first().alias("signal"),
                  pl.col("recovered").fill_null(False))
        .agg(pl.len().cast(pl.Int64).alias("n_carts"), value.sum().alias("sum_value")))
    out["diag:evidence"] = (
        lost.select("reason", pl.col("evidence").alias("signal")).explode("signal")
        .filter(pl.col("signal").is_not_null())
        .group_by("reason", "signal").agg(pl.len().cast(pl.Int64).alias("n_carts")))
    lifts = [
        carts.group_by(pl.lit(s.id).alias("signal"),
                       pl.col(_sigstep_column(s.id)).fill_null(-1).cast(pl.Int32).alias("sig_step"),
                       LEVEL)
        .agg(pl.len().cast(pl.Int64).alias("n_carts"))
        for s in cat.active if s.lift and _sigstep_column(s.id) in names
    ]
    if lifts:
        out["diag:signals"] = pl.concat(lifts)
    out["diag:shipping_bands"] = (
        carts.filter(pl.col(SHIP_SHARE).is_not_null())
        .group_by(_band_expr(pl.col(SHIP_SHARE)).alias("band"), (pl.col(LEVEL) < k).alias("abandoned"))
        .agg(pl.len().cast(pl.Int64).alias("n_carts")))
    out["diag:daily"] = (
        lost.group_by(pl.col("exit_ts").dt.strftime("%Y-%m-%d").alias("day"), "reason")
        .agg(pl.len().cast(pl.Int64).alias("n_carts")))
    segs = [
        carts.group_by(pl.lit(a).alias("column"), own_ids_masked(pl.col(a), cfg).fill_null(NONE).alias("value"),
                       pl.col("reason").fill_null(NONE), pl.col("recovered").fill_null(False))
        .agg(pl.len().cast(pl.Int64).alias("n_carts"), value.sum().alias("sum_value"))
        for a in segment_columns(names, cfg)
    ]
    if segs:
        out["diag:segments"] = pl.concat(segs)
    user = pl.col(USER).is_not_null() if USER in names else pl.lit(False)
    out["diag:totals"] = carts.select(
        pl.len().cast(pl.Int64).alias("n_carts"),
        (pl.col(LEVEL) >= k).sum().cast(pl.Int64).alias("n_orders"),
        value.filter(pl.col(LEVEL) >= k).sum().alias("sum_order_value"),
        pl.col("reason").is_not_null().sum().cast(pl.Int64).alias("n_abandoned"),
        (pl.col("reason").is_not_null() & pl.col("recovered").fill_null(False)).sum().cast(pl.Int64)
        .alias("n_recovered"),
        (pl.col("reason").is_not_null() & user).sum().cast(pl.Int64).alias("n_known_user"),
        (pl.col("reason").is_not_null() & user & pl.col("recovered").fill_null(False)).sum()
        .cast(pl.Int64).alias("n_known_recovered"),
        (pl.col("reason").is_not_null() & user & ~pl.col("recovered").fill_null(False)).sum()
        .cast(pl.Int64).alias("n_reachable"),
        value.filter(pl.col("reason").is_not_null() & user & ~pl.col("recovered").fill_null(False))
        .sum().alias("sum_reachable_value"),
    )
    return out


# --- finalize ----------------------------------------------------------------------------

def _rate(k: int, n: int) -> Rate:
    return Rate(int(k), int(n), ratio(k, n), wilson(k, n))


def finalize_reasons(p: dict[str, pl.DataFrame], cfg: Config) -> list[ReasonShare]:
    cat = catalogue(cfg)
    df = p.get("diag:reasons")
    ev = p.get("diag:evidence")
    total = int(df["n_carts"].sum()) if df is not None and df.height else 0
    out = []
    for r in ALL_REASONS:
        sub = df.filter(pl.col("reason") == r) if df is not None else None
        n = int(sub["n_carts"].sum()) if sub is not None and sub.height else 0
        val = float(sub.filter(~pl.col("recovered"))["sum_value"].sum() or 0.0) if n else 0.0
        items = []
        if ev is not None and ev.height:
            # strongest evidence first: carts where it was the main signal, then all carts
            e = ev.filter(pl.col("reason") == r).group_by("signal").agg(pl.col("n_carts").sum())
            prim = p.get("diag:primary")
            if prim is not None and prim.height:
                pc = (prim.filter(pl.col("reason") == r).group_by("signal")
                      .agg(pl.col("n_carts").sum().alias("n_primary")))
                e = e.join(pc, on="signal", how="left")
            else:
                e = e.with_columns(pl.lit(0).alias("n_primary"))
            e = e.with_columns(pl.col("n_primary").fill_null(0)).sort(
                ["n_primary", "n_carts", "signal"], descending=[True, True, False])
            for sid, cnt in e.select("signal", "n_carts").iter_rows():
                try:
                    desc = cat.get(sid).description
                except KeyError:
                    desc = sid
                items.append(EvidenceItem(sid, desc, int(cnt)))
        out.append(ReasonShare(r, n, ratio(n, total), wilson(n, total), round(val, 2), items))
    return out


def signal_lift_counts(p: dict[str, pl.DataFrame], cfg: Config) -> list[tuple[Signal, int, int, int, int, int]]:
    """Per lift-able signal: (signal, step, n_with, lost_with, n_without, lost_without) at the
    step where most carts first showed it; 'without' = carts that reached that step and never
    showed the signal."""
    k = len(cfg.steps)
    cat = catalogue(cfg)
    df = p.get("diag:signals")
    out = []
    if df is None or not df.height:
        return out
    for s in cat.active:
        if not s.lift:
            continue
        sub = df.filter(pl.col("signal") == s.id)
        held = sub.filter(pl.col("sig_step") >= 0)
        if not held.height:
            continue
        by_step = held.group_by("sig_step").agg(pl.col("n_carts").sum()).sort(
            ["n_carts", "sig_step"], descending=[True, False])
        step = int(by_step["sig_step"][0])
        w = held.filter(pl.col("sig_step") == step)
        wo = sub.filter((pl.col("sig_step") < 0) & (pl.col(LEVEL) >= step + 1))
        n1 = int(w["n_carts"].sum())
        k1 = int(w.filter(pl.col(LEVEL) < k)["n_carts"].sum())
        n2 = int(wo["n_carts"].sum()) if wo.height else 0
        k2 = int(wo.filter(pl.col(LEVEL) < k)["n_carts"].sum()) if wo.height else 0
        out.append((s, step, n1, k1, n2, k2))
    return out


def finalize_signals(p: dict[str, pl.DataFrame], cfg: Config) -> list[SignalLift]:
    rows = signal_lift_counts(p, cfg)
    pvals = [two_proportion_test(k1, n1, k2, n2) for _, _, n1, k1, n2, k2 in rows]
    qvals = benjamini_hochberg(pvals)
    out = []
    for (s, step, n1, k1, n2, k2), pv, qv in zip(rows, pvals, qvals, strict=True):
        rr, ci = risk_ratio(k1, n1, k2, n2)
        out.append(SignalLift(s.id, s.reason, cfg.steps[step].name, _rate(k1, n1), _rate(k2, n2),
                              rr, ci, pv, bool(qv is not None and qv < 0.05 and rr is not None and rr > 1)))
    return out


def finalize_bands(p: dict[str, pl.DataFrame]) -> list[Band]:
    df = p.get("diag:shipping_bands")
    edges = (0.0, *BAND_EDGES)
    labels = ["free"] + [f"{round(lo * 100)}–{round(hi * 100)}%" for lo, hi in zip(edges, BAND_EDGES, strict=False)] \
        + [f">{round(BAND_EDGES[-1] * 100)}%"]
    lows = [0.0, *edges]
    highs = [0.0, *BAND_EDGES, None]
    out = []
    for i, label in enumerate(labels):
        sub = df.filter(pl.col("band") == i) if df is not None and df.height else None
        n = int(sub["n_carts"].sum()) if sub is not None and sub.height else 0
        kk = int(sub.filter(pl.col("abandoned"))["n_carts"].sum()) if n else 0
        if n:
            out.append(Band(label, lows[i], highs[i], _rate(kk, n)))
    return out


def finalize_episodes(p: dict[str, pl.DataFrame], min_carts: int = 20, z_min: float = 4.5,
                      max_per_reason: int = 2) -> list[ReasonEpisode]:
    """Contiguous day ranges (``start``..``end`` inclusive, UTC days of the exit) where a
    reason's share of abandoned carts is far above its share on the other days: per reason the
    window with the largest two-proportion z (>= ``z_min``, a strict bar because every window
    is tried; share >= 1.25x and >= 5 points above the rest), then the next one outside it."""
    from datetime import date, timedelta

    df = p.get("diag:daily")
    if df is None or not df.height:
        return []
    days_s = sorted(set(df["day"].to_list()))
    d0, d1 = date.fromisoformat(days_s[0]), date.fromisoformat(days_s[-1])
    days = [d0 + timedelta(days=i) for i in range((d1 - d0).days + 1)]
    idx = {d.isoformat(): i for i, d in enumerate(days)}
    tot = [0] * len(days)
    per: dict[str, list[int]] = {r: [0] * len(days) for r in REASONS}
    for day, reason, n in df.select("day", "reason", "n_carts").iter_rows():
        tot[idx[day]] += int(n)
        if reason in per:
            per[reason][idx[day]] += int(n)
    out: list[ReasonEpisode] = []
    for r in REASONS:
        used = [False] * len(days)
        for _ in range(max_per_reason):
            best = _best_window(per[r], tot, used, min_carts, z_min)
            if best is None:
                break
            a, b, share, base, n = best
            for i in range(a, b + 1):
                used[i] = True
            out.append(ReasonEpisode(r, days[a].isoformat(), days[b].isoformat(), round(share, 4),
                                     round(base, 4), n))
    return sorted(out, key=lambda e: (e.start, e.reason))


def _best_window(k: list[int], n: list[int], used: list[bool], min_carts: int, z_min: float):
    m = len(n)
    K, N = sum(k), sum(n)
    ck, cn = [0], [0]
    for a, b in zip(k, n, strict=True):
        ck.append(ck[-1] + a)
        cn.append(cn[-1] + b)
    best = None
    for a in range(m):
        if used[a]:
            continue
        for b in range(a, m):
            if used[b]:
                break
            kin, nin = ck[b + 1] - ck[a], cn[b + 1] - cn[a]
            kout, nout = K - kin, N - nin
            if nin < min_carts or nout < min_carts or kin < 3:
                continue
            pin, pout = kin / nin, kout / nout
            if pin < 1.25 * pout or pin - pout < 0.05:   # a jump worth reporting
                continue
            pool = K / N
            se = math.sqrt(pool * (1 - pool) * (1 / nin + 1 / nout))
            if se == 0:
                continue
            z = (pin - pout) / se
            if z >= z_min and (best is None or z > best[0]):
                best = (z, a, b, pin, pout, nin)
    return None if best is None else best[1:]


def finalize_diagnosis(p: dict[str, pl.DataFrame], cfg: Config) -> Diagnosis:
    return Diagnosis(finalize_reasons(p, cfg), finalize_signals(p, cfg), finalize_bands(p),
                     finalize_episodes(p))
