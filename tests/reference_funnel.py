"""Brute-force reference for the funnel engine (tests only; plain Python, one entity at a time).

It simulates ClickHouse ``windowFunnel(window, 'strict_increase')`` literally: step events
are sorted by (timestamp, step index) as integer µs; the state keeps, per level, the pair
(anchor, last_ts) of the latest event that reached that level, overwritten by every new
qualifying event. A first-step event sets level 0 to (t, t). A step-k event at t qualifies
when level k-1 has a state with ``last_ts < t`` and ``t - anchor <= window``; it writes
(anchor, t) into level k. The level is the highest level with a state.

``strict``: additionally, every step event between the qualifying step-(k-1) event (the one in
the state) and the step-k event (same sort order, exact duplicates removed) must be of step k-1
or k: no other funnel step in between (checked literally on the sorted list);
``any``: the most distinct steps inside one [t, t + window].

Events are ``(t, step)`` pairs with ``step`` None (or out of range) for non-funnel events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Event = tuple[int, "int | None"]


@dataclass(frozen=True)
class Qualified:
    """A step event that advanced an attempt: its time, step and the attempt's anchor."""

    t: int
    step: int
    anchor: int


@dataclass(frozen=True)
class Result:
    level: int
    times: tuple[int | None, ...]   # best attempt's first time at each step (any: first time overall)


def _steps(events: Iterable[Event], n_steps: int) -> list[tuple[int, int]]:
    """Funnel-step events only, exact duplicates removed, sorted by (t, step)."""
    return sorted({(int(t), int(s)) for t, s in events if s is not None and 0 <= s < n_steps})


def qualifying_ordered(events: Iterable[Event], n_steps: int, window: int,
                       strict: bool = False) -> list[Qualified]:
    steps = _steps(events, n_steps)
    state: list[tuple[int, int, int] | None] = [None] * n_steps   # per level: (anchor, last_ts, index)
    out: list[Qualified] = []
    for i, (t, s) in enumerate(steps):
        if s == 0:
            state[0] = (t, t, i)
            out.append(Qualified(t, 0, t))
            continue
        prev = state[s - 1]
        if prev is None:
            continue
        anchor, last, j = prev
        if strict and any(x not in (s - 1, s) for _, x in steps[j + 1:i]):
            continue
        if last < t and t - anchor <= window:
            state[s] = (anchor, t, i)
            out.append(Qualified(t, s, anchor))
    return out


def qualifying_strict(events: Iterable[Event], n_steps: int, window: int) -> list[Qualified]:
    return qualifying_ordered(events, n_steps, window, strict=True)


def _best(q: list[Qualified], n_steps: int) -> Result:
    if not q:
        return Result(0, (None,) * n_steps)
    level = max(x.step for x in q) + 1
    anchor = min(x.anchor for x in q if x.step == level - 1)
    times = tuple(min((x.t for x in q if x.anchor == anchor and x.step == k), default=None)
                  for k in range(n_steps))
    return Result(level, times)


def _any(events: Iterable[Event], n_steps: int, window: int) -> Result:
    ev = _steps(events, n_steps)
    if not ev:
        return Result(0, (None,) * n_steps)
    level = max(len({s for t, s in ev if a <= t <= a + window}) for a, _ in ev)
    times = tuple(min((t for t, s in ev if s == k), default=None) for k in range(n_steps))
    return Result(level, times)


def funnel_result(events: Iterable[Event], n_steps: int, window: int, order: str = "ordered") -> Result:
    """Level and best-attempt step times of one entity."""
    events = list(events)
    if order == "any":
        return _any(events, n_steps, window)
    if order == "strict":
        return _best(qualifying_strict(events, n_steps, window), n_steps)
    return _best(qualifying_ordered(events, n_steps, window), n_steps)


def funnel_level(events: Iterable[Event], n_steps: int, window: int, order: str = "ordered") -> int:
    return funnel_result(events, n_steps, window, order).level


def excluded(events: Iterable[Event], exclusions: Iterable[int], n_steps: int, window: int,
             order: str = "ordered") -> bool:
    """An exclusion event between the best attempt's first step and its last reached step
    (both inclusive) removes the entity from the funnel."""
    r = funnel_result(events, n_steps, window, order)
    reached = [t for t in r.times if t is not None]
    if r.level == 0 or r.times[0] is None:
        return False
    last = reached[-1]
    return any(r.times[0] <= e <= last for e in exclusions)


def levels_by_entity(rows: Iterable[tuple[str, int, int | None]], n_steps: int, window: int,
                     order: str = "ordered") -> dict[str, Result]:
    """``rows``: (entity, t, step). Entities without any funnel-step event are left out."""
    by: dict[str, list[Event]] = {}
    for e, t, s in rows:
        by.setdefault(e, []).append((t, s))
    out = {}
    for e, evs in by.items():
        r = funnel_result(evs, n_steps, window, order)
        if _steps(evs, n_steps):
            out[e] = r
    return out


def step_counts(levels: Iterable[int], n_steps: int) -> list[int]:
    """Entities reaching each step: level >= k."""
    lv = list(levels)
    return [sum(1 for x in lv if x >= k) for k in range(1, n_steps + 1)]
