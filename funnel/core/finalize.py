"""Merged partials -> typed result sections (rates, intervals, quantiles, tests).

Runs once on the driver after merging; works on small aggregated frames only.
"""

from __future__ import annotations

import polars as pl

from ..config import Config
from ..model import (AfterExit, Count, ExitStep, FunnelResult, PathVariant, Paths, Rate,
                     SegmentBreakdown, SegmentGroup, StepResult, TimeDistribution, Transition,
                     TrendPoint)
from ..schema import ALL_REASONS, USER
from .funnel import LEVEL
from .partials import BOUGHT_OFF_CHAIN, CART_USERS, NONE, OTHER, Partials, bucket_counts
from .stats import SHOWN_UPPER, benjamini_hochberg, histogram_quantile, ratio, shown, two_proportion_test, wilson

BENCHMARK_ABANDONMENT = 0.7019  # Baymard Institute, average of ~49 studies


def make_rate(k: int, n: int) -> Rate:
    return Rate(int(k), int(n), ratio(k, n), wilson(k, n))


def level_counts(levels: pl.DataFrame, k: int) -> list[int]:
    """Entities reaching each step (level >= i+1) from the level histogram."""
    by = dict(zip(levels[LEVEL].to_list(), levels["n"].to_list(), strict=True)) if levels.height else {}
    return [int(sum(n for lv, n in by.items() if lv >= i + 1)) for i in range(k)]


def _quantiles(df: pl.DataFrame, step: int) -> tuple[list[int], float | None, float | None]:
    """(bucket counts, median, p90) of one step's durations in the histogram partial ``df``."""
    counts, lows, highs = bucket_counts(df, step=step)
    return counts, histogram_quantile(counts, 0.5, lows, highs), histogram_quantile(counts, 0.9, lows, highs)


def finalize_funnel(p: Partials, cfg: Config) -> FunnelResult:
    k = len(cfg.steps)
    totals = p["totals"].row(0, named=True)
    reached = level_counts(p["levels"], k)
    steps: list[StepResult] = []
    for i, step in enumerate(cfg.steps):
        prev = reached[i - 1] if i else None
        _, median, p90 = _quantiles(p["step_time"], i) if i else (None, None, None)
        steps.append(StepResult(
            name=step.name,
            events=list(step.events),
            sessions=reached[i],
            conversion_from_previous=ratio(reached[i], prev) if i else None,
            conversion_from_start=ratio(reached[i], reached[0]) if i else (1.0 if reached[0] else None),
            ci95=wilson(reached[i], prev) if i else None,
            ci95_from_start=wilson(reached[i], reached[0]) if i else None,
            dropped=(prev - reached[i]) if i else 0,
            median_seconds_from_previous=median, p90_seconds_from_previous=p90,
        ))
    return FunnelResult(
        unit=cfg.level, order=cfg.order, window_seconds=cfg.window / 1e6,
        entities=int(totals["n_entities"] or 0), excluded=int(totals["n_excluded"] or 0),
        exclude_events=list(cfg.exclude), steps=steps, overall=make_rate(reached[-1], reached[0]),
    )


def abandonment_counts(p: Partials, cfg: Config) -> dict[str, object]:
    """Carts, abandoned, recovered, value at stake and per-exit-step counts."""
    k = len(cfg.steps)
    df = p["abandonment"]
    carts = int(df["n"].sum()) if df.height else 0
    lost = df.filter(pl.col(LEVEL) < k)
    abandoned = int(lost["n"].sum()) if lost.height else 0
    recovered = int(lost.filter(pl.col("recovered"))["n"].sum()) if lost.height else 0
    value = round(float(lost.filter(~pl.col("recovered"))["sum_value"].sum() or 0.0), 2) if lost.height else 0.0
    by_step: list[ExitStep] = []
    for lv in range(1, k):
        sub = lost.filter(pl.col(LEVEL) == lv)
        n = int(sub["n"].sum()) if sub.height else 0
        reasons = {r: int(sub.filter(pl.col("reason") == r)["n"].sum()) for r in ALL_REASONS}
        by_step.append(ExitStep(step=cfg.steps[lv - 1].name, abandoned=n, share=ratio(n, abandoned),
                                value=round(float(sub.filter(~pl.col("recovered"))["sum_value"].sum() or 0.0), 2),
                                reasons=reasons))   # (value: as value_at_stake, the carts not recovered later)
    top = _currencies(p)
    currency = top["currency"][0] if top.height else None
    return {"carts": carts, "abandoned": abandoned, "recovered": recovered, "value": value,
            "by_step": by_step, "currency": currency}


PLACEHOLDER_SHARE = 0.05   # one user id with this share of the carts ...
PLACEHOLDER_CARTS = 20     # ... and at least this many: likely a placeholder for "no user"


def placeholder_warning(p: Partials, carts: int, cfg: Config) -> list[str]:
    """A warning when one user id holds an outsized share of the carts (``PLACEHOLDER_SHARE``
    of them, and ``PLACEHOLDER_CARTS`` or more): usually a shop's placeholder for "no user"
    (``guest``, ``0``), which joins unrelated visitors into one user, so that one guest's
    purchase marks other guests' abandoned carts as recovered, and undercounts users. The id
    is named only when the report may carry ids (``include_ids``). Session-level funnels only:
    a user-level one counts each user once."""
    cu = p.get(CART_USERS)
    if cfg.level != "session" or cu is None or not cu.height or not carts:
        return []
    user, n = cu.sort(["n", USER], descending=[True, False]).row(0)
    if n < max(PLACEHOLDER_CARTS, PLACEHOLDER_SHARE * carts):
        return []
    who = f"user id {user!r}" if cfg.include_ids else "one user id"
    seen = "" if cfg.include_ids else " (--include-ids names it here)"
    return [(f"{who} holds {n:,} of the {carts:,} carts ({n / carts:.1%}): if it is a placeholder for no user "
             "(e.g. guest), it joins unrelated visitors into one user and its purchases mark their abandoned carts "
             f"as recovered — list it under [input] missing_ids in funnel.toml{seen}")]


def off_chain_warning(p: Partials, cfg: Config) -> list[str]:
    """A warning when carts counted as stopping at a step were bought later in their own
    session (``BOUGHT_OFF_CHAIN``, per exit step): the buyer skipped the next step, the shop
    does not track its event, or it came outside the window. They are recovered, not lost
    (``with_recovery``), and the funnel still shows them stopping there, as windowFunnel counts
    them; the step whose event was missing from the chain is named, most common first, so its
    tracking can be checked. (With ``--order any`` a level is a number of distinct steps, so
    that number is named.)"""
    b = p.get(BOUGHT_OFF_CHAIN)   # (one row per exit level: funnel_partials groups by it, merge too)
    n = int(b["n"].sum()) if b is not None else 0
    if not n:
        return []
    names, unit, k = cfg.step_names, cfg.level, len(cfg.steps)   # (unit: 'session' or 'user')
    by = b.sort(["n", LEVEL], descending=[True, False])
    if cfg.order == "any":   # (bought anywhere in it: order is ignored)
        when, what = "", lambda lv: f"with {lv} of the {k} steps in one window"
    else:
        when, what = " later", lambda lv: f"without a '{names[lv]}' event in order within the window"
    each = ", ".join(f"{c:,} {what(lv)}" for lv, c in by.select(LEVEL, "n").iter_rows())
    return [(f"{n:,} {'cart' if n == 1 else 'carts'} stopped at a step but {'was' if n == 1 else 'were'} bought"
             f"{when} {'in the same session' if unit == 'session' else 'by the same user'} ({each}): "
             "counted as recovered, not lost, and the funnel shows them stopping there — if buyers can skip "
             "that step or the shop does not track its event, check its tracking or leave it out of the steps")]


def _currencies(p: Partials) -> pl.DataFrame:
    """The carts' currencies (``currency``) and their carts (``n``), the most common first: the
    report labels its money with the first."""
    cur = p.get("currency")
    if cur is None or not cur.height:
        return pl.DataFrame({"currency": [], "n": []}, schema={"currency": pl.String, "n": pl.Int64})
    return cur.filter(pl.col("currency") != NONE).sort(["n", "currency"], descending=[True, False])


def currency_warning(p: Partials) -> list[str]:
    """A warning when the carts carry more than one currency: cart values are added as they
    are (no exchange rates), and the report labels the sums with the most common currency."""
    seen = _currencies(p)
    if seen.height < 2:
        return []
    each = ", ".join(f"{c} {n:,}" for c, n in seen.head(5).iter_rows()) + (", …" if seen.height > 5 else "")
    return [(f"the carts are in {seen.height} currencies (carts: {each}): value at stake and revenue add "
             f"their cart values as they are, without conversion, and label them {seen['currency'][0]} — "
             "convert cart values to one currency first, or analyse each currency's carts apart")]


LOG_MATCH_SHARE = 0.5   # fewer of the sessions than this in the sessions log: a warning


def sessions_log_warning(p: Partials, inp) -> list[str]:
    """A warning when few of the analysed sessions are in the ``--sessions`` log (joined by
    session id): their attributes then read '(none)', usually because the two files spell the
    ids differently, or because the events have no session ids at all (sessions built from
    inactivity can match no log)."""
    m = p.get("sessions_log")
    n = int(p["totals"]["n_entities"].sum() or 0) if "totals" in p else 0
    if m is None or not inp.sessions_log:
        return []
    return log_coverage(int(m["n_matched"].sum()), n, inp.sessions_log, inp.sessionized)


def log_coverage(found: int, n: int, log: str, sessionized: bool) -> list[str]:
    """The warning of ``sessions_log_warning`` (and ``funnel validate --sessions``): ``found``
    of the ``n`` sessions are in the sessions log ``log``; ``sessionized``: the events' sessions
    were built from inactivity."""
    if not n or found >= LOG_MATCH_SHARE * n:
        return []
    why = ("the events have no session ids (their sessions were built from inactivity), so none can be "
           "found there — give session ids in the events, or leave out --sessions") if sessionized \
        else "check that both files spell the session ids alike (their breakdowns by its columns read '(none)')"
    return [f"only {found:,} of the {n:,} sessions ({found / n:.0%}) are in the sessions log {log}: {why}"]


def finalize_segments(p: Partials, cfg: Config, attrs: list[str]) -> list[SegmentBreakdown]:
    k = len(cfg.steps)
    out: list[SegmentBreakdown] = []
    for a in attrs:
        df = p.get(f"segment:{a}")
        if df is None or not df.height:
            continue
        sizes = df.group_by("value").agg(pl.col("n").sum()).sort("value")
        small = sorted(v for v, n in sizes.iter_rows() if n < cfg.min_segment_size)
        df = df.with_columns(pl.when(pl.col("value").is_in(small)).then(pl.lit(OTHER))
                             .otherwise(pl.col("value")).alias("value"))
        values = sorted(set(df["value"].to_list()))
        stats = {}
        for v in values:
            reached = level_counts(df.filter(pl.col("value") == v).group_by(LEVEL).agg(pl.col("n").sum()), k)
            n_all = int(df.filter(pl.col("value") == v)["n"].sum())
            stats[v] = (n_all, reached[0], reached[-1])
        tot_first = sum(s[1] for s in stats.values())
        tot_buy = sum(s[2] for s in stats.values())
        pvals = [two_proportion_test(s[2], s[1], tot_buy - s[2], tot_first - s[1]) if v != OTHER else None
                 for v, s in stats.items()]
        qvals = benjamini_hochberg(pvals)
        lost = _segment_reasons(p, a, small)
        groups = []
        for (v, (n_all, first, buy)), pv, qv in zip(stats.items(), pvals, qvals, strict=True):
            counts, value = lost.get(v, ({}, 0.0))
            groups.append(SegmentGroup(
                value=v, sessions=n_all, conversion=make_rate(buy, first),
                abandonment=make_rate(first - buy, first), p_value=pv, q_value=qv,
                significant=bool(qv is not None and qv < 0.05),
                reasons={r: int(counts.get(r, 0)) for r in ALL_REASONS}, value_at_stake=round(value, 2),
            ))
        out.append(SegmentBreakdown(column=a, groups=groups, other=small, min_size=cfg.min_segment_size))
    return out


def _segment_reasons(p: Partials, column: str, small: list[str]) -> dict[str, tuple[dict[str, int], float]]:
    """Abandoned carts per reason and their value, per segment value (small ones as (other))."""
    df = p.get("diag:segments")
    if df is None or not df.height:
        return {}
    sub = (
        df.filter((pl.col("column") == column) & (pl.col("reason") != NONE))
        .with_columns(pl.when(pl.col("value").is_in(small)).then(pl.lit(OTHER)).otherwise(pl.col("value"))
                      .alias("value"))
        .group_by("value", "reason").agg(
            pl.col("n_carts").sum(),
            pl.col("sum_value").filter(~pl.col("recovered")).sum(),  # as value_at_stake: lost, not recovered
        )
    )
    out: dict[str, tuple[dict[str, int], float]] = {}
    for v in sorted(set(sub["value"].to_list())):
        rows = sub.filter(pl.col("value") == v)
        out[v] = (dict(zip(rows["reason"].to_list(), rows["n_carts"].to_list(), strict=True)),
                  float(rows["sum_value"].sum() or 0.0))
    return out


def finalize_paths(p: Partials, cfg: Config, top: int = 8) -> Paths:
    k = len(cfg.steps)
    tr = p["transitions"].sort(["n", "source", "target"], descending=[True, False, False])
    transitions = [Transition(s, t, int(n)) for s, t, n in tr.select("source", "target", "n").iter_rows()]
    var = p["variants"]

    def variants(purchased: bool) -> list[PathVariant]:
        sub = var.filter(pl.col("purchased") == purchased)
        total = int(sub["n"].sum()) if sub.height else 0
        sub = sub.sort(["n", "path"], descending=[True, False]).head(top)
        return [PathVariant(path.split(" > "), int(n), ratio(int(n), total) or 0.0)
                for path, n in sub.select("path", "n").iter_rows()]

    after: list[AfterExit] = []
    ae = p["after_exit"]
    for i in range(k - 1):
        sub = ae.filter(pl.col("step") == i)

        def top_of(kind: str) -> list[Count]:
            s = sub.filter(pl.col("kind") == kind).sort(["n", "value"], descending=[True, False]).head(5)
            return [Count(v, int(n)) for v, n in s.select("value", "n").iter_rows()]

        n = int(sub.filter(pl.col("kind") == "next_event")["n"].sum()) if sub.height else 0
        after.append(AfterExit(cfg.steps[i].name, n, top_of("next_event"), top_of("last_event"),
                               top_of("last_page")))
    dists: list[TimeDistribution] = []
    upper = [float(x) for x in SHOWN_UPPER]
    for i in range(1, k):
        for who, df, step in (("converters", p["step_time"], i), ("abandoners", p["abandoner_dwell"], i - 1)):
            h, median, p90 = _quantiles(df, step)
            dists.append(TimeDistribution(f"{cfg.steps[i - 1].name} → {cfg.steps[i].name}", who, sum(h),
                                          median, p90, upper, shown(h)))
    return Paths(transitions, variants(True), variants(False), after, dists)


def finalize_trend(p: Partials, cfg: Config) -> list[TrendPoint]:
    k = len(cfg.steps)
    df = p["trend"]
    out = []
    for week in sorted(set(df["week"].to_list())):
        sub = df.filter(pl.col("week") == week)
        reached = level_counts(sub.group_by(LEVEL).agg(pl.col("n").sum()), k)
        lost = sub.filter((pl.col(LEVEL) >= 1) & (pl.col(LEVEL) < k))
        reasons = {r: int(lost.filter(pl.col("reason") == r)["n"].sum()) for r in ALL_REASONS}
        out.append(TrendPoint(week, int(sub["n"].sum()), reached,
                              make_rate(reached[0] - reached[-1], reached[0]), reasons))
    return out
