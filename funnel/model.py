"""Typed result records. Renderers see only these; ``to_dict`` gives the JSON contract.

Field order here IS the JSON key order (schema_version 1): add fields at the end of a record,
never rename or reorder. Every rate carries its denominator and a 95% Wilson interval.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


class Record:
    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class Rate(Record):
    """``numerator / denominator`` with a 95% Wilson interval (``rate`` None when n = 0)."""

    numerator: int
    denominator: int
    rate: float | None
    ci95: tuple[float, float] | None


@dataclass(frozen=True)
class Count(Record):
    key: str
    count: int


@dataclass(frozen=True)
class Period(Record):
    start: str | None   # ISO 8601 UTC
    end: str | None


@dataclass(frozen=True)
class InputSummary(Record):
    files: list[str]
    format: str
    columns: dict[str, str]            # role -> source column (or adapter mapping)
    rows_read: int
    rows_rejected: int
    rejected: list[Count]              # per cause, see funnel.core.normalize.REJECT_CAUSES
    events: int                        # rows used
    sessions: int
    users: int
    period: Period
    sessions_log: str | None = None
    sessionized: bool = False          # sessions built from user + inactivity timeout
    capped_sessions: int = 0
    sessions_log_rejected: list[Count] = field(default_factory=list)   # rows of it not used, per cause


@dataclass(frozen=True)
class StepResult(Record):
    name: str
    events: list[str]
    sessions: int                      # entities that reached this step (level >= index+1)
    conversion_from_previous: float | None
    conversion_from_start: float | None
    ci95: tuple[float, float] | None   # for conversion_from_previous
    ci95_from_start: tuple[float, float] | None
    dropped: int                       # reached the previous step but not this one
    median_seconds_from_previous: float | None
    p90_seconds_from_previous: float | None


@dataclass(frozen=True)
class FunnelResult(Record):
    unit: str                          # session | user
    order: str                         # ordered | strict | any
    window_seconds: float
    entities: int                      # sessions (or users) in the analysed input
    excluded: int                      # removed by exclusion events
    exclude_events: list[str]
    steps: list[StepResult]
    overall: Rate                      # last step / first step


@dataclass(frozen=True)
class EvidenceItem(Record):
    signal: str                        # catalogue id, e.g. payment.error
    description: str
    sessions: int


@dataclass(frozen=True)
class ReasonShare(Record):
    reason: str                        # payment | shipping | returns | ui_friction | unknown
    sessions: int
    share: float | None
    ci95: tuple[float, float] | None
    value: float
    evidence: list[EvidenceItem]


@dataclass(frozen=True)
class ExitStep(Record):
    step: str
    abandoned: int
    share: float | None
    value: float
    reasons: dict[str, int]


@dataclass(frozen=True)
class SignalLift(Record):
    """Abandonment with vs without a signal among carts that reached the same step."""

    signal: str
    reason: str
    step: str
    with_signal: Rate
    without_signal: Rate
    ratio: float | None
    ci95: tuple[float, float] | None
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class Band(Record):
    label: str
    low: float | None
    high: float | None
    abandonment: Rate


@dataclass(frozen=True)
class ReasonEpisode(Record):
    """A period in which a reason's share of abandoned carts jumped (outage, bad deploy)."""

    reason: str
    start: str
    end: str
    share: float
    baseline_share: float
    carts: int


@dataclass(frozen=True)
class Abandonment(Record):
    cart_step: str
    purchase_step: str
    carts: int
    abandoned: int
    rate: float | None
    ci95: tuple[float, float] | None
    benchmark_rate: float              # Baymard Institute average documented rate
    value_at_stake: float
    recovered: int
    recovery_horizon_seconds: float
    currency: str | None
    by_step: list[ExitStep]
    reasons: list[ReasonShare]
    signals: list[SignalLift] = field(default_factory=list)
    shipping_bands: list[Band] = field(default_factory=list)
    episodes: list[ReasonEpisode] = field(default_factory=list)


@dataclass(frozen=True)
class SignalBasis(Record):
    """One signal's part of a reason fix's estimate: ``lost_carts x factor`` orders."""

    signal: str
    lost_carts: int                    # lost carts whose strongest evidence is this signal (this fix's carts)
    step: str | None                   # where the comparison is made (carts first showed the signal there)
    comparison: str | None             # what 'without' means; None: the signal has no with/without comparison
    with_signal: Rate | None           # abandoned / carts with the signal
    without_signal: Rate | None        # abandoned / carts of the comparison
    significant: bool                  # as in abandonment.signals[] (BH q < 0.05); quick exit: p < 0.05
    factor: float                      # (with - without) / with when significant and higher, else 0


@dataclass(frozen=True)
class StepBasis(Record):
    """A step-level rule's part: ``lost_carts x share`` orders."""

    step: str
    lost_carts: int                    # lost carts with no reason found (unknown) that left at the step
    exit_rate: Rate                    # carts that left at the step / carts that reached it
    others: list[str]                  # the other checkout steps, pooled
    others_exit_rate: Rate
    p_value: float | None              # two-proportion test
    q_value: float | None              # Benjamini-Hochberg over the steps scanned together; None: one test
    significant: bool
    share: float                       # (exit_rate - others_exit_rate) / exit_rate when significant, else 0


@dataclass(frozen=True)
class SegmentBasis(Record):
    """A segment offer's scaling: its orders x ``share``."""

    segment: str                       # column=value
    lost_carts: int                    # lost carts of the fix's reason in the segment
    reason_lost_carts: int             # lost carts of the fix's reason, all segments
    share: float                       # lost_carts / reason_lost_carts


@dataclass(frozen=True)
class ReminderBasis(Record):
    """Cart reminders: ``reachable_carts x recovery_rate`` orders (reminders assumed to double
    today's recovery), each worth the reachable carts' average value."""

    reachable_carts: int               # abandoned carts of known users, not recovered
    reachable_value: float             # their cart value
    recovery_rate: Rate                # known users' abandoned carts recovered without a reminder


@dataclass(frozen=True)
class EstimateBasis(Record):
    """Every input of a recommendation's estimate, so it can be recomputed from the JSON:
    orders = (sum of signals' lost_carts x factor + step_rule.lost_carts x step_rule.share
    + reminder.reachable_carts x reminder.recovery_rate) x segment_share.share (when present);
    revenue = orders x order_value. Estimates are rounded only when reported."""

    order_value: float                 # what one order is worth
    order_value_of: str                # "average order value" | "reachable carts' average value"
    currency: str | None
    signals: list[SignalBasis]
    step_rule: StepBasis | None
    segment_share: SegmentBasis | None
    reminder: ReminderBasis | None


@dataclass(frozen=True)
class Recommendation(Record):
    id: str
    reason: str
    step: str | None
    segment: str | None
    title: str
    why: str                           # evidence from this data, in words
    research: str                      # the published figure behind the fix, with its source
    estimated_orders: float
    estimated_revenue: float
    method: str                        # how the estimate was made
    evidence: list[str] = field(default_factory=list)
    basis: EstimateBasis = field(kw_only=True)   # the estimate's inputs (required: every card has one)


@dataclass(frozen=True)
class SegmentGroup(Record):
    value: str
    sessions: int
    conversion: Rate                   # purchase / first step
    abandonment: Rate                  # abandoned / carts
    p_value: float | None              # two-proportion test vs the rest (conversion)
    q_value: float | None              # Benjamini-Hochberg adjusted
    significant: bool
    reasons: dict[str, int] = field(default_factory=dict)   # abandoned carts per primary reason
    value_at_stake: float = 0.0        # cart value of this group's abandoned, not recovered carts


@dataclass(frozen=True)
class SegmentBreakdown(Record):
    column: str
    groups: list[SegmentGroup]
    other: list[str]                   # values grouped as "other" (below min size)
    min_size: int


@dataclass(frozen=True)
class Transition(Record):
    source: str
    target: str
    sessions: int


@dataclass(frozen=True)
class PathVariant(Record):
    path: list[str]
    sessions: int
    share: float


@dataclass(frozen=True)
class AfterExit(Record):
    step: str
    abandoned: int
    next_events: list[Count]
    last_events: list[Count]
    last_pages: list[Count]


@dataclass(frozen=True)
class TimeDistribution(Record):
    step: str                          # time spent from this step to the next (or to leaving)
    group: str                         # converters | abandoners
    count: int
    median_seconds: float | None
    p90_seconds: float | None
    bucket_upper_seconds: list[float]
    bucket_counts: list[int]


@dataclass(frozen=True)
class Paths(Record):
    transitions: list[Transition]
    to_purchase: list[PathVariant]
    to_abandonment: list[PathVariant]
    after_exit: list[AfterExit]
    time_to_next: list[TimeDistribution]


@dataclass(frozen=True)
class TrendPoint(Record):
    week: str                          # ISO week, e.g. 2026-W41
    entities: int
    steps: list[int]                   # entities reaching each step
    abandonment: Rate
    reasons: dict[str, int]


@dataclass(frozen=True)
class StepChange(Record):
    name: str
    current: Rate
    previous: Rate
    change_points: float | None        # percentage points, conversion from previous step
    ci95_points: tuple[float, float] | None
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class Comparison(Record):
    current: Period
    previous: Period
    steps: list[StepChange]
    abandonment_rate: StepChange
    conversion: StepChange


@dataclass(frozen=True)
class GateResult(Record):
    rule: str
    metric: str
    value: float | None
    fired: bool


@dataclass(frozen=True)
class Settings(Record):
    steps: list[dict[str, Any]]
    window: str
    order: str
    unit: str
    session_timeout: str
    timezone: str
    recovery_horizon: str
    config_source: str


@dataclass(frozen=True)
class Report(Record):
    schema_version: int
    tool: dict[str, str]
    generated_at: str
    input: InputSummary
    settings: Settings
    funnel: FunnelResult
    abandonment: Abandonment
    recommendations: list[Recommendation]
    segments: list[SegmentBreakdown]
    paths: Paths | None
    trend: list[TrendPoint]
    comparison: Comparison | None = None
    gates: list[GateResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # what may make the numbers misleading
