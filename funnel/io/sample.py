"""Seeded synthetic shop logs with planted abandonment causes and ground-truth labels.

``generate_sample`` simulates a small Nordic online shop (EUR prices, GA4-style event names)
over ``weeks`` weeks and plants one story per abandonment reason of ``docs/domain.md``:

- **shipping**: from ``Plan.shipping_shock`` the free-shipping threshold rises 50 -> 100 EUR
  and the flat rates rise; carts where shipping is a high share of the value leave soon after
  ``add_shipping_info``, some after reading ``/shipping-info``.
- **payment**: between ``Plan.outage_start`` and ``Plan.outage_end`` the payment provider
  behind card, Apple Pay and MobilePay fails (``payment_failed`` / ``PAYMENT_ERROR``); buyers
  retry, some switch to PayPal or Klarna, most leave. Outside it a few ``card_declined`` exits
  and "no signal" payment exits (reached payment, maybe switched method, then left).
- **returns**: buyers who read ``/returns-policy`` after adding to cart and then leave.
- **ui_friction**: from ``Plan.ui_bug_start`` the mobile address form rejects valid input
  (``form_error``, repeated submits, minutes of dwell, back to ``/cart``); all period long a
  forced ``/account/login`` step for new users, slow pages (``load_ms`` > 4000) and JS errors.
- **unknown**: "just browsing" exits with no signal (the largest group).

Signals are noisy on purpose: converters also read the returns policy, recover from failed
payments and form errors and pay high shipping; some abandoners carry a stray signal that is
not their reason. ``labels`` holds the true reason of every session that reached
``add_to_cart`` without ``purchase`` (and of no other session).

Everything is drawn from one ``random.Random(seed)``: the same arguments give identical frames
and byte-identical CSV files.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, UTC
from pathlib import Path

import polars as pl

EVENT_COLUMNS: tuple[str, ...] = (
    "timestamp", "session_id", "user_id", "event", "page_url", "cart_value", "currency",
    "shipping_cost", "payment_method", "error_type", "load_ms",
)
SESSION_COLUMNS: tuple[str, ...] = (
    "session_id", "user_id", "device", "channel", "country", "user_type", "landing_page",
)
LABEL_COLUMNS: tuple[str, ...] = ("session_id", "true_reason")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"   # 2026-10-05T14:03:22.120Z

_EVENT_SCHEMA = {
    "timestamp": pl.Int64, "session_id": pl.String, "user_id": pl.String, "event": pl.String,
    "page_url": pl.String, "cart_value": pl.Float64, "currency": pl.String,
    "shipping_cost": pl.Float64, "payment_method": pl.String, "error_type": pl.String,
    "load_ms": pl.Int64,
}
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Sample:
    """Generated logs: ``events`` (one row per event), ``sessions`` (one row per session) and
    ``labels`` (``session_id``, ``true_reason``; one row per abandoned cart)."""

    events: pl.DataFrame
    sessions: pl.DataFrame
    labels: pl.DataFrame


@dataclass(frozen=True)
class Plan:
    """The planted story of one sample: dates are UTC days, end dates exclusive."""

    start: date
    end: date
    shipping_shock: date
    outage_start: date
    outage_end: date
    ui_bug_start: date
    free_shipping_before: float = 50.0
    free_shipping_after: float = 100.0
    rates_before: tuple[float, float] = (4.90, 9.90)    # standard, express
    rates_after: tuple[float, float] = (7.90, 14.90)
    outage_methods: tuple[str, ...] = ("card", "apple_pay", "mobilepay")   # one PSP
    ui_bug_device: str = "mobile"


def sample_plan(start: date = date(2026, 9, 28), weeks: int = 8) -> Plan:
    """Planted dates for a period; with the default 8 weeks: shipping shock from day 21, outage
    on days 30-33, mobile address-form bug from day 35 to the end (dates scale with ``weeks``).
    """
    days = 7 * weeks

    def at(frac: float) -> date:
        return start + timedelta(days=min(days - 1, round(days * frac)))

    outage = at(30 / 56)
    return Plan(start=start, end=start + timedelta(days=days), shipping_shock=at(21 / 56),
                outage_start=outage, outage_end=min(outage + timedelta(days=4),
                                                    start + timedelta(days=days)),
                ui_bug_start=at(35 / 56))


# --- the shop ---------------------------------------------------------------------------

_CATEGORIES = {   # category -> (median price, product nouns)
    "jackets": (115, ("shell-jacket", "down-parka", "rain-jacket", "softshell", "fleece-jacket")),
    "knitwear": (69, ("merino-sweater", "wool-cardigan", "knit-vest", "alpaca-jumper")),
    "shoes": (89, ("trail-runner", "winter-boot", "leather-sneaker", "hiking-boot")),
    "bags": (79, ("daypack", "weekender", "tote-bag", "sling-bag", "laptop-backpack")),
    "accessories": (29, ("merino-beanie", "wool-socks", "mittens", "scarf", "buff")),
    "home": (45, ("linen-towel", "wool-blanket", "candle-set", "ceramic-mug", "pillow-case")),
    "outdoor": (59, ("thermos", "camp-stool", "headlamp", "sit-pad", "trekking-poles")),
}
_ADJECTIVES = ("nordic", "arctic", "classic", "light", "recycled", "lapland", "forest")
_INFO_PAGES = ("/returns-policy", "/shipping-info", "/account/login")
_DEVICES = (("mobile", "desktop", "tablet"), (55, 37, 8))
_CHANNELS = (("organic", "paid_search", "social", "email", "direct"), (32, 22, 16, 10, 20))
_COUNTRIES = (("FI", "SE", "DE", "EE", "NO", "DK"), (46, 20, 13, 8, 7, 6))
_HOURS = (1.2, .7, .4, .3, .3, .5, 1.0, 1.8, 2.6, 3.2, 3.5, 3.6, 3.7, 3.6, 3.5, 3.6, 4.0, 4.6,
          5.0, 5.2, 4.8, 3.8, 2.8, 2.2)
_WEEKDAYS = (1.0, .95, .95, 1.0, 1.05, .9, 1.15)
_GAP_DAYS = (0, 0, 1, 1, 2, 2, 3, 4, 5, 7, 10, 14)
_METHODS = ("card", "paypal", "klarna", "mobilepay", "apple_pay")
_METHOD_WEIGHTS = {"FI": (35, 13, 15, 22, 15), "DK": (35, 12, 13, 28, 12)}
_METHOD_DEFAULT = (45, 20, 20, 3, 12)

# Hazards (probability an event happens where it is checked); tuned so that ~70% of carts are
# abandoned and every reason is well represented.
_P_CART = 0.27
_P_RETURNS_VIEW = 0.14      # reads the returns policy after adding to cart ...
_P_RETURNS_EXIT = 0.55      # ... and leaves because of it
_P_UNKNOWN = {"cart": 0.23, "checkout": 0.08, "shipping": 0.09, "payment": 0.07}
_UNKNOWN_BY_DEVICE = {"mobile": 1.25, "tablet": 1.0, "desktop": 0.8}   # mobile leaves more
_P_FORCED_LOGIN = {"new": 0.45, "returning": 0.12}
_P_FORCED_EXIT = 0.2
_P_SHIP_INFO_EXIT = 0.025   # reads /shipping-info at checkout and leaves before seeing costs
_P_SLOW = {"mobile": 0.05, "tablet": 0.04, "desktop": 0.025}
_P_SLOW_EXIT = 0.45
_P_JS_ERROR, _P_JS_EXIT = 0.02, 0.4
_P_BUG_HIT, _P_BUG_EXIT = 0.6, 0.65
_P_FORM_ERROR = 0.08        # ordinary INPUT_REQUIRED slips, fixed at once
_P_PAY_NOSIGNAL = 0.09      # trust / missing method: leaves at payment without an error
_P_OUTAGE_FAIL, _P_DECLINE, _P_SOFT_FAIL = 0.9, 0.1, 0.01


def _ship_exit_probability(cost: float, value: float) -> float:
    if cost <= 0:
        return 0.015
    return min(0.75, 0.03 + 2.3 * cost / value)


class _Sim:
    """Holds the rng, the plan and the growing event columns."""

    def __init__(self, seed: int, plan: Plan):
        self.rng = random.Random(seed)
        self.plan = plan
        epoch = datetime(plan.start.year, plan.start.month, plan.start.day, tzinfo=UTC)
        self.t0 = int(epoch.timestamp() * 1000)

        def ms(d: date) -> int:
            return self.t0 + (d - plan.start).days * _DAY_MS

        self.shock_ms, self.bug_ms = ms(plan.shipping_shock), ms(plan.ui_bug_start)
        self.outage = (ms(plan.outage_start), ms(plan.outage_end))
        self.cols: dict[str, list] = {c: [] for c in _EVENT_SCHEMA}
        crng = random.Random(20260928)   # the catalogue is the same shop for every seed
        self.products: dict[str, list[tuple[str, float]]] = {}
        pid = 1000
        for cat, (median, nouns) in _CATEGORIES.items():
            items = []
            for noun in nouns:
                for _ in range(crng.randint(2, 4)):
                    pid += crng.randint(1, 9)
                    price = max(6.0, median * crng.lognormvariate(0, 0.35))
                    items.append((f"/product/{crng.choice(_ADJECTIVES)}-{noun}-{pid}",
                                  round(round(price) - 0.10, 2)))
            self.products[cat] = items
        self.price = {url: p for items in self.products.values() for url, p in items}
        # per-session state
        self.t = 0
        self.sid = self.uid = self.device = self.country = self.user_type = self.method = ""
        self.value = self.cost = self.scale = self.drift = 0.0
        self.recovery = False
        self.returns_at: str | None = None

    # --- emitting ---------------------------------------------------------------------
    def wait(self, lo: float, hi: float) -> None:
        """Advance the clock by a log-uniform number of seconds in [lo, hi] (plus ms)."""
        s = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
        self.t += int(s * 1000) + self.rng.randint(1, 999)

    def emit(self, event: str, page: str, value: float | None = None, ship: float | None = None,
             method: str | None = None, error: str | None = None, load: int | None = None) -> None:
        c = self.cols
        c["timestamp"].append(self.t)
        c["session_id"].append(self.sid)
        c["user_id"].append(self.uid)
        c["event"].append(event)
        c["page_url"].append(page)
        c["cart_value"].append(None if value is None else round(value, 2))
        c["currency"].append(None if value is None else "EUR")
        c["shipping_cost"].append(ship)
        c["payment_method"].append(method)
        c["error_type"].append(error)
        c["load_ms"].append(load)
        self.t += self.rng.randint(5, 400)   # strictly increasing within a session

    def page(self, url: str, slow: bool = False) -> None:
        if slow:
            load = self.rng.randint(4100, 11500)
        else:
            median = {"mobile": 1250, "tablet": 1000, "desktop": 750}[self.device]
            load = int(median * self.rng.lognormvariate(0, 0.4))
            if not 300 <= load <= 2500:
                load = self.rng.randint(300, 2500)
            if self.rng.random() < 0.01:   # background slowness, converters too
                load = self.rng.randint(2600, 5200)
        self.emit("page_view", url, load=load)
        self.t += load

    def product(self, url: str) -> None:
        self.page(url)
        self.emit("view_item", url)

    def random_page(self) -> str:
        r = self.rng.random()
        if r < 0.2:
            return "/"
        cat = self.rng.choice(list(self.products))
        if r < 0.5:
            return f"/category/{cat}"
        return self.rng.choice(self.products[cat])[0]

    def visit(self, url: str) -> None:
        (self.product if url.startswith("/product/") else self.page)(url)

    def stray(self, p: float) -> None:
        """Noise at exit: sometimes one more ordinary page before leaving."""
        if self.rng.random() < p:
            self.wait(5, 120)
            self.visit(self.random_page())

    def in_outage(self) -> bool:
        return self.outage[0] <= self.t < self.outage[1]

    def shipping_cost(self, express: bool) -> float:
        p = self.plan
        after = self.t >= self.shock_ms
        threshold = p.free_shipping_after if after else p.free_shipping_before
        standard, fast = p.rates_after if after else p.rates_before
        if express:
            return fast
        return 0.0 if self.value >= threshold else standard

    # --- sessions ---------------------------------------------------------------------
    def browse(self, landing: str, user_type: str) -> None:
        rng = self.rng
        self.visit(landing)
        for _ in range(min(12, int(rng.expovariate(1 / 2.2)))):
            self.wait(8, 150)
            r = rng.random()
            if r < 0.025:
                url = "/returns-policy"
            elif r < 0.05:
                url = "/shipping-info"
            elif r < 0.06 + (0.04 if user_type == "returning" else 0):
                url = "/account/login"
            else:
                url = self.random_page()
            self.visit(url)

    def cart(self, landing: str, user_type: str,
             recovery: list[str] | None) -> tuple[str | None, list[str]]:
        """A session that adds to cart; returns (true reason, or None if it purchased; items).

        Stages run in funnel order; each returns a reason when the buyer leaves there.
        """
        rng = self.rng
        self.value, self.user_type, self.recovery = 0.0, user_type, recovery is not None
        self.scale = 0.35 if recovery else 1.0   # a reminder-email return is a keen buyer
        self.drift = self.scale * _UNKNOWN_BY_DEVICE[self.device]
        self.returns_at = None
        if rng.random() < _P_RETURNS_VIEW:
            self.returns_at = rng.choices(("cart", "checkout", "shipping", "payment"),
                                          (35, 25, 25, 15))[0]
        items = self.fill_cart(landing, recovery)
        for stage in (self.at_cart, self.at_checkout, self.at_shipping, self.at_payment):
            reason = stage()
            if reason is not None:
                return reason, items
        self.wait(4, 25)
        self.page("/checkout/confirmation")
        self.emit("purchase", "/checkout/confirmation", value=self.value, ship=self.cost,
                  method=self.method)
        return None, items

    def fill_cart(self, landing: str, recovery: list[str] | None) -> list[str]:
        rng = self.rng
        self.visit(landing)
        if recovery:
            items = list(recovery)
        else:
            for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
                self.wait(8, 120)
                if rng.random() < 0.03:   # policy reading before any cart: noise, not a reason
                    self.visit(rng.choice(_INFO_PAGES[:2]))
                    self.wait(10, 60)
                self.visit(self.random_page())
            here = self.cols["page_url"][-1]
            first = here if here.startswith("/product/") and rng.random() < 0.7 \
                else self.any_product()
            items = [first]
            if rng.random() < 0.25:
                items.append(self.any_product())
            if rng.random() < 0.1:
                items.append(first)   # a second unit
        current = self.cols["page_url"][-1]
        for url in items:
            if url != current:
                self.wait(10, 90)
                self.product(url)
                current = url
            self.wait(15, 150)
            self.value += self.price[url]
            self.emit("add_to_cart", url, value=self.value)
        return items

    def any_product(self) -> str:
        return self.rng.choice(self.products[self.rng.choice(list(self.products))])[0]

    def returns_here(self, stage: str) -> bool:
        """Reads the returns policy at ``stage`` (if planned there); True when it then leaves."""
        if self.returns_at != stage:
            return False
        self.wait(10, 90)
        self.page("/returns-policy")
        self.wait(30, 180)
        if self.rng.random() < _P_RETURNS_EXIT:
            if self.rng.random() < 0.3:
                self.page("/cart")
            return True
        return False

    def slow_exit(self, url: str, p_slow: float) -> bool:
        slow = self.rng.random() < p_slow
        self.page(url, slow=slow)
        return slow and self.rng.random() < _P_SLOW_EXIT

    def at_cart(self) -> str | None:
        rng = self.rng
        if self.returns_here("cart"):
            return "returns"
        if rng.random() < _P_UNKNOWN["cart"] * self.drift:
            if rng.random() < 0.5:
                self.wait(5, 60)
                self.page("/cart")
                self.emit("view_cart", "/cart", value=self.value)
            self.stray(0.3)
            return "unknown"
        self.wait(5, 60)
        if rng.random() < 0.9:
            self.page("/cart")
            self.emit("view_cart", "/cart", value=self.value)
            self.wait(5, 60)
        self.page("/checkout")
        self.emit("begin_checkout", "/checkout", value=self.value)
        return None

    def at_checkout(self) -> str | None:
        rng = self.rng
        if rng.random() < _P_FORCED_LOGIN[self.user_type] * (0.3 if self.recovery else 1):
            self.wait(2, 10)
            self.page("/account/login")
            if rng.random() < _P_FORCED_EXIT:
                if rng.random() < 0.4:
                    self.wait(15, 150)
                    self.page("/cart")
                return "ui_friction"
            self.wait(40, 200)   # signs in or registers
        if rng.random() < _P_SHIP_INFO_EXIT * self.scale:
            self.wait(5, 60)
            self.page("/shipping-info")
            return "shipping"
        if self.returns_here("checkout"):
            return "returns"
        if rng.random() < _P_UNKNOWN["checkout"] * self.drift:
            self.stray(0.25)
            return "unknown"
        return None

    def at_shipping(self) -> str | None:
        """Address form, then ``add_shipping_info`` reveals the cost."""
        rng = self.rng
        self.wait(2, 8)
        if self.slow_exit("/checkout/shipping", _P_SLOW[self.device]):
            return "ui_friction"
        if rng.random() < _P_JS_ERROR:
            self.wait(3, 30)
            self.emit("exception", "/checkout/shipping", error="js_error")
            if rng.random() < _P_JS_EXIT:
                return "ui_friction"
        self.wait(30, 200)
        bugged = self.device == self.plan.ui_bug_device and self.t >= self.bug_ms
        if bugged and rng.random() < _P_BUG_HIT:
            if self.address_bug():
                return "ui_friction"
        elif rng.random() < _P_FORM_ERROR:
            self.emit("form_error", "/checkout/shipping", error="INPUT_REQUIRED")
            self.wait(10, 60)
        if self.returns_here("shipping"):
            return "returns"
        if rng.random() < 0.05:   # converters read delivery info too
            self.page("/shipping-info")
            self.wait(15, 90)
            self.page("/checkout/shipping")
            self.wait(5, 30)
        express = rng.random() < 0.17
        self.cost = self.shipping_cost(express)
        self.emit("add_shipping_info", "/checkout/shipping", value=self.value, ship=self.cost)
        if rng.random() < _ship_exit_probability(self.cost, self.value) * self.scale:
            self.wait(8, 60)
            r = rng.random() * (0.4 if self.cost == 0 else 1)   # free but slow: reads delivery
            if r < 0.4:
                self.page("/shipping-info")
            elif r < 0.6:   # tries the other tier, still too much
                self.emit("add_shipping_info", "/checkout/shipping", value=self.value,
                          ship=self.shipping_cost(not express))
            elif r < 0.8:
                self.page("/cart")
            return "shipping"
        if rng.random() < _P_UNKNOWN["shipping"] * self.drift:
            self.wait(10, 400)
            self.stray(0.25)
            return "unknown"
        return None

    def address_bug(self) -> bool:
        """The mobile address form rejects valid input; True when the buyer gives up."""
        rng = self.rng
        exits = rng.random() < _P_BUG_EXIT
        resubmit = rng.random() < 0.35   # the submit fires add_shipping_info, then fails
        for k in range(rng.randint(2, 5) if exits else rng.randint(1, 2)):
            if resubmit:
                self.emit("add_shipping_info", "/checkout/shipping", value=self.value,
                          ship=self.shipping_cost(False))
                self.wait(1, 5)
            self.emit("form_error", "/checkout/shipping",
                      error="INPUT_INVALID" if rng.random() < 0.8 else "INPUT_REQUIRED")
            self.wait(30, 150)
            if k and rng.random() < 0.4:
                self.page("/checkout/shipping")   # reload and type it all again
                self.wait(20, 90)
        if exits:
            if rng.random() < 0.7:
                self.page("/cart")
                self.emit("view_cart", "/cart", value=self.value)
            self.stray(0.15)
        return exits

    def at_payment(self) -> str | None:
        rng = self.rng
        self.wait(3, 20)
        if self.slow_exit("/checkout/payment", _P_SLOW[self.device] * 0.6):
            return "ui_friction"
        if self.returns_here("payment"):
            return "returns"
        self.wait(15, 120)
        method = rng.choices(_METHODS, _METHOD_WEIGHTS.get(self.country, _METHOD_DEFAULT))[0]
        if rng.random() < _P_PAY_NOSIGNAL * self.scale:   # no card at hand, no trust, no method
            r = rng.random()
            if r < 0.3:
                return "payment"
            self.emit("add_payment_info", "/checkout/payment", value=self.value, method=method)
            if r < 0.8:
                for other in rng.sample([m for m in _METHODS if m != method], rng.randint(1, 2)):
                    self.wait(15, 90)
                    self.emit("add_payment_info", "/checkout/payment", value=self.value,
                              method=other)
            return "payment"
        self.method = method
        self.emit("add_payment_info", "/checkout/payment", value=self.value, method=method)
        outage = method in self.plan.outage_methods and self.in_outage()
        if outage:
            fail, error = _P_OUTAGE_FAIL, "PAYMENT_ERROR"
        elif method == "card":
            fail, error = _P_DECLINE, "card_declined"
        else:
            fail, error = _P_SOFT_FAIL, "PAYMENT_ERROR"
        if rng.random() < fail:
            if not self.payment_recovers(fail, error, outage):
                self.stray(0.1)
                return "payment"
        elif rng.random() < _P_UNKNOWN["payment"] * self.drift:
            self.wait(10, 300)
            self.stray(0.2)
            return "unknown"
        return None

    def payment_recovers(self, fail: float, error: str, outage: bool) -> bool:
        """After a failed payment: retries, maybe a switch of method; True when it goes on."""
        rng = self.rng
        self.wait(3, 20)
        self.emit("payment_failed", "/checkout/payment", method=self.method, error=error)
        tries = rng.choices((0, 1, 2), (35, 40, 25))[0] if outage else rng.choice((0, 1, 1))
        for _ in range(tries):
            self.wait(15, 90)
            self.emit("add_payment_info", "/checkout/payment", value=self.value,
                      method=self.method)
            self.wait(3, 20)
            if rng.random() >= (fail if outage else 0.4):
                return True
            self.emit("payment_failed", "/checkout/payment", method=self.method, error=error)
        if rng.random() < (0.25 if outage else 0.4):
            others = [m for m in _METHODS
                      if m not in self.plan.outage_methods and m != self.method]
            self.wait(20, 120)
            self.method = rng.choice(others)
            self.emit("add_payment_info", "/checkout/payment", value=self.value,
                      method=self.method)
            return True
        return False


def _draw_sessions(rng: random.Random, n: int, days: int) -> list[tuple[int, int, int]]:
    """(start ms from t0, user index, session index of that user), n of them, chronological."""
    day_w = [_WEEKDAYS[d % 7] * (1 + 0.004 * d) for d in range(days)]
    out: list[tuple[int, int, int]] = []
    user = 0
    while len(out) < n:
        k = 1 if rng.random() < 0.75 else min(7, 2 + int(rng.expovariate(1 / 1.3)))
        day = rng.choices(range(days), day_w)[0]
        last = -1
        for j in range(k):
            if j:
                day += rng.choice(_GAP_DAYS)
            start = day * _DAY_MS + rng.choices(range(24), _HOURS)[0] * 3_600_000 \
                + rng.randrange(3_600_000)
            if last >= 0 and start < last + 3 * 3_600_000:
                start = last + 3 * 3_600_000 + rng.randrange(4 * 3_600_000)
            if start >= days * _DAY_MS:
                break
            out.append((start, user, j))
            last = start
        user += 1
    out = out[:n]
    out.sort()
    return out


def generate_sample(n_sessions: int = 6000, seed: int = 7, start: date = date(2026, 9, 28),
                    weeks: int = 8) -> Sample:
    """Simulate ``n_sessions`` sessions over ``weeks`` weeks from ``start`` (UTC)."""
    if n_sessions < 1:
        raise ValueError("n_sessions must be at least 1")
    if weeks < 1:
        raise ValueError("weeks must be at least 1")
    if isinstance(start, datetime):
        start = start.date()
    plan = sample_plan(start, weeks)
    sim = _Sim(seed, plan)
    rng = sim.rng
    draws = _draw_sessions(rng, n_sessions, 7 * weeks)
    width = max(6, len(str(n_sessions)))
    user_ids: dict[int, str] = {}
    users: dict[int, tuple[str, str, bool]] = {}   # device, country, seen before the period
    pending: dict[int, tuple[int, list[str]]] = {}   # user -> (abandoned at ms, items)
    srows: dict[str, list[str]] = {c: [] for c in SESSION_COLUMNS}
    labels: list[tuple[str, str]] = []
    for i, (start_ms, u, j) in enumerate(draws):
        if u not in users:
            users[u] = (rng.choices(*_DEVICES)[0], rng.choices(*_COUNTRIES)[0],
                        rng.random() < 0.2)
            user_ids[u] = f"u_{len(user_ids) + 1:0{max(5, width - 1)}d}"
        main_device, country, known = users[u]
        user_type = "returning" if (j or known) else "new"
        device = main_device if rng.random() < 0.85 else rng.choices(*_DEVICES)[0]
        sim.sid, sim.uid, sim.device, sim.country = f"s_{i + 1:0{width}d}", user_ids[u], device, \
            country
        sim.t = sim.t0 + start_ms
        recovery = None
        if u in pending and start_ms - pending[u][0] < 7 * _DAY_MS and rng.random() < 0.4:
            recovery = pending.pop(u)[1]
            channel = "email" if rng.random() < 0.7 else "direct"
            landing = recovery[0]
        else:
            channel = rng.choices(*_CHANNELS)[0]
            if user_type == "returning" and rng.random() < 0.3:
                channel = rng.choice(("email", "direct"))
            landing = _landing(sim, channel)
        p_cart = _P_CART + (0.08 if user_type == "returning" else 0) \
            + {"email": 0.08, "paid_search": 0.03, "social": -0.08}.get(channel, 0) \
            + (0.03 if device == "desktop" else 0)
        if recovery or rng.random() < p_cart:
            reason, items = sim.cart(landing, user_type, recovery)
            if reason is not None:
                labels.append((sim.sid, reason))
                pending[u] = (start_ms, items)
            else:
                pending.pop(u, None)
        else:
            sim.browse(landing, user_type)
        for col, v in zip(SESSION_COLUMNS, (sim.sid, sim.uid, device, channel, country,
                                            user_type, landing)):
            srows[col].append(v)

    events = (
        pl.DataFrame(sim.cols, schema=_EVENT_SCHEMA)
        .with_row_index("_seq")
        .with_columns(pl.col("timestamp").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"))
        .sort("timestamp", "session_id", "_seq")
        .select(EVENT_COLUMNS)
    )
    sessions = pl.DataFrame(srows, schema={c: pl.String for c in SESSION_COLUMNS})
    label_df = pl.DataFrame(labels, schema={"session_id": pl.String, "true_reason": pl.String},
                            orient="row").sort("session_id")
    return Sample(events=events, sessions=sessions, labels=label_df)


def _landing(sim: _Sim, channel: str) -> str:
    rng = sim.rng
    home, cat, prod = {"paid_search": (0, 40, 60), "social": (20, 30, 50),
                       "email": (30, 40, 30), "organic": (35, 30, 35),
                       "direct": (80, 20, 0)}[channel]
    kind = rng.choices(("home", "cat", "prod"), (home, cat, prod))[0]
    cats = list(sim.products)
    if kind == "home":
        return "/"
    if kind == "cat":
        return "/category/sale" if channel == "email" and rng.random() < 0.5 \
            else f"/category/{rng.choice(cats)}"
    return rng.choice(sim.products[rng.choice(cats)])[0]


def sample_paths(out_dir: Path) -> list[Path]:
    """The files ``write_sample`` writes into ``out_dir``: events, sessions, labels."""
    return [Path(out_dir) / name for name in ("events.csv", "sessions.csv", "labels.csv")]


def write_sample(out_dir: Path, n_sessions: int = 6000, seed: int = 7,
                 start: date = date(2026, 9, 28), weeks: int = 8) -> list[Path]:
    """Write ``events.csv``, ``sessions.csv`` and ``labels.csv`` into ``out_dir`` (created if
    missing); returns the three paths. Same arguments give byte-identical files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = generate_sample(n_sessions=n_sessions, seed=seed, start=start, weeks=weeks)
    paths = sample_paths(out)
    s.events.write_csv(paths[0], datetime_format=TIMESTAMP_FORMAT, float_precision=2,
                       null_value="")
    s.sessions.write_csv(paths[1])
    s.labels.write_csv(paths[2])
    return paths
