"""CI gates: ``--fail-on RULE`` / ``[gates] fail_on``; a fired rule makes the CLI exit 1.

A rule is ``METRIC OP VALUE`` with OP one of ``> >= < <= == !=`` (spaces optional). Metrics:

========================== ===========================================================
``abandonment_rate``       abandoned carts / carts (a fraction; ``0.75`` or ``75%``)
``conversion``             last step / first step (fraction)
``step:<name>:conversion`` conversion of step <name> from the previous step (fraction)
``conversion_drop``        previous-period conversion minus current, in percentage
                           points (positive = worse); needs a comparison period
``reason:<name>:share``    share of abandoned carts attributed to reason <name> (fraction)
``carts``                  carts (entities that reached the first step)
``value_at_stake``         value of abandoned, unrecovered carts
========================== ===========================================================

A rule whose metric is undefined for the data (e.g. a rate over zero carts) does not fire;
its value is reported as ``null``. Bad rules raise ``ConfigError`` (exit 2) with a hint.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .config import Config
from .errors import ConfigError, suggestion
from .model import GateResult, Report
from .schema import ALL_REASONS

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}
SIMPLE = ("abandonment_rate", "conversion", "conversion_drop", "carts", "value_at_stake")
FRACTIONS = ("abandonment_rate", "conversion")
_RULE = re.compile(r"^\s*(?P<metric>.+?)\s*(?P<op>>=|<=|==|!=|>|<|=)\s*(?P<value>.*?)\s*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Rule:
    text: str          # normalised: "abandonment_rate > 0.75"
    metric: str        # "abandonment_rate", "step:payment:conversion", ...
    op: str
    value: float

    def fires(self, x: float | None) -> bool:
        return x is not None and OPS[self.op](x, self.value)


def metric_names(step_names: Iterable[str]) -> list[str]:
    """Every valid metric for a funnel with these steps (for help and did-you-mean)."""
    steps = list(step_names)
    return [*SIMPLE, *(f"step:{s}:conversion" for s in steps[1:]), *(f"reason:{r}:share" for r in ALL_REASONS)]


def _check_metric(metric: str, steps: list[str], rule: str, where: str) -> bool:
    """Validate ``metric`` (of ``rule``, given in ``where``); return True when its value is a
    fraction (0..1)."""
    if metric in SIMPLE:
        return metric in FRACTIONS
    parts = metric.split(":")
    if len(parts) == 3 and parts[0] == "step" and parts[2] == "conversion":
        name = parts[1]
        if name not in steps:
            raise ConfigError(f"{where} {rule!r}: unknown step {name!r}",
                              suggestion(name, steps) or f"steps: {', '.join(steps)}")
        if name == steps[0]:
            raise ConfigError(f"{where} {rule!r}: the first step {name!r} has no conversion from a previous step",
                              f"use step:{steps[1]}:conversion or conversion" if len(steps) > 1 else "use conversion")
        return True
    if len(parts) == 3 and parts[0] == "reason" and parts[2] == "share":
        name = parts[1]
        if name not in ALL_REASONS:
            raise ConfigError(f"{where} {rule!r}: unknown reason {name!r}",
                              suggestion(name, ALL_REASONS) or f"reasons: {', '.join(ALL_REASONS)}")
        return True
    raise ConfigError(f"{where} {rule!r}: unknown metric {metric!r}",
                      suggestion(metric, metric_names(steps))
                      or "metrics: " + ", ".join([*SIMPLE, "step:<name>:conversion", "reason:<name>:share"]))


def parse_rule(text: str, step_names: Iterable[str], where: str = "--fail-on") -> Rule:
    """Parse one rule against the funnel's step names (``where``: where it was given, for errors)."""
    steps = list(step_names)
    m = _RULE.match(text or "")
    if not m:
        raise ConfigError(f"invalid {where} rule {text!r}",
                          "write METRIC OP VALUE, e.g. 'abandonment_rate > 0.8' (OP: > >= < <= == !=)")
    metric, op, raw = m["metric"].strip(), m["op"], m["value"].strip()
    if op == "=":
        raise ConfigError(f"invalid operator '=' in {where} {text!r}", "use == to test equality")
    fraction = _check_metric(metric, steps, text.strip(), where)
    percent = raw.endswith("%")
    num = raw[:-1].strip() if percent else raw
    if not _NUMBER.match(num):
        raise ConfigError(f"{where} {text.strip()!r}: {raw!r} is not a number",
                          "write METRIC OP VALUE, e.g. 'abandonment_rate > 0.8' or 'abandonment_rate > 80%'")
    value = float(num)
    if not math.isfinite(value):   # (1e400: beyond a float; the hints below would suggest 'inf')
        raise ConfigError(f"{where} {text.strip()!r}: {raw!r} is out of range", "write a smaller number")
    if percent:
        if not fraction:
            raise ConfigError(f"{where} {text.strip()!r}: {metric} is not a rate, '%' does not apply",
                              "conversion_drop is already in percentage points: write conversion_drop > 5"
                              if metric == "conversion_drop" else "write a plain number")
        value /= 100
    if fraction and not 0 <= value <= 1:   # (a rate past 100% would always, or never, fire)
        # (a number in (1, 100] is likely a percentage without its '%': both valid spellings of it)
        hint = "write a percentage between 0% and 100%" if percent else \
            f"write {value / 100:g} or {value:g}%" if 1 < value <= 100 else \
            "write a number between 0 and 1 or a percentage between 0% and 100%"
        raise ConfigError(f"{where} {text.strip()!r}: {metric} is a fraction between 0 and 1", hint)
    return Rule(f"{metric} {op} {raw}", metric, op, value)


def parse_rules(texts: Iterable[str], step_names: Iterable[str]) -> list[Rule]:
    steps = list(step_names)
    return [parse_rule(t, steps) for t in texts]


def config_rules(cfg: Config) -> list[Rule]:
    """``cfg.fail_on`` parsed against its steps. An error names where the rule was given: the
    config file's ``[gates] fail_on`` (``cfg.from_file``), else ``--fail-on``."""
    steps, rules = list(cfg.step_names), []
    for t in cfg.fail_on:
        if t not in cfg.from_file.get("fail_on", ()):
            rules.append(parse_rule(t, steps))
            continue
        try:
            rules.append(parse_rule(t, steps, "[gates] fail_on"))
        except ConfigError as exc:
            raise ConfigError(f"{cfg.source}: {exc.message}", exc.hint) from None
    return rules


def metric_value(report: Report, metric: str) -> float | None:
    """The value of ``metric`` in ``report`` (None when undefined for this data)."""
    ab = report.abandonment
    if metric == "abandonment_rate":
        return ab.rate
    if metric == "conversion":
        return report.funnel.overall.rate
    if metric == "carts":
        return float(ab.carts)
    if metric == "value_at_stake":
        return float(ab.value_at_stake)
    if metric == "conversion_drop":
        c = report.comparison
        if c is None or c.conversion.change_points is None:
            return None
        return round(-c.conversion.change_points, 4) + 0.0   # + 0.0: no "-0.0"
    kind, name, _ = metric.split(":")
    if kind == "step":
        return next((s.conversion_from_previous for s in report.funnel.steps if s.name == name), None)
    return next((r.share for r in ab.reasons if r.reason == name), None)


def evaluate(rules: Iterable[Rule], report: Report) -> list[GateResult]:
    """One GateResult per rule, in the given order."""
    out = []
    for r in rules:
        v = metric_value(report, r.metric)
        out.append(GateResult(rule=r.text, metric=r.metric, value=v, fired=r.fires(v)))
    return out


def needs_comparison(rules: Iterable[Rule]) -> bool:
    return any(r.metric == "conversion_drop" for r in rules)


__all__ = ["Rule", "config_rules", "evaluate", "metric_names", "metric_value", "needs_comparison", "parse_rule",
           "parse_rules"]
