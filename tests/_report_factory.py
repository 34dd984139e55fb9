"""Hand-built ``Report`` objects for renderer tests (no pipeline needed).

``make_report()`` gives a small but complete report; ``make_report(hostile=True)`` puts
hostile strings (script tags, event handlers, quotes, ampersands, line separators) into every
string that comes from the data: step and event names, URLs, segment values, evidence,
recommendation text, file names.
"""

from __future__ import annotations

from funnel.model import (AfterExit, Abandonment, Band, Comparison, Count, EstimateBasis, EvidenceItem, ExitStep,
                          FunnelResult, GateResult, InputSummary, Paths, PathVariant, Period, Rate,
                          ReasonEpisode, ReasonShare, Recommendation, Report, SegmentBreakdown,
                          SegmentGroup, Settings, SignalBasis, SignalLift, StepChange, StepResult, TimeDistribution,
                          TrendPoint, Transition)

XSS_SCRIPT = "</script><script>window.__pwned=1</script>"
XSS_IMG = "<img src=x onerror=window.__pwned=1>"
XSS_QUOTES = "\"'&<>"
XSS_ATTR = "\" onmouseover=\"window.__pwned=1"
XSS_LS = "line\u2028sep\u2029para"
XSS_ALL = [XSS_SCRIPT, XSS_IMG, XSS_QUOTES, XSS_ATTR, XSS_LS]

BUCKETS = [round(10 ** (i / 8), 6) for i in range(52)]


def _rate(k: int, n: int) -> Rate:
    if n == 0:
        return Rate(k, n, None, None)
    p = k / n
    return Rate(k, n, p, (max(0.0, p - 0.03), min(1.0, p + 0.03)))


def _hist(center: int, total: int) -> list[int]:
    counts = [0] * len(BUCKETS)
    for off, w in ((-3, 1), (-2, 3), (-1, 6), (0, 8), (1, 6), (2, 3), (3, 1)):
        counts[center + off] = round(total * w / 28)
    return counts


def make_report(hostile: bool = False) -> Report:
    h = (lambda s, i=0: f"{s} {XSS_ALL[i % len(XSS_ALL)]}") if hostile else (lambda s, i=0: s)
    names = [h("product", 0), h("cart", 1), h("checkout", 2), h("shipping", 3), h("payment", 4),
             h("purchase", 0)]
    reached = [10000, 4000, 2400, 1900, 1500, 1200]
    steps = []
    for i, name in enumerate(names):
        prev = reached[i - 1] if i else None
        steps.append(StepResult(
            name=name, events=[h(f"{name.split()[0]}_event", i)], sessions=reached[i],
            conversion_from_previous=reached[i] / prev if prev else None,
            conversion_from_start=reached[i] / reached[0],
            ci95=(reached[i] / prev - 0.02, reached[i] / prev + 0.02) if prev else None,
            ci95_from_start=(reached[i] / reached[0] - 0.01, reached[i] / reached[0] + 0.01) if i else None,
            dropped=(prev - reached[i]) if prev else 0,
            median_seconds_from_previous=30.0 * i if i else None,
            p90_seconds_from_previous=300.0 * i if i else None,
        ))
    reasons = ["payment", "shipping", "returns", "ui_friction", "unknown"]
    by_step = [
        ExitStep(names[1], 1600, 0.57, 96000.0, {"payment": 0, "shipping": 300, "returns": 100,
                                                  "ui_friction": 400, "unknown": 800}),
        ExitStep(names[2], 500, 0.18, 30000.0, {"payment": 0, "shipping": 200, "returns": 50,
                                                 "ui_friction": 150, "unknown": 100}),
        ExitStep(names[3], 400, 0.14, 24000.0, {"payment": 0, "shipping": 250, "returns": 30,
                                                 "ui_friction": 70, "unknown": 50}),
        ExitStep(names[4], 300, 0.11, 18000.0, {"payment": 220, "shipping": 10, "returns": 0,
                                                 "ui_friction": 40, "unknown": 30}),
    ]
    totals = {r: sum(s.reasons[r] for s in by_step) for r in reasons}
    shares = [ReasonShare(r, totals[r], totals[r] / 2800, (totals[r] / 2800 - 0.02, totals[r] / 2800 + 0.02),
                          totals[r] * 60.0,
                          [EvidenceItem(f"{r}.signal", h(f"evidence for {r}", j), totals[r] // 2)
                           for j in range(2)] if r != "unknown" else [])
              for r in reasons]
    signals = [
        SignalLift("shipping.cost_share", "shipping", names[3], _rate(300, 500), _rate(400, 2000), 3.0,
                   (2.5, 3.6), 1e-12, True),
        SignalLift("returns.policy_view", "returns", names[2], _rate(40, 200), _rate(500, 2600), 1.04,
                   (0.8, 1.3), 0.6, False),
    ]
    bands = [Band("< 5%", None, 0.05, _rate(300, 1500)), Band("5–15%", 0.05, 0.15, _rate(800, 1600)),
             Band("> 15%", 0.15, None, _rate(700, 900))]
    episodes = [ReasonEpisode("payment", "2026-10-12", "2026-10-14", 0.45, 0.08, 300)]
    ab = Abandonment(names[1], names[-1], 4000, 2800, 0.70, (0.686, 0.714), 0.7019, 168000.0, 120,
                     604800.0, "EUR", by_step, shares, signals, bands, episodes)
    recs = [
        Recommendation(f"{r}.fix", r, names[2 + i % 3], h("device=mobile", i) if i % 2 else None,
                       h(f"Fix {r} at the step", i), h(f"Because {r} shows in the data", i),
                       h(f"Baymard: research for {r}", i), 100.0 - 15 * i, 6000.0 - 900 * i,
                       h(f"share of {r} carts × expected uplift", i), [h(f"{r} evidence item", i)],
                       basis=EstimateBasis(60.0, "average order value", "EUR", [SignalBasis(
                           h(f"{r}.signal", i), 200 - 30 * i, names[2 + i % 3], "carts that reached the step without it",
                           _rate(60, 100), _rate(30, 100), True, 0.5)], None, None, None))
        for i, r in enumerate(reasons)
    ]
    seg_values = [h("mobile", 1), h("desktop", 2), h("tablet", 3)]
    segments = [
        SegmentBreakdown("device", [
            SegmentGroup(v, 3000 + 100 * i, _rate(300 + 200 * i, 3000 + 100 * i), _rate(900, 1300),
                         0.001 if i == 0 else 0.3, 0.003 if i == 0 else 0.4, i == 0)
            for i, v in enumerate(seg_values)], [h("smart-tv", 4)], 50),
        SegmentBreakdown(h("channel", 1), [
            SegmentGroup(h("email", 0), 2000, _rate(300, 2000), _rate(700, 1000), 0.2, 0.3, False),
            SegmentGroup(h("https://ads.example/?q=<b>", 2), 8000, _rate(900, 8000), _rate(2100, 3000),
                         0.2, 0.3, False)], [], 50),
    ]
    transitions = [Transition(names[i], names[i + 1], reached[i + 1]) for i in range(5)]
    transitions += [Transition(names[i], "(exit)", reached[i] - reached[i + 1]) for i in range(1, 5)]
    transitions += [Transition(names[3], names[1], 120), Transition(names[4], names[2], 80)]
    dists = []
    for i in range(1, 6):
        label = f"{names[i - 1]} → {names[i]}"
        dists.append(TimeDistribution(label, "converters", 1000, 30.0, 120.0, BUCKETS, _hist(12 + i, 1000)))
        dists.append(TimeDistribution(label, "abandoners", 400, 90.0, 600.0, BUCKETS, _hist(18 + i, 400)))
    paths = Paths(
        transitions,
        [PathVariant(names, 1000, 0.83), PathVariant([names[0], names[1], names[3], names[1]] + names[2:], 200, 0.17)],
        [PathVariant(names[:2], 1600, 0.57), PathVariant(names[:4], 400, 0.14)],
        [AfterExit(names[i], reached[i] - reached[i + 1],
                   [Count(h("page_view", i), 50), Count("(exit)", 30)],
                   [Count(h("view_shipping_info", i), 40)],
                   [Count(h("/returns?email=jane.doe@example.com&sid=abc123", i), 20),
                    Count("/help?user_id=u-42", 5)])
         for i in range(5)],
        dists,
    )
    trend = []
    for w in range(8):
        bump = 3 if w == 2 else 1
        trend.append(TrendPoint(f"2026-W{40 + w}", 1250, [1250, 500, 300, 240, 190, 150],
                                _rate(350, 500), {"payment": 10 * bump, "shipping": 120, "returns": 20,
                                                  "ui_friction": 80, "unknown": 120}))
    comparison = Comparison(
        Period("2026-10-19T00:00:00Z", "2026-11-15T23:59:59Z"),
        Period("2026-09-21T00:00:00Z", "2026-10-18T23:59:59Z"),
        [StepChange(n, _rate(600, 1000), _rate(550, 1000), 5.0, (1.0, 9.0), 0.02, True) for n in names[1:]],
        StepChange("abandonment", _rate(700, 1000), _rate(720, 1000), -2.0, (-6.0, 2.0), 0.3, False),
        StepChange("conversion", _rate(120, 1000), _rate(110, 1000), 1.0, (-1.0, 3.0), 0.4, False),
    )
    inp = InputSummary(
        files=[h("sample_data/events.csv", 0)], format="csv",
        columns={"timestamp": "ts", "event": h("event_name", 1), "session_id": "session_id"},
        rows_read=120345, rows_rejected=345,
        rejected=[Count("unparseable_timestamp", 300), Count(h("missing_event", 2), 45)],
        events=120000, sessions=10000, users=7000,
        period=Period("2026-09-28T00:00:00Z", "2026-11-22T23:59:59Z"),
        sessions_log=h("sample_data/sessions.csv", 3), sessionized=False, capped_sessions=2,
    )
    settings = Settings([{"name": n, "events": [f"{n.split()[0]}_event"]} for n in names], "24h", "ordered",
                        "session", "30m", "UTC", "7d", h("funnel.toml", 4))
    fr = FunnelResult("session", "ordered", 86400.0, 10000, 12, [h("refund", 1)], steps,
                      _rate(reached[-1], reached[0]))
    return Report(
        schema_version=1, tool={"name": "funnel", "version": "0.1.0"},
        generated_at="2026-11-23T08:00:00Z", input=inp, settings=settings, funnel=fr, abandonment=ab,
        recommendations=recs, segments=segments, paths=paths, trend=trend, comparison=comparison,
        gates=[GateResult("abandonment_rate > 0.75", "abandonment_rate", 0.70, False)],
    )
