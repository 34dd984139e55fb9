"""Shopify Web Pixels customer events (``analytics.subscribe('all_events', ...)``) as NDJSON.

Event names stay Shopify's (``product_added_to_cart``, ``checkout_started``,
``checkout_shipping_info_submitted``, ``payment_info_submitted``, ``checkout_completed``,
``alert_displayed`` ...). Only checkout events carry ``data.checkout.token``; other events
(page views, cart adds, alerts) have no session id and are sessionized later by ``clientId``.
"""

from __future__ import annotations

import polars as pl

from . import any_ts, as_float, as_str, finish, first_of, get, ua_browser, ua_device

NAME = "shopify"
DESCRIPTION = "Shopify Web Pixels customer events, NDJSON"
NEEDS = "name, timestamp, clientId, and a context or data object"   # (what ``sniff`` checks, for messages)
MAPPING: dict[str, str] = {
    "ts": "timestamp (ISO 8601)",
    "event": "name (Shopify names kept)",
    "session_id": "none: built per clientId with the inactivity timeout (data.checkout.token is kept as checkout_token; "
                  "only checkout events carry it, so it would split a visit)",
    "user_id": "clientId",
    "url": "context.document.location.href, else context.window.location.href",
    "cart_value": "data.checkout.totalPrice.amount, else data.cartLine.merchandise.price.amount × "
                  "data.cartLine.quantity, else data.cartLine.cost.totalAmount.amount, "
                  "else data.cart.cost.totalAmount.amount",
    "currency": "data.checkout.currencyCode, else the currencyCode of the amount used",
    "shipping_cost": "data.checkout.shippingLine.price.amount",
    "payment_method": "data.checkout.transactions[0].gateway",
    "error_type": "alert_displayed: data.alert.type (PAYMENT_ERROR, DELIVERY_ERROR, INPUT_INVALID, "
                  "INPUT_REQUIRED, CHECKOUT_ERROR ...), else 'alert'",
    "checkout_step": "not in Web Pixels (null)",
    "load_ms": "not in Web Pixels (null)",
    "device": "context.navigator.userAgent (desktop / mobile / tablet)",
    "browser": "context.navigator.userAgent (browser family)",
    "channel": "utm_medium in the page URL (landing pages)",
    "country": "data.checkout.shippingAddress.countryCode, else billingAddress.countryCode",
}


def sniff(schema: pl.Schema) -> bool:
    """The columns ``NEEDS`` names."""
    return (all(c in schema for c in ("name", "timestamp", "clientId"))
            and ("context" in schema or "data" in schema))


def adapt(lf: pl.LazyFrame) -> pl.LazyFrame:
    schema = lf.collect_schema()
    s = lambda path: as_str(get(schema, path))
    f = lambda path: as_float(get(schema, path))

    name = s("name")
    line_value = f("data.cartLine.merchandise.price.amount") * f("data.cartLine.quantity")
    url = first_of(s("context.document.location.href"), s("context.window.location.href"))
    ua = s("context.navigator.userAgent")
    columns = {
        "ts": any_ts(get(schema, "timestamp")),
        "event": name,
        "session_id": pl.lit(None, pl.String),
        "user_id": s("clientId"),
        "url": url,
        "cart_value": pl.coalesce(f("data.checkout.totalPrice.amount"), line_value,
                                  f("data.cartLine.cost.totalAmount.amount"),
                                  f("data.cart.cost.totalAmount.amount")),
        "currency": pl.coalesce(s("data.checkout.currencyCode"), s("data.checkout.totalPrice.currencyCode"),
                                s("data.cartLine.merchandise.price.currencyCode"),
                                s("data.cartLine.cost.totalAmount.currencyCode"),
                                s("data.cart.cost.totalAmount.currencyCode")),
        "shipping_cost": f("data.checkout.shippingLine.price.amount"),
        "payment_method": s("data.checkout.transactions[0].gateway"),
        "error_type": pl.when(name == "alert_displayed").then(pl.coalesce(s("data.alert.type"), pl.lit("alert"))),
    }
    extras = {
        "checkout_token": s("data.checkout.token"),
        "device": ua_device(ua),
        "browser": ua_browser(ua),
        "channel": url.str.extract(r"[?&]utm_medium=([^&#]+)", 1),
        "country": pl.coalesce(s("data.checkout.shippingAddress.countryCode"),
                               s("data.checkout.billingAddress.countryCode")),
    }
    return finish(lf, schema, columns, extras)
