"""Additive partial aggregates over a shard of entities, and their merge.

A shard must hold every event of its users (sessions never span users). Each partial is a
small DataFrame of key columns plus value columns whose name says how they merge:
``n``, ``n_*`` and ``sum_*`` add, ``min_*`` take the minimum, ``max_*`` the maximum. Rates,
intervals, quantiles and decisions are derived only after merging (funnel.core.finalize).
"""

from __future__ import annotations

import polars as pl

from ..config import Config
from ..schema import CART_VALUE, ENTITY, SESSION, TS, USER
from .funnel import LEVEL, entity_run, shift_in_entity, step_time_col
from .sessions import BOUGHT_HERE
from .stats import BUCKET_UPPER, BUCKETS_PER_DECADE

Partials = dict[str, pl.DataFrame]
OTHER = "(other)"
EXIT = "(exit)"
NONE = "(none)"
CART_USERS = "cart_users"   # carts per user id (funnel_partials)
BOUGHT_OFF_CHAIN = "bought_off_chain"   # abandoned carts bought later in their own session, per exit level
ID_MASK = "[id]"            # a masked identifier (pages, segment values; the HTML's UUIDs)
REDACTED = "[redacted]"     # a masked URL parameter value


# Identifiers in the report (design.md: no user ids unless asked), in two steps. Per entity
# record, before counting, its own session and user id in its last page and segment values
# become ``ID_MASK`` (``own_ids_masked``: a literal replacement, ~0.1 s per 5M records). Then,
# on the merged partials' few distinct values, whatever looks like an identifier
# (``masked_partials``): that depends on the value alone, so masking after counting and adding
# up the rows that became alike equals masking every row first, at no cost per row.
_QUERY_VALUE = r"([?&;#][^=&;#?]*=)[^&;#?]*"   # a value in a URL query, fragment or matrix parameter
_ID_SHAPE = r"^[A-Za-z0-9_-]+$"
_PHONE = r"^(?:\+|%2[Bb])[0-9]{7,15}$"       # a phone number in international form, its + maybe URL-encoded
_PCT = r"%[0-9A-Fa-f]{2}"                      # a URL-encoded byte
# An e-mail address, its characters maybe URL-encoded (``jane.doe%2Bshop%40example.com``): the
# one pattern of the partials (polars' regex) and of the HTML's ``render.html.redact`` (Python's).
EMAIL = rf"(?:[\w.+-]|{_PCT})+(?:@|%40)(?:[\w.-]|{_PCT})+(?:\.|%2[Ee])[A-Za-z]{{2,}}"


def own_ids_masked(text: pl.Expr, cfg: Config) -> pl.Expr:
    """``text`` (a record's page or segment value) with the record's own session and user id
    replaced by ``ID_MASK`` wherever they occur in it (ids of 4 characters or more: a shorter
    one would mask parts of ordinary words and numbers), unless ``include_ids``."""
    text = text.cast(pl.String)
    if cfg.include_ids:
        return text
    for c in (SESSION, USER):
        own = pl.col(c).cast(pl.String)
        held = (own.str.len_chars() >= 4) & text.str.contains(own, literal=True)   # (replace takes no per-row pattern)
        text = pl.when(held.fill_null(False)).then(text.str.split(own).list.join(ID_MASK)).otherwise(text)
    return text


def _id_like(e: pl.Expr) -> pl.Expr:
    """A path segment or word that looks like an identifier: letters, digits, ``-`` and ``_``
    with at least 4 digits making up a third of it or more (``cust_00042``, ``sess-0004-9f8e7d``,
    a UUID, an order number; not ``wool-cardigan-1097``), a phone number in international form
    (``+358401234567``, ``%2B358401234567``), or one holding an e-mail address (``EMAIL``)."""
    digits = e.str.count_matches(r"[0-9]")
    return (e.str.contains(_ID_SHAPE) & (digits >= 4) & (digits * 3 >= e.str.len_chars())) \
        | e.str.contains(_PHONE) | e.str.contains(EMAIL)


def masked_page(page: pl.Expr) -> pl.Expr:
    """A page URL as the report shows it: every query, fragment and matrix parameter value
    ``REDACTED``, every path segment that looks like an id ``ID_MASK`` (``_id_like``)."""
    e = pl.element()
    return (page.cast(pl.String).str.replace_all(_QUERY_VALUE, "${1}" + REDACTED).str.split("/")
            .list.eval(pl.when(_id_like(e)).then(pl.lit(ID_MASK)).otherwise(e)).list.join("/"))


def masked_segment(value: pl.Expr) -> pl.Expr:
    """A segment value as the report shows it: ``ID_MASK`` when a word of it looks like an id
    (``newsletter-cust_00042``) or it holds an e-mail address."""
    e = pl.element()
    value = value.cast(pl.String)
    words = value.str.replace_all(r"[^\p{L}\p{N}_@.-]+", " ").str.split(" ")
    hit = words.list.eval(_id_like(e)).list.any() | value.str.contains(EMAIL)
    return pl.when(hit.fill_null(False)).then(pl.lit(ID_MASK)).otherwise(value)


def masked_partials(p: dict[str, pl.DataFrame], cfg: Config) -> dict[str, pl.DataFrame]:
    """The merged partials ``p`` with identifiers masked in their page and segment values
    (unless ``include_ids``), and the rows that became alike added up (``merge``)."""
    if cfg.include_ids:
        return p
    out = dict(p)
    for name, df in p.items():
        if name.startswith("segment:") or name == "diag:segments":
            masked = masked_segment(pl.col("value"))
        elif name == "after_exit":
            masked = pl.when(pl.col("kind") == "last_page").then(masked_page(pl.col("value"))).otherwise(pl.col("value"))
        else:
            continue
        keep = pl.col("value").is_in([NONE, OTHER, EXIT, ID_MASK])
        out[name] = merge([{name: df.with_columns(pl.when(keep).then(pl.col("value")).otherwise(masked).alias("value"))}])[name]
    return out


def _id(c: str, clean: bool) -> pl.Expr:
    """Id column ``c`` as the normaliser will read it (harmless text, outer blanks stripped,
    blank or a null spelled as text = missing: ``normalize.clean_string``); ``clean``: the raw
    value (see ``shard_key``)."""
    from .normalize import harmless, missing_to_null

    if clean:
        return pl.col(c).cast(pl.String)
    # (elementwise: the split's partitioned sink takes it as its key)
    return missing_to_null(harmless(pl.col(c).cast(pl.String)).str.strip_chars(), elementwise=True)


OWNER = "_owner"   # a session's owner (``session_owners``) joined onto its rows for the split
NO_OWNERS = pl.DataFrame(schema={"session": pl.String, "owner": pl.String, "users": pl.List(pl.String)})
NO_SHARED = pl.Series(USER, [], pl.String)   # no user that several shards may hold (shared_users)


def shard_key(names: list[str], k: int, clean: bool = False, owners: pl.DataFrame | None = None) -> pl.Expr:
    """Which of ``k`` user shards a raw row belongs to (UInt64 in ``[0, k)``): the hash of its
    user id, else (no user id) of its session id, as the normaliser will read them (harmless
    text, outer blanks stripped, blank = missing) so that every event of a user, or of a
    user-less session, lands in the same shard. A session in ``owners`` (``session_owners``:
    sessions with a user id on some rows only, or with several) goes whole to its owner's
    shard (looked up here, or read from an ``OWNER`` column joined by ``with_owners``: a
    partitioned sink needs an elementwise key). The one definition of the shard of a row.

    ``clean``: hash the raw ids (~4x cheaper). Only for a caller that then proves no id needs
    cleaning (``streaming._clean_shard`` declines otherwise): for clean ids both keys group
    the rows alike."""
    from ..schema import SESSION, USER

    ids = [_id(c, clean) for c in (USER, SESSION) if c in names]
    if OWNER in names:
        ids.insert(0, pl.col(OWNER))
    elif owners is not None and owners.height and SESSION in names:
        owner = _id(SESSION, clean).replace_strict(owners["session"], owners["owner"], default=None)
        ids.insert(0, owner)
    key = pl.coalesce(*ids) if ids else pl.lit(None, pl.String)
    return key.hash(7) % k


def session_owners(lf: pl.LazyFrame, clean: bool = False, buckets: int = 1) -> pl.DataFrame:
    """Sessions that a user-id shard key would split — rows with a user id and rows without, or
    several user ids — each with the user whose shard takes it whole: its smallest user id.
    (Anonymous browsing, then a login mid-session, is the usual case.) Columns ``session``,
    ``owner`` and ``users`` (the session's user ids: ``shared_users``); empty when there is no
    such session, the usual case, found by one cheap pass over the two id columns (64-bit
    hashes; a hash collision can only add a session here, which then still goes whole to one
    shard).

    That pass holds one hash-table entry per session; ``buckets`` > 1 bounds it for very large
    inputs: one pass per bucket of sessions (by hash), each holding 1/``buckets`` of them."""
    from ..schema import SESSION, USER

    names = lf.collect_schema().names()
    if SESSION not in names or USER not in names:
        return NO_OWNERS
    # Found on the raw ids with outer blanks stripped (blank = missing): ~3x cheaper than the
    # normaliser's full cleaning, which only the few sessions found are read with below. (It
    # misses only a session whose ids differ in inner control characters alone, and has rows
    # with and without a user id.) ``clean``: the raw ids as they are (see ``shard_key``).
    from .normalize import missing_to_null

    # (blank, or a null spelled as text: missing, as the normaliser reads it; elementwise forms,
    # which the streaming engine runs in bounded memory: ``replace`` held every row's ids)
    strip = (lambda e: pl.when(e != "").then(e)) if clean else \
        (lambda e: missing_to_null(e.str.strip_chars(), elementwise=True))
    ds = strip(pl.col(SESSION).cast(pl.String))
    du = strip(pl.col(USER).cast(pl.String))
    uh = pl.when(du.is_not_null()).then(du.hash(1))   # (the hash of a null is not null)
    ids = lf.select(ds.hash(0).alias("s"), uh.alias("u"), ds.is_not_null().alias("has_s")).filter("has_s")
    split = pl.concat([
        (ids if buckets <= 1 else ids.filter(pl.col("s") % buckets == b))
        .group_by("s")
        .agg(pl.col("u").null_count().alias("nulls"), pl.len().alias("n"),
             pl.col("u").min().alias("lo"), pl.col("u").max().alias("hi"))
        .filter(((pl.col("nulls") > 0) & (pl.col("nulls") < pl.col("n"))) | (pl.col("lo") != pl.col("hi")))
        .select("s")
        .collect(engine="streaming")
        for b in range(max(1, buckets))])
    if not split.height:
        return NO_OWNERS
    s, u = _id(SESSION, clean), _id(USER, clean)
    if clean:   # the raw ids: a blank one is missing too
        u = pl.when(u.str.contains(r"^\s*$")).then(None).otherwise(u)
    return (
        lf.filter(ds.hash(0).is_in(split["s"].implode()))
        .select(s.alias("session"), u.alias("owner"))
        .group_by("session")
        .agg(pl.col("owner").min(), pl.col("owner").drop_nulls().unique().sort().alias("users"))
        .filter(pl.col("owner").is_not_null())
        .collect(engine="streaming")
    )


def shared_users(owners: pl.DataFrame) -> pl.Series:
    """The users whose sessions user shards may spread over several shards: those in a session
    of ``owners`` (``session_owners``) that another user owns. Every other user's events are
    in one shard — each of their sessions goes to their own shard — so a shard counts them
    alone; these few are counted as a set (``user_tally``). Sorted, no nulls."""
    if not owners.height:
        return NO_SHARED
    return (owners.explode("users").filter(pl.col("users") != pl.col("owner"))
            .get_column("users").unique().sort().rename(USER))


def of_shared(shared: pl.Series) -> pl.Expr:
    """Whether a row's (or record's) user is one of the ``shared`` users (``shared_users``)."""
    return pl.col(USER).is_in(shared.implode()).fill_null(False)


def user_counts(shared: pl.Series | None = None) -> list[pl.Expr]:
    """Over a column of a shard's distinct users (``USER``, nulls dropped or not): how many
    are not in ``shared`` (``shared_users``) as ``n``, and those that are as a list, ``seen``
    (``tally`` reads both)."""
    u = pl.col(USER).drop_nulls()
    if shared is None or not shared.len():   # (the usual case)
        return [u.len().alias("n"), pl.lit(pl.Series([[]], dtype=pl.List(pl.String))).alias("seen")]
    seen = u.is_in(shared.implode())
    return [u.filter(~seen).len().alias("n"), u.filter(seen).cast(pl.String).implode().alias("seen")]


def tally(counts: pl.DataFrame) -> pl.DataFrame:
    """A shard's distinct users as a partial that merges by addition (``merge``) into the
    distinct users of all shards (``users_of``), from ``counts`` (the row of ``user_counts``):
    a row (null, ``n``) with how many are not shared (each of those is in this shard alone),
    and a row (user, 1) for each shared user ``seen`` here (those may be in other shards too)."""
    n, seen = counts.item(0, "n"), counts["seen"][0]
    return pl.DataFrame({USER: [None, *seen.to_list()], "n": [n] + [1] * seen.len()},
                        schema={USER: pl.String, "n": pl.Int64})


def user_tally(ev: pl.LazyFrame | pl.DataFrame, shared: pl.Series | None = None) -> pl.DataFrame:
    """The ``tally`` of the distinct users of a shard's usable events ``ev`` (``shared``: the
    users other shards may hold too, ``shared_users``)."""
    return tally(ev.lazy().select(pl.col(USER).unique()).select(user_counts(shared)).collect())


def users_of(tallies: list[pl.DataFrame] | pl.DataFrame) -> int:
    """The distinct users of shards whose ``user_tally`` are ``tallies`` (or their merge)."""
    t = tallies if isinstance(tallies, pl.DataFrame) else pl.concat(tallies, how="vertical_relaxed")
    if not t.height:
        return 0
    alone = t.filter(pl.col(USER).is_null())["n"].sum()
    return int(alone or 0) + t.filter(pl.col(USER).is_not_null())[USER].n_unique()


def with_owners(lf: pl.LazyFrame, owners: pl.DataFrame, clean: bool = False) -> pl.LazyFrame:
    """``lf`` with each row's session owner in ``OWNER`` (null for other sessions), in row order:
    for a partitioned sink, whose key must be elementwise (``shard_key`` then reads it)."""
    from ..schema import SESSION

    right = owners.lazy().select(pl.col("session").alias("_owned_session"), pl.col("owner").alias(OWNER))
    return lf.join(right, left_on=_id(SESSION, clean), right_on="_owned_session", how="left",
                   maintain_order="left").drop("_owned_session", strict=False)


def shard_rows(lf: pl.LazyFrame, i: int, k: int, clean: bool = False, owners: pl.DataFrame | None = None
               ) -> pl.LazyFrame:
    """The rows of user shard ``i`` of ``k`` (``shard_key``, ``owners`` from
    ``session_owners``): shards can be analysed alone and their partials merged. Applied to raw
    rows before normalising."""
    if k <= 1:
        return lf
    return lf.filter(shard_key(lf.collect_schema().names(), k, clean, owners) == i)


IN_LOG = "_in_log"   # on events joined with the sessions log (api.with_sessions_log): their session is in it


def log_matches(ev: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """``sessions_log``: how many entities of the events ``ev`` have their session in the
    sessions log (``n_matched``; an entity is in one shard, so shards add), when one is joined."""
    if IN_LOG not in ev.collect_schema().names():
        return {}
    return {"sessions_log": ev.filter(pl.col(IN_LOG).fill_null(False))
            .select(pl.col(ENTITY).n_unique().cast(pl.Int64).alias("n_matched"))}


def segment_columns(available: list[str], cfg: Config) -> list[str]:
    """The columns broken down as segments: ``--segment``/[segments] columns when given, else
    the usual low-cardinality attributes (device, channel, country, ...) that are present."""
    from ..schema import DEFAULT_SEGMENT_CANDIDATES

    cands = cfg.segments or DEFAULT_SEGMENT_CANDIDATES
    return [a for a in cands if a in available]


def _value_cols(df: pl.DataFrame) -> list[str]:
    # A bare ``n`` (the count most partials carry) adds like ``n_*``.
    return [c for c in df.columns if c == "n" or c.startswith(("n_", "sum_", "min_", "max_"))]


def merge(parts: list[Partials]) -> Partials:
    """Merge shard partials: concatenate per name and re-aggregate by key columns."""
    out: Partials = {}
    names = sorted({n for p in parts for n in p})
    for name in names:
        frames = [p[name] for p in parts if name in p]
        df = pl.concat(frames, how="vertical_relaxed")
        vals = _value_cols(df)
        keys = [c for c in df.columns if c not in vals]
        aggs = []
        for v in vals:
            if v.startswith("min_"):
                aggs.append(pl.col(v).min())
            elif v.startswith("max_"):
                aggs.append(pl.col(v).max())
            else:
                aggs.append(pl.col(v).sum())
        if keys:
            df = df.group_by(keys).agg(aggs).sort(keys, nulls_last=True)
        else:
            df = df.select(aggs)
        out[name] = df
    return out


def bucket_expr(seconds: pl.Expr) -> pl.Expr:
    """Index into stats.BUCKET_UPPER for a duration in seconds."""
    n = len(BUCKET_UPPER) - 1
    return (
        (seconds.clip(lower_bound=1e-9).log10() * BUCKETS_PER_DECADE).ceil()
        .clip(0, n).cast(pl.Int32)
    )


def bucket_counts(df: pl.DataFrame, n: str = "n", **keys: object
                  ) -> tuple[list[int], list[float | None], list[float | None]]:
    """(count, smallest, largest) per ``stats.BUCKET_UPPER`` bucket of the rows of the merged
    ``histogram`` partial ``df`` that have ``keys`` (e.g. ``step=2``)."""
    for key, v in keys.items():
        df = df.filter(pl.col(key) == v)
    df = df.group_by("bucket").agg(pl.col(n).sum(), pl.col("min_seconds").min(), pl.col("max_seconds").max())
    counts, lows, highs = [0] * len(BUCKET_UPPER), [None] * len(BUCKET_UPPER), [None] * len(BUCKET_UPPER)
    for b, c, lo, hi in df.select("bucket", n, "min_seconds", "max_seconds").iter_rows():
        counts[int(b)], lows[int(b)], highs[int(b)] = int(c), lo, hi
    return counts, lows, highs


def _seconds(a: str, b: str) -> pl.Expr:
    return (pl.col(b) - pl.col(a)).dt.total_microseconds() / 1e6


SECONDS = "_seconds"


def histogram(frame: pl.LazyFrame, n: str = "n") -> pl.LazyFrame:
    """A duration histogram partial of ``frame`` (``step`` and the duration in ``SECONDS``):
    per (step, bucket) the count ``n`` and the smallest and largest duration in the bucket
    (``stats.histogram_quantile`` reads them)."""
    return (frame.drop_nulls(SECONDS).with_columns(bucket_expr(pl.col(SECONDS)).alias("bucket"))
            .group_by("step", "bucket")
            .agg(pl.len().cast(pl.Int64).alias(n), pl.col(SECONDS).min().alias("min_seconds"),
                 pl.col(SECONDS).max().alias("max_seconds")))


def funnel_partials(rec: pl.LazyFrame, cfg: Config, attrs: list[str]) -> dict[str, pl.LazyFrame]:
    """Partials that need only the per-entity records (with ``reason`` from diagnosis)."""
    k = len(cfg.steps)
    inc = rec.filter(~pl.col("_excluded"))
    out: dict[str, pl.LazyFrame] = {}
    out["totals"] = rec.select(
        pl.len().alias("n_entities"),
        pl.col("_excluded").sum().alias("n_excluded"),
        pl.col("n_events").sum().alias("n_events"),
        pl.col("first_ts").min().alias("min_ts"),
        pl.col("last_ts").max().alias("max_ts"),
    )
    out["levels"] = inc.group_by(LEVEL).agg(pl.len().alias("n"))
    # Time from step k-1 to step k in the best attempt.
    gaps = [
        inc.filter(pl.col(LEVEL) > i)
        .select(pl.lit(i, pl.Int32).alias("step"), _seconds(step_time_col(i - 1), step_time_col(i)).alias(SECONDS))
        for i in range(1, k)
    ]
    # (an 'any'-order funnel may reach a step without the one before it: no time between them)
    out["step_time"] = histogram(pl.concat(gaps))
    # Dwell at the exit step for abandoners (exit step -> last event of the entity).
    carts = inc.filter(pl.col(LEVEL) >= 1)
    aband = carts.filter(pl.col(LEVEL) < k)
    out["abandoner_dwell"] = histogram(aband.select((pl.col(LEVEL) - 1).alias("step"),
                                                    _seconds("exit_ts", "last_ts").alias(SECONDS)))
    value = pl.col(CART_VALUE).fill_null(0.0)
    out["abandonment"] = (
        carts.with_columns(pl.col("reason").fill_null(NONE), pl.col("recovered").fill_null(False))
        .group_by(LEVEL, "reason", "recovered")
        .agg(pl.len().alias("n"), value.sum().alias("sum_value"))
    )
    out["currency"] = carts.group_by(pl.col("currency").fill_null(NONE)).agg(pl.len().alias("n"))
    # Carts per user id, for the placeholder-id warning (finalize.placeholder_warning): one row
    # per user with a cart, not small like the others, but exact whatever the shards (a cart
    # is in one shard; a user's carts in several add up) at ~0.3 s per 3M rows merged.
    out[CART_USERS] = carts.filter(pl.col(USER).is_not_null()).group_by(USER).agg(pl.len().alias("n"))
    if BOUGHT_HERE in rec.collect_schema().names():   # (with_recovery's; per cart, so it adds up over shards)
        out[BOUGHT_OFF_CHAIN] = aband.filter(pl.col(BOUGHT_HERE)).group_by(LEVEL).agg(pl.len().alias("n"))
    for a in segment_columns(attrs, cfg):
        out[f"segment:{a}"] = (
            inc.group_by(own_ids_masked(pl.col(a), cfg).fill_null(NONE).alias("value"), LEVEL)
            .agg(pl.len().alias("n"))
        )
    week = pl.col("first_ts").dt.strftime("%G-W%V")
    out["trend"] = (
        inc.group_by(week.alias("week"), LEVEL, pl.col("reason").fill_null(NONE))
        .agg(pl.len().alias("n"))
    )
    out["after_exit"] = pl.concat([
        aband.group_by((pl.col(LEVEL) - 1).alias("step"), pl.lit(kind).alias("kind"),
                       (own_ids_masked(pl.col(col), cfg) if col == "last_page" else pl.col(col).cast(pl.String))
                       .fill_null(EXIT if col == "next_event" else NONE).alias("value"))
        .agg(pl.len().alias("n"))
        for kind, col in (("next_event", "next_event"), ("last_event", "last_event"),
                          ("last_page", "last_page"))
    ])
    return out


def path_partials(ev: pl.LazyFrame, rec: pl.LazyFrame, cfg: Config) -> dict[str, pl.LazyFrame]:
    """Transitions between steps (with backtracks and exits) and path variants."""
    from ..schema import STEP

    names = list(cfg.step_names)
    k = len(names)
    # One sort puts each entity's step events together in (time, step) order; the row above /
    # below in the entity is then a guarded plain shift (``shift_in_entity``).
    st = (
        ev.filter(pl.col(STEP).is_not_null())
        .select(ENTITY, TS, STEP)
        .sort(ENTITY, TS, STEP)
        .with_columns(entity_run())
        .filter(pl.col(STEP) != shift_in_entity(pl.col(STEP)).fill_null(-1))
    )
    name = pl.col(STEP).replace_strict(list(range(k)), names, return_dtype=pl.String)
    seq = st.with_columns(name.alias("name"), shift_in_entity(pl.col(STEP), -1).alias("_next"))
    trans = (
        seq.with_columns(
            pl.when(pl.col("_next").is_null())
            .then(pl.when(pl.col(STEP) == k - 1).then(pl.lit(names[-1])).otherwise(pl.lit(EXIT)))
            .otherwise(pl.col("_next").replace_strict(list(range(k)), names, return_dtype=pl.String))
            .alias("target")
        )
        .filter(~((pl.col("_next").is_null()) & (pl.col(STEP) == k - 1)))
        .group_by(pl.col("name").alias("source"), "target")
        .agg(pl.len().alias("n"))
    )
    variants = (
        seq.group_by(ENTITY).agg(pl.col("name").str.join(" > ").alias("path"))
        .join(rec.select(ENTITY, (pl.col(LEVEL) >= k).alias("purchased"), "_excluded"), on=ENTITY)
        .filter(~pl.col("_excluded"))
        .group_by("path", "purchased").agg(pl.len().alias("n"))
    )
    return {"transitions": trans, "variants": variants}
