"""``funnel explain``: why one visitor is counted as dropped, event by event.

The fixture (tests/fixtures/explain/events.csv) holds one session per story: a tie, the
ship@20 / ship@50 + pay@50 case, a step beyond the window, a step before its previous step, a
restart whose second attempt counts, a purchase, a strict-order interruption and a duplicate.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from typer.testing import CliRunner

import reference_funnel as ref
from funnel.cli import app
from funnel.config import Config
from funnel.core.explain import STATUSES, classify
from funnel.core.funnel import LEVEL, funnel_levels
from funnel.schema import ENTITY, STEP
from test_engine_properties import logs, step_frame

FIXTURE = Path(__file__).parent / "fixtures" / "explain" / "events.csv"
runner = CliRunner()


def explain_json(*args: str) -> dict:
    r = runner.invoke(app, ["explain", *args, str(FIXTURE), "--json", "-"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def statuses(doc: dict) -> list[tuple[str, str]]:
    return [(e["event"], e["status"]) for e in doc["events"] if e["status"] != "ignored"]


@pytest.mark.parametrize(("sid", "expected", "level", "verdict"), [
    ("s_tie", [("add_to_cart", "reached"), ("begin_checkout", "tie")], 1, "at the same timestamp"),
    ("s_ship", [("add_to_cart", "reached"), ("begin_checkout", "reached"), ("add_shipping_info", "reached"),
                ("add_shipping_info", "repeat"), ("add_payment_info", "tie")], 3, "at the same timestamp"),
    ("s_window", [("add_to_cart", "reached"), ("begin_checkout", "window")], 1, "beyond the window"),
    ("s_order", [("begin_checkout", "order"), ("add_to_cart", "reached")], 1, "no earlier previous step"),
    ("s_restart", [("add_to_cart", "start"), ("begin_checkout", "advanced"), ("add_to_cart", "reached"),
                   ("begin_checkout", "reached"), ("add_shipping_info", "reached")], 3, "no 'payment' event"),
    ("s_buy", [(e, "reached") for e in ("add_to_cart", "begin_checkout", "add_shipping_info",
                                        "add_payment_info", "purchase")], 5, "converted"),
    ("s_strict", [("add_to_cart", "reached"), ("begin_checkout", "reached"), ("add_to_cart", "start"),
                  ("add_shipping_info", "reached")], 3, "no 'payment' event"),
    ("s_dup", [("add_to_cart", "reached"), ("begin_checkout", "reached"), ("begin_checkout", "duplicate")],
     2, "no 'shipping' event"),
])
def test_each_story_is_explained(sid, expected, level, verdict):
    doc = explain_json(sid)
    assert statuses(doc) == expected
    assert doc["level"] == level
    assert doc["exit_step"] == ["cart", "checkout", "shipping", "payment", "purchase"][level - 1]
    assert verdict in doc["verdict"]
    assert [e["time"] for e in doc["events"]] == sorted(e["time"] for e in doc["events"])


def test_details_name_the_times_involved():
    doc = explain_json("s_window")
    assert doc["events"][1]["detail"] == \
        "window: 1d 1h after the attempt started at 2026-10-01T09:00:00Z (window 1d)"
    assert doc["steps"][1] == {"step": "checkout", "reached": False, "time": None, "events": 1,
                               "failed": {"window": 1}}
    tie = explain_json("s_ship")["events"][4]
    assert tie["previous_step_time"] == tie["time"] == "2026-10-01T11:00:50Z"


def test_strict_order_reports_the_interruption():
    doc = explain_json("s_strict", "--order", "strict")
    assert statuses(doc)[-1] == ("add_shipping_info", "interrupted")
    assert doc["level"] == 2 and doc["exit_step"] == "checkout"
    assert "another funnel step" in doc["verdict"]
    # The detail names the step that came in between and the previous-step event it cut off.
    assert doc["events"][-1]["detail"] == ("order: 'cart' came between it and the 'checkout' event at "
                                           "2026-10-01T15:01:00Z (strict: no other funnel step in between)")


def test_strict_order_lets_a_repeat_of_the_same_step_pass(tmp_path):
    """QA: session d (begin_checkout twice, then add_shipping_info) was 'interrupted: another
    funnel step came between it and begin_checkout', the step in between being begin_checkout
    itself; a reloaded add_payment_info before purchase lost the purchase. A repeat is no other
    step: the repeat is in the counted attempt and the next step is reached."""
    p = tmp_path / "events.csv"
    p.write_text("timestamp,event,session_id,user_id,cart_value\n" + "".join(
        f"2026-01-05T1{h}:0{m}:00Z,{e},{sid},u_{sid},50\n" for h, sid, evs in (
            (0, "r", ("add_to_cart", "begin_checkout", "add_shipping_info", "add_payment_info",
                      "add_payment_info", "purchase")),
            (1, "d", ("add_to_cart", "begin_checkout", "begin_checkout", "add_shipping_info")),
            (2, "b", ("add_to_cart", "begin_checkout", "add_payment_info", "add_shipping_info")))
        for m, e in enumerate(evs)))
    r = runner.invoke(app, ["explain", "d", str(p), "--order", "strict", "--json", "-"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert statuses(d) == [("add_to_cart", "reached"), ("begin_checkout", "reached"),
                           ("begin_checkout", "repeat"), ("add_shipping_info", "reached")]
    assert d["level"] == 3 and "came between" not in r.stdout
    r = runner.invoke(app, ["explain", "r", str(p), "--order", "strict", "--json", "-"])
    doc = json.loads(r.stdout)
    assert doc["converted"] and statuses(doc)[-2:] == [("add_payment_info", "repeat"), ("purchase", "reached")]
    # A later step in between still interrupts, and is named.
    r = runner.invoke(app, ["explain", "b", str(p), "--order", "strict", "--json", "-"])
    doc = json.loads(r.stdout)
    assert doc["level"] == 2 and statuses(doc)[-2:] == [("add_payment_info", "order"),
                                                          ("add_shipping_info", "interrupted")]
    assert doc["events"][-1]["detail"].startswith("order: 'payment' came between it and the 'checkout' event at "
                                                  "2026-01-05T12:01:00Z")


def test_window_option_changes_the_verdict():
    assert explain_json("s_window", "--window", "2d")["level"] == 2
    assert explain_json("s_ship", "--window", "15s")["level"] == 2


def test_any_order_uses_the_best_window():
    doc = explain_json("s_order", "--order", "any")
    assert doc["level"] == 2 and all(s == "reached" for _, s in statuses(doc))


def test_user_level():
    doc = explain_json("u_5", "--unit", "user")
    assert doc["unit"] == "user" and doc["user_id"] == "u_5" and doc["level"] == 3


def test_diagnosis_is_attached_to_abandoned_carts_only():
    dropped = explain_json("s_tie")
    assert dropped["reason"] in ("payment", "shipping", "returns", "ui_friction", "unknown")
    assert dropped["diagnosis_note"] is None
    bought = explain_json("s_buy")
    assert bought["reason"] is None and "only abandoned carts" in bought["diagnosis_note"]


def test_terminal_output_and_json_file(tmp_path):
    out = tmp_path / "x.json"
    r = runner.invoke(app, ["explain", "s_ship", str(FIXTURE), "--json", str(out)], env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "dropped after 'shipping' (step 3 of 5)" in r.stdout
    assert "tie: the latest 'shipping' event is at the same time" in r.stdout
    assert "exit step: shipping" in r.stdout and f"wrote {out}" in r.stdout
    assert json.loads(out.read_text())["entity"] == "s_ship"


def test_json_to_stdout_keeps_stdout_parseable():
    r = runner.invoke(app, ["explain", "s_tie", str(FIXTURE), "--json", "-"])
    assert r.exit_code == 0
    json.loads(r.stdout)                       # the table went to stderr
    assert "dropped after" in r.stderr


def test_unknown_session_is_an_input_error_with_did_you_mean():
    r = runner.invoke(app, ["explain", "s_tei", str(FIXTURE)])
    assert r.exit_code == 2
    assert "no session 's_tei' in the input (8 sessions)" in r.stderr
    assert "did you mean 's_tie'" in r.stderr
    assert "Traceback" not in r.output


def test_an_id_spelled_as_a_null_is_said_to_be_missing():
    """``explain undefined`` (or null, None …): funnel reads such an id as missing, so it is
    in no entity; the error says why instead of suggesting unrelated ids."""
    for spelled in ("undefined", "null", "None"):
        r = runner.invoke(app, ["explain", spelled, str(FIXTURE)])
        assert r.exit_code == 2 and "Traceback" not in r.output
        assert f"'{spelled}' spells a missing session id: funnel reads it as no id" in r.stderr
        assert "did you mean" not in r.stderr


@pytest.mark.parametrize("shards", [1, 3])
def test_a_session_whose_rows_were_all_rejected_is_said_to_be_so(shards, tmp_path):
    """Regression: ``explain s4`` on a log whose only row of s4 was rejected (a timestamp out
    of range) said 'no session 's4' in the input … did you mean 's2'?'. It now says the session
    is there but unusable, with the causes and the first rejected row, in one pass and in user
    shards."""
    from funnel.core.explain import explain
    from funnel.errors import InputError

    p = tmp_path / "events.csv"
    p.write_text("timestamp,session_id,event,cart_value\n"
                 + "".join(f"2026-10-01T10:0{i}:00Z,s{i},add_to_cart,10\n" for i in range(6))
                 + "-5,s9,add_to_cart,1\n2100-01-01T00:00:00Z,s8,add_to_cart,1\n2100-01-02T00:00:00Z,s8,purchase,1\n")
    with pytest.raises(InputError) as one:
        explain([str(p)], "s9", Config(), shards=shards)
    assert str(one.value).startswith("session 's9' has no usable row: its only row was rejected "
                                     "(timestamp_out_of_range: 1; the first: ")
    assert one.value.message.endswith("events.csv row 7)") and "--rejects" in one.value.hint
    with pytest.raises(InputError, match=r"its 2 rows were rejected \(timestamp_out_of_range: 2; .* row 8\)"):
        explain([str(p)], "s8", Config(), shards=shards)
    with pytest.raises(InputError, match="no session 's7' in the input"):
        explain([str(p)], "s7", Config(), shards=shards)


def test_unknown_id_far_from_all_says_no_id_is_similar():
    """Regression (QA): an id like no other got its alphabetical neighbours as 'did you mean'."""
    r = runner.invoke(app, ["explain", "zzz", str(FIXTURE)])
    assert r.exit_code == 2 and "did you mean" not in r.stderr
    assert "no session 'zzz' in the input (8 sessions)" in r.stderr and "no session id is similar to it" in r.stderr


@pytest.mark.parametrize("shards", [1, 3])
def test_unknown_id_suggestions_on_the_sample(shards):
    """Regression (QA): a user id explained as a session got session ids as suggestions (it
    says to use --unit user, and the converse); 'nope' got unrelated ids; a zero-padding near
    miss ('s_00006') is among the suggestions; outer spaces are stripped, as ids are when read."""
    from conftest import SAMPLE_EVENTS

    from funnel.core.explain import explain
    from funnel.errors import InputError

    def error(entity: str, **cfg) -> str:
        with pytest.raises(InputError) as e:
            explain([str(SAMPLE_EVENTS)], entity, Config(**cfg), diagnose=False, shards=shards)
        return f"{e.value.message} — {e.value.hint}"

    assert error("u_00006").startswith("'u_00006' is a user id, not a session id: use --unit user")
    assert error("s_000006", level="user").startswith("'s_000006' is a session id, not a user id: drop --unit user")
    nope = error("nope")
    assert "did you mean" not in nope and "no session id is similar to it" in nope
    assert "did you mean 's_000006'" in error("s_00006")
    assert explain([str(SAMPLE_EVENTS)], " s_000006 ", Config(), diagnose=False, shards=shards).entity == "s_000006"


def test_bad_option_is_a_config_error():
    r = runner.invoke(app, ["explain", "s_tie", str(FIXTURE), "--order", "sorted"])
    assert r.exit_code == 2 and "invalid --order 'sorted'" in r.stderr


# --- the classification agrees with the engine and the reference ---------------------------

def _classify(rows, n_steps: int, window: int, order: str) -> pl.DataFrame:
    from funnel.config import Step
    from funnel.schema import EVENT

    cfg = Config(steps=tuple(Step(f"step{k}", (f"s{k}",)) for k in range(n_steps)), window=window, order=order)
    ev = step_frame(rows).with_columns(pl.format("s{}", STEP).alias(EVENT))
    return classify(ev, cfg).collect()


@pytest.mark.parametrize("order", ("ordered", "strict", "any"))
@settings(max_examples=120, deadline=None)
@given(log=logs())
def test_classification_agrees_with_reference(order, log):
    n_steps, window, rows = log
    steps_only = [r for r in rows if r[2] is not None]
    if not steps_only:
        return
    got = _classify(steps_only, n_steps, window, order)
    assert set(got["status"].unique()) <= set(STATUSES)
    base = 1_790_000_000_000_000
    for ent in {r[0] for r in steps_only}:
        mine = got.filter(pl.col(ENTITY) == ent)
        evs = [(t, s) for e, t, s in steps_only if e == ent]
        want = ref.funnel_result(evs, n_steps, window, order)
        assert mine["_level"][0] == want.level
        reached = {(t - base, s) for t, s in mine.filter(pl.col("status") == "reached").select("_t", STEP).iter_rows()}
        if order != "any":
            assert reached == {(t, k) for k, t in enumerate(want.times) if t is not None}
            q = (ref.qualifying_strict if order == "strict" else ref.qualifying_ordered)(evs, n_steps, window)
            for t, s, status in mine.select("_t", STEP, "status").iter_rows():
                t -= base
                prev = [x for x in q if x.step == s - 1 and x.t <= t]
                latest = max(prev, key=lambda x: x.t) if prev else None
                if status == "tie":
                    assert latest is not None and latest.t == t
                elif status == "window":
                    assert latest is not None and latest.t < t and t - latest.anchor > window
                elif status == "order":
                    assert latest is None
                elif status == "interrupted":
                    # an event of another step than s - 1 and s between the latest and this one,
                    # and the classification names one such step
                    assert order == "strict" and latest is not None
                    steps = ref._steps(evs, n_steps)
                    between = {x for u, x in steps[steps.index((latest.t, s - 1)) + 1:steps.index((t, s))]}
                    cut = mine.filter((pl.col("_t") == t + base) & (pl.col(STEP) == s))["cut"][0]
                    assert cut in between - {s - 1, s}, (between, cut)
        else:
            assert len({s for _, s in reached}) == len(reached) == want.level


def test_classification_level_equals_engine_on_the_sample():
    from conftest import SAMPLE_EVENTS
    from funnel.api import prepare

    cfg = Config()
    ev = prepare([str(SAMPLE_EVENTS)], cfg).events
    for order in ("ordered", "strict", "any"):
        c = Config(order=order)
        got = classify(ev, c).group_by(ENTITY).agg(pl.col("_level").first()).collect()
        eng = funnel_levels(ev.filter(pl.col(STEP).is_not_null()).select(ENTITY, "ts", STEP), 5, c.window,
                            order).collect()
        joined = got.join(eng, on=ENTITY, how="left").with_columns(pl.col(LEVEL).fill_null(0))
        assert (joined["_level"] == joined[LEVEL]).all(), order


def test_times_are_never_cut_at_80_columns(tmp_path):
    """Piped (80 columns), explain cut its time column ('2022-12-22T13:2…'), though the order
    of events seconds apart is what it shows. Its table follows the report tables' rule
    (render.terminal._table): times whole, text columns wrap or fold, no ellipsis."""
    from conftest import ROOT, run_cli

    snowplow = ROOT / "tests" / "fixtures" / "snowplow" / "snowplow_ecommerce_events.csv"
    sid = "0a42e1e29bd84c4f87003cb8c4c7098e31a93eed89b10f10c83e0c9c3810318d"
    out = tmp_path / "x.json"
    r = run_cli("explain", sid, str(snowplow), "--json", str(out), env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines if line[:1] in "┏┃┡│└") <= 80 and "…" not in r.stdout
    times = [e["time"] for e in json.loads(out.read_text())["events"]]
    assert len(times) > 5 and all(t in r.stdout for t in times), [t for t in times if t not in r.stdout]


def _period_carts(**period):
    from conftest import SAMPLE_EVENTS

    from funnel.api import analyze
    from funnel.periods import PeriodSpec

    return analyze(str(SAMPLE_EVENTS), period=PeriodSpec(**period)).carts


def test_explain_with_a_period_is_that_period_runs_cart_row():
    """Regression (QA): ``explain s_003482`` said recovered while the --period 2026-W44 run's
    carts table says lost (its user's later session starts after the period) and explain had
    no --period. With the period flags its verdict is the period run's row, in one pass (CLI)
    and in user shards; without them it is the whole input's."""
    from conftest import SAMPLE_EVENTS

    from funnel.core.explain import explain
    from funnel.periods import PeriodSpec

    carts = _period_carts(period="2026-W44")
    row = lambda sid: carts.filter(pl.col("session_id") == sid).row(0, named=True)
    assert row("s_003482")["recovered"] is False
    picks = ["s_003482", *carts.filter(pl.col("recovered"))["session_id"].head(2),
             *carts.filter(~pl.col("recovered") & (pl.col("reason") != "unknown"))["session_id"].head(2)]
    for sid in picks:
        r = runner.invoke(app, ["explain", sid, str(SAMPLE_EVENTS), "--period", "2026-W44", "--json", "-"])
        assert r.exit_code == 0, r.output
        doc, want = json.loads(r.stdout), row(sid)
        assert (doc["exit_step"], doc["reason"], doc["recovered"]) == \
            (want["exit_step"], want["reason"], want["recovered"]), sid
        assert doc["confidence"] == pytest.approx(want["confidence"], abs=6e-4)   # (the table's: 3 decimals)
    for sid in picks[:3]:   # user shards: the same
        ex = explain([str(SAMPLE_EVENTS)], sid, Config(), period=PeriodSpec(period="2026-W44"), shards=3)
        want = row(sid)
        assert (ex.exit_step, ex.reason, ex.recovered) == (want["exit_step"], want["reason"], want["recovered"]), sid
        assert ex.confidence == pytest.approx(want["confidence"], abs=6e-4)
    # --since/--until is the same week; without a period, its later recovery counts
    r = runner.invoke(app, ["explain", "s_003482", str(SAMPLE_EVENTS), "--since", "2026-10-26",
                            "--until", "2026-11-02", "--json", "-"])
    assert r.exit_code == 0 and json.loads(r.stdout)["recovered"] is False
    assert explain([str(SAMPLE_EVENTS)], "s_003482", Config()).recovered is True


@pytest.mark.parametrize("shards", [1, 3])
def test_explain_of_a_session_outside_the_period_says_so(shards):
    from conftest import SAMPLE_EVENTS

    from funnel.core.explain import explain
    from funnel.errors import InputError
    from funnel.periods import PeriodSpec

    with pytest.raises(InputError) as e:
        explain([str(SAMPLE_EVENTS)], "s_000001", Config(), period=PeriodSpec(period="2026-W44"), shards=shards)
    assert str(e.value).startswith("session 's_000001' does not start in the period 2026-W44 "
                                   "(2026-10-26T00:00:00Z → 2026-11-02T00:00:00Z): its first event is at 2026-09-28")
    r = runner.invoke(app, ["explain", "s_000001", str(SAMPLE_EVENTS), "--period", "2026-W44"])
    assert r.exit_code == 2 and "does not start in the period 2026-W44" in r.stderr and "Traceback" not in r.output
