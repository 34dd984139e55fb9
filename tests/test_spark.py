"""``--engine spark`` (PySpark local mode) gives the same funnel and abandonment as the local
engine. Skipped when PySpark or Java is missing: ``pip install 'funnel[spark]'`` + a JDK 17."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.spark

if importlib.util.find_spec("pyspark") is None:
    pytest.skip("pyspark is not installed (pip install 'funnel[spark]')", allow_module_level=True)
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("no Java found (PySpark needs a JDK 17+ on PATH or JAVA_HOME)", allow_module_level=True)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    from funnel.io.sample import generate_sample

    path = tmp_path_factory.mktemp("spark") / "events.parquet"
    from conftest import anonymous_until_login

    ev = generate_sample(n_sessions=1500, seed=3).events
    if ev["timestamp"].dtype == pl.String:
        ev = ev.with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC"))
    ev = anonymous_until_login(ev)   # sessions that log in midway must stay whole in Spark too
    bad = ev.head(3).with_columns(   # rows the engines must reject (and report) alike
        pl.Series("timestamp", [None, ev["timestamp"][1], ev["timestamp"][2]], dtype=ev["timestamp"].dtype),
        pl.Series("cart_value", [10.0, -5.0, 10.0]),
        pl.Series("event", ["add_to_cart", "add_to_cart", None], dtype=pl.String))
    pl.concat([ev, bad]).write_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def sessions_log(tmp_path_factory):
    from funnel.io.sample import generate_sample

    path = tmp_path_factory.mktemp("spark_sessions") / "sessions.csv"
    generate_sample(n_sessions=1500, seed=3).sessions.write_csv(path)
    return str(path)


@pytest.fixture(scope="module")
def spark():
    from funnel.spark import spark_session

    s = spark_session()
    # Small test data would otherwise be coalesced into one partition by adaptive execution:
    # the test must see several shards whose partials merge.
    s.conf.set("spark.sql.adaptive.enabled", "false")
    yield s
    s.stop()


@contextlib.contextmanager
def _pieces(spark, size: int | None):
    """Spark reads files in pieces of ``size`` bytes (``maxPartitionBytes``) meanwhile, so
    that a small test file is split over several tasks (None: Spark's own setting)."""
    if size is None:
        yield
        return
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(size))
    try:
        yield
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")


def _equal_to_local(path, spark, key: list[str]) -> None:
    """Spark's analysis of ``path``, read in 1 KB pieces, gives the local one's input counts,
    funnel and abandonment, and its rejected rows compared by ``key`` (with ``row``: their
    numbers too)."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    with _pieces(spark, 1024):
        here, there = analyze(str(path)), analyze_spark(str(path), Config(), spark=spark)
    local, remote = here.report.to_dict(), there.report.to_dict()
    for k in ("rows_read", "rows_rejected", "rejected", "events", "sessions", "users"):
        assert remote["input"][k] == local["input"][k], k
    assert remote["funnel"] == local["funnel"] and remote["abandonment"] == local["abandonment"]
    assert sorted(there.rejects.select(key).rows()) == sorted(here.rejects.select(key).rows())


def test_spark_engine_matches_local(log, spark):
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    here = analyze(log)
    there = analyze_spark(log, Config(), spark=spark)
    local, remote = here.report.to_dict(), there.report.to_dict()
    # the per-cart table comes back from the shards whole
    assert there.carts.height == here.carts.height > 0
    assert there.carts.select(here.carts.columns).sort("session_id").equals(here.carts.sort("session_id"))
    # rejected rows too, named by file (as the local engine names it, not Spark's file: URI) and
    # row, as the local engine numbers the rows of a Parquet file
    assert there.rejects.height == here.rejects.height >= 3
    mine = here.rejects.select("file", pl.col("row").cast(pl.Int64), "cause").sort("row")
    assert there.rejects.select("file", "row", "cause").sort("row").equals(mine)
    assert mine["row"].null_count() == 0 and set(mine["file"]) == {log}
    assert remote["funnel"] == local["funnel"]
    assert remote["abandonment"] == local["abandonment"]
    for key in ("rows_read", "rows_rejected", "rejected", "events", "sessions", "users", "period",
                "capped_sessions"):
        assert remote["input"][key] == local["input"][key], key


def test_spark_counts_rejects_per_cause_and_capped_sessions_like_local(log, spark):
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    cfg = Config().with_overrides(max_events_per_session=12)   # some sessions are over the cap
    local = analyze(log, max_events_per_session=12).report.to_dict()["input"]
    remote = analyze_spark(log, cfg, spark=spark).report.to_dict()["input"]
    assert local["capped_sessions"] > 1
    assert {r["key"] for r in local["rejected"]} >= {"session_cap", "missing_timestamp"}
    for key in ("rows_read", "rows_rejected", "rejected", "capped_sessions", "events", "sessions"):
        assert remote[key] == local[key], key


def test_spark_names_the_causes_of_a_step_whose_events_were_all_set_aside(tmp_path, spark):
    """A step whose every row the session cap set aside: Spark says so from the shards' rejected
    rows per step and the input's event names, as the local engine does."""
    from conftest import capped_payments

    from funnel.api import analyze
    from funnel.spark import analyze_spark

    log, cfg = capped_payments(tmp_path)
    here = analyze(log, config=cfg)
    there = analyze_spark(log, cfg, spark=spark).report.warnings
    assert there[0] == here.report.warnings[0]
    assert "every row of them was rejected — session_cap 1 (event beyond the per-session cap of 3" in there[0]


@pytest.mark.parametrize("steps", ["add_to_cart,begin_checkout,add_shiping_info,purchase",
                                   "add_to_cart,purchase,begin_checkout"])
def test_spark_warns_of_an_unreached_step_like_local(log, spark, steps):
    """A step no session reached: Spark counts the input's event names (QA: it said only 'check
    the step's event names'), so its warning is the local one — a misspelled step's closest
    name, or events that occur but never after the step before."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    cfg = Config().with_overrides(steps=steps)
    here = analyze(log, config=cfg).report.warnings
    there = analyze_spark(log, cfg, spark=spark).report.warnings
    assert here and there == here
    assert ("did you mean 'add_shipping_info'" if "shiping" in steps else "its events occur, but never") in here[0]


def test_spark_engine_joins_a_sessions_log_like_local(log, sessions_log, spark, tmp_path):
    """--sessions: the log is read on the driver, shipped to the shards and joined there; the
    segments (device, channel, country from the sessions log) equal the local engine's, and so
    do the log's rows not used (a second row of a session, a row without an id): counted, and
    in the rejected-row table after the events' rows."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    lines = Path(sessions_log).read_text().splitlines()
    first = lines[1].split(",")
    dirty = tmp_path / "sessions.csv"
    dirty.write_text("\n".join([*lines, lines[1], ",".join(["", *first[1:]])]) + "\n")
    local = analyze(log, sessions=str(dirty))
    here = local.report.to_dict()
    remote = analyze_spark(log, Config(), sessions=str(dirty), spark=spark)
    there = remote.report.to_dict()
    assert here["segments"] and there["segments"] == here["segments"]
    assert there["funnel"] == here["funnel"] and there["abandonment"] == here["abandonment"]
    assert there["input"]["sessions_log"] == here["input"]["sessions_log"] == str(dirty)
    assert here["input"]["sessions_log_rejected"] == [{"key": "duplicate_session", "count": 1},
                                                       {"key": "missing_id", "count": 1}]
    assert there["input"]["sessions_log_rejected"] == here["input"]["sessions_log_rejected"]
    unused = local.rejects.filter(pl.col("file") == str(dirty))
    assert unused.select("row", "cause").rows() == [(len(lines), "duplicate_session"),
                                                     (len(lines) + 1, "missing_id")]
    mine = remote.rejects.filter(pl.col("file") == str(dirty))
    assert mine.select(unused.columns).equals(unused)


def test_spark_funnel_only_is_the_local_funnel_only_report(log, sessions_log, spark, tmp_path):
    """--funnel-only --engine spark (QA: the flag was not passed on, and Spark gave the full
    diagnosis): the funnel and abandonment counts only, the local funnel-only JSON but for the
    time it was made (no reasons, signals, recommendations, segments, paths or trend)."""
    from typer.testing import CliRunner

    from funnel.cli import app

    got = {}
    for engine in ("local", "spark"):
        out = tmp_path / f"{engine}.json"
        res = CliRunner().invoke(app, ["analyze", log, "--sessions", sessions_log, "--funnel-only", "--engine",
                                       engine, "--json", str(out), "-q"])
        assert res.exit_code == 0, res.output
        got[engine] = {k: v for k, v in json.loads(out.read_text()).items() if k != "generated_at"}
    local, remote = got["local"], got["spark"]
    assert not local["abandonment"]["reasons"] and not local["recommendations"] and not local["segments"]
    assert local["paths"] is None and not local["trend"] and local["funnel"]["steps"][0]["sessions"] > 0
    assert remote == local


@pytest.mark.parametrize("spec", [dict(period="last-7d", compare="previous"), dict(since="2026-10-20")])
def test_spark_ci_mode_matches_local(log, spark, spec):
    """CI mode on Spark: the periods resolved from the shards' bounds (pass 0), each period's
    report from the entities that start in it, the comparison and the gates equal the local
    engine's; the cart table is the analysed period's."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.periods import PeriodSpec
    from funnel.spark import analyze_spark

    rules = ("conversion_drop > 0.5",) if "compare" in spec else ()   # (it needs a comparison)
    cfg = Config().with_overrides(fail_on=(*rules, "step:purchase:conversion < 0.99"))
    here = analyze(log, cfg, period=PeriodSpec(**spec))
    there = analyze_spark(log, cfg, spark=spark, period=PeriodSpec(**spec))
    local, remote = here.report.to_dict(), there.report.to_dict()
    for key in ("funnel", "abandonment", "comparison", "gates"):
        assert remote[key] == local[key], key
    for key in ("rows_read", "rows_rejected", "events", "sessions", "users", "period"):
        assert remote["input"][key] == local["input"][key], key
    assert local["gates"] and any(g["fired"] for g in local["gates"])
    assert local["input"]["sessions"] < analyze(log).report.input.sessions   # a real subset
    assert there.carts.select(here.carts.columns).sort("session_id").equals(here.carts.sort("session_id"))


@pytest.mark.parametrize("spec", [None, {"period": "2026-W44", "compare": "previous"}])
def test_spark_counts_a_user_in_two_shards_once_and_recovers_their_cart(tmp_path, spark, spec):
    """A buyer whose purchase sits in a session another (smaller) user id owns: their sessions
    are in several shards, yet each is counted once in ``input.users`` and their abandoned
    carts are recovered over all their sessions, as the local engine does. Ids with outer
    blanks on some rows — user ids, and session ids of sessions without a user — are keyed
    as the partitions read them (trimmed), so those users and sessions are not split."""
    from conftest import bought_with_a_guest

    from funnel.api import analyze
    from funnel.config import Config
    from funnel.io.sample import generate_sample
    from funnel.periods import PeriodSpec
    from funnel.spark import analyze_spark

    ev = bought_with_a_guest(generate_sample(n_sessions=1500, seed=3).events)
    h, odd = pl.col("session_id").hash(5) % 5, pl.int_range(pl.len()).over("session_id") % 2 == 1
    user = pl.when(h == 0).then(pl.col("user_id") + " ").when(h == 1).then(None).otherwise("user_id")
    session = pl.when((h == 1) & odd).then(" " + pl.col("session_id")).otherwise("session_id")
    path = tmp_path / "events.parquet"
    ev.with_columns(user.alias("user_id"), session.alias("session_id")).write_parquet(path)
    period = PeriodSpec(**spec) if spec else None
    here, there = analyze(str(path), period=period), analyze_spark(str(path), Config(), spark=spark, period=period)
    local, remote = here.report.to_dict(), there.report.to_dict()
    assert local["abandonment"]["recovered"] > 0
    for key in ("funnel", "abandonment"):
        assert remote[key] == local[key], key
    for key in ("rows_read", "events", "sessions", "users", "period"):
        assert remote["input"][key] == local["input"][key], key
    assert there.carts.select(here.carts.columns).sort("session_id").equals(here.carts.sort("session_id"))


def test_spark_user_level_funnel_keeps_each_user_in_one_shard(tmp_path, spark):
    """A user-level funnel on Spark: rows go to the shard of their own user id (else session
    id), so a user in another user's session is one entity, as locally."""
    from conftest import anonymous_until_login, bought_with_a_guest

    from funnel.api import analyze
    from funnel.config import Config
    from funnel.io.sample import generate_sample
    from funnel.spark import analyze_spark

    path = tmp_path / "events.parquet"
    anonymous_until_login(bought_with_a_guest(generate_sample(n_sessions=800, seed=4).events), other_user=True) \
        .write_parquet(path)
    cfg = Config().with_overrides(level="user")
    local = analyze(str(path), cfg).report.to_dict()
    remote = analyze_spark(str(path), cfg, spark=spark, tables=False).report.to_dict()
    assert remote["funnel"] == local["funnel"] and remote["abandonment"] == local["abandonment"]
    for key in ("rows_read", "events", "sessions", "users"):
        assert remote["input"][key] == local["input"][key], key


def test_spark_period_without_data_is_the_local_error(log, spark):
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.errors import InputError
    from funnel.periods import PeriodSpec
    from funnel.spark import analyze_spark

    msgs = []
    for run in (lambda: analyze(log, period=PeriodSpec(period="2030-01")),
                lambda: analyze_spark(log, Config(), spark=spark, period=PeriodSpec(period="2030-01"))):
        with pytest.raises(InputError) as exc:
            run()
        msgs.append((str(exc.value), exc.value.hint))
    assert msgs[0] == msgs[1] and "no sessions start in the period 2030-01" in msgs[0][0]


def _ga4_export(ev: pl.DataFrame) -> pl.DataFrame:
    """A generated log shaped like a GA4 BigQuery export (Parquet types): µs timestamps, the
    user as user_pseudo_id, the session number and the page, value, currency, shipping and
    payment type in the repeated event_params record, the device in a struct."""
    def param(key: str, string=None, integer=None, double=None) -> pl.Expr:
        return pl.struct(pl.lit(key).alias("key"), pl.struct(
            (string if string is not None else pl.lit(None, pl.String)).alias("string_value"),
            (integer if integer is not None else pl.lit(None, pl.Int64)).alias("int_value"),
            (double if double is not None else pl.lit(None, pl.Float64)).alias("double_value")).alias("value"))
    return ev.select(
        pl.col("timestamp").dt.epoch("us").alias("event_timestamp"),
        pl.col("event").alias("event_name"),
        pl.col("user_id").alias("user_pseudo_id"),
        pl.concat_list(
            param("ga_session_id", integer=pl.col("session_id").str.replace_all(r"\D", "").cast(pl.Int64)),
            param("page_location", string=pl.col("page_url")),
            param("value", double=pl.col("cart_value")),
            param("currency", string=pl.col("currency")),
            param("shipping", double=pl.col("shipping_cost")),
            param("payment_type", string=pl.col("payment_method")),
        ).alias("event_params"),
        pl.struct(pl.lit("mobile").alias("category")).alias("device"),
    )


def test_spark_reads_vendor_exports_like_local(tmp_path, spark):
    """A GA4 export (sniffed from its nested schema, or named with --format) runs on Spark
    through the local engine's adapter, inside the shards: the funnel, abandonment and input
    counts equal the local engine's, and the summary names the format and its mapping."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.io.sample import generate_sample
    from funnel.spark import analyze_spark

    ev = generate_sample(n_sessions=900, seed=5).events
    path = tmp_path / "events_20261001.parquet"
    _ga4_export(ev).write_parquet(path)
    here = analyze(str(path))
    assert here.report.input.format == "ga4" and here.report.funnel.steps[0].sessions > 100
    for fmt in ("auto", "ga4"):
        there = analyze_spark(str(path), Config().with_overrides(format=fmt), spark=spark)
        local, remote = here.report.to_dict(), there.report.to_dict()
        assert remote["funnel"] == local["funnel"] and remote["abandonment"] == local["abandonment"]
        for key in ("format", "columns", "rows_read", "rows_rejected", "events", "sessions", "users", "period"):
            assert remote["input"][key] == local["input"][key], key
        assert there.carts.select(here.carts.columns).sort("session_id").equals(here.carts.sort("session_id"))


@pytest.mark.parametrize("fixture", ["ga4/events_20240305.ndjson", "segment/tracks.ndjson",
                                     "shopify/web_pixels.ndjson", "snowplow/snowplow_ecommerce_events.csv"])
def test_spark_reads_every_vendor_fixture_like_local(fixture, spark):
    """The real-shaped vendor fixtures (nested JSON as Spark infers it; Snowplow's CSV, whose
    JSON contexts hold doubled quotes) give the local engine's funnel, abandonment and input."""
    from conftest import ROOT

    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    path = str(ROOT / "tests" / "fixtures" / fixture)
    local, remote = analyze(path).report.to_dict(), analyze_spark(path, Config(), spark=spark).report.to_dict()
    assert remote["input"]["format"] == local["input"]["format"] == fixture.split("/")[0]
    assert remote["funnel"] == local["funnel"] and remote["abandonment"] == local["abandonment"]
    for key in ("rows_read", "rows_rejected", "rejected", "events", "sessions", "users", "period"):
        assert remote["input"][key] == local["input"][key], key
    assert remote["warnings"] == local["warnings"]   # (Snowplow's: a step whose events never follow the one before)


def test_spark_unknown_format_is_the_local_error(log, spark):
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.errors import ConfigError
    from funnel.spark import analyze_spark

    cfg = Config().with_overrides(format="ga5")
    msgs = []
    for run in (lambda: analyze(log, cfg), lambda: analyze_spark(log, cfg, spark=spark)):
        with pytest.raises(ConfigError) as exc:
            run()
        msgs.append((str(exc.value), exc.value.hint))
    assert msgs[0] == msgs[1] and "unknown input format 'ga5'" in msgs[0][0] and "ga4" in msgs[0][1]
    # a named format the input does not fit: the local error too (the adapter would read nothing)
    from funnel.errors import InputError

    cfg, msgs = Config().with_overrides(format="ga4"), []
    for run in (lambda: analyze(log, cfg), lambda: analyze_spark(log, cfg, spark=spark)):
        with pytest.raises(InputError) as exc:
            run()
        msgs.append((str(exc.value), exc.value.hint))
    assert msgs[0] == msgs[1] and "--format ga4 does not fit this file" in msgs[0][0], msgs


def test_missing_pyspark_is_a_clear_error(monkeypatch):
    import builtins

    from funnel.errors import FunnelError
    from funnel.spark import _require_spark

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "pyspark":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(FunnelError, match="PySpark") as e:
        _require_spark()
    assert "pip install" in e.value.hint and e.value.exit_code == 2


def test_spark_warns_of_dates_without_a_time_like_local(tmp_path, spark):
    """Timestamps that are all at midnight (dates) get the local engine's warning; the shards
    count the events with a time of day, asked only when the first and last are at midnight."""
    import datetime as dt

    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    days = [dt.datetime(2026, 10, d, tzinfo=dt.UTC) for d in (1, 1, 2, 3)]
    rows = {"session_id": ["s1", "s1", "s2", "s3"], "event": ["add_to_cart", "purchase", "add_to_cart", "view_item"]}
    pl.DataFrame({"timestamp": days, **rows}).write_parquet(tmp_path / "d.parquet")
    timed = days[:1] + [days[1] + dt.timedelta(hours=10)] + days[2:]
    pl.DataFrame({"timestamp": timed, **rows}).write_parquet(tmp_path / "t.parquet")
    cfg = Config().with_overrides(steps="add_to_cart,purchase")
    for name, warned in (("d.parquet", True), ("t.parquet", False)):
        local = analyze(str(tmp_path / name), cfg).report.warnings
        remote = analyze_spark(str(tmp_path / name), cfg, spark=spark).report.warnings
        assert [w for w in remote if "is at midnight" in w] == [w for w in local if "is at midnight" in w]
        assert any("is at midnight" in w for w in remote) == warned, name


def test_spark_shard_key_reads_ids_as_the_partitions_do(spark):
    """The Spark shard key (``_spark_id``, Java regexes) cleans an id exactly as the partitions
    will (``partials._id``, which ``normalize`` agrees with), on every control, bidi-override
    and white-space character, at either end or inside: before, it trimmed spaces only, so
    ``"s1\\t"`` and ``"s1"``, one session to the partitions, went to two shards."""
    from pyspark.sql.types import StringType, StructField, StructType

    from funnel.core.partials import _id
    from funnel.spark import _spark_id

    special = [*range(0x21), *range(0x7F, 0xA1), 0x1680, *range(0x2000, 0x200C), 0x200E, 0x200F,
               *range(0x2028, 0x2030), 0x205F, *range(0x2066, 0x206A), 0x3000, 0xFEFF, 0xFFFD]
    ids = [None, "", "s1", "a b", "null", " NULL ", "None", "undefined\t", "NaN", "\\N", "nul", "NULl", "0"]
    for c in map(chr, special):
        ids += [c, c * 2, f"{c}s1", f"s1{c}", f"{c}s{c}1{c}", f" {c} s1 {c} "]
    df = spark.createDataFrame([(i,) for i in ids], StructType([StructField("sid", StringType())]))
    got = [r[0] for r in df.select(_spark_id("sid")).collect()]
    want = pl.DataFrame({"sid": ids}, schema={"sid": pl.String}).select(_id("sid", False)).to_series().to_list()
    assert [(i, g) for i, g, w in zip(ids, got, want) if g != w] == []


def test_spark_keeps_a_session_whole_whose_ids_differ_in_outer_white_space(tmp_path, spark):
    """Rows of one session whose id is written with a trailing tab, a no-break space or a
    newline on some rows are one session to the partitions, so they must share a shard: the
    funnel and the input counts equal the local engine's."""
    import datetime as dt

    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    t0 = dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC)
    rows = []
    for n in range(40):
        for i, (ev, pad) in enumerate((("add_to_cart", ""), ("begin_checkout", "\t"), ("purchase", "\u00a0\n"))):
            if i < 2 or n % 2:
                rows.append((t0 + dt.timedelta(minutes=n * 10 + i), f"s{n}{pad}", ev))
    pl.DataFrame(rows, schema=["timestamp", "session_id", "event"], orient="row").write_parquet(tmp_path / "w.parquet")
    cfg = Config().with_overrides(steps="add_to_cart,begin_checkout,purchase")
    local = analyze(str(tmp_path / "w.parquet"), cfg).report.to_dict()
    remote = analyze_spark(str(tmp_path / "w.parquet"), cfg, spark=spark).report.to_dict()
    assert local["input"]["sessions"] == 40 and [s["sessions"] for s in local["funnel"]["steps"]] == [40, 40, 20]
    assert remote["funnel"] == local["funnel"] and remote["input"]["sessions"] == 40


DIRTY = Path(__file__).parent / "fixtures" / "dirty"


@pytest.mark.parametrize("name", ["ragged.csv", "bom_crlf_quoted.csv", "hostile.csv", "latin1.csv",
                                  "mixed_time.csv", "partly_bad.csv"])
def test_spark_reads_dirty_csv_like_local(name, spark):
    """Damaged CSV gives the local engine's input counts and rejected rows on Spark: a row
    longer than its header is rejected as ``extra_fields`` with its surplus fields (Spark
    dropped them silently and used the row), and a quoted field spanning lines stays one
    field (Spark read the lines apart: one more row, rejected as a bad timestamp)."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    here = analyze(str(DIRTY / name))
    there = analyze_spark(str(DIRTY / name), Config(), spark=spark)
    local, remote = here.report.to_dict(), there.report.to_dict()
    for key in ("rows_read", "rows_rejected", "rejected", "events", "sessions", "users", "period"):
        assert remote["input"][key] == local["input"][key], key
    assert remote["funnel"] == local["funnel"]
    assert there.rejects.height == here.rejects.height
    if here.rejects.height:
        cols = ["cause", "detail", *(["extra_fields"] if "extra_fields" in here.rejects.columns else [])]
        assert there.rejects.select(cols).sort(cols).equals(here.rejects.select(cols).sort(cols))



def test_spark_lists_the_input_columns_in_the_local_order_for_several_files(spark):
    """input.columns of several files (QA: the six dirty fixtures gave Spark's union order,
    ``…,user_id,url,cart_value``): the local order, each file's roles, the first file's first."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    paths = [str(DIRTY / n) for n in ("partly_bad.csv", "ragged.csv", "bom_crlf_quoted.csv", "hostile.csv",
                                      "latin1.csv", "mixed_time.csv")]   # (the first with a cart value, no user)
    local = analyze(paths).report.to_dict()["input"]["columns"]
    assert list(local)[:6] == ["timestamp", "event", "session_id", "cart_value", "user_id", "url"]
    remote = analyze_spark(paths, Config(), spark=spark).report.to_dict()["input"]["columns"]
    assert list(remote.items()) == list(local.items())


def test_spark_names_the_files_own_columns_in_rejected_rows_like_local(tmp_path, spark):
    """A rejected row's detail names the column as the file has it (``event_time: yesterday``,
    not the internal ``ts``), on Spark as locally; a vendor export's by the fields read."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    p = tmp_path / "renamed.csv"
    p.write_text("event_time,sid,event_name,order_value\n2026-11-10 10:00:00,a,add_to_cart,5\n"
                 "yesterday,a,purchase,5\n2026-11-10 10:02:00,b,add_to_cart,-5\n")
    seg = tmp_path / "segment.ndjson"
    track = {"type": "track", "userId": "u1", "event": "Product Added", "timestamp": "2026-11-10T10:00:00Z"}
    seg.write_text(json.dumps({**track, "properties": {"value": 5}}) + "\n"
                   + json.dumps({**track, "properties": {"value": -3}}) + "\n")
    for path, want in ((p, ["event_time: yesterday", "order_value: -5"]),
                       (seg, ["properties.value, else revenue, else total, else price × quantity: -3.0"])):
        here, there = analyze(str(path)).rejects, analyze_spark(str(path), Config(), spark=spark).rejects
        assert sorted(here["detail"].to_list()) == sorted(there["detail"].to_list()) == sorted(want)

def test_spark_names_a_json_key_repeated_in_one_object(tmp_path, spark):
    """Regression: an NDJSON line naming a key twice failed the Spark job with its own
    '[COLUMN_ALREADY_EXISTS] … SQLSTATE: 42711' line. It is now an input error naming the key,
    with the way out (the local engine takes the first value, and does)."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.errors import InputError
    from funnel.spark import analyze_spark

    p = tmp_path / "events.ndjson"
    p.write_text('{"timestamp":"2026-10-01T10:00:00Z","session_id":"s1","event":"add_to_cart"}\n'
                 '{"timestamp":"2026-10-01T10:05:00Z","session_id":"s1","event":"purchase",'
                 '"timestamp":"2026-10-01T10:09:00Z"}\n')
    with pytest.raises(InputError) as e:
        analyze_spark(str(p), Config(), spark=spark)
    assert str(e.value) == ("a JSON object in the input names the key 'timestamp' twice, which Spark cannot read — "
                            "remove the repeated key, or run with --engine local (which takes the first value)")
    local = analyze(str(p)).report.input
    assert (local.rows_read, local.rows_rejected, local.period.start) == (2, 0, "2026-10-01T10:00:00Z")


def test_spark_names_a_line_that_is_not_json(spark):
    """A line of an NDJSON file that is not a JSON object is the local engine's error (the
    file and what is wrong, one line), not a row of nulls counted as rejected."""
    from funnel.config import Config
    from funnel.errors import InputError
    from funnel.spark import analyze_spark

    with pytest.raises(InputError, match=r"bad_line\.ndjson: a line is not a JSON object: .*2026-10-01T10:02:00Z.*session_id") as e:
        analyze_spark(str(DIRTY / "bad_line.ndjson"), Config(), spark=spark)
    assert "\n" not in str(e.value)


def test_spark_names_a_file_it_cannot_read(spark):
    """A corrupt Parquet file fails the Spark job; the error is one line naming the file (it was
    "unexpected Py4JJavaError … a bug in funnel")."""
    from funnel.config import Config
    from funnel.errors import InputError
    from funnel.spark import analyze_spark

    with pytest.raises(InputError, match=r"corrupt_page\.parquet: Spark could not read the file") as e:
        analyze_spark(str(DIRTY / "corrupt_page.parquet"), Config(), spark=spark)
    assert "\n" not in str(e.value)


def test_spark_job_failures_are_one_line_errors():
    """``spark_error``: funnel's own error raised in a task comes back as itself; any other
    failure is an EngineError with the innermost cause's message, on one line."""
    from funnel.errors import ConfigError
    from funnel.spark import EngineError, spark_error

    class Java:   # (a JVM exception as py4j shows it: toString and a chain of causes)
        def __init__(self, text, cause=None):
            self.text, self.cause = text, cause

        def toString(self):
            return self.text

        def getCause(self):
            return self.cause

    class Failed(Exception):
        def __init__(self, java):
            super().__init__("An error occurred while calling o1.collectToPython.")
            self.java_exception = java

    ours = Failed(Java("org.apache.spark.SparkException: Job aborted", Java(
        "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n  File …\n"
        "funnel.errors.ConfigError: segment column 'x' not found — available: device")))
    got = spark_error(ours)
    assert isinstance(got, ConfigError) and str(got) == "segment column 'x' not found — available: device"
    other = spark_error(Failed(Java("org.apache.spark.SparkException: Job aborted",
                                    Java("java.lang.OutOfMemoryError: Java heap space"))))
    assert isinstance(other, EngineError) and "java.lang.OutOfMemoryError: Java heap space" in str(other)
    assert "\n" not in str(other)


def test_spark_reads_a_folder_of_text_files_like_local(tmp_path, spark):
    """A local folder of CSV and NDJSON files (nested, compressed, each file with its own
    column order; hidden files skipped) is read by the local engine's folder rules and each
    file by its own format: the same input counts and funnel. Before, only a folder of Parquet
    files was accepted."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.io.sample import generate_sample
    from funnel.spark import analyze_spark

    ev = generate_sample(n_sessions=300, seed=5).events
    if ev["timestamp"].dtype != pl.String:
        ev = ev.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
    half = ev.height // 2
    folder = tmp_path / "exports"
    (folder / "day2").mkdir(parents=True)
    (folder / ".cache").mkdir()
    ev.head(half).write_csv(folder / "day1.csv")
    ev.tail(ev.height - half).select(list(reversed(ev.columns))).write_csv(folder / "day2" / "part.csv")
    import gzip

    with gzip.open(folder / "day2" / "more.ndjson.gz", "wb") as f:
        ev.head(50).write_ndjson(f)
    (folder / ".cache" / "junk.csv").write_text("not,an,event\n1,2,3\n")
    local = analyze(str(folder)).report.to_dict()
    remote = analyze_spark(str(folder), Config(), spark=spark).report.to_dict()
    assert local["input"]["rows_read"] == ev.height + 50
    for key in ("rows_read", "rows_rejected", "rejected", "events", "sessions", "users", "period"):
        assert remote["input"][key] == local["input"][key], key
    assert remote["funnel"] == local["funnel"] and remote["abandonment"] == local["abandonment"]


@pytest.mark.parametrize("listed", [False, True])
def test_spark_reads_placeholder_ids_like_local(tmp_path, spark, listed):
    """A placeholder user id of every one-session visitor (padded on some rows): its warning,
    and with ``[input] missing_ids`` its rows read as without a user id — in the shard key and
    the partitions alike, so Spark gives the local report."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.io.sample import generate_sample
    from funnel.spark import analyze_spark

    ev = generate_sample(n_sessions=1500, seed=3).events
    once = ev.group_by("user_id").agg(pl.col("session_id").n_unique().alias("n")).filter(pl.col("n") == 1)
    guest = pl.col("user_id").is_in(once["user_id"].implode())
    odd = pl.int_range(pl.len()) % 2 == 1
    path = tmp_path / "events.parquet"
    ev.with_columns(pl.when(guest).then(pl.when(odd).then(pl.lit(" 0-guest ")).otherwise(pl.lit("0-guest")))
                    .otherwise("user_id").alias("user_id")).write_parquet(path)
    cfg = Config().with_overrides(missing_ids=["0-guest"] if listed else None)
    local, remote = analyze(str(path), config=cfg).report.to_dict(), \
        analyze_spark(str(path), cfg, spark=spark).report.to_dict()
    for key in ("funnel", "abandonment", "warnings"):
        assert remote[key] == local[key], key
    for key in ("rows_read", "events", "sessions", "users"):
        assert remote["input"][key] == local["input"][key], key
    assert any("one user id holds" in w for w in local["warnings"]) != listed


def test_spark_reads_a_parquet_dataset_named_by_a_folder_uri_like_local(tmp_path, spark):
    """An object store's folder (``s3a://bucket/events/``, here a ``file:`` URI), hive
    partitions and all, is a Parquet dataset that Spark lists and reads: the local engine's
    report of the same folder. Before, a URI without a format in its name was refused."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.io.sample import generate_sample
    from funnel.spark import analyze_spark

    ev = generate_sample(n_sessions=300, seed=3).events
    folder = tmp_path / "events"
    ev.with_columns(pl.col("timestamp").dt.date().cast(pl.String).alias("date")) \
        .write_parquet(folder, partition_by=["date"])
    local = analyze(str(folder)).report.to_dict()
    remote = analyze_spark(folder.as_uri(), Config(), spark=spark).report.to_dict()
    for key in ("funnel", "abandonment", "segments"):
        assert remote[key] == local[key], key
    for key in ("rows_read", "events", "sessions", "users", "rows_rejected"):
        assert remote["input"][key] == local["input"][key], key


def test_spark_says_what_is_wrong_with_a_folder_uri(tmp_path, spark):
    from funnel.config import Config
    from funnel.errors import InputError
    from funnel.spark import analyze_spark

    csvs = tmp_path / "csvs"
    csvs.mkdir()
    (csvs / "events.csv").write_text("timestamp,session_id,event\n2026-01-05T10:00:00Z,s1,add_to_cart\n")
    with pytest.raises(InputError) as got:
        analyze_spark(csvs.as_uri(), Config(), spark=spark)
    said = " ".join(str(got.value).split())
    assert said.startswith(f"{csvs.as_uri()}: cannot be read as a Parquet dataset (")
    assert "is not a Parquet file" in said and f"e.g. {csvs.as_uri()}/*.csv" in said
    for gone in (tmp_path / "nothing", tmp_path / "nothing.parquet"):
        with pytest.raises(InputError, match=r"nothing(\.parquet)?: no such file or folder — check the path"):
            analyze_spark(gone.as_uri(), Config(), spark=spark)


@pytest.mark.parametrize("spanning", [True, False])
@pytest.mark.parametrize("split", [False, True])
def test_spark_counts_blank_csv_lines_like_local(tmp_path, spark, split, spanning):
    """Spark's CSV reader skipped empty lines, which the local reader reads as rows and
    rejects (``empty_row``): Spark read fewer rows. It now adds a row for each empty line
    outside a quoted field — not for one inside a quoted field that spans lines — also when
    Spark reads the file in several pieces (``split``) and in gzip; with a field spanning lines
    (``spanning``: read with multiLine) and without (read line by line, in pieces)."""
    import gzip

    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    lines = ["timestamp,session_id,event,url"]
    for i in range(400):
        url = f'"/p{i}\n\nq"' if spanning and i % 97 == 5 else f'"/p,{i}"'   # (a quoted field holding an empty line)
        lines.append(f"2026-01-05T10:{i % 60:02d}:{i % 59:02d}Z,s{i // 7},add_to_cart,{url}")
        if i % 37 == 3:
            lines.append("")
        if i == 200:
            lines.append("   ")   # (white space alone: a row without a timestamp, locally)
    text = "\n".join(lines) + "\n\n"   # (and one at the end)
    plain, packed = tmp_path / "log.csv", tmp_path / "log2.csv.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    with _pieces(spark, 2048 if split else None):
        for path in (plain, packed):
            here, there = analyze(str(path)), analyze_spark(str(path), Config(), spark=spark)
            local, remote = here.report.to_dict()["input"], there.report.to_dict()["input"]
            assert local["rejected"] == [{"key": "empty_row", "count": 12}, {"key": "missing_timestamp", "count": 1}]
            assert local["rows_read"] == 413
            for key in ("rows_read", "rows_rejected", "rejected", "events", "sessions"):
                assert remote[key] == local[key], key
            assert sorted(there.rejects["cause"].to_list()) == ["empty_row"] * 12 + ["missing_timestamp"]
            assert set(there.rejects["file"]) == set(here.rejects["file"]) == {str(path)}   # (as locally)
            if not spanning:   # (read as numbered lines: each rejected row's number, as locally)
                assert there.rejects["row"].to_list() == here.rejects["row"].to_list()


def test_spark_names_rows_swallowed_by_a_quote_like_local(tmp_path, spark):
    """A quote opened in a field and closed only rows later makes a CSV reader take the rows
    between for one field: the local engine's error naming the line, on Spark too (for the
    files the driver can read), where Spark lost those rows without a word."""
    from conftest import run_cli

    from funnel.config import Config
    from funnel.errors import InputError
    from funnel.spark import analyze_spark

    lines = ["timestamp,session_id,event,page"] + [f"2026-10-01T10:00:{i:02d}Z,s1,view,/p{i}" for i in range(40)]
    lines[9] = lines[9].replace(",view,", ',"view,')
    lines[15] = lines[15] + '"'
    p = tmp_path / "q.csv"
    p.write_text("\n".join(lines) + "\n")
    for source in (str(p), str(tmp_path), str(tmp_path / "*.csv")):
        with pytest.raises(InputError, match=r"q\.csv: line 10 has malformed quoting \(.*5 rows"):
            analyze_spark(source, Config(), spark=spark)
    r = run_cli("analyze", str(p), "--engine", "spark", "-q")
    assert r.returncode == 2 and "line 10 has malformed quoting" in r.stderr and "Traceback" not in r.stderr


def test_spark_reads_a_csv_without_fields_spanning_lines_in_pieces(tmp_path, spark):
    """A CSV whose quoted fields stay on their line (no line holds an odd number of quotes) is
    read line by line, so Spark splits a large file over many tasks; one field spanning lines
    makes it one task per file (multiLine), as it must be read whole."""
    from funnel.spark import _csv

    rows = [f'2026-01-05T10:{i % 60:02d}:00Z,s{i},add_to_cart,"/p,{i}"' for i in range(600)]
    plain, spanning = tmp_path / "plain.csv", tmp_path / "spanning.csv"
    plain.write_text("timestamp,session_id,event,url\n" + "\n".join(rows) + "\n")
    spanning.write_text("timestamp,session_id,event,url\n" + "\n".join(rows[:-1]) + '\n' + rows[-1][:-1] + '\nx"\n')
    with _pieces(spark, 2048):
        pieces = {p.name: _csv(spark, str(p), ",").rdd.getNumPartitions() for p in (plain, spanning)}
        assert pieces["plain.csv"] >= pieces["spanning.csv"] + 5, pieces
        assert _csv(spark, str(plain), ",").count() == _csv(spark, str(spanning), ",").count() == 600


def _dirty_csv(seed: int) -> tuple[str, bool]:
    """A random damaged CSV (empty, white-space, short and long lines, quoted commas, doubled
    quotes, null spellings, padded ids, CRLF, a BOM; with ``spanning``, quoted fields holding
    line breaks and empty lines) and whether a field spans lines."""
    import random

    rng = random.Random(seed)
    spanning, nl = rng.random() < 0.5, rng.choice(["\n", "\r\n"])
    lines = ["timestamp,session_id,user_id,event,url,cart_value"]
    for i in range(rng.randint(20, 120)):
        r = rng.random()
        if r < 0.1:
            lines.append(rng.choice(["", "   ", ",,,,,"]))
            continue
        url = rng.choice(["/p", '"/a,b"', '"say ""hi"""'] + (['"x' + nl + nl + 'y"'] if spanning else []))
        row = [f"2026-01-05T{10 + i // 60:02d}:{i % 60:02d}:00Z", rng.choice(["s1", " s2", "s3 ", "null", ""]),
               rng.choice(["u1", "", "undefined", " u2 "]),
               rng.choice(["page_view", "add_to_cart", "begin_checkout", "add_payment_info", "purchase"]),
               url, rng.choice(["10", "", "NULL", "-3", "abc"])]
        lines.append(",".join(row + (["extra"] if rng.random() < 0.05 else []))[: None if rng.random() > 0.05 else 30])
    return ("\ufeff" if rng.random() < 0.2 else "") + nl.join(lines) + nl * rng.choice([1, 2]), spanning


@pytest.mark.parametrize("seed", range(6))
def test_spark_reads_random_dirty_csv_like_local(seed, tmp_path, spark):
    """Differential test: a random damaged CSV, read by Spark in 1 KB pieces, gives the local
    report's input counts, funnel and abandonment, and its rejected rows (with their row
    numbers, unless a quoted field spans lines)."""
    text, spanning = _dirty_csv(seed)
    p = tmp_path / "e.csv"
    p.write_bytes(text.encode())
    _equal_to_local(p, spark, ["cause"] if spanning else ["row", "cause"])


def _dirty_ndjson(seed: int) -> str:
    """A random damaged NDJSON log: blank and white-space lines, '{}', null spellings, padded
    and integer ids, bad and epoch timestamps, text and bad values, a nested property."""
    import json
    import random

    rng = random.Random(seed)
    out = []
    for i in range(rng.randint(20, 120)):
        if rng.random() < 0.1:
            out.append(rng.choice(["", "   ", "{}"]))
            continue
        row = {"timestamp": rng.choice([f"2026-01-05T10:{i % 60:02d}:00Z", "bad", None, 1767607200 + i]),
               "session_id": rng.choice(["s1", " s2", "null", None, 7]), "user_id": rng.choice(["u1", None, "undefined"]),
               "event": rng.choice(["page_view", "add_to_cart", "purchase", None]),
               "cart_value": rng.choice([10, "12,5", None, "NULL", -3])}
        if rng.random() < 0.1:
            row["props"] = {"x": 1}
        out.append(json.dumps(row))
    return "\n".join(out) + "\n" * rng.choice([1, 2])


@pytest.mark.parametrize("seed", [27, 1, 2])
def test_spark_reads_random_dirty_ndjson_like_local(seed, tmp_path, spark):
    """Differential test: a random damaged NDJSON log, read by Spark in 1 KB pieces, gives the
    local report's input counts and funnel, and its rejected rows with their line numbers (the
    rows are the file's lines, numbered). Seed 27 holds a line whose only value is a null spelled
    as text ('undefined'): locally not an empty row but one without a timestamp, as now on Spark
    (every field of the line null is what makes an NDJSON row empty)."""
    p = tmp_path / "e.ndjson"
    p.write_text(_dirty_ndjson(seed))
    _equal_to_local(p, spark, ["row", "cause"])


def test_spark_reads_each_files_decimal_mark_like_local(tmp_path, spark, monkeypatch):
    """Text numbers are read with their file's decimal mark, decided on the driver from the
    file's first rows as the local engine decides it and carried to the partitions by the rows'
    file (which Spark names as a percent-encoded ``file:`` URI). In a decimal-comma file
    ``1.234`` and ``2.500`` are 1234 and 2500 (Spark, reading each value by itself, made them
    1.234 and 2.5) and ``12.50`` past those rows is a ``bad_value``; in a decimal-point file
    ``2,500`` is 2500 and ``12,5`` a bad value; a file with both marks in its first rows is read
    value by value on both engines. One file goes in as a ``file:`` URI."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.core import normalize
    from funnel.spark import analyze_spark

    monkeypatch.setattr(normalize, "DECIMAL_SAMPLE_ROWS", 6)   # (decided on the driver: for Spark too)

    def csv(name: str, values: list[str]):
        (tmp_path / name).write_text("timestamp,session_id,event,cart_value\n" + "".join(
            f'2026-10-01T10:{i:02d}:00Z,{name[0]}{i},add_to_cart,"{v}"\n' for i, v in enumerate(values)))
        return tmp_path / name

    eu = csv("eu 50%.csv", ["12,50", "1.234", "2.500", "1.234,50", "1,5", "99,90", "12.50", "3.000"])
    us = csv("us.csv", ["12.50", "1,234", "2,500", "1.234", "1,234.50", "$7.5", "12,5", "3,000"])
    mixed = csv("mixed.csv", ["12,50", "12.50", "1,500", "1.500", "7"])
    here = analyze([str(eu), str(us), str(mixed)])
    there = analyze_spark([f"file://{eu}", str(us), str(mixed)], Config(), spark=spark)
    values = dict(here.carts.select("session_id", "cart_value").iter_rows())
    assert dict(there.carts.select("session_id", "cart_value").iter_rows()) == values
    assert {k: values[k] for k in ("e1", "e2", "e7", "u2", "u3", "u7", "m2", "m3")} == {
        "e1": 1234.0, "e2": 2500.0, "e7": 3000.0, "u2": 2500.0, "u3": 1.234, "u7": 3000.0, "m2": 1500.0, "m3": 1.5}
    local, remote = here.report.to_dict(), there.report.to_dict()
    assert remote["funnel"] == local["funnel"] and remote["abandonment"] == local["abandonment"]
    for key in ("rows_read", "rows_rejected", "rejected"):
        assert remote["input"][key] == local["input"][key], key
    assert sorted(there.rejects["detail"]) == sorted(here.rejects["detail"]) == ["cart_value: 12,5",
                                                                                 "cart_value: 12.50"]


def test_spark_says_a_store_is_read_without_a_decimal_mark(tmp_path):
    """The driver decides the marks of the files it can open; a store's URI, which only Spark
    reaches, is read value by value, and the report says so. Typed numbers need no mark: then
    nothing is read."""
    from funnel.config import Config
    from funnel.spark import _decided_marks

    us = tmp_path / "us.csv"
    us.write_text('timestamp,session_id,event,cart_value\n2026-10-01T10:00:00Z,u0,add_to_cart,"1,234.50"\n')
    marks, warned = _decided_marks(["s3a://bucket/eu.csv", f"file:{us}"], Config(), ["cart_value"])
    assert marks == {"cart_value": {str(us): "."}}
    assert len(warned) == 1 and warned[0].startswith("s3a://bucket/eu.csv: the decimal mark of the text numbers "
                                                     "(cart_value) is not decided per file")
    assert _decided_marks(["s3a://bucket/eu.csv", str(tmp_path / "gone.csv")], Config(), []) == ({}, [])


def test_spark_reads_each_files_separator_like_local(tmp_path, spark):
    """Each CSV is read with the separator the local loader takes from its header line (and
    each by its own header), decided on the driver by that loader: a ';'-separated file with
    decimal commas and a tab-separated .txt beside a comma file whose columns come in another
    order give the local cart values, funnel, abandonment and input counts (Spark read every
    .csv/.txt with a comma and one glob with its first file's header: no timestamp column)."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    def write(name: str, sep: str, cols: list[str], values: list[str]):
        rows = [{"timestamp": f"2026-10-01T10:{i:02d}:{s}0Z", "session_id": f"{name[0]}{i}", "event": event,
                 "cart_value": v} for i, v in enumerate(values)
                for s, event in enumerate(["add_to_cart", "begin_checkout"][:1 + (i % 2 == 0)])]
        (tmp_path / name).write_text(sep.join(cols) + "\n" + "".join(sep.join(r[c] for c in cols) + "\n" for r in rows))

    cols = ["timestamp", "session_id", "event", "cart_value"]
    write("eu.csv", ";", cols, ["12,50", "1.234", "2.500", "1.234,50", "99,90", "abc"])
    write("us.csv", ",", cols[::-1], ["12.50", "7", "3.5"])
    write("tabs.txt", "\t", cols, ["12,5", "3,25", "8"])
    specs = [str(tmp_path / "*.csv"), str(tmp_path / "tabs.txt")]
    here, there = analyze(specs), analyze_spark(specs, Config(), spark=spark)
    values = dict(here.carts.select("session_id", "cart_value").iter_rows())
    assert dict(there.carts.select("session_id", "cart_value").iter_rows()) == values
    assert {k: values[k] for k in ("e1", "e2", "e3", "t1", "u1")} == {"e1": 1234.0, "e2": 2500.0, "e3": 1234.5,
                                                                     "t1": 3.25, "u1": 7.0}
    local, remote = here.report.to_dict(), there.report.to_dict()
    assert remote["funnel"] == local["funnel"] and remote["abandonment"] == local["abandonment"]
    for key in ("rows_read", "rows_rejected", "rejected", "events", "sessions"):
        assert remote["input"][key] == local["input"][key], key
    assert local["input"]["rows_read"] == 19 and local["input"]["rows_rejected"] == 1   # ('abc': a bad value)
    assert local["funnel"]["steps"][1]["sessions"] == 7
    # a store's CSV: read with its extension's separator, which the report says
    from funnel.spark import _store_warnings

    assert _store_warnings(["s3a://b/eu.csv.gz", str(tmp_path / "us.csv"), "s3a://b/events/"])[0].startswith(
        "s3a://b/eu.csv.gz: the field separator is not sniffed per file")


def test_spark_reads_latin1_and_windows1252_csv_like_local(tmp_path, spark):
    """A Latin-1 and a Windows-1252 CSV (sniffed by the local loader; the second with a quoted
    field spanning lines, read with multiLine, and a non-ASCII column name) give the local ids:
    Spark read their bytes as UTF-8, so s-é and s-ö were one session, s-�. UTF-16 is an
    error saying to convert it."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.errors import InputError
    from funnel.spark import analyze_spark

    rows = "".join(f'2026-10-01T10:0{i}:00Z,s-{c},add_to_cart,{i},"{c}"\n' for i, c in enumerate("éöüß"))
    (tmp_path / "latin.csv").write_bytes(("timestamp,session_id,event,cart_value,país\n" + rows).encode("latin-1"))
    (tmp_path / "cp.csv").write_bytes(("timestamp,session_id,event,cart_value,país\n" + rows.replace("ß", "€")
                                       + '2026-10-01T10:09:00Z,s-œ,add_to_cart,9,"a\nb"\n').encode("cp1252"))
    for name in ("latin.csv", "cp.csv"):
        here, there = analyze(str(tmp_path / name)), analyze_spark(str(tmp_path / name), Config(), spark=spark)
        assert sorted(there.carts.select("session_id", "cart_value").rows()) == \
            sorted(here.carts.select("session_id", "cart_value").rows())
        assert here.carts.height >= 4
        local, remote = here.report.to_dict(), there.report.to_dict()
        assert remote["funnel"] == local["funnel"] and remote["input"]["sessions"] == local["input"]["sessions"]
    (tmp_path / "u16.csv").write_bytes("timestamp,session_id,event\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16 text, which --engine spark does not read"):
        analyze_spark(str(tmp_path / "u16.csv"), Config(), spark=spark)


def test_spark_reads_a_snowplow_enriched_tsv_like_local(tmp_path, spark):
    """A Snowplow enriched TSV (no header row, no quoting: its JSON contexts hold bare quotes),
    the Snowplow fixture written as one (a title opening with a quote, a row with no valid
    time), gives the local engine's funnel, abandonment, input counts, cart values and rejected
    rows by line: Spark reads it with the enriched column names the driver decided, from its
    first line (before, that line was taken for the header: no Snowplow columns)."""
    from conftest import ROOT
    from test_adapters import _enriched_line

    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    raw = pl.read_csv(ROOT / "tests" / "fixtures" / "snowplow" / "snowplow_ecommerce_events.csv", infer_schema=False)
    rows = raw.to_dicts()
    rows[3]["page_title"] = '"Sale" ends today'
    rows[5]["collector_tstamp"] = rows[5]["derived_tstamp"] = "not a time"
    path = tmp_path / "enriched.tsv"
    path.write_text("".join(_enriched_line(r) + "\n" for r in rows))
    here = analyze(str(path))
    with _pieces(spark, 64 * 1024):   # (the file over ~20 tasks; 4 KB pieces, ~300 tasks a read, took 100 s)
        there = analyze_spark(str(path), Config(), spark=spark)
    local, remote = here.report.to_dict(), there.report.to_dict()
    assert local["input"]["format"] == remote["input"]["format"] == "snowplow"
    assert local["funnel"]["steps"][0]["sessions"] > 0
    assert remote["funnel"] == local["funnel"] and remote["abandonment"] == local["abandonment"]
    for key in ("rows_read", "rows_rejected", "rejected", "events", "sessions", "users", "period"):
        assert remote["input"][key] == local["input"][key], key
    assert there.carts.select(here.carts.columns).sort("session_id").equals(here.carts.sort("session_id"))
    mine = here.rejects.select(pl.col("row").cast(pl.Int64), "cause").rows()
    assert [r for r, _ in mine] == [6] and there.rejects.select(pl.col("row").cast(pl.Int64), "cause").rows() == mine


def test_spark_names_the_files_of_rejected_rows_like_local(tmp_path, spark):
    """Rejected rows name their file as the local engine does (its path, not Spark's
    ``file:///…`` URI with a space as ``%20``): a CSV whose name has a space and a ``%``, and an
    NDJSON file with a blank line (its rows still numbered by their line; test_spark_engine_matches_local:
    a Parquet file); a ``file:`` URI input is named by its path."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.spark import analyze_spark

    csv = tmp_path / "eu 50%.csv"
    csv.write_text("timestamp,session_id,event,cart_value\n2026-10-01T10:00:00Z,a,add_to_cart,5\n"
                   "yesterday,a,begin_checkout,5\n2026-10-01T10:02:00Z,b,add_to_cart,-5\n")
    nd = tmp_path / "more.ndjson"
    row = {"timestamp": "2026-10-01T11:00:00Z", "session_id": "c", "event": "add_to_cart", "cart_value": "3"}
    nd.write_text(json.dumps(row) + "\n\n" + json.dumps({**row, "timestamp": "soon"}) + "\n")
    specs = [str(csv), str(nd)]
    here = analyze(specs).rejects.select("file", "row", "cause")
    there = analyze_spark(specs, Config(), spark=spark).rejects.select("file", "row", "cause")
    assert there.sort("file", "row").rows() == here.sort("file", "row").rows()
    assert set(here["file"]) == {str(csv), str(nd)} and (str(nd), 3, "bad_timestamp") in here.rows()
    uri = analyze_spark(f"file://{csv}", Config(), spark=spark).rejects   # (Spark takes it as written: no %20)
    assert sorted(uri["file"]) == [str(csv), str(csv)]


@pytest.mark.parametrize("as_folder", [False, True])
def test_spark_reads_files_named_with_glob_characters_as_those_files(tmp_path, spark, as_folder):
    """Files whose names hold glob characters (``[ ] * ? { }``), found by a glob or a folder and
    read by Spark one dialect group at a time, are read as the files they are, not as patterns
    (``semi{a,b}.csv`` matched nothing: the run failed; ``events[1].csv`` matches only
    ``events1.csv``), each in its own dialect, and their rejected rows name them as the local
    engine does. (The local engine itself reads ``events[1].csv`` as that pattern: polars globs
    the paths it scans, so its report is not the reference here.)"""
    from funnel.config import Config
    from funnel.spark import analyze_spark

    folder = tmp_path / "in"
    folder.mkdir()
    names = {"events[1].csv": ",", "events1.csv": ",", "semi{a,b}.csv": ";", "odd*?.csv": "\t"}
    for hour, (name, sep) in enumerate(names.items(), 10):
        value = "12,5" if sep == ";" else "12.5"
        rows = [(f"2026-10-01T{hour}:00:00Z", name, "add_to_cart", value),
                (f"2026-10-01T{hour}:01:00Z", name, "begin_checkout", value), ("later", name, "purchase", "1")]
        (folder / name).write_text(sep.join(["timestamp", "session_id", "event", "cart_value"]) + "\n"
                                   + "".join(sep.join(r) + "\n" for r in rows))
    there = analyze_spark(str(folder) if as_folder else str(folder / "*.csv"), Config(), spark=spark)
    got = there.report.to_dict()
    assert got["input"]["rows_read"] == 12 and got["input"]["sessions"] == 4
    assert sorted(there.carts.select("session_id", "cart_value").rows()) == [(n, 12.5) for n in sorted(names)]
    assert sorted(there.rejects.select("file", "row", "cause").rows()) == \
        [(str(folder / n), 3, "bad_timestamp") for n in sorted(names)]


def test_spark_driver_sniffs_each_local_file_once(tmp_path, spark, monkeypatch):
    """The driver opens each local file once for how it is read (``sources.sniff_format``): the
    CSV dialect Spark reads it in and the decimal mark of its text numbers come from that one
    sniff (before, the decimal marks sniffed every file again)."""
    from collections import Counter

    from funnel.api import analyze
    from funnel.config import Config
    from funnel.io import load, sources
    from funnel.spark import analyze_spark

    (tmp_path / "eu.csv").write_text("timestamp;session_id;event;cart_value\n2026-10-01T10:00:00Z;e1;add_to_cart;12,50\n"
                                     "2026-10-01T10:01:00Z;e2;add_to_cart;1.234\n")
    (tmp_path / "us.csv").write_text("timestamp,session_id,event,cart_value\n2026-10-01T10:00:00Z,u1,add_to_cart,12.50\n"
                                     "2026-10-01T10:01:00Z,u2,add_to_cart,\"1,234\"\n")
    spec = str(tmp_path / "*.csv")
    seen: Counter = Counter()
    sniff = sources.sniff_format

    def counted(path):
        seen[str(path)] += 1
        return sniff(path)

    monkeypatch.setattr(sources, "sniff_format", counted)
    monkeypatch.setattr(load, "sniff_format", counted)
    there = analyze_spark(spec, Config(), spark=spark)
    assert seen == Counter({str(tmp_path / "eu.csv"): 1, str(tmp_path / "us.csv"): 1})
    monkeypatch.undo()
    here = analyze(spec)
    assert sorted(there.carts.select("session_id", "cart_value").rows()) == \
        sorted(here.carts.select("session_id", "cart_value").rows()) == [("e1", 12.5), ("e2", 1234.0), ("u1", 12.5),
                                                                         ("u2", 1234.0)]


@pytest.mark.parametrize("dirty", [True, False])
def test_spark_writes_rejected_rows_in_the_local_layout(tmp_path, spark, dirty):
    """QA: with no rejected row Spark's --rejects held only file,row,cause,detail (the local
    engine 17 columns). Every route writes one layout (api.reject_table): the same columns, in
    the same order, and the same rows, with or without rejected rows; a typed NaN cart value is
    missing (not a bad_value) on Spark too."""
    from funnel.api import analyze
    from funnel.config import Config
    from funnel.io.sample import generate_sample
    from funnel.spark import analyze_spark

    ev = generate_sample(n_sessions=60, seed=5).events
    if ev["timestamp"].dtype == pl.String:
        ev = ev.with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC"))
    ev = ev.with_columns(pl.lit("mobile").alias("device"))
    if dirty:
        bad = ev.head(3).with_columns(pl.Series("cart_value", [-5.0, float("nan"), float("inf")]),
                                      pl.Series("event", [None, "add_to_cart", "add_to_cart"], dtype=pl.String))
        ev = pl.concat([ev, bad, ev.slice(5, 1)])
    p = tmp_path / "events.parquet"
    ev.write_parquet(p)
    here, there = tmp_path / "here.csv", tmp_path / "there.csv"
    analyze(str(p), rejects_to=str(here))
    analyze_spark(str(p), Config(), spark=spark).rejects.write_csv(there)
    local, remote = pl.read_csv(here), pl.read_csv(there)
    assert remote.columns == local.columns and local.columns[-2:] == ["device", "extra_fields"]
    assert remote.sort("row").equals(local.sort("row"))
    assert sorted(local["cause"]) == (["bad_value", "duplicate", "missing_event"] if dirty else [])


def test_spark_with_stderr_not_a_terminal_shows_no_progress_bars(tmp_path):
    """-q, stderr to a file (QA: Spark's '[Stage N:>…]' progress bars filled it): the session
    funnel creates shows no progress bars and logs errors only after it starts. (A process of
    its own: the bars are decided when Spark starts.)"""
    from conftest import SAMPLE_EVENTS, run_cli

    out = tmp_path / "r.json"
    res = run_cli("analyze", str(SAMPLE_EVENTS), "--funnel-only", "--engine", "spark", "--json", str(out), "-q")
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["funnel"]["steps"][0]["sessions"] > 0
    assert "[Stage" not in res.stderr
