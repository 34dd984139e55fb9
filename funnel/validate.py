"""`funnel validate` and `funnel init`: describe what was detected in the input."""

from __future__ import annotations

from typing import Any

import polars as pl

from .config import Config, toml_value
from .core.normalize import REJECT_CAUSES
from .schema import EVENT, REJECT, ROLES, SESSION, USER


def _facts(ev: pl.DataFrame, cfg: Config, shared: pl.Series | None = None,
           logged: pl.Series | None = None) -> dict[str, Any]:
    """What ``describe_input`` reports of usable events ``ev``, in parts that merge across user
    shards (counts add; sessions too, as a session is in one shard; users as a
    ``partials.user_tally``, ``shared``: the users other shards may hold too; ``logged``: the
    session ids of the sessions log, whose sessions of ``ev`` are counted)."""
    from . import api
    from .core.partials import user_tally

    return {
        "usable": ev.height,
        "bounds": api.time_bounds(ev),
        "sessions": int(ev[SESSION].n_unique()) if ev.height else 0,
        "in_log": int(ev[SESSION].filter(ev[SESSION].is_in(logged.implode())).n_unique())
        if logged is not None and ev.height else 0,
        "users": user_tally(ev, shared),
        "per_event": ev.group_by(EVENT).agg(pl.len().alias("n")),
        "steps": {s.name: ev.filter(pl.col(EVENT).is_in(list(s.events))).height for s in cfg.steps},
        # events with a time of day (local midnight is what a date without a time reads as)
        "timed": ev.select(api.timed(cfg.timezone).sum()).item()
        if ev.height else 0,
    }


def _read_as_missing(loaded: Any) -> list[dict[str, Any]]:
    """Per column role, the rows whose value spells a null (``normalize.TEXT_NULLS`` in text,
    ``NULL_MARKER`` in numbers: NULL, None, undefined, NaN, …), which the normaliser reads as
    missing: one more pass over the input's text columns (none when every column is typed)."""
    from . import api
    from .core.normalize import _STRING_COLS, NULL_MARKER, spelled_null
    from .schema import CART_VALUE, LOAD_MS, SHIPPING, TS

    schema = loaded.lf.collect_schema()
    text = lambda c: c in schema and schema[c] == pl.String
    counts = [spelled_null(pl.col(c)).sum().alias(c) for c in (TS, *_STRING_COLS) if text(c)]
    counts += [pl.col(c).str.contains(NULL_MARKER).sum().alias(c) for c in (CART_VALUE, SHIPPING, LOAD_MS) if text(c)]
    if not counts:
        return []
    got = api._collect_input(loaded.lf.select(counts), loaded).row(0, named=True)
    return [{"role": r.name, "column": loaded.columns.get(r.name, r.name), "rows": int(got[r.column])}
            for r in ROLES if got.get(r.column)]


def describe_input(sources: list[str], cfg: Config, shards: int | None = None,
                   progress: Any = None, sessions: str | None = None) -> dict[str, Any]:
    """Format, column roles, time range, sessions, users, events per name, rejected rows; with
    ``sessions`` (a sessions log, read as ``analyze`` reads it: ``api.read_sessions_log``) its
    columns among the segment columns, its rows not used, and a warning when it holds few of
    the sessions (``finalize.log_coverage``, as ``analyze`` warns).

    Inputs over ``api.FULL_SHARD_ROWS`` rows (or ``shards`` > 1) are read in user shards, one
    at a time, as ``analyze`` reads them, so memory stays bounded; ``progress`` (a callable)
    hears each step."""
    from . import api
    from .core.finalize import log_coverage
    from .core.partials import users_of
    from .core.signals import catalogue
    from .io.load import SESSIONS_LOG_CAUSES, load_events
    from .io.sources import encoding_warnings, skipped_files
    from .streaming import shard_count

    catalogue(cfg)  # report config mistakes here too, not only in analyze
    loaded = load_events(sources, cfg)
    say = progress or (lambda _msg: None)
    if sessions is not None:
        say("reading the sessions log")
    log = api.read_sessions_log(sessions, cfg)
    logged = log.lf.select(SESSION).collect()[SESSION] if log is not None else None
    k = shards or shard_count(loaded, api.FULL_SHARD_ROWS)
    if k > 1:
        with api.shard_dir() as tmp:
            done: list = []
            # (done[-1]: the shard whose events ev are, appended as they are yielded)
            facts = [_facts(ev, cfg, done[-1].shared, logged)
                     for ev in api.prepared_shards(loaded, cfg, k, tmp, say, done, tables=False)]
            counts = api._counts(done) if done else None
        rows_read, sessionized = sum(s.rows_read for s in done), any(s.sessionized for s in done)
    if k <= 1 or not done:   # (an input without rows: the one-pass reading says so)
        prep = api.prepare(sources, cfg, progress=say, loaded=loaded)
        facts, counts = [_facts(prep.events.collect(), cfg, logged=logged)], api.reject_counts(prep.rejects, cfg)
        rows_read, sessionized = prep.rows_read, prep.sessionized
    rej = api.merged_counts(counts)
    per_event = pl.concat([f["per_event"] for f in facts]).group_by(EVENT).agg(pl.col("n").sum()) \
        .sort(["n", EVENT], descending=[True, False])
    lo, hi = api.merged_bounds(f["bounds"] for f in facts)
    step_of = {e: s.name for s in cfg.steps for e in s.events}
    found = {s.name: sum(f["steps"][s.name] for f in facts) for s in cfg.steps}
    seen = set(per_event[EVENT].drop_nulls())
    n_sessions = sum(f["sessions"] for f in facts)
    return {
        "files": [str(f.path) for f in loaded.files],
        "file_formats": {str(f.path): f.format + (f"+{f.compression}" if f.compression else "")
                         for f in loaded.files},
        "format": loaded.format,
        "columns": dict(loaded.columns),
        "segment_columns": api.segment_choices(loaded.extra_columns, loaded.columns, log),
        "sessions_log": log.name if log is not None else None,
        "sessions_log_rejected": [{"cause": k_, "rows": n, "meaning": SESSIONS_LOG_CAUSES[k_]}
                                  for k_, n in sorted(log.rejected.items())] if log is not None else [],
        "rows_read": rows_read,
        "usable_rows": sum(f["usable"] for f in facts),
        "rows_rejected": int(rej["n"].sum()),
        "rejected": [{"cause": k_, "rows": int(n), "meaning": REJECT_CAUSES.get(k_, k_)} for k_, n in rej.select(REJECT, "n").iter_rows()],
        "time_range": {"start": lo.strftime("%Y-%m-%dT%H:%M:%SZ") if lo else None,
                       "end": hi.strftime("%Y-%m-%dT%H:%M:%SZ") if hi else None},
        "sessions": n_sessions,
        "sessions_built_from_inactivity": sessionized,
        "session_timeout": api._duration(cfg.session_timeout),
        "users": users_of([f["users"] for f in facts]),
        "events": [{"event": e, "rows": int(n), "step": step_of.get(e)} for e, n in per_event.iter_rows()],
        "funnel_steps_found": found,
        "read_as_missing": _read_as_missing(loaded),
        # (a step without usable rows: its events' rows all rejected, or none of them in the input)
        "warnings": [*(api.rejected_step(s.name, rejected, f"{cfg.level}s", cfg, "they are counted under rejected rows")
                       if (rejected := api.step_rejects(rej, i)) else
                       api.unnamed_step(s.name, s.events, seen, f"{cfg.level}s",
                                        "the input's event names are listed under events")
                       for i, s in enumerate(cfg.steps) if not found[s.name]),
                     *api.dates_only(sum(f["usable"] for f in facts), sum(f["timed"] for f in facts),
                                  loaded.columns.get("timestamp")),
                     *(f"a {why} is likely a placeholder for no id (e.g. guest), which joins unrelated "
                       "visitors into one — 'funnel init EVENTS' lists it under [input] missing_ids"
                       for _, why in placeholder_ids(loaded, cfg)),
                     *(log_coverage(sum(f["in_log"] for f in facts), n_sessions, log.name, sessionized)
                       if log is not None else ()),
                     *skipped_files(list(sources)), *encoding_warnings(list(sources))],
    }


def print_description(desc: dict[str, Any], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from .render.terminal import print_warnings

    console.print(f"[bold]format[/] {escape(desc['format'])} · {len(desc['files'])} file(s): "
                  + escape(", ".join(f"{k} ({v})" for k, v in desc["file_formats"].items())), soft_wrap=True)
    t = Table(title="Column roles", title_justify="left")
    t.add_column("role")
    t.add_column("source")
    for role, col in desc["columns"].items():
        t.add_row(role, escape(str(col)))
    console.print(t)
    tr = desc["time_range"]
    built = f" (built from {desc['session_timeout']} of inactivity)" if desc["sessions_built_from_inactivity"] else ""
    span = f"time range {tr['start']} → {tr['end']}" if tr["start"] else "no usable time range"
    console.print(f"{span} · {desc['sessions']:,} sessions{built}"
                  f" · {desc['users']:,} users · {desc['usable_rows']:,} of {desc['rows_read']:,} rows usable")
    if desc["sessions_log_rejected"]:   # (as analyze says them)
        unused = desc["sessions_log_rejected"]
        console.print(f"[yellow]sessions log:[/] {sum(r['rows'] for r in unused):,} rows not used ("
                      + escape(", ".join(f"{r['cause']} {r['rows']:,}" for r in unused))
                      + "; the first row of a session is used)", soft_wrap=True)
    e = Table(title="Events", title_justify="left")
    e.add_column("event")
    e.add_column("rows", justify="right")
    e.add_column("funnel step")
    for row in desc["events"][:30]:
        e.add_row(escape(str(row["event"])), f"{row['rows']:,}", escape(row["step"] or ""))
    console.print(e)
    print_warnings(desc["warnings"], console)
    if any(n == 0 for n in desc["funnel_steps_found"].values()):
        console.print(f"set {escape('[funnel]')} steps in funnel.toml or use --steps", soft_wrap=True)
    if desc["read_as_missing"]:
        console.print("read as missing (a null spelled as text: NULL, None, undefined, NaN, …): " + escape(", ".join(
            f"{m['role']} ({m['column']}) {m['rows']:,} rows" for m in desc["read_as_missing"])), soft_wrap=True)
    if desc["rejected"]:
        r = Table(title="Rejected rows", title_justify="left")
        r.add_column("cause")
        r.add_column("rows", justify="right")
        r.add_column("meaning")
        for row in desc["rejected"]:
            r.add_row(row["cause"], f"{row['rows']:,}", row["meaning"])
        console.print(r)


PLACEHOLDER_ROWS = 1_000_000   # funnel init looks for placeholder ids in this many rows


def placeholder_ids(loaded, cfg: Config, rows: int = PLACEHOLDER_ROWS) -> list[tuple[str, str]]:
    """Ids that likely stand for "no id", in the first ``rows`` rows of the input, each with
    why: a user id holding ``PLACEHOLDER_SHARE`` of the sessions (and ``PLACEHOLDER_CARTS`` or
    more; the report's warning uses the same marks on carts), or a session id with more events
    than ``max_events_per_session`` (the bot cap would cut it). Ids are read as ``normalize``
    reads them (outer blanks, nulls spelled as text); ``missing_ids`` already listed are gone."""
    from . import api
    from .core.finalize import PLACEHOLDER_CARTS, PLACEHOLDER_SHARE
    from .core.normalize import clean_string

    names = loaded.lf.collect_schema().names()
    if SESSION not in names:
        return []
    ids = api._collect_input(loaded.lf.head(rows).select(clean_string(c) for c in (SESSION, USER) if c in names),
                             loaded)
    found: list[tuple[str, str]] = []
    if USER in ids.columns:
        sessions = ids[SESSION].drop_nulls().n_unique()
        per = ids.drop_nulls().group_by(USER).agg(pl.col(SESSION).n_unique().alias("n")) \
            .filter(pl.col("n") >= max(PLACEHOLDER_CARTS, PLACEHOLDER_SHARE * sessions)).sort("n", USER, descending=[True, False])
        found += [(u, f"user id holding {n:,} of {sessions:,} sessions ({n / sessions:.1%})") for u, n in per.iter_rows()]
    long = ids.drop_nulls(SESSION).group_by(SESSION).len() \
        .filter(pl.col("len") > cfg.max_events_per_session).sort("len", SESSION, descending=[True, False])
    found += [(sid, f"session id with {n:,} events") for sid, n in long.iter_rows()]
    return found


def init_toml(sources: list[str], cfg: Config) -> tuple[str, list[tuple[str, str]]]:
    """A commented funnel.toml: detected column roles (when inputs are given), likely
    placeholder ids (``placeholder_ids``, listed under ``missing_ids`` with the evidence) and
    the funnel; and those ids."""
    detected: dict[str, str] = {}
    fmt = "auto"
    placeholders: list[tuple[str, str]] = []
    if sources:
        from .io.load import load_events

        loaded = load_events(sources, cfg)
        fmt = loaded.format if "+" not in loaded.format else "auto"
        if loaded.format == "events":
            detected = dict(loaded.columns)
        placeholders = placeholder_ids(loaded, cfg)
    if placeholders:
        where = f"the first {PLACEHOLDER_ROWS:,} rows" if loaded.rows > PLACEHOLDER_ROWS else "the input"
        missing = [f"# Likely placeholders for no id in {where} (a guest or default id joins unrelated visitors",
                   "# into one user or session); read as missing — drop any that is a real visitor:",
                   *(f"#   {toml_value(i)}: {why}" for i, why in placeholders),
                   "missing_ids = [" + ", ".join(toml_value(i) for i, _ in placeholders) + "]"]
    else:
        missing = ["# missing_ids = [\"guest\", 0]   # session/user ids that stand for no id (a shop's placeholder)"]
    lines = [
        "# funnel.toml — configuration for `funnel analyze` (see README: Configuration).",
        "# Unknown keys are errors, so typos are caught.",
        "",
        "[input]",
        f"format = {toml_value(fmt)}            # auto | events | ga4 | segment | snowplow | shopify",
        "max_events_per_session = 5000   # events beyond this per session are rejected (bots)",
        *missing,
        "",
        "[columns]",
        "# Which column plays which role. Detected from common names; uncomment to override.",
    ]
    for role in ROLES:
        if role.name in detected:
            lines.append(f"{role.name} = {toml_value(detected[role.name])}   # {role.description}")
        else:
            lines.append(f"# {role.name} = {toml_value(role.synonyms[0])}   # {role.description}")
    lines += [
        "",
        "[sessions]",
        "# The --sessions log's session id column. By default the events' session id column if the",
        "# log has one so named, else detected there from common names as above; uncomment to set it.",
        '# session_id = "session_id"',
        "",
        "[time]",
        f"timezone = {toml_value(cfg.timezone)}          # time zone of timestamps without an offset",
        'session_timeout = "30m"     # new session after this much inactivity (logs without session id)',
        "",
        "[funnel]",
        '# Ordered steps; each matches any of its event names (GA4, Segment and Shopify defaults).',
        'window = "24h"              # the whole chain must fit in this window from its first step',
        'order = "ordered"           # ordered | strict (no other step in between) | any',
        'level = "session"           # session | user',
        "exclude = []                # events that disqualify a session between its first and last step",
        'recovery_horizon = "7d"     # a cart bought later by the same user within this is "recovered"',
    ]
    for s in cfg.steps:
        lines += ["", "[[funnel.steps]]", f"name = {toml_value(s.name)}",
                  "events = [" + ", ".join(toml_value(e) for e in s.events) + "]"]
    lines += [
        "",
        "[segments]",
        'columns = []                # e.g. ["device", "channel", "country"]',
        "min_size = 30               # smaller groups are reported together as (other)",
        "",
        "[gates]",
        "fail_on = []                # e.g. [\"abandonment_rate>0.8\"] — exit 1 when a rule fires",
        "",
        "# Signal rules per reason extend the built-in catalogue (see README: Diagnosis), e.g.:",
        "# [signals.payment]",
        '# events = ["payment_failed", "card_declined"]',
        "# [signals.returns.policy_view]",
        '# url_patterns = ["/palautukset"]',
        "",
        "# Thresholds of the inferred signals (defaults shown):",
        "# [thresholds]",
        *_threshold_lines(),
        "",
    ]
    return "\n".join(lines), placeholders


def _threshold_lines() -> list[str]:
    """Every [thresholds] key with its default, from the signal catalogue itself."""
    from dataclasses import fields

    from .core.signals import _THRESHOLD_KEYS, Thresholds

    defaults = {f.name: f.default for f in fields(Thresholds)}
    out = []
    for key, kind in _THRESHOLD_KEYS.items():
        if kind == "duration":
            value = f'"{int(defaults[key + "_us"]) // 60_000_000}m"'
        else:
            value = repr(defaults[key])
        out.append(f"# {key} = {value}")
    return out
