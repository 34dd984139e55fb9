"""Analysis periods: parse ``--since/--until/--period/--as-of/--compare`` into UTC spans.

Semantics (all instants UTC; a span is half-open ``[start, end)``):

- An entity (session or user) belongs to a period by the time of its *first* event.
- ``--since`` is inclusive, ``--until`` exclusive. A date without a time means midnight UTC
  (``--until 2026-11-16`` = up to 2026-11-16T00:00Z). Naive date-times are UTC.
- Relative periods are resolved against the *as-of* instant: ``--as-of`` when given, else the
  end of the data (just after its last event, so ``last-7d`` includes the last event).
  ``last-week`` = the last complete ISO week (Monday 00:00 to Monday 00:00) ending at or before
  as-of; ``last-7d`` = the 7 days ending at as-of; ``YYYY-Www`` = that ISO week;
  ``YYYY-MM`` = that calendar month; ``START..END`` = explicit bounds (same rules as the flags).
- ``--compare previous`` = the span of equal length right before the current one (for a
  calendar month: the previous calendar month);
  ``--compare START..END`` = explicit bounds.

Parsing (``PeriodSpec``) needs no data; resolving (``PeriodSpec.resolve``) needs the data's
bounds. Errors are ``ConfigError`` (exit 2) with a hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, UTC

from .errors import ConfigError
from .model import Period

UTC = UTC
WEEK = timedelta(days=7)
RELATIVE = ("last-week", "last-7d")
_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$", re.IGNORECASE)
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_FORMS = "last-week, last-7d, YYYY-Www (e.g. 2026-W47), YYYY-MM (e.g. 2026-11) or START..END"


@dataclass(frozen=True)
class Span:
    """A resolved period ``[start, end)`` in UTC, with the label used in file names."""

    start: datetime
    end: datetime
    label: str

    def as_period(self) -> Period:
        return Period(iso(self.start), iso(self.end))

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return (self.start, self.end)


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with a ``Z``; fractional seconds only when there are any."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S" + (".%f" if ts.microsecond else "") + "Z")


def parse_instant(text: str, what: str) -> datetime:
    """A date (midnight UTC) or an ISO 8601 date-time (naive = UTC) as an aware UTC datetime."""
    s = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
            return datetime.combine(date.fromisoformat(s), datetime.min.time(), UTC)
        ts = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise ConfigError(f"invalid {what} {text!r}",
                          "write a UTC date or date-time, e.g. 2026-11-16 or 2026-11-16T08:00:00Z") from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def iso_week(year: int, week: int) -> Span:
    try:
        start = datetime.combine(date.fromisocalendar(year, week, 1), datetime.min.time(), UTC)
    except ValueError:
        raise ConfigError(f"invalid ISO week {year}-W{week:02d}",
                          f"{year} has weeks W01 to W{date(year, 12, 28).isocalendar()[1]:02d}") from None
    return Span(start, start + WEEK, f"{year}-W{week:02d}")


def month(year: int, mon: int) -> Span:
    if not 1 <= mon <= 12:
        raise ConfigError(f"invalid month {year}-{mon:02d}", "write YYYY-MM with a month from 01 to 12")
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return Span(start, end, f"{year}-{mon:02d}")


def label_for(start: datetime, end: datetime) -> str:
    """``2026-W47`` for an ISO week, ``2026-11`` for a calendar month, else ``<start>_<end>``
    (dates; the end date is the exclusive bound's date)."""
    if start == start.replace(hour=0, minute=0, second=0, microsecond=0):
        y, w, d = start.isocalendar()
        if d == 1 and end - start == WEEK:
            return f"{y}-W{w:02d}"
        if start.day == 1 and end == month(start.year, start.month).end:
            return f"{start:%Y-%m}"
    return f"{start:%Y-%m-%d}_{end:%Y-%m-%d}"


def make_span(start: datetime, end: datetime, what: str) -> Span:
    """``[start, end)``; an end not after the start is an error whose hint says which: a range
    given backwards (the end before the start) or one of no length (the end is exclusive)."""
    if end <= start:
        flags = what == "--since/--until"
        if end < start:
            hint = ("--until is before --since: swap them" if flags else
                    f"the range is reversed: give the earlier time first, e.g. {_short(end)}..{_short(start)}")
        else:
            hint = ("--since is inclusive and --until exclusive; widen the range" if flags else
                    "START is inclusive and END exclusive; widen the range")
        raise ConfigError(f"{what}: the end ({iso(end)}) must be after the start ({iso(start)})", hint)
    return Span(start, end, label_for(start, end))


def _short(t: datetime) -> str:
    """``2026-11-09`` for a midnight, else the instant in full."""
    return f"{t:%Y-%m-%d}" if t == t.replace(hour=0, minute=0, second=0, microsecond=0) else iso(t)


def _range(text: str, what: str) -> tuple[datetime, datetime]:
    a, sep, b = text.partition("..")
    if not sep or not a.strip() or not b.strip():
        raise ConfigError(f"invalid {what} {text!r}", "write START..END, e.g. 2026-11-09..2026-11-16")
    return parse_instant(a, what), parse_instant(b, what)


def last_week(as_of: datetime) -> Span:
    """The last complete ISO week whose end is at or before ``as_of``."""
    monday = datetime.combine(as_of.date() - timedelta(days=as_of.weekday()), datetime.min.time(), UTC)
    return iso_week(*(monday - WEEK).isocalendar()[:2])


@dataclass(frozen=True)
class PeriodSpec:
    """The period flags as given, unresolved (relative forms need the data's end)."""

    period: str | None = None
    since: str | None = None
    until: str | None = None
    as_of: str | None = None
    compare: str | None = None

    def __post_init__(self) -> None:  # validate everything that needs no data, early
        if self.period and (self.since or self.until):
            raise ConfigError("--period cannot be combined with --since/--until",
                              "use either --period or --since/--until")
        if self.period and self.period.strip().lower() not in RELATIVE and ".." not in self.period \
                and not _WEEK_RE.match(self.period.strip()) and not _MONTH_RE.match(self.period.strip()):
            from .errors import suggestion

            raise ConfigError(f"invalid --period {self.period!r}",
                              (suggestion(self.period, RELATIVE) or "") + f" use {_FORMS}")
        for text, what in ((self.since, "--since"), (self.until, "--until"), (self.as_of, "--as-of")):
            if text:
                parse_instant(text, what)
        if self.since and self.until:
            make_span(parse_instant(self.since, "--since"), parse_instant(self.until, "--until"), "--since/--until")
        if self.compare:
            placeholder = Span(datetime(2000, 1, 3, tzinfo=UTC), datetime(2000, 1, 10, tzinfo=UTC), "")
            previous_span(self.compare, placeholder if self.has_period else None)

    @property
    def has_period(self) -> bool:
        return bool(self.period or self.since or self.until)

    def current(self, data_start: datetime, data_end: datetime) -> Span | None:
        """The analysed span (``None`` without a period: the whole input); ``data_end`` is
        the data's last event time."""
        as_of = parse_instant(self.as_of, "--as-of") if self.as_of else data_end + timedelta(microseconds=1)
        p = (self.period or "").strip()
        if p.lower() == "last-week":
            return last_week(as_of)
        if p.lower() == "last-7d":
            return make_span(as_of - WEEK, as_of, "--period last-7d")
        if m := _WEEK_RE.match(p):
            return iso_week(int(m[1]), int(m[2]))
        if m := _MONTH_RE.match(p):
            return month(int(m[1]), int(m[2]))
        if p:
            return make_span(*_range(p, "--period"), "--period")
        if self.since or self.until:
            start = parse_instant(self.since, "--since") if self.since else data_start
            end = parse_instant(self.until, "--until") if self.until else as_of
            return make_span(start, end, "--since/--until")
        return None

    def resolve(self, data_start: datetime, data_end: datetime) -> tuple[Span | None, Span | None]:
        """(current, previous) spans."""
        cur = self.current(data_start, data_end)
        return cur, previous_span(self.compare, cur)


def previous_span(compare: str | None, cur: Span | None) -> Span | None:
    """The comparison span for ``--compare`` (``previous`` or ``START..END``)."""
    c = (compare or "").strip()
    if not c:
        return None
    if c.lower() == "previous":
        if cur is None:
            raise ConfigError("--compare previous needs a period to compare",
                              "add --period last-week (or --since/--until)")
        if _MONTH_RE.match(cur.label):  # a calendar month: the previous calendar month
            y, mo = int(cur.label[:4]), int(cur.label[5:7])
            return month(y - (mo == 1), (mo - 2) % 12 + 1)
        return make_span(cur.start - (cur.end - cur.start), cur.start, "--compare previous")
    if ".." not in c:
        from .errors import suggestion

        raise ConfigError(f"invalid --compare {compare!r}",
                          (suggestion(c, ("previous",)) or "")
                          + " use previous or START..END, e.g. 2026-11-09..2026-11-16")
    return make_span(*_range(c, "--compare"), "--compare")


def overlap_warning(current: Span | None, data: Period, previous: Span, unit: str) -> list[str]:
    """The warning for a comparison period that overlaps the analysed one (``current``; None:
    the whole input, ``data`` its first and last event): the ``unit``s (session, user) that
    start in both are in both reports, so the comparison's test is not between independent
    samples. Empty when they do not overlap."""
    if current is not None:
        analysed, fix = f"the analysed period {iso(current.start)} → {iso(current.end)}", \
            "compare with a period that does not overlap it (e.g. --compare previous)"
    elif data.start and data.end:
        current = Span(parse_instant(data.start, "data start"),
                       parse_instant(data.end, "data end") + timedelta(microseconds=1), "")   # (the last event in)
        analysed, fix = f"the analysed data (no --period: {data.start} to {data.end})", \
            "analyse a --period that it does not overlap"
    else:
        return []
    if previous.start >= current.end or current.start >= previous.end:
        return []
    return [(f"the comparison period {iso(previous.start)} → {iso(previous.end)} overlaps {analysed}: {unit}s "
             f"starting in both are counted in both, so the comparison's test is not between independent samples "
             f"— {fix}")]


def empty_comparison_warning(previous: Span, unit: str) -> list[str]:
    """The warning for a comparison period in which no ``unit`` (session, user) starts: every
    previous rate and every change is then undefined (n/a, ``null``), and a gate on them does
    not fire — said, not left to a table of n/a."""
    return [(f"no {unit}s start in the comparison period {iso(previous.start)} → {iso(previous.end)}, so nothing can "
             f"be compared: its rates and every change are n/a, and a gate on them does not fire — compare with a "
             "period the data covers (--compare START..END)")]


def entities_in(events, span: Span):
    """Events of the entities whose first event is in ``[span.start, span.end)`` (all their
    events are kept, including those after ``span.end``). ``events``: a LazyFrame with ``ts``
    and ``_entity``."""
    import polars as pl

    from .schema import ENTITY, TS

    first = pl.col(TS).min().over(ENTITY)
    return events.filter((first >= span.start) & (first < span.end))


def to_span(value, what: str) -> Span:
    """A ``(start, end)`` pair of datetimes (naive = UTC) as a ``Span``."""
    start, end = (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC) for t in value)
    return make_span(start, end, what)


def resolve_periods(events, period, compare) -> tuple[Span | None, Span | None]:
    """(current, previous) spans for ``analyze``'s ``period`` and ``compare`` arguments.

    ``period``: None, a ``PeriodSpec`` or a ``(start, end)`` pair of datetimes; ``compare``:
    None (then a ``PeriodSpec``'s own ``compare``), ``"previous"``, ``"START..END"`` or a
    ``(start, end)`` pair. The data's bounds are read from ``events`` (LazyFrame) only when
    a relative form needs them."""
    cur: Span | None = None
    spec = period if isinstance(period, PeriodSpec) else None
    if spec is not None and spec.has_period:
        import polars as pl

        from .schema import TS

        lo, hi = events.select(pl.col(TS).min().alias("lo"), pl.col(TS).max().alias("hi")).collect().row(0)
        cur = spec.current(lo, hi)
    elif period is not None and spec is None:
        cur = to_span(period, "period")
    if compare is not None and not isinstance(compare, str):
        return cur, to_span(compare, "compare")
    return cur, previous_span(compare if compare is not None else (spec.compare if spec else None), cur)


__all__ = ["PeriodSpec", "Span", "empty_comparison_warning", "entities_in", "iso", "iso_week", "label_for", "last_week",
           "make_span", "month", "overlap_warning", "parse_instant", "previous_span", "resolve_periods", "to_span"]
