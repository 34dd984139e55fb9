"""Funnel-only analysis on a narrow projection of the input.

The full analysis collects every column of the usable events (diagnosis and paths need them).
Counting the funnel does not: the input is read and normalised once into a narrow frame
(entity, time, step, user, cart value, currency and a row hash for exact duplicates), the
rejected rows are kept aside, and the per-entity aggregate, the totals and the step events are
computed from that. The numbers are those of ``api.shard_funnel`` on the materialised events
(tests/test_funnel_only.py); inputs that need the full row-level treatment — sessions to build
from inactivity, bot-like sessions over the cap, exclusion events — return None and the caller
takes the materialising path.

Clean typed input (Parquet exports with nothing to normalise, the usual case at scale) takes a
faster route, ``_clean_shard``: it proves with a few aggregates that normalising would change
nothing and then counts the funnel from a frame of the few columns used.

Large inputs are read in user shards (``_shards``): 20M rows a shard on the clean route, each a
filtered scan of Parquet input; 10M on the row-level route, split once to temporary disk
(``shard_count``).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import polars as pl

from .config import Config
from .core.normalize import DETAIL, needs_cleaning, normalize, row_hash
from .core.partials import tally, user_counts
from .core.sessions import KEY2, entity_keys, funnel_base, map_steps, shared_key
from .schema import (CART_VALUE, CURRENCY, ENTITY, EVENT, LOAD_MS, REJECT, ROW, SESSION, SHIPPING,
                     SOURCE_FILE, STEP, TS, USER)

if TYPE_CHECKING:  # pragma: no cover
    from .api import Analysis, Progress

# What the funnel and the reject rules read; other columns are never touched.
_COLUMNS = (TS, EVENT, SESSION, USER, CART_VALUE, CURRENCY, SHIPPING, LOAD_MS)


SHARD_ROWS = 10_000_000        # funnel-only: rows per shard (the narrow frame, ~2 GB)
CLEAN_SHARD_ROWS = 20_000_000  # funnel-only on clean typed input: ~50 bytes a row held (~3.0 GB peak)


def shard_count(loaded, rows_per_shard: int | None = None) -> int:
    """How many user shards of ``rows_per_shard`` (default ``SHARD_ROWS``) rows to read the
    input in (1 for ordinary logs)."""
    return max(1, -(-loaded.rows // (rows_per_shard or SHARD_ROWS)))


def analyze_funnel_only(sources: list[str], cfg: Config, say: Progress,
                        shards: int | None = None, tables: bool = True,
                        sinks: dict | None = None) -> Analysis | None:
    """The funnel-only analysis, or None when the input needs the row-level path.

    Large inputs are read in ``shards`` user shards (``_shards``): a user's events (or, without
    a user id, a session's; a session is never split) stay in one shard, so the shards'
    partials merge by addition to the one-pass result (tests/test_funnel_only.py). Without
    ``tables`` each shard's rejected rows are only counted (``Analysis.rejects`` is empty);
    with ``rejects`` in ``sinks`` (a path; taken out of it) each shard's are kept sorted on the
    temporary disk and merged straight into that file at the end (``api._merged``).
    """
    from . import api
    from .io.load import load_events

    if cfg.exclude:
        return None
    loaded = load_events(sources, cfg)
    sinks = {} if sinks is None else sinks
    with contextlib.ExitStack() as stack:
        keep = None
        if "rejects" in sinks:
            tmp, n = stack.enter_context(api.shard_dir()), [0]

            def keep(rej: pl.DataFrame) -> str:   # one shard's rejected rows, sorted, to a file
                n[0] += 1
                path = os.path.join(tmp, f"rejects-{n[0]:05d}.arrow")
                rej.sort(SOURCE_FILE, ROW).write_ipc(path, compression="lz4")
                return path
        got = _funnel_only(loaded, cfg, say, shards, tables, keep)
        if got is None:
            return None
        report, kept, counts = got
        rejects = pl.DataFrame()
        if keep is not None:
            from .io.writers import write_frame

            rej = api._merged(kept, [SOURCE_FILE, ROW]).collect()
            write_frame(sinks.pop("rejects"), api.reject_table(_whole_rows(rej, loaded, cfg)))
        elif tables:
            rejects = api.reject_table(_whole_rows(pl.concat(kept, how="diagonal_relaxed"), loaded, cfg))
    return api.Analysis(report=report, carts=pl.DataFrame(), rejects=rejects, counts=counts)


def _whole_rows(rej: pl.DataFrame, loaded, cfg: Config) -> pl.DataFrame:
    """The rejected rows ``rej`` (of every shard) with every value the full analysis gives them:
    the funnel-only routes read only the funnel's columns (``_COLUMNS``) and keep fewer, so
    for ``--rejects`` the rejected rows alone are read again with the columns the full
    analysis reads (``api.project_input``), normalised as it normalises them (one more
    filtered scan of the input, only when some rows were rejected); causes and details stay
    ``rej``'s. ``api.reject_table`` then lays them out as every route does."""
    from . import api

    if not rej.height or SOURCE_FILE not in rej.columns or ROW not in rej.columns:
        return rej
    key = [SOURCE_FILE, ROW]
    wide = api.project_input(loaded.lf, cfg)
    rows = wide.join(rej.lazy().select(key).unique(), on=key, how="semi")
    rows = normalize(rows, cfg.timezone, decimals=loaded.decimals, names=loaded.names)
    have = rows.collect_schema().names()
    more = [c for c in have if not c.startswith("_") or c == "_extra"]
    try:
        got = rows.select(*key, *more).unique(key, keep="first", maintain_order=True).collect(engine="streaming")
    except api.READ_ERRORS as exc:
        raise api.read_error(loaded, exc) from None
    return rej.drop(more, strict=False).join(got, on=key, how="left", coalesce=True)


def _funnel_only(loaded, cfg: Config, say: Progress, shards: int | None, tables: bool, keep):
    """(report, each shard's kept rejected rows, reject counts) of ``analyze_funnel_only``, or None."""
    from . import api
    from .core import partials as parts

    clean = _typed_input(_row_level_rows(loaded, cfg))   # decided before any split: no re-split for text input
    results = (clean and _shards(loaded, cfg, say, True, shards or shard_count(loaded, CLEAN_SHARD_ROWS), tables,
                                 keep)) \
        or _shards(loaded, cfg, say, False, shards or shard_count(loaded), tables, keep)
    if results is None:
        return None
    if not sum(r[1]["usable"] for r in results):
        return None   # the row-level path says why nothing is usable
    p = api.merge_funnel_only([r[0] for r in results], cfg)
    rows, users = sum(r[1]["rows"] for r in results), parts.users_of([r[1]["users"] for r in results])
    # (no session is capped here: a shard with a session over the cap takes the materialising path)
    counts = pl.concat([r[3] for r in results])
    inp = api._summary(api.source_of(loaded), counts, int(rows), users, False, None, p)
    return api.build_report(p, cfg, inp, [], funnel_only=True), [r[2] for r in results], counts


IDS = "ids"     # _clean_shard declined: an id needs cleaning (the raw-id shards are not user shards)
INPUT = "input"  # ... the input's column types need the row-level rules
ROWS = "rows"    # ... some rows of this shard need them (values to clean, rows to sessionize, the cap)
LARGE = "large"  # ... as ROWS, in a shard over SHARD_ROWS rows: the whole input takes the row-level route


_IDS = (SESSION, USER)
_TEXT = (EVENT, SESSION, USER, CURRENCY)   # the text columns the clean route reads


def _typed_input(rows: pl.LazyFrame) -> bool:
    """The input's columns are typed (a Datetime or epoch-number timestamp, string or integer
    ids, string event and currency, numeric values), so the clean route can apply; text columns
    need the row-level rules. Decided by the schema alone. (The route reads the timestamp and
    integer ids as ``normalize`` does.)"""
    schema = rows.collect_schema()
    kind = lambda c: schema.get(c, pl.Null)   # (a missing column is all null)
    return (isinstance(kind(TS), pl.Datetime) or kind(TS).is_numeric()) \
        and all(kind(c) in (pl.String, pl.Null) or (c in _IDS and kind(c).is_integer())
                for c in _TEXT) \
        and all(kind(c).is_numeric() or kind(c) == pl.Null for c in (CART_VALUE, SHIPPING, LOAD_MS))


def _row_key() -> pl.Expr:
    """A 64-bit key of (entity key, time, event) for the clean route's duplicate test: equal rows
    have equal keys, so as many keys as rows proves that no two rows are alike; a repeat (or a
    hash collision) only sends the test on to whole rows. Three hashes XORed: ~2x cheaper to
    count than the hash of a struct."""
    return pl.col(ENTITY) ^ pl.col(TS).dt.epoch("us").hash(11) ^ pl.col(EVENT).hash(12)


def _checks(lf: pl.LazyFrame, masked: bool, shared: pl.Series | None = None) -> tuple:
    """The clean route's aggregates over the narrow frame ``lf`` (in memory), computed together:
    (totals, entities, distinct users, events, currencies, the step events). ``masked``: some
    rows are rejected (``_rejected``); every aggregate but the row counts is then taken over
    the usable rows, masked rather than filtered (no copy of the frame). Each distinct-value
    frame holds the count ``n`` and whether a value needs cleaning; the users' count leaves out
    the ``shared`` users, listed in ``seen`` (``partials.user_counts``)."""
    ok = ~pl.col("_rejected")
    use = (lambda x: pl.when(ok).then(x)) if masked else (lambda x: x)
    key = use(_row_key())
    dirty = lambda c: needs_cleaning(pl.col(c)).any().alias(f"dirty_{c}")
    totals = lf.select(
        pl.len().alias("rows"),
        pl.col("_rejected").sum().alias("rejected"),
        pl.col("_unsessioned").any().alias("unsessioned"),
        use(pl.col("_dirty_id")).any().alias("dirty_id"),
        (key.drop_nulls() if masked else key).n_unique().alias("keys"),
        use(pl.col(TS)).min().alias("min_ts"), use(pl.col(TS)).max().alias("max_ts"),
    )
    entities = lf.group_by(ENTITY).agg((ok.sum() if masked else pl.len()).alias("n"), shared_key().alias("shared")) \
        .select((pl.col("n") > 0).sum().alias("entities"), pl.col("n").max().alias("most"), pl.col("shared").any())
    counts = lambda c: user_counts(shared) if c == USER else [pl.col(c).drop_nulls().len().alias("n")]
    distinct = [lf.select(use(pl.col(c)).alias(c).unique()).select(*counts(c), dirty(c))
                for c in (USER, EVENT, CURRENCY)]
    steps = lf.filter(pl.col(STEP).is_not_null() & ok if masked else pl.col(STEP).is_not_null()).select(ENTITY, TS, STEP)
    r, e, u, ev, cur, st = pl.collect_all([totals, entities, *distinct, steps], engine="streaming")
    return r.row(0, named=True), e.row(0, named=True), u, ev, cur, st


def _clean_shard(raw: pl.LazyFrame, loaded, cfg: Config, shared: pl.Series | None = None):
    """The fast path for typed input with nothing to clean: (partials, totals, rejected rows)
    of the shard ``raw`` (``_row_level_rows`` of a user shard), or why it declines: ``IDS``,
    ``INPUT``, ``ROWS`` (then ``_shard`` runs) or ``LARGE``.

    A few aggregates over every row prove the shard clean — a typed timestamp, no string that
    ``normalize`` would change (checked on the distinct values), a session id on every usable
    row, and no session over the cap. Then the raw values are the normalised ones, so the funnel
    is counted without normalising a single row: the per-entity aggregate is computed only for
    entities with a step event (every other entity is at level 0 and adds only to the counts).
    Rows that meet a reject rule (``normalize.typed``, the rules ``normalize`` applies) and
    exact duplicates (a cheap (entity, time, event) key first; only if that repeats, whole rows
    as ``_shard`` compares them) are handled here too, the usual dirt of real exports: the
    rejected rows are left out of the counts, and only they are read again and normalised, for
    their causes and the rejected-row table (``_set_aside``).
    Entities are keyed by a 64-bit hash of the id (``entity_keys``; a second hash proves that
    no two ids share a key, else the shard declines with ``ROWS``): integer group-bys, joins
    and sorts instead of string ones. The shard is read once, into a frame of the few columns
    used (~50 bytes a row).
    The result equals ``_shard``'s (tests/test_funnel_only.py).
    """
    from . import api
    from .core.normalize import ensure_columns, typed

    if not _typed_input(raw):
        return INPUT   # text columns: the row-level rules do real work
    lf = ensure_columns(raw.select(*(c for c in _COLUMNS if c in raw.collect_schema().names())))
    # integer ids read as text, as ``normalize`` reads them (before its reject rules); so is a
    # text column with no value at all (a Parquet column of nulls, or one the input lacks)
    lf = lf.with_columns(pl.col(c).cast(pl.String) for c, t in lf.collect_schema().items()
                         if c in _TEXT and (t == pl.Null or c in _IDS and t.is_integer()))
    lf, rules = typed(lf, cfg.timezone, decimals=loaded.decimals)
    # 'empty_row' needs every column blank, so it implies 'missing_timestamp': skip its scan.
    rejected = pl.any_horizontal([cond for cause, cond in rules if cause != "empty_row"])
    lf = map_steps(lf.with_columns(pl.col("_ts_parsed").alias(TS),
                                   pl.col(f"_num_{CART_VALUE}").alias(CART_VALUE)), cfg)
    # The shard is read once, into the few columns the checks and counts use (~50 bytes a
    # row; the entity as its two hashes); the queries below then run on memory instead of each
    # re-reading the input.
    e1, e2 = entity_keys(pl.col(ENTITY))
    try:
        lf = lf.select(e1.alias(ENTITY), e2.alias(KEY2), TS, STEP, EVENT, USER, CART_VALUE, CURRENCY,
                       rejected.alias("_rejected"), (pl.col(SESSION).is_null() & ~rejected).alias("_unsessioned"),
                       needs_cleaning(pl.col(ENTITY)).alias("_dirty_id")).collect(engine="streaming").lazy()
    except api.READ_ERRORS as exc:
        raise api.read_error(loaded, exc) from None
    masked = lf.select(pl.col("_rejected").any()).collect().item()
    r, e, u, ev, cur, st = _checks(lf, masked, shared)   # (the usable rows' ids, values and counts)
    n_rows, n_rejected = r["rows"], r["rejected"]
    needs_rows = ROWS if n_rows <= SHARD_ROWS else LARGE   # (the row-level rules hold the whole shard)
    if r["dirty_id"] or u.item(0, f"dirty_{USER}"):
        return IDS
    if r["unsessioned"] or ev.item(0, 1) or cur.item(0, 1) or (e["most"] or 0) > cfg.max_events_per_session \
            or e["shared"]:   # two ids share a key (odds ~1e-7 at 2.5M ids): the row-level path keys by id
        return needs_rows
    alike = pl.Series(TS, [], dtype=pl.Int64)   # when usable rows share a key: the times they share
    if r["keys"] != n_rows - n_rejected:
        key = _row_key().alias("_k")
        usable = lf.filter(~pl.col("_rejected")) if masked else lf
        repeats = usable.group_by(key).len().filter(pl.col("len") > 1).collect(engine="streaming")["_k"]
        alike = usable.filter(key.is_in(repeats.implode())).select(pl.col(TS).dt.epoch("us").unique()).collect()[TS]
    aside = _set_aside(raw, loaded, cfg, n_rejected, alike)
    if aside is None:
        return needs_rows
    # (in memory, not streaming, and an is_in rather than a semi join: ~1.4 s -> 0.9 s at 19.4M rows)
    cands = pl.col(ENTITY).is_in(st[ENTITY].unique().implode())
    base = funnel_base(lf.filter(cands & ~pl.col("_rejected") if masked else cands)).collect()
    p = api.shard_funnel(pl.LazyFrame(), cfg, base=base.lazy(), steps=st.lazy(), shared=shared)
    # Entities without a step event are absent from ``base``: they count at level 0. The
    # events are the usable rows but their exact duplicates (as ``_shard`` counts them).
    t = p["totals"]
    p["totals"] = t.with_columns(
        pl.lit(e["entities"]).cast(t["n_entities"].dtype).alias("n_entities"),
        pl.lit(n_rows - n_rejected - aside[1]).cast(t["n_events"].dtype).alias("n_events"),
        pl.lit(r["min_ts"]).cast(t["min_ts"].dtype).alias("min_ts"),
        pl.lit(r["max_ts"]).cast(t["max_ts"].dtype).alias("max_ts"),
    )
    lv = p["levels"]
    rest = pl.DataFrame({lv.columns[0]: [0], "n": [e["entities"] - base.height]}, schema=lv.schema)
    p["levels"] = pl.concat([lv, rest]).group_by(lv.columns[0]).agg(pl.col("n").sum()).filter(pl.col("n") > 0)
    tot = {"rows": n_rows, "usable": n_rows - n_rejected, "users": tally(u)}
    return p, tot, aside[0]


def _set_aside(raw: pl.LazyFrame, loaded, cfg: Config, n_rejected: int, alike: pl.Series
               ) -> tuple[pl.DataFrame, int] | None:
    """The clean route's rejected rows of the shard ``raw``, as ``_shard`` gives them, and how
    many are exact duplicates; None if normalising rejects other rows than the clean route's
    rules found (it cannot, on clean strings: the shard then declines, to stay exact).

    One pass over ``raw`` picks the ``n_rejected`` rows that meet a reject rule, and the usable
    rows at the times in ``alike`` (µs; where usable rows share an (entity, time, event) key,
    so where any exact duplicate is), in input order. Only the rejected rows are normalised
    (``_narrow``; every rule looks at its row alone); of the others, the later ones of rows
    alike in every column (as ``normalize.mark_duplicates`` takes them) are the duplicates."""
    from . import api
    from .core.normalize import ensure_columns, typed

    if not n_rejected and not alike.len():
        return _narrow(raw.clear(), loaded, cfg)[1].drop("_h").collect(), 0   # the rejects' columns, no rows
    names = raw.collect_schema().names()
    typed_rows, rules = typed(ensure_columns(raw), cfg.timezone, decimals=loaded.decimals)
    rej = pl.any_horizontal([cond for _, cond in rules])
    at = pl.col("_ts_parsed").dt.epoch("us").is_in(alike.implode()).fill_null(False)
    try:
        picked = typed_rows.filter(rej | at).select(*names, rej.alias("_rej")).collect(engine="streaming")
    except api.READ_ERRORS as exc:
        raise api.read_error(loaded, exc) from None
    aside = [_narrow(picked.lazy().filter("_rej").drop("_rej"), loaded, cfg)[1].drop("_h").collect()]
    if aside[0].height != n_rejected or aside[0][REJECT].null_count():
        return None
    dups = picked.filter(~pl.col("_rej")).drop("_rej").filter(~row_hash(names).is_first_distinct())
    if dups.height:
        aside.append(_narrow(dups.lazy(), loaded, cfg)[0].with_columns(pl.lit("duplicate").alias(REJECT)).collect())
    return pl.concat(aside, how="diagonal_relaxed"), dups.height


def _row_level_rows(loaded, cfg: Config) -> pl.LazyFrame:
    """The input rows as the row-level path reads them: the funnel's columns, the bookkeeping
    columns and a hash of the others (``project_input``; exact duplicates compare whole rows)."""
    from . import api

    return api.project_input(loaded.lf, cfg, _COLUMNS)


def _shards(loaded, cfg: Config, say: Progress, clean: bool, k: int, tables: bool = True,
            keep=None) -> list | None:
    """Every shard's (partials, totals, rejects, reject counts) by the clean path (``clean``) or
    the row-level path, or None as soon as a shard declines. Without ``tables`` the rejected
    rows are dropped once counted (``api.reject_counts``); ``keep`` (a callable) stores them
    instead and what it returns takes their place.

    With ``k > 1`` the shards are ``api.user_shards``: filtered scans of Parquet input, else
    the input split once to a temporary directory (removed at the end, also on error)."""
    from . import api

    rows = _row_level_rows(loaded, cfg)   # the clean route keeps the bookkeeping too: see below
    shared = None   # the users that several shards may hold (api.user_shards)

    def count(part: pl.LazyFrame):
        if not clean:
            return _shard(part, loaded, cfg, shared)
        got = _clean_shard(part, loaded, cfg, shared)
        if got in (IDS, INPUT, LARGE):   # the whole input takes the row-level route
            return got
        # Some rows of this shard need the row-level rules: run them on it (it is no larger
        # than the row-level route's shards). Its users are whole (the raw-id shards equal the
        # user shards while no id needs cleaning, checked in every shard: one that does sends
        # the whole input to the row-level route).
        return _shard(part, loaded, cfg, shared) if got == ROWS else got

    def each(parts_: list[pl.LazyFrame]) -> list | None:
        results = []
        for i, part in enumerate(parts_):
            say("counting the funnel" if k <= 1 else f"counting the funnel (shard {i + 1} of {k})")
            got = count(part)
            if got is None or isinstance(got, str):
                return None
            if got[1]["rows"]:   # an empty shard adds nothing
                kept = keep(got[2]) if keep is not None else got[2] if tables else got[2].clear()
                results.append((got[0], got[1], kept, api.reject_counts(got[2], cfg)))
            del got
        return results

    if k <= 1:
        return each([rows])
    with contextlib.ExitStack() as stack:   # (the temporary directory only if the input is split)
        tmp = lambda: stack.enter_context(api.shard_dir())
        # the clean path hashes raw ids: it then proves that no id needed cleaning, or declines
        split, shared = api.user_shards(rows, loaded, k, tmp, say, clean_ids=clean or None,
                                        whole_sessions=api.whole_entities(cfg))
        return each([part for part, _ in split])


def _narrow(rows: pl.LazyFrame, loaded, cfg: Config) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """A shard's rows (``_row_level_rows`` of ``loaded``) normalised (lazy), and the narrow frame of it."""
    lf = map_steps(normalize(rows, cfg.timezone, decimals=loaded.decimals, names=loaded.names), cfg)
    # Normalising is the costly part: do it once, keep only what the counts need (narrow),
    # and run every aggregate on that.
    have = lf.collect_schema().names()
    kept = [c for c in (SOURCE_FILE, ROW, DETAIL, EVENT) if c in have]
    narrow = lf.select(ENTITY, TS, STEP, USER, SESSION, CART_VALUE, CURRENCY, REJECT, *kept,
                       row_hash(have).alias("_h"))
    return lf, narrow


def _shard(rows: pl.LazyFrame, loaded, cfg: Config, shared: pl.Series | None = None):
    """(partials, totals, rejected rows) of the shard ``rows`` (``_row_level_rows`` of a user
    shard; ``shared``: the users other shards may hold too); None: needs the materialising
    path."""
    from . import api

    lf, narrow = _narrow(rows, loaded, cfg)
    usable = pl.col(REJECT).is_null()
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
        (pl.col(SESSION).is_null() & pl.col(USER).is_not_null()).sum().alias("unsessioned"),
    )
    steps = df.lazy().filter(pl.col(STEP).is_not_null()).select(ENTITY, TS, STEP)
    users = df.lazy().select(pl.col(USER).unique()).select(user_counts(shared))
    ent, tot, st, u = pl.collect_all([per_entity, overall, steps, users])
    tot = tot.row(0, named=True) | {"users": tally(u)}
    if tot["unsessioned"] or int(ent["n_events"].max() or 0) > cfg.max_events_per_session:
        return None
    dups = int(tot["usable"] - tot["distinct"])
    if dups:  # name the duplicate rows too (rare): one more pass over the usable rows
        dup_rows = lf.filter(usable).filter(~row_hash(lf.collect_schema().names()).is_first_distinct()) \
            .with_columns(pl.lit("duplicate").alias(REJECT)).collect()
        rej = pl.concat([rej, dup_rows], how="diagonal_relaxed")
    p = api.shard_funnel(pl.LazyFrame(), cfg, base=ent.lazy(), steps=st.lazy(), shared=shared)
    # Events per entity above count duplicates; the total must not (as in the row-level path).
    p["totals"] = p["totals"].with_columns(pl.lit(tot["distinct"]).cast(p["totals"]["n_events"].dtype).alias("n_events"))
    return p, tot, rej
