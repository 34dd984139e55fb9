"""Canonical event schema: the one place that names columns and their roles.

Every reader and adapter produces a LazyFrame whose columns are named after these roles;
the core only ever sees canonical names. Role detection in ``funnel.io.detect`` uses the
synonyms declared here, and ``funnel init`` writes them into ``funnel.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# Canonical column names (the engine never sees any other spelling).
TS = "ts"
EVENT = "event"
SESSION = "session_id"
USER = "user_id"
URL = "url"
CART_VALUE = "cart_value"
CURRENCY = "currency"
SHIPPING = "shipping_cost"
PAYMENT = "payment_method"
ERROR = "error_type"
CHECKOUT_STEP = "checkout_step"
LOAD_MS = "load_ms"
# Columns added by the pipeline itself.
SOURCE_FILE = "_file"
ROW = "_row"
DUP_KEY = "_dup_key"   # the hash of what "exact duplicate" compares besides the kept columns (api.project_input)
STEP = "_step"
ENTITY = "_entity"
REJECT = "_reject"


@dataclass(frozen=True)
class Role:
    """A column role: its canonical name, target dtype and the source names that mean it."""

    name: str
    column: str
    dtype: type[pl.DataType] | pl.DataType
    synonyms: tuple[str, ...]
    description: str
    required: bool = False


ROLES: tuple[Role, ...] = (
    Role("timestamp", TS, pl.Datetime("us", "UTC"),
         ("timestamp", "ts", "event_time", "time", "event_timestamp", "datetime", "date_time",
          "derived_tstamp", "collector_tstamp", "created_at", "occurred_at", "event_date_time"),
         "when the event happened (ISO 8601 or epoch s/ms/us)", required=True),
    Role("event", EVENT, pl.String,
         ("event", "event_name", "event_type", "action", "name", "type", "eventname"),
         "event name", required=True),
    Role("session_id", SESSION, pl.String,
         ("session_id", "session", "sessionid", "sid", "domain_sessionid", "ga_session_id",
          "visit_id", "session_key"),
         "session identifier (built from user + 30 min inactivity when absent)"),
    Role("user_id", USER, pl.String,
         ("user_id", "userid", "user", "uid", "visitor_id", "client_id", "clientid",
          "anonymous_id", "anonymousid", "user_pseudo_id", "domain_userid", "customer_id",
          "distinct_id", "device_id"),
         "user or visitor identifier"),
    Role("url", URL, pl.String,
         ("url", "page", "page_url", "path", "page_path", "page_location", "page_urlpath",
          "location", "uri", "pathname"),
         "page URL or path"),
    Role("cart_value", CART_VALUE, pl.Float64,
         ("cart_value", "value", "revenue", "order_value", "cart_total", "total", "amount",
          "total_price", "subtotal", "basket_value"),
         "cart or order value"),
    Role("currency", CURRENCY, pl.String, ("currency", "currency_code", "cur"), "currency code"),
    Role("shipping_cost", SHIPPING, pl.Float64,
         ("shipping_cost", "shipping", "shipping_value", "shipping_price", "delivery_cost",
          "shipping_amount", "freight"),
         "shipping cost shown to the buyer"),
    Role("payment_method", PAYMENT, pl.String,
         ("payment_method", "payment_type", "payment", "gateway", "payment_gateway",
          "payment_provider"),
         "payment method or gateway"),
    Role("error_type", ERROR, pl.String,
         ("error_type", "error", "alert_type", "error_code", "exception", "alert", "error_message"),
         "error or alert type shown to the buyer"),
    Role("checkout_step", CHECKOUT_STEP, pl.Int64,
         ("checkout_step", "step", "step_number", "checkout_step_number"),
         "checkout step number"),
    Role("load_ms", LOAD_MS, pl.Float64,
         ("load_ms", "load_time_ms", "page_load_ms", "lcp_ms", "load_time", "page_load_time"),
         "page load time in milliseconds"),
)

ROLE_BY_NAME: dict[str, Role] = {r.name: r for r in ROLES}
CANONICAL_COLUMNS: tuple[str, ...] = tuple(r.column for r in ROLES)
NUMERIC_COLUMNS: tuple[str, ...] = (CART_VALUE, SHIPPING, LOAD_MS)

# Per-session attributes usable as segments (sessions log or event columns).
DEFAULT_SEGMENT_CANDIDATES: tuple[str, ...] = (
    "device", "channel", "country", "user_type", "source", "browser", "platform",
)

REASONS: tuple[str, ...] = ("payment", "shipping", "returns", "ui_friction")
UNKNOWN = "unknown"
ALL_REASONS: tuple[str, ...] = REASONS + (UNKNOWN,)
