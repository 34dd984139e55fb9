"""Library API: ``analyze(sources, ...) -> Analysis`` and the shard functions beneath it.

Data flow (design.md): read + adapt -> normalize (types, UTC, rejects, duplicates) ->
sessionize -> steps -> per-entity records -> diagnosis -> additive partials -> merge ->
finalize -> Report. ``shard_partials`` is the unit that runs on any shard of users (locally
the whole input is one shard; Spark runs it per partition) and its output merges by addition.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any, TypeVar

import polars as pl

from . import __version__
from .config import Config
from .core import finalize as fin
from .core import partials as parts
from .core.normalize import cap_sessions, mark_duplicates, may_repeat, needs_cleaning, normalize
from .core.sessionize import sessionize
from .core.sessions import (BOUGHT_TS, PURCHASE_TS, bought_after_exit, first_purchase, funnel_base, hashed_entities,
                            map_steps, purchase_time, session_records, with_recovery)
from . import gates, periods
from .core.compare import compare_reports
from .errors import ConfigError, InputError, OutputError
from .periods import PeriodSpec
from .io.load import Loaded, load_events, load_sessions
from .io.sources import encoding_warnings, skipped_files
from .model import SCHEMA_VERSION, Abandonment, Count, InputSummary, Period, Report, Settings
from .schema import (CANONICAL_COLUMNS, CART_VALUE, CURRENCY, DEFAULT_SEGMENT_CANDIDATES, DUP_KEY, ENTITY,
                     EVENT, PAYMENT, REJECT, SESSION, STEP, TS, USER)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """Usable events of the whole input plus what the input summary needs."""

    events: pl.LazyFrame          # usable canonical events with _entity and _step
    rejects: pl.DataFrame         # rejected rows (file, row, cause + canonical columns)
    loaded: Loaded
    attrs: list[str]              # segment attributes available per entity
    sessionized: bool
    sessions_log: SessionsLog | None
    rows_read: int


@dataclass(frozen=True)
class Analysis:
    """What ``analyze`` returns: the report, plus the per-cart table for reminders/exports."""

    report: Report
    carts: pl.DataFrame           # one row per abandoned cart: ids, exit step, value, reason, evidence
    rejects: pl.DataFrame         # rows that could not be used: _file, _row, _reject + their values
    counts: pl.DataFrame | None = None   # reject_counts of the input (per cause, per step): step_warnings

    def to_dict(self) -> dict[str, Any]:
        return self.report.to_dict()


def _duration(us: int) -> str:
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        if us % size == 0 and (unit != "d" or us >= 2 * size):
            return f"{us // size}{unit}"
    return f"{us / 1e6:g}s"


def generated_at() -> str:
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde and sde.strip().isdigit():
        return datetime.fromtimestamp(int(sde), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Columns the funnel-only path keeps (plus _-prefixed pipeline columns and configured segments).
FUNNEL_ONLY_COLUMNS = (TS, EVENT, SESSION, USER, CART_VALUE, CURRENCY)


def project_input(lf: pl.LazyFrame, cfg: Config, columns: tuple[str, ...] | None = None) -> pl.LazyFrame:
    """Keep ``columns`` (default: canonical and segment columns) and pipeline (``_*``) columns;
    other columns survive only as one 64-bit hash (``_dup_key``), so 'exact duplicate' still
    compares whole input rows."""
    names = lf.collect_schema().names()
    wanted = set(columns) if columns is not None else \
        {*CANONICAL_COLUMNS, *DEFAULT_SEGMENT_CANDIDATES, *cfg.segments}
    keep = [c for c in names if (c in wanted or c.startswith("_")) and c != DUP_KEY]
    dropped = [c for c in names if c not in keep]   # (with an adapter's DUP_KEY: the export's event id)
    if not dropped or dropped == [DUP_KEY]:
        return lf
    return lf.select(*keep, pl.struct(dropped).hash(0).alias(DUP_KEY))


def collected_columns(lf: pl.LazyFrame, cfg: Config, funnel_only: bool) -> pl.LazyFrame:
    """What ``prepare`` materialises: everything the analysis reads, or the funnel's few columns."""
    names = lf.collect_schema().names()
    if not funnel_only:
        return lf.drop(DUP_KEY, strict=False)
    keep = [c for c in names if (c in FUNNEL_ONLY_COLUMNS or c in cfg.segments or c.startswith("_"))
            and c != DUP_KEY]
    return lf.select(keep)


READ_ERRORS = (pl.exceptions.PolarsError, OSError, pl.exceptions.PanicException)
# OSError: e.g. a gzip truncated mid-file; PanicException: e.g. a corrupt Parquet page


def read_error(loaded: Loaded, exc: BaseException) -> InputError:
    """The one-line error for a failure while reading ``loaded``'s files (names file and line)."""
    from .io.sources import explain_read_error

    named = explain_read_error(loaded.files, exc)
    if named is not None:
        return named
    msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    files = ", ".join(str(f.path) for f in loaded.files)
    return InputError(f"{files}: cannot read the input ({msg})",
                      "check that every file is complete and in one of the supported formats")


def _collect_input(lf: pl.LazyFrame, loaded: Loaded) -> pl.DataFrame:
    """Collect a query that reads the input; a read failure names the file (and line)."""
    try:
        return lf.collect(engine="streaming")
    except READ_ERRORS as exc:
        raise read_error(loaded, exc) from None


@dataclass(frozen=True)
class SessionsLog:
    """The ``--sessions`` log, read: its path, one row per session, and its attribute columns."""

    name: str
    lf: pl.LazyFrame
    attrs: list[str]
    rows: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)   # its rows not used (``load_sessions``)

    @property
    def rejected(self) -> dict[str, int]:
        """How many of its rows were not used, per cause."""
        return dict(self.rows.group_by(REJECT).len().iter_rows()) if self.rows.height else {}

    def joined_attrs(self, attrs: list[str]) -> list[str]:
        """The events' attributes ``attrs`` once this log is joined: its own last (they win)."""
        return [a for a in attrs if a not in self.attrs] + self.attrs


def prepare(sources: list[str] | tuple[str, ...], cfg: Config, sessions: str | None = None,
            progress: Progress | None = None, funnel_only: bool = False,
            loaded: Loaded | None = None) -> Prepared:
    """Read, normalise and collect the usable events (``loaded``: ``load_events`` of
    ``sources``, when the caller has it already)."""
    say = progress or (lambda _msg: None)
    say("reading input")
    loaded = loaded or load_events(sources, cfg)
    return prepare_rows(project_input(loaded.lf, cfg), loaded, cfg, sessions, say, funnel_only)


_NEEDS_SESSION = pl.col(SESSION).is_null() & pl.col(USER).is_not_null() & pl.col(REJECT).is_null()


def event_chain(lf: pl.LazyFrame, cfg: Config, build_sessions: bool, funnel_only: bool = False,
                cap: bool = True, dups: bool = True) -> pl.LazyFrame:
    """Normalised rows (``normalize``) -> sessions built for rows without a session id (when
    ``build_sessions``) -> steps -> exact duplicates (unless ``dups`` is False: the caller
    proved there are none, ``may_repeat``) -> session cap (``cap``; else see ``capped``) ->
    the columns kept. The one chain, run by ``prepare_rows`` and by the Spark engine on each
    partition."""
    if build_sessions:
        lf = sessionize(lf.with_columns(_NEEDS_SESSION.alias("_built_session")), cfg.session_timeout)
    else:   # no row order is relied on
        lf = lf.with_columns(pl.lit(False).alias("_built_session"))
    lf = map_steps(lf, cfg)
    if dups:
        lf = mark_duplicates(lf)
    if cap:
        lf = cap_sessions(lf, ENTITY, cfg.max_events_per_session)
    return collected_columns(lf, cfg, funnel_only)


def capped(df: pl.DataFrame, cfg: Config) -> pl.DataFrame:
    """``cap_sessions`` on collected events, run only when some entity has more usable events
    than the cap: otherwise it rejects nothing, and its rank over every entity is the costliest
    step of the chain. (Entities are counted by a 64-bit hash: a collision can only overcount,
    and then the cap simply runs.)"""
    most = df.lazy().filter(pl.col(REJECT).is_null()).group_by(pl.col(ENTITY).hash(0)).len() \
        .select(pl.col("len").max()).collect().item()
    if (most or 0) <= cfg.max_events_per_session:
        return df
    return cap_sessions(df.lazy(), ENTITY, cfg.max_events_per_session).collect()


def prepare_rows(lf: pl.LazyFrame, loaded: Loaded, cfg: Config, sessions: str | SessionsLog | None = None,
                 progress: Progress | None = None, funnel_only: bool = False) -> Prepared:
    """``prepare`` on given input rows ``lf`` (``project_input`` of ``loaded``'s rows, e.g. a
    user shard of them): normalise -> sessionize -> steps -> duplicates -> session cap, collected;
    then the rejected rows set aside and the sessions log (a path, or already read) joined."""
    say = progress or (lambda _msg: None)
    lf = normalize(lf, cfg.timezone, decimals=loaded.decimals, names=loaded.names)
    if funnel_only:   # a few columns kept: streamed through the chain, only they are held
        # every row has a session id: skip the full sort + windows of sessionizing (cheap scan)
        build = _collect_input(lf.select(_NEEDS_SESSION.any()), loaded).item()
        df = _collect_input(event_chain(lf, cfg, build, funnel_only), loaded)
    else:   # every column is kept anyway: read and normalise once, then the chain in memory
        norm = _collect_input(lf, loaded)
        build = norm.select(_NEEDS_SESSION.any()).item()
        df = capped(event_chain(norm.lazy(), cfg, build, cap=False, dups=may_repeat(norm)).collect(), cfg)
        del norm
    say(f"read {df.height:,} rows")
    if df[REJECT].null_count() == df.height:   # nothing rejected (the usual case): no copies
        rejects, usable = df.clear(), df
    else:
        rejects, usable = df.filter(pl.col(REJECT).is_not_null()), df.filter(pl.col(REJECT).is_null())
    usable = usable.drop(REJECT, "_extra", "_detail", strict=False)
    sessionized = bool(usable["_built_session"].any())
    usable = usable.drop("_built_session")
    rejects = rejects.drop("_built_session")
    attrs = [c for c in loaded.extra_columns if c in DEFAULT_SEGMENT_CANDIDATES or c in cfg.segments]
    ev = usable.lazy()
    log = read_sessions_log(sessions, cfg) if isinstance(sessions, str) else sessions
    ev, attrs = with_sessions_log(ev, attrs, log)
    check_segments(cfg, [*attrs, *ev.collect_schema().names()],
                   segment_choices(loaded.extra_columns, loaded.columns, log))
    attrs += [s for s in cfg.segments if s not in attrs]
    return Prepared(ev, rejects, loaded, attrs, sessionized, log, df.height)


def segment_choices(extras: Sequence[str], roles: Collection[str], log: SessionsLog | None) -> list[str]:
    """The columns ``--segment`` can name: the events' properties (``extras``: every column
    without a role), their currency and payment method when the input has them (``roles``, as
    ``Loaded.columns``) and the sessions log's attributes. ``funnel validate`` lists them."""
    return list(dict.fromkeys([*extras, *(r for r in (CURRENCY, PAYMENT) if r in roles),
                               *(log.attrs if log is not None else ())]))


def check_segments(cfg: Config, found: Collection[str], choices: Sequence[str]) -> None:
    """Each segment column asked for (``--segment``, ``[segments] columns``) is among ``found``;
    else an error naming where it was asked for, with the columns that can be used
    (``choices``, ``segment_choices``) and the closest of them."""
    from .errors import suggestion
    from .io.detect import _show

    for s in cfg.segments:
        if s not in found:
            shown = ", ".join(_show(c) for c in choices[:30]) + (" …" if len(choices) > 30 else "")
            hint = " ".join(filter(None, (suggestion(s, choices), f"columns that can be used: {shown or 'none'}")))
            raise ConfigError(f"{cfg.given('segments')} {_show(s)!r}: no such column in the events or the sessions log",
                              hint)


def with_sessions_log(ev: pl.LazyFrame, attrs: list[str], log: SessionsLog | None
                      ) -> tuple[pl.LazyFrame, list[str]]:
    """The usable events with the sessions log's attributes joined by session id (they win
    over event columns of the same name), and the attribute list with them last."""
    if log is None:
        return ev, attrs
    clash = [a for a in log.attrs if a in ev.collect_schema().names()]
    marked = log.lf.with_columns(pl.lit(True).alias(parts.IN_LOG))   # (its sessions found: parts.log_matches)
    return ev.drop(clash).join(marked, on=SESSION, how="left"), log.joined_attrs(attrs)


def read_sessions_log(sessions: str | None, cfg: Config) -> SessionsLog | None:
    if sessions is None:
        return None
    return SessionsLog(sessions, *load_sessions(sessions, cfg))


def entity_records(ev: pl.LazyFrame | pl.DataFrame, cfg: Config, attrs: list[str]) -> pl.LazyFrame:
    """Per-entity records with recovery (``session_records``: events given collected are cheaper)."""
    return with_recovery(session_records(ev, cfg, attrs), cfg)


def shard_baseline(ev: pl.LazyFrame, cfg: Config, attrs: list[str],
                   rec: pl.DataFrame | None = None, agg: pl.DataFrame | None = None) -> parts.Partials:
    """Pass 1 on a shard: additive baselines the diagnosis needs (e.g. the dwell of carts that moved on from each step).
    ``agg``: the shard's ``reasons.event_aggregates``, when computed already."""
    from .core import reasons

    if rec is None:
        rec = entity_records(ev, cfg, attrs).collect()
    lazy = reasons.baseline_partials(ev, rec.lazy(), cfg, None if agg is None else agg.lazy())
    return dict(zip(lazy, pl.collect_all(list(lazy.values())), strict=True))


DEFERRED = "_deferred"   # a funnel-only shard's records of shared users (shard_funnel)


def shard_funnel(ev: pl.LazyFrame, cfg: Config, base: pl.LazyFrame | None = None,
                 steps: pl.LazyFrame | None = None, shared: pl.Series | None = None) -> parts.Partials:
    """Funnel-only pass on a shard: totals, levels, step times and abandonment counts (value,
    currency, recovery) without diagnosis or paths. Same numbers as the full pass's partials.

    ``base`` (funnel_base) and ``steps`` (entity, ts, step of the step events) may be given
    precomputed, as the streaming funnel-only path does. ``shared``: users whose sessions other
    shards may hold too (``user_shards``). Whether their carts were recovered needs all their
    sessions, so their records are left out of ``abandonment`` (the one partial that reads
    ``recovered``) and kept under ``DEFERRED``: ``merge_funnel_only`` counts them once every
    shard's are in."""
    from .core.funnel import LEVEL, apply_exclusions, exit_time, funnel_levels

    k = len(cfg.steps)
    base = funnel_base(ev) if base is None else base
    if steps is None:
        steps = ev.filter(pl.col(STEP).is_not_null()).select(ENTITY, TS, STEP)
    levels = funnel_levels(steps, k, cfg.window, cfg.order)
    if cfg.exclude:
        levels = apply_exclusions(levels, ev.filter(pl.col(EVENT).is_in(list(cfg.exclude))).select(ENTITY, TS))
    bought = steps.select(ENTITY, purchase_time(k)).group_by(ENTITY).agg(first_purchase())
    rec = base.join(levels, on=ENTITY, how="left").join(bought, on=ENTITY, how="left") \
        .join(bought_after_exit(steps, levels, k), on=ENTITY, how="left") \
        .with_columns(pl.col(LEVEL).fill_null(0).cast(pl.Int32))
    if "_excluded" in rec.collect_schema().names():
        rec = rec.with_columns(pl.col("_excluded").fill_null(False))
    else:
        rec = rec.with_columns(pl.lit(False).alias("_excluded"))
    # Collected once: collect_all below would otherwise plan the levels again for every partial.
    rec = with_recovery(rec.with_columns(exit_time(k).alias("exit_ts")), cfg) \
        .with_columns(pl.lit(None, pl.String).alias("reason")).collect()
    lazy = parts.funnel_partials(rec.lazy(), cfg, [])
    deferred = None
    if shared is not None and shared.len():   # (a user-level run has none: whole_entities)
        theirs = parts.of_shared(shared)
        deferred = rec.filter(theirs).drop(ENTITY)
        lazy["abandonment"] = parts.funnel_partials(rec.lazy().filter(~theirs), cfg, [])["abandonment"]
    names = ("totals", "levels", "step_time", "abandoner_dwell", "abandonment", "currency", parts.CART_USERS,
             parts.BOUGHT_OFF_CHAIN)
    out = dict(zip(names, pl.collect_all([lazy[n] for n in names]), strict=True))
    if deferred is not None and deferred.height:
        out[DEFERRED] = deferred
    return out


def merge_funnel_only(partials: list[parts.Partials], cfg: Config) -> parts.Partials:
    """``parts.merge`` of funnel-only shards' partials (``shard_funnel``), with the
    ``abandonment`` of the shared users' records each kept aside: recovered or not over all
    their sessions, whichever shard holds them."""
    deferred = [p.pop(DEFERRED) for p in partials if DEFERRED in p]
    if deferred:
        rec = with_recovery(pl.concat(deferred, how="diagonal_relaxed").lazy(), cfg)
        partials = [*partials, {"abandonment": parts.funnel_partials(rec, cfg, [])["abandonment"].collect()}]
    return parts.merge(partials)


def shared_recovery(records: list[pl.LazyFrame], shared: pl.Series, cfg: Config) -> list[pl.DataFrame]:
    """Whether each cart of the users in ``shared`` (``user_shards``: users whose sessions
    several shards may hold) was recovered, over all their sessions: per shard (one frame of
    per-entity ``records`` each, from ``entity_records``), ``ENTITY`` and ``recovered`` of
    those users' records (``with_recovery`` on the union of all shards' records of them)."""
    from .core.funnel import LEVEL, step_time_col

    if not shared.len():
        return [pl.DataFrame() for _ in records]
    cols = [ENTITY, USER, "first_ts", "last_ts", LEVEL, PURCHASE_TS, BOUGHT_TS, "exit_ts",
            step_time_col(len(cfg.steps) - 1)]   # (the purchase's: bought_here with --order any)
    theirs = pl.concat([r.filter(parts.of_shared(shared)).select(cols)
                        .with_columns(pl.lit(i, pl.UInt32).alias("_shard")) for i, r in enumerate(records)],
                       how="vertical_relaxed")
    fixed = with_recovery(theirs, cfg).select("_shard", ENTITY, "recovered").collect()
    return [fixed.filter(pl.col("_shard") == i).drop("_shard") for i in range(len(records))]


def shard_diagnosis(ev: pl.LazyFrame, cfg: Config, attrs: list[str], baseline: parts.Partials,
                    rec: pl.DataFrame | None = None, agg: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per-entity records with reason, confidence, evidence and signal flags (``agg``: as in
    ``shard_baseline``; then ``ev`` is not read)."""
    from .core import reasons

    if rec is None:
        rec = entity_records(ev, cfg, attrs).collect()
    return reasons.diagnose(ev, rec.lazy(), cfg, baseline, None if agg is None else agg.lazy()).collect()


def shard_partials(ev: pl.LazyFrame, cfg: Config, attrs: list[str], baseline: parts.Partials,
                   diag: pl.DataFrame | None = None) -> parts.Partials:
    """Pass 2 on a shard: every additive partial of the report."""
    from .core import reasons

    if diag is None:
        diag = shard_diagnosis(ev, cfg, attrs, baseline)
    d = diag.lazy()
    lazy: dict[str, pl.LazyFrame] = {}
    lazy.update(parts.funnel_partials(d, cfg, attrs))
    lazy.update(parts.path_partials(ev, d, cfg))
    lazy.update(reasons.diagnosis_partials(d, cfg))
    lazy.update(parts.log_matches(ev))
    return dict(zip(lazy, pl.collect_all(list(lazy.values())), strict=True))


def canonical_partials(p: parts.Partials) -> parts.Partials:
    """The partials in one form whatever the shards: merged (rows in key order) and the money
    sums (``sum_*``) rounded to 1e-6. Float addition is not associative, so a sum over shards,
    or over rows in a thread-dependent order, can differ in the last bits, and a total such as
    12,144.50 printed to the unit would then read 12,144 or 12,145 by chance."""
    out = parts.merge([p])
    return {name: df.with_columns(pl.col(c).round(6) for c, t in df.schema.items()
                                  if c.startswith("sum_") and t.is_float())
            for name, df in out.items()}


def build_report(p: parts.Partials, cfg: Config, inp: InputSummary, attrs: list[str],
                 funnel_only: bool = False) -> Report:
    """``funnel_only``: partials come from ``shard_funnel``; reasons, signals, recommendations,
    segments, paths and trend are left empty."""
    from types import SimpleNamespace

    from .core import reasons, recommend

    p = parts.masked_partials(canonical_partials(p), cfg)
    funnel = fin.finalize_funnel(p, cfg)
    counts = fin.abandonment_counts(p, cfg)
    diag = SimpleNamespace(reasons=[], signals=[], shipping_bands=[], episodes=[]) if funnel_only \
        else reasons.finalize_diagnosis(p, cfg)
    carts, abandoned = counts["carts"], counts["abandoned"]
    ab = Abandonment(
        cart_step=cfg.steps[0].name, purchase_step=cfg.steps[-1].name,
        carts=carts, abandoned=abandoned, rate=fin.ratio(abandoned, carts),
        ci95=fin.wilson(abandoned, carts), benchmark_rate=fin.BENCHMARK_ABANDONMENT,
        value_at_stake=counts["value"], recovered=counts["recovered"],
        recovery_horizon_seconds=cfg.recovery_horizon / 1e6, currency=counts["currency"],
        by_step=counts["by_step"], reasons=diag.reasons, signals=diag.signals,
        shipping_bands=diag.shipping_bands, episodes=diag.episodes,
    )
    recs = [] if funnel_only else recommend.recommend(p, ab, cfg)
    settings = Settings(
        steps=[{"name": s.name, "events": list(s.events)} for s in cfg.steps],
        window=_duration(cfg.window), order=cfg.order, unit=cfg.level,
        session_timeout=_duration(cfg.session_timeout), timezone=cfg.timezone,
        recovery_horizon=_duration(cfg.recovery_horizon), config_source=cfg.source,
    )
    return Report(
        schema_version=SCHEMA_VERSION, tool={"name": "funnel", "version": __version__},
        generated_at=generated_at(), input=inp, settings=settings, funnel=funnel, abandonment=ab,
        recommendations=recs,
        segments=[] if funnel_only else fin.finalize_segments(p, cfg, parts.segment_columns(attrs, cfg)),
        paths=None if funnel_only else fin.finalize_paths(p, cfg),
        trend=[] if funnel_only else fin.finalize_trend(p, cfg),
        warnings=fin.placeholder_warning(p, carts, cfg) + fin.off_chain_warning(p, cfg) + fin.currency_warning(p)
        + fin.sessions_log_warning(p, inp),
    )


def _iso(ts: Any) -> str | None:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts is not None else None


def input_summary(prep: Prepared, p: parts.Partials, cfg: Config) -> InputSummary:
    users = prep.events.select(pl.col(USER).drop_nulls().n_unique()).collect().item()
    return _summary(source_of(prep.loaded), reject_counts(prep.rejects, cfg), prep.rows_read, users, prep.sessionized,
                    prep.sessions_log, p)


def reject_counts(rejects: pl.DataFrame, cfg: Config) -> pl.DataFrame:
    """Rejected rows per cause (``_reject``, ``n``), with the sessions the cap rejected
    (``n_capped``) on the ``session_cap`` row, and the rows of each funnel step's events
    (``n_step0``, ``n_step1``, ...: ``step_rejects``): what the input summary and the step
    warnings report of them, in a form that adds across user shards (a session is in one shard)."""
    return rejects.group_by(REJECT).agg(
        pl.len().alias("n"),
        pl.when(pl.col(REJECT) == "session_cap").then(pl.col(ENTITY)).drop_nulls().n_unique().alias("n_capped"),
        *((pl.col(STEP) == i).sum().alias(f"n_step{i}") for i in range(len(cfg.steps))),
    )


def step_rejects(counts: pl.DataFrame | None, i: int) -> dict[str, int]:
    """The rejected rows of funnel step ``i``'s events, per cause, in ``reject_counts``
    ``counts`` (of every shard; empty when None: not known)."""
    col = f"n_step{i}"
    if counts is None or col not in counts.columns:
        return {}
    return {cause: int(n) for cause, n in merged_counts(counts).select(REJECT, col).iter_rows() if n}


def merged_counts(counts: pl.DataFrame) -> pl.DataFrame:
    """``reject_counts`` of several shards (concatenated) added up, one row per cause, sorted."""
    return counts.group_by(REJECT).agg(pl.exclude(REJECT).sum()).sort(REJECT)


def source_of(loaded: Loaded) -> dict[str, Any]:
    """What the input summary says of the input files (``_summary``'s ``source``): their paths,
    format and column roles."""
    return {"files": [str(f.path) for f in loaded.files], "format": loaded.format, "columns": dict(loaded.columns)}


def _summary(source: dict[str, Any], counts: pl.DataFrame, rows_read: int, users: int, sessionized: bool,
             log: SessionsLog | None, p: parts.Partials) -> InputSummary:
    """The input summary of every engine. ``source``: ``source_of`` the input (the Spark engine
    gives its own); ``counts``: ``reject_counts`` (of every shard, concatenated); ``log``: the
    sessions log, with the rows of it not used."""
    rej = merged_counts(counts)
    totals = p["totals"].row(0, named=True)
    return InputSummary(
        **source, rows_read=rows_read, rows_rejected=int(rej["n"].sum()),
        rejected=[Count(k, int(n)) for k, n in rej.select(REJECT, "n").iter_rows()],
        events=int(totals["n_events"] or 0), sessions=int(totals["n_entities"] or 0), users=int(users),
        period=Period(_iso(totals["min_ts"]), _iso(totals["max_ts"])), sessions_log=log.name if log else None,
        sessions_log_rejected=[Count(k, n) for k, n in sorted(log.rejected.items())] if log else [],
        sessionized=sessionized, capped_sessions=int(rej["n_capped"].sum()),
    )


# Full analysis: input rows per user shard. Large inputs are split (one streaming pass) into
# shards of about this many rows, analysed one at a time; smaller inputs take one pass.
FULL_SHARD_ROWS = 5_000_000


def _disk_error(exc: BaseException, creating: bool = False) -> OutputError | None:
    """The one-line error for a temporary disk that is full (or, ``creating`` the directory,
    not writable), else None."""
    import errno
    import tempfile

    codes = (errno.ENOSPC, errno.EDQUOT, errno.EROFS) + ((errno.EACCES, errno.EPERM) if creating else ())
    full = isinstance(exc, OSError) and exc.errno in codes
    if not (full or "No space left on device" in str(exc)):
        return None
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "No space left on device"
    return OutputError(f"{tempfile.gettempdir()}: cannot write the temporary shard files ({why})",
                       "large inputs are split by user on disk: free space there, or set TMPDIR "
                       "to a folder with room (1-2x the input's Parquet size)")


@contextlib.contextmanager
def shard_dir():
    """A temporary directory for user shards (``tempfile``: honours TMPDIR), removed at the
    end, also on error. A full or unwritable temporary disk is a one-line ``OutputError``."""
    import shutil
    import tempfile

    try:
        tmp = tempfile.mkdtemp(prefix="funnel-shards-")
    except OSError as exc:
        raise (_disk_error(exc, creating=True) or exc) from None
    try:
        yield tmp
    except (OSError, pl.exceptions.PolarsError) as exc:   # writing or reading the spilled files
        err = _disk_error(exc)
        if err is None:
            raise
        raise err from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OWNER_ROWS = 150_000_000   # input rows per pass of the session-owner search (~3 GB at 8 events a session)


def session_owners(lf: pl.LazyFrame, loaded: Loaded, clean_ids: bool = False) -> pl.DataFrame:
    """``partials.session_owners`` of the input rows ``lf`` (the sessions a shard key must keep
    whole), in one pass per ``OWNER_ROWS`` input rows so that its memory stays bounded; read
    errors name the file."""
    buckets = max(1, -(-loaded.rows // OWNER_ROWS))
    try:
        return parts.session_owners(lf, clean_ids, buckets)
    except READ_ERRORS as exc:
        raise read_error(loaded, exc) from None


def split_rows(lf: pl.LazyFrame, loaded: Loaded, k: int, tmp: str, clean_ids: bool = False,
               owners: pl.DataFrame | None = None) -> list[list[str]]:
    """One streaming pass over the input rows ``lf``, written to Parquet in ``tmp``, partitioned
    by user shard (``shard_key``; ``clean_ids``: its raw-id form; ``owners``: its
    ``session_owners``, searched here if not given). Returns each shard's files, in input
    order (none for an empty shard). Read errors name the file."""
    if owners is None:
        owners = session_owners(lf, loaded, clean_ids)
    if owners.height:   # the owners joined on (a partition key must be elementwise; read_shard drops them)
        lf = parts.with_owners(lf, owners, clean_ids)
    key = parts.shard_key(lf.collect_schema().names(), k, clean_ids).alias("_shard")

    def path(args: Any) -> str:
        return os.path.join(tmp, f"input-{args.partition_keys.item():05d}-{args.index_in_partition:06d}.parquet")

    try:
        # (the key in the PartitionBy itself: computed as a column first, the sink held all rows)
        lf.sink_parquet(pl.PartitionBy(tmp, key=key, include_key=False, file_path_provider=path),
                        compression="lz4", statistics=False, maintain_order=True)
    except READ_ERRORS as exc:
        raise (_disk_error(exc) or read_error(loaded, exc)) from None
    names = sorted(f for f in os.listdir(tmp) if f.startswith("input-"))
    return [[os.path.join(tmp, f) for f in names if f.startswith(f"input-{i:05d}-")] for i in range(k)]


def read_shard(files: list[str]) -> pl.LazyFrame:
    """The input rows of one shard written by ``split_rows``."""
    return pl.scan_parquet(files, hive_partitioning=False).drop(parts.OWNER, strict=False)


SCAN_SHARDS = 12   # up to this many user shards, Parquet input is read by filtered scans (user_shards)


def dirty_ids(rows: pl.LazyFrame, loaded: Loaded) -> bool:
    """Whether an id of the input rows ``rows`` needs cleaning (``needs_cleaning``): only then
    must shard keys hash the cleaned ids (``shard_key``); for clean ids the raw ones group the
    rows alike, ~10x cheaper. One pass over the two id columns."""
    names = rows.collect_schema().names()
    ids = [needs_cleaning(pl.col(c).cast(pl.String)).any() for c in (USER, SESSION) if c in names]
    return bool(ids) and bool(_collect_input(rows.select(pl.any_horizontal(ids)), loaded).item())


def user_shards(rows: pl.LazyFrame, loaded: Loaded, k: int, tmp: Callable[[], str], say: Progress,
                clean_ids: bool | None = None, whole_sessions: bool = True
                ) -> tuple[list[tuple[pl.LazyFrame, list[str]]], pl.Series]:
    """The input rows ``rows`` in ``k`` user shards (``shard_key``), each as (its rows, the
    temporary files they are read from: delete them once read), and the users that more than
    one shard may hold (``partials.shared_users``: count users with ``partials.user_tally``).

    ``whole_sessions``: every session in one shard (``session_owners``), what a session-level
    analysis needs. Without, each row goes to the shard of its own user id (else session id):
    every entity of a user-level funnel (``coalesce(user, session)``) whole in one shard, no
    user shared, and no owner search.

    Parquet input in up to ``SCAN_SHARDS`` shards: each shard is a filtered scan of the input.
    Every row's ids are read again for each shard, but only the shard's rows are decoded
    whole: at 20M rows and 4 shards, 2.3 s instead of 6.3 s for writing the input to disk and
    reading it back (docs/scale.md); with more shards the id reads add up, and the input is
    split once to ``tmp()`` (``split_rows``; a temporary directory, only then asked for), as
    text input always is. ``clean_ids``: hash the raw ids (True: the caller proves that no id
    needs cleaning; None: ``dirty_ids`` decides)."""
    if clean_ids is None:
        clean_ids = not dirty_ids(rows, loaded)
    scan = k <= SCAN_SHARDS and all(f.format == "parquet" for f in loaded.files)
    say(f"reading the input in {k} user shards" if scan else f"splitting the input into {k} user shards")
    owners = session_owners(rows, loaded, clean_ids) if whole_sessions else None   # see shard_key
    shared = parts.shared_users(owners) if owners is not None else parts.NO_SHARED
    if scan:
        return [(parts.shard_rows(rows, i, k, clean_ids, owners), []) for i in range(k)], shared
    split = split_rows(rows, loaded, k, tmp(), clean_ids, owners if owners is not None else parts.NO_OWNERS)
    return [(read_shard(files), files) for files in split if files], shared


def whole_entities(cfg: Config) -> bool:
    """``user_shards``' ``whole_sessions`` for an analysis of ``cfg``: sessions whole for a
    session-level funnel; a user-level funnel's entity is the row's user (else session), which
    a shard by the row's own ids keeps whole (with session owners, a user in another user's
    session would be in two shards: two entities)."""
    return cfg.level == "session"


def time_bounds(ev: pl.DataFrame | pl.LazyFrame) -> tuple:
    """The first and last event time of ``ev`` ((None, None) without events)."""
    return ev.lazy().select(pl.col(TS).min().alias("lo"), pl.col(TS).max().alias("hi")).collect().row(0)


def merged_bounds(bounds: Iterable[tuple]) -> tuple:
    """The first and last event time over shards' ``time_bounds`` ((None, None): no events)."""
    got = [b for b in bounds if b[0] is not None]
    return (min(b[0] for b in got), max(b[1] for b in got)) if got else (None, None)


@dataclass(frozen=True)
class _Shard:
    """A prepared user shard: what the input summary needs, its rejected rows (a file) and, when
    a period is analysed, its usable events (a file, read again for each period)."""

    rejects: str | None           # reject_table of its rejected rows (None: only counted)
    counts: pl.DataFrame          # reject_counts
    events: str | None
    rows_read: int
    sessionized: bool
    attrs: list[str]
    bounds: tuple[Any, Any]       # the first and last usable event time ((None, None): none)
    shared: pl.Series             # the users other shards may hold too (user_shards): user_tally


@dataclass(frozen=True)
class _Spilled:
    """What pass 1 keeps of a shard in memory (its frames are in files)."""

    files: dict[str, str]         # steps / records / aggregates -> Arrow IPC file
    baseline: parts.Partials
    events: parts.Partials        # partials of the whole events, which pass 2 no longer reads


def _prepare_shard(rows: pl.LazyFrame, files: list[str], name: str, loaded: Loaded, cfg: Config,
                   log: SessionsLog | None, tmp: str, funnel_only: bool, keep: bool,
                   tables: bool = True, shared: pl.Series | None = None) -> tuple[_Shard, pl.DataFrame]:
    """Normalise etc. one user shard's input rows (``prepare_rows``) and delete the ``files``
    they were split to: (the shard, its usable events). Its rejected rows are counted, and go
    to a file when ``tables``; so do its events when ``keep`` (a period is analysed: the events
    are filtered per period later)."""
    prep = prepare_rows(rows, loaded, cfg, log, funnel_only=funnel_only)
    ev = prep.events.collect()
    for f in files:   # the shard's input is no longer needed: free the disk
        os.remove(f)
    rejects = None
    if tables:   # as --rejects writes them, sorted: the shards' parts are merged in order
        rejects = os.path.join(tmp, f"{name}-rejects.arrow")
        reject_table(prep.rejects).write_ipc(rejects, compression="lz4")
    events = None
    if keep:
        events = os.path.join(tmp, f"{name}-events.arrow")
        ev.write_ipc(events, compression="lz4")
    shared = parts.NO_SHARED if shared is None else shared
    return _Shard(rejects, reject_counts(prep.rejects, cfg), events, prep.rows_read, prep.sessionized, prep.attrs,
                  time_bounds(ev), shared), ev


def prepared_shards(loaded: Loaded, cfg: Config, k: int, tmp: str, say: Progress, into: list[_Shard],
                    log: SessionsLog | None = None, funnel_only: bool = False, keep: bool = False,
                    tables: bool = True, whole_sessions: bool = True) -> Iterator[pl.DataFrame]:
    """The input in ``k`` user shards (``user_shards`` of its projected rows, bookkeeping
    included), each prepared once (``_prepare_shard``; split input files then deleted): its
    usable events, one shard at a time; ``into`` receives each ``_Shard``. Shared by
    ``analyze``, ``validate`` and ``explain`` (``whole_sessions``: see ``user_shards``; an
    analysis keeps its entities whole: ``whole_entities``)."""
    shards, shared = user_shards(project_input(loaded.lf, cfg), loaded, k, lambda: tmp, say,
                                 whole_sessions=whole_sessions)
    for i, (rows, files) in enumerate(shards):
        say(f"preparing shard {i + 1} of {len(shards)}")
        shard, ev = _prepare_shard(rows, files, f"shard-{i:05d}", loaded, cfg, log, tmp, funnel_only, keep, tables,
                                   shared)
        into.append(shard)
        yield ev
        del ev   # (before the next shard is prepared: one shard's events held at a time)


def _pass1(ev: pl.DataFrame, name: str, cfg: Config, attrs: list[str], tmp: str) -> _Spilled:
    """Pass 1 on one shard's usable events: per-entity records, the carts' event aggregates and
    the baseline partials; what pass 2 reads goes to files: the step events (paths), the
    records and the aggregates (diagnosis)."""
    from .core import reasons

    ev = hashed_entities(ev)   # (integer entity keys: cheaper group-bys, joins and sorts)
    rec = entity_records(ev, cfg, attrs).collect()
    # The diagnosis reads the events only through these per-cart aggregates: computed once, for
    # the baseline here and the diagnosis in pass 2, which then reads no event but step events.
    agg = reasons.event_aggregates(ev.lazy(), rec.lazy(), cfg).collect()
    baseline = shard_baseline(ev.lazy(), cfg, attrs, rec, agg)
    steps = ev.filter(pl.col(STEP).is_not_null()).select(ENTITY, TS, STEP)   # paths
    out = {}
    for what, df in (("steps", steps), ("records", rec), ("aggregates", agg)):
        out[what] = os.path.join(tmp, f"{name}-{what}.arrow")
        df.write_ipc(out[what], compression="lz4")
    return _Spilled(out, baseline, {k: v.collect() for k, v in parts.log_matches(ev.lazy()).items()})


def _shards_report(evs: Iterable[pl.DataFrame], shards: list[_Shard], loaded: Loaded, cfg: Config,
                   log: SessionsLog | None, say: Progress, tmp: str, tag: str, funnel_only: bool,
                   tables: bool) -> tuple[Report, list[str]] | None:
    """(report, the cart table's parts: files, one a shard, each sorted by session) of the
    shards' usable events ``evs`` (an iterable of DataFrames, one a shard, held one at a time),
    or None when none has an event. Without ``tables`` there are no cart parts.

    Full analysis: pass 1 on each shard (``_pass1``) and its baselines merged, then pass 2
    reads each shard's files back for its diagnosis and partials, which merge by addition into
    exactly the one-pass report (tests/test_shards.py). ``funnel_only``: each shard's funnel
    partials (``shard_funnel``). ``shards`` (filled while ``evs`` is read) give the input
    summary."""
    spilled: list[_Spilled] = []
    partials, carts, users = [], [], []
    # (no enumerate(): its cached result tuple would keep the last shard's events alive while
    # the next shard is prepared)
    i = -1
    for ev in evs:
        i += 1
        if not ev.height:
            continue
        shared = shards[i].shared
        users.append(parts.user_tally(ev, shared))
        if funnel_only:
            partials.append(shard_funnel(ev.lazy(), cfg, shared=shared))
        else:
            spilled.append(_pass1(ev, f"{tag}-{i:05d}", cfg, shards[i].attrs, tmp))
        del ev
    if not spilled and not partials:
        return None
    attrs = shards[0].attrs
    if spilled:
        baseline = parts.merge([s.baseline for s in spilled])
        # the carts of users that several shards hold: recovered over all their sessions
        fixed = shared_recovery([pl.scan_ipc(s.files["records"]) for s in spilled], shards[0].shared, cfg)
        for n, s in enumerate(spilled):
            say(f"analysing shard {n + 1} of {len(spilled)}")
            ev = pl.read_ipc(s.files["steps"]).lazy()
            rec = pl.read_ipc(s.files["records"])
            if fixed[n].height:
                rec = rec.update(fixed[n], on=ENTITY)
            diag = shard_diagnosis(ev, cfg, attrs, baseline, rec, pl.read_ipc(s.files["aggregates"]))
            partials.append(shard_partials(ev, cfg, attrs, baseline, diag))
            if tables:
                carts.append(os.path.join(tmp, f"{tag}-{n:05d}-carts.arrow"))
                carts_table(diag, cfg).write_ipc(carts[-1], compression="lz4")
            del ev, diag, rec
            for f in s.files.values():
                os.remove(f)
        partials += [s.events for s in spilled]
    p = merge_funnel_only(partials, cfg) if funnel_only else parts.merge(partials)
    say("building the report")
    built = any(s.sessionized for s in shards)
    inp = _summary(source_of(loaded), _counts(shards), sum(s.rows_read for s in shards), parts.users_of(users), built,
                   log, p)
    report = build_report(p, cfg, inp, attrs, funnel_only=funnel_only)
    return report, carts


def _merged(files: list[str], key: str | list[str]) -> pl.LazyFrame:
    """The per-shard parts of a table in ``files`` (Arrow IPC, each sorted by ``key``) as one
    table sorted by ``key``, read and merged as it streams; columns as a diagonal concat of
    the parts would give them."""
    scans = [pl.scan_ipc(f) for f in files]
    if not scans:
        return pl.LazyFrame()
    schema = pl.concat(scans, how="diagonal_relaxed").collect_schema()
    out = None
    for scan in scans:
        have = scan.collect_schema()
        part = scan.select(pl.col(c).cast(t) if c in have else pl.lit(None, t).alias(c) for c, t in schema.items())
        out = part if out is None else out.merge_sorted(part, key)
    return out


def _counts(shards: list[_Shard]) -> pl.DataFrame:
    return pl.concat([s.counts for s in shards], how="vertical_relaxed")


def _analyze_sharded(loaded: Loaded, cfg: Config, sessions: str | None, say: Progress, k: int,
                     period: Any = None, compare: Any = None, rules: Any = (),
                     funnel_only: bool = False, tables: bool = True,
                     sinks: dict[str, Any] | None = None) -> Analysis | None:
    """The analysis of a large input in ``k`` user shards, holding one shard at a time.

    One streaming pass writes the input, partitioned by user shard, to a temporary directory
    (``tempfile``: honours TMPDIR; removed at the end, also on error). Each shard is then
    prepared once (``_prepare_shard``) and analysed (``_shards_report``). With a period or a
    comparison (CI mode) the shards are prepared first, their usable events kept in files: the
    periods are resolved from the bounds of all of them, and each period's report reads every
    shard's events of the entities that start in it, as the one-pass run does. Without
    ``tables`` the cart and rejected-row tables are not kept (only counted): they grow with the
    input. With them, each shard's parts are kept in files and merged at the end, into memory
    or, for a table named in ``sinks`` (taken out of it), straight into its file. Returns None
    when the input has no rows (the one-pass path says so).
    """
    sinks = {} if sinks is None else sinks
    timed = not _no_period(period) or compare is not None
    with shard_dir() as tmp:
        log = read_sessions_log(sessions, cfg)
        shards: list[_Shard] = []
        prepared = lambda: prepared_shards(loaded, cfg, k, tmp, say, shards, log, funnel_only, timed, tables,
                                           whole_entities(cfg))

        def table(what: str, files: list[str], key: str | list[str], log: SessionsLog | None = None
                  ) -> pl.DataFrame:
            if not tables:
                return pl.DataFrame()
            merged = with_log_rows(_merged(files, key), log)
            if what in sinks:   # streamed to its file, never held whole
                from .io.writers import write_frame

                write_frame(sinks.pop(what), merged)
                return pl.DataFrame()
            return merged.collect()

        def finish(report: Report, carts: list[str]) -> Analysis:   # (while the parts exist)
            return Analysis(report=report, carts=table("carts", carts, CART_ORDER),
                            rejects=table("rejects", [s.rejects for s in shards], ["file", "row"], log),
                            counts=_counts(shards))

        def why_nothing():   # no usable row at all: say why, as the one-pass run does
            _no_usable_rows(loaded, sum(s.rows_read for s in shards), _counts(shards))

        if not timed:
            got = _shards_report(prepared(), shards, loaded, cfg, log, say, tmp, "pass1", funnel_only, tables)
            if got is None:
                if shards:
                    why_nothing()
                return None
            return finish(*got)
        for ev in prepared():
            del ev
        if not shards:
            return None
        lo, hi = merged_bounds(s.bounds for s in shards)
        if lo is None:
            why_nothing()
        span, prev_span = periods.resolve_periods(pl.DataFrame({TS: [lo, hi]}).lazy(), period, compare)
        _check_gates(rules, prev_span)

        def events_in(span: periods.Span | None):
            for s in shards:
                ev = pl.scan_ipc(s.events)
                yield (ev if span is None else periods.entities_in(ev, span)).collect()

        got = _shards_report(events_in(span), shards, loaded, cfg, log, say, tmp, "current", funnel_only, tables)
        if got is None:
            raise _no_entities_in(span, lo, hi, cfg)
        report, carts = got
        before = None
        if prev_span is not None:
            say("analysing the comparison period")
            prev = _shards_report(events_in(prev_span), shards, loaded, cfg, log, lambda _m: None, tmp,
                                  "previous", funnel_only, False)
            before = prev[0] if prev else None
        return finish(_ci_report(report, span, prev_span, before, rules), carts)


def _no_period(period: Any) -> bool:
    return period is None or (isinstance(period, PeriodSpec) and not any(dataclasses.astuple(period)))


def _check_gates(rules: Any, prev_span: periods.Span | None) -> None:
    if gates.needs_comparison(rules) and prev_span is None:
        raise ConfigError("the gate conversion_drop needs a comparison period", "add --compare previous")


def _no_entities_in(span: periods.Span, lo: Any, hi: Any, cfg: Config) -> InputError:
    return InputError(f"no {cfg.level}s start in the period {span.label} "
                      f"({periods.iso(span.start)} → {periods.iso(span.end)})",
                      f"the data covers {_iso(lo)} → {_iso(hi)}; choose another period or --as-of")


def _ci_report(report: Report, span: periods.Span | None, prev_span: periods.Span | None,
               before: Report | None, rules: Any) -> Report:
    """CI mode: the analysed period in the report, the comparison with the previous period's
    report ``before`` (None: no entity starts in it, a warning; a warning when the periods
    overlap) and the gates."""
    if prev_span is not None:   # (overlap with the data's own first and last event, without a period)
        said = periods.overlap_warning(span, report.input.period, prev_span, report.funnel.unit)
        if before is None or not before.funnel.entities:
            said += periods.empty_comparison_warning(prev_span, report.funnel.unit)
        report = dataclasses.replace(report, warnings=[*report.warnings, *said])
    if span is not None:
        report = dataclasses.replace(report, input=dataclasses.replace(report.input, period=span.as_period()))
    if prev_span is not None:
        report = dataclasses.replace(report, comparison=compare_reports(report, before, report.input.period,
                                                                        prev_span.as_period()))
    if rules:
        report = dataclasses.replace(report, gates=gates.evaluate(rules, report))
    return report


def _no_usable_rows(loaded: Loaded, rows_read: int, counts: pl.DataFrame) -> None:
    """Raise the error for an input without usable rows (none read, or all rejected);
    ``counts``: ``reject_counts``."""
    files = ", ".join(str(f.path) for f in loaded.files)
    if rows_read == 0:
        raise InputError(f"{files}: no usable rows (no data rows, only a header)",
                         "export the log again; the file holds column names but no events")
    causes = ", ".join(f"{k} {n}" for k, n in merged_counts(counts).select(REJECT, "n").iter_rows())
    raise InputError(f"{files}: no usable rows ({rows_read} read, all rejected: {causes or 'none'})",
                     "check the timestamp, event and id columns with 'funnel validate'")


def reject_table(rejects: pl.DataFrame, log: SessionsLog | None = None, *, by_line: bool = False) -> pl.DataFrame:
    """Rejected rows as written by ``--rejects``, one layout on every route and engine: file,
    row, cause, the offending raw value (``detail``), the row's values under every canonical
    column name (``CANONICAL_COLUMNS``, in that order; empty where the input has no such
    column), its other columns read (segment columns), then ``extra_fields`` (surplus CSV
    fields; empty otherwise); no internal (``_*``) column. Sorted by file and row; then the rows
    of the sessions ``log`` not used (``with_log_rows``). Rows of NDJSON files are numbered by
    their line (``line_numbers``), unless ``by_line`` says they already are (Spark numbers an
    NDJSON file's lines itself: ``spark._ndjson``)."""
    from .io.sources import line_numbers
    from .schema import ROW, SOURCE_FILE

    rejects = rejects if by_line else line_numbers(rejects)
    have = rejects.columns
    value = lambda c, name, t=None: (pl.col(c) if c in have else pl.lit(None, t)).alias(name)
    others = [c for c in have if c not in CANONICAL_COLUMNS and not c.startswith("_")]
    table = rejects.select(value(SOURCE_FILE, "file"), value(ROW, "row"), value(REJECT, "cause"),
                           value("_detail", "detail", pl.String), *(value(c, c) for c in CANONICAL_COLUMNS), *others,
                           value("_extra", "extra_fields", pl.String)).sort("file", "row")
    return with_log_rows(table, log) if log is not None else table


FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def with_log_rows(table: FrameT, log: SessionsLog | None) -> FrameT:
    """The rejected-row table ``table`` (``reject_table``: eager, or a lazy merge of the
    shards' parts) followed by the rows of the sessions ``log`` not used, in the same columns
    (the log's attributes added): nothing the run did not use is left out of ``--rejects``."""
    if log is None or not log.rows.height:
        return table
    rows = reject_table(log.rows)
    return pl.concat([table, rows.lazy() if isinstance(table, pl.LazyFrame) else rows], how="diagonal_relaxed")


CART_ORDER = ["session_id", "user_id"]   # the cart table's order: unique (a user-level entity is
# its user, whose first session another, anonymous entity may have too)


def carts_table(diag: pl.DataFrame, cfg: Config) -> pl.DataFrame:
    """The per-cart table (abandoned carts), as written by ``--carts``, in ``CART_ORDER``."""
    from .core.funnel import LEVEL

    names = list(cfg.step_names)
    k = len(names)
    return (
        diag.filter((pl.col(LEVEL) >= 1) & (pl.col(LEVEL) < k) & ~pl.col("_excluded"))
        .select(
            pl.col(SESSION).alias("session_id"), pl.col(USER).alias("user_id"),
            (pl.col(LEVEL) - 1).replace_strict(list(range(k)), names, return_dtype=pl.String).alias("exit_step"),
            pl.col("exit_ts").alias("exit_time"), "cart_value", "currency", "reason",
            pl.col("confidence").round(3), pl.col("evidence").list.join(";").alias("evidence"),
            pl.col("recovered"),
        )
        .sort(CART_ORDER)
    )


def analyze(sources: str | os.PathLike | list[str | os.PathLike] | tuple[str | os.PathLike, ...],
            config: Config | None = None, *, sessions: str | os.PathLike | None = None, progress: Progress | None = None,
            period: tuple[datetime, datetime] | PeriodSpec | None = None,
            compare: tuple[datetime, datetime] | str | None = None, funnel_only: bool = False,
            shards: int | None = None, tables: bool = True, carts_to: str | os.PathLike | None = None,
            rejects_to: str | os.PathLike | None = None, **overrides: Any) -> Analysis:
    """Analyse event logs and return the report plus the per-cart table.

    ``overrides`` are Config fields (``steps``, ``window`` in µs, ``order``, ``fail_on``, ...),
    applied over ``config`` (default: built-in defaults).

    ``period`` keeps the entities whose first event is in ``[start, end)`` (UTC); a
    ``PeriodSpec`` (``--period``/``--since``/``--until``/``--as-of``) is resolved against the
    data. ``compare`` (``"previous"``, ``"START..END"`` or a pair) adds ``report.comparison``;
    ``cfg.fail_on`` rules are evaluated into ``report.gates``. See ``funnel.periods``/``gates``.

    ``funnel_only`` reads only the funnel's columns and computes the funnel and abandonment
    counts (no reasons, paths, segments, cart table); ignored with ``compare`` or gates.

    ``shards`` (default: one per ``FULL_SHARD_ROWS`` input rows, or ``streaming.SHARD_ROWS`` for
    a funnel-only run; 1 = one pass) splits the input into that many user shards, analysed one
    at a time — also with a period, a comparison or gates; the report is the same as in one pass.

    ``tables=False``: ``Analysis.carts`` and ``.rejects`` are left empty (the report still counts
    them); a sharded run then keeps neither, so its memory does not grow with the input.
    ``carts_to`` / ``rejects_to``: write that table to the file (CSV, or Parquet by extension,
    as ``--carts``/``--rejects``) instead of returning it; a sharded run streams it there from
    the shards (each shard's part sorted, then merged), so it is never held whole.
    """
    sinks = {what: path for what, path in (("carts", carts_to), ("rejects", rejects_to)) if path is not None}
    asked = dict(sinks)
    cfg = (config or Config()).with_overrides(**overrides)
    skipped = skipped_files(_paths(sources))   # (files in a folder that are no logs: said, not read)
    for line in skipped:
        (progress or (lambda _msg: None))(line)
    result = _analyze(_paths(sources), cfg, sessions, progress, period, compare, funnel_only, shards,
                      tables or bool(sinks), sinks)
    # (a step no entity reached, rare: a misnamed step, usually; only then are the names read)
    warned = step_warnings(result.report, cfg, lambda: event_names(sources, cfg), result.counts)
    # (first and last event at local midnight, rare: dates without a time, usually; only then
    # are the timestamps read)
    warned += midnight_warning(result.report, cfg, lambda: timed_events(sources, cfg)) + skipped \
        + encoding_warnings(_paths(sources))
    if warned:
        result = dataclasses.replace(result, report=dataclasses.replace(
            result.report, warnings=[*warned, *result.report.warnings]))
    if not asked:
        return result
    from .io.writers import write_frame

    for what, path in sinks.items():   # (a sharded run wrote its own and took them out of ``sinks``)
        write_frame(path, getattr(result, what))
    emptied = ("carts", "rejects") if not tables else asked   # (written: not returned too)
    return dataclasses.replace(result, **{what: pl.DataFrame() for what in emptied})


def _paths(sources: Any) -> list[str]:
    """``analyze``'s ``sources`` (a path, or several) as a list of path strings."""
    return [os.fspath(s) for s in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)]


def event_names(sources: Any, cfg: Config) -> dict[str, int]:
    """The distinct event names of the input, as read, with their rows (one more pass over the
    event column)."""
    from .core.normalize import clean_string

    col = load_events(_paths(sources), cfg).lf.select(clean_string(EVENT)).group_by(EVENT).len()
    return dict(col.collect(engine="streaming").drop_nulls(EVENT).iter_rows())


def step_warnings(report: Report, cfg: Config, names: Callable[[], dict[str, int]] | None,
                  counts: pl.DataFrame | None) -> list[str]:
    """Why funnel steps that no entity reached have none: their event names are not in the
    input (``names()``: its distinct event names with their rows; None where they cannot be
    read), with the closest names there; or every row of their events was rejected
    (``counts``: ``reject_counts``, ``step_rejects``; None: not known), with the causes; or
    its events occur but never after the step before within the window. One line each; empty
    when every step was reached."""
    unreached = [(i, s) for i, s in enumerate(report.funnel.steps) if s.sessions == 0]
    if not unreached:
        return []
    unit = f"{report.funnel.unit}s"
    seen = names() if names is not None else None
    where = "--rejects FILE lists them"
    if seen is None:
        i, s = unreached[0]
        rejected = step_rejects(counts, i)
        return [(f"no {unit} reached step {s.name!r} (events: {', '.join(s.events)})"
                 + (f"; rows of its events were rejected: {rejected_causes(rejected, cfg)}" if rejected else "")
                 + " — check the step's event names against the input with 'funnel validate'")]
    out = []
    for i, s in unreached:
        rows = sum(seen.get(e, 0) for e in s.events)
        rejected = step_rejects(counts, i)
        if not rows:
            out.append(unnamed_step(s.name, s.events, set(seen), unit))
        elif sum(rejected.values()) >= rows:
            out.append(rejected_step(s.name, rejected, unit, cfg, where))
        elif not out:   # (the first unreached step, its events there; later steps follow from it)
            out.append(f"no {unit} reached step {s.name!r}: its events occur, but never after the step before "
                       f"within the {report.settings.window} window (order: {report.funnel.order})")
    return out


def timed(tz: str) -> pl.Expr:
    """True for a usable event time (``ts``) with a time of day in zone ``tz``: not at local
    midnight, which is what a date without a time reads as."""
    return pl.col(TS).dt.convert_time_zone(tz).dt.time() != pl.time(0)


def dates_only(usable: int, n_timed: int, column: str | None) -> list[str]:
    """The warning for timestamps that are all at midnight (``n_timed`` of ``usable`` events
    have a time of day): dates without a time, with which steps on one day cannot be ordered
    (and rows alike but for the time are duplicates). ``analyze`` and ``funnel validate`` say
    it alike."""
    if usable < 2 or n_timed:
        return []
    return [(f"every timestamp ({column or 'ts'}) is at midnight: the input seems to hold dates without a time of "
             "day, so steps on the same day cannot be ordered and repeated rows are rejected as duplicates — "
             "export the event time with its time of day")]


def midnight_warning(report: Report, cfg: Config, n_timed: Callable[[], int]) -> list[str]:
    """``dates_only`` for an analysis. The report's first and last event both at local midnight
    is the cheap test; only then is ``n_timed()`` asked (the input's usable events with a time
    of day: one more pass over the input locally, a count the shards return on Spark)."""
    inp = report.input
    ends = pl.DataFrame({TS: [inp.period.start, inp.period.end]}) \
        .select(pl.col(TS).str.to_datetime(time_zone="UTC", strict=False))
    if inp.events < 2 or ends[TS].null_count() or ends.select(timed(cfg.timezone).any()).item():
        return []
    return dates_only(inp.events, n_timed(), inp.columns.get("timestamp"))


def timed_events(sources: Any, cfg: Config) -> int:
    """How many usable events of the input have a time of day (``timed``): the input read once
    more and normalised (``normalize``'s reject rules; duplicates and the session cap, which do
    not change what times occur, aside)."""
    loaded = load_events(_paths(sources), cfg)
    lf = normalize(project_input(loaded.lf, cfg), cfg.timezone, decimals=loaded.decimals).filter(pl.col(REJECT).is_null())
    return int(_collect_input(lf.select(timed(cfg.timezone).sum()), loaded).item() or 0)


def rejected_causes(rejected: dict[str, int], cfg: Config) -> str:
    """Rejected rows per cause (``step_rejects``) as the step warnings say them: each cause
    with its count and meaning (the session cap with its value and setting)."""
    from .core.normalize import REJECT_CAUSES

    cap = f"event beyond the per-session cap of {cfg.max_events_per_session:,} events, [input] max_events_per_session"
    return ", ".join(f"{cause} {n:,} ({cap if cause == 'session_cap' else REJECT_CAUSES.get(cause, cause)})"
                     for cause, n in rejected.items())


def rejected_step(name: str, rejected: dict[str, int], unit: str, cfg: Config, where: str) -> str:
    """The warning for step ``name`` when every row of its events was rejected (``rejected``:
    per cause, ``step_rejects``); ``where``: where the rows are to be seen. ``analyze`` and
    ``funnel validate`` say it alike."""
    return (f"no {unit} reached step {name!r}: its events occur in the input, but every row of them was rejected — "
            f"{rejected_causes(rejected, cfg)}; {where}")


def unnamed_step(name: str, events: Sequence[str], seen: set[str], unit: str,
                 otherwise: str = "run 'funnel validate' to list the event names") -> str:
    """The warning for step ``name`` when none of its ``events`` is among the input's event
    names ``seen``, with the closest of them, else ``otherwise`` (``unit``: "sessions" or
    "users"). ``analyze`` and ``funnel validate`` say it alike."""
    from .errors import suggestion

    hints = [h for h in (suggestion(e, seen) for e in events) if h]
    return (f"no event in the input is named {' or '.join(map(repr, events))} (step {name!r}), so no {unit} "
            "reached it — " + (hints[0] if hints else otherwise))


def _analyze(sources: list[str], cfg: Config, sessions: Any, progress: Progress | None, period: Any,
             compare: Any, funnel_only: bool, shards: int | None, tables: bool, sinks: dict[str, Any]) -> Analysis:
    """``analyze`` (``sources``: ``_paths``; ``cfg`` with the overrides applied); a sharded run
    writes the tables named in ``sinks`` itself and removes them."""
    rules = gates.config_rules(cfg)  # bad rules fail before any work
    from .core.signals import catalogue

    catalogue(cfg)  # signal rules from funnel.toml are validated before any data is read
    funnel_only = funnel_only and compare is None and not getattr(period, "compare", None) and not rules
    if sessions is not None:
        sessions = os.fspath(sessions)
    say = progress or (lambda _msg: None)
    no_period = _no_period(period)
    if funnel_only and no_period and sessions is None:
        from .streaming import analyze_funnel_only

        fast = analyze_funnel_only(list(sources), cfg, say, shards, tables, sinks)  # None: the row-level path below
        if fast is not None:
            return fast
    from .streaming import SHARD_ROWS, shard_count

    loaded = load_events(list(sources), cfg)
    k = shards or shard_count(loaded, SHARD_ROWS if funnel_only else FULL_SHARD_ROWS)
    if k > 1:   # a large input: hold one user shard at a time
        sharded = _analyze_sharded(loaded, cfg, sessions, say, k, period, compare, rules, funnel_only, tables,
                                   sinks)
        if sharded is not None:
            return sharded
    prep = prepare(list(sources), cfg, sessions=sessions, progress=say, funnel_only=funnel_only, loaded=loaded)
    counts = reject_counts(prep.rejects, cfg)
    if prep.rows_read == 0 or prep.events.select(pl.len()).collect().item() == 0:
        _no_usable_rows(prep.loaded, prep.rows_read, counts)
    # --- CI mode: analysed period (entities by first event time) -------------------------
    span, prev_span = periods.resolve_periods(prep.events, period, compare)
    _check_gates(rules, prev_span)
    whole = prep
    if span is not None:
        prep = dataclasses.replace(prep, events=periods.entities_in(prep.events, span).collect().lazy())
        if prep.events.select(pl.len()).collect().item() == 0:
            lo, hi = time_bounds(whole.events)
            raise _no_entities_in(span, lo, hi, cfg)
    # ---------------------------------------------------------------------------------------
    if funnel_only:
        say("counting the funnel")
        p = shard_funnel(prep.events, cfg)
        report = build_report(p, cfg, input_summary(prep, p, cfg), prep.attrs, funnel_only=True)
        return Analysis(report=_ci_report(report, span, None, None, ()), carts=pl.DataFrame(),
                        rejects=reject_table(prep.rejects, prep.sessions_log) if tables else pl.DataFrame(),
                        counts=counts)
    p, diag = _one_shard(prep.events, cfg, prep.attrs, say)
    say("building the report")
    report = build_report(p, cfg, input_summary(prep, p, cfg), prep.attrs)
    before = None
    if prev_span is not None:
        say("analysing the comparison period")
        before = _period_report(whole, cfg, prev_span)
    report = _ci_report(report, span, prev_span, before, rules)
    if not tables:
        return Analysis(report=report, carts=pl.DataFrame(), rejects=pl.DataFrame(), counts=counts)
    return Analysis(report=report, carts=carts_table(diag, cfg), rejects=reject_table(prep.rejects, prep.sessions_log),
                    counts=counts)


def _one_shard(ev: pl.LazyFrame, cfg: Config, attrs: list[str],
               say: Progress | None = None) -> tuple[parts.Partials, pl.DataFrame]:
    """Both passes on events held in memory as one shard: (partials, diagnosed records)."""
    say = say or (lambda _msg: None)
    say("reconstructing purchase paths")
    from .core import reasons

    frame = hashed_entities(ev.collect())   # (the usable events, in memory already: cheap)
    ev = frame.lazy()
    rec = entity_records(frame, cfg, attrs).collect()
    agg = reasons.event_aggregates(ev, rec.lazy(), cfg).collect()   # for both passes
    baseline = shard_baseline(ev, cfg, attrs, rec, agg)
    say("diagnosing abandoned carts")
    diag = shard_diagnosis(ev, cfg, attrs, baseline, rec, agg)
    return shard_partials(ev, cfg, attrs, baseline, diag), diag


def _period_report(prep: Prepared, cfg: Config, span: periods.Span) -> Report | None:
    """The report of the entities whose first event is in ``span`` (None when there are none):
    the same passes as ``analyze``, for the comparison period."""
    ev = periods.entities_in(prep.events, span).collect().lazy()
    if ev.select(pl.len()).collect().item() == 0:
        return None
    p, _ = _one_shard(ev, cfg, prep.attrs)
    sub = dataclasses.replace(prep, events=ev)
    return build_report(p, cfg, input_summary(sub, p, cfg), prep.attrs)


__all__ = ["Analysis", "analyze", "build_report", "prepare", "shard_baseline", "shard_diagnosis",
           "shard_funnel", "shard_partials"]
