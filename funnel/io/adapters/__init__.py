"""Vendor export adapters: GA4, Segment, Snowplow and Shopify logs -> canonical event columns.

Each adapter module has ``NAME``, ``DESCRIPTION`` (one line), ``NEEDS`` (the columns ``sniff``
checks, in words), ``MAPPING`` (canonical column ->
where it comes from, shown by ``funnel validate``), ``sniff(schema)`` (decides from the raw
column names and types only) and ``adapt(lf)`` (lazy, pure polars expressions).

``adapt`` returns exactly: the canonical columns of :mod:`funnel.schema` in their order and
dtypes (``ts`` is ``Datetime("us", "UTC")``; a column the vendor lacks is all null), then the
segment attributes the vendor has (``device``, ``country``, ``channel``, ``browser``,
``platform``) and a few vendor properties (``shipping_method``, Snowplow's ``account_type``) as String columns, then the
reader's ``_file`` and ``_row`` columns unchanged when present. No row is ever dropped: a value
that cannot be parsed becomes null and the normalizer decides what to do with the row.

The helpers below are shared by the adapter modules; they are defined before those modules are
imported at the bottom of this file.
"""

from __future__ import annotations

import re
from types import ModuleType

import polars as pl

from ...schema import CANONICAL_COLUMNS, DUP_KEY, ROLES, ROW, SOURCE_FILE

OUTPUT_DTYPES: dict[str, pl.DataType] = {r.column: r.dtype for r in ROLES}  # type: ignore[misc]
SEGMENT_COLUMNS: tuple[str, ...] = ("device", "country", "channel", "browser", "platform")

_STR = pl.String
_NULL_STR = pl.lit(None, dtype=pl.String)
_NULL_F64 = pl.lit(None, dtype=pl.Float64)
_NULL_I64 = pl.lit(None, dtype=pl.Int64)
_PATH_PART = re.compile(r"^([^\[\]]+)((?:\[\d+\])*)$")


# --- reaching into (possibly nested) columns ---------------------------------------------------

def get(schema: pl.Schema, path: str) -> tuple[pl.Expr, pl.DataType] | None:
    """``"a.b[0].c"`` -> (expression, dtype), or None when the path is not in ``schema``.

    Struct fields are followed with ``struct.field``, ``[n]`` takes the n-th list element
    (null when the list is shorter). Only the schema is consulted, no data is read.
    """
    parts = path.split(".")
    expr: pl.Expr | None = None
    dtype: pl.DataType | None = None
    for i, part in enumerate(parts):
        m = _PATH_PART.match(part)
        if not m:
            return None
        name, idx = m.group(1), m.group(2)
        if i == 0:
            if name not in schema:
                return None
            expr, dtype = pl.col(name), schema[name]
        else:
            if not isinstance(dtype, pl.Struct):
                return None
            fields = {f.name: f.dtype for f in dtype.fields}
            if name not in fields:
                return None
            expr, dtype = expr.struct.field(name), fields[name]  # type: ignore[union-attr]
        for n in re.findall(r"\[(\d+)\]", idx):
            if not isinstance(dtype, pl.List):
                return None
            expr, dtype = expr.list.get(int(n), null_on_oob=True), dtype.inner  # type: ignore[union-attr]
    return expr, dtype  # type: ignore[return-value]


def as_str(field: tuple[pl.Expr, pl.DataType] | None) -> pl.Expr:
    """A field as String; empty strings become null; missing/unsupported -> null."""
    if field is None:
        return _NULL_STR
    expr, dtype = field
    if dtype == pl.String:
        out = expr
    elif isinstance(dtype, pl.Struct):
        out = expr.struct.json_encode()
    elif dtype == pl.Null or isinstance(dtype, (pl.List, pl.Array, pl.Object)):
        return _NULL_STR
    else:
        out = expr.cast(_STR, strict=False)
    return nonempty(out)


def as_float(field: tuple[pl.Expr, pl.DataType] | None) -> pl.Expr:
    """A field as Float64 (numbers, or numbers written as strings); else null."""
    if field is None:
        return _NULL_F64
    expr, dtype = field
    if dtype == pl.String:
        return expr.str.strip_chars().cast(pl.Float64, strict=False)
    if dtype.is_numeric():
        return expr.cast(pl.Float64, strict=False)
    return _NULL_F64


def as_int(field: tuple[pl.Expr, pl.DataType] | None) -> pl.Expr:
    """A field as Int64: integers, integral floats (``3.0``) and such strings; else null."""
    if field is None:
        return _NULL_I64
    expr, dtype = field
    if dtype.is_integer():
        return expr.cast(pl.Int64, strict=False)
    if dtype == pl.String:
        s = expr.str.strip_chars()
        f = s.cast(pl.Float64, strict=False)
        return pl.coalesce(s.cast(pl.Int64, strict=False),
                           pl.when(f == f.floor()).then(f).cast(pl.Int64, strict=False))
    if dtype.is_float():
        return pl.when(expr == expr.floor()).then(expr).cast(pl.Int64, strict=False)
    return _NULL_I64


def nonempty(expr: pl.Expr) -> pl.Expr:
    """Strings that are empty or only blanks become null."""
    return pl.when(expr.str.strip_chars().str.len_chars() > 0).then(expr).otherwise(_NULL_STR)


def first_of(*exprs: pl.Expr) -> pl.Expr:
    return exprs[0] if len(exprs) == 1 else pl.coalesce(exprs)


# --- timestamps --------------------------------------------------------------------------------

_UTC = pl.Datetime("us", "UTC")


def iso_ts(expr: pl.Expr) -> pl.Expr:
    """ISO 8601 strings -> Datetime(us, UTC); unparseable -> null.

    Accepts ``T`` or a space between date and time, optional fractions (up to ns), and ``Z``,
    ``+hh:mm`` or ``+hhmm`` offsets (converted to UTC). Values without an offset are taken as
    UTC: every vendor handled here writes UTC.
    """
    s = (expr.str.strip_chars()
         .str.replace(r"^(\d{4}-\d{2}-\d{2})[Tt ]", "${1} ")
         .str.replace(r"[Zz]$", "+00:00"))
    aware = s.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%z", time_unit="us", time_zone="UTC", strict=False)
    naive = s.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False).dt.replace_time_zone("UTC")
    return pl.coalesce(aware, naive)


def epoch_us_ts(expr: pl.Expr) -> pl.Expr:
    """Integer microseconds since the epoch -> Datetime(us, UTC)."""
    return pl.from_epoch(expr, time_unit="us").dt.replace_time_zone("UTC")


def any_ts(field: tuple[pl.Expr, pl.DataType] | None) -> pl.Expr:
    """A timestamp field of any physical type: ISO string, datetime, or epoch µs integer."""
    if field is None:
        return pl.lit(None, dtype=_UTC)
    expr, dtype = field
    if dtype == pl.String:
        return iso_ts(expr)
    if isinstance(dtype, pl.Datetime):
        e = expr.dt.replace_time_zone("UTC") if dtype.time_zone is None else expr.dt.convert_time_zone("UTC")
        return e.cast(_UTC)
    if dtype.is_integer():
        return epoch_us_ts(expr.cast(pl.Int64))
    return pl.lit(None, dtype=_UTC)


# --- user agents -------------------------------------------------------------------------------

def ua_device(ua: pl.Expr) -> pl.Expr:
    """desktop / mobile / tablet from a browser user agent (null stays null)."""
    return (pl.when(ua.is_null()).then(_NULL_STR)
            .when(ua.str.contains(r"(?i)ipad|tablet|kindle|silk/")).then(pl.lit("tablet"))
            .when(ua.str.contains(r"(?i)mobi|iphone|ipod|windows phone")).then(pl.lit("mobile"))
            .when(ua.str.contains(r"(?i)android")).then(pl.lit("tablet"))  # Android without "Mobile"
            .otherwise(pl.lit("desktop")))


def ua_browser(ua: pl.Expr) -> pl.Expr:
    """Browser family from a user agent; order matters (Edge and Opera also say Chrome)."""
    return (pl.when(ua.is_null()).then(_NULL_STR)
            .when(ua.str.contains(r"Edg(e|A|iOS)?/")).then(pl.lit("Edge"))
            .when(ua.str.contains(r"OPR/|Opera")).then(pl.lit("Opera"))
            .when(ua.str.contains(r"SamsungBrowser/")).then(pl.lit("Samsung Internet"))
            .when(ua.str.contains(r"Firefox/|FxiOS/")).then(pl.lit("Firefox"))
            .when(ua.str.contains(r"Chrome/|CriOS/|Chromium/")).then(pl.lit("Chrome"))
            .when(ua.str.contains(r"Safari/")).then(pl.lit("Safari"))
            .otherwise(pl.lit("Other")))


# --- output ------------------------------------------------------------------------------------

def finish(lf: pl.LazyFrame, schema: pl.Schema, columns: dict[str, pl.Expr],
           extras: dict[str, pl.Expr] | None = None, ident: pl.Expr | None = None) -> pl.LazyFrame:
    """Select the canonical columns (null-filled when absent), extras as String, the event id's
    hash (``DUP_KEY``, below), then _file/_row.
    ``ident``: the export's own event id, when it has one (Snowplow's ``event_id``): two rows
    with different ids are two events, however alike their adapted columns (a tracker that
    fires twice in one millisecond), so its hash joins what duplicates compare (``DUP_KEY``)."""
    unknown = set(columns) - set(CANONICAL_COLUMNS)
    if unknown:
        raise ValueError(f"not canonical columns: {sorted(unknown)}")
    out = [
        (columns[name] if name in columns else pl.lit(None)).cast(OUTPUT_DTYPES[name], strict=False).alias(name)
        for name in CANONICAL_COLUMNS
    ]
    out += [e.cast(_STR, strict=False).alias(k) for k, e in (extras or {}).items()]
    if ident is not None:
        # (signed: Spark's Arrow conversion has no unsigned 64-bit type)
        out.append(ident.cast(_STR, strict=False).hash(0).reinterpret(signed=True).alias(DUP_KEY))
    out += [pl.col(c) for c in (SOURCE_FILE, ROW) if c in schema]
    return lf.select(out)


# --- registry (imported last: the modules use the helpers above) -------------------------------

from . import ga4, segment, shopify, snowplow

ADAPTERS: dict[str, ModuleType] = {m.NAME: m for m in (ga4, segment, snowplow, shopify)}


def detect_format(schema: pl.Schema) -> str | None:
    """Name of the adapter whose ``sniff`` accepts ``schema``; None for a generic event table."""
    for name, mod in ADAPTERS.items():
        if mod.sniff(schema):
            return name
    return None


def adapt(name: str, lf: pl.LazyFrame) -> pl.LazyFrame:
    """Run adapter ``name`` on ``lf``."""
    try:
        mod = ADAPTERS[name]
    except KeyError:
        from ...errors import InputError, suggestion

        raise InputError(f"unknown log format {name!r}",
                         suggestion(name, ADAPTERS) or f"choose one of: {', '.join(ADAPTERS)}") from None
    return mod.adapt(lf)


__all__ = ["ADAPTERS", "SEGMENT_COLUMNS", "adapt", "detect_format"]
