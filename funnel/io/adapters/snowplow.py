"""Snowplow enriched events with the Snowplow e-commerce plugin (``snowplow_ecommerce_action``).

Three layouts are understood, all through the same columns of the atomic events table:

* a warehouse export (CSV/TSV with a header, or Parquet) where each entity has its own column
  holding a JSON string: ``unstruct_event_com_snowplowanalytics_snowplow_ecommerce_
  snowplow_ecommerce_action_1_0_0`` (an object), ``contexts_com_snowplowanalytics_snowplow_
  ecommerce_checkout_step_1_0_0`` (an array) ... Column names may end in the full version
  (``_1_0_0``, BigQuery) or the major version only (``_1``, Snowflake/Databricks) and may be upper
  case (Snowflake);
* NDJSON from the Snowplow Analytics SDKs, where the same keys hold nested objects/arrays;
* the raw enriched TSV, where ``contexts``, ``derived_contexts`` and ``unstruct_event`` hold
  self-describing JSON. That file has no header: read it with ``has_header=False``,
  ``new_columns=ENRICHED_TSV_COLUMNS``, ``quote_char=None`` (see :func:`is_enriched_tsv_line`).

JSON strings are parsed with ``str.json_path_match`` (malformed JSON gives null, never an error).
"""

from __future__ import annotations

import re

import polars as pl

from ...schema import ROW, SOURCE_FILE
from . import any_ts, as_float, as_int, as_str, finish, first_of, get, nonempty, ua_browser, ua_device

NAME = "snowplow"
DESCRIPTION = "Snowplow enriched events with the e-commerce plugin (CSV/TSV/Parquet/NDJSON)"
NEEDS = "event_id, collector_tstamp, event_name and platform (the atomic events layout, any case)"   # (what ``sniff`` checks, for messages)
MAPPING: dict[str, str] = {
    "ts": "derived_tstamp, else collector_tstamp (UTC)",
    "event": "snowplow_ecommerce_action.type, renamed: add_to_cart -> add_to_cart; checkout_step "
             "step 1 -> begin_checkout, step 2 -> add_shipping_info, step 3 -> add_payment_info "
             "(the three steps of Snowplow's checkout_step entity; other step numbers stay "
             "'checkout_step'); transaction -> purchase; trns_error -> payment_failed; other actions "
             "keep their type (product_view, list_view, remove_from_cart, refund ...); rows without "
             "an action payload keep event_name (else event)",
    "session_id": "domain_sessionid, else client_session.sessionId (mobile)",
    "user_id": "domain_userid, else client_session.userId (mobile), else user_id, else network_userid",
    "url": "page_url",
    "cart_value": "transaction.revenue on transaction/trns_error; cart.total_value on other "
                  "e-commerce actions",
    "currency": "transaction.currency, else cart.currency (same rows as cart_value)",
    "shipping_cost": "transaction.shipping (transaction/trns_error)",
    "payment_method": "transaction.payment_method (transaction/trns_error), else "
                      "checkout_step.payment_method",
    "error_type": "trns_error: transaction_error.error_type (hard/soft), else error_shortcode, else "
                  "error_code, else 'trns_error'",
    "checkout_step": "checkout_step.step (checkout_step actions)",
    "load_ms": "PerformanceTiming context: loadEventEnd - navigationStart (when tracked)",
    "device": "mobile for platform 'mob', else from useragent (desktop / mobile / tablet)",
    "browser": "useragent (browser family; null for apps)",
    "country": "geo_country",
    "channel": "mkt_medium, else refr_medium",
    "platform": "platform (web, mob, ...)",
    "shipping_method": "checkout_step.delivery_method",
    "account_type": "checkout_step.account_type (e.g. guest; a property, not a signal: see the README)",
}

# Columns of the enriched TSV, in order (131 fields; same names as the atomic events table).
ENRICHED_TSV_COLUMNS: tuple[str, ...] = (
    "app_id", "platform", "etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "event",
    "event_id", "txn_id", "name_tracker", "v_tracker", "v_collector", "v_etl", "user_id",
    "user_ipaddress", "user_fingerprint", "domain_userid", "domain_sessionidx", "network_userid",
    "geo_country", "geo_region", "geo_city", "geo_zipcode", "geo_latitude", "geo_longitude",
    "geo_region_name", "ip_isp", "ip_organization", "ip_domain", "ip_netspeed", "page_url",
    "page_title", "page_referrer", "page_urlscheme", "page_urlhost", "page_urlport",
    "page_urlpath", "page_urlquery", "page_urlfragment", "refr_urlscheme", "refr_urlhost",
    "refr_urlport", "refr_urlpath", "refr_urlquery", "refr_urlfragment", "refr_medium",
    "refr_source", "refr_term", "mkt_medium", "mkt_source", "mkt_term", "mkt_content",
    "mkt_campaign", "contexts", "se_category", "se_action", "se_label", "se_property", "se_value",
    "unstruct_event", "tr_orderid", "tr_affiliation", "tr_total", "tr_tax", "tr_shipping",
    "tr_city", "tr_state", "tr_country", "ti_orderid", "ti_sku", "ti_name", "ti_category",
    "ti_price", "ti_quantity", "pp_xoffset_min", "pp_xoffset_max", "pp_yoffset_min",
    "pp_yoffset_max", "useragent", "br_name", "br_family", "br_version", "br_type",
    "br_renderengine", "br_lang", "br_features_pdf", "br_features_flash", "br_features_java",
    "br_features_director", "br_features_quicktime", "br_features_realplayer",
    "br_features_windowsmedia", "br_features_gears", "br_features_silverlight", "br_cookies",
    "br_colordepth", "br_viewwidth", "br_viewheight", "os_name", "os_family", "os_manufacturer",
    "os_timezone", "dvce_type", "dvce_ismobile", "dvce_screenwidth", "dvce_screenheight",
    "doc_charset", "doc_width", "doc_height", "tr_currency", "tr_total_base", "tr_tax_base",
    "tr_shipping_base", "ti_currency", "ti_price_base", "base_currency", "geo_timezone",
    "mkt_clickid", "mkt_network", "etl_tags", "dvce_sent_tstamp", "refr_domain_userid",
    "refr_dvce_tstamp", "derived_contexts", "domain_sessionid", "derived_tstamp", "event_vendor",
    "event_name", "event_format", "event_version", "event_fingerprint", "true_tstamp",
)
_EVENT_TYPES = {"page_view", "page_ping", "unstruct", "struct", "transaction", "transaction_item",
                "ad_impression"}
_REQUIRED = ("event_id", "collector_tstamp", "event_name", "platform")

# entity -> (column kind, vendor_name in column names, Iglu URI without version, known versions)
_ENTITIES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "action": ("unstruct_event", "com_snowplowanalytics_snowplow_ecommerce_snowplow_ecommerce_action",
               "iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/",
               ("1-0-0", "1-0-1", "1-0-2")),
    "checkout": ("contexts", "com_snowplowanalytics_snowplow_ecommerce_checkout_step",
                 "iglu:com.snowplowanalytics.snowplow.ecommerce/checkout_step/jsonschema/", ("1-0-0",)),
    "transaction": ("contexts", "com_snowplowanalytics_snowplow_ecommerce_transaction",
                    "iglu:com.snowplowanalytics.snowplow.ecommerce/transaction/jsonschema/", ("1-0-0",)),
    "transaction_error": ("contexts", "com_snowplowanalytics_snowplow_ecommerce_transaction_error",
                          "iglu:com.snowplowanalytics.snowplow.ecommerce/transaction_error/jsonschema/",
                          ("1-0-0",)),
    "cart": ("contexts", "com_snowplowanalytics_snowplow_ecommerce_cart",
             "iglu:com.snowplowanalytics.snowplow.ecommerce/cart/jsonschema/", ("1-0-0",)),
    "client_session": ("contexts", "com_snowplowanalytics_snowplow_client_session",
                       "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/",
                       ("1-0-0", "1-0-1", "1-0-2")),
    "performance": ("contexts", "org_w3_performance_timing",
                    "iglu:org.w3/PerformanceTiming/jsonschema/", ("1-0-0",)),
}


def is_enriched_tsv_line(line: str | bytes) -> bool:
    """True for a line of a raw (header-less) enriched TSV: 131 tab-separated fields."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    fields = text.rstrip("\r\n").split("\t")
    return len(fields) == len(ENRICHED_TSV_COLUMNS) and fields[5] in _EVENT_TYPES


def sniff(schema: pl.Schema) -> bool:
    """The columns ``NEEDS`` names."""
    names = {n.lower() for n in schema.names()}
    return all(c in names for c in _REQUIRED)


def _lowercase(lf: pl.LazyFrame, schema: pl.Schema) -> pl.LazyFrame:
    names = set(schema.names())
    rename = {n: n.lower() for n in schema.names()
              if n not in (SOURCE_FILE, ROW) and n != n.lower() and n.lower() not in names}
    return lf.rename(rename) if rename else lf


def _columns_for(schema: pl.Schema, kind: str, vendor_name: str) -> list[str]:
    pat = re.compile(rf"^{kind}_{vendor_name}_\d+(_\d+_\d+)?$")
    return sorted((c for c in schema.names() if pat.match(c)), reverse=True)  # newest version first


def _entity(schema: pl.Schema, entity: str, field: str) -> pl.Expr:
    """``field`` of the first ``entity`` attached to the event, as a String (or null)."""
    kind, vendor_name, uri, versions = _ENTITIES[entity]
    exprs: list[pl.Expr] = []
    for col in _columns_for(schema, kind, vendor_name):
        dtype = schema[col]
        if dtype == pl.String:
            path = f"$[0].{field}" if kind == "contexts" else f"$.{field}"
            exprs.append(nonempty(pl.col(col).str.json_path_match(path)))
        elif isinstance(dtype, pl.List):
            exprs.append(as_str(get(schema, f"{col}[0].{field}")))
        elif isinstance(dtype, pl.Struct):
            exprs.append(as_str(get(schema, f"{col}.{field}")))
    # raw enriched layout: self-describing JSON in contexts / derived_contexts / unstruct_event
    if kind == "contexts":
        for col in ("contexts", "derived_contexts"):
            if schema.get(col) == pl.String:
                exprs += [nonempty(pl.col(col).str.json_path_match(f"$.data[?(@.schema == '{uri}{v}')].data.{field}"))
                          for v in versions]
    elif schema.get("unstruct_event") == pl.String:
        raw = pl.col("unstruct_event")
        exprs.append(pl.when(raw.str.json_path_match("$.data.schema").str.starts_with(uri))
                     .then(nonempty(raw.str.json_path_match(f"$.data.data.{field}"))))
    return first_of(*exprs) if exprs else pl.lit(None, dtype=pl.String)


def _num(e: pl.Expr) -> pl.Expr:
    return as_float((e, pl.String))


def adapt(lf: pl.LazyFrame) -> pl.LazyFrame:
    lf = _lowercase(lf, lf.collect_schema())
    schema = lf.collect_schema()
    s = lambda path: as_str(get(schema, path))
    ent = lambda entity, field: _entity(schema, entity, field)

    action = ent("action", "type")
    step = as_int((ent("checkout", "step"), pl.String))
    is_txn = action.is_in(["transaction", "trns_error"])
    event = (pl.when(action == "checkout_step")
             .then(pl.when(step == 1).then(pl.lit("begin_checkout"))
                   .when(step == 2).then(pl.lit("add_shipping_info"))
                   .when(step == 3).then(pl.lit("add_payment_info"))
                   .otherwise(pl.lit("checkout_step")))
             .when(action == "transaction").then(pl.lit("purchase"))
             .when(action == "trns_error").then(pl.lit("payment_failed"))
             .when(action.is_not_null()).then(action)
             .otherwise(first_of(s("event_name"), s("event"))))
    nav_start = _num(ent("performance", "navigationStart"))
    load_end = _num(ent("performance", "loadEventEnd"))
    columns = {
        "ts": pl.coalesce(any_ts(get(schema, "derived_tstamp")), any_ts(get(schema, "collector_tstamp"))),
        "event": event,
        "session_id": first_of(s("domain_sessionid"), ent("client_session", "sessionId")),
        "user_id": first_of(s("domain_userid"), ent("client_session", "userId"), s("user_id"),
                            s("network_userid")),
        "url": s("page_url"),
        "cart_value": pl.when(is_txn).then(_num(ent("transaction", "revenue")))
                        .when(action.is_not_null()).then(_num(ent("cart", "total_value"))),
        "currency": pl.when(is_txn).then(ent("transaction", "currency"))
                      .when(action.is_not_null()).then(ent("cart", "currency")),
        "shipping_cost": pl.when(is_txn).then(_num(ent("transaction", "shipping"))),
        "payment_method": pl.coalesce(pl.when(is_txn).then(ent("transaction", "payment_method")),
                                      pl.when(action == "checkout_step").then(ent("checkout", "payment_method"))),
        "error_type": pl.when(action == "trns_error").then(
            pl.coalesce(ent("transaction_error", "error_type"), ent("transaction_error", "error_shortcode"),
                        ent("transaction_error", "error_code"), pl.lit("trns_error"))),
        "checkout_step": pl.when(action == "checkout_step").then(step),
        "load_ms": pl.when((load_end > 0) & (nav_start > 0) & (load_end >= nav_start)).then(load_end - nav_start),
    }
    platform = s("platform")
    ua = s("useragent")
    is_app = platform.is_in(["mob", "app", "tv", "cnsl", "iot"])
    extras = {
        "device": pl.when(platform == "mob").then(pl.lit("mobile")).otherwise(ua_device(ua)),
        "browser": pl.when(is_app).then(pl.lit(None, dtype=pl.String)).otherwise(ua_browser(ua)),
        "country": s("geo_country"),
        "channel": first_of(s("mkt_medium"), s("refr_medium")),
        "platform": platform,
        "shipping_method": pl.when(action == "checkout_step").then(ent("checkout", "delivery_method")),
        "account_type": pl.when(action == "checkout_step").then(ent("checkout", "account_type")),
    }
    return finish(lf, schema, columns, extras, ident=s("event_id"))
