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
from datetime import date, datetime, timedelta, timezone

from .errors import ConfigError
from .model import Period

UTC = timezone.utc
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
    if end <= start:
        raise ConfigError(f"{what}: the end ({iso(end)}) must be after the start ({iso(start)})",
                          "--since is inclusive and --until exclusive; widen the range")
    return Span(start, end, label_for(start, end))


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
        if self.compare and self.compare.strip().lower() != "previous":
            if ".." not in self.compare:
                from .errors import suggestion

                raise ConfigError(f"invalid --compare {self.compare!r}",
                                  (suggestion(self.compare, ("previous",)) or "")
                                  + " use previous or START..END, e.g. 2026-11-09..2026-11-16")
            _range(self.compare, "--compare")
        if self.compare and self.compare.strip().lower() == "previous" and not self.has_period:
            raise ConfigError("--compare previous needs a period to compare",
                              "add --period last-week (or --since/--until)")

    @property
    def has_period(self) -> bool:
        return bool(self.period or self.since or self.until)

    def resolve(self, data_start: datetime, data_end: datetime) -> tuple[Span | None, Span | None]:
        """(current, previous) spans; ``data_end`` is the data's last event time.

        Without a period the current span is ``None`` (the whole input); the previous one is
        ``None`` unless ``compare`` is given."""
        data_end_excl = data_end + timedelta(microseconds=1)
        as_of = parse_instant(self.as_of, "--as-of") if self.as_of else data_end_excl
        cur: Span | None = None
        p = (self.period or "").strip()
        if p.lower() == "last-week":
            cur = last_week(as_of)
        elif p.lower() == "last-7d":
            cur = make_span(as_of - WEEK, as_of, "--period last-7d")
        elif m := _WEEK_RE.match(p):
            cur = iso_week(int(m[1]), int(m[2]))
        elif m := _MONTH_RE.match(p):
            cur = month(int(m[1]), int(m[2]))
        elif p:
            cur = make_span(*_range(p, "--period"), "--period")
        elif self.since or self.until:
            start = parse_instant(self.since, "--since") if self.since else data_start
            end = parse_instant(self.until, "--until") if self.until else as_of
            cur = make_span(start, end, "--since/--until")
        prev: Span | None = None
        c = (self.compare or "").strip()
        if c.lower() == "previous" and cur is not None:
            length = cur.end - cur.start
            if _MONTH_RE.match(cur.label):  # a calendar month: the previous calendar month
                y, mo = int(cur.label[:4]), int(cur.label[5:7])
                prev = month(y - (mo == 1), (mo - 2) % 12 + 1)
            else:
                prev = make_span(cur.start - length, cur.start, "--compare previous")
        elif c:
            prev = make_span(*_range(c, "--compare"), "--compare")
        return cur, prev


__all__ = ["PeriodSpec", "Span", "iso", "iso_week", "label_for", "last_week", "make_span", "month",
           "parse_instant"]
