"""The signal catalogue: the one place that says what in a log is evidence for which reason.

Every signal has an id ``<reason>.<name>``, the reason it supports, its kind (``explicit``: the
log says so — an error event or alert; ``inferred``: behaviour that suggests it), a weight
(explicit signals weigh several times more than inferred ones) and the event names, URL
regexes and error types that match it by default (docs/domain.md, "Observable signals").
Matching of event names and error types is case-insensitive; URL patterns are regular
expressions matched against the URL path (scheme and host removed, so ``^/returns`` works for
full URLs too).

Users extend or override it in ``funnel.toml``::

    [signals.payment]                 # reason-level keys feed the reason's primary signal
    step = "pay"                      # which funnel step is "the payment step" (a role)
    events = ["trns_error"]
    error_types = ["hard", "soft"]

    [signals.returns.policy_view]     # one signal: extend (or replace) its matchers
    url_patterns = ["/palautukset"]
    replace = false                   # true: use only the values given here
    weight = 1.0
    enabled = true

    [thresholds]
    shipping_share = 0.15             # shipping cost / cart value above which costs are "high"
    quick_exit = "10m"                # "left soon after the shipping cost appeared"
    dwell_ratio = 3                   # dwell above ratio x the dwell quantile of carts that
    dwell_quantile = 0.75             # moved on from the same step to the next (buyers or not)
    slow_page_ms = 4000               # Core Web Vitals "poor" LCP
    payment_attempts = 2              # payment-step submits that count as retrying
    repeat_submits = 2                # same-step submits that count as repeating
    min_score = 0.5                   # below this a cart's reason is "unknown"
    resolved_factor = 0.2             # weight left to a signal the buyer moved past
    recency_bonus = 0.3               # favour the reason whose evidence came last
    corroboration = 0.25              # share of further signals' weight added to the strongest
    full_weight_af = 0.25             # an inferred signal keeps its full weight only where at
                                      # least this share of leaving with it is in excess of
                                      # carts without it (less: proportionally less weight)

Unknown keys are ``ConfigError`` with a "did you mean".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import Config, parse_duration
from ..errors import ConfigError, suggestion
from ..schema import REASONS

EXPLICIT = "explicit"
INFERRED = "inferred"


@dataclass(frozen=True)
class Signal:
    """One catalogue entry. ``lift`` is False for signals defined by the exit itself (a
    converter can never show them, so a with/without comparison would say nothing)."""

    id: str
    reason: str
    kind: str
    weight: float
    description: str
    events: tuple[str, ...] = ()
    url_patterns: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    enabled: bool = True
    lift: bool = True

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[1]

    @property
    def column(self) -> str:
        return signal_column(self.id)

    @property
    def url_regex(self) -> str | None:
        return "|".join(f"(?:{p})" for p in self.url_patterns) if self.url_patterns else None


def signal_column(signal_id: str) -> str:
    return f"sig__{signal_id}"


_RETURNS_URL = (r"(?i)/[^?#]*(?:returns|return[-_]?polic|refund|exchanges?(?:[-_/?#.]|$)|palautu"
                r"|palautus|vaihto-ja-palautus|returer|returnering|returrett|r(?:ü|ue)ckgabe"
                r"|widerruf|umtausch|r(?:ü|ue)cksend|devoluci)")
_INFO_WORDS = r"shipping|delivery|toimitus\w*|frakt\w*|versand\w*|leverans\w*|levering\w*|envios?"
_SHIPPING_URL = (r"(?i)(?:shipping|delivery)[-_]?(?:info|information|policy|policies|times?|costs?"
                 r"|rates?|faq|terms)"
                 r"|/(?:pages|help|info|faq|policies|support|customer-service|asiakaspalvelu)/(?:"
                 + _INFO_WORDS + r")|^/(?:" + _INFO_WORDS + r")(?:[/?#.]|$)")
_LOGIN_URL = (r"(?i)/(?:[^?#]*/)?(?:log-?in|sign-?in|sign_in|sign-?up|register|registration"
              r"|create-account|my-account|account/(?:new|create)|kirjaudu\w*|rekisteroidy|anmelden"
              r"|logga-in)(?:[/?#.]|$)")
_CART_URL = r"(?i)/(?:cart|basket|bag|ostoskori|warenkorb|varukorg|kurv|panier|carrito)/?(?:[?#]|$)"

DEFAULT_SIGNALS: tuple[Signal, ...] = (
    # --- payment ---------------------------------------------------------------------------
    Signal("payment.error", "payment", EXPLICIT, 2.0,
           "payment failed or the card was declined",
           events=("payment_failed", "payment_error", "payment_declined", "card_declined",
                   "trns_error", "transaction_error", "transaction_failed", "Payment Failed",
                   "Payment Declined", "checkout_payment_failed", "payment_failure"),
           error_types=("PAYMENT_ERROR", "card_declined", "card_error", "declined", "payment_failed",
                        "payment_declined", "hard", "soft", "hard_decline", "soft_decline",
                        "insufficient_funds", "do_not_honor", "expired_card", "incorrect_cvc",
                        "processing_error", "authentication_failed", "authorization_failed",
                        "3ds_failed", "gateway_error",
                        "fraud_suspected")),
    Signal("payment.retry", "payment", INFERRED, 0.5,
           "the payment step was submitted several times"),
    Signal("payment.method_switch", "payment", INFERRED, 0.6,
           "the buyer switched payment method"),
    Signal("payment.exit_at_step", "payment", INFERRED, 0.2,
           "the buyer left at the payment step", lift=False),
    # --- shipping --------------------------------------------------------------------------
    Signal("shipping.delivery_error", "shipping", EXPLICIT, 2.0,
           "a delivery or shipping error was shown",
           events=("delivery_error", "shipping_error", "Shipping Error", "address_undeliverable"),
           error_types=("DELIVERY_ERROR", "shipping_error", "delivery_unavailable",
                        "address_undeliverable", "no_shipping_rates")),
    Signal("shipping.info_page", "shipping", INFERRED, 0.6,
           "the buyer viewed shipping or delivery information after adding to the cart",
           events=("view_shipping_info", "shipping_info_viewed", "view_delivery_info",
                   "Shipping Policy Viewed", "shipping_policy_viewed", "delivery_info_viewed"),
           url_patterns=(_SHIPPING_URL,)),
    Signal("shipping.high_share", "shipping", INFERRED, 0.5,
           "shipping cost was a high share of the cart value"),
    Signal("shipping.quick_exit", "shipping", INFERRED, 0.5,
           "the buyer left soon after a non-zero shipping cost first appeared", lift=False),
    # --- returns ---------------------------------------------------------------------------
    Signal("returns.policy_view", "returns", INFERRED, 0.8,
           "the buyer viewed the returns or refund policy after adding to the cart",
           events=("view_returns_policy", "view_return_policy", "returns_policy_viewed",
                   "Returns Policy Viewed", "refund_policy_viewed", "view_refund_policy"),
           url_patterns=(_RETURNS_URL,)),
    # --- UI friction -----------------------------------------------------------------------
    Signal("ui_friction.form_error", "ui_friction", EXPLICIT, 2.0,
           "a form, validation, checkout or script error was shown",
           events=("form_error", "checkout_error", "validation_error", "exception", "js_error",
                   "javascript_error", "network_error", "Checkout Error", "rage_click",
                   "dead_click", "error_displayed"),
           error_types=("INPUT_INVALID", "INPUT_REQUIRED", "CHECKOUT_ERROR", "validation_error",
                        "js_error", "javascript_error", "network_error", "timeout",
                        "server_error", "form_error", "rage_click", "dead_click")),
    Signal("ui_friction.forced_account", "ui_friction", INFERRED, 0.6,
           "the buyer was sent to a login or account page after adding to the cart",
           events=("login_required", "account_required", "Sign In Required", "sign_up_prompt"),
           url_patterns=(_LOGIN_URL,)),
    Signal("ui_friction.exit_at_account", "ui_friction", INFERRED, 0.6,
           "the buyer left at the account step", lift=False),
    Signal("ui_friction.slow_page", "ui_friction", INFERRED, 0.6,
           "a checkout page loaded slowly"),
    Signal("ui_friction.long_dwell", "ui_friction", INFERRED, 0.3,
           "the buyer stayed at a step far longer than buyers who moved on"),
    Signal("ui_friction.backtrack", "ui_friction", INFERRED, 0.3,
           "the buyer went back to an earlier step or the cart",
           events=("view_cart", "Cart Viewed", "cart_viewed"),
           url_patterns=(_CART_URL,)),
    Signal("ui_friction.repeat_submit", "ui_friction", INFERRED, 0.3,
           "the same step was submitted repeatedly"),
)

# Event names that only say "something went wrong": for these a known error type decides the
# signal (Shopify alert_displayed type PAYMENT_ERROR, GA4 exception). A specific event name
# (payment_failed, form_error) decides by itself, whatever its error type says.
GENERIC_EVENTS: tuple[str, ...] = ("alert_displayed", "exception", "error", "error_displayed",
                                   "app_error", "alert", "Error Displayed", "checkout_alert")

# Reason-level keys feed these signals ([signals.<reason>] events / url_patterns / error_types).
PRIMARY: dict[tuple[str, str], str] = {
    ("payment", "events"): "payment.error",
    ("payment", "error_types"): "payment.error",
    ("payment", "url_patterns"): "payment.error",
    ("shipping", "events"): "shipping.info_page",
    ("shipping", "error_types"): "shipping.delivery_error",
    ("shipping", "url_patterns"): "shipping.info_page",
    ("returns", "events"): "returns.policy_view",
    ("returns", "error_types"): "returns.policy_view",
    ("returns", "url_patterns"): "returns.policy_view",
    ("ui_friction", "events"): "ui_friction.form_error",
    ("ui_friction", "error_types"): "ui_friction.form_error",
    ("ui_friction", "url_patterns"): "ui_friction.forced_account",
}

# Funnel-step roles: found by name first, then by the step's event names.
ROLE_PATTERNS: dict[str, str] = {
    "payment": r"(?i)pay|billing|maksu",
    "shipping": r"(?i)shipping|delivery|toimitus|versand|frakt",
    "ui_friction": r"(?i)account|login|sign.?in|register",
}


@dataclass(frozen=True)
class Thresholds:
    shipping_share: float = 0.15
    quick_exit_us: int = 10 * 60 * 1_000_000
    dwell_ratio: float = 3.0
    dwell_quantile: float = 0.75
    slow_page_ms: float = 4000.0
    payment_attempts: int = 2
    repeat_submits: int = 2
    min_score: float = 0.5
    resolved_factor: float = 0.2
    recency_bonus: float = 0.3
    corroboration: float = 0.25
    full_weight_af: float = 0.25


_THRESHOLD_KEYS: dict[str, str] = {   # toml key -> kind
    "shipping_share": "fraction", "quick_exit": "duration", "dwell_ratio": "positive",
    "dwell_quantile": "fraction", "slow_page_ms": "positive", "payment_attempts": "count",
    "repeat_submits": "count", "min_score": "positive", "resolved_factor": "fraction",
    "recency_bonus": "nonneg", "corroboration": "fraction", "full_weight_af": "fraction",
}
_REASON_KEYS = ("step", "events", "url_patterns", "error_types")
_SIGNAL_KEYS = ("events", "url_patterns", "error_types", "weight", "enabled", "replace",
                "description")


@dataclass(frozen=True)
class Catalogue:
    signals: tuple[Signal, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    steps: dict[str, str] = field(default_factory=dict)   # reason -> configured step name

    @property
    def active(self) -> tuple[Signal, ...]:
        return tuple(s for s in self.signals if s.enabled)

    def get(self, signal_id: str) -> Signal:
        for s in self.signals:
            if s.id == signal_id:
                return s
        raise KeyError(signal_id)

    def for_reason(self, reason: str) -> tuple[Signal, ...]:
        return tuple(s for s in self.active if s.reason == reason)

    def role_step(self, role: str, cfg: Config) -> int | None:
        """Index of the funnel step playing ``role`` (payment, shipping, ui_friction = account):
        the configured step, else a step named after the role, else a step whose event names
        match it. The first (cart) and last (purchase) steps never play a role."""
        names = list(cfg.step_names)
        if role in self.steps:
            return names.index(self.steps[role])
        inner = range(1, len(names) - 1)
        pat = re.compile(ROLE_PATTERNS[role])
        for i in inner:
            if names[i].lower() == role:
                return i
        for i in inner:
            if pat.search(names[i]):
                return i
        for i in inner:
            if any(pat.search(e) for e in cfg.steps[i].events):
                return i
        return None


def _strs(value: Any, where: str, src: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{src}: {where} must be a list of strings, got {value!r}")
    return tuple(value)


def _check_regex(patterns: tuple[str, ...], where: str, src: str) -> None:
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise ConfigError(f"{src}: {where}: invalid regular expression {p!r} ({exc})",
                              "write a Python/Rust regex, e.g. '/returns|/refund'") from None


def _merge(sig: Signal, key: str, values: tuple[str, ...], replace_: bool) -> Signal:
    old = () if replace_ else getattr(sig, key)
    return replace(sig, **{key: tuple(dict.fromkeys(old + values))})


def _thresholds(raw: dict[str, Any], src: str) -> Thresholds:
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: [thresholds] must be a table")
    kw: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _THRESHOLD_KEYS:
            raise ConfigError(f"{src}: unknown key {key!r} in [thresholds]",
                              suggestion(key, _THRESHOLD_KEYS)
                              or f"allowed keys: {', '.join(_THRESHOLD_KEYS)}")
        kind = _THRESHOLD_KEYS[key]
        if kind == "duration":
            try:
                kw["quick_exit_us"] = parse_duration(value, f"thresholds.{key}")
            except ConfigError as exc:
                raise ConfigError(f"{src}: {exc.message}", exc.hint) from None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{src}: thresholds.{key} must be a number, got {value!r}")
        ok = {"fraction": 0 <= value <= 1, "positive": value > 0, "nonneg": value >= 0,
              "count": value >= 1 and float(value).is_integer()}[kind]
        if not ok:
            need = {"fraction": "between 0 and 1", "positive": "greater than 0",
                    "nonneg": "0 or more", "count": "a whole number, 1 or more"}[kind]
            raise ConfigError(f"{src}: thresholds.{key} must be {need}, got {value!r}")
        kw[key] = int(value) if kind == "count" else float(value)
    return Thresholds(**kw)


def build_catalogue(raw: dict[str, Any] | None, step_names: tuple[str, ...] = ()) -> Catalogue:
    """Validate ``Config.signals`` ({"signals": ..., "thresholds": ..., "source": ...}) and
    apply it over the defaults. Raises ConfigError (with a did-you-mean) on unknown keys."""
    raw = raw or {}
    src = str(raw.get("source", "config"))
    sigs = {s.id: s for s in DEFAULT_SIGNALS}
    steps: dict[str, str] = {}
    table = raw.get("signals", {}) or {}
    if not isinstance(table, dict):
        raise ConfigError(f"{src}: [signals] must be a table")
    for reason, body in table.items():
        if reason not in REASONS:
            raise ConfigError(f"{src}: unknown reason {reason!r} in [signals]",
                              suggestion(reason, REASONS) or f"reasons: {', '.join(REASONS)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{src}: [signals.{reason}] must be a table")
        names = [s.name for s in DEFAULT_SIGNALS if s.reason == reason]
        for key, value in body.items():
            where = f"signals.{reason}.{key}"
            if key == "step":
                if not isinstance(value, str):
                    raise ConfigError(f"{src}: {where} must be a step name, got {value!r}")
                if step_names and value not in step_names:
                    raise ConfigError(f"{src}: {where}: no funnel step named {value!r}",
                                      suggestion(value, step_names)
                                      or f"steps: {', '.join(step_names)}")
                steps[reason] = value
            elif key in _REASON_KEYS:
                vals = _strs(value, where, src)
                if key == "url_patterns":
                    _check_regex(vals, where, src)
                sid = PRIMARY[(reason, key)]
                sigs[sid] = _merge(sigs[sid], key, vals, False)
            elif key in names:
                sid = f"{reason}.{key}"
                sigs[sid] = _signal_override(sigs[sid], value, where, src)
            else:
                cands = list(_REASON_KEYS) + names
                raise ConfigError(f"{src}: unknown key {key!r} in [signals.{reason}]",
                                  suggestion(key, cands) or f"allowed: {', '.join(cands)}")
    th = _thresholds(raw.get("thresholds", {}) or {}, src)
    return Catalogue(tuple(sigs[s.id] for s in DEFAULT_SIGNALS), th, steps)


def _signal_override(sig: Signal, body: Any, where: str, src: str) -> Signal:
    if not isinstance(body, dict):
        raise ConfigError(f"{src}: [{where}] must be a table")
    for key in body:
        if key not in _SIGNAL_KEYS:
            raise ConfigError(f"{src}: unknown key {key!r} in [{where}]",
                              suggestion(key, _SIGNAL_KEYS) or f"allowed: {', '.join(_SIGNAL_KEYS)}")
    rep = body.get("replace", False)
    if not isinstance(rep, bool):
        raise ConfigError(f"{src}: {where}.replace must be true or false")
    for key in ("events", "url_patterns", "error_types"):
        if key in body:
            vals = _strs(body[key], f"{where}.{key}", src)
            if key == "url_patterns":
                _check_regex(vals, f"{where}.{key}", src)
            sig = _merge(sig, key, vals, rep)
    if "weight" in body:
        w = body["weight"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"{src}: {where}.weight must be a number >= 0, got {w!r}")
        sig = replace(sig, weight=float(w))
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise ConfigError(f"{src}: {where}.enabled must be true or false")
        sig = replace(sig, enabled=body["enabled"])
    if "description" in body:
        sig = replace(sig, description=str(body["description"]))
    return sig


def catalogue(cfg: Config) -> Catalogue:
    """The catalogue for ``cfg`` (defaults + ``[signals.*]`` + ``[thresholds]``)."""
    return build_catalogue(cfg.signals, cfg.step_names)


def describe(signal_id: str, cat: Catalogue | None = None) -> str:
    cat = cat or Catalogue(DEFAULT_SIGNALS)
    try:
        return cat.get(signal_id).description
    except KeyError:
        return signal_id
