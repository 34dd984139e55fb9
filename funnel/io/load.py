"""Read inputs into one canonical-named LazyFrame (not yet typed: see core.normalize).

Format per file: a vendor export (GA4, Segment, Snowplow, Shopify; funnel.io.adapters) or a
generic event table whose column roles are detected from common names or set in config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import polars as pl

from ..config import Config
from ..errors import InputError
from ..schema import CANONICAL_COLUMNS, REJECT, ROLE_BY_NAME, ROW, SESSION, SOURCE_FILE
from .detect import detect_roles
from .sources import (BLANK, EXTRA, READ_ERRORS, SourceFile, check_quoting, counted_rows, file_schema, literal,
                      read_error, resolve_paths, scan_file, sniff_format)

VENDOR_FORMATS = ("ga4", "segment", "snowplow", "shopify")
INPUT_FORMATS = ("auto", "events", *VENDOR_FORMATS)


@dataclass(frozen=True)
class Loaded:
    lf: pl.LazyFrame
    files: list[SourceFile]
    format: str                               # events | ga4 | segment | snowplow | shopify
    columns: dict[str, str]                   # role -> source column / mapping note
    extra_columns: list[str] = field(default_factory=list)   # properties kept for segments
    # text number column -> file (its SOURCE_FILE) -> decimal mark ("," or "."), decided from the
    # file's first rows (``_decimal_marks``); a file not named reads each value by itself
    decimals: dict[str, dict[str, str]] = field(default_factory=dict)
    # canonical column -> its name in the input, as the user sees it (``source_names``), or
    # file -> name where the files name it differently: what a rejected row's detail names
    names: dict[str, str | dict[str, str]] = field(default_factory=dict)

    @cached_property
    def rows(self) -> int:
        """The input's rows, worked out once: exact for Parquet (from the files' metadata) and
        text (``counted_rows``: CSV records, NDJSON lines); else estimated from the size (~100
        bytes per event is typical of analytics exports)."""
        total = 0
        for f in self.files:
            if f.format == "parquet":
                total += pl.scan_parquet(literal(f.path)).select(pl.len()).collect().item()
            else:
                counted = counted_rows(f)
                total += counted if counted is not None else f.size // 100 * (5 if f.compression else 1)
        return total


def _adapters():
    from . import adapters  # imported lazily: only vendor exports need it

    return adapters


def _detect_vendor(schema: pl.Schema, cfg: Config, where: str = "the input") -> str | None:
    """The vendor export format of a file with ``schema`` (``where`` names it in errors): the
    one ``cfg.format`` names, which the file must fit, else the one sniffed (``auto``), else None."""
    fmt = cfg.format
    if fmt in VENDOR_FORMATS:
        adapters = _adapters()
        mod = adapters.ADAPTERS[fmt]
        if not mod.sniff(schema):   # (the adapter would read nothing, or fail, without these)
            found = adapters.detect_format(schema)
            looks = f"a {found} export: use --format {found} or auto" if found else \
                "a generic event table: use --format auto (or events), with --column ROLE=COLUMN if needed"
            raise InputError(f"{where}: {format_given(cfg)} does not fit this file — a {fmt} export has {mod.NEEDS}",
                             f"this file looks like {looks}")
        return fmt
    if fmt == "events":
        return None
    try:
        return _adapters().detect_format(schema)
    except ImportError:
        return None


def format_given(cfg: Config) -> str:
    """How the input format was named, for errors: the config file's key, or ``--format``."""
    return cfg.given("format", value=True)


def check_format(cfg: Config) -> None:
    """An unknown ``--format`` is a one-line error naming the known ones (every engine)."""
    if cfg.format not in INPUT_FORMATS:
        from ..errors import ConfigError, suggestion

        raise ConfigError(f"unknown input format {cfg.format!r}",
                          suggestion(cfg.format, INPUT_FORMATS) or f"choose one of: {', '.join(INPUT_FORMATS)}")


def load_events(specs: list[str] | tuple[str, ...], cfg: Config, *, checks: bool = True) -> Loaded:
    """The input files (``specs``: files, folders, globs) as one ``Loaded``. ``checks=False``
    leaves out two passes over each text file (``check_quoting``, and the NDJSON line count for
    ``counted_rows`` and ``encoding_warnings``): for a caller that wants only the rest, such as
    the decimal marks that Spark's driver ships to its partitions (funnel.spark, which runs the
    quoting check itself)."""
    check_format(cfg)
    cfg.check()
    return load_files([sniff_format(p) for p in resolve_paths(specs)], cfg, checks=checks)


def load_files(files: list[SourceFile], cfg: Config, *, checks: bool = True) -> Loaded:
    """``load_events`` of input files already found and sniffed (``resolve_paths``,
    ``sniff_format``), the format and config checked: for Spark's driver, whose sniff of each
    file for its CSV dialect serves its decimal marks too."""
    frames: list[pl.LazyFrame] = []
    formats: set[str] = set()
    columns: dict[str, str] = {}
    extras: list[str] = []
    decimals: dict[str, dict[str, str]] = {}
    seen_as: dict[str, dict[str, str]] = {}   # canonical column -> file -> its name there
    for src in files:
        schema = file_schema(src)
        if len([c for c in schema.names() if c not in (ROW, SOURCE_FILE, EXTRA, BLANK)]) == 0:
            raise InputError(f"{src.path}: no columns found", "the file needs a header row or JSON objects")
        if checks:
            check_quoting(src)   # (rows swallowed by a quote closed rows later: an error, not a loss)
        if checks and src.format == "ndjson":
            counted_rows(src)   # (its lines, and whether they are UTF-8: sources.encoding_warnings)
        vendor = _detect_vendor(schema, cfg, str(src.path))
        # Generic event tables are read as text (types are parsed per row by the normalizer).
        lf = scan_file(src, text=not vendor)
        if vendor:
            mod = _adapters().ADAPTERS[vendor]
            lf = mod.adapt(lf)
            formats.add(vendor)
            columns.update(mod.MAPPING)
            named = source_names(mapping=mod.MAPPING)
            extras += [c for c in lf.collect_schema().names()
                       if c not in CANONICAL_COLUMNS and c not in (ROW, SOURCE_FILE) and c not in extras]
        else:
            names = [c for c in schema.names() if c not in (EXTRA, BLANK)]
            roles = detect_roles(names, cfg.columns, where=str(src.path), level=cfg.level, given=cfg)
            rename = {src_col: ROLE_BY_NAME[r].column for r, src_col in roles.items()}
            others = [c for c in names if c not in rename and c not in (ROW, SOURCE_FILE)]
            # Unmapped columns keep their name unless it collides with a canonical one.
            rename.update({c: f"prop_{c}" for c in others if c in CANONICAL_COLUMNS})
            lf = lf.rename(rename)
            formats.add("events")
            columns.update({r: c for r, c in roles.items() if r not in columns})
            named = source_names(roles)
            extras += [rename.get(c, c) for c in others if rename.get(c, c) not in extras]
        for c, name in named.items():
            seen_as.setdefault(c, {})[str(src.path)] = name
        for c, mark in _decimal_marks(lf, src).items():
            decimals.setdefault(c, {})[str(src.path)] = mark
        frames.append(lf)
    lf = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    from ..core.normalize import missing_ids

    lf = missing_ids(lf, cfg.missing_ids)   # (a shop's placeholder ids, e.g. guest: no id)
    one = {c: next(iter(by_file.values())) for c, by_file in seen_as.items() if len(set(by_file.values())) == 1}
    return Loaded(lf, files, "+".join(sorted(formats)), columns, extras, decimals, {**seen_as, **one})


def source_names(roles: dict[str, str] | None = None, mapping: dict[str, str] | None = None) -> dict[str, str]:
    """Canonical column -> its name in the input, as the user sees it: the column of a table
    (``roles``: role -> column, detected or set with ``--column`` / ``[columns]``), or of a vendor
    export the fields its adapter reads (``mapping``: its ``MAPPING`` notes, shown by ``funnel
    validate``, without their remarks in brackets: ``derived_tstamp, else collector_tstamp``)."""
    if mapping is not None:
        return {c: re.sub(r"\s*\([^)]*\)", "", note).strip() for c, note in mapping.items() if c in CANONICAL_COLUMNS}
    return {ROLE_BY_NAME[r].column: c for r, c in (roles or {}).items()}


def _decimal_marks(lf: pl.LazyFrame, src: SourceFile) -> dict[str, str]:
    """The decimal mark of each text number column of one file (``lf``, canonical names),
    decided from its first ``DECIMAL_SAMPLE_ROWS`` rows (``normalize.decimal_marks``): one
    bounded read of those columns, not a pass over the file. Typed columns need none."""
    from ..core.normalize import DECIMAL_SAMPLE_ROWS, NUMBER_COLUMNS, decimal_marks

    schema = lf.collect_schema()
    cols = [c for c in NUMBER_COLUMNS if schema.get(c) == pl.String]
    if not cols:
        return {}
    try:
        sample = lf.select(cols).head(DECIMAL_SAMPLE_ROWS).collect()
    except READ_ERRORS as exc:
        raise read_error(src, exc) from None
    return decimal_marks(sample)


def sessions_id_column(names: list[str], cfg: Config, where: str) -> str:
    """The session id column of a sessions log with columns ``names`` (``where``: its file):
    the one ``[sessions] session_id`` names (which it must have), else the events' session id
    column (``[columns] session_id``, ``--column``) if the log has one so named, else the one
    detected as the events' is (``detect.role_column``: session_id, sid, visit_id, …). None: an
    error listing the log's columns."""
    from .detect import _show, role_column

    shown = ", ".join(_show(c) for c in names[:20]) + (" …" if len(names) > 20 else "")
    if cfg.sessions_id is not None:
        if cfg.sessions_id not in names:
            from ..errors import did_you_mean

            near = did_you_mean(cfg.sessions_id, names)
            raise InputError(f"{_show(cfg.given('sessions_id'), 120)} {_show(cfg.sessions_id)!r}: no such column in "
                             f"the sessions log {where}",
                             f"did you mean {' or '.join(repr(_show(n)) for n in near)}?" if near
                             else f"its columns: {shown}")
        return cfg.sessions_id
    events_sid = cfg.columns.get("session_id")
    sid = events_sid if events_sid in names else role_column("session_id", names)
    if sid is None:
        raise InputError(f"{where}: sessions log has no session id column (columns: {shown})",
                         "name its session id column session_id, or set [sessions] session_id = \"COLUMN\" "
                         "in funnel.toml")
    return sid


SESSIONS_LOG_CAUSES: dict[str, str] = {   # why a row of the sessions log is not used (``load_sessions``)
    "empty_row": "blank line or every field empty",
    "missing_id": "no session id",
    "duplicate_session": "a session id already on an earlier row (the first row's attributes are used)",
}


def load_sessions(spec: str, cfg: Config) -> tuple[pl.LazyFrame, list[str], pl.DataFrame]:
    """The optional sessions log: session id + attributes (device, channel, country, ...), one
    row per session (the first of each id, in file and row order); the attribute names; and
    the rows not used, as rejected events are held (``_file``, ``_row``, ``_reject``,
    ``_detail``, then their values), per cause: ``empty_row`` (a blank line, or every field
    empty), ``missing_id`` (no session id, nothing to join it to) and ``duplicate_session`` (a
    session id already on an earlier row; ``_detail``: the row that is used): ``SESSIONS_LOG_CAUSES``."""
    files = [sniff_format(p) for p in resolve_paths([spec])]
    frames = []
    attrs: list[str] = []
    for src in files:
        schema = file_schema(src)
        names = [c for c in schema.names() if c not in (ROW, SOURCE_FILE, EXTRA, BLANK)]
        sid = sessions_id_column(names, cfg, str(src.path))
        keep = [c for c in names if c != sid and c not in CANONICAL_COLUMNS]
        attrs += [c for c in keep if c not in attrs]
        # columns named as an event role (user_id, ...): not joined (the events hold them), but
        # written with the rows not used, so that --rejects shows those rows whole (but a column
        # named session_id that is not its id: that name is the id's, once read)
        roles = [c for c in names if c not in (sid, SESSION) and c in CANONICAL_COLUMNS]
        check_quoting(src)
        lf = scan_file(src, text=True)
        blank = pl.col(BLANK) if BLANK in lf.collect_schema().names() else pl.lit(False)
        q = lf.select(pl.col(SOURCE_FILE), pl.col(ROW), blank.alias(BLANK),
                      pl.col(sid).cast(pl.String).alias(SESSION),
                      *(pl.col(c).cast(pl.String) for c in (*keep, *roles)))
        # Read now (one row per session, small next to the events): a damaged sessions log is
        # reported here, naming the file and line, not later from inside the analysis.
        try:
            frames.append(q.collect(engine="streaming").lazy())
        except READ_ERRORS as exc:
            raise read_error(src, exc) from None
    from ..core.normalize import DETAIL, clean_string, harmless

    df = (frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")) \
        .with_columns(harmless(pl.all().exclude(SOURCE_FILE, ROW, BLANK))) \
        .with_columns(clean_string(SESSION)).collect()   # (as the events' are)
    sid = pl.col(SESSION)
    used = sid.is_not_null() & sid.is_first_distinct()
    at = pl.col(SOURCE_FILE).first().over(SESSION), pl.col(ROW).first().over(SESSION)
    df = df.with_columns(
        pl.when(used).then(None).when(pl.col(BLANK)).then(pl.lit("empty_row"))
        .when(sid.is_null()).then(pl.lit("missing_id")).otherwise(pl.lit("duplicate_session")).alias(REJECT),
        pl.when(sid.is_not_null() & ~used)
        .then(pl.format("row {} is used", at[1]) if len(files) == 1 else pl.format("{} row {} is used", *at))
        .alias(DETAIL),
    ).drop(BLANK)
    roles = [c for c in df.columns if c in CANONICAL_COLUMNS and c != SESSION]   # (not joined: see above)
    first = df.filter(pl.col(REJECT).is_null()).drop(SOURCE_FILE, ROW, REJECT, DETAIL, *roles)
    return first.lazy(), attrs, df.filter(pl.col(REJECT).is_not_null())
