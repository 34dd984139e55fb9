"""Fixes for the abandonment this data shows: one catalogue keyed by reason, ranked by money.

Each fix addresses catalogue signals (funnel.core.signals). Its estimate is the **excess
abandonment associated with those signals**: the lost carts (abandoned and not recovered later)
whose strongest evidence is one of the fix's signals, times the share of abandonment in excess
of comparable carts without the signal ((rate_with - rate_without) / rate_with, at the step
where carts first showed it, only when significant after Benjamini-Hochberg), times the average
order value. A lost cart counts for at most one reason fix, the one its strongest evidence
points to: each signal belongs to one fix (leaving at the payment step with no error, retry or
method switch — the buyer saw the card fields and left — to card trust; retries and method
switches to more payment methods; a login page seen, and leaving at the account step, to guest
checkout). A signal defined by leaving (``payment.exit_at_step``, ``ui_friction.exit_at_account``)
has no with/without comparison — every cart showing it left — so its carts name the fix with a
factor of 0. The seeds' step-level rule ("if purchases often stop at the
payment step, offer more payment methods") adds to the payment-methods fix the lost carts with no
reason found (``unknown``, so no reason fix counts them) that left at the payment step, times
(exit rate there - the other checkout steps' pooled exit rate) / exit rate there, when that is
significantly higher (``step_stop``). The seeds' other step-level rule ("when analytics shows a
step where purchases often stop, review that step's interface") is one card per checkout step
(``ui_friction.review_step``) with the same test and the same estimate on that step's lost carts
with no reason found, the tests adjusted together across the steps it scans (``step_reviews``);
it leaves out the payment step, whose such carts the payment-methods fix counts. The shipping
exit offer is an alternative to the free-shipping threshold (the same carts), and cart reminders
act on lost carts of every reason, so neither adds to the others.
Cart reminders use this shop's own recovery rate. These are associations, not experiments: the
estimate is the ceiling of what removing the problem could bring back, and the ``method`` field
says so. Every card carries the inputs of its estimate (``basis``, model.EstimateBasis: the order
value, each signal's lost carts and factor, the step-level and segment parts, the reminder's
counts) and its estimate is computed from that basis alone (``estimated_orders``), so every
estimate in the JSON can be recomputed from the JSON's numbers.

Research figures come from docs/domain.md; each names its source.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from ..config import Config
from ..model import Abandonment, EstimateBasis, Recommendation, ReminderBasis, SegmentBasis, SignalBasis, StepBasis
from ..schema import REASONS, UNKNOWN
from .finalize import make_rate
from .funnel import LEVEL
from .partials import NONE
from .reasons import signal_lift_counts
from .signals import catalogue
from .stats import benjamini_hochberg, two_proportion_test

# The survey behind the reason shares: they are shares of abandoners, not of all shoppers.
_SURVEY = (" (Baymard Institute 2024 survey; shoppers 'just browsing' excluded, several reasons "
           "per respondent)")


@dataclass(frozen=True)
class Fix:
    id: str
    reason: str
    title: str
    research: str
    signals: tuple[str, ...]
    segment_offer: bool = False    # aimed at the segment where the reason stands out
    stop_role: str | None = None   # also when carts often stop at this role's step (step_stop)


FIXES: tuple[Fix, ...] = (
    Fix("payment.methods", "payment",
        "Offer the payment methods your buyers expect, including wallets and mobile payment",
        "Among US shoppers who abandoned during checkout, 13% said there were not enough payment "
        "methods" + _SURVEY + "; 21% of sites offer only one (Baymard Institute).",
        ("payment.method_switch", "payment.retry"), stop_role="payment"),
    Fix("payment.keep_card_data", "payment",
        "Keep card details after a decline; suggest a retry for soft declines and another method "
        "for hard ones",
        "34% of sites clear the card fields after a decline or validation error, directly causing "
        "abandonment (Baymard Institute); among US shoppers who abandoned during checkout, 9% "
        "gave a declined card as a reason" + _SURVEY + ".",
        ("payment.error",)),
    Fix("payment.card_trust", "payment",
        "Reinforce trust around the card fields: known payment brands and security marks next to "
        "them, and the shop's look kept through an external payment page",
        "Among US shoppers who abandoned during checkout, 25% didn't trust the site with their "
        "card" + _SURVEY + ".",
        ("payment.exit_at_step",)),
    Fix("shipping.show_early", "shipping",
        "Show the shipping cost and an estimated delivery date on the product page and in the cart",
        "64% of users looked for the shipping cost on the product page and 43% of sites don't show "
        "it; 41% of sites show no delivery date (Baymard Institute); among US shoppers who "
        "abandoned during checkout, 21% could not see the total cost up front" + _SURVEY + ".",
        ("shipping.quick_exit", "shipping.info_page", "shipping.delivery_error")),
    Fix("shipping.free_threshold", "shipping",
        "Set a free-shipping threshold just above the average order value",
        "Extra costs (shipping, tax, fees) are the most common reason US shoppers who abandoned "
        "during checkout give: 48%" + _SURVEY + "; the threshold placement is a practitioner "
        "heuristic, not a study result.",
        ("shipping.high_share",)),
    Fix("shipping.exit_offer", "shipping",
        "Offer free or discounted delivery just before a cost-sensitive visitor leaves",
        "The seed guidance: a discount or free fast delivery offered just before the visitor "
        "would leave saves some carts; extra costs are the reason US shoppers who abandoned "
        "during checkout give most often: 48%" + _SURVEY + ".",
        ("shipping.high_share",), segment_offer=True),
    Fix("returns.clear_policy", "returns",
        "Make free, easy returns clear: link the returns policy from product pages, footer and "
        "checkout",
        "Among US shoppers who abandoned during checkout, 18% found the returns policy "
        "unsatisfactory" + _SURVEY + "; 43% of sites don't show it on product pages (Baymard "
        "Institute).",
        ("returns.policy_view",)),
    Fix("ui_friction.guest_checkout", "ui_friction",
        "Make guest checkout the most prominent option; offer an account on the confirmation page",
        "Among US shoppers who abandoned during checkout, 26% said the site wanted them to create "
        "an account" + _SURVEY + ".",
        ("ui_friction.forced_account", "ui_friction.exit_at_account")),
    Fix("ui_friction.fix_step", "ui_friction",
        "Fix the errors and slow pages on the step where sessions stall",
        "Among US shoppers who abandoned during checkout, 17% said the website had errors or "
        "crashed" + _SURVEY + "; Core Web Vitals rate LCP > 4 s as poor and 53% of mobile visits "
        "are abandoned when a page takes over 3 s (Google).",
        ("ui_friction.form_error", "ui_friction.slow_page")),
    Fix("ui_friction.fewer_fields", "ui_friction",
        "Cut fields and steps: billing = shipping address by default, inline validation",
        "The average checkout has 11.3 form fields where 8 are achievable, 31% of sites lack "
        "inline validation, and better checkout design is worth up to ~35% more conversions "
        "(Baymard Institute).",
        ("ui_friction.long_dwell", "ui_friction.repeat_submit", "ui_friction.backtrack")),
)

# The seeds' other step-level rule: one card per checkout step where purchases often stop
# (step_reviews); domain.md's UI-friction fixes say what to review there.
REVIEW_ID = "ui_friction.review_step"
REVIEW_TITLE = ("Review the interface of the {step} step, where purchases often stop: fewer steps, "
                "one-click buying for returning buyers, the shop's look kept through an external "
                "payment page, fast responses")
REVIEW_RESEARCH = ("The seed guidance: when analytics shows a step where purchases often stop, review "
                   "that step's interface; no more than three steps for a returning buyer. Among US "
                   "shoppers who abandoned during checkout, 22% said the checkout was too long or "
                   "complicated" + _SURVEY + "; the average checkout has 5.1 steps (Baymard "
                   "Institute); 53% of mobile visits are abandoned when a page takes over 3 s (Google).")

REMINDER_RESEARCH = ("The seed guidance: abandoned carts can be recovered with an e-mail reminder. "
                     "No study figure is used: the estimate assumes reminders double the recovery "
                     "this shop already sees without them.")


def _money(x: float, currency: str | None) -> str:
    return f"{currency + ' ' if currency else ''}{x:,.0f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.0f}%"


def _p(x: float | None) -> str:
    """A p- or q-value after its letter: ``= 0.012``, ``< 0.001``."""
    return "n/a" if x is None else "< 0.001" if x < 0.001 else f"= {x:.3f}"


# What one won-back order is worth (EstimateBasis.order_value_of).
AOV = "average order value"
REACHABLE_AVG = "reachable carts' average value"


def _aov(p: dict[str, pl.DataFrame]) -> float:
    """The average order value of purchases; without purchases (or their values), the average
    value of the lost carts, the best guess left of what a won-back order is worth."""
    t = p.get("diag:totals")
    r = p.get("diag:reasons")
    aov = lost = 0.0
    if t is not None and t.height:
        n = int(t["n_orders"].sum())
        aov = float(t["sum_order_value"].sum() or 0.0) / n if n else 0.0
    if r is not None and r.height:
        r = r.filter(~pl.col("recovered"))
        n = int(r["n_carts"].sum())
        lost = float(r["sum_value"].sum() or 0.0) / n if n else 0.0
    return aov or lost


def _reason_carts(p: dict[str, pl.DataFrame]) -> dict[str, int]:
    """Lost carts (abandoned, not recovered later) per primary reason."""
    r = p.get("diag:reasons")
    if r is None or not r.height:
        return {}
    g = r.filter(~pl.col("recovered")).group_by("reason").agg(pl.col("n_carts").sum())
    return {a: int(b) for a, b in g.iter_rows()}


def _reason_step(p: dict[str, pl.DataFrame], reason: str, cfg: Config) -> str | None:
    r = p.get("diag:reasons")
    if r is None or not r.height:
        return None
    g = (r.filter(pl.col("reason") == reason).group_by(LEVEL).agg(pl.col("n_carts").sum())
         .sort(["n_carts", LEVEL], descending=[True, False]))
    return cfg.steps[int(g[LEVEL][0]) - 1].name if g.height else None


def standout_segments(p: dict[str, pl.DataFrame], cfg: Config) -> dict[str, tuple[str, float, float]]:
    """reason -> (``column=value``, share of carts lost to the reason in it, elsewhere) for the
    segment where the reason is most over-represented (significant after BH, ratio >= 1.5)."""
    seg = p.get("diag:segments")
    if seg is None or not seg.height:
        return {}
    tests = []
    for col in sorted(set(seg["column"].to_list())):
        sub = seg.filter(pl.col("column") == col)
        total = int(sub["n_carts"].sum())
        sizes = sub.group_by("value").agg(pl.col("n_carts").sum())
        for value, size in sorted(sizes.iter_rows()):
            if value == NONE or size < cfg.min_segment_size:
                continue
            for r in REASONS:
                k_all = int(sub.filter(pl.col("reason") == r)["n_carts"].sum())
                k_in = int(sub.filter((pl.col("reason") == r) & (pl.col("value") == value))["n_carts"].sum())
                n_in, n_out, k_out = int(size), total - int(size), k_all - k_in
                if n_out <= 0 or k_in < 5:
                    continue
                tests.append((r, f"{col}={value}", k_in, n_in, k_out, n_out))
    pvals = [two_proportion_test(k1, n1, k2, n2) for _, _, k1, n1, k2, n2 in tests]
    qvals = benjamini_hochberg(pvals)
    cands: list[tuple[str, float, str, float, float]] = []
    for (r, label, k1, n1, k2, n2), q in zip(tests, qvals, strict=True):
        s_in, s_out = k1 / n1, (k2 / n2 if n2 else 0.0)
        rr = s_in / s_out if s_out > 0 else float("inf")
        if q is not None and q < 0.05 and rr >= 1.5:
            cands.append((r, rr, label, s_in, s_out))
    best: dict[str, tuple[str, float, float]] = {}
    for r, _, label, s_in, s_out in sorted(cands, key=lambda c: (c[0], -c[1], c[2])):
        best.setdefault(r, (label, s_in, s_out))
    return best


@dataclass(frozen=True)
class _Effect:
    """What the data says about one signal: comparison at a step and its attributable share."""

    signal: str
    description: str
    step: str | None
    n_with: int
    k_with: int              # abandoned, of n_with
    n_without: int
    k_without: int
    significant: bool
    comparison: str          # what 'without' means

    @property
    def rate_with(self) -> float | None:
        return self.k_with / self.n_with if self.n_with else None

    @property
    def rate_without(self) -> float | None:
        return self.k_without / self.n_without if self.n_without else None

    @property
    def attributable(self) -> float:
        """(rate_with - rate_without) / rate_with when significant, else 0."""
        if not self.significant or not self.rate_with or self.rate_without is None:
            return 0.0
        return max(0.0, (self.rate_with - self.rate_without) / self.rate_with)


def signal_effects(p: dict[str, pl.DataFrame], cfg: Config) -> dict[str, _Effect]:
    """Per signal: abandonment with vs without it (BH-adjusted), see reasons.signal_lift_counts.
    ``shipping.quick_exit`` (defined by leaving) is compared as 'a non-zero shipping cost was
    shown' vs 'free shipping was shown', from the shipping-share bands."""
    cat = catalogue(cfg)
    rows = signal_lift_counts(p, cfg)
    tests = [(s.id, s.description, cfg.steps[step].name, n1, k1, n2, k2, "carts that reached the step without it")
             for s, step, n1, k1, n2, k2 in rows]
    bands = p.get("diag:shipping_bands")
    if bands is not None and bands.height and any(s.id == "shipping.quick_exit" for s in cat.active):
        free, paid = bands.filter(pl.col("band") == 0), bands.filter(pl.col("band") > 0)
        n1, n2 = int(paid["n_carts"].sum()), int(free["n_carts"].sum())
        k1 = int(paid.filter(pl.col("abandoned"))["n_carts"].sum())
        k2 = int(free.filter(pl.col("abandoned"))["n_carts"].sum())
        ship = cat.role_step("shipping", cfg)
        tests.append(("shipping.quick_exit", "a non-zero shipping cost was shown",
                      cfg.steps[ship].name if ship is not None else None, n1, k1, n2, k2,
                      "carts shown free shipping"))
    pvals = [two_proportion_test(k1, n1, k2, n2) for *_, n1, k1, n2, k2, _c in tests]
    # The lift tests adjusted together as abandonment.signals adjusts them (a signal is
    # significant in both places or in neither); the quick-exit comparison stands on its own.
    qvals = benjamini_hochberg(pvals[:len(rows)]) + pvals[len(rows):]
    out = {}
    for (sid, desc, step, n1, k1, n2, k2, comp), q in zip(tests, qvals, strict=True):
        r1 = k1 / n1 if n1 else None
        r2 = k2 / n2 if n2 else None
        sig = bool(q is not None and q < 0.05 and r1 is not None and r2 is not None and r1 > r2)
        out[sid] = _Effect(sid, desc, step, n1, k1, n2, k2, sig, comp)
    return out


def _signal_basis(signal: str, lost_carts: int, eff: _Effect | None) -> SignalBasis:
    """A signal's part of a fix's estimate as the report states it; a signal with no comparison
    (``payment.exit_at_step``, ``ui_friction.exit_at_account``: defined by leaving) names its
    carts with a factor of 0."""
    if eff is None:
        return SignalBasis(signal, lost_carts, None, None, None, None, False, 0.0)
    return SignalBasis(signal, lost_carts, eff.step, eff.comparison, make_rate(eff.k_with, eff.n_with),
                       make_rate(eff.k_without, eff.n_without), eff.significant, eff.attributable)


@dataclass(frozen=True)
class _Stop:
    """How often carts that reached a step left there, vs the other checkout steps pooled."""

    step: str
    exits: int
    reached: int
    others: tuple[str, ...]  # the other checkout steps' names
    exits_others: int
    reached_others: int
    lost_unknown: int        # lost carts left there with no reason found
    p_value: float | None    # two-proportion test, two-sided
    significant: bool
    q_value: float | None = None   # Benjamini-Hochberg over the steps tested together (step_reviews)
    tested: int = 1                # how many steps were tested together

    @property
    def rate(self) -> float:
        return self.exits / self.reached if self.reached else 0.0

    @property
    def rate_others(self) -> float:
        return self.exits_others / self.reached_others if self.reached_others else 0.0

    @property
    def attributable(self) -> float:
        """(rate - rate_others) / rate when significantly higher, else 0."""
        if not self.significant or not self.exits:
            return 0.0
        return max(0.0, (self.rate - self.rate_others) / self.rate)

    @property
    def basis(self) -> StepBasis:
        """The step-level part of an estimate: the lost carts with no reason found that left here
        (no reason fix counts them) x the attributable share; 0 unless significantly higher."""
        return StepBasis(self.step, self.lost_unknown, make_rate(self.exits, self.reached), list(self.others),
                         make_rate(self.exits_others, self.reached_others), self.p_value, self.q_value,
                         self.significant, self.attributable)


def _higher(stop: _Stop, p: float | None) -> bool:
    """Significantly higher: p (or q) < 0.05 and the step's exit rate above the others'."""
    return bool(p is not None and p < 0.05 and stop.reached and stop.reached_others
                and stop.rate > stop.rate_others)


def _stop_at(p: dict[str, pl.DataFrame], cfg: Config, idx: int) -> _Stop | None:
    """At checkout step ``idx`` (not the cart or purchase step): the share of carts that reached
    it and left there, against the pooled share of the other checkout steps; significant when
    higher with p < 0.05 (two-proportion test). From the lost-cart and cart counts (merged
    partials); None when there is no other checkout step to compare with, or no cart."""
    r, t = p.get("diag:reasons"), p.get("diag:totals")
    inner = [i for i in range(1, len(cfg.steps) - 1) if i != idx]
    if not inner or r is None or not r.height or t is None or not t.height:
        return None
    total = int(t["n_carts"].sum())
    left = {int(lv): int(n) for lv, n in r.group_by(LEVEL).agg(pl.col("n_carts").sum()).iter_rows()}
    exits = lambda i: left.get(i + 1, 0)                                     # left at step i
    reached = lambda i: total - sum(n for lv, n in left.items() if lv <= i)   # reached step i
    k1, n1 = exits(idx), reached(idx)
    k2, n2 = sum(exits(i) for i in inner), sum(reached(i) for i in inner)
    unknown = r.filter((pl.col("reason") == UNKNOWN) & (pl.col(LEVEL) == idx + 1) & ~pl.col("recovered"))
    stop = _Stop(cfg.steps[idx].name, k1, n1, tuple(cfg.steps[i].name for i in inner), k2, n2,
                 int(unknown["n_carts"].sum()), two_proportion_test(k1, n1, k2, n2), False)
    return replace(stop, significant=_higher(stop, stop.p_value))


def step_stop(p: dict[str, pl.DataFrame], cfg: Config, role: str) -> _Stop | None:
    """The seeds' step-level trigger ("if purchases often stop at the payment step ..."): the exit
    rate at the step playing ``role`` against the other checkout steps' (``_stop_at``)."""
    idx = catalogue(cfg).role_step(role, cfg)
    return None if idx is None else _stop_at(p, cfg, idx)


def _claimed(cfg: Config) -> dict[int, str]:
    """Step index -> the fix whose step-level rule covers it (``stop_role``: the payment step,
    for more payment methods)."""
    cat = catalogue(cfg)
    return {i: f.id for f in FIXES if f.stop_role and (i := cat.role_step(f.stop_role, cfg)) is not None}


def step_reviews(p: dict[str, pl.DataFrame], cfg: Config) -> list[_Stop]:
    """The seeds' other step-level rule ("when analytics shows a step where purchases often stop,
    review that step's interface"), in funnel order: each checkout step's exit rate against the
    other checkout steps' pooled rate, the test ``step_stop`` makes for the payment step.

    A step a fix's own step-level rule covers (``_claimed``: the payment step) is left out, fired
    or not: its carts with no reason found are that fix's (reviewing it too would count them
    twice), and the same test, adjusted, could only fire here where it fires there. The
    remaining steps are a scan for whichever stands out, so their tests are adjusted together
    (Benjamini-Hochberg, significant when q < 0.05 and higher); the payment step rule stays one
    test the seeds name in advance (p < 0.05)."""
    claimed = _claimed(cfg)
    stops = [s for i in range(1, len(cfg.steps) - 1)
             if i not in claimed and (s := _stop_at(p, cfg, i)) is not None]
    qvals = benjamini_hochberg([s.p_value for s in stops])
    tested = sum(s.p_value is not None for s in stops)
    return [replace(s, q_value=q, tested=tested, significant=_higher(s, q))
            for s, q in zip(stops, qvals, strict=True)]


def _stop_test(stop: _Stop) -> str:
    """Which test decided: p < 0.05 for one step, BH q < 0.05 for steps tested together."""
    if stop.q_value is None:
        return "two-proportion test, p < 0.05"
    return f"two-proportion test, Benjamini-Hochberg q < 0.05 over the {stop.tested} checkout steps tested"


def _stop_why(stop: _Stop) -> str:
    """The evidence of a step where carts often stop, in words, with its test result."""
    q = "" if stop.q_value is None else f", q {_p(stop.q_value)} over the {stop.tested} checkout steps tested"
    return (f"Carts often stop at {stop.step}: {_pct(stop.rate)} of the {stop.reached} carts that "
            f"reached it left there vs {_pct(stop.rate_others)} at the other checkout steps "
            f"({', '.join(stop.others)}); {stop.lost_unknown} of them are lost carts with no reason found. "
            f"Two-proportion test: p {_p(stop.p_value)}{q}.")


def _stop_method(stop: _Stop, what: str, then: str = "") -> str:
    """How a step-level estimate is made; ``what`` names it (the whole estimate, or a part),
    ``then`` what multiplies it (the average order value, when it is the whole estimate)."""
    s = stop.step
    return (f"the lost carts with no reason found (unknown) that left at {s} x (exit rate at {s} - "
            f"the other checkout steps' pooled exit rate) / exit rate at {s}{then}, counted because it is "
            f"significantly higher ({_stop_test(stop)}); steps differ by design, so {what} "
            "is a ceiling, not an effect")


def _primary(p: dict[str, pl.DataFrame]) -> dict[tuple[str, str], int]:
    """Lost carts (a recovered cart needs no fix) per (primary reason, strongest evidence)."""
    df = p.get("diag:primary")
    if df is None or not df.height:
        return {}
    g = df.filter(~pl.col("recovered")).group_by("reason", "signal").agg(pl.col("n_carts").sum())
    return {(r, s): int(n) for r, s, n in g.iter_rows()}


def estimated_orders(basis: EstimateBasis) -> float:
    """Orders a recommendation could win back, from its basis alone (unrounded): the signals'
    lost carts x their factors, plus the step-level rule's lost carts x its share, plus the
    reachable carts x the recovery rate seen (reminders), all x the segment's share for a segment
    offer. Each card's estimate is made here from the basis the report carries, so the JSON's
    numbers reproduce it (see ``EstimateBasis``) and the two cannot drift apart."""
    orders = sum(s.lost_carts * s.factor for s in basis.signals)
    if basis.step_rule is not None:
        orders += basis.step_rule.lost_carts * basis.step_rule.share
    if basis.reminder is not None:
        seen = basis.reminder.recovery_rate
        orders += basis.reminder.reachable_carts * (seen.numerator / seen.denominator if seen.denominator else 0.0)
    if basis.segment_share is not None:
        orders *= basis.segment_share.share
    return orders


def _card(basis: EstimateBasis, **texts: Any) -> Recommendation:
    """A recommendation whose estimate comes from its basis (``estimated_orders``), the one place
    every card's estimate is made; rounded only here, the revenue from the unrounded orders."""
    orders = estimated_orders(basis)
    return Recommendation(**texts, estimated_orders=round(orders, 1),
                          estimated_revenue=round(orders * basis.order_value, 2), basis=basis)


def recommend(p: dict[str, pl.DataFrame], abandonment: Abandonment, cfg: Config) -> list[Recommendation]:
    """Ranked fixes (estimated revenue, then orders, then id: deterministic).

    Estimate per fix: for each signal it addresses, the lost carts whose strongest evidence is
    that signal x the share of abandonment in excess of comparable carts without it
    ((rate_with - rate_without) / rate_with, significant differences only), x the average order
    value. A lost cart counts for one reason fix at most (see the module's docstring)."""
    cat = catalogue(cfg)
    cur = abandonment.currency
    aov = _aov(p)
    carts_by_reason = _reason_carts(p)
    effects = signal_effects(p, cfg)
    primary = _primary(p)
    standout = standout_segments(p, cfg)
    episodes: dict[str, object] = {}
    for e in abandonment.episodes:
        episodes.setdefault(e.reason, e)
    out: list[Recommendation] = []
    for fix in FIXES:
        attributed = carts_by_reason.get(fix.reason, 0)
        sigs = [s for s in fix.signals if cat.get(s).enabled]
        carts = {s: primary.get((fix.reason, s), 0) for s in sigs}
        stop = step_stop(p, cfg, fix.stop_role) if fix.stop_role else None
        stopped = stop.lost_unknown if stop is not None and stop.significant else 0
        if not sum(carts.values()) and not stopped:
            continue
        parts = [_signal_basis(s, carts[s], effects.get(s)) for s in sigs]
        why = [f"{attributed} lost carts (abandoned, not recovered later) were attributed to "
               f"{fix.reason.replace('_', ' ')}; for {sum(carts.values())} of them the strongest evidence "
               "is what this fix addresses."] if sum(carts.values()) else []
        if stopped:
            why.append(_stop_why(stop))
        step, best = None, -1.0
        for part in parts:
            eff = effects.get(part.signal)
            if eff is None or not eff.n_with:
                continue
            gain = part.lost_carts * part.factor
            if part.lost_carts and gain > best:
                best, step = gain, eff.step
            why.append(f"{eff.n_with} carts where {eff.description} (at {eff.step}): {_pct(eff.rate_with)} "
                       f"abandoned vs {_pct(eff.rate_without)} of {eff.comparison}"
                       f"{'' if eff.significant else ' (not significant)'}.")
        if step is None:
            step = stop.step if stopped else _reason_step(p, fix.reason, cfg)
        segment = standout[fix.reason][0] if fix.reason in standout else None
        method = ("lost carts (abandoned, not recovered later) whose strongest evidence is the signal "
                  "x (rate_with - rate_without) / rate_with, the share of abandonment in excess of carts "
                  "without the signal at the step where carts first showed it, significant differences "
                  f"only (BH q < 0.05), x average order value ({_money(aov, cur)}); a lost cart counts "
                  "for one reason fix at most, the one its strongest evidence points to")
        if stopped:
            method += "; plus " + _stop_method(stop, "this part")
        share = None
        if fix.segment_offer:
            if segment is None:
                continue
            in_segment = _segment_reason_carts(p, fix.reason, segment)
            share = SegmentBasis(segment, in_segment, attributed, in_segment / attributed if attributed else 0.0)
            method += f"; only the {segment} share ({_pct(share.share)}) of those carts; an alternative " \
                      "to the free-shipping threshold, not additive to it"
        if segment is not None:
            _, s_in, s_out = standout[fix.reason]
            why.append(f"It stands out in {segment}: {_pct(s_in)} of carts there were lost to "
                       f"{fix.reason.replace('_', ' ')} vs {_pct(s_out)} elsewhere.")
        ep = episodes.get(fix.reason)
        if ep is not None and fix.id in ("payment.keep_card_data", "ui_friction.fix_step"):
            why.append(f"{ep.start} to {ep.end}: {_pct(ep.share)} of abandoned carts vs "
                       f"{_pct(ep.baseline_share)} on other days; check what changed then.")
        if fix.id == "shipping.free_threshold" and aov:
            why.append(f"Average order value: {_money(aov, cur)}.")
        # The step-level part whenever the rule was tested: a share of 0 says it did not fire.
        basis = EstimateBasis(aov, AOV, cur, parts, stop.basis if stop is not None else None, share, None)
        out.append(_card(
            basis, id=fix.id, reason=fix.reason, step=step, segment=segment, title=fix.title,
            why=" ".join(why), research=fix.research, method=method,
            evidence=[s for s in sigs if carts[s]],
        ))
    out += _reviews(p, cfg, aov, cur)
    rem = _reminder(p, cfg, cur)
    if rem is not None:
        out.append(rem)
    return sorted(out, key=lambda r: (-r.estimated_revenue, -r.estimated_orders, r.id, r.step or ""))


def _reviews(p: dict[str, pl.DataFrame], cfg: Config, aov: float, cur: str | None) -> list[Recommendation]:
    """One card per checkout step where purchases stop significantly more often (``step_reviews``)
    and lost carts with no reason found left there: those carts only (the carts with a reason
    found are the reason fixes'), so, as the payment step rule, no card when there are none."""
    claimed = _claimed(cfg)
    left_out = "; ".join(f"the {cfg.steps[i].name} step is not reviewed: {fid} counts its carts with no reason "
                         "found (the seeds' rule for that step, the same test)" for i, fid in sorted(claimed.items()))
    out = []
    for stop in step_reviews(p, cfg):
        if not stop.significant or not stop.lost_unknown:
            continue
        method = "; ".join([_stop_method(stop, "this estimate", f" x average order value ({_money(aov, cur)})"),
                            *([left_out] if left_out else []), "a lost cart counts for one fix at most"])
        out.append(_card(
            EstimateBasis(aov, AOV, cur, [], stop.basis, None, None),
            id=REVIEW_ID, reason="ui_friction", step=stop.step, segment=None,
            title=REVIEW_TITLE.format(step=stop.step), why=_stop_why(stop), research=REVIEW_RESEARCH,
            method=method, evidence=[],
        ))
    return out


def _segment_reason_carts(p: dict[str, pl.DataFrame], reason: str, segment: str) -> int:
    seg = p.get("diag:segments")
    col, _, value = segment.partition("=")
    sub = seg.filter((pl.col("column") == col) & (pl.col("value") == value) & (pl.col("reason") == reason)
                     & ~pl.col("recovered"))
    return int(sub["n_carts"].sum()) if sub.height else 0


def _reminder(p: dict[str, pl.DataFrame], cfg: Config, cur: str | None) -> Recommendation | None:
    """Reminders to known users' recoverable carts: as many orders again as this shop already
    recovers without them, each worth the reachable carts' average value (``ReminderBasis``)."""
    t = p.get("diag:totals")
    if t is None or not t.height or cfg.level != "session":
        return None
    reach = int(t["n_reachable"].sum())
    known = int(t["n_known_user"].sum())
    back = int(t["n_known_recovered"].sum())
    if reach <= 0:
        return None
    value = float(t["sum_reachable_value"].sum() or 0.0)
    seen = make_rate(back, known)
    why = (f"{reach} abandoned carts belong to known users who did not come back to buy "
           f"({_money(value, cur)} in carts); {back} of {known} such carts ({_pct(back / known if known else 0.0)}) were "
           f"recovered without a reminder within {cfg.recovery_horizon / 86_400_000_000:g} days.")
    return _card(
        EstimateBasis(value / reach, REACHABLE_AVG, cur, [], None, None,
                      ReminderBasis(reach, value, seen)),
        id="recovery.cart_reminder", reason=UNKNOWN, step=None, segment=None,
        title="Send abandoned-cart reminders to known users whose carts are recoverable",
        why=why, research=REMINDER_RESEARCH,
        method="reachable carts (known user, not recovered) x the recovery rate already seen, i.e. "
               "assuming reminders double today's recovery (an assumption: no study figure), x their "
               "average cart value; reminders act on lost carts of every reason, so this estimate "
               "overlaps the reason fixes' and does not add to them",
        evidence=[],
    )
