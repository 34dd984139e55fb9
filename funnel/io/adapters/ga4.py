"""GA4 BigQuery export (``events_YYYYMMDD`` tables) as NDJSON or Parquet.

One row per event; parameters live in the repeated ``event_params`` record
(``key`` + ``value{string_value, int_value, float_value, double_value}``). A BigQuery JSON export
writes INT64 values as strings and leaves null fields out; a Parquet export keeps the types.
Both are handled. Event names stay GA4's (``add_to_cart``, ``begin_checkout``,
``add_shipping_info``, ``add_payment_info``, ``purchase``, ``exception`` ...), which are the names
the default funnel steps match.
"""

from __future__ import annotations

import polars as pl

from . import as_float, as_int, as_str, epoch_us_ts, finish, first_of, get, iso_ts, nonempty

NAME = "ga4"
DESCRIPTION = "GA4 BigQuery export (events_*), NDJSON or Parquet"
NEEDS = "event_timestamp, event_name, user_pseudo_id and a nested event_params list"   # (what ``sniff`` checks, for messages)
MAPPING: dict[str, str] = {
    "ts": "event_timestamp (µs since epoch, UTC)",
    "event": "event_name (GA4 names kept: add_to_cart, begin_checkout, add_shipping_info, "
             "add_payment_info, purchase, exception ...)",
    "session_id": "user_pseudo_id + '.' + event_params.ga_session_id (null without ga_session_id)",
    "user_id": "user_pseudo_id (the id the session is built on; GA4 user_id is not used)",
    "url": "event_params.page_location",
    "cart_value": "ecommerce.purchase_revenue, else event_params.value",
    "currency": "event_params.currency",
    "shipping_cost": "ecommerce.shipping_value, else event_params.shipping",
    "payment_method": "event_params.payment_type",
    "error_type": "exception events: event_params.description, else 'exception'",
    "checkout_step": "event_params.checkout_step (custom parameter, usually absent)",
    "load_ms": "not in GA4 exports (null)",
    "device": "device.category",
    "country": "geo.country",
    "channel": "traffic_source.medium, else traffic_source.source (first-user acquisition)",
    "browser": "device.web_info.browser, else device.browser",
    "platform": "platform (WEB, IOS, ANDROID)",
    "shipping_method": "event_params.shipping_tier",
}

_REQUIRED = ("event_timestamp", "event_name", "user_pseudo_id", "event_params")
_VALUE_FIELDS = ("string_value", "int_value", "double_value", "float_value")


def sniff(schema: pl.Schema) -> bool:
    """The columns ``NEEDS`` names."""
    return all(c in schema for c in _REQUIRED) and isinstance(schema["event_params"], pl.List)


def _param(schema: pl.Schema, key: str) -> pl.Expr:
    """The value of event parameter ``key`` as a String (whichever *_value is set), or null."""
    dtype = schema.get("event_params")
    if not isinstance(dtype, pl.List) or not isinstance(dtype.inner, pl.Struct):
        return pl.lit(None, dtype=pl.String)
    inner = {f.name: f.dtype for f in dtype.inner.fields}
    value = inner.get("value")
    if "key" not in inner or not isinstance(value, pl.Struct):
        return pl.lit(None, dtype=pl.String)
    vfields = {f.name: f.dtype for f in value.fields}
    hit = pl.element().filter(pl.element().struct.field("key") == key).struct.field("value")
    parts = []
    for name in _VALUE_FIELDS:
        vt = vfields.get(name)
        if vt is None or vt == pl.Null:
            continue
        e = hit.struct.field(name)
        parts.append(e if vt == pl.String else e.cast(pl.String, strict=False))
    if not parts:
        return pl.lit(None, dtype=pl.String)
    return nonempty(pl.col("event_params").list.eval(first_of(*parts)).list.first())


def _ts(schema: pl.Schema) -> pl.Expr:
    expr, dtype = get(schema, "event_timestamp")  # type: ignore[misc]
    if dtype.is_integer():
        return epoch_us_ts(expr.cast(pl.Int64))
    if dtype == pl.String:   # JSON export: INT64 as a string; tolerate an ISO string too
        us = expr.str.strip_chars().cast(pl.Int64, strict=False)
        return pl.coalesce(epoch_us_ts(us), iso_ts(expr))
    if dtype.is_float():
        return epoch_us_ts(expr.cast(pl.Int64, strict=False))
    if isinstance(dtype, pl.Datetime):
        return expr.dt.replace_time_zone("UTC") if dtype.time_zone is None else expr.dt.convert_time_zone("UTC")
    return pl.lit(None, dtype=pl.Datetime("us", "UTC"))


def adapt(lf: pl.LazyFrame) -> pl.LazyFrame:
    schema = lf.collect_schema()
    str_param = lambda k: _param(schema, k)
    num_param = lambda k: _param(schema, k).str.strip_chars().cast(pl.Float64, strict=False)

    event = as_str(get(schema, "event_name"))
    pseudo = as_str(get(schema, "user_pseudo_id"))
    session = pl.concat_str([pseudo, pl.lit("."), str_param("ga_session_id")])
    columns = {
        "ts": _ts(schema),
        "event": event,
        "session_id": session,
        "user_id": pseudo,
        "url": str_param("page_location"),
        "cart_value": pl.coalesce(as_float(get(schema, "ecommerce.purchase_revenue")), num_param("value")),
        "currency": str_param("currency"),
        "shipping_cost": pl.coalesce(as_float(get(schema, "ecommerce.shipping_value")), num_param("shipping")),
        "payment_method": str_param("payment_type"),
        "error_type": pl.when(event == "exception")
                        .then(pl.coalesce(str_param("description"), pl.lit("exception"))),
        "checkout_step": as_int((str_param("checkout_step"), pl.String)),
    }
    medium, source = as_str(get(schema, "traffic_source.medium")), as_str(get(schema, "traffic_source.source"))
    extras = {
        "device": as_str(get(schema, "device.category")),
        "country": as_str(get(schema, "geo.country")),
        "channel": pl.coalesce(medium, source),
        "browser": pl.coalesce(as_str(get(schema, "device.web_info.browser")), as_str(get(schema, "device.browser"))),
        "platform": as_str(get(schema, "platform")),
        "shipping_method": str_param("shipping_tier"),
    }
    return finish(lf, schema, columns, extras)
