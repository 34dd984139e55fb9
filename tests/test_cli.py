"""The CLI end to end on real files, as a user runs it (subprocess, real exit codes)."""

from __future__ import annotations

import io
import json
import tomllib

import polars as pl
import pytest

from conftest import ROOT, SAMPLE_EVENTS, SAMPLE_SESSIONS, capped_payments, run_cli


def test_analyze_default_prints_tables_and_writes_html(tmp_path):
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--sessions", str(SAMPLE_SESSIONS), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    out = r.stdout
    assert "carts" in out and "abandoned" in out and "Funnel" in out and "Why carts were abandoned" in out
    html = list((tmp_path / "reports").glob("funnel-*.html"))
    assert len(html) == 1 and f"wrote reports/{html[0].name}" in out
    assert html[0].read_text().lstrip().lower().startswith("<!doctype html>")


def test_json_to_stdout_is_clean_and_follows_contract(tmp_path):
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--json", "-", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert list(doc)[:4] == ["schema_version", "tool", "generated_at", "input"]
    assert doc["schema_version"] == 1
    steps = doc["funnel"]["steps"]
    assert [s["name"] for s in steps] == ["cart", "checkout", "shipping", "payment", "purchase"]
    for s in steps:
        assert set(s) >= {"name", "sessions", "conversion_from_previous", "conversion_from_start", "ci95",
                          "median_seconds_from_previous"}
    ab = doc["abandonment"]
    assert ab["carts"] == steps[0]["sessions"]
    assert ab["abandoned"] == steps[0]["sessions"] - steps[-1]["sessions"]
    assert abs(ab["rate"] - ab["abandoned"] / ab["carts"]) < 1e-6
    assert {r["reason"] for r in ab["reasons"]} == {"payment", "shipping", "returns", "ui_friction", "unknown"}
    assert doc["input"]["rows_read"] == doc["input"]["events"] + doc["input"]["rows_rejected"]
    assert not list(tmp_path.glob("reports/*")), "no HTML unless asked when a machine format is requested"


def test_json_is_deterministic_with_source_date_epoch(tmp_path):
    a = run_cli("analyze", str(SAMPLE_EVENTS), "--json", str(tmp_path / "a.json"), "-q")
    b = run_cli("analyze", str(SAMPLE_EVENTS), "--json", str(tmp_path / "b.json"), "-q")
    assert a.returncode == b.returncode == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_custom_steps_window_and_markdown(tmp_path):
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--steps", "add_to_cart,begin_checkout,buy=purchase",
                "--window", "30m", "--markdown", "-", "-q")
    assert r.returncode == 0, r.stderr
    assert "| add_to_cart |" in r.stdout and "| buy |" in r.stdout
    assert "\x1b[" not in r.stdout


def test_carts_and_rejects_outputs(tmp_path):
    bad = tmp_path / "events.csv"
    text = SAMPLE_EVENTS.read_text().splitlines()
    bad.write_text("\n".join(text[:2000] + ["garbage,s_x,u_x,add_to_cart,,,,,,,"]) + "\n")
    r = run_cli("analyze", str(bad), "--json", str(tmp_path / "r.json"), "--carts", str(tmp_path / "carts.csv"),
                "--rejects", str(tmp_path / "rejects.csv"), "-q")
    assert r.returncode == 0, r.stderr
    carts = pl.read_csv(tmp_path / "carts.csv")
    assert carts.columns[:4] == ["session_id", "user_id", "exit_step", "exit_time"]
    assert set(carts["reason"].unique()) <= {"payment", "shipping", "returns", "ui_friction", "unknown"}
    rej = pl.read_csv(tmp_path / "rejects.csv")
    assert rej["cause"].to_list() == ["bad_timestamp"] and rej["row"].to_list() == [2000]
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["abandonment"]["abandoned"] == carts.height
    strict = run_cli("analyze", str(bad), "--strict", "--json", "-", "-q")
    assert strict.returncode == 2 and "--strict: 1 row rejected (bad_timestamp 1)" in strict.stderr


def test_validate_reports_detection():
    r = run_cli("validate", str(SAMPLE_EVENTS))
    assert r.returncode == 0, r.stderr
    for word in ("format", "events", "timestamp", "session_id", "add_to_cart", "time range"):
        assert word in r.stdout
    j = run_cli("validate", str(SAMPLE_EVENTS), "--json", "-")
    doc = json.loads(j.stdout)
    assert doc["columns"]["timestamp"] == "timestamp" and doc["usable_rows"] == doc["rows_read"]
    assert doc["funnel_steps_found"]["purchase"] > 0


def test_validate_warns_when_timestamps_are_dates_without_a_time(tmp_path):
    """A timestamp column of dates (a Parquet date column, or text such as 2026-10-01, which
    was read as a bad timestamp) is read as local midnight; steps on one day then cannot be
    ordered, so validate says so. Times of day, even in another zone, raise nothing."""
    import datetime as dt

    import polars as pl

    days = [dt.date(2026, 10, 1), dt.date(2026, 10, 1), dt.date(2026, 10, 2)]
    rows = {"session_id": ["s1", "s1", "s2"], "event": ["add_to_cart", "purchase", "add_to_cart"]}
    pl.DataFrame({"timestamp": days, **rows}).write_parquet(tmp_path / "d.parquet")
    pl.DataFrame({"timestamp": [str(d) for d in days], **rows}).write_csv(tmp_path / "d.csv")
    pl.DataFrame({"timestamp": [f"{d}T00:00:01Z" for d in days], **rows}).write_csv(tmp_path / "t.csv")
    for name, tz in (("d.parquet", "UTC"), ("d.csv", "Europe/Helsinki")):
        r = run_cli("validate", str(tmp_path / name), "--timezone", tz, "--json", "-")
        doc = json.loads(r.stdout)
        assert doc["usable_rows"] == 3 and doc["warnings"][-1].startswith(
            "every timestamp (timestamp) is at midnight: the input seems to hold dates without a time of day"), name
        assert "is at midnight" in run_cli("validate", str(tmp_path / name), "--timezone", tz).stdout
    doc = json.loads(run_cli("validate", str(tmp_path / "t.csv"), "--json", "-").stdout)
    assert not any("midnight" in w for w in doc["warnings"])


def test_validate_counts_the_values_read_as_missing(tmp_path):
    """Nulls spelled as text (NULL, None, undefined, NaN, \\N …) are read as missing; validate
    says how many rows of which column were, naming the source column; none in a clean log."""
    p = tmp_path / "n.csv"
    p.write_text("time,sid,uid,event,value\n"
                 "2026-10-01T10:00:00Z,s1,undefined,add_to_cart,NULL\n"
                 "2026-10-01T10:01:00Z,s1,None,purchase,12\n"
                 "2026-10-01T10:02:00Z,s2,u2,null,\\N\n"
                 "NaT,s2,u2,add_to_cart,NaN\n")
    doc = json.loads(run_cli("validate", str(p), "--json", "-").stdout)
    assert doc["read_as_missing"] == [
        {"role": "timestamp", "column": "time", "rows": 1}, {"role": "event", "column": "event", "rows": 1},
        {"role": "user_id", "column": "uid", "rows": 2}, {"role": "cart_value", "column": "value", "rows": 3}]
    out = run_cli("validate", str(p)).stdout
    assert "read as missing" in out and "user_id (uid) 2 rows" in out
    assert json.loads(run_cli("validate", str(SAMPLE_EVENTS), "--json", "-").stdout)["read_as_missing"] == []


def test_analyze_warns_when_timestamps_are_dates_without_a_time(tmp_path):
    """``analyze`` says what ``validate`` says of dates without a time, in every route (one
    pass, user shards, funnel-only): the report's warnings (JSON, terminal). Its cheap test is
    the first and last event at local midnight, so a log whose ends fall there but which has
    times of day between them gets no warning, nor does a log of times in another zone."""
    import datetime as dt

    import polars as pl

    import funnel

    days = [dt.date(2026, 10, 1), dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 3)]
    rows = {"session_id": ["s1", "s1", "s2", "s3"], "event": ["add_to_cart", "purchase", "add_to_cart", "view_item"]}
    pl.DataFrame({"timestamp": days, **rows}).write_parquet(tmp_path / "d.parquet")
    pl.DataFrame({"timestamp": [str(d) for d in days], **rows}).write_csv(tmp_path / "d.csv")
    ends = ["2026-10-01T00:00:00Z", "2026-10-01T10:15:00Z", "2026-10-02T00:00:00Z", "2026-10-03T00:00:00Z"]
    pl.DataFrame({"timestamp": ends, **rows}).write_csv(tmp_path / "ends.csv")
    said = lambda report: [w for w in report.warnings if "is at midnight" in w]
    steps = "add_to_cart,purchase"
    for name, tz in (("d.parquet", "UTC"), ("d.csv", "Europe/Helsinki")):
        doc = json.loads(run_cli("analyze", str(tmp_path / name), "--steps", steps, "--timezone", tz,
                                 "--json", "-", "-q").stdout)
        assert [w for w in doc["warnings"] if w.startswith(
            "every timestamp (timestamp) is at midnight: the input seems to hold dates without a time of day")], name
        assert "is at midnight" in run_cli("analyze", str(tmp_path / name), "--steps", steps, "--timezone", tz).stdout
        for kw in ({"shards": 2}, {"funnel_only": True}, {"funnel_only": True, "shards": 2}):
            assert len(said(funnel.analyze(tmp_path / name, steps=steps, timezone=tz, **kw).report)) == 1, kw
    # UTC midnights are not midnight in Helsinki; times of day between the ends
    utc = pl.DataFrame({"timestamp": days, **rows}).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    utc.write_parquet(tmp_path / "utc.parquet")
    assert said(funnel.analyze(tmp_path / "utc.parquet", steps=steps).report)
    assert not said(funnel.analyze(tmp_path / "utc.parquet", steps=steps, timezone="Europe/Helsinki").report)
    assert not said(funnel.analyze(tmp_path / "ends.csv", steps=steps).report)


def test_bug_terminal_tables_cut_numbers_and_names_at_80_columns(tmp_path):
    """Piped (CI logs have no terminal width: 80 columns), the step table cut its 95% CI values
    ('73.0–76.…') and step names ('add_to_c…'). Number columns now keep their values' width and
    text columns wrap or fold: nothing ends in an ellipsis, and every value is there."""
    from funnel.render.filters import fmt_ci, fmt_money

    snowplow = str(SAMPLE_EVENTS.parent.parent / "tests" / "fixtures" / "snowplow" / "snowplow_ecommerce_events.csv")
    for args in ((str(SAMPLE_EVENTS), "--sessions", str(SAMPLE_SESSIONS)),
                 (snowplow, "--steps", "add_to_cart,begin_checkout,add_shipping_info,purchase")):
        r = run_cli("analyze", *args, "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"),
                    env={"COLUMNS": "80"})
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert max(len(line) for line in lines if line[:1] in "┏┃┡│└") <= 80 and "…" not in r.stdout
        rep = json.loads((tmp_path / "r.json").read_text())
        cur = rep["abandonment"]["currency"]
        want = [fmt_ci(s["ci95"]) for s in rep["funnel"]["steps"]] + \
            [fmt_money(x["value"], cur) for x in rep["abandonment"]["reasons"]]
        assert all(w in r.stdout for w in want), [w for w in want if w not in r.stdout]
        # (a folded name continues on the next line of its cell)
        cells = "".join(line.split("│")[1].strip() for line in lines if line.startswith("│"))
        assert all(s["name"] in cells for s in rep["funnel"]["steps"])


def test_terminal_text_is_not_read_as_markup(tmp_path):
    """Text in the terminal output is printed as written, not as rich markup (found by the CLI
    flag fuzz): the hint '[funnel] steps' had lost its brackets, and so would a path such as
    'reports/[week]/r.json'. The sessionizing note names the configured inactivity, not 30m."""
    log = tmp_path / "log.csv"
    log.write_text("timestamp,user_id,event\n2026-10-01T10:00:00Z,u1,add_to_cart\n"
                   "2026-10-01T10:20:00Z,u1,purchase\n")
    (tmp_path / "funnel.toml").write_text('[time]\nsession_timeout = "10m"\n')
    r = run_cli("validate", str(log), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "set [funnel] steps in funnel.toml" in r.stdout
    assert "2 sessions (built from 10m of inactivity)" in r.stdout
    assert json.loads(run_cli("validate", str(log), "--json", "-", cwd=tmp_path).stdout)["session_timeout"] == "10m"
    out = tmp_path / "[week]"
    out.mkdir()
    r = run_cli("analyze", str(SAMPLE_EVENTS), "-q", "--json", str(out / "r.json"), "--markdown", str(out / "r.md"))
    assert r.returncode == 0 and f"wrote {out / 'r.json'}" in r.stdout and f"wrote {out / 'r.md'}" in r.stdout


def test_two_outputs_cannot_share_stdout_or_a_file(tmp_path):
    """--json - with --markdown - wrote both documents into one stream (found by the CLI flag
    fuzz: neither part parsed), and two outputs named alike overwrote each other: exit 2 first."""
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--json", "-", "--markdown", "-")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == "error: --json and --markdown would both write to stdout — send one of them to a file"
    out = tmp_path / "r.out"
    r = run_cli("analyze", str(SAMPLE_EVENTS), "-q", "--json", str(out), "--carts", str(tmp_path / "." / "r.out"))
    assert r.returncode == 2 and "--json and --carts would both write to" in r.stderr and not out.exists()
    # a folder is shared as before: each output writes its own file in it
    r = run_cli("analyze", str(SAMPLE_EVENTS), "-q", "--json", f"{tmp_path}/", "--markdown", str(tmp_path))
    assert r.returncode == 0 and {p.suffix for p in tmp_path.iterdir()} == {".json", ".md"}, r.stderr


def test_validate_unusable_exits_2(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("timestamp,session_id,event\nnope,s,a\n")
    r = run_cli("validate", str(p))
    assert r.returncode == 2 and "no usable rows" in r.stderr and "Traceback" not in r.stderr


def test_validate_without_usable_rows_says_why_each_step_has_none(tmp_path):
    """QA: validate of an input whose rows all have a bad or no timestamp printed "time range
    None → None" and warned that no event is named 'add_to_cart' though both rows were
    add_to_cart events (rejected). It now says there is no usable time range (the JSON keeps
    nulls) and that the step's rows were all rejected, with the causes; a step whose events
    the input lacks is still said to be unnamed."""
    p = tmp_path / "allbad.csv"
    p.write_text("timestamp,event,session_id\nyesterday,add_to_cart,s1\n,add_to_cart,s2\n")
    r = run_cli("validate", str(p))
    assert r.returncode == 2 and "None" not in r.stdout and "no usable time range · 0 sessions" in r.stdout
    said = ("no sessions reached step 'cart': its events occur in the input, but every row of them was rejected — "
            "bad_timestamp 1 (timestamp could not be parsed), missing_timestamp 1 (no timestamp); they are counted "
            "under rejected rows")
    assert f"warning: {said}" in r.stdout and "named 'add_to_cart'" not in r.stdout
    assert "no event in the input is named 'begin_checkout'" in r.stdout
    doc = json.loads(run_cli("validate", str(p), "--json", "-").stdout)
    assert doc["time_range"] == {"start": None, "end": None} and doc["warnings"][0] == said


@pytest.mark.parametrize("route", [{}, {"funnel_only": True}, {"shards": 2}, {"shards": 2, "funnel_only": True}])
def test_a_step_whose_events_were_all_set_aside_says_so(tmp_path, route):
    """QA: with a session cap that set aside every payment event, the warning said the step's
    events "occur, but never after the step before". It now says every row of them was
    rejected, and why (the cap, with its value), on every route, and validate says it alike.
    Only the steps whose rows were all set aside are said; Spark, which reads no event names
    again, names the causes too."""
    from funnel.api import analyze, step_warnings
    from funnel.config import load_config

    log, cfg = capped_payments(tmp_path)
    cause = "session_cap 1 (event beyond the per-session cap of 3 events, [input] max_events_per_session)"
    said = [f"no sessions reached step {s!r}: its events occur in the input, but every row of them was rejected — "
            f"{cause}; --rejects FILE lists them" for s in ("payment", "purchase")]
    got = analyze(str(log), config=cfg, **route)
    assert got.report.warnings == said
    if not route:
        v = run_cli("validate", str(log), "-c", str(tmp_path / "cap.toml"))
        assert said[0].replace("--rejects FILE lists them", "they are counted under rejected rows") in v.stdout
        assert step_warnings(got.report, cfg, None, got.counts) == [(   # (Spark)
            "no sessions reached step 'payment' (events: add_payment_info, Payment Info Entered, payment_info_submitted)"
            f"; rows of its events were rejected: {cause} — check the step's event names against the input with "
            "'funnel validate'")]
        # (with a cap of 4 only the purchase row is set aside: payment is reached, purchase is said)
        (tmp_path / "cap.toml").write_text("[input]\nmax_events_per_session = 4\n")
        got = analyze(str(log), config=load_config(str(tmp_path / "cap.toml"))).report.warnings
        assert got == [said[1].replace("cap of 3", "cap of 4")]


def test_init_writes_commented_config_that_loads(tmp_path):
    r = run_cli("init", str(SAMPLE_EVENTS), "--out", str(tmp_path / "funnel.toml"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "funnel.toml").read_text()
    assert text.count("#") > 10
    data = tomllib.loads(text)
    assert data["columns"]["timestamp"] == "timestamp"
    assert [s["name"] for s in data["funnel"]["steps"]] == ["cart", "checkout", "shipping", "payment", "purchase"]
    again = run_cli("init", "--out", str(tmp_path / "funnel.toml"))
    assert again.returncode == 2 and "already exists" in again.stderr
    from funnel.config import load_config

    assert load_config(tmp_path / "funnel.toml").columns["event"] == "event"


def test_sample_command(tmp_path):
    r = run_cli("sample", "--sessions", "300", "--seed", "3", "--out", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    assert {p.name for p in (tmp_path / "s").iterdir()} == {"events.csv", "sessions.csv", "labels.csv"}
    # files already there are left alone without --force, as funnel init does (they were overwritten)
    (tmp_path / "s" / "sessions.csv").unlink()
    mine = (tmp_path / "s" / "events.csv").read_bytes()
    r = run_cli("sample", "--sessions", "50", "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.strip() == (f"error: {tmp_path / 's' / 'events.csv'}, {tmp_path / 's' / 'labels.csv'} already "
                                "exist — use --force to overwrite them or --out to pick another folder")
    assert (tmp_path / "s" / "events.csv").read_bytes() == mine and not (tmp_path / "s" / "sessions.csv").exists()
    r = run_cli("sample", "--sessions", "50", "--out", str(tmp_path / "s"), "--force")
    assert r.returncode == 0 and (tmp_path / "s" / "events.csv").read_bytes() != mine, r.stderr


def test_errors_are_one_line_exit_2(tmp_path):
    cases = [
        (["analyze", "missing.csv"], "file not found: missing.csv"),
        (["analyze", str(SAMPLE_EVENTS), "--window", "banana"], "invalid --window 'banana'"),
        (["analyze", str(SAMPLE_EVENTS), "--order", "sideways"], "invalid --order"),
        (["analyze", str(SAMPLE_EVENTS), "--column", "timestmp=x"], "did you mean 'timestamp'"),
        (["analyze", str(SAMPLE_EVENTS), "--json", "/proc/nope/r.json"], "cannot"),
        (["analyze", str(SAMPLE_EVENTS), "--config", "nope.toml"], "config file not found"),
    ]
    for args, msg in cases:
        r = run_cli(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert msg in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_version_and_help():
    assert run_cli("--version").stdout.startswith("funnel ")
    h = run_cli("analyze", "--help")
    for flag in ("--sessions", "--steps", "--window", "--json", "--markdown", "--html", "--config"):
        assert flag in h.stdout


def test_init_threshold_defaults_are_valid_config(tmp_path):
    """Uncommenting the [thresholds] block that `funnel init` writes gives a valid config."""
    import re

    from funnel.config import load_config
    from funnel.core.signals import catalogue

    r = run_cli("init", "--out", str(tmp_path / "funnel.toml"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "funnel.toml").read_text()
    block = text[text.index("# [thresholds]"):]
    uncommented = re.sub(r"(?m)^# ", "", block)
    p = tmp_path / "t.toml"
    p.write_text(uncommented)
    cat = catalogue(load_config(p))
    assert cat.thresholds.shipping_share == 0.15 and cat.thresholds.quick_exit_us == 600_000_000


def test_bad_signal_config_fails_before_reading(tmp_path):
    p = tmp_path / "funnel.toml"
    p.write_text("[thresholds]\nshiping_share = 0.2\n")
    r = run_cli("analyze", "does-not-exist.csv", "--config", str(p))
    assert r.returncode == 2 and "shipping_share" in r.stderr and "Traceback" not in r.stderr


def test_a_step_no_session_reached_is_explained(tmp_path):
    """A misnamed step gave a funnel of zeros and 100% abandonment without a word: a step that
    no entity reached now carries a one-line warning in every output, naming the events the
    input lacks and the closest names it has (word order too), or saying that its events occur
    but never in order within the window. The bundled sample has none."""
    from funnel.api import analyze, step_warnings
    from funnel.config import Config

    r = run_cli("analyze", str(SAMPLE_EVENTS), "--steps", "add_to_cart,checkout_begin,purchase",
                "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"), "--html", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    said = ("no event in the input is named 'checkout_begin' (step 'checkout_begin'), so no sessions reached it "
            "— did you mean 'begin_checkout'?")
    # (purchase follows from it; its buyers bought without the step's event: recovered, not lost)
    first, bought = json.loads((tmp_path / "r.json").read_text())["warnings"]
    assert first == said and bought.startswith("602 carts stopped at a step but were bought later in the same "
                                               "session (602 without a 'checkout_begin' event in order within the window)")
    assert f"warning: {said}" in r.stdout and f"> **Warning:** {said}" in (tmp_path / "r.md").read_text()
    assert said.replace("'", "&#39;") in (tmp_path / "r.html").read_text()
    quiet = run_cli("analyze", str(SAMPLE_EVENTS), "--steps", "add_to_cart,checkout_begin,purchase", "-q",
                    "--json", "-")
    assert quiet.returncode == 0 and f"warning: {said}" in quiet.stderr and json.loads(quiet.stdout)["warnings"]
    rep = analyze(str(SAMPLE_EVENTS), steps="purchase,add_to_cart", window="1s", funnel_only=True).report
    assert rep.warnings == [("no sessions reached step 'add_to_cart': its events occur, but never after the step "
                             "before within the 1s window (order: ordered)")]
    assert step_warnings(rep, Config(), None, None) == [("no sessions reached step 'add_to_cart' (events: add_to_cart) "
                                                         "— check the step's event names against the input with "
                                                         "'funnel validate'")]   # (Spark)
    assert analyze(str(SAMPLE_EVENTS), funnel_only=True).report.warnings == []
    # funnel validate says the same (it said "no events for funnel steps checkout_begin", no more)
    (tmp_path / "funnel.toml").write_text('[funnel]\nsteps = ["add_to_cart", "checkout_begin", "purchase"]\n')
    v = run_cli("validate", str(SAMPLE_EVENTS), cwd=tmp_path)
    assert v.returncode == 0 and f"warning: {said}" in v.stdout, v.stdout
    doc = json.loads(run_cli("validate", str(SAMPLE_EVENTS), "--json", "-", cwd=tmp_path).stdout)
    assert doc["warnings"][0] == said and doc["funnel_steps_found"]["checkout_begin"] == 0


def test_funnel_only_is_not_implied_when_segments_are_asked_and_writes_no_html(tmp_path):
    """--steps with --json alone implies the funnel-only path, which has no segments: a
    --segment was silently dropped (segments: []). It now means the full analysis, and an
    explicit --funnel-only --segment is a usage error. --funnel-only with no output wrote the
    default HTML report and printed an empty reasons table: neither now."""
    log = tmp_path / "events.csv"
    log.write_text("timestamp,session_id,event,device\n"
                   + "".join(f"2026-10-01T10:0{i}:00Z,s{i},add_to_cart,{'mobile' if i % 2 else 'desktop'}\n"
                             f"2026-10-01T10:0{i}:30Z,s{i},purchase,{'mobile' if i % 2 else 'desktop'}\n"
                             for i in range(6)))
    out = tmp_path / "o.json"
    r = run_cli("analyze", str(log), "-q", "--steps", "add_to_cart,purchase", "--json", str(out),
                "--segment", "device", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [s["column"] for s in json.loads(out.read_text())["segments"]] == ["device"]
    r = run_cli("analyze", str(log), "-q", "--funnel-only", "--json", str(out), "--segment", "device", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("error: --funnel-only computes the funnel and abandonment counts only, not "
                                "--segment — drop --segment, or run without --funnel-only")
    r = run_cli("analyze", str(log), "--funnel-only", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Funnel" in r.stdout and "Why carts were abandoned" not in r.stdout
    assert not (tmp_path / "reports").exists() and "wrote" not in r.stdout


def test_user_level_funnel_needs_a_user_id_column(tmp_path):
    """--unit user on a log without a user id column counted every session as a user (the
    entity is the user id, else the session): an exit-2 error naming the columns now, in
    analyze and explain alike."""
    log = tmp_path / "events.csv"
    log.write_text("timestamp,session_id,event\n2026-10-01T10:00:00Z,s1,add_to_cart\n"
                   "2026-10-01T10:05:00Z,s1,purchase\n")
    for args in (["analyze", str(log), "--json", "-"], ["explain", "s1", str(log)]):
        r = run_cli(*args, "--unit", "user", cwd=tmp_path)
        assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert (f"error: {log}: a user-level funnel (--unit user) needs a user id column, and none was found "
                "(columns: timestamp, session_id, event) — map one with --column user_id=COLUMN") in r.stderr
    r = run_cli("analyze", str(log), "--unit", "user", "--column", "user_id=session_id", "--json", "-", "-q")
    assert r.returncode == 0 and json.loads(r.stdout)["funnel"]["unit"] == "user", r.stderr


def test_terminal_prints_emoji_codes_and_markup_in_data_as_written(tmp_path):
    """rich read ':smile:' in an event name as an emoji code (validate showed 😄) and 'event:x:'
    in a did-you-mean as ❌: the consoles print data as written, markup too."""
    log = tmp_path / "events.csv"
    log.write_text("timestamp,session_id,event\n2026-10-01T10:00:00Z,s1,add_to_cart\n"
                   "2026-10-01T10:01:00Z,s1,[red]x[/red] :smile:\n")
    r = run_cli("validate", str(log))
    assert r.returncode == 0, r.stderr
    assert "[red]x[/red] :smile:" in r.stdout and "😄" not in r.stdout
    (tmp_path / "hdr.csv").write_text("timestamp,session_id,event:x:\n2026-10-01T10:00:00Z,s1,add_to_cart\n")
    r = run_cli("validate", str(tmp_path / "hdr.csv"))
    assert r.returncode == 2 and "did you mean 'event:x:'?" in r.stderr and "❌" not in r.stderr, r.stderr


def test_column_roles_taken_or_set_twice_are_named(tmp_path):
    """--column event=timestamp left the timestamp role without its column and said 'no
    timestamp column found (columns: timestamp, …)'; a role given twice kept the last."""
    r = run_cli("analyze", str(SAMPLE_EVENTS), "-q", "--json", "-", "--column", "event=timestamp")
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (f"error: {SAMPLE_EVENTS}: column 'timestamp' is already taken by the event role, so the timestamp role "
            "has no column — map event to another column, or set --column timestamp=COLUMN") in r.stderr
    r = run_cli("analyze", str(SAMPLE_EVENTS), "-q", "--json", "-", "--column", "event=event",
                "--column", "event=page_url")
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.strip() == ("error: --column sets the event role twice ('event' and 'page_url') — "
                                "keep one --column event=COLUMN")


def test_an_empty_flag_value_is_an_error_not_the_default(tmp_path):
    """--steps '' (an unset CI variable) ran the default funnel, --period '' the whole data and
    --json '' wrote nothing: an empty value is an exit-2 error naming the flag."""
    for args in (["analyze", str(SAMPLE_EVENTS), "--steps", ""], ["analyze", str(SAMPLE_EVENTS), "--window", " "],
                 ["analyze", str(SAMPLE_EVENTS), "--timezone", ""], ["analyze", str(SAMPLE_EVENTS), "--order", ""],
                 ["analyze", str(SAMPLE_EVENTS), "--period", ""], ["analyze", str(SAMPLE_EVENTS), "--json", ""],
                 ["analyze", str(SAMPLE_EVENTS), "--exclude", "x", "--exclude", ""],
                 ["validate", str(SAMPLE_EVENTS), "--format", ""], ["explain", "s1", str(SAMPLE_EVENTS), "--unit", ""]):
        r = run_cli(*args, "-q" if args[0] == "analyze" else "--json=-", cwd=tmp_path)
        flag = next(a for a in reversed(args) if a.startswith("--"))
        assert r.returncode == 2 and r.stdout == "", (args, r.stderr)
        assert r.stderr.strip() == f"error: {flag} is empty — give {flag} a value, or leave the flag out", args
    assert not (tmp_path / "reports").exists()


def test_dash_is_stdout_for_every_output(tmp_path):
    """Regression: '-' meant stdout for --json and --markdown only; --carts -, --rejects -,
    --html - and init --out - wrote a file named '-' (two of them the same file), while the
    error for two outputs on '-' spoke of stdout. Now each writes to stdout, the human output
    goes to stderr, and funnel sample (a folder of files) says it cannot."""
    r = run_cli("analyze", "sample_data/events.csv", "--carts", "-")
    assert r.returncode == 0, r.stderr
    carts = pl.read_csv(io.StringIO(r.stdout))
    assert carts.columns[:3] == ["session_id", "user_id", "exit_step"] and carts.height > 1000
    assert "Funnel" in r.stderr and "wrote -" not in r.stderr + r.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,session_id,event\nnot a time,s1,add_to_cart\n2026-10-01T10:00:00Z,s1,add_to_cart\n")
    r = run_cli("analyze", str(bad), "--rejects", "-", "--json", str(tmp_path / "r.json"), "-q")
    assert r.returncode == 0 and r.stdout.startswith("file,row,cause") and "bad_timestamp" in r.stdout
    r = run_cli("analyze", "sample_data/events.csv", "--html", "-", "-q")
    assert r.returncode == 0 and r.stdout.startswith("<!DOCTYPE html>")
    r = run_cli("init", "sample_data/events.csv", "--out", "-")
    assert r.returncode == 0 and r.stdout.startswith("# funnel.toml") and "[input]" in r.stdout
    r = run_cli("analyze", "sample_data/events.csv", "--carts", "-", "--rejects", "-")
    assert r.returncode == 2 and "--carts and --rejects would both write to stdout" in r.stderr
    r = run_cli("sample", "--out", "-")
    assert r.returncode == 2 and "not to stdout" in r.stderr
    assert not (ROOT / "-").exists()


def test_dash_writes_where_the_shell_sent_stdout_without_truncating_it(tmp_path):
    """Regression: '-' reopened /dev/stdout, which, when the shell had sent stdout to a file
    (``> log``, ``>> log``), truncated that file and wrote from its start: what the shell and
    other commands wrote before was lost, and the next command's output overwrote the table.
    The table now goes through this process's own stdout, at the file's current offset."""
    import os
    import subprocess
    import sys

    log, out = tmp_path / "log.txt", tmp_path / "out.txt"
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    funnel = f"'{sys.executable}' -m funnel analyze sample_data/events.csv -q --html /dev/null"
    log.write_text("earlier\n")
    script = f"{{ echo head; {funnel} --carts -; echo tail; }} > '{out}'; {funnel} --rejects - >> '{log}'"
    subprocess.run(["bash", "-c", script],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    lines = out.read_text().splitlines()
    assert lines[0] == "head" and lines[1].startswith("session_id,user_id,exit_step") and lines[-1] == "tail"
    assert len(lines) > 1000
    assert log.read_text().startswith("earlier\nfile,row,cause")   # (the sample has no rejected row)


def test_strict_order_counts_a_repeated_step_as_no_interruption(tmp_path):
    """QA: with --order strict a reloaded add_payment_info before purchase lost the purchase
    (steps 1,1,1,1,0; the cart abandoned and blamed on payment, with two contradictory
    warnings). A repeat of the same step is no *other* funnel step in between: it converts."""
    p = tmp_path / "strict2.csv"
    p.write_text("timestamp,event,session_id,user_id,cart_value\n" + "".join(
        f"2026-01-05T10:0{m}:00Z,{e},r,u1,50\n" for m, e in enumerate(
            ("add_to_cart", "begin_checkout", "add_shipping_info", "add_payment_info", "add_payment_info",
             "purchase"))))
    r = run_cli("analyze", str(p), "--order", "strict", "--json", "-", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [s["sessions"] for s in doc["funnel"]["steps"]] == [1, 1, 1, 1, 1]
    assert doc["abandonment"]["abandoned"] == 0 and doc["warnings"] == []


def test_validate_reads_a_sessions_log_as_analyze_does(tmp_path):
    """README: funnel validate lists segment_columns, 'a --sessions log adds its columns'; but
    validate had no --sessions (exit 2 'No such option: --sessions'). It reads the log as
    analyze does: its columns join segment_columns, its rows not used are said (terminal, JSON),
    a log holding few of the sessions is warned of in analyze's words (user shards too), and a
    log without a session id column is analyze's error."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.validate import describe_input

    lines = SAMPLE_SESSIONS.read_text().splitlines()
    head, rows = lines[0], lines[1:1501]   # a quarter of the sessions, a repeated id, a row without one
    log = tmp_path / "sessions.csv"
    log.write_text("\n".join([head, *rows, rows[0], "," + rows[1].split(",", 1)[1]]) + "\n")
    r = run_cli("validate", str(SAMPLE_EVENTS), "--sessions", str(log), "--json", str(tmp_path / "v.json"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["segment_columns"] == ["currency", "payment_method", "device", "channel", "country", "user_type",
                                      "landing_page"]
    assert doc["sessions_log"] == str(log)
    assert [(c["cause"], c["rows"]) for c in doc["sessions_log_rejected"]] == [("duplicate_session", 1),
                                                                              ("missing_id", 1)]
    assert "sessions log: 2 rows not used (duplicate_session 1, missing_id 1;" in r.stdout
    coverage = [w for w in doc["warnings"] if "are in the sessions log" in w]
    assert coverage == [(f"only 1,500 of the {doc['sessions']:,} sessions (25%) are in the sessions log {log}: "
                         "check that both files spell the session ids alike (their breakdowns by its columns read "
                         "'(none)')")]
    assert coverage[0] in analyze(str(SAMPLE_EVENTS), sessions=str(log), tables=False).report.warnings
    assert coverage[0] in " ".join(r.stdout.split())
    sharded = describe_input([str(SAMPLE_EVENTS)], Config(), shards=3, sessions=str(log))
    assert {k: sharded[k] for k in ("segment_columns", "sessions_log_rejected", "warnings")} == \
        {k: doc[k] for k in ("segment_columns", "sessions_log_rejected", "warnings")}
    clean = run_cli("validate", str(SAMPLE_EVENTS), "--sessions", str(SAMPLE_SESSIONS), "--json", "-")
    assert clean.returncode == 0 and json.loads(clean.stdout)["sessions_log_rejected"] == []
    assert json.loads(clean.stdout)["warnings"] == []
    (tmp_path / "no_id.csv").write_text("visit,device\ns_000001,mobile\n")
    bad = run_cli("validate", str(SAMPLE_EVENTS), "--sessions", str(tmp_path / "no_id.csv"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "sessions log has no session id column (columns: visit, device)" in bad.stderr
    empty = run_cli("validate", str(SAMPLE_EVENTS), "--sessions", "")
    assert empty.returncode == 2 and "--sessions is empty" in empty.stderr


@pytest.mark.parametrize("args, flag, example", [
    (["analyze", str(SAMPLE_EVENTS), "-q", "--carts", "newdir/"], "--carts", "newdir/carts.csv"),
    (["analyze", str(SAMPLE_EVENTS), "-q", "--rejects", "nd3/"], "--rejects", "nd3/rejects.csv"),
    (["init", "--out", "newdir2/"], "--out", "newdir2/funnel.toml"),
    (["explain", "s1", str(SAMPLE_EVENTS), "--json", "nd4/"], "--json", "nd4/explain.json"),
    (["validate", str(SAMPLE_EVENTS), "--json", "nd5/"], "--json", "nd5/validate.json"),
])
def test_bug_trailing_slash_on_a_file_output_wrote_a_file_named_as_the_folder(tmp_path, args, flag, example):
    """A path ending in / names a folder (docs/ci.md): an output that must be a file is exit 2
    naming it, not a file called 'newdir' (QA)."""
    r = run_cli(*args, cwd=tmp_path)
    target = example.split("/")[0]
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"error: {flag} {target}/ names a folder — give a file name (e.g. {example})"
    assert list(tmp_path.iterdir()) == []


def test_bug_init_out_an_existing_folder_asked_for_force_first(tmp_path):
    (tmp_path / "existing_dir").mkdir()
    for force in ([], ["--force"]):
        r = run_cli("init", "--out", "existing_dir", *force, cwd=tmp_path)
        assert r.returncode == 2
        assert r.stderr.strip() == ("error: --out existing_dir is a folder — give a file name "
                                    "(e.g. existing_dir/funnel.toml)")


@pytest.mark.parametrize("name", ["x.xlsx", "x.csv.gz", "x.json"])
def test_bug_table_written_as_csv_into_a_name_of_another_format(tmp_path, name):
    r = run_cli("analyze", str(SAMPLE_EVENTS), "-q", "--carts", name, cwd=tmp_path)
    assert r.returncode == 2
    ext = "." + name.rsplit(".", 1)[1]
    assert r.stderr.strip() == (f"error: cannot write --carts {name}: {ext} is not a format funnel writes — "
                                "name it .csv (CSV) or .parquet/.pq (Parquet), e.g. x.csv")
    assert list(tmp_path.iterdir()) == []
    r = run_cli("analyze", str(SAMPLE_EVENTS), "-q", "--rejects", name, cwd=tmp_path)
    assert r.returncode == 2 and f"--rejects {name}: {ext} is not a format" in r.stderr


def test_table_outputs_of_the_formats_written(tmp_path):
    from funnel.io.writers import frame_target

    for ok in ("c.csv", "c.CSV", "c.parquet", "c.pq", "-", "/dev/null", "/dev/fd/63", "carts", "c.2026-11"):
        frame_target(ok, "carts.csv", "--carts")


@pytest.mark.parametrize("flag", ["--carts", "--json"])
def test_bug_a_closed_stdout_pipe_was_an_error(flag):
    """'funnel analyze … --carts - | head -1' said 'cannot write /dev/stdout (Broken pipe)', exit 2
    (QA): the reader closing the pipe ends the run quietly, exit 0, as --json - did."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    # four copies of the sample: each output is far more than a pipe holds
    p = subprocess.Popen([sys.executable, "-m", "funnel", "analyze", *[str(SAMPLE_EVENTS)] * 4, flag, "-",
                          "-q", "--html", os.devnull, "--include-ids"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 0, err
    assert "error" not in err.lower() and "Traceback" not in err


def test_bug_strict_with_rejects_wrote_no_rejects_file(tmp_path):
    """--strict --rejects FILE exited 2 without FILE, its message saying to write them out with
    --rejects FILE (QA): the evidence is written, then exit 2 naming it."""
    bad = ROOT / "tests" / "fixtures" / "dirty" / "partly_bad.csv"
    r = run_cli("analyze", str(bad), "--strict", "--rejects", "sr.csv", "--carts", "c.csv", "-q", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("error: --strict: 9 rows rejected (bad_timestamp 1,")
    assert r.stderr.rstrip().endswith("— fix the input, or run without --strict (they are listed in sr.csv)")
    assert len(r.stderr.strip().splitlines()) == 1
    rej = pl.read_csv(tmp_path / "sr.csv")
    assert rej.height == 9 and "bad_timestamp" in rej["cause"].to_list()
    assert not (tmp_path / "c.csv").exists()   # (the report's own outputs are not written)
    r = run_cli("analyze", str(bad), "--strict", "-q", "--html", str(tmp_path / "r.html"))
    assert r.returncode == 2 and "(write them out with --rejects FILE)" in r.stderr
