"""A shop's placeholder for "no user" (``guest``, ``0``) as a user id.

Taken as an id, it joins unrelated visitors into one user: one guest's purchase marks the other
guests' abandoned carts as recovered, and ``input.users`` counts them all as one. ``analyze``
warns when one user id holds an outsized share of the carts, and ``[input] missing_ids`` reads
the listed ids as missing, the same on every route as if the export had left them empty.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import run_cli

from funnel import streaming
from funnel.api import analyze
from funnel.config import Config, load_config
from funnel.errors import ConfigError

GUEST = "visitor-0"   # (a placeholder id no report text contains)


@pytest.fixture(scope="module")
def logs() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the log with every one-session visitor's user id ``guest``, the same log with those ids
    left empty): a generated shop log, whose one-session visitors stand for the guests."""
    from funnel.io.sample import generate_sample

    ev = generate_sample(n_sessions=600, seed=5).events
    once = ev.group_by("user_id").agg(pl.col("session_id").n_unique().alias("n")).filter(pl.col("n") == 1)
    guest = pl.col("user_id").is_in(once["user_id"].implode())
    return (ev.with_columns(pl.when(guest).then(pl.lit(GUEST)).otherwise("user_id").alias("user_id")),
            ev.with_columns(pl.when(guest).then(None).otherwise("user_id").alias("user_id")))


def _numbers(doc: dict) -> dict:
    return {"funnel": doc["funnel"], "abandonment": doc["abandonment"], "users": doc["input"]["users"],
            "sessions": doc["input"]["sessions"], "rows_rejected": doc["input"]["rows_rejected"],
            "warnings": doc["warnings"]}


def test_one_user_id_holding_many_carts_is_warned_about(logs, tmp_path, monkeypatch):
    """The placeholder's warning names the share of the carts, and the id itself only when the
    report may carry ids; a log with the guests' ids left empty gets none."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    placeholder, empty = logs
    p, q = tmp_path / "guest.parquet", tmp_path / "empty.parquet"
    placeholder.write_parquet(p)
    empty.write_parquet(q)
    doc = analyze(str(p)).report.to_dict()
    carts = doc["abandonment"]["carts"]
    held = placeholder.filter(pl.col("user_id") == GUEST)   # (its sessions with a cart)
    n = held.filter(pl.col("event") == "add_to_cart")["session_id"].n_unique()
    assert n >= 0.05 * carts
    said = [w for w in doc["warnings"] if "carts" in w]
    assert said == [(f"one user id holds {n:,} of the {carts:,} carts ({n / carts:.1%}): if it is a placeholder for "
                     "no user (e.g. guest), it joins unrelated visitors into one user and its purchases mark their "
                     "abandoned carts as recovered — list it under [input] missing_ids in funnel.toml "
                     "(--include-ids names it here)")]
    assert GUEST not in json.dumps(doc)   # (no id in a report that may not carry ids)
    named = analyze(str(p), include_ids=True).report.warnings
    assert next(w for w in named if "carts" in w).startswith(f"user id {GUEST!r} holds {n:,} of the {carts:,} carts")
    assert not [w for w in analyze(str(q)).report.warnings if "carts" in w]
    # the funnel-only route says it alike
    only = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None)
    assert only is not None and [w for w in only.report.warnings if "carts" in w] == said


def test_a_user_level_funnel_or_a_modest_share_gets_no_warning(logs, tmp_path):
    placeholder, _ = logs
    p = tmp_path / "guest.parquet"
    placeholder.write_parquet(p)
    assert not [w for w in analyze(str(p), level="user").report.warnings if "carts" in w]
    few = placeholder.with_columns(   # the guests but 19 carts' sessions: real ids again
        pl.when(pl.col("user_id") == GUEST).then(pl.col("session_id").rank("dense").cast(pl.String))
        .otherwise("user_id").alias("user_id"))
    guests = few.filter(pl.col("event") == "add_to_cart")["session_id"].unique().sort().head(19)
    few = few.with_columns(pl.when(pl.col("session_id").is_in(guests.implode())).then(pl.lit(GUEST))
                           .otherwise("user_id").alias("user_id"))
    few.write_parquet(p)
    assert not [w for w in analyze(str(p)).report.warnings if "carts" in w]


ROUTES = ["one pass", "user shards", "split input", "funnel-only clean", "funnel-only row-level"]


@pytest.mark.parametrize("route", ROUTES)
def test_missing_ids_read_as_no_id_on_every_route(route, logs, tmp_path, monkeypatch):
    """``[input] missing_ids = ["visitor-0"]`` gives the report of the log whose guests have no
    user id (users, recovered carts and all), on every route; without it the guests are one
    user, who recovers other guests' carts."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    placeholder, empty = logs
    text = route in ("split input", "funnel-only row-level")
    p, q = (tmp_path / f"{name}.{'csv' if text else 'parquet'}" for name in ("guest", "empty"))
    for df, path in ((placeholder, p), (empty, q)):
        df.write_csv(path) if text else df.write_parquet(path)
    cfg = Config().with_overrides(missing_ids=[GUEST])
    if route.startswith("funnel-only"):
        run = lambda src, c: streaming.analyze_funnel_only([str(src)], c, lambda _m: None, shards=3).report
    else:
        shards = 1 if route == "one pass" else 3
        run = lambda src, c: analyze(str(src), config=c, shards=shards).report
    listed, left_empty, taken = run(p, cfg).to_dict(), run(q, Config()).to_dict(), run(p, Config()).to_dict()
    assert _numbers(listed) == _numbers(left_empty)
    assert taken["abandonment"]["recovered"] > listed["abandonment"]["recovered"]
    assert taken["input"]["users"] == listed["input"]["users"] + 1   # (the guests, as one user)


def test_integer_placeholder_ids_from_the_config_file(logs, tmp_path, monkeypatch):
    """Integer ids with 0 for no user: ``missing_ids = [0]`` in funnel.toml (a TOML number,
    or " 0 " as text) reads them as missing, as nulls in the column would be."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    placeholder, empty = logs
    codes = {u: i for i, u in enumerate(sorted(set(empty["user_id"].drop_nulls())), start=1)}
    as_int = lambda df: df.with_columns(pl.col("user_id").replace_strict(codes, default=0, return_dtype=pl.Int64))
    p, q = tmp_path / "zero.parquet", tmp_path / "null.parquet"
    as_int(placeholder).write_parquet(p)
    as_int(empty).with_columns(pl.when(pl.col("user_id") > 0).then("user_id").alias("user_id")).write_parquet(q)
    for listed in ("[0]", '[" 0 ", -1]'):
        (tmp_path / "funnel.toml").write_text(f"[input]\nmissing_ids = {listed}\n")
        cfg = load_config(search_dir=tmp_path)
        assert _numbers(analyze(str(p), config=cfg).report.to_dict()) == \
            _numbers(analyze(str(q)).report.to_dict())


@pytest.mark.parametrize(("value", "message"), [
    ('["x", " "]', "input.missing_ids[1] is blank"),
    ('"guest"', 'input.missing_ids must be a list, got \'guest\' — write it as a list: missing_ids = ["guest"]'),
    ("0", "input.missing_ids must be a list, got 0 — write it as a list: missing_ids = [0]"),
    ("[1.5]", "input.missing_ids[0] must be a string or a whole number"),
])
def test_bad_missing_ids_are_one_line_config_errors(value, message, tmp_path):
    (tmp_path / "funnel.toml").write_text(f"[input]\nmissing_ids = {value}\n")
    with pytest.raises(ConfigError) as got:
        load_config(search_dir=tmp_path)
    assert message in str(got.value)


def test_the_cli_reads_missing_ids_and_explain_says_why_a_listed_id_has_no_session(logs, tmp_path):
    placeholder, _ = logs
    p = tmp_path / "guest.csv"
    placeholder.write_csv(p)
    (tmp_path / "funnel.toml").write_text('[input]\nmissing_ids = ["visitor-0"]\n')
    toml = str(tmp_path / "funnel.toml")
    got = run_cli("analyze", str(p), "--config", toml, "--json", "-", "-q")
    assert got.returncode == 0, got.stderr
    assert not [w for w in json.loads(got.stdout)["warnings"] if "carts" in w]
    got = run_cli("explain", GUEST, str(p), "--config", toml)
    assert got.returncode == 2
    err = " ".join(got.stderr.split())
    assert f"error: {GUEST!r} is listed in [input] missing_ids ({toml}): funnel reads it as no id" in err
    assert "drop it from missing_ids to analyse it as an id" in err and "Traceback" not in err


def test_init_lists_a_likely_placeholder_with_its_evidence(logs, tmp_path):
    """``funnel init EVENTS`` looks for placeholder ids and lists them under ``missing_ids``,
    with why, in the user's own config (and says so); the config then gives the report of the
    log without those ids. A log without one gets the commented example only."""
    placeholder, empty = logs
    p, q = tmp_path / "guest.csv", tmp_path / "empty.csv"
    placeholder.write_csv(p)
    empty.write_csv(q)
    got = run_cli("init", str(p), "--out", str(tmp_path / "funnel.toml"), cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    text = (tmp_path / "funnel.toml").read_text()
    sessions = placeholder["session_id"].n_unique()
    held = placeholder.filter(pl.col("user_id") == GUEST)["session_id"].n_unique()
    assert f'#   "{GUEST}": user id holding {held:,} of {sessions:,} sessions ({held / sessions:.1%})' in text
    assert f'missing_ids = ["{GUEST}"]' in text
    assert f"note: 1 likely placeholder id(s) listed under [input] missing_ids (read as no id): '{GUEST}'" \
        in " ".join(got.stdout.split())
    cfg = load_config(tmp_path / "funnel.toml")
    assert cfg.missing_ids == (GUEST,)
    assert _numbers(analyze(str(p), config=cfg).report.to_dict()) == _numbers(analyze(str(q)).report.to_dict())
    got = run_cli("init", str(q), "--out", str(tmp_path / "other.toml"), cwd=tmp_path)
    assert got.returncode == 0 and "note:" not in got.stdout
    assert '# missing_ids = ["guest", 0]' in (tmp_path / "other.toml").read_text()


def test_placeholder_ids_finds_a_session_id_past_the_bot_cap(tmp_path):
    """A session id with more events than the bot cap (a default such as 0 for every session)
    is listed too; ids already in ``missing_ids`` are not."""
    from funnel.io.load import load_events
    from funnel.validate import placeholder_ids

    n = 40
    df = pl.DataFrame({"timestamp": [f"2026-01-05T10:{i:02d}:00Z" for i in range(n)],
                       "session_id": [" 0 " if i % 4 else f"s{i}" for i in range(n)],
                       "event": ["page_view"] * n})
    p = tmp_path / "log.csv"
    df.write_csv(p)
    cfg = Config().with_overrides(max_events_per_session=20)
    assert placeholder_ids(load_events([str(p)], cfg), cfg) == [("0", "session id with 30 events")]
    cfg = cfg.with_overrides(missing_ids=["0"])
    assert placeholder_ids(load_events([str(p)], cfg), cfg) == []


def test_validate_warns_of_a_likely_placeholder_without_naming_it(logs, tmp_path):
    placeholder, empty = logs
    p, q = tmp_path / "guest.parquet", tmp_path / "empty.parquet"
    placeholder.write_parquet(p)
    empty.write_parquet(q)
    got = run_cli("validate", str(p), "--json", "-", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    said = [w for w in json.loads(got.stdout)["warnings"] if "placeholder" in w]
    sessions = placeholder["session_id"].n_unique()
    held = placeholder.filter(pl.col("user_id") == GUEST)["session_id"].n_unique()
    assert said == [(f"a user id holding {held:,} of {sessions:,} sessions ({held / sessions:.1%}) is likely a "
                     "placeholder for no id (e.g. guest), which joins unrelated visitors into one — "
                     "'funnel init EVENTS' lists it under [input] missing_ids")]
    assert GUEST not in got.stdout
    got = run_cli("validate", str(q), "--json", "-", cwd=tmp_path)
    assert not [w for w in json.loads(got.stdout)["warnings"] if "placeholder" in w]
