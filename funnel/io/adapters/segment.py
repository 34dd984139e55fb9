"""Segment (spec v2) messages as NDJSON: track calls with the e-commerce events.

Segment has no session id: sessions are built later from the user id and inactivity. Non-track
messages (``page``, ``screen``, ``identify`` ...) are kept with their type as the event name, so
page views (e.g. of a returns policy) stay usable.
"""

from __future__ import annotations

import polars as pl

from . import any_ts, as_float, as_int, as_str, finish, first_of, get, ua_browser, ua_device

NAME = "segment"
DESCRIPTION = "Segment spec v2 messages (track calls), NDJSON"
NEEDS = "type, event, timestamp, and anonymousId or userId (camelCase)"   # (what ``sniff`` checks, for messages)
MAPPING: dict[str, str] = {
    "ts": "timestamp (ISO 8601), else originalTimestamp",
    "event": "event for type=track ('Checkout Step Completed' with properties.shipping_method -> "
             "'Shipping Info Entered'; other names kept); the message type for page/screen/identify",
    "session_id": "none in Segment (null: sessions are built from user_id and inactivity)",
    "user_id": "userId, else anonymousId",
    "url": "context.page.url, else properties.url",
    "cart_value": "properties.value, else revenue, else total, else price × quantity",
    "currency": "properties.currency",
    "shipping_cost": "properties.shipping",
    "payment_method": "properties.payment_method",
    "error_type": "not in the e-commerce spec (null; 'Coupon Denied' keeps its event name)",
    "checkout_step": "properties.step",
    "load_ms": "not in Segment (null)",
    "device": "context.userAgent (desktop / mobile / tablet)",
    "browser": "context.userAgent (browser family)",
    "channel": "context.campaign.medium, else context.campaign.source",
    "country": "context.location.country",
    "platform": "context.device.type (mobile libraries)",
    "shipping_method": "properties.shipping_method",
}


def sniff(schema: pl.Schema) -> bool:
    """The columns ``NEEDS`` names."""
    return (all(c in schema for c in ("type", "event", "timestamp"))
            and ("anonymousId" in schema or "userId" in schema))


def adapt(lf: pl.LazyFrame) -> pl.LazyFrame:
    schema = lf.collect_schema()
    s = lambda path: as_str(get(schema, path))
    f = lambda path: as_float(get(schema, path))

    kind = s("type").str.to_lowercase()
    name = s("event")
    shipping_method = s("properties.shipping_method")
    event = (pl.when(kind.is_null() | (kind == "track"))
             .then(pl.when((name == "Checkout Step Completed") & shipping_method.is_not_null())
                   .then(pl.lit("Shipping Info Entered")).otherwise(name))
             .otherwise(kind))
    quantity = pl.coalesce(f("properties.quantity"), pl.lit(1.0))
    ua = s("context.userAgent")
    columns = {
        "ts": pl.coalesce(any_ts(get(schema, "timestamp")), any_ts(get(schema, "originalTimestamp"))),
        "event": event,
        "user_id": first_of(s("userId"), s("anonymousId")),
        "url": first_of(s("context.page.url"), s("properties.url")),
        "cart_value": pl.coalesce(f("properties.value"), f("properties.revenue"), f("properties.total"),
                                  f("properties.price") * quantity),
        "currency": s("properties.currency"),
        "shipping_cost": f("properties.shipping"),
        "payment_method": s("properties.payment_method"),
        "checkout_step": as_int(get(schema, "properties.step")),
    }
    extras: dict[str, pl.Expr] = {}
    if get(schema, "context.userAgent") is not None:
        extras["device"] = ua_device(ua)
        extras["browser"] = ua_browser(ua)
    if get(schema, "context.campaign") is not None:
        extras["channel"] = pl.coalesce(s("context.campaign.medium"), s("context.campaign.source"))
    if get(schema, "context.location.country") is not None:
        extras["country"] = s("context.location.country")
    if get(schema, "context.device.type") is not None:
        extras["platform"] = s("context.device.type")
    extras["shipping_method"] = shipping_method
    return finish(lf, schema, columns, extras)
