"""Readers: formats, compression, several files, globs, folders, hive partitions; timestamps."""

import gzip
from datetime import datetime, UTC

import polars as pl
import pytest

from funnel.api import prepare
from funnel.config import Config
from funnel.errors import InputError

ROWS = {
    "timestamp": ["2026-10-01T10:00:00Z", "2026-10-01T10:01:00Z", "2026-10-01T10:02:00Z"],
    "session_id": ["s1", "s1", "s2"],
    "user_id": ["u1", "u1", "u2"],
    "event": ["add_to_cart", "purchase", "add_to_cart"],
}


def _events(paths, **kw):
    prep = prepare([str(p) for p in paths], Config(**kw))
    return prep.events.collect().sort("_file", "_row")


def test_csv_tsv_ndjson_parquet_gz_zst(tmp_path):
    df = pl.DataFrame(ROWS)
    df.write_csv(tmp_path / "a.csv")
    df.write_csv(tmp_path / "b.tsv", separator="\t")
    df.write_ndjson(tmp_path / "c.ndjson")
    df.write_parquet(tmp_path / "d.parquet")
    (tmp_path / "e.csv.gz").write_bytes(gzip.compress((tmp_path / "a.csv").read_bytes()))
    import zstandard

    (tmp_path / "f.ndjson.zst").write_bytes(zstandard.ZstdCompressor().compress((tmp_path / "c.ndjson").read_bytes()))
    for name in ("a.csv", "b.tsv", "c.ndjson", "d.parquet", "e.csv.gz", "f.ndjson.zst"):
        ev = _events([tmp_path / name])
        assert ev.height == 3, name
        assert ev["ts"].to_list()[0] == datetime(2026, 10, 1, 10, tzinfo=UTC), name
        assert ev["event"].to_list() == ROWS["event"], name


def test_bug_a_file_named_with_glob_characters_was_read_as_a_pattern(tmp_path):
    """Regression: polars reads every path as a glob pattern, and so did the path resolver when
    the file existed — ``events[1].csv`` was read as ``events1.csv`` beside it, a different log,
    without a word. A named file is that file; its folder and a glob still find both."""
    d = tmp_path / "in [eu] *?"   # (the folder too)
    d.mkdir()
    for ext, write in (("csv", "write_csv"), ("ndjson", "write_ndjson"), ("parquet", "write_parquet")):
        named = lambda tag, ext=ext: pl.DataFrame(ROWS).with_columns(pl.col("session_id") + f"-{tag}-{ext}")
        getattr(named("one"), write)(d / f"events[1].{ext}")
        getattr(named("decoy").head(1), write)(d / f"events1.{ext}")
        ev = _events([d / f"events[1].{ext}"])
        assert ev.height == 3 and ev["session_id"].str.contains("-one-").all(), ext
    (d / "events[1].csv.gz").write_bytes(gzip.compress((d / "events[1].csv").read_bytes()))
    assert _events([d / "events[1].csv.gz"])["session_id"].to_list() == ["s1-one-csv", "s1-one-csv", "s2-one-csv"]
    assert _events([d]).height == 3 * 3 + 3   # (the .gz copy's rows are exact duplicates of the CSV's)
    import glob

    assert _events([glob.escape(str(d)) + "/events[[]1].*"]).height == 3 * 3   # (a pattern is still a pattern)


def test_folder_glob_and_hive(tmp_path):
    for day in ("2026-10-01", "2026-10-02"):
        d = tmp_path / "logs" / f"date={day}"
        d.mkdir(parents=True)
        pl.DataFrame(ROWS).with_columns(pl.col("session_id") + day).write_parquet(d / "part-0.parquet")
    assert _events([tmp_path / "logs"]).height == 6
    assert _events([str(tmp_path / "logs" / "*" / "*.parquet")]).height == 6
    assert _events([tmp_path / "logs" / "date=2026-10-01" / "part-0.parquet"]).height == 3


def test_timestamp_forms_and_timezone(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("ts,session_id,event\n"
                 "2026-10-01T12:00:00+02:00,s,a\n"   # offset
                 "2026-10-01 10:00:00,s,b\n"         # naive -> configured zone
                 "1759312800,s,c\n"                  # epoch seconds
                 "1759312800000,s,d\n"               # epoch ms
                 "1759312800000000,s,e\n"            # epoch us
                 "2026-10-01T10:00:00.5Z,s,f\n"
                 "2026-10-01,s,g\n"                  # a bare date: local midnight (was a bad timestamp)
                 "2026-10-01 10:00:00 -05,s,h\n")    # a bare hour offset after a time
    ev = _events([p], timezone="Europe/Helsinki")
    ts = dict(zip(ev["event"], ev["ts"], strict=True))
    assert ts["a"] == datetime(2026, 10, 1, 10, tzinfo=UTC)
    assert ts["b"] == datetime(2026, 10, 1, 7, tzinfo=UTC)  # Helsinki is UTC+3 in October
    assert ts["c"] == ts["d"] == ts["e"] == datetime(2025, 10, 1, 10, tzinfo=UTC)
    assert ts["f"].microsecond == 500_000
    assert ts["g"] == datetime(2026, 9, 30, 21, tzinfo=UTC) and ts["h"] == datetime(2026, 10, 1, 15, tzinfo=UTC)



def test_bug_local_times_the_clocks_skip_were_bad_timestamps(tmp_path, monkeypatch):
    """A local time in the hour the clocks skip (2026-03-29 03:30 in Helsinki) was rejected as
    'timestamp could not be parsed', though well-formed. It is read with the offset in force
    before the change (RFC 5545, Python, java.time, PostgreSQL): 03:30 EET, 01:30Z, the instant
    04:30 summer time is. A time the clocks repeat (2026-10-25 03:30) stays its first
    occurrence, summer time. In every spelling, in a Parquet datetime or date column (a date
    at a midnight the clocks skip, as in Santiago, failed the run), and on every route."""
    from datetime import date

    from funnel import streaming
    from funnel.api import analyze
    from funnel.config import parse_steps
    from funnel.io.load import load_events

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    t = lambda *a: datetime(*a, tzinfo=UTC)
    values = {"2026-03-29 03:30:00": t(2026, 3, 29, 1, 30), "2026-03-29T03:30:00.5": t(2026, 3, 29, 1, 30, 0, 500000),
              "2026-03-29T03:00": t(2026, 3, 29, 1), "2026-03-29 03:59:59": t(2026, 3, 29, 1, 59, 59),
              "2026-03-29 04:00:00": t(2026, 3, 29, 1), "2026-03-29 02:59:59": t(2026, 3, 29, 0, 59, 59),
              "2026-10-25 03:30:00": t(2026, 10, 25, 0, 30), "2026-10-25 04:30:00": t(2026, 10, 25, 2, 30)}
    p = tmp_path / "dst.csv"
    p.write_text("timestamp,session_id,event\n" + "".join(f"{v},s{i},add_to_cart\n" for i, v in enumerate(values)))
    ev = _events([p], timezone="Europe/Helsinki")
    assert ev["ts"].to_list() == list(values.values())
    ny = tmp_path / "ny.csv"
    ny.write_text("timestamp,session_id,event\n2026-03-08 02:30:00,s,add_to_cart\n")
    assert _events([ny], timezone="America/New_York")["ts"].to_list() == [t(2026, 3, 8, 7, 30)]
    # typed columns: a naive datetime, and a date at a midnight the clocks skip (Chile, 2026-09-06)
    naive = pl.Series("timestamp", list(values)).str.to_datetime()
    pl.DataFrame({"timestamp": naive, "session_id": [f"s{i}" for i in range(len(values))],
                  "event": ["add_to_cart"] * len(values)}).write_parquet(tmp_path / "naive.parquet")
    assert _events([tmp_path / "naive.parquet"], timezone="Europe/Helsinki")["ts"].to_list() == list(values.values())
    pl.DataFrame({"timestamp": [date(2026, 9, 6)], "session_id": ["s"], "event": ["add_to_cart"]}) \
        .write_parquet(tmp_path / "date.parquet")
    assert _events([tmp_path / "date.parquet"], timezone="America/Santiago")["ts"].to_list() == [t(2026, 9, 6, 4)]
    # every route reads them alike: the full analysis, the funnel-only row-level and clean routes
    cart = "timestamp,session_id,event\n2026-03-29 03:10:00,c,add_to_cart\n2026-03-29 03:40:00,c,purchase\n"
    (tmp_path / "cart.csv").write_text(cart)
    pl.read_csv(tmp_path / "cart.csv", try_parse_dates=True).write_parquet(tmp_path / "cart.parquet")
    cfg = Config(timezone="Europe/Helsinki", steps=parse_steps("add_to_cart,purchase"))
    loaded = load_events([str(tmp_path / "cart.parquet")], cfg)
    assert not isinstance(streaming._clean_shard(streaming._row_level_rows(loaded, cfg), loaded, cfg), str)
    for path in (tmp_path / "cart.csv", tmp_path / "cart.parquet"):
        full, only = analyze(str(path), cfg).report.to_dict(), analyze(str(path), cfg, funnel_only=True).report.to_dict()
        assert full["input"]["rows_rejected"] == 0 and full["input"] == only["input"], path
        assert full["funnel"] == only["funnel"] and [s["sessions"] for s in full["funnel"]["steps"]] == [1, 1], path

def test_sessionize_without_session_id(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("time,user,event\n"
                 "2026-10-01T10:00:00Z,u1,add_to_cart\n"
                 "2026-10-01T10:29:00Z,u1,begin_checkout\n"
                 "2026-10-01T11:00:00Z,u1,add_to_cart\n"   # 31 min gap -> new session
                 "2026-10-01T10:00:00Z,u2,add_to_cart\n")
    prep = prepare([str(p)], Config())
    ev = prep.events.collect()
    assert prep.sessionized
    assert sorted(ev["session_id"].unique().to_list()) == ["u1#1", "u1#2", "u2#1"]
    prep = prepare([str(p)], Config(session_timeout=60 * 60 * 1_000_000))
    assert prep.events.collect()["session_id"].n_unique() == 2


def test_rejects_are_counted_never_dropped(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("timestamp,session_id,event,cart_value\n"
                 "2026-10-01T10:00:00Z,s1,add_to_cart,10\n"
                 "not a time,s1,add_to_cart,10\n"
                 ",s1,add_to_cart,10\n"
                 "2026-10-01T10:00:00Z,,add_to_cart,10\n"
                 "2026-10-01T10:00:00Z,s1,,10\n"
                 "2026-10-01T10:00:01Z,s1,view,-3\n"
                 "2026-10-01T10:00:00Z,s1,add_to_cart,10\n"
                 "2999-01-01T00:00:00Z,s1,add_to_cart,10\n")
    prep = prepare([str(p)], Config())
    causes = dict(prep.rejects.group_by("_reject").len().iter_rows())
    assert causes == {"bad_timestamp": 1, "missing_timestamp": 1, "missing_id": 1, "missing_event": 1,
                      "bad_value": 1, "duplicate": 1, "timestamp_out_of_range": 1}
    assert prep.rows_read == 8 == prep.events.collect().height + prep.rejects.height
    assert sorted(prep.rejects["_row"].to_list()) == [2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"timestamp,session_id,event\n", "no usable rows"),
    (b"a,b,c\n1,2,3\n", "no timestamp column"),
    (b"\x00\x01\x02binary\x00" * 20, "binary"),
])
def test_unusable_inputs(tmp_path, content, match):
    from funnel.api import analyze

    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match) as e:
        analyze(str(p))
    assert str(p) in str(e.value)


def test_missing_column_did_you_mean(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("timestamp,sesion,evnt\n2026-10-01T10:00:00Z,s,a\n")
    with pytest.raises(InputError) as e:
        prepare([str(p)], Config())
    assert "no event column" in str(e.value) and "evnt" in str(e.value)


def test_missing_path():
    with pytest.raises(InputError, match="file not found: nope.csv"):
        prepare(["nope.csv"], Config())


def test_bug_a_repeated_header_name_dropped_the_second_column(tmp_path):
    """A CSV naming ``session_id`` twice (a user id exported under the session's name) lost the
    second column without a word (polars renames it ``session_id_duplicated_0``); now exit 2
    naming the file and the column. Blank names (unnamed columns) stay allowed."""
    p = tmp_path / "events.csv"
    p.write_text("timestamp,session_id,session_id,event\n2026-10-01T10:00:00Z,s1,u1,add_to_cart\n")
    with pytest.raises(InputError, match="names column 'session_id' more than once") as e:
        prepare([str(p)], Config())
    assert str(p) in str(e.value) and "rename" in e.value.hint
    p.write_text("timestamp,session_id,event,,\n2026-10-01T10:00:00Z,s1,add_to_cart,,\n")
    assert _events([p]).height == 1


def test_bug_notes_manifests_and_old_reports_in_an_input_folder_aborted_the_run(tmp_path):
    """A folder of logs also holding a README.txt, a manifest.json or funnel's own JSON report
    failed on them ("README.txt: no timestamp column found"). A folder now reads the files that
    look like logs and skips the rest (documentation by name, a pretty-printed JSON document,
    a .txt that is no table, non-data extensions), naming them in a report warning; NDJSON
    named .json (BigQuery's export) is still read, and a file named explicitly still is too."""
    from funnel.api import analyze

    logs = tmp_path / "logs"
    (logs / "day=2026-10-01").mkdir(parents=True)
    pl.DataFrame(ROWS).write_csv(logs / "day=2026-10-01" / "events.csv")
    pl.DataFrame({k: [v.replace("s", "t") for v in vs] for k, vs in ROWS.items()}).write_ndjson(logs / "part-0.json")
    (logs / "README.txt").write_text("exported 2026-10 by ops\none file per day\n")
    (logs / "manifest.json").write_text('{"files": 2}\n')
    (logs / "LICENSE").write_text("CC-BY 4.0\n")
    (logs / "notes.txt").write_text("ask Anna about the outage on the 3rd\n")
    (logs / "funnel-2026-10-01.json").write_text('{\n  "schema_version": 1,\n  "tool": {"name": "funnel"}\n}\n')
    (logs / "funnel-2026-10-01.html").write_text("<!doctype html><title>funnel</title>\n")
    assert _events([logs]).height == 6
    warnings = [w for w in analyze(str(logs)).report.warnings if w.startswith("skipped")]
    assert len(warnings) == 1 and warnings[0].startswith("skipped 6 file(s)"), warnings
    for name in ("README.txt", "manifest.json", "LICENSE", "notes.txt", "funnel-2026-10-01.json",
                 "funnel-2026-10-01.html"):
        assert str(logs / name) in warnings[0]
    assert "funnel report" in warnings[0] and "documentation" in warnings[0]
    with pytest.raises(InputError, match="README.txt: no timestamp column"):
        prepare([str(logs / "README.txt")], Config())
    only = tmp_path / "docs"
    only.mkdir()
    (only / "README.md").write_text("# logs go here\n")
    with pytest.raises(InputError, match=r"holds no CSV.*skipped: .*README.md \(not a data file\)"):
        prepare([str(only)], Config())


def test_an_empty_file_in_a_folder_or_a_glob_is_skipped_and_named(tmp_path):
    """A 0-byte file in a folder aborted the whole run ('b.csv: the file is empty', exit 2)
    while a header-only one was accepted. An empty file found through a folder or a glob (0
    bytes, or a .gz/.zst holding nothing) is skipped and named in the warnings of analyze,
    validate and explain; one named explicitly is still an error, and a pattern or folder of
    empty files only is one too."""
    import json

    import zstandard
    from conftest import run_cli

    from funnel.api import analyze

    logs = tmp_path / "logs"
    logs.mkdir()
    pl.DataFrame(ROWS).write_csv(logs / "a.csv")
    (logs / "b.csv").write_bytes(b"")
    (logs / "c.csv.gz").write_bytes(gzip.compress(b""))
    (logs / "d.ndjson.zst").write_bytes(zstandard.ZstdCompressor().compress(b""))
    empties = [logs / n for n in ("b.csv", "c.csv.gz", "d.ndjson.zst")]
    for spec in (logs, logs / "*"):
        assert _events([spec]).height == 3
        warnings = [w for w in analyze(str(spec)).report.warnings if w.startswith("skipped")]
        assert len(warnings) == 1 and warnings[0].startswith("skipped 3 file(s)"), warnings
        assert all(f"{f} (empty)" in warnings[0] for f in empties), warnings
    r = run_cli("validate", str(logs), "--json", "-")
    assert r.returncode == 0 and [w for w in json.loads(r.stdout)["warnings"] if f"{empties[0]} (empty)" in w], r
    r = run_cli("explain", "s1", str(logs))
    assert r.returncode == 0 and f"{empties[0]} (empty)" in r.stderr, r.stderr
    for f in empties:
        with pytest.raises(InputError, match=f"{f}: the file is empty"):
            prepare([str(f)], Config())
    with pytest.raises(InputError, match="every file matching .* is empty"):
        prepare([str(logs / "*.csv?*")], Config())
    (logs / "a.csv").unlink()
    with pytest.raises(InputError, match=r"holds no CSV.*b\.csv \(empty\)"):
        prepare([str(logs)], Config())
