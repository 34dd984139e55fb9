"""Splitting the users into random shards and merging the partials gives the whole-input report.

Each shard holds every event of its users (design.md, Scale). Pass 1 (``shard_baseline``) runs
per shard and merges; pass 2 (``shard_partials``) runs per shard with the merged baseline and
merges again; ``build_report`` finalizes once. The report must equal the one-shard result.
"""

from __future__ import annotations

import random

import polars as pl
import pytest
from conftest import SAMPLE_EVENTS, SAMPLE_SESSIONS
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.api import build_report, input_summary, prepare, shard_baseline, shard_partials
from funnel.config import Config
from funnel.core import partials as parts
from funnel.schema import SESSION, USER

SECTIONS = ("funnel", "abandonment", "recommendations", "paths", "segments", "trend")


def report_of(shards: list[pl.LazyFrame], prep, cfg: Config) -> dict:
    baseline = parts.merge([shard_baseline(s, cfg, prep.attrs) for s in shards])
    merged = parts.merge([shard_partials(s, cfg, prep.attrs, baseline) for s in shards])
    return build_report(merged, cfg, input_summary(prep, merged, cfg), prep.attrs).to_dict()


def split_by_user(ev: pl.DataFrame, n: int, seed: int) -> list[pl.LazyFrame]:
    """Random assignment of users (or of sessions without a user) to ``n`` shards."""
    owner = pl.coalesce(USER, SESSION)
    keys = sorted(ev.select(owner.unique()).to_series().to_list())
    rng = random.Random(seed)
    assign = {k: rng.randrange(n) for k in keys}
    shard = owner.replace_strict(assign, return_dtype=pl.Int64)
    return [ev.filter(shard == i).lazy() for i in range(n)]


def sections(doc: dict) -> dict:
    return {k: doc[k] for k in SECTIONS}


@pytest.fixture(scope="module")
def sample_prep():
    cfg = Config()
    return cfg, prepare([str(SAMPLE_EVENTS)], cfg, sessions=str(SAMPLE_SESSIONS))


@pytest.mark.parametrize(("n", "seed"), [(2, 1), (3, 7), (5, 42)])
def test_random_user_shards_equal_the_whole_input(sample_prep, n, seed):
    cfg, prep = sample_prep
    ev = prep.events.collect()
    whole = report_of([ev.lazy()], prep, cfg)
    sharded = report_of(split_by_user(ev, n, seed), prep, cfg)
    assert sections(sharded) == sections(whole)
    # Everything else but the generation time is the same too (same input summary).
    whole.pop("generated_at"), sharded.pop("generated_at")
    assert sharded == whole


@pytest.mark.parametrize("overrides", [
    {"order": "strict", "level": "user"},
    {"order": "any", "exclude": ("view_cart",)},
    {"order": "ordered", "exclude": ("form_error",), "window": 30 * 60_000_000},
])
def test_shards_equal_whole_for_other_settings(sample_prep, overrides):
    _, prep = sample_prep
    cfg = Config().with_overrides(**overrides)
    # Entities depend on the level; ``prepare`` maps them, so prepare again with this config.
    prep = prepare([str(SAMPLE_EVENTS)], cfg, sessions=str(SAMPLE_SESSIONS))
    ev = prep.events.collect()
    whole = report_of([ev.lazy()], prep, cfg)
    sharded = report_of(split_by_user(ev, 3, 3), prep, cfg)
    assert sections(sharded) == sections(whole)


def test_an_empty_shard_changes_nothing(sample_prep):
    cfg, prep = sample_prep
    ev = prep.events.collect()
    whole = report_of([ev.lazy()], prep, cfg)
    assert sections(report_of([ev.lazy(), ev.clear().lazy()], prep, cfg)) == sections(whole)


def test_merge_adds_counts_of_every_partial():
    """Regression: a bare ``n`` column was taken for a key, so merged shards kept one row per
    shard and the level histogram kept only the last shard's count."""
    a = {"levels": pl.DataFrame({"_level": [0, 1], "n": [3, 2]}, schema={"_level": pl.Int32, "n": pl.UInt32})}
    b = {"levels": pl.DataFrame({"_level": [1], "n": [5]}, schema={"_level": pl.Int32, "n": pl.UInt32})}
    out = parts.merge([a, b])["levels"]
    assert out.to_dicts() == [{"_level": 0, "n": 3}, {"_level": 1, "n": 7}]


@pytest.mark.parametrize("overrides", [{}, {"order": "strict", "level": "user", "exclude": ("view_cart",)}])
def test_funnel_only_shards_equal_the_whole_and_the_full_pass(overrides):
    """``shard_funnel`` (the fast funnel-only pass) merges like the full pass and gives the same
    funnel and abandonment counts."""
    from funnel.api import shard_funnel

    cfg = Config().with_overrides(**overrides)
    prep = prepare([str(SAMPLE_EVENTS)], cfg, funnel_only=True)
    ev = prep.events.collect()

    def fast(shards):
        p = parts.merge([shard_funnel(s, cfg) for s in shards])
        return build_report(p, cfg, input_summary(prep, p, cfg), [], funnel_only=True).to_dict()

    whole = fast([ev.lazy()])
    assert {k: fast(split_by_user(ev, 4, 5))[k] for k in ("funnel", "abandonment")} == \
        {k: whole[k] for k in ("funnel", "abandonment")}
    full_prep = prepare([str(SAMPLE_EVENTS)], cfg)
    full = report_of([full_prep.events], full_prep, cfg)
    assert whole["funnel"] == full["funnel"]
    counts = ("carts", "abandoned", "rate", "value_at_stake", "recovered", "currency")
    assert {k: whole["abandonment"][k] for k in counts} == {k: full["abandonment"][k] for k in counts}
    assert [(s["step"], s["abandoned"], s["value"]) for s in whole["abandonment"]["by_step"]] == \
        [(s["step"], s["abandoned"], s["value"]) for s in full["abandonment"]["by_step"]]


@pytest.mark.parametrize("k", [2, 3])
def test_full_analysis_in_user_shards_equals_one_pass(k, tmp_path, monkeypatch):
    """analyze(shards=k) splits the input into k user shards analysed one at a time, and gives
    exactly the one-pass report, cart table and rejected rows (this is how large inputs are
    analysed)."""
    from funnel.api import analyze

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    from conftest import SAMPLE_EVENTS, SAMPLE_SESSIONS

    one = analyze(str(SAMPLE_EVENTS), sessions=str(SAMPLE_SESSIONS), shards=1)
    many = analyze(str(SAMPLE_EVENTS), sessions=str(SAMPLE_SESSIONS), shards=k)
    assert many.report.to_dict() == one.report.to_dict()
    assert many.carts.equals(one.carts)
    assert many.rejects.equals(one.rejects)


def test_sharded_full_analysis_without_session_ids_and_with_bad_rows(tmp_path, monkeypatch):
    """Sessions built from inactivity and rejected rows come out the same in shards."""
    from funnel.api import analyze
    from funnel.io.sample import generate_sample

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    ev = generate_sample(n_sessions=600, seed=3).events.drop("session_id").with_columns(
        pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
    bad = ev.head(5).with_columns(pl.lit("not a time").alias("timestamp"))
    p = tmp_path / "events.csv"
    pl.concat([ev, bad, ev.head(3)]).write_csv(p)     # bad timestamps and exact duplicates
    one = analyze(str(p), shards=1)
    many = analyze(str(p), shards=4)
    assert one.report.input.sessionized and one.report.input.rows_rejected == 8
    assert many.report.to_dict() == one.report.to_dict()
    assert many.carts.equals(one.carts) and many.rejects.equals(one.rejects)


def _messy_csvs(tmp_path) -> list[str]:
    """Two CSV files with what the spill path must carry through unchanged: ids spelled
    differently on different rows of one user (outer blanks, control characters), sessions to
    build from inactivity, bad and blank rows, surplus fields, exact duplicates across files."""
    from funnel.io.sample import generate_sample

    ev = generate_sample(n_sessions=500, seed=11).events.with_columns(
        pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
    n = ev.height
    ev = ev.with_row_index("_i").with_columns(
        # One user, several spellings that the normaliser reads as one id (both control
        # characters become U+FFFD; outer blanks are stripped).
        pl.when(pl.col("user_id") == "u_00007")
        .then(pl.when(pl.col("_i") % 2 == 0).then(pl.lit("u_00007\x01")).otherwise(pl.lit(" u_00007\x02")))
        .when(pl.col("_i") % 3 == 0).then(pl.lit(" ") + pl.col("user_id") + pl.lit("  "))
        .otherwise(pl.col("user_id")).alias("user_id"),
        # A third of the users' sessions have no id: built from inactivity.
        pl.when(pl.col("user_id").str.strip_chars().str.ends_with("3")).then(None)
        .otherwise(pl.col("session_id")).alias("session_id"),
    ).drop("_i")
    a, b = ev.head(n // 2), ev.tail(n - n // 2)
    bad = b.head(4).with_columns(pl.lit("not a time").alias("timestamp"))
    b = pl.concat([b, bad, a.slice(10, 5)])              # bad timestamps; duplicates of a's rows
    pa, pb = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_csv(pa)
    text = pb.parent / "b.csv"
    b.write_csv(text)
    with open(text, "a", encoding="utf-8") as f:
        f.write(",,,,,,,,,,\n")                               # a blank row
        f.write("2026-10-01T10:00:00Z,s_x,u_x,page_view,/,,,,,,,1,2\n")   # surplus fields
    return [str(pa), str(pb)]


def test_spill_path_on_csv_input_equals_one_pass(tmp_path, monkeypatch):
    """Large inputs are written once, partitioned by user shard, to temporary Parquet, then
    analysed shard by shard from there: report, cart table and rejected rows (with their file
    and line) are those of one pass over the CSV files."""
    from funnel.api import analyze

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    files = _messy_csvs(tmp_path)
    said: list[str] = []
    one = analyze(files, shards=1, max_events_per_session=12)
    many = analyze(files, shards=3, max_events_per_session=12, progress=said.append)
    assert "splitting the input into 3 user shards" in said
    causes = {c.key for c in one.report.input.rejected}
    assert {"bad_timestamp", "duplicate", "empty_row", "extra_fields", "session_cap"} <= causes, causes
    assert one.report.input.sessionized
    assert many.report.to_dict() == one.report.to_dict()
    assert many.carts.equals(one.carts) and many.rejects.equals(one.rejects)
    # The user spelled two ways is one user (one id), whole in one shard.
    assert one.carts.filter(pl.col("user_id").str.starts_with("u_00007"))["user_id"].unique().len() == 1


def _messy_parquets(tmp_path) -> list[str]:
    """``_messy_csvs``' rows as two Parquet files (text timestamps, so that bad ones stay),
    with a row of nulls for the blank line: ids to clean, sessions to build, bad rows and
    duplicates across files."""
    files = []
    for f in _messy_csvs(tmp_path):
        text = open(f, encoding="utf-8").read().splitlines()
        rows = [line for line in text if line.count(",") <= text[0].count(",")]   # (no surplus fields)
        df = pl.read_csv("\n".join(rows).encode(), infer_schema=False)
        files.append(f[:-4] + ".parquet")
        df.write_parquet(files[-1])
    return files


@pytest.mark.parametrize("scan_shards", [12, 1])
def test_full_analysis_on_parquet_reads_shards_by_filtered_scans(scan_shards, tmp_path, monkeypatch):
    """Parquet input in up to ``api.SCAN_SHARDS`` shards is read by one filtered scan a shard
    (nothing written to disk), in more by the split; both equal one pass: report, cart table
    and rejected rows with their file and row. Ids that need cleaning are found first
    (``dirty_ids``) and the shard key then hashes the cleaned ids; clean ids are hashed raw
    (~10x cheaper), and group the rows alike."""
    from funnel import api
    from funnel.api import analyze
    from funnel.io.load import load_events

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    monkeypatch.setattr(api, "SCAN_SHARDS", scan_shards)
    keys: list[bool] = []
    real = parts.shard_key
    monkeypatch.setattr(parts, "shard_key", lambda names, k, clean=False, owners=None:
                        keys.append(clean) or real(names, k, clean, owners))
    clean_file = tmp_path / "clean.parquet"
    pl.read_csv(SAMPLE_EVENTS, try_parse_dates=True).write_parquet(clean_file)
    for files, dirty in ((_messy_parquets(tmp_path), True), ([str(clean_file)], False)):
        loaded = load_events(files, Config())
        assert api.dirty_ids(api.project_input(loaded.lf, Config()), loaded) is dirty
        said: list[str] = []
        keys.clear()
        one = analyze(files, shards=1, max_events_per_session=12)
        many = analyze(files, shards=3, max_events_per_session=12, progress=said.append)
        how = "reading the input in 3" if scan_shards >= 3 else "splitting the input into 3"
        assert any(m.startswith(how) for m in said), said
        assert keys and set(keys) == {not dirty}
        assert many.report.to_dict() == one.report.to_dict()
        assert many.carts.equals(one.carts) and many.rejects.equals(one.rejects)
        if dirty:
            causes = {c.key for c in one.report.input.rejected}
            assert {"bad_timestamp", "duplicate", "empty_row", "session_cap"} <= causes, causes
            assert one.report.input.sessionized
            assert one.carts.filter(pl.col("user_id").str.starts_with("u_00007"))["user_id"].unique().len() == 1


def _shard_dirs(root) -> list[str]:
    import os

    return [d for d in os.listdir(root) if d.startswith("funnel-shards-")]


def test_the_temporary_shards_are_removed_also_after_an_error(tmp_path, monkeypatch):
    import gzip
    import tempfile

    from funnel.api import analyze
    from funnel.errors import ConfigError, InputError

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))   # what TMPDIR sets
    seen: list[list[str]] = []

    def progress(msg: str) -> None:
        if msg.startswith("analysing shard"):
            seen.append(_shard_dirs(tmp))

    analyze(str(SAMPLE_EVENTS), shards=2, progress=progress)
    assert seen and all(len(d) == 1 for d in seen)        # the shards were in TMPDIR ...
    assert _shard_dirs(tmp) == []                          # ... and are gone
    # A read error during the splitting pass: the usual one-line error, nothing left behind.
    gz = gzip.compress(SAMPLE_EVENTS.read_bytes())
    broken = tmp_path / "events.csv.gz"
    broken.write_bytes(gz[: int(len(gz) * 0.8)])
    with pytest.raises(InputError) as err:
        analyze(str(broken), shards=2)
    assert str(broken) in str(err.value) and "truncated" in str(err.value)
    assert "\n" not in str(err.value)
    assert _shard_dirs(tmp) == []
    # An error while analysing a shard (an unknown segment column): nothing left behind.
    with pytest.raises(ConfigError):
        analyze(str(SAMPLE_EVENTS), shards=2, segments=("no_such_column",))
    assert _shard_dirs(tmp) == []


def test_sharded_input_without_usable_rows_fails_like_one_pass(tmp_path):
    from funnel.api import analyze
    from funnel.errors import InputError

    bad = tmp_path / "bad.csv"
    pl.DataFrame({"timestamp": ["soon"] * 40, "session_id": [f"s{i}" for i in range(40)],
                  "event": ["add_to_cart"] * 40}).write_csv(bad)
    header = tmp_path / "header.csv"
    header.write_text("timestamp,session_id,event\n")
    for p in (bad, header):
        errors = []
        for k in (1, 3):
            with pytest.raises(InputError) as err:
                analyze(str(p), shards=k)
            errors.append(str(err.value))
        assert errors[0] == errors[1], errors


@pytest.mark.parametrize("where", ["mkdtemp", "split", "spill"])
@pytest.mark.parametrize("funnel_only", [False, True])
def test_a_full_temporary_disk_is_a_one_line_error(tmp_path, monkeypatch, where, funnel_only):
    """No room (or no permission) for the shard files: one line naming the temporary folder and
    what to do, exit code 2, and nothing left behind."""
    import errno
    import tempfile

    from funnel import streaming
    from funnel.api import analyze
    from funnel.errors import OutputError

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    full = OSError(errno.ENOSPC, "No space left on device")

    def boom(*_a, **_k):
        raise full

    if where == "mkdtemp":
        monkeypatch.setattr(tempfile, "mkdtemp", boom)
    elif where == "split":
        monkeypatch.setattr(pl.LazyFrame, "sink_parquet", boom)
    else:   # the spilled frames of pass 1 (full analysis) / reading a shard (funnel only)
        if funnel_only:
            monkeypatch.setattr(pl, "scan_parquet", boom)
        else:
            monkeypatch.setattr(pl.DataFrame, "write_ipc", boom)
    with pytest.raises(OutputError) as e:
        if funnel_only:
            streaming.analyze_funnel_only([str(SAMPLE_EVENTS)], Config(), lambda _m: None, shards=2)
        else:
            analyze(SAMPLE_EVENTS, shards=2)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp) in msg and "No space left" in msg and "TMPDIR" in msg
    assert e.value.exit_code == 2
    assert list(tmp.iterdir()) == []


def test_analyze_takes_paths_as_well_as_strings(tmp_path):
    from pathlib import Path

    from funnel.api import analyze

    a = analyze(Path(SAMPLE_EVENTS), sessions=Path(SAMPLE_SESSIONS), funnel_only=True).report
    b = analyze(str(SAMPLE_EVENTS), sessions=str(SAMPLE_SESSIONS), funnel_only=True).report
    assert a.funnel == b.funnel and a.input.rows_read == b.input.rows_read


def _login_mid_session_log(two_users: bool = False) -> pl.DataFrame:
    """A typed log where a quarter of the sessions start anonymous and log in at the cart
    (``conftest.anonymous_until_login``; ``two_users``: another quarter with two user ids)."""
    from conftest import anonymous_until_login

    from funnel.io.sample import generate_sample

    ev = generate_sample(n_sessions=400, seed=5).events
    if ev["timestamp"].dtype == pl.String:
        ev = ev.with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC"))
    ev = ev.unique(subset=["session_id", "timestamp", "event"], keep="first", maintain_order=True)
    return anonymous_until_login(ev, other_user=two_users)


@pytest.mark.parametrize("route", ["full", "funnel-only clean", "funnel-only row-level"])
def test_sessions_logging_in_midway_stay_whole_in_shards(route, tmp_path, monkeypatch):
    """Regression: the shard key was the user id, else the session id, so a session whose early
    rows had no user id was split between two shards and counted in both. Every route now
    keeps such sessions whole (``session_owners``) and equals the one-pass report."""
    from funnel import streaming
    from funnel.api import analyze

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    log = _login_mid_session_log()
    assert log.filter(pl.col("user_id").is_null()).height > 100
    p = tmp_path / ("log.csv" if route == "funnel-only row-level" else "log.parquet")
    (log.write_csv if p.suffix == ".csv" else log.write_parquet)(p)
    if route == "full":
        one, many = analyze(str(p), shards=1), analyze(str(p), shards=4)
        assert many.carts.equals(one.carts)
    else:
        one = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=1)
        many = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=4)
        assert one is not None and many is not None
    assert many.report.to_dict() == one.report.to_dict()


def test_session_owners_finds_only_the_sessions_a_user_key_would_split():
    lf = pl.LazyFrame({SESSION: ["a", "a", "b", "b", "c", "c", None, "d"],
                       USER: [None, "u1", "u2", "u2", "u3", "u4", "u5", " "]})
    got = parts.session_owners(lf).sort("session").select("session", "owner")
    assert got.to_dicts() == [{"session": "a", "owner": "u1"}, {"session": "c", "owner": "u3"}]
    assert parts.session_owners(lf.filter(pl.col(SESSION) == "b")).height == 0
    raw = parts.session_owners(lf.with_columns(pl.col(USER).replace("u1", " u1 ")), clean=True).sort("session")
    assert raw["session"].to_list() == ["a", "c"]


@pytest.mark.parametrize("buckets", [2, 3, 7])
def test_session_owners_in_buckets_equal_one_pass(buckets):
    """Very large inputs search the owners in one pass per bucket of sessions (bounded memory):
    the same sessions and owners as one pass."""
    log = _login_mid_session_log(two_users=True).lazy()
    one = parts.session_owners(log).sort("session")
    assert one.height > 50
    assert parts.session_owners(log, buckets=buckets).sort("session").equals(one)


def test_owner_search_passes_grow_with_the_input(tmp_path, monkeypatch):
    """``api.session_owners`` runs one bucket pass per ``OWNER_ROWS`` input rows, and the
    sharded report is unchanged."""
    from funnel import api

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    p = tmp_path / "log.parquet"
    _login_mid_session_log().write_parquet(p)
    one = api.analyze(str(p), shards=4)
    seen = []
    real = parts.session_owners
    monkeypatch.setattr(parts, "session_owners", lambda *a, **k: seen.append(a[2]) or real(*a, **k))
    monkeypatch.setattr(api, "OWNER_ROWS", 1000)
    many = api.analyze(str(p), shards=4)
    rows = pl.scan_parquet(p).select(pl.len()).collect().item()
    assert seen == [-(-rows // 1000)] and seen[0] > 1
    assert many.report.to_dict() == one.report.to_dict() and many.carts.equals(one.carts)


def test_a_session_with_two_user_ids_stays_whole(tmp_path, monkeypatch):
    """A session with two user ids goes whole to the shard of the smaller one, so its funnel
    counts once. The other user's remaining sessions may then sit in another shard; that user
    is still counted once in ``input.users`` (regression: once per shard, 304 users for 287)."""
    from funnel.api import analyze

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    p = tmp_path / "log.parquet"
    _login_mid_session_log(two_users=True).write_parquet(p)
    one, many = analyze(str(p), shards=1), analyze(str(p), shards=4)
    assert many.report.to_dict() == one.report.to_dict() and many.carts.equals(one.carts)
    assert one.report.to_dict()["input"]["users"] == 287


GUEST = "0-guest"   # a user id smaller than every generated one: it owns the sessions it is in (conftest)


def _bought_with_a_guest_log() -> pl.DataFrame:
    from conftest import bought_with_a_guest

    from funnel.io.sample import generate_sample

    return bought_with_a_guest(generate_sample(n_sessions=600, seed=5).events, GUEST)


@pytest.mark.parametrize("route", ["full", "full, split input", "CI mode", "funnel-only clean",
                                   "funnel-only row-level", "funnel-only materialised"])
def test_a_buyer_in_another_users_session_counts_once_and_recovers(route, tmp_path, monkeypatch):
    """Regression: a user whose sessions the shard key spread over two shards (one of them
    owned by another user id) was counted once per shard in ``input.users``, and a purchase in
    the other shard did not mark their abandoned cart recovered (before the fix: 11 recovered
    carts in one pass, fewer in 4 shards). Such users are now counted as a set across shards,
    and their carts' recovery is decided over all their sessions: every route equals the
    one-pass report, cart table included."""
    from funnel import api, streaming
    from funnel.api import analyze
    from funnel.periods import PeriodSpec

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    log = _bought_with_a_guest_log()
    p = tmp_path / ("log.csv" if route in ("full, split input", "funnel-only row-level") else "log.parquet")
    (log.write_csv if p.suffix == ".csv" else log.write_parquet)(p)
    owners = parts.session_owners(log.lazy())
    shared = parts.shared_users(owners)
    assert owners["owner"].unique().to_list() == [GUEST] and shared.len() > 50
    seen = []   # the shared users' records whose recovery waited for every shard
    merge, fix = api.merge_funnel_only, api.shared_recovery
    monkeypatch.setattr(api, "merge_funnel_only", lambda ps, cfg: seen.extend(
        x[api.DEFERRED].height for x in ps if api.DEFERRED in x) or merge(ps, cfg))
    monkeypatch.setattr(api, "shared_recovery", lambda *a: seen.extend(f.height for f in fix(*a)) or fix(*a))
    if route.startswith("funnel-only"):
        if route == "funnel-only materialised":   # rows to sessionize: the in-memory shards
            anon = log.head(3).with_columns(pl.lit(None, pl.String).alias("session_id"), pl.lit("z").alias("user_id"))
            pl.concat([log, anon]).write_parquet(p)
        run = lambda n: (streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=n)
                         if route != "funnel-only materialised"
                         else api.analyze(str(p), shards=n, funnel_only=True))
        one, many = run(1), run(4)
        assert one is not None and many is not None
    else:
        kw = {"period": PeriodSpec(period="2026-W44", compare="previous")} if route == "CI mode" else {}
        said: list[str] = []
        one, many = analyze(str(p), shards=1, **kw), analyze(str(p), shards=4, progress=said.append, **kw)
        assert many.carts.equals(one.carts)
        assert ("splitting the input into 4 user shards" in said) == (p.suffix == ".csv")
    doc = one.report.to_dict()
    assert many.report.to_dict() == doc
    assert doc["abandonment"]["recovered"] > 0 and doc["input"]["users"] > 0
    assert sum(seen) > 10


@pytest.mark.parametrize("route", ["full", "full, split input", "funnel-only clean", "funnel-only row-level",
                                   "explain"])
def test_a_user_level_funnel_keeps_each_user_in_one_shard(route, tmp_path, monkeypatch):
    """Regression: a user-level funnel's entity is the row's user id (else its session id),
    but the shard key sent a session with several user ids whole to its smallest user's shard,
    so another user of it was in two shards: two entities (612 users at level user for 572, in
    4 shards). A user-level analysis now shards rows by their own ids (no owner search)."""
    from conftest import anonymous_until_login
    from funnel import streaming
    from funnel.api import analyze
    from funnel.core.explain import explain

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    log = anonymous_until_login(_bought_with_a_guest_log(), other_user=True)
    p = tmp_path / ("log.csv" if route in ("full, split input", "funnel-only row-level") else "log.parquet")
    (log.write_csv if p.suffix == ".csv" else log.write_parquet)(p)
    cfg = Config().with_overrides(level="user")
    if route == "explain":
        users = log.filter(pl.col("session_id").is_in(parts.session_owners(log.lazy())["session"].implode()))
        for user in users["user_id"].drop_nulls().unique().sort().head(4):
            assert explain([str(p)], user, cfg, shards=4) == explain([str(p)], user, cfg, shards=1)
        return
    if route.startswith("funnel-only"):
        one, many = (streaming.analyze_funnel_only([str(p)], cfg, lambda _m: None, shards=n) for n in (1, 4))
    else:
        one, many = analyze(str(p), cfg, shards=1), analyze(str(p), cfg, shards=4)
        assert many.carts.equals(one.carts)
    assert many.report.to_dict() == one.report.to_dict()
    assert one.report.to_dict()["input"]["sessions"] == log.select(pl.coalesce("user_id", "session_id").n_unique()).item()


@pytest.mark.parametrize("level", ["session", "user"])
def test_an_any_order_funnel_with_a_skipped_step(level, tmp_path, monkeypatch):
    """Regression: in an 'any'-order funnel an entity reaches a later step without an earlier
    one, so the time between those two steps is null; the full analysis then failed with a
    TypeError (the dwell and step-time histograms took a null bucket). Such an entity now adds
    no time between the steps it skipped; one pass and shards agree."""
    from funnel.api import analyze

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    log = pl.read_csv(SAMPLE_EVENTS, infer_schema=False)
    skip = (pl.col("event") == "begin_checkout") & (pl.col("session_id").hash(1) % 3 == 0)
    p = tmp_path / "log.csv"
    log.filter(~skip).write_csv(p)
    cfg = Config().with_overrides(order="any", level=level)
    one, many = analyze(str(p), cfg, shards=1), analyze(str(p), cfg, shards=3)
    assert many.report.to_dict() == one.report.to_dict() and many.carts.equals(one.carts)
    steps = one.report.to_dict()["funnel"]["steps"]
    assert steps[1]["median_seconds_from_previous"] is not None and steps[2]["sessions"] > 0


def test_validate_counts_a_user_in_two_shards_once(tmp_path):
    from funnel.validate import describe_input

    p = tmp_path / "log.parquet"
    _bought_with_a_guest_log().write_parquet(p)
    one, many = describe_input([str(p)], Config(), shards=1), describe_input([str(p)], Config(), shards=4)
    assert many == one and one["users"] == _bought_with_a_guest_log()["user_id"].drop_nulls().n_unique()


def test_shared_users_are_the_non_owners_of_owned_sessions():
    lf = pl.LazyFrame({SESSION: ["a", "a", "b", "b", "c", "c", "c", "d"],
                       USER: [None, "u1", "u2", "u2", "u4", "u3", "u5", "u6"]})
    owners = parts.session_owners(lf).sort("session")
    assert owners.to_dicts() == [{"session": "a", "owner": "u1", "users": ["u1"]},
                                 {"session": "c", "owner": "u3", "users": ["u3", "u4", "u5"]}]
    assert parts.shared_users(owners).to_list() == ["u4", "u5"]
    assert parts.shared_users(parts.session_owners(lf.filter(pl.col(SESSION) != "c"))).len() == 0


@given(st.lists(st.tuples(st.integers(0, 12), st.one_of(st.none(), st.integers(0, 8))), max_size=60),
       st.integers(1, 5))
@settings(max_examples=150, deadline=None)
def test_user_tallies_of_any_user_shards_merge_into_the_distinct_users(rows, k):
    """Property: shard rows (session, user) by ``shard_key`` with their ``session_owners``;
    the shards' ``user_tally`` — the users only one shard can hold counted, the ``shared_users``
    listed — merged by addition give the distinct users of all rows, as do the tallies listed."""
    df = pl.DataFrame({SESSION: [f"s{s}" for s, _ in rows], USER: [None if u is None else f"u{u}" for _, u in rows]},
                      schema={SESSION: pl.String, USER: pl.String})
    owners = parts.session_owners(df.lazy())
    shared = parts.shared_users(owners)
    tallies = [parts.user_tally(parts.shard_rows(df.lazy(), i, k, owners=owners), shared) for i in range(k)]
    want = df[USER].drop_nulls().n_unique()
    assert parts.users_of(tallies) == want
    assert parts.users_of(parts.merge([{"u": t} for t in tallies])["u"]) == want
    alone = {u for t in tallies for u in t[USER].drop_nulls()}
    assert alone <= set(shared)


def test_a_one_pass_analysis_sniffs_the_input_once(monkeypatch):
    """analyze() loads the input (files, formats, columns) once: the shard count and the one-pass
    preparation share it."""
    from funnel import api

    calls = []
    real = api.load_events
    monkeypatch.setattr(api, "load_events", lambda *a, **k: calls.append(1) or real(*a, **k))
    api.analyze(str(SAMPLE_EVENTS), shards=1)
    assert len(calls) == 1




def test_the_input_row_count_is_worked_out_once_per_run(tmp_path, monkeypatch):
    """The shard counts and the owner search's passes all follow the input's rows, read from
    the files once (``Loaded.rows``, cached) instead of once per use."""
    from funnel import api, streaming
    from funnel.config import Config
    from funnel.io.load import load_events

    p = tmp_path / "log.parquet"
    log = _login_mid_session_log()
    log.write_parquet(p)
    loaded = load_events([str(p)], Config())
    assert loaded.rows == log.height and loaded.__dict__["rows"] == log.height   # cached
    loaded.__dict__["rows"] = 10**9   # what every user now sees, without reading the files again
    assert streaming.shard_count(loaded, rows_per_shard=10**8) == 10
    seen = []
    real = parts.session_owners
    monkeypatch.setattr(parts, "session_owners", lambda *a, **k: seen.append(a[2]) or real(*a, **k))
    api.session_owners(loaded.lf, loaded)
    assert seen == [-(-10**9 // api.OWNER_ROWS)]


# --- CI mode (periods, comparison, gates) and funnel-only runs in user shards -------------

_W44 = dict(period="2026-W44", compare="previous")   # the planted payment outage week
_GATES = ("conversion_drop > 5", "step:purchase:conversion < 0.7")


@pytest.mark.parametrize(("k", "spec", "kw"), [
    (3, _W44, {"fail_on": _GATES}),                        # week vs previous week, gates (one fires)
    (2, dict(period="last-week", as_of="2026-11-03"), {}),  # relative to the data: resolved from every shard
    (4, dict(since="2026-10-01"), {"funnel_only": True}),   # funnel only, open end
    (2, dict(period="2026-10", compare="2026-09-01..2026-10-01"), {}),   # explicit comparison
    (3, dict(period="2026-W40", compare="previous"), {}),  # the data's first week: nobody starts in the previous one
])
def test_ci_mode_in_user_shards_equals_one_pass(k, spec, kw, tmp_path, monkeypatch):
    """A period, a comparison and gates (the weekly CI job) on a large input are analysed in
    user shards too, one shard at a time: the report (comparison and gates included), the cart
    table and the rejected rows equal the one-pass run's. Before, CI mode always took one pass
    and held the whole input in memory."""
    from funnel.api import analyze
    from funnel.periods import PeriodSpec

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    said: list[str] = []
    run = lambda n, **more: analyze(str(SAMPLE_EVENTS), sessions=str(SAMPLE_SESSIONS), shards=n,
                                    period=PeriodSpec(**spec), **kw, **more)
    one, many = run(1), run(k, progress=said.append)
    assert f"splitting the input into {k} user shards" in said
    assert many.report.to_dict() == one.report.to_dict()
    assert many.carts.equals(one.carts) and many.rejects.equals(one.rejects)
    doc = many.report.to_dict()
    assert doc["input"]["period"]["start"] is not None
    if spec.get("period") == "2026-W40":
        assert doc["comparison"]["previous"]["start"] == "2026-09-21T00:00:00Z"
    elif "compare" in spec:
        assert doc["comparison"]["previous"]["start"] is not None and doc["comparison"]["steps"]
    if kw.get("fail_on"):   # the outage week fires the purchase conversion gate
        assert [g["fired"] for g in doc["gates"]] == [False, True]
    assert not _shard_dirs(tmp_path)


def test_ci_mode_in_user_shards_on_messy_csv_input(tmp_path, monkeypatch):
    """The same on dirty CSV input in two files (ids to clean, sessions to build, bad rows,
    duplicates across files), where the periods come from the shards' cleaned timestamps."""
    from funnel.api import analyze
    from funnel.periods import PeriodSpec

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    files = _messy_csvs(tmp_path)
    run = lambda n: analyze(files, shards=n, period=PeriodSpec(period="last-7d", compare="previous"),
                            max_events_per_session=12)
    one, many = run(1), run(3)
    assert many.report.to_dict() == one.report.to_dict()
    assert many.carts.equals(one.carts) and many.rejects.equals(one.rejects)
    assert many.rejects.height and many.report.comparison is not None


def test_ci_mode_errors_in_user_shards_equal_one_pass():
    """A period nobody starts in, and a conversion_drop gate without a comparison, fail in
    shards exactly as in one pass (exit 2, one line)."""
    from funnel.api import analyze
    from funnel.errors import ConfigError, InputError
    from funnel.periods import PeriodSpec

    for err, kw in ((InputError, dict(period=PeriodSpec(period="2027-01"))),
                    (ConfigError, dict(period=PeriodSpec(period="2026-W44"), fail_on=("conversion_drop > 5",)))):
        got = []
        for k in (1, 3):
            with pytest.raises(err) as exc:
                analyze(str(SAMPLE_EVENTS), shards=k, **kw)
            got.append(str(exc.value))
        assert got[0] == got[1], got


def test_funnel_only_that_needs_the_row_level_rules_runs_in_shards(tmp_path, monkeypatch):
    """Funnel-only input that the streaming route declines (here: exclusion events) is
    counted in user shards too, equal to one pass."""
    from funnel.api import analyze

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    said: list[str] = []
    kw = dict(funnel_only=True, exclude=("payment_failed",))
    one, many = analyze(str(SAMPLE_EVENTS), shards=1, **kw), analyze(str(SAMPLE_EVENTS), shards=3, progress=said.append, **kw)
    assert "splitting the input into 3 user shards" in said
    assert many.report.to_dict() == one.report.to_dict()
    assert many.rejects.equals(one.rejects) and many.carts.is_empty()


@pytest.mark.parametrize("spec", [None, dict(period="2026-W44", compare="previous")])
def test_one_shard_of_events_is_held_at_a_time(spec, monkeypatch):
    """Memory stays bounded by one shard: when a shard is prepared, the previous shard's
    events are no longer referenced (a leaked reference once kept two shards alive, +45% peak
    memory at 20M events)."""
    import gc
    import weakref

    from funnel import api
    from funnel.periods import PeriodSpec

    real, alive = api._prepare_shard, []

    def prepare(*a, **kw):
        gc.collect()
        alive.append(sum(r() is not None for r in refs))
        shard, ev = real(*a, **kw)
        refs.append(weakref.ref(ev))
        return shard, ev

    refs: list = []
    monkeypatch.setattr(api, "_prepare_shard", prepare)
    api.analyze(str(SAMPLE_EVENTS), shards=4, period=PeriodSpec(**spec) if spec else None)
    assert len(alive) == 4 and alive == [0, 0, 0, 0]


@pytest.mark.parametrize("k", [2, 3])
def test_validate_in_user_shards_equals_one_pass(k, tmp_path):
    """``funnel validate`` on a large input reads it in user shards like ``analyze`` (it held
    the whole input in memory): every finding equals the one-pass reading's, on the sample and
    on dirty CSV input (ids to clean, sessions to build, bad rows, duplicates across files)."""
    from funnel.validate import describe_input

    for files in ([str(SAMPLE_EVENTS)], _messy_csvs(tmp_path)):
        said: list[str] = []
        one, many = describe_input(files, Config(), shards=1), describe_input(files, Config(), shards=k,
                                                                             progress=said.append)
        assert many == one
        assert said[0] == f"splitting the input into {k} user shards" and f"preparing shard {k} of {k}" in said
        assert one["usable_rows"] and one["sessions"] and one["events"]
    assert one["rows_rejected"] and one["sessions_built_from_inactivity"]


def test_explain_in_user_shards_equals_one_pass():
    """``funnel explain`` on a large input reads it in user shards (it held the whole input):
    the explanation — diagnosis from the merged baseline included — equals the one-pass one for
    diagnosed abandoned carts, a converter and a user-level id, and an unknown id gets the same
    error (closest ids, or sorted neighbours, and the id count) from the shards' hints."""
    from funnel.api import analyze
    from funnel.core.explain import explain
    from funnel.errors import InputError

    cfg = Config()
    carts = analyze(str(SAMPLE_EVENTS), sessions=str(SAMPLE_SESSIONS), shards=1).carts
    diagnosed = carts.filter(pl.col("reason").is_not_null() & (pl.col("reason") != "unknown"))
    picks = diagnosed.group_by("reason").agg(pl.col("session_id").min()).sort("reason")["session_id"].to_list()
    ev = pl.read_csv(SAMPLE_EVENTS)
    converter = ev.filter(pl.col("event") == "purchase").sort("session_id")["session_id"][0]
    assert len(picks) >= 3 and converter not in carts["session_id"].to_list()
    for sid in [*picks, converter]:
        a = explain([str(SAMPLE_EVENTS)], sid, cfg, sessions=str(SAMPLE_SESSIONS), shards=1)
        b = explain([str(SAMPLE_EVENTS)], sid, cfg, sessions=str(SAMPLE_SESSIONS), shards=3)
        assert b == a
    assert {explain([str(SAMPLE_EVENTS)], s, cfg, shards=1).reason for s in picks} >= {"payment", "shipping"}
    user = ev.filter(pl.col("user_id").is_not_null())["user_id"].sort()[5]
    ucfg = cfg.with_overrides(level="user")
    assert explain([str(SAMPLE_EVENTS)], user, ucfg, shards=3) == explain([str(SAMPLE_EVENTS)], user, ucfg, shards=1)
    for wrong in ("s_0001x", "zzz", "0", picks[0][:-1] + "Z"):
        msgs = []
        for k in (1, 4):
            with pytest.raises(InputError) as exc:
                explain([str(SAMPLE_EVENTS)], wrong, cfg, shards=k)
            msgs.append((str(exc.value), exc.value.hint))
        assert msgs[0] == msgs[1], (wrong, msgs)


def test_explain_in_user_shards_sees_a_purchase_in_another_shard(tmp_path):
    """``funnel explain`` of a cart recovered by a purchase that another user's shard holds
    (``_bought_with_a_guest_log``) says "recovered later", as one pass does: that user's events
    are gathered from every shard."""
    from funnel.api import analyze
    from funnel.core.explain import explain

    p = tmp_path / "log.parquet"
    _bought_with_a_guest_log().write_parquet(p)
    carts = analyze(str(p), shards=1).carts
    back = carts.filter(pl.col("recovered"))["session_id"].sort().to_list()
    assert len(back) >= 5
    for sid in back[:5]:
        a, b = explain([str(p)], sid, Config(), shards=1), explain([str(p)], sid, Config(), shards=4)
        assert b == a and a.recovered


def test_the_weekly_job_goes_red_in_shards_from_the_cli(tmp_path, monkeypatch):
    """End to end through the CLI: the weekly job (a week, the previous one, gates) on an input
    large enough to be sharded writes the same JSON as one pass, and exits 1 when a gate fires."""
    from typer.testing import CliRunner

    from funnel import api
    from funnel.cli import app

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    sharded = []
    real = api._analyze_sharded
    monkeypatch.setattr(api, "_analyze_sharded", lambda *a, **kw: sharded.append(a[4]) or real(*a, **kw))
    docs = []
    for rows in (10**9, 10_000):   # one pass, then user shards of ~10K rows (41,803 rows; estimated for CSV)
        monkeypatch.setattr(api, "FULL_SHARD_ROWS", rows)
        out = tmp_path / f"{rows}.json"
        r = CliRunner().invoke(app, [
            "analyze", str(SAMPLE_EVENTS), "--sessions", str(SAMPLE_SESSIONS), "--period", "last-week",
            "--as-of", "2026-11-03", "--compare", "previous", "--fail-on", "step:purchase:conversion<0.7",
            "--json", str(out), "-q"])
        assert r.exit_code == 1, r.output
        assert "gate step:purchase:conversion < 0.7: 0.6346 FIRED" in r.output
        docs.append(out.read_text())
    assert len(sharded) == 1 and sharded[0] > 1 and docs[0] == docs[1]


@pytest.mark.parametrize("spec", [None, dict(period="last-7d", compare="previous")])
def test_without_tables_nothing_grows_with_the_input(spec, tmp_path, monkeypatch):
    """``tables=False`` (the CLI without --carts/--rejects): a sharded run keeps neither the cart
    table nor the rejected rows (not even on disk: each shard's rejects are only counted), and
    the report — rejected rows per cause and capped sessions included — is unchanged."""
    from funnel.api import analyze
    from funnel.periods import PeriodSpec

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    files = _messy_csvs(tmp_path)
    written: list[str] = []
    real = pl.DataFrame.write_ipc
    monkeypatch.setattr(pl.DataFrame, "write_ipc", lambda self, f, **kw: written.append(str(f)) or real(self, f, **kw))
    run = lambda tables: analyze(files, shards=3, tables=tables, max_events_per_session=12,
                                 period=PeriodSpec(**spec) if spec else None)
    full, lean = run(True), run(False)
    assert lean.report.to_dict() == full.report.to_dict()
    assert full.report.input.rows_rejected and full.report.input.capped_sessions
    assert full.carts.height and full.rejects.height == full.report.input.rows_rejected
    assert lean.carts.is_empty() and lean.rejects.is_empty()
    rejects_files = [f for f in written if f.endswith("-rejects.arrow")]
    assert len(rejects_files) == 3   # all from the run with tables


def test_the_cli_keeps_tables_only_when_asked(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from funnel import api
    from funnel.cli import app

    seen = []
    real = api.analyze
    monkeypatch.setattr(api, "analyze", lambda *a, **kw: seen.append(kw.get("tables")) or real(*a, **kw))
    for extra in ([], ["--rejects", str(tmp_path / "r.csv")], ["--carts", str(tmp_path / "c.csv")]):
        r = CliRunner().invoke(app, ["analyze", str(SAMPLE_EVENTS), "--json", str(tmp_path / "a.json"), "-q", *extra])
        assert r.exit_code == 0, r.output
    assert seen == [False, True, True]


@pytest.mark.parametrize(("carts_name", "rejects_name"), [("c.csv", "r.csv"), ("c.parquet", "r.parquet")])
def test_tables_stream_from_the_shards_into_their_files(carts_name, rejects_name, tmp_path, monkeypatch):
    """``carts_to``/``rejects_to`` (the CLI's --carts/--rejects): a sharded run streams each table
    into its file from the shards' sorted parts, merged (never collected whole), and the files
    equal what the one-pass run writes, on dirty CSV input."""
    from funnel.api import analyze
    from funnel.io import writers

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    files = _messy_csvs(tmp_path)
    given: list[type] = []
    real = writers.write_frame
    monkeypatch.setattr(writers, "write_frame", lambda p, df: given.append(type(df)) or real(p, df))
    out = {}
    for k in (1, 3):
        d = tmp_path / f"k{k}"
        got = analyze(files, shards=k, tables=False, max_events_per_session=12,
                      carts_to=d / carts_name, rejects_to=d / rejects_name)
        assert got.carts.is_empty() and got.rejects.is_empty() and got.report.input.rows_rejected
        read = pl.read_parquet if carts_name.endswith(".parquet") else pl.read_csv
        out[k] = (read(d / carts_name), read(d / rejects_name))
    assert given == [pl.DataFrame, pl.DataFrame, pl.LazyFrame, pl.LazyFrame]   # one pass, then streamed
    assert out[3][0].equals(out[1][0]) and out[3][1].equals(out[1][1])
    assert out[1][0].height and out[1][1].height
    assert out[1][0]["session_id"].is_sorted() and out[1][1].select("file", "row").is_duplicated().sum() == 0


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("level", ["session", "user"])
def test_hashed_entity_keys_change_nothing(level, shards, monkeypatch):
    """Both passes key entities by a 64-bit hash of the id (``sessions.hashed_entities``): the
    report and the cart table equal those of the run keyed by the ids themselves; when two ids
    share a key (forced here) the ids are kept, with the same result."""
    from funnel import analyze, api
    from funnel.core import sessions
    from funnel.schema import ENTITY

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")

    def run():
        got = analyze(str(SAMPLE_EVENTS), sessions=str(SAMPLE_SESSIONS), level=level, shards=shards)
        return got.report.to_dict(), got.carts

    keyed, keyed_carts = run()
    ev = prepare([str(SAMPLE_EVENTS)], Config().with_overrides(level=level)).events.collect()
    assert sessions.hashed_entities(ev)[ENTITY].dtype == pl.UInt64
    monkeypatch.setattr(api, "hashed_entities", lambda frame: frame)
    ids, ids_carts = run()
    real = sessions.entity_keys
    monkeypatch.setattr(sessions, "entity_keys", lambda e: (real(e)[0] % 2, real(e)[1]))
    assert sessions.hashed_entities(ev)[ENTITY].dtype == pl.String, "shared keys keep the ids"
    monkeypatch.setattr(api, "hashed_entities", sessions.hashed_entities)
    shared, shared_carts = run()
    assert keyed == ids == shared
    assert keyed_carts.equals(ids_carts) and keyed_carts.equals(shared_carts) and keyed_carts.height > 0


def test_events_at_the_same_instant_give_the_same_report_every_run(tmp_path, monkeypatch):
    """Regression: the carts' event aggregates sorted events by (cart, time) in the order a join
    left them, which varies between runs, so among events at the same instant a backtrack or a
    repeated step could come and go (a 20M-event CSV with millisecond times gave 396,338 /
    396,339 carts without a backtrack on two runs of the same code). Events are now ordered as
    the records order them: time, step index, input row. On the sample with times cut to the
    minute, every run and every shard count gives the same report and cart table."""
    from funnel.api import analyze

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    p = tmp_path / "ties.parquet"
    pl.read_csv(SAMPLE_EVENTS, try_parse_dates=True).with_columns(pl.col("timestamp").dt.truncate("1m")) \
        .write_parquet(p)
    first = analyze(str(p), shards=1)
    for shards in (1, 3, 1, 3):
        again = analyze(str(p), shards=shards)
        assert again.report.to_dict() == first.report.to_dict()
        assert again.carts.equals(first.carts)
