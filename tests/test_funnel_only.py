"""Funnel-only runs (``--funnel-only``, or ``--steps`` with only ``--json``) give the same funnel
and abandonment counts as the full analysis, and the input projection changes no result."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funnel.api import analyze
from funnel.config import parse_steps
from funnel.errors import InputError
from funnel.io.sample import generate_sample


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    ev = generate_sample(n_sessions=800, seed=5).events
    path = tmp_path_factory.mktemp("fo") / "events.parquet"
    ev = ev.with_columns(pl.lit("unused").alias("user_agent"))
    ev.write_parquet(path)
    return str(path)


def _abandonment_counts(ab: dict) -> dict:
    keep = ("carts", "abandoned", "rate", "value_at_stake", "recovered", "currency")
    out = {k: ab[k] for k in keep}
    out["by_step"] = [(s["step"], s["abandoned"], s["value"]) for s in ab["by_step"]]
    return out


def test_funnel_only_matches_full_analysis(log):
    full = analyze(log).report.to_dict()
    only = analyze(log, funnel_only=True).report.to_dict()
    assert only["funnel"] == full["funnel"]
    assert _abandonment_counts(only["abandonment"]) == _abandonment_counts(full["abandonment"])
    assert only["input"] == full["input"]
    assert only["paths"] is None and only["recommendations"] == []


def test_unused_columns_do_not_change_duplicates(tmp_path):
    """Rows equal in every analysed column but different elsewhere are not duplicates."""
    rows = {"timestamp": ["2026-01-01T10:00:00Z"] * 2 + ["2026-01-01T10:05:00Z"],
            "event": ["add_to_cart", "add_to_cart", "purchase"], "session_id": ["s1"] * 3,
            "note": ["a", "b", "c"]}
    p = tmp_path / "e.csv"
    pl.DataFrame(rows).write_csv(p)
    rep = analyze(str(p), steps=parse_steps("add_to_cart,purchase"), funnel_only=True).report
    assert rep.input.rows_rejected == 0 and rep.input.events == 3
    pl.DataFrame({**rows, "note": ["a", "a", "c"]}).write_csv(p)
    rep = analyze(str(p), steps=parse_steps("add_to_cart,purchase"), funnel_only=True).report
    assert rep.input.rows_rejected == 1


DIRTY = (
    "timestamp,session_id,user_id,event,cart_value,url\n"
    "2026-10-01T10:00:00Z,s1,u1,add_to_cart,50,/p\n"
    "2026-10-01T10:00:00Z,s1,u1,add_to_cart,50,/p\n"          # exact duplicate
    "2026-10-01T10:01:00Z,s1,u1,begin_checkout,50,/c\n"
    "nonsense,s1,u1,add_shipping_info,50,/c\n"                 # bad timestamp
    "2026-10-01T10:02:00Z,,,add_shipping_info,50,/c\n"         # missing id
    "2026-10-01T10:03:00Z,s2,u2,add_to_cart,-4,/p\n"           # bad value
    "1759312800,s3,u2,add_to_cart,20,/p\n"                     # epoch seconds
    "1759312900000,s3,u2,purchase,20,/done\n"                  # epoch ms
    "2026-10-01T10:05:00Z,s4,,add_to_cart,10,/p\n"
    "2026-10-01T10:05:00Z,s4,,add_to_cart,10,/p2\n"            # same analysed values, other url
)


def test_streaming_path_matches_full_on_dirty_input(tmp_path):
    from funnel import streaming
    from funnel.config import Config

    p = tmp_path / "dirty.csv"
    p.write_text(DIRTY)
    fast = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None)
    assert fast is not None, "this input needs no row-level fallback"
    full = analyze(str(p))
    f, g = fast.report.to_dict(), full.report.to_dict()
    assert f["input"] == g["input"]
    assert f["input"]["rows_read"] == 10 and f["input"]["rows_rejected"] == 4
    assert {c["key"]: c["count"] for c in f["input"]["rejected"]} == {
        "bad_timestamp": 1, "bad_value": 1, "duplicate": 1, "missing_id": 1}
    assert f["funnel"] == g["funnel"]
    assert _abandonment_counts(f["abandonment"]) == _abandonment_counts(g["abandonment"])
    assert sorted(fast.rejects["row"].to_list()) == sorted(full.rejects["row"].to_list()) == [2, 4, 5, 6]
    # without tables the rejected rows are counted per shard and dropped: same report, no table
    for k in (1, 2):
        lean = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=k, tables=False)
        got = {key: v for key, v in lean.report.to_dict().items() if key != "generated_at"}
        assert got == {key: v for key, v in f.items() if key != "generated_at"} and lean.rejects.is_empty()
    # --rejects FILE: each shard's rejected rows sorted on disk, merged into the file
    for k in (1, 2, 3):
        out = tmp_path / f"rejects-{k}.csv"
        sinks = {"rejects": out}
        streamed = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=k, tables=False,
                                                 sinks=sinks)
        assert streamed.rejects.is_empty() and streamed.report.input.rows_rejected == 4 and not sinks
        assert pl.read_csv(out).equals(pl.read_csv(tmp_path / "rejects-1.csv")) and pl.read_csv(out)["row"].to_list() == [2, 4, 5, 6]


def test_streaming_path_falls_back_when_rows_need_sessions(tmp_path):
    from funnel import streaming
    from funnel.config import Config

    p = tmp_path / "nosession.csv"
    p.write_text("timestamp,user_id,event\n2026-10-01T10:00:00Z,u1,add_to_cart\n2026-10-01T10:01:00Z,u1,purchase\n")
    assert streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None) is None
    rep = analyze(str(p), funnel_only=True).report       # the row-level path answers instead
    assert [s.sessions for s in rep.funnel.steps][:1] == [1] and rep.input.sessionized


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_sharded_reading_equals_one_pass(log, tmp_path, shards, monkeypatch):
    """Reading the input in user shards (large logs) gives exactly the one-pass result."""
    from funnel import streaming

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    from funnel.config import Config

    one = streaming.analyze_funnel_only([log], Config(), lambda _m: None, shards=1)
    many = streaming.analyze_funnel_only([log], Config(), lambda _m: None, shards=shards)
    assert many.report.to_dict() == one.report.to_dict()
    p = tmp_path / "dirty.csv"
    p.write_text(DIRTY)
    one = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=1)
    many = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=shards)
    assert many.report.to_dict() == one.report.to_dict()
    assert sorted(many.rejects["row"].to_list()) == sorted(one.rejects["row"].to_list())


def test_shard_count_from_size(log):
    from funnel import streaming
    from funnel.config import Config
    from funnel.io.load import load_events

    loaded = load_events([log], Config())
    assert streaming.shard_count(loaded) == 1
    assert streaming.shard_count(loaded, rows_per_shard=1000) > 1


def test_csv_rows_are_counted_not_estimated(tmp_path):
    """A text file's rows (for the shard count, so for the memory a shard takes) are counted
    (CSV: the records the quoting check reads; NDJSON: its lines), not the file size / 100
    bytes: a narrow log of 30-byte rows was taken for a third of its rows, and its shards for
    three times the size they should be."""
    import gzip

    from funnel import streaming
    from funnel.config import Config
    from funnel.io.load import load_events

    body = "".join(f"2026-10-01T10:00:{i % 60:02d}Z,s{i},e\n" for i in range(3000))
    (tmp_path / "narrow.csv").write_text("ts,session_id,event\n" + body)
    (tmp_path / "narrow.csv.gz").write_bytes(gzip.compress(("ts,session_id,event\n" + body).encode()))
    (tmp_path / "blank.csv").write_text("ts,session_id,event\n\n" + body)   # a blank line is a row read
    lines = "".join(f'{{"ts":"2026-10-01T10:00:00Z","session_id":"s{i}","event":"e"}}\n' for i in range(3000))
    (tmp_path / "log.ndjson.gz").write_bytes(gzip.compress(lines.encode()))   # 60-byte lines, 5x compressed
    for name, rows in (("narrow.csv", 3000), ("narrow.csv.gz", 3000), ("blank.csv", 3001), ("log.ndjson.gz", 3000)):
        loaded = load_events([str(tmp_path / name)], Config())
        assert loaded.rows == rows == loaded.lf.select(pl.len()).collect().item(), name
        assert streaming.shard_count(loaded, rows_per_shard=1000) == -(-rows // 1000), name


# --- the clean-input fast path (streaming._clean_shard) ------------------------------------

def _typed_log() -> pl.DataFrame:
    """A typed (Parquet-like) log with nothing to normalise: several users, repeat sessions,
    sessions without steps, ties in time, a currency, cart values on some events only."""
    ev = generate_sample(n_sessions=300, seed=9).events
    ts = ev["timestamp"]
    if ts.dtype == pl.String:
        ev = ev.with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC"))
    return ev.unique(subset=["session_id", "timestamp", "event"], keep="first", maintain_order=True)


def _reports(path: str, monkeypatch, cfg=None) -> tuple[dict | None, dict]:
    """(fast-path report or None when it declined, row-level streaming report)."""
    from funnel import streaming
    from funnel.config import Config

    cfg = cfg or Config()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    from funnel.io.load import load_events

    loaded = load_events([path], cfg)
    took = not isinstance(streaming._clean_shard(streaming._row_level_rows(loaded, cfg), loaded, cfg), str)
    fast = analyze(path, cfg, funnel_only=True)
    with monkeypatch.context() as m:
        m.setattr(streaming, "_clean_shard", lambda *_a: None)
        slow = analyze(path, cfg, funnel_only=True)
    return (fast.report.to_dict() if took else None), slow.report.to_dict()


def test_clean_typed_input_takes_the_fast_path_with_equal_numbers(tmp_path, monkeypatch):
    p = tmp_path / "clean.parquet"
    _typed_log().write_parquet(p)
    fast, slow = _reports(str(p), monkeypatch)
    assert fast is not None, "a clean typed log should not need normalising"
    assert fast == slow and fast["abandonment"]["recovered"] > 0
    full = analyze(str(p)).report.to_dict()
    assert fast["funnel"] == full["funnel"] and fast["input"] == full["input"]
    assert _abandonment_counts(fast["abandonment"]) == _abandonment_counts(full["abandonment"])


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_epoch_number_timestamps_take_the_clean_route(tmp_path, monkeypatch, unit):
    """Exports with the time as an epoch number (seconds, ms or µs, as BigQuery and many
    warehouses write it) are typed too: the clean route reads the time as the normaliser
    parses it, with the row-level route's numbers; an epoch of 0 is rejected alike."""
    p = tmp_path / f"epoch_{unit}.parquet"
    log = _typed_log()
    scale = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    epoch = pl.col("timestamp").dt.epoch("us") // scale
    log = log.with_columns((epoch.cast(pl.Float64) if unit == "s" else epoch).alias("timestamp"))
    pl.concat([log, log.head(1).with_columns(pl.lit(0).cast(log["timestamp"].dtype).alias("timestamp"))]).write_parquet(p)
    fast, slow = _reports(str(p), monkeypatch)
    assert fast is not None and fast == slow
    assert fast["input"]["rejected"] == [{"key": "timestamp_out_of_range", "count": 1}]
    assert fast["funnel"] == analyze(str(p)).report.to_dict()["funnel"]


@pytest.mark.parametrize("level", ["session", "user"])
def test_integer_ids_take_the_clean_route(tmp_path, monkeypatch, level):
    """Warehouse exports often hold the user and session ids as integers: the clean route reads
    them as text, as the normaliser does, with the row-level route's numbers, in one shard or
    several (the shard key and the owner search read them as text too)."""
    from funnel import streaming
    from funnel.config import Config

    p = tmp_path / "int_ids.parquet"
    log = _typed_log().with_columns(pl.col(c).str.replace_all(r"\D", "").cast(pl.Int64) for c in ("session_id", "user_id"))
    log = pl.concat([log, log.head(1)])   # and a duplicate
    log.write_parquet(p)
    cfg = Config().with_overrides(level=level)
    fast, slow = _reports(str(p), monkeypatch, cfg)
    assert fast is not None and fast == slow and fast["input"]["rows_rejected"] == 1
    many = streaming.analyze_funnel_only([str(p)], cfg, lambda _m: None, shards=3)
    assert many.report.to_dict() == fast
    assert fast["funnel"] == analyze(str(p), cfg).report.to_dict()["funnel"]


@pytest.mark.parametrize("column", ["user_id", "currency", "event"])
def test_a_text_column_of_nulls_takes_the_clean_route(tmp_path, monkeypatch, column):
    """A Parquet export whose user id (or currency) column holds no value at all is stored
    with the null type: the clean route crashed on it ('expected String type, got: null';
    found by a sweep of Parquet column types). It is read as an empty text column, with the
    row-level route's numbers (an all-null event column rejects every row, on both routes)."""
    p = tmp_path / "nulls.parquet"
    _typed_log().with_columns(pl.lit(None, pl.Null).alias(column)).write_parquet(p)
    assert pl.read_parquet_schema(p)[column] == pl.Null
    if column == "event":
        with pytest.raises(InputError, match="no usable rows"):
            analyze(str(p), funnel_only=True)
        return
    fast, slow = _reports(str(p), monkeypatch)
    assert fast is not None and fast == slow
    assert fast["funnel"] == analyze(str(p)).report.to_dict()["funnel"]


def test_fast_path_equals_full_analysis_on_user_level_and_shards(tmp_path, monkeypatch):
    from funnel import streaming
    from funnel.config import Config

    p = tmp_path / "clean.parquet"
    _typed_log().write_parquet(p)
    cfg = Config().with_overrides(level="user")
    fast, slow = _reports(str(p), monkeypatch, cfg)
    assert fast is not None and fast == slow
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    one = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=1)
    many = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=3)
    assert many.report.to_dict() == one.report.to_dict()


def _dirt():
    nat = None
    return {
        "duplicate row": lambda df: pl.concat([df, df.head(1)]),
        "null timestamp": lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(nat).otherwise(pl.col("timestamp")).alias("timestamp")),
        "timestamp before 1990": lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(pl.datetime(1970, 1, 2, time_zone="UTC"))
            .otherwise(pl.col("timestamp")).alias("timestamp")),
        "session id with outer blank": lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(pl.col("session_id") + " ")
            .otherwise(pl.col("session_id")).alias("session_id")),
        "control character in event": lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("add_to_cart\x1b[31m"))
            .otherwise(pl.col("event")).alias("event")),
        "empty user id": lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("")).otherwise(pl.col("user_id")).alias("user_id")),
        "negative cart value": lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(-5.0).otherwise(pl.col("cart_value")).alias("cart_value")),
        "infinite cart value": lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(float("inf")).otherwise(pl.col("cart_value")).alias("cart_value")),
        "row without a session id": lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("session_id")).alias("session_id")),
        "timestamps as text": lambda df: df.with_columns(pl.col("timestamp").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ")),
    }


SET_ASIDE = ("duplicate row", "null timestamp", "timestamp before 1990", "negative cart value", "infinite cart value")


@pytest.mark.parametrize("kind", [k for k in _dirt() if k not in SET_ASIDE])
def test_fast_path_declines_input_that_needs_normalising(tmp_path, monkeypatch, kind):
    """Any value the row-level rules would change (or a row to sessionize, or text columns)
    sends the shard to the exact path, and the answer is the same as the full analysis's."""
    p = tmp_path / "dirty.parquet"
    _dirt()[kind](_typed_log()).write_parquet(p)
    fast, slow = _reports(str(p), monkeypatch)
    assert fast is None
    full = analyze(str(p)).report.to_dict()
    assert slow["funnel"] == full["funnel"] and slow["input"] == full["input"]


def _all_dirt(df: pl.DataFrame) -> pl.DataFrame:
    """Every kind of row the clean route sets aside at once, several times over: rows meeting
    each reject rule, a row repeated three times, a repeated rejected row (rejected twice for
    its rule, not as a duplicate), an empty row, and rows alike in (session, time, event) but
    not in every column (both count)."""
    out = df
    for kind in SET_ASIDE:
        out = _dirt()[kind](out) if kind != "duplicate row" else out
    t = out["timestamp"]
    rejected = out.head(2).with_columns(pl.Series("cart_value", [-1.0, -2.0]))
    twin = out.slice(20, 1).with_columns(pl.lit("/elsewhere").alias("page_url") if "page_url" in out.columns
                                         else pl.lit(1.0).alias("load_ms"))
    empty = pl.DataFrame({c: [None] for c in out.columns}, schema=out.schema)
    return pl.concat([out, out.slice(10, 1), out.slice(10, 1), rejected, rejected, twin, empty,
                      out.slice(11, 1)]).with_columns(pl.col("timestamp").cast(t.dtype))


@pytest.mark.parametrize("kind", [*SET_ASIDE, "all at once"])
def test_fast_path_sets_aside_rejected_rows_and_duplicates(tmp_path, monkeypatch, kind):
    """Rows meeting a reject rule and exact duplicates, the usual dirt of real exports, stay on
    the clean route (it used to hand the whole shard to the row-level rules: at 19.4M events with
    200 such rows, 17-19 s and 5.9 GB instead of ~6 s and 2.9 GB): only those rows are read
    again and normalised. Report and rejected rows (file, row, cause, detail, values) equal
    the row-level route's, and the full analysis's."""
    from funnel import streaming

    p = tmp_path / "dirty.parquet"
    (_all_dirt if kind == "all at once" else _dirt()[kind])(_typed_log()).write_parquet(p)
    fast, slow = _reports(str(p), monkeypatch)
    assert fast is not None, "the clean route should set these rows aside itself"
    assert fast == slow and fast["input"]["rows_rejected"] > 0
    full = analyze(str(p)).report.to_dict()
    assert fast["funnel"] == full["funnel"] and fast["input"] == full["input"]
    here = analyze(str(p), funnel_only=True).rejects
    with monkeypatch.context() as m:
        m.setattr(streaming, "_clean_shard", lambda *_a: None)
        there = analyze(str(p), funnel_only=True).rejects
    assert here.equals(there) and here.height == fast["input"]["rows_rejected"]
    if kind == "all at once":
        causes = {c["key"]: c["count"] for c in fast["input"]["rejected"]}
        # (the rule kinds all dirty row 3: its timestamp is out of range first; the two
        # rejected rows twice each are bad values, not duplicates)
        assert causes == {"duplicate": 3, "bad_value": 4, "empty_row": 1, "timestamp_out_of_range": 1}, causes


def test_a_large_shard_that_needs_the_row_level_rules_sends_the_input_to_its_shards(tmp_path, monkeypatch):
    """A clean-route shard larger than the row-level route's shards (SHARD_ROWS) that needs the
    row-level rules (here an event to clean) is not run through them whole, which would hold
    twice the memory: the whole input takes the row-level route, in its own shard count."""
    from funnel import streaming
    from funnel.config import Config
    from funnel.io.load import load_events

    p = tmp_path / "dirty.parquet"
    log = _dirt()["control character in event"](_typed_log())
    log.write_parquet(p)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    one = analyze(str(p), funnel_only=True, shards=1)
    sizes = []
    real = streaming._shard
    monkeypatch.setattr(streaming, "_shard", lambda rows, *a: sizes.append(rows.select(pl.len()).collect().item())
                        or real(rows, *a))
    monkeypatch.setattr(streaming, "SHARD_ROWS", log.height // 3)
    again = analyze(str(p), funnel_only=True)
    assert again.report.to_dict() == one.report.to_dict()
    assert len(sizes) == streaming.shard_count(load_events([str(p)], Config())) >= 3, sizes
    assert sum(sizes) == log.height and max(sizes) < log.height // 2, sizes


def test_rows_alike_in_entity_time_and_event_but_not_whole_are_not_duplicates(tmp_path, monkeypatch):
    """The fast path's cheap key repeats, the whole rows differ (another page): it still
    counts, with the row-level path's numbers (nothing rejected)."""
    p = tmp_path / "twins.parquet"
    log = _typed_log()
    pl.concat([log, log.head(1).with_columns(pl.lit("/elsewhere").alias("page_url"))]).write_parquet(p)
    fast, slow = _reports(str(p), monkeypatch)
    assert fast is not None and fast == slow and fast["input"]["rows_rejected"] == 0


def test_ids_sharing_a_hash_key_decline_the_clean_route(tmp_path, monkeypatch):
    """The clean route keys entities by a 64-bit hash of the id. Forced collisions (a key of
    two values) are caught by the second hash: the shard takes the row-level rules, which key
    by the id itself, and the numbers are the exact ones."""
    from funnel import streaming

    p = tmp_path / "clean.parquet"
    _typed_log().write_parquet(p)
    real = streaming.entity_keys
    monkeypatch.setattr(streaming, "entity_keys", lambda ids: (real(ids)[0] % 2, real(ids)[1]))
    fast, slow = _reports(str(p), monkeypatch)
    assert fast is None, "colliding keys must not reach the fast path"
    monkeypatch.setattr(streaming, "entity_keys", real)
    fast, exact = _reports(str(p), monkeypatch)
    assert fast == slow == exact


def test_a_shard_with_rejected_rows_stays_on_the_clean_route(tmp_path, monkeypatch):
    """Clean ids but some bad rows, in user shards: every shard sets its own aside on the clean
    route, none takes the row-level rules; the result is the one-pass row-level result."""
    from funnel import streaming
    from funnel.config import Config

    p = tmp_path / "some_bad.parquet"
    log = _typed_log()
    bad = log.head(2).with_columns(pl.Series("cart_value", [-1.0, 5.0]),
                                   pl.Series("event", [log["event"][0], None], dtype=pl.String))
    pl.concat([log, log.head(1), bad]).write_parquet(p)    # a duplicate, a negative value, no event
    calls = []
    real = streaming._shard
    monkeypatch.setattr(streaming, "_shard", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    many = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=4)
    assert not calls, "the clean route sets the bad rows aside itself"
    with monkeypatch.context() as m:
        m.setattr(streaming, "_clean_shard", lambda *_a: None)
        one = analyze(str(p), funnel_only=True)
    assert many.report.to_dict() == one.report.to_dict() and many.rejects.equals(one.rejects)
    assert many.report.input.rows_rejected == 3
    assert sorted(many.rejects["cause"].to_list()) == ["bad_value", "duplicate", "missing_event"]


def test_text_input_is_split_once_not_first_for_the_clean_route(tmp_path):
    """Whether the clean route applies is decided from the column types before any split, so a
    CSV log in several shards is split once (by the row-level route) and gives the one-pass result."""
    from funnel import streaming
    from funnel.config import Config

    p = tmp_path / "log.csv"
    p.write_text(DIRTY)
    said = []
    many = streaming.analyze_funnel_only([str(p)], Config(), said.append, shards=3)
    one = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=1)
    assert sum(m.startswith("splitting the input") for m in said) == 1
    assert many.report.funnel == one.report.funnel and many.report.input == one.report.input


def test_more_shards_than_users_on_the_clean_route(tmp_path, monkeypatch):
    """Filtered-scan shards that hold no row add nothing: 64 shards of a small log give the
    one-pass report."""
    from funnel import streaming
    from funnel.config import Config

    src = tmp_path / "log.parquet"
    log = _typed_log()
    log.filter(pl.col("user_id").is_in(log["user_id"].unique().sort().head(8).implode())).write_parquet(src)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    assert pl.read_parquet(src)["user_id"].n_unique() == 8
    one = streaming.analyze_funnel_only([str(src)], Config(), lambda _m: None, shards=1)
    many = streaming.analyze_funnel_only([str(src)], Config(), lambda _m: None, shards=64)
    assert many is not None and many.report.to_dict() == one.report.to_dict()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.integers(0, 2097), st.sampled_from(["repeat", "bad value", "no time", "old time",
                                                                       "no event", "repeat bad"])),
                      min_size=1, max_size=12),
       shards=st.sampled_from([1, 3]))
def test_any_mix_of_rejected_rows_and_duplicates_equals_the_row_level_route(tmp_path, monkeypatch, picks, shards):
    """Property: whatever rows are repeated or broken (and repeated after breaking), in one
    shard or several, the clean route's report and rejected rows equal the row-level route's."""
    from funnel import streaming
    from funnel.config import Config

    log = _typed_log()
    extra, broken = [], {}
    for i, kind in picks:
        row = log.slice(i, 1)
        if kind == "repeat":
            extra.append(row)
            continue
        row = row.with_columns(**{
            "bad value": {"cart_value": pl.lit(-3.0)}, "repeat bad": {"cart_value": pl.lit(-4.0)},
            "no time": {"timestamp": pl.lit(None, log["timestamp"].dtype)},
            "old time": {"timestamp": pl.lit(datetime(1980, 1, 1, tzinfo=UTC)).cast(log["timestamp"].dtype)},
            "no event": {"event": pl.lit(None, pl.String)}}[kind])
        broken[i] = row
        if kind == "repeat bad":
            extra.append(row)
    rows = [broken.get(i, log.slice(i, 1)) for i in range(log.height)]
    p = tmp_path / f"mix-{abs(hash(tuple(picks)))}-{shards}.parquet"
    pl.concat([*rows, *extra]).write_parquet(p)
    took = []
    real = streaming._shard
    with monkeypatch.context() as m:   # (hypothesis runs every example in one test call)
        m.setenv("SOURCE_DATE_EPOCH", "1790000000")
        m.setattr(streaming, "_shard", lambda *a: took.append(1) or real(*a))
        fast = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=shards)
        assert not took, "the clean route should set these rows aside itself"
        m.setattr(streaming, "_clean_shard", lambda *_a: None)
        slow = streaming.analyze_funnel_only([str(p)], Config(), lambda _m: None, shards=shards)
    assert fast.report.to_dict() == slow.report.to_dict()
    assert fast.rejects.equals(slow.rejects)


def _nan_routes(path: str, monkeypatch) -> dict:
    """(rows rejected, sessions per step, rejected rows' causes) of ``path`` on every local
    route: one pass, user shards, funnel only on the clean and on the row-level route."""
    from funnel import streaming

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    got = lambda a: (a.report.input.rows_rejected, [s["sessions"] for s in a.report.to_dict()["funnel"]["steps"]],
                     sorted(a.rejects["cause"].to_list()) if a.rejects.height else [])
    out = {"one pass": got(analyze(path)), "shards": got(analyze(path, shards=3)),
           "funnel only": got(analyze(path, funnel_only=True))}
    with monkeypatch.context() as m:
        m.setattr(streaming, "_clean_shard", lambda *_a: None)
        out["funnel only, row level"] = got(analyze(path, funnel_only=True))
    return out


def test_a_typed_nan_number_is_missing_like_the_text_nan_on_every_route(tmp_path, monkeypatch):
    """QA: a cart value NaN in Parquet rejected its row (bad_value: the cart was gone) while the
    text NaN of a CSV reads as missing. Polars and Spark write a missing float as NaN: it is a
    missing number on every route; an infinite one stays a bad value."""
    csv = tmp_path / "nan.csv"
    csv.write_text("timestamp,session_id,event,cart_value,load_ms\n"
                   "2026-10-01T10:00:00Z,s1,add_to_cart,NaN,NaN\n"
                   "2026-10-01T10:01:00Z,s1,begin_checkout,,\n"
                   "2026-10-01T10:02:00Z,s2,add_to_cart,5,\n"
                   "2026-10-01T10:03:00Z,s2,purchase,10,3\n")
    df = pl.read_csv(csv).with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC"),
                                       pl.col("cart_value", "load_ms").cast(pl.Float64))
    assert df["cart_value"].is_nan().sum() == 1
    typed_ = tmp_path / "nan.parquet"
    df.write_parquet(typed_)
    want = (0, [2, 1, 0, 0, 0], [])
    for path in (csv, typed_):
        got = _nan_routes(str(path), monkeypatch)
        assert got == dict.fromkeys(got, want), (path.name, got)
    carts = analyze(str(typed_)).carts
    assert carts.height == 2 and carts["cart_value"].is_nan().sum() == 0
    inf = tmp_path / "inf.parquet"
    df.with_columns(pl.Series("cart_value", [float("inf"), None, 5.0, 10.0])).write_parquet(inf)
    got = _nan_routes(str(inf), monkeypatch)
    assert got == dict.fromkeys(got, (1, [1, 0, 0, 0, 0], ["bad_value"])), got


def _rejects_of_every_route(path: str, tmp_path, monkeypatch) -> dict[str, str]:
    """The ``--rejects`` file (CSV text) of ``path`` on every local route: one pass, user shards
    (streamed to the file), funnel only on the clean and row-level routes, in one pass and in
    user shards (streamed)."""
    from funnel import streaming

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    out = {}

    def run(name: str, **kw) -> None:
        f = tmp_path / f"rej-{len(out)}.csv"
        analyze(path, rejects_to=str(f), **kw)
        out[name] = f.read_text()

    run("one pass")
    run("shards", shards=3)
    run("funnel only", funnel_only=True)
    run("funnel only, shards", funnel_only=True, shards=3)
    with monkeypatch.context() as m:
        m.setattr(streaming, "_clean_shard", lambda *_a: None)
        run("funnel only, row level", funnel_only=True)
        run("funnel only, row level, shards", funnel_only=True, shards=3)
    return out


HEAD = ("file,row,cause,detail,ts,event,session_id,user_id,url,cart_value,currency,shipping_cost,"
        "payment_method,error_type,checkout_step,load_ms")


@pytest.mark.parametrize("kind", ["typed parquet", "csv", "clean parquet"])
def test_rejected_rows_have_one_layout_on_every_route(tmp_path, monkeypatch, kind):
    """QA: --rejects had a layout per route: the funnel-only routes leaked the internal _dup_key,
    left url, payment method and error type empty (the full route fills them), in another
    column order; with no rejected row the header was 17, 10 or 4 columns by route. Now every
    route writes the same file: the canonical columns in one order, then the input's segment
    columns (device), then extra_fields; no internal column."""
    df = _all_dirt(_typed_log()).with_columns(
        pl.when(pl.col("timestamp").is_null()).then(None)   # (the empty row stays empty)
        .when(pl.int_range(pl.len()) % 7 == 0).then(pl.lit("mobile")).otherwise(pl.lit("desktop")).alias("device"))
    if kind == "clean parquet":
        df = _typed_log()
    p = tmp_path / ("dirty.csv" if kind == "csv" else "dirty.parquet")
    if kind == "csv":
        df.with_columns(pl.col("timestamp").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ")).write_csv(p)
    else:
        df.write_parquet(p)
    got = _rejects_of_every_route(str(p), tmp_path, monkeypatch)
    first = got["one pass"]
    for route, text in got.items():
        assert text == first, (route, [(a, b) for a, b in zip(first.splitlines(), text.splitlines()) if a != b][:3])
    lines = first.splitlines()
    assert lines[0] == HEAD + (",device,extra_fields" if kind != "clean parquet" else ",extra_fields")
    assert not [c for c in lines[0].split(",") if c.startswith("_")] and (len(lines) > 1) == (kind != "clean parquet")
    if kind != "clean parquet":   # the values the funnel-only routes do not read are there too
        rows = pl.read_csv(first.encode())
        assert rows["url"].null_count() < rows.height and rows["device"].null_count() < rows.height
