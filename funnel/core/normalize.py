"""Normalize canonical events: types, UTC timestamps, reject reasons, duplicates, session cap.

Pure LazyFrame -> LazyFrame stages. Nothing is dropped silently: every row that cannot be
used gets a ``_reject`` cause (see ``REJECT_CAUSES``); callers count them and can write them out.
A rejected row also gets ``_detail``, the offending raw value under the name its column has in
the input (e.g. ``event_time: yesterday``), because the typed column can only hold null for it.

Text from the log is made harmless once, here: control characters (terminal escapes, bells,
NULs) and bidirectional overrides in string columns become U+FFFD, and line breaks/tabs inside a
value become one space, so no renderer can be tricked by a value. Markup escaping is the
renderers' job (the text ``<script>`` is kept as text).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, UTC

import polars as pl

from ..schema import (CART_VALUE, CHECKOUT_STEP, CURRENCY, ERROR, EVENT, LOAD_MS, PAYMENT, REJECT,
                      ROLES, ROW, SESSION, SHIPPING, SOURCE_FILE, TS, URL, USER)

REJECT_CAUSES: dict[str, str] = {
    "empty_row": "blank line or every field empty",
    "extra_fields": "more fields than the header (a misaligned row, e.g. an unquoted comma)",
    "missing_timestamp": "no timestamp",
    "bad_timestamp": "timestamp could not be parsed",
    "timestamp_out_of_range": "timestamp before 1990 or in the future",
    "missing_event": "no event name",
    "missing_id": "neither session id nor user id",
    "bad_value": "cart value, shipping cost or load time negative, absurd or not a number",
    "duplicate": "exact duplicate of an earlier event",
    "session_cap": "event beyond the per-session cap (bot-like session)",
}
MAX_MONEY = 10_000_000.0
MAX_LOAD_MS = 600_000.0
_MIN_TS = datetime(1990, 1, 1, tzinfo=UTC)

_STRING_COLS = (EVENT, SESSION, USER, URL, CURRENCY, PAYMENT, ERROR)
EXTRA = "_extra"      # surplus CSV fields (funnel.io.sources); null when the row fits its header
DETAIL = "_detail"    # the raw value that got a row rejected (null for usable rows)
BLANK = "_blank"      # true when every field of the source row was empty (funnel.io.sources)
_BOOKKEEPING = (SOURCE_FILE, ROW, REJECT, EXTRA, DETAIL, BLANK)
_NUMERIC = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
# How exports spell a missing number (SQL NULL, MySQL \N, Python None, pandas/R NaN and NA,
# JavaScript undefined, Excel #N/A, a dash): read as missing, not as a bad value.
NULL_MARKER = r"(?i)^\s*(?:null|\\n|none|nil|nan|na|n/a|#n/a|undefined|-+)\s*$"
_BREAKS = r"[\t\n\r\v\f]+"
_UNSAFE = r"[\p{Cc}\x{200E}\x{200F}\x{202A}-\x{202E}\x{2066}-\x{2069}]"
# The same characters listed, for the test: contains_any (Aho-Corasick) is ~1.7x faster than the
# character-class regex on typical ids and urls (tests/test_robustness.py checks they agree).
_UNSAFE_CHARS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), 0x200E, 0x200F,
                                  *range(0x202A, 0x202F), *range(0x2066, 0x206A))]


def ensure_columns(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Add every canonical column that is missing, null-filled."""
    have = set(lf.collect_schema().names())
    missing = [r for r in ROLES if r.column not in have]
    return lf.with_columns(pl.lit(None).alias(r.column) for r in missing) if missing else lf


def _epoch_to_us(x: pl.Expr) -> pl.Expr:
    """Epoch seconds/ms/µs/ns by magnitude, per value (mixed units welcome)."""
    a = x.abs()
    return (
        pl.when(a < 1e11).then(x * 1e6)
        .when(a < 1e14).then(x * 1e3)
        .when(a < 1e17).then(x)
        .otherwise(x / 1e3)
    ).round(0).cast(pl.Int64, strict=False)


def parse_timestamp(col: pl.Expr, dtype: pl.DataType, tz: str) -> pl.Expr:
    """Any timestamp representation -> Datetime(µs, UTC); null where unparseable."""
    if isinstance(dtype, pl.Datetime):
        c = col.dt.cast_time_unit("us")
        return _local(c, tz) if dtype.time_zone is None else c.dt.convert_time_zone("UTC")
    if isinstance(dtype, pl.Date):
        return _local(col.cast(pl.Datetime("us")), tz)
    if dtype.is_numeric():
        return pl.from_epoch(_epoch_to_us(col.cast(pl.Float64)), time_unit="us").dt.replace_time_zone("UTC")
    s = col.cast(pl.String).str.strip_chars()
    return _from_text(s, _iso(s), tz)


# Timestamp spellings parsed directly (format, zone: "UTC", the text's own "offset", or the
# local time zone; and a pattern the text must match first, or None): the usual exports. Each
# is tried only on the values the ones before it could not read; what is left takes
# ``parse_timestamp``'s general rules. Same times, ~7x cheaper on a column of ISO-8601 text
# (tests/test_robustness.py). (The space-separated one only with a 4-digit year and 2-digit
# month and day: the general rules read a space there only then, and the format alone takes
# shorter numbers.)
_DIRECT_TIMES = (("%Y-%m-%dT%H:%M:%S%.fZ", "UTC", None), ("%Y-%m-%dT%H:%M:%S%.f%z", "offset", None),
                 ("%Y-%m-%d %H:%M:%S%.f", "local", r"^\d{4}-\d{2}-\d{2} "),
                 ("%Y-%m-%dT%H:%M:%S%.f", "local", None))


def _local(naive: pl.Expr, tz: str) -> pl.Expr:
    """Naive local times in zone ``tz`` -> UTC: the one rule for the clock changes (every route
    and engine reads local times through it). A time the clocks skip when they move forward
    (03:30 on the night Helsinki goes from 03:00 to 04:00) is read with the offset in force
    before the change, as if the clock had not moved yet: the time the gap's length later
    (04:30 summer time, 01:30 UTC), as RFC 5545, Python, java.time, JavaScript and PostgreSQL
    read it. A time the clocks repeat when they move back is read as its first occurrence
    (summer time), as RFC 5545, Python, java.time and JavaScript read it."""
    read = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
    if tz == "UTC":   # (no clock changes)
        return read
    # In a gap (read null, naive not): the offset of the same time a day earlier, before the change.
    day_before = (pl.when(read.is_null()).then(naive) - timedelta(days=1)) \
        .dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
    return pl.coalesce(read, day_before + timedelta(days=1))


def with_parsed_timestamp(lf: pl.LazyFrame, dtype: pl.DataType, tz: str) -> pl.LazyFrame:
    """``lf`` with ``_ts_parsed``: ``parse_timestamp`` of its ``ts`` column (of ``dtype``).
    Text is parsed in steps, each a column of its own (an expression that repeats its input
    would compute it again at each use): the ``_DIRECT_TIMES`` spellings first, each on the
    values still unread (``_ts_text``), then the general rules on the rest (``_ts_iso``)."""
    if dtype != pl.String:
        return lf.with_columns(parse_timestamp(pl.col(TS), dtype, tz).alias("_ts_parsed"))
    text, got = pl.col("_ts_text"), pl.col("_ts_parsed")
    lf = lf.with_columns(pl.col(TS).str.strip_chars().alias("_ts_text"),
                         pl.lit(None, pl.Datetime("us", "UTC")).alias("_ts_parsed"))
    for fmt, zone, must in _DIRECT_TIMES:
        src = text if must is None else pl.when(text.str.contains(must)).then(text)
        read = src.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC" if zone == "offset" else None)
        if zone == "local":   # (a column of its own: ``_local`` reads it twice)
            lf = lf.with_columns(read.alias("_ts_naive"))
            read = _local(pl.col("_ts_naive"), tz)
        elif zone == "UTC":
            read = read.dt.replace_time_zone("UTC")
        lf = lf.with_columns(pl.coalesce(got, read).alias("_ts_parsed")) \
            .with_columns(pl.when(got.is_null()).then(text).alias("_ts_text"))
    lf = lf.with_columns(_iso(text).alias("_ts_iso")).with_columns(_naive(pl.col("_ts_iso")).alias("_ts_naive"))
    return lf.with_columns(pl.coalesce(got, _from_text(text, pl.col("_ts_iso"), tz, pl.col("_ts_naive")))
                           .alias("_ts_parsed"))


def _iso(s: pl.Expr) -> pl.Expr:
    """Stripped timestamp text in the one ISO form ``_from_text`` reads: a T between date and
    time (ISO 8601 allows a lowercase t, and a comma as the seconds' decimal mark, read as a
    point), 'Z'/'UTC' and a bare hour offset after a time as +hh:mm (a bare date's day is no
    offset), no space before the offset."""
    return s.str.replace(r"^(\d{4}-\d{2}-\d{2})[ Tt]", "${1}T").str.replace(r"(T\d{2}:\d{2}:\d{2}),(\d)", "${1}.${2}") \
        .str.replace(r"(?i)(?:Z|UTC)$", "+00:00") \
        .str.replace(r"(:\d{2}(?:\.\d*)?) ?([+-]\d{2})$", "${1}${2}:00").str.replace(r" ([+-]\d{2}:?\d{2})$", "${1}")


def _naive(iso: pl.Expr) -> pl.Expr:
    """The ``_iso`` form of timestamp text read as a time without a zone (seconds and
    fraction, minutes, or a bare date); null where it is not one."""
    return pl.coalesce(
        iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us"),
        iso.str.to_datetime("%Y-%m-%dT%H:%M", strict=False, time_unit="us"),
        iso.str.to_datetime("%Y-%m-%d", strict=False, time_unit="us"),
    )


def _from_text(s: pl.Expr, iso: pl.Expr, tz: str, naive: pl.Expr | None = None) -> pl.Expr:
    """Stripped timestamp text ``s`` (and its ``_iso`` form) -> Datetime(µs, UTC): an epoch
    number by magnitude, ISO 8601 with an offset (after seconds and fraction, or minutes:
    ``10:07Z``), or local time (``tz``) with seconds and fraction, minutes, or a bare date
    (``_naive``; given as ``naive``, a column of its own: ``_local`` reads it twice); null
    where unparseable."""
    with_offset = pl.coalesce(
        iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us", time_zone="UTC"),
        iso.str.to_datetime("%Y-%m-%dT%H:%M%z", strict=False, time_unit="us", time_zone="UTC"),
    )
    local = _local(_naive(iso) if naive is None else naive, tz)
    epoch = pl.from_epoch(_epoch_to_us(s.cast(pl.Float64, strict=False)), time_unit="us") \
        .dt.replace_time_zone("UTC")
    return pl.when(s.str.contains(_NUMERIC)).then(epoch).otherwise(pl.coalesce(with_offset, local))


def parse_number(s: pl.Expr, mark: pl.Expr | None = None) -> pl.Expr:
    """Text -> Float64 (null when not a number). Accepts the spellings exports really use:
    ``12.50``, ``12,50`` (decimal comma), ``1,234.50`` and ``1.234,50`` (thousands separators),
    a currency symbol or code around the number (``€12.50``, ``12.50 EUR``).

    ``mark``: the decimal mark of each value's file and column (``decimal_mark``: ``","``,
    ``"."`` or null), decided from the file's unambiguous values (``decimal_marks``). Under
    ``"."`` a comma is only a thousands separator (``2,500`` is 2500; ``12,5`` and ``1.234,50``
    are not numbers); under ``","`` a dot is only a thousands separator and the one comma the
    decimal mark (``1.234`` is 1234, ``1,234`` 1.234; ``12.50`` is not a number). Where it is
    null (no mark decided), each value is read by itself: a separator followed by exactly three
    digits is a thousands comma (``1,500``: 1500) but a decimal point (``1.500``: 1.5), and a
    comma followed by 1-2 digits is a decimal comma (``12,5``).
    """
    plain = s.str.strip_chars()
    direct = _plain_cast(plain, mark)
    # Only the values a plain cast could not read go through the regexes (nulls are cheap).
    return pl.coalesce(direct, _spelled_number(pl.when(direct.is_null()).then(plain), mark))


def _plain_cast(plain: pl.Expr, mark: pl.Expr | None) -> pl.Expr:
    """Stripped text cast to a number, but not a value with a dot under a decimal comma (a dot
    is then a thousands separator: ``_spelled_number``)."""
    cast = plain.cast(pl.Float64, strict=False)
    if mark is None:
        return cast
    return pl.when((mark == ",").fill_null(False) & plain.str.contains(".", literal=True)).then(None).otherwise(cast)


NUMBER_COLUMNS = (CART_VALUE, SHIPPING, LOAD_MS)
DECIMAL_SAMPLE_ROWS = 100_000   # a file's first rows, from which its numbers' decimal mark is decided
_CURRENCY = r"^(?:[$€£¥]|[A-Z]{3})\s*|\s*(?:[$€£¥]|[A-Z]{3})$"
# Values only one decimal mark reads (currency marks and outer blanks aside): a point, or a
# comma, followed by 1-2 or 4+ digits; thousands commas then a point (or dots then a comma);
# two or more groups of thousands (a second comma cannot be a decimal comma).
_POINT_ONLY = r"^[+-]?(?:\d+\.(?:\d{1,2}|\d{4,})|\d{1,3}(?:,\d{3})+\.\d+|\d{1,3}(?:,\d{3}){2,})$"
_COMMA_ONLY = r"^[+-]?(?:\d+,(?:\d{1,2}|\d{4,})|\d{1,3}(?:\.\d{3})+,\d+|\d{1,3}(?:\.\d{3}){2,})$"


def decimal_marks(sample: pl.DataFrame) -> dict[str, str]:
    """The decimal mark (``","`` or ``"."``) of each text column of ``sample`` (one file's
    first ``DECIMAL_SAMPLE_ROWS`` rows of its number columns) whose values give evidence of one
    mark only: a value only a decimal comma reads (``12,50``, ``1.234,50``) or only a decimal
    point reads (``12.50``, ``1,234.50``). A column with evidence of both, or of neither, gets
    none: its values are then read one by one (``parse_number``)."""
    cols = [c for c, t in sample.schema.items() if t == pl.String]
    if not cols or not sample.height:
        return {}
    text = lambda c: pl.col(c).str.strip_chars().str.replace(_CURRENCY, "")
    seen = sample.select(*(text(c).str.contains(_POINT_ONLY).any().alias(f"p{i}") for i, c in enumerate(cols)),
                         *(text(c).str.contains(_COMMA_ONLY).any().alias(f"c{i}") for i, c in enumerate(cols))).row(0)
    n = len(cols)
    return {c: "." if seen[i] else "," for i, c in enumerate(cols) if bool(seen[i]) != bool(seen[n + i])}


def decimal_mark(column: str, decimals: dict[str, dict[str, str]] | None) -> pl.Expr | None:
    """The decimal mark of ``column`` on each row (``","``, ``"."`` or null), from its file
    (``SOURCE_FILE``) and ``decimals`` (column -> file -> mark: ``Loaded.decimals``); None when
    no file has one (every value read by itself, at no cost)."""
    files = (decimals or {}).get(column)
    if not files:
        return None
    return pl.col(SOURCE_FILE).cast(pl.String).replace_strict(files, default=None, return_dtype=pl.String)


def with_parsed_numbers(lf: pl.LazyFrame, columns: dict[str, pl.DataType],
                        decimals: dict[str, dict[str, str]] | None = None) -> pl.LazyFrame:
    """``lf`` with ``_num_<c>`` for each of ``columns`` (name -> dtype): a numeric column cast,
    text read as ``parse_number`` reads it (with the decimal mark ``decimal_mark`` gives from
    ``decimals``), in steps, each a column of its own (an expression that repeats its input
    computes it again at each use): the plain cast, then the other spellings on what it left
    (``_num_text``). ~3x cheaper on a text column."""
    text = [c for c, t in columns.items() if t == pl.String]
    marks = {c: decimal_mark(c, decimals) for c in text}
    marked = [c for c in text if marks[c] is not None]
    if marked:   # (each file's mark, a column of its own: read by both steps)
        lf = lf.with_columns(marks[c].alias(f"_dec_{c}") for c in marked)
        marks.update({c: pl.col(f"_dec_{c}") for c in marked})
    lf = lf.with_columns((_plain_cast(pl.col(c).str.strip_chars(), marks[c]) if c in text else
                          _typed_number(pl.col(c))).alias(f"_num_{c}") for c in columns)
    for c in text:
        left = pl.when(pl.col(f"_num_{c}").is_null()).then(pl.col(c).str.strip_chars())
        lf = lf.with_columns(left.alias("_num_text")).with_columns(
            pl.coalesce(f"_num_{c}", _spelled_number(pl.col("_num_text"), marks[c])).alias(f"_num_{c}"))
    return lf.drop("_num_text", *(f"_dec_{c}" for c in marked), strict=False)


def _typed_number(x: pl.Expr) -> pl.Expr:
    """A typed number column as Float64, a NaN read as missing (null), as the text ``NaN`` is:
    polars and Spark write a missing float as NaN. (±inf stays a number: an absurd value.)"""
    return x.cast(pl.Float64, strict=False).fill_nan(None)


def _spelled_number(t: pl.Expr, mark: pl.Expr | None = None) -> pl.Expr:
    """Stripped text that is not a plain number -> Float64 (``parse_number``'s other spellings,
    under the decimal ``mark`` if one is given)."""
    t = t.str.replace(_CURRENCY, "")
    en = t.str.contains(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
    de = t.str.contains(r"^[+-]?\d{1,3}(\.\d{3})+(,\d+)?$")
    dec_comma = t.str.contains(r"^[+-]?\d+,\d{1,2}$")
    thousands_dots = t.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    if mark is None:
        fixed = (
            pl.when(en).then(t.str.replace_all(",", "", literal=True))
            .when(de).then(thousands_dots)
            .when(dec_comma).then(t.str.replace(",", ".", literal=True))
            .otherwise(t)
        )
        return fixed.cast(pl.Float64, strict=False)
    point, comma = (mark == ".").fill_null(False), (mark == ",").fill_null(False)
    fixed = (
        pl.when(en & ~comma).then(t.str.replace_all(",", "", literal=True))
        .when(de & ~point).then(thousands_dots)
        # a decimal comma: the one comma is the decimal mark; a dot elsewhere is not a number
        .when(comma).then(pl.when(t.str.contains(".", literal=True)).then(None)
                          .otherwise(t.str.replace(",", ".", literal=True)))
        .when(dec_comma & ~point).then(t.str.replace(",", ".", literal=True))
        .otherwise(t)   # (a decimal point: a comma left here makes it no number)
    )
    return fixed.cast(pl.Float64, strict=False)


# How exports spell a missing text value (SQL NULL, MySQL \N, Python None, JavaScript null and
# undefined, NaN, pandas' NaT): missing, as a blank is. Exact spellings, looked up as cheaply as the blank
# test; no real id, event name, page or currency is written so. (Numbers take more spellings:
# NULL_MARKER.)
TEXT_NULLS = ("", "null", "NULL", "Null", "none", "None", "NONE", "undefined", "Undefined", "UNDEFINED",
              "nan", "NaN", "NAN", "NaT", "\\N")


def missing_to_null(stripped: pl.Expr, elementwise: bool = False) -> pl.Expr:
    """Stripped text with a blank or a ``TEXT_NULLS`` spelling as missing. ``elementwise``: a
    form polars takes as a partitioned sink's key (``replace`` of a list is not; the when/then
    computes ``stripped`` twice, ~2x the cost)."""
    if elementwise:
        return pl.when(stripped.is_in(TEXT_NULLS)).then(None).otherwise(stripped)
    return stripped.replace(TEXT_NULLS, None)


def missing_ids(lf: pl.LazyFrame, ids: tuple[str, ...]) -> pl.LazyFrame:
    """Session and user ids listed in ``[input] missing_ids`` (a shop's placeholder for "no
    id": ``guest``, ``0``, ...; outer blanks aside) read as missing, as a null spelled as text
    is. Applied where the input is read (``load_events``, and Spark's shard key and
    partitions), so every route sees the same ids; nothing to do without such ids."""
    if not ids:
        return lf
    names = lf.collect_schema().names()
    listed = lambda c: pl.col(c).cast(pl.String).str.strip_chars().is_in(list(ids))
    return lf.with_columns(pl.when(listed(c)).then(None).otherwise(pl.col(c)).alias(c)
                           for c in (SESSION, USER) if c in names)


def clean_string(c: str) -> pl.Expr:
    """Outer blanks stripped; blank, or a null spelled as text (``TEXT_NULLS``) = missing.
    (``replace``: ~2x cheaper than a when/then, which computes the stripped text twice.)"""
    return missing_to_null(pl.col(c).cast(pl.String).str.strip_chars()).alias(c)


def harmless(x: pl.Expr) -> pl.Expr:
    """Line breaks/tabs -> one space; other control and bidi-override characters -> U+FFFD."""
    fixed = x.str.replace_all(_BREAKS, " ").str.replace_all(_UNSAFE, "\uFFFD")
    return pl.when(_has_unsafe(x)).then(fixed).otherwise(x)   # the test is cheaper than the fix


_NULL_WORDS = "(?:" + "|".join(re.escape(t) for t in TEXT_NULLS if t) + ")"   # (regex: TEXT_NULLS but blank)


def needs_cleaning(x: pl.Expr) -> pl.Expr:
    """True where ``normalize`` would change a string value: unsafe characters (``harmless``),
    outer whitespace, an empty string or a null spelled as text (``clean_string``). One regex:
    ~1.7x cheaper than the tests apart (the same truth: tests/test_robustness.py)."""
    return x.str.contains(r"^\s|\s$|^$|" + _UNSAFE + "|^" + _NULL_WORDS + "$")


def _has_unsafe(x: pl.Expr) -> pl.Expr:
    """True where ``x`` holds a character ``harmless`` replaces (``_UNSAFE``)."""
    return x.str.contains_any(_UNSAFE_CHARS)


def _is_blank(c: str, dtype: pl.DataType, where: pl.Expr | None = None) -> pl.Expr:
    """``c`` is missing or only whitespace. ``where``: the text is tested only on those rows
    (false elsewhere unless null): the regex skips the null-masked rest, which is much cheaper
    when ``where`` is rare."""
    if dtype != pl.String:
        return pl.col(c).is_null()
    text = pl.col(c) if where is None else pl.when(where).then(pl.col(c))
    # a regex test allocates nothing, unlike stripping every value
    return pl.col(c).is_null() | text.str.contains(r"^\s*$").fill_null(False)


def spelled_null(text: pl.Expr) -> pl.Expr:
    """Text that, outer blanks aside, spells a null (a ``TEXT_NULLS`` spelling, the blank
    aside): what ``clean_string`` reads as missing besides blanks."""
    return text.str.strip_chars().is_in([t for t in TEXT_NULLS if t])


def typed(lf: pl.LazyFrame, tz: str = "UTC", now: datetime | None = None,
          decimals: dict[str, dict[str, str]] | None = None) -> tuple[pl.LazyFrame, list[tuple[str, pl.Expr]]]:
    """Parse the timestamp and numbers of (string-cleaned) canonical events into temporary
    columns, and return the reject rules over them: ``(cause, condition)`` in priority order.

    The one definition of what makes a row unusable (bar duplicates and the session cap):
    ``normalize`` turns the rules into ``_reject``; the funnel-only fast path
    (funnel.streaming) checks that no row meets any of them. ``decimals``: the decimal mark of
    each text number column per file (``Loaded.decimals``; see ``parse_number``)."""
    schema = lf.collect_schema()
    if BLANK in schema:
        empty_row = pl.col(BLANK).fill_null(False)
    else:   # adapted vendor rows, Parquet, NDJSON: every (visible) column empty
        data_cols = [c for c in schema.names() if not c.startswith("_")]
        # An empty row has a blank timestamp too: the other columns are tested on those rows
        # only (a text test of every column on every row was a third of normalising).
        first = TS if TS in data_cols else (data_cols[0] if data_cols else None)
        gate = _is_blank(first, schema[first]) if first else pl.lit(False)
        empty_row = gate & pl.all_horizontal([_is_blank(c, schema[c], gate) for c in data_cols if c != first]
                                             or [pl.lit(True)])
    extra = pl.col(EXTRA).is_not_null() if EXTRA in schema else pl.lit(False)
    now = now or datetime.now(UTC)
    future = now + timedelta(days=1)
    money = (CART_VALUE, SHIPPING, LOAD_MS)
    money_bad = []   # (each number is parsed once, into a temporary column _num_<col>)
    marked = [c for c in money if schema[c] == pl.String]
    for c in money:
        n = pl.col(f"_num_{c}")
        limit = MAX_LOAD_MS if c == LOAD_MS else MAX_MONEY
        given = ~_is_blank(c, schema[c])   # typed columns are never formatted as text here
        if schema[c].is_float():   # a typed NaN is a missing number (``_typed_number``), not a bad one
            given = given & ~pl.col(c).is_nan()
        if c in marked:   # a null marker (NULL, None, NaN, ...) is a missing number, not a bad one
            given = given & ~pl.col(f"_nil_{c}")
        money_bad.append((given & (n.is_null() | n.is_nan() | (n < 0) | (n > limit))).alias(f"_bad_{c}"))
    lf = with_parsed_numbers(lf, {c: schema[c] for c in money}, decimals)
    if marked:   # (tested only where the number could not be read: the rest are nulls to the regex)
        unread = lambda c: pl.col(f"_num_{c}").is_null() | pl.col(f"_num_{c}").is_nan()
        lf = lf.with_columns(pl.when(unread(c)).then(pl.col(c)).str.contains(NULL_MARKER).fill_null(False)
                             .alias(f"_nil_{c}") for c in marked)
        lf = lf.with_columns(pl.when(pl.col(f"_nil_{c}")).then(None).otherwise(pl.col(f"_num_{c}"))
                             .alias(f"_num_{c}") for c in marked)
    lf = lf.with_columns(money_bad)
    lf = with_parsed_timestamp(lf, schema[TS], tz).with_columns(
        pl.any_horizontal([pl.col(f"_bad_{c}") for c in money]).alias("_bad_value"),
    )
    parsed_ts = pl.col("_ts_parsed")
    # (a timestamp spelled as a null has none; tested only where none could be read: the rest
    # are nulls to the test)
    spelled_ts = spelled_null(pl.when(parsed_ts.is_null()).then(pl.col(TS))).fill_null(False) \
        if schema[TS] == pl.String else pl.lit(False)
    rules = [
        ("empty_row", empty_row),
        ("extra_fields", extra),
        ("missing_timestamp", _is_blank(TS, schema[TS]) | spelled_ts),
        ("bad_timestamp", parsed_ts.is_null()),
        ("timestamp_out_of_range", (parsed_ts < _MIN_TS) | (parsed_ts > future)),
        ("missing_event", pl.col(EVENT).is_null()),
        ("missing_id", pl.col(SESSION).is_null() & pl.col(USER).is_null()),
        ("bad_value", pl.col("_bad_value")),
    ]
    assert [c for c, _ in rules] == list(REJECT_CAUSES)[:len(rules)]
    return lf, rules


_TEMPORARY = ("_ts_parsed", "_ts_text", "_ts_iso", "_ts_naive", "_bad_value", BLANK,
              *(f"_{p}_{c}" for p in ("num", "bad", "nil") for c in (CART_VALUE, SHIPPING, LOAD_MS)))


def source_label(column: str, names: dict[str, str | dict[str, str]] | None) -> pl.Expr:
    """``column``'s name as the input has it, then ``": "``, on each rejected row (what its
    ``_detail`` starts with): ``names`` gives the name (``Loaded.names``: canonical column ->
    name, or file -> name where the files name it differently); else the canonical name."""
    name = (names or {}).get(column, column)
    if isinstance(name, str):
        return harmless(pl.lit(f"{name}: "))
    by_file = pl.when(pl.col(REJECT).is_not_null()).then(pl.col(SOURCE_FILE).cast(pl.String))
    return harmless(by_file.replace_strict(name, default=column, return_dtype=pl.String) + ": ")


def normalize(lf: pl.LazyFrame, tz: str = "UTC", now: datetime | None = None,
              decimals: dict[str, dict[str, str]] | None = None,
              names: dict[str, str | dict[str, str]] | None = None) -> pl.LazyFrame:
    """Typed canonical events with ``_reject`` (null for usable rows). ``decimals``: the
    decimal mark of each text number column per file (``Loaded.decimals``; see ``parse_number``).
    ``names``: the columns' names in the input, which ``_detail`` uses (``source_label``)."""
    lf = ensure_columns(lf)
    schema = lf.collect_schema()
    text_cols = [c for c, t in schema.items() if t == pl.String and c not in (SOURCE_FILE, ROW, REJECT)]
    if text_cols:
        lf = lf.with_columns(harmless(pl.col(c)) for c in text_cols)
    lf = lf.with_columns(
        *(clean_string(c) for c in _STRING_COLS),
        (pl.col(CHECKOUT_STEP).str.strip_chars() if schema[CHECKOUT_STEP] == pl.String else pl.col(CHECKOUT_STEP))
        .cast(pl.Float64, strict=False).cast(pl.Int64, strict=False).alias(CHECKOUT_STEP),
    )
    out, rules = typed(lf, tz, now, decimals)
    reject = pl.lit(None, pl.String)
    for cause, cond in reversed(rules):
        reject = pl.when(cond).then(pl.lit(cause)).otherwise(reject)
    money = (CART_VALUE, SHIPPING, LOAD_MS)
    raw_ts = source_label(TS, names) + pl.col(TS).cast(pl.String)
    raw_values = pl.concat_str(
        [pl.when(pl.col(f"_bad_{c}")).then(source_label(c, names) + pl.col(c).cast(pl.String)) for c in money],
        separator="; ", ignore_nulls=True)
    detail = (
        pl.when(pl.col(REJECT).is_in(["bad_timestamp", "timestamp_out_of_range"])).then(raw_ts)
        .when(pl.col(REJECT) == "bad_value").then(raw_values)
        .otherwise(None)
    )
    return (
        out.with_columns(reject.alias(REJECT))
        .with_columns(detail.str.slice(0, 300).alias(DETAIL))
        .with_columns(*(pl.col(f"_num_{c}").alias(c) for c in money), pl.col("_ts_parsed").alias(TS))
        .drop(*_TEMPORARY, strict=False)
    )


def row_hash(names: list[str]) -> pl.Expr:
    """One 64-bit hash of a row's columns ``names`` but the bookkeeping ones (file, row, ...):
    what "exact duplicate" compares. Two different rows share it only on a hash collision
    (~2^-64 per pair). The one definition, for every route that looks for duplicates."""
    return pl.struct([c for c in names if c not in _BOOKKEEPING]).hash(0)


def mark_duplicates(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Exact duplicate usable events (all columns but file/row) are rejected as 'duplicate'."""
    # One hash per row, first occurrence kept: ~9x faster than a window over every column.
    first = row_hash(lf.collect_schema().names()).is_first_distinct()
    return lf.with_columns(
        pl.when(pl.col(REJECT).is_null() & ~first).then(pl.lit("duplicate")).otherwise(pl.col(REJECT))
        .alias(REJECT)
    )


def may_repeat(df: pl.DataFrame) -> bool:
    """Whether two rows of the normalised ``df`` may be exact duplicates; False is a proof that
    none are: there are as many (time, event, session, user) keys as rows, and equal rows have
    equal keys. Then ``mark_duplicates`` has nothing to mark, and its hash of every column of
    every row can be skipped (~3x this test's cost). The key XORs four 64-bit hashes: a
    collision only sends the rows to ``mark_duplicates``."""
    key = pl.col(TS).dt.epoch("us").hash(11) ^ pl.col(EVENT).hash(12) ^ pl.col(SESSION).hash(13) \
        ^ pl.col(USER).hash(14)
    return df.height > 1 and df.select(key.n_unique()).item() < df.height


def cap_sessions(lf: pl.LazyFrame, entity_col: str, cap: int) -> pl.LazyFrame:
    """Events beyond ``cap`` per session (bot-like) are rejected as 'session_cap'."""
    usable_ts = pl.when(pl.col(REJECT).is_null()).then(pl.col(TS))
    rank = usable_ts.rank("ordinal").over(entity_col)   # rejected rows do not use up the cap
    return lf.with_columns(
        pl.when(pl.col(REJECT).is_null() & (rank > cap)).then(pl.lit("session_cap"))
        .otherwise(pl.col(REJECT)).alias(REJECT)
    )
