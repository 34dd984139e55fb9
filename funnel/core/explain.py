"""Why is this visitor counted as dropped? One entity's events, classified as the engine sees them.

Every event of the entity gets a ``status`` (see ``STATUSES``), computed from the engine's own
walk over the step events, traced (``funnel.core.funnel._qualifying(trace=True)``: which events
qualify, the latest qualifying previous-step event of each and, strict, the other step that came
in between) — the rule the engine applies, not a copy of it:

* ``reached``: the event that satisfied its step in the counted (best) attempt;
* ``start`` / ``advanced``: it started or advanced another attempt, not the counted one;
* ``repeat``: its step again within the counted attempt (it becomes the latest such event);
* ``tie``: the latest qualifying previous-step event has the same timestamp (never advances);
* ``window``: it is more than the window after its attempt's first step (the anchor);
* ``order``: no qualifying previous-step event at or before it;
* ``interrupted`` (strict order): an event of another funnel step (neither its own nor the
  previous one) came between it and the latest qualifying previous-step event;
* ``duplicate``: same step at the same microsecond as an earlier row (changes nothing);
* ``ignored``: not a funnel step;
* ``any`` order: ``reached`` (first of its step inside the best window), ``repeat`` (again
  inside it) or ``outside`` (outside the best window).

Everything here is pure polars; ``explain`` is the library entry that reads the input
(via ``funnel.api``) and adds the diagnosis of the entity (reason, confidence, evidence).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from ..config import Config
from ..model import Record
from ..schema import ENTITY, EVENT, SESSION, STEP, TS, USER
from .funnel import CUT, PREV_ANCHOR, PREV_T, _base, _qualifying, step_time_col
from .sessions import BOUGHT_HERE, BOUGHT_TS, bought_here

STATUSES: dict[str, str] = {
    "reached": "satisfied its step in the counted attempt",
    "start": "started another attempt (not the counted one)",
    "advanced": "advanced another attempt (not the counted one)",
    "tie": "the previous step's latest event has the same timestamp: a tie never advances",
    "window": "beyond the window from its attempt's first step",
    "order": "no earlier event of the previous step",
    "interrupted": "another funnel step (not its own or the previous one) came in between (strict order)",
    "duplicate": "same step at the same time as an earlier row",
    "ignored": "not a funnel step",
    "repeat": "its step again, in the counted attempt (ordered/strict: now the latest one the next "
              "step is compared with) or inside the best window (any order)",
    "outside": "outside the best window (any order)",
}
FAILED = ("tie", "window", "order", "interrupted")

_US = "_t"


# --- records ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExplainedEvent(Record):
    time: str                       # ISO 8601 UTC
    event: str
    step: str | None                # funnel step it maps to
    status: str                     # see STATUSES
    detail: str                     # the status in words, with the times involved
    attempt_start: str | None       # anchor of the attempt it was matched against
    previous_step_time: str | None  # the previous-step event it was compared with


@dataclass(frozen=True)
class StepOutcome(Record):
    step: str
    reached: bool
    time: str | None                # when the counted attempt reached it
    events: int                     # events of this step in the entity
    failed: dict[str, int]          # why events of this step did not count: status -> n


@dataclass(frozen=True)
class EvidenceNote(Record):
    signal: str
    description: str


@dataclass(frozen=True)
class Explanation(Record):
    entity: str
    unit: str                       # session or user
    session_id: str | None
    user_id: str | None
    order: str
    window: str                     # e.g. 1d, 30m
    window_seconds: float
    level: int                      # steps reached (0 = no first step)
    exit_step: str | None           # the furthest step reached
    converted: bool
    excluded: bool
    verdict: str                    # one sentence: why counted as dropped (or not)
    steps: list[StepOutcome]
    events: list[ExplainedEvent]
    reason: str | None = None       # diagnosis, when the entity is an abandoned cart
    confidence: float | None = None
    evidence: list[EvidenceNote] | None = None
    recovered: bool | None = None
    diagnosis_note: str | None = None


# --- classification (pure polars) ---------------------------------------------------------

def _iso(col: str) -> pl.Expr:
    return pl.from_epoch(pl.col(col), time_unit="us").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")


def classify(ev: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """One row per event of ``ev`` (any number of entities), in time order: ``_entity, ts,
    event, _step, status, anchor, prev_t`` (µs), ``cut`` (interrupted: the step index of the
    other step that came in between) and ``_level`` (the entity's level)."""
    k, window = len(cfg.steps), cfg.window
    rows = (
        ev.select(ENTITY, TS, EVENT, STEP)
        .with_columns(pl.col(TS).dt.epoch("us").alias(_US))
        .sort(ENTITY, _US, pl.col(STEP).fill_null(-1), maintain_order=True)
        .with_row_index("_i")
    )
    first = pl.struct(ENTITY, _US, STEP).is_first_distinct()
    rows = rows.with_columns(
        pl.when(pl.col(STEP).is_null()).then(pl.lit("ignored"))
        .when(~first).then(pl.lit("duplicate")).alias("_pre"))
    base = _base(ev.filter(pl.col(STEP).is_not_null()).select(ENTITY, TS, STEP)).rename({"t": _US})
    if cfg.order == "any":
        uniq = _classify_any(base, window)
    else:
        uniq = _classify_ordered(base, k, window, cfg.order)
    level = uniq.group_by(ENTITY).agg(pl.col("_lv").max().alias("_level"))
    return (
        rows.join(uniq.drop("_lv"), on=[ENTITY, _US, STEP], how="left", nulls_equal=False)
        .join(level, on=ENTITY, how="left")
        .with_columns(pl.coalesce("_pre", "status").alias("status"),
                      pl.col("_level").fill_null(0).cast(pl.Int32))
        .with_columns(pl.when(pl.col("_pre").is_null()).then(pl.col("anchor")).alias("anchor"),
                      pl.when(pl.col("_pre").is_null()).then(pl.col("prev_t")).alias("prev_t"),
                      pl.when(pl.col("_pre").is_null()).then(pl.col("cut")).alias("cut"))
        .sort("_i")
        .drop("_pre", "_i")
    )


def _classify_ordered(base: pl.LazyFrame, k: int, window: int, order: str) -> pl.LazyFrame:
    """Unique step events with status, anchor, prev_t and ``_lv`` (level reached by it)."""
    # The engine's own walk, traced: which events qualify, the latest qualifying previous-step
    # event of each (prev_t, its anchor) and, strict, the other step that came in between.
    strict = order == "strict"
    ev = (
        _qualifying(base.rename({_US: "t"}), k, window, strict=strict, trace=True)
        .rename({"t": _US, PREV_T: "prev_t", PREV_ANCHOR: "_pa", CUT: "cut"})
        .with_columns(pl.col("anchor").is_not_null().alias("_q"))
    )
    ev = ev.with_columns(pl.col(STEP).filter("_q").max().over(ENTITY).alias("_top"))
    # Best attempt: highest step reached, earliest anchor; its first event at each step.
    ev = ev.with_columns(pl.col("anchor").filter(pl.col("_q") & (pl.col(STEP) == pl.col("_top")))
                         .min().over(ENTITY).alias("_best"))
    ev = ev.with_columns((pl.col("_q") & (pl.col("anchor") == pl.col("_best"))).alias("_in"))
    ev = ev.with_columns(pl.col(_US).filter("_in").min().over(ENTITY, STEP).alias("_first"))
    first_in_best = pl.col("_in") & (pl.col(_US) == pl.col("_first"))
    anchor = pl.coalesce("anchor", "_pa")
    status = (
        pl.when(first_in_best).then(pl.lit("reached"))
        .when(pl.col("_in")).then(pl.lit("repeat"))
        .when(pl.col("_q") & (pl.col(STEP) == 0)).then(pl.lit("start"))
        .when(pl.col("_q")).then(pl.lit("advanced"))
        .when(pl.col("prev_t").is_null()).then(pl.lit("order"))
        .when(pl.col("cut").is_not_null()).then(pl.lit("interrupted"))
        .when(pl.col("prev_t") >= pl.col(_US)).then(pl.lit("tie"))
        .when(pl.col(_US) - anchor > window).then(pl.lit("window"))
        .otherwise(pl.lit("order"))
    )
    return ev.select(
        ENTITY, _US, STEP, status.alias("status"),
        pl.when(pl.col(STEP) > 0).then(anchor).otherwise(pl.col(_US)).alias("anchor"),
        "prev_t",
        pl.when(status == "interrupted").then(pl.col("cut")).alias("cut"),
        pl.when("_q").then(pl.col(STEP) + 1).otherwise(0).alias("_lv"),
    )


def _classify_any(base: pl.LazyFrame, window: int) -> pl.LazyFrame:
    """Any order: the best window [s, s + window] (most distinct steps, earliest start)."""
    starts = (
        base.sort(ENTITY, _US)
        .rolling(index_column=_US, period=f"{window}i", offset="0i", closed="both", group_by=ENTITY)
        .agg(pl.col(STEP).n_unique().alias("_n"))
        .group_by(ENTITY)
        .agg(pl.col("_n").max().alias("_lv"),
             pl.col(_US).filter(pl.col("_n") == pl.col("_n").max()).min().alias("_s"))
    )
    inside = (pl.col(_US) >= pl.col("_s")) & (pl.col(_US) <= pl.col("_s") + window)
    ev = base.join(starts, on=ENTITY).sort(ENTITY, _US, STEP).with_columns(inside.alias("_in"))
    ev = ev.with_columns(pl.col(_US).filter("_in").min().over(ENTITY, STEP).alias("_first"))
    inside = pl.col("_in")
    first = inside & (pl.col(_US) == pl.col("_first"))
    status = pl.when(first).then(pl.lit("reached")).when(inside).then(pl.lit("repeat")) \
        .otherwise(pl.lit("outside"))
    return ev.select(ENTITY, _US, STEP, status.alias("status"), pl.col("_s").alias("anchor"),
                     pl.lit(None, pl.Int64).alias("prev_t"), pl.lit(None, pl.Int32).alias("cut"),
                     pl.col("_lv").cast(pl.Int32))


# --- the explanation -------------------------------------------------------------------------

def _detail(status: str, step: str | None, prev_step: str | None, t: int, anchor: int | None,
            prev_t: int | None, window: int, iso, other: str | None = None) -> str:
    if status == "tie":
        return f"tie: the latest '{prev_step}' event is at the same time ({iso(prev_t)})"
    if status == "window":
        return (f"window: {_span(t - anchor)} after the attempt started at {iso(anchor)} "
                f"(window {_span(window)})")
    if status == "order":
        return f"order: no earlier '{prev_step}' event that counted"
    if status == "interrupted":
        return (f"order: '{other}' came between it and the '{prev_step}' event at {iso(prev_t)} "
                f"(strict: no other funnel step in between)")
    if status == "repeat" and prev_t is not None:
        return f"'{step}' again in the counted attempt: now the latest '{step}' event"
    if status == "reached":
        return f"reached '{step}'" + (f" ({_span(t - anchor)} after the attempt started)"
                                      if anchor is not None and t != anchor else "")
    return STATUSES[status]


def _span(us: int) -> str:
    s = us / 1e6
    if s < 1:
        return f"{us} µs" if us < 1000 else f"{us / 1000:g} ms"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            parts.append(f"{int(s // size)}{unit}")
            s -= (s // size) * size
    if s or not parts:
        parts.append(f"{s:g}s")
    return " ".join(parts)


def build_explanation(entity: str, classified: pl.DataFrame, record: dict, cfg: Config) -> Explanation:
    """``classified``: ``classify`` on the entity's events (collected); ``record``: its row of
    ``session_records`` (session/user ids, level, ``_excluded``)."""
    names = list(cfg.step_names)
    k = len(names)
    iso = lambda us: None if us is None else pl.Series([us]).cast(pl.Datetime("us")).dt.strftime(
        "%Y-%m-%dT%H:%M:%S%.fZ").item()
    level = int(record.get("_level") or 0)
    events = []
    for r in classified.iter_rows(named=True):
        st = r[STEP]
        step = names[st] if st is not None else None
        prev_step = names[st - 1] if st is not None and st > 0 else None
        events.append(ExplainedEvent(
            time=iso(r[_US]), event=r[EVENT], step=step, status=r["status"],
            detail=_detail(r["status"], step, prev_step, r[_US], r["anchor"], r["prev_t"], cfg.window, iso,
                           names[r["cut"]] if r["cut"] is not None else None),
            attempt_start=iso(r["anchor"]), previous_step_time=iso(r["prev_t"]),
        ))
    outcomes = []
    for i, name in enumerate(names):
        mine = classified.filter(pl.col(STEP) == i)
        reached = mine.filter(pl.col("status") == "reached")
        failed = mine.filter(pl.col("status").is_in(FAILED)).group_by("status").len().sort("status")
        outcomes.append(StepOutcome(
            step=name, reached=i < level, time=iso(reached[_US].min()) if reached.height and i < level else None,
            events=mine.height, failed={s: int(n) for s, n in failed.iter_rows()}))
    excluded = bool(record.get("_excluded"))
    exit_step = names[level - 1] if level else None
    return Explanation(
        entity=entity, unit=cfg.level, session_id=record.get(SESSION), user_id=record.get(USER),
        order=cfg.order, window=_span(cfg.window).replace(" ", ""), window_seconds=cfg.window / 1e6, level=level, exit_step=exit_step,
        converted=level >= k, excluded=excluded,
        verdict=_verdict(level, names, excluded, outcomes, cfg) + _bought_after(record, cfg),
        steps=outcomes, events=events,
    )


def _verdict(level: int, names: list[str], excluded: bool, outcomes: list[StepOutcome], cfg: Config) -> str:
    k = len(names)
    unit = cfg.level
    if excluded:
        return (f"not counted: an exclusion event ({', '.join(cfg.exclude)}) falls between its first "
                f"and last reached step")
    if level == 0:
        return f"not in the funnel: no '{names[0]}' event that starts an attempt"
    if level >= k:
        return f"converted: reached all {k} steps within the window"
    nxt = outcomes[level]
    head = f"dropped after '{names[level - 1]}' (step {level} of {k})"
    if cfg.order == "any":
        return f"{head}: no window of {_span(cfg.window)} holds more than {level} distinct steps"
    if not nxt.events:
        return f"{head}: this {unit} has no '{nxt.step}' event"
    words = {"tie": "at the same timestamp as the previous step", "window": "beyond the window",
             "order": "with no earlier previous step", "interrupted": "with another funnel step in between (strict)"}
    why = ", ".join(f"{n} {words[s]}" for s, n in nxt.failed.items())
    return f"{head}: '{nxt.step}' events did not count ({why})" if why else f"{head}"


def _bought_after(record: dict, cfg: Config) -> str:
    """The verdict's addition for a cart bought later in its own session or user
    (``BOUGHT_HERE``): not lost, though the funnel counts it as stopping at its exit step."""
    from ..api import _iso

    if not record.get(BOUGHT_HERE) or record.get("_excluded"):
        return ""
    at = record[BOUGHT_TS] or record[step_time_col(len(cfg.steps) - 1)]   # (--order any: its purchase, in any order)
    return f"; it bought at {_iso(at)} all the same, outside the funnel's chain of steps: counted as recovered, not lost"


# --- library entry ------------------------------------------------------------------------

def explain(sources: list[str] | tuple[str, ...], entity: str, cfg: Config,
            sessions: str | None = None, diagnose: bool = True, shards: int | None = None,
            period=None) -> Explanation:
    """Read the input, find ``entity`` (a session id, or a user id with ``level='user'``) and
    explain its funnel level; add the diagnosis (reason, evidence) when the module exists.

    Inputs over ``api.FULL_SHARD_ROWS`` rows (or ``shards`` > 1) are read in user shards, one at
    a time, as ``analyze`` reads them: the entity's events and its user's come from its shard,
    the diagnosis baseline is merged from every shard's.

    ``period`` (as ``analyze``'s: a ``PeriodSpec`` or a ``(start, end)`` pair) explains the
    entity as the run of that period sees it: only the entities that start in it are read
    (``periods.entities_in``; its recovery, the baseline), so the verdict is that run's cart row.

    Raises ``InputError`` with a did-you-mean when the id is unknown, and when the entity
    does not start in the period."""
    from .. import api, periods
    from ..io.load import load_events
    from ..streaming import shard_count

    entity = entity.strip()   # (as ids are stripped when the data is read)
    timed = not api._no_period(period)
    loaded = load_events(list(sources), cfg)
    k = shards or shard_count(loaded, api.FULL_SHARD_ROWS)
    if k > 1:
        got = _explain_in_shards(loaded, entity, cfg, sessions, diagnose, k, period if timed else None)
        if got is not None:
            return got
    prep = api.prepare(list(sources), cfg, sessions=sessions, loaded=loaded)
    whole = ev = prep.events
    span = periods.resolve_periods(ev, period, None)[0] if timed else None
    if span is not None:   # (as analyze restricts a period's run)
        ev = periods.entities_in(ev, span).collect().lazy()
    mine = ev.filter(pl.col(ENTITY) == entity).collect()
    if mine.height == 0:
        outside = whole.filter(pl.col(ENTITY) == entity).select(pl.col(TS).min()).collect().item() \
            if span is not None else None
        if outside is not None:
            raise _not_in_period(entity, outside, span, cfg)
        raise _all_rejected(entity, api.reject_table(prep.rejects), cfg) or \
            _unknown(entity, whole.select(pl.col(ENTITY).unique().sort()).collect().to_series(), cfg,
                     is_other=_other_unit(whole, entity, cfg))
    return _explained(entity, mine, cfg, prep.attrs, diagnose, lambda: ev, lambda: api.shard_baseline(ev, cfg, prep.attrs))


def _not_in_period(entity: str, first, span, cfg: Config):
    """The error for an entity of the input that does not start in the period ``span``."""
    from .. import periods
    from ..api import _iso
    from ..errors import InputError

    what = "session" if cfg.level == "session" else "user"
    return InputError(f"{what} {entity!r} does not start in the period {span.label} "
                      f"({periods.iso(span.start)} → {periods.iso(span.end)}): its first event is at {_iso(first)}, "
                      f"so that period's run does not count it",
                      "choose the period it starts in, or drop --period/--since/--until")


def _other_unit(ev, entity: str, cfg: Config) -> bool:
    """Whether ``entity``, not an id of ``cfg.level``, is an id of the other unit (a user id
    explained as a session, or a session id with ``--unit user``)."""
    names = ev.collect_schema().names() if isinstance(ev, pl.LazyFrame) else ev.columns
    col = USER if cfg.level == "session" else SESSION
    if col not in names:
        return False
    got = ev.lazy().filter(pl.col(col) == entity).select(pl.len()).collect().item()
    return bool(got)


def _all_rejected(entity: str, rejects: pl.DataFrame, cfg: Config):
    """The error for an id whose rows are all rejected (``rejects``: ``api.reject_table``), or
    None when no rejected row has it: such a session is in the input, but unusable."""
    from ..errors import InputError

    names = rejects.columns
    if SESSION not in names or (cfg.level != "session" and USER not in names):
        return None
    ids = pl.col(SESSION) if cfg.level == "session" else pl.coalesce(USER, SESSION)
    theirs = rejects.filter(ids.cast(pl.String).str.strip_chars() == entity.strip())
    if not theirs.height:
        return None
    what = "session" if cfg.level == "session" else "user"
    causes = ", ".join(f"{c}: {n:,}" for c, n in theirs.group_by("cause").len().sort("cause").iter_rows())
    first = theirs.row(0, named=True)
    rows = f"its {theirs.height:,} rows were" if theirs.height > 1 else "its only row was"
    return InputError(f"{what} {entity!r} has no usable row: {rows} rejected ({causes}; the first: "
                      f"{first['file']} row {first['row']})",
                      "see each row and why with 'funnel analyze ... --rejects FILE'")


def _padded(ids: pl.Series, entity: str) -> list[str]:
    """The ids of ``ids`` that differ from ``entity`` only in the zero padding of their numbers
    ('s_000006' for 's_00006')."""
    unpad = lambda e: e.str.replace_all(r"(^|\D)0+(\d)", "${1}${2}")
    key = unpad(pl.Series([entity])).item()
    return ids.filter(unpad(ids) == key).head(3).to_list()


def near_ids(entity: str, ids: pl.Series) -> list[str]:
    """Close matches only: the zero-padding near misses, then by spelling (``did_you_mean``)."""
    from ..errors import did_you_mean

    return list(dict.fromkeys([*_padded(ids, entity), *did_you_mean(entity, ids.to_list(), n=3)]))[:3]


def _unknown(entity: str, ids: pl.Series, cfg: Config, n_ids: int | None = None, is_other: bool = False):
    """The error for an id not in the input: the closest of ``ids`` (close matches only), or,
    when ``is_other``, that it is an id of the other unit."""
    from ..errors import InputError

    what = "session" if cfg.level == "session" else "user"
    n_ids = ids.len() if n_ids is None else n_ids
    from .normalize import TEXT_NULLS

    if entity.strip() in cfg.missing_ids:   # (a shop's placeholder id, listed by the user)
        return InputError(f"{entity!r} is listed in [input] missing_ids ({cfg.source}): funnel reads it as no id, "
                          f"so no {what} has it ({n_ids:,} {what}s in the input)",
                          "drop it from missing_ids to analyse it as an id")
    if entity.strip() in TEXT_NULLS:   # (no id is spelled so: the normaliser reads it as missing)
        return InputError(f"{entity!r} spells a missing {what} id: funnel reads it as no id, so no {what} has it "
                          f"({n_ids:,} {what}s in the input)", f"list the {what} ids with 'funnel analyze --carts FILE'")
    if is_other:
        other, flag = ("user", "use --unit user") if what == "session" else ("session", "drop --unit user")
        return InputError(f"{entity!r} is a {other} id, not a {what} id: {flag}",
                          f"'funnel explain {entity} ... --unit {other}' explains the {other}")
    near = near_ids(entity, ids)
    return InputError(f"no {what} {entity!r} in the input ({n_ids:,} {what}s)",
                      ("did you mean " + " or ".join(f"'{n}'" for n in near) + "?") if near
                      else f"no {what} id is similar to it; list the {what} ids with 'funnel analyze --carts FILE'")


def _explain_in_shards(loaded, entity: str, cfg: Config, sessions: str | None, diagnose: bool,
                       k: int, period=None) -> Explanation | None:
    """``explain`` over ``k`` user shards (None: the input has no rows; the one-pass reading
    says so). Of each shard it keeps only its baseline partials (when ``diagnose``) and, for an
    unknown id, its closest ids, whose union gives the one-pass answer. With a ``period`` the
    shards' events are kept in files, the period resolved from the bounds of all of them and
    each shard read again for the entities that start in it, as ``analyze`` does."""
    from .. import api, periods
    from . import partials as parts

    with api.shard_dir() as tmp:
        log = api.read_sessions_log(sessions, cfg)
        done: list = []
        prepared = api.prepared_shards(loaded, cfg, k, tmp, lambda _m: None, done, log, keep=period is not None,
                                       whole_sessions=api.whole_entities(cfg))
        span = None
        if period is None:
            shards = ((ev, ev, done[-1]) for ev in prepared)   # (done[-1]: the shard just yielded)
        else:
            for ev in prepared:
                del ev
            lo, hi = api.merged_bounds(s.bounds for s in done)
            if lo is None:
                return None
            span = periods.resolve_periods(pl.DataFrame({TS: [lo, hi]}).lazy(), period, None)[0]

            def shards_in(span):
                for s in done:
                    whole = pl.read_ipc(s.events)
                    yield whole, periods.entities_in(whole.lazy(), span).collect(), s
            shards = shards_in(span)
        baselines, hints, n_ids, found, first, other = [], [], 0, None, None, False
        for whole, ev, shard in shards:
            if not whole.height:
                continue
            if diagnose and ev.height:
                baselines.append(api.shard_baseline(ev.lazy(), cfg, shard.attrs))
            mine = ev.filter(pl.col(ENTITY) == entity)
            if mine.height:   # its user's events are in this shard too: keep them for the diagnosis
                users = mine[USER].drop_nulls().unique().to_list()
                found = (mine, ev.filter(pl.col(USER).is_in(users) | (pl.col(ENTITY) == entity)), shard.attrs)
            elif found is None:
                ids = whole.select(pl.col(ENTITY).unique().sort()).to_series()
                n_ids += ids.len()
                if span is not None and entity in ids:
                    first = whole.filter(pl.col(ENTITY) == entity)[TS].min()
                other = other or _other_unit(whole, entity, cfg)
                hints += near_ids(entity, ids)
            del ev, whole
        if found is None and done:   # (the shards' rejected rows, before their folder goes)
            if first is not None:
                raise _not_in_period(entity, first, span, cfg)
            rejected = _all_rejected(entity, pl.concat([pl.read_ipc(s.rejects) for s in done if s.rejects],
                                                       how="diagonal_relaxed"), cfg)
            if rejected is not None:
                raise rejected
        if found is not None and span is not None and diagnose:
            mine, pool, attrs = found
            users = mine[USER].drop_nulls().unique()
            if users.is_in(done[0].shared.implode()).any():   # (see below: from the kept files)
                pool = pl.concat([ev.filter(pl.col(USER).is_in(users.implode()) | (pl.col(ENTITY) == entity))
                                  for _, ev, _ in shards_in(span)], how="diagonal_relaxed")
                found = (mine, pool, attrs)
    if not done:
        return None
    if found is None:
        raise _unknown(entity, pl.Series(sorted(set(hints)), dtype=pl.String), cfg, n_ids, is_other=other)
    mine, pool, attrs = found
    users = mine[USER].drop_nulls().unique()
    if diagnose and span is None and users.is_in(done[0].shared.implode()).any():
        # A user whose sessions other shards hold too (api.user_shards): their events from
        # every shard, for the recovery (a second reading of the input; rare).
        with api.shard_dir() as tmp:
            pool = pl.concat([ev.filter(pl.col(USER).is_in(users.implode()) | (pl.col(ENTITY) == entity))
                              for ev in api.prepared_shards(loaded, cfg, k, tmp, lambda _m: None, [], log,
                                                            tables=False, whole_sessions=api.whole_entities(cfg))],
                             how="diagonal_relaxed")
    return _explained(entity, mine, cfg, attrs, diagnose, lambda: pool.lazy(), lambda: parts.merge(baselines))


def _explained(entity: str, mine: pl.DataFrame, cfg: Config, attrs: list[str], diagnose: bool,
               events: Callable[[], pl.LazyFrame], baseline: Callable[[], dict]) -> Explanation:
    """The explanation of ``entity`` from its events ``mine``; the diagnosis reads
    ``events()`` (every event of its user, at least) and ``baseline()`` (input-wide)."""
    from .. import api
    from .sessions import session_records

    classified = classify(mine.lazy(), cfg).collect()
    rec = session_records(mine.lazy(), cfg, attrs).with_columns(bought_here(cfg)).collect() \
        .row(0, named=True)
    out = build_explanation(entity, classified, rec, cfg)
    if not diagnose:
        return out
    try:
        from . import reasons  # noqa: F401  (written alongside; may be missing)
    except ImportError:
        return _replace(out, diagnosis_note="diagnosis unavailable (funnel.core.reasons is missing)")
    # The diagnosis sees every event of the entity's user (recovery looks at later sessions) and
    # the input-wide baseline (e.g. the dwell of carts that moved on from each step), as in a full analysis.
    user = rec.get(USER)
    scope = events().filter((pl.col(USER) == user) if user is not None else (pl.col(ENTITY) == entity))
    diag = api.shard_diagnosis(scope, cfg, attrs, baseline()).filter(pl.col(ENTITY) == entity)
    if not diag.height or diag["reason"][0] is None:
        return _replace(out, diagnosis_note="no diagnosis: only abandoned carts get a reason")
    row = diag.row(0, named=True)
    from .signals import catalogue, describe

    cat = catalogue(cfg)
    return _replace(out, reason=row["reason"], confidence=row.get("confidence"),
                    evidence=[EvidenceNote(s, describe(s, cat)) for s in row.get("evidence") or []],
                    recovered=bool(row.get("recovered")))


def _replace(e: Explanation, **kw) -> Explanation:
    from dataclasses import replace

    return replace(e, **kw)
