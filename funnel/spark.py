"""``--engine spark``: the same shard functions, run inside Spark (design.md, Scale).

Spark reads the inputs (Parquet, CSV/TSV, NDJSON; any path or object store the Spark
configuration can reach), repartitions by user (session id when there is no user), and runs
per partition, with ``mapInArrow``:

1. pass 1: normalize + sessionize + steps on the shard, then ``shard_baseline``; the driver
   collects the partials and merges them (``partials.merge``);
2. pass 2: the merged baseline travels with the task closure; each shard runs
   ``shard_diagnosis`` + ``shard_partials`` and returns every additive partial as Arrow rows
   (``name``, ``blob`` = the partial as Arrow IPC);
3. the driver merges them and calls ``build_report``.

The session is ``SparkSession.builder.getOrCreate()``, so ``spark-submit``, ``SPARK_REMOTE``
(Spark Connect) and ``spark-defaults.conf`` decide where it runs; without any, PySpark runs
locally. Executors need ``funnel`` importable (``pip install funnel`` on the nodes or
``--py-files``). A ``--sessions`` log is read on the driver and shipped to every shard.

CI mode (a period, ``--compare``, gates): a first pass returns each shard's first and last
usable event time, from which the driver resolves the periods as ``api.analyze`` does; passes
1 and 2 then run, in each shard, once per period on the entities that start in it (partials
named ``cur/…`` and ``prev/…``), so the comparison costs no extra read. Vendor exports run
through the local engine's adapters (a first ``mapInArrow``).
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import sys
from pathlib import Path

import polars as pl

from .config import Config
from .core import partials as parts
from .errors import ConfigError, FunnelError, InputError

SHUFFLE_PARTITIONS_LOCAL = 4
PARTIAL_SCHEMA = "name string, blob binary"


class EngineError(FunnelError):
    """The Spark engine is not available (exit 2)."""


def _require_spark():
    import warnings

    # (PySpark warns on every import that it does not yet fully support pandas 3; funnel hands
    # it Arrow batches only, and the warning is noise on the user's terminal)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    try:
        import pandas  # noqa: F401  (PySpark's mapInArrow imports it)
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        raise EngineError("--engine spark needs PySpark, PyArrow and pandas",
                          "install them with: pip install 'funnel[spark]'") from None
    if not os.environ.get("SPARK_REMOTE") and not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise EngineError("--engine spark needs Java 17+ (none found on PATH or in JAVA_HOME)",
                          "install a JDK (e.g. apt-get install openjdk-17-jre-headless) or set SPARK_REMOTE "
                          "to a Spark Connect server")


def spark_session(quiet: bool = False):
    """The configured Spark session (spark-submit / SPARK_REMOTE / defaults), else local mode.
    A session funnel creates shows Spark's progress bars and warnings only on a terminal and
    without ``quiet`` (``-q``): otherwise no bars, and only errors logged. An active session is
    taken as it is."""
    _require_spark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Local mode: python workers must import this package and use this interpreter.
    root = str(Path(__file__).resolve().parent.parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("funnel")
    if not os.environ.get("SPARK_REMOTE") and "spark.master" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        builder = builder.config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS_LOCAL)) \
            .config("spark.ui.enabled", "false")
    if quiet or not _stderr_terminal():
        builder = builder.config("spark.ui.showConsoleProgress", "false").config("spark.log.level", "ERROR")
    return builder.getOrCreate()


def _stderr_terminal() -> bool:
    """Whether standard error (file descriptor 2, where the JVM writes too) is a terminal."""
    try:
        return os.isatty(2)
    except OSError:
        return False


# --- on the driver: reading ---------------------------------------------------------------

def _numbered(frame):
    """Parquet rows with their 1-based row in their file in ``_row`` (``_metadata.row_index``,
    Spark 3.5+), as the local engine numbers them, so that rejected rows are named by file and
    row. (CSV and NDJSON rows: ``_numbered_lines``.)"""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    from .schema import ROW

    try:
        return frame.withColumn(ROW, F.col("_metadata.row_index") + 1)
    except AnalysisException:   # (a Spark without the row index: rows stay unnumbered)
        return frame


def _reader(spark, path: str, sniffed: dict):
    low = path.lower().rstrip("/")
    for comp in (".gz", ".zst", ".bz2"):
        low = low.removesuffix(comp)
    if low.endswith(".parquet") or low.endswith(".pq"):
        return _numbered(spark.read.parquet(path))
    if low.endswith((".json", ".ndjson", ".jsonl")):
        return _ndjson(spark, path)
    if _text_name(path):
        return _text_table(spark, path, "\t" if low.endswith((".tsv", ".tab")) else ",", sniffed)
    if _is_uri(path):   # an object store (s3a://, gs://, abfss://, hdfs://) or a file: URI
        return _dataset(spark, path)
    p = Path(path)
    if p.is_dir():
        kinds = {f.suffix.lower() for f in p.iterdir() if f.is_file() and not f.name.startswith((".", "_"))}
        if kinds <= {".parquet"} and kinds:   # a Parquet dataset: one read
            return _numbered(spark.read.parquet(path))
        # any other folder (CSV, NDJSON, mixed, nested): its files by the local engine's rules
        # (recursive, hidden files skipped), each read by its own format and header
        return _text_table(spark, path, ",", sniffed)
    raise ConfigError(f"{path}: --engine spark reads .parquet, .csv/.tsv and .json/.ndjson paths",
                      "name the files by format, or use --engine local")


def _is_uri(path: str) -> bool:
    """A path Spark resolves (a store's URI, or ``file:``) rather than one of the driver's."""
    return "://" in path or path.startswith("file:")


def _local_path(name: str, encoded: bool = False) -> str | None:
    """The driver's absolute path of the file (or folder, glob) ``name``: a path, or a ``file:``
    URI; None for a store's URI (``s3a://…``), which only Spark reaches. ``encoded``: ``name``
    is a file as Spark names the files it reads (``input_file_name``: ``file:///…`` with a
    space as ``%20``), where a path given to Spark is taken as written. The driver's names of
    the local files (``_local_names``) and each partition's file names (``_as_named``) both go
    through it, so that a file has one key on either side."""
    from urllib.parse import unquote

    if name.startswith("file:"):
        name = name.removeprefix("file:")
        if name.startswith("//"):   # (an authority: none, or this machine)
            host, _, name = name[2:].partition("/")
            if host not in ("", "localhost"):
                return None
            name = "/" + name
        name = unquote(name) if encoded else name
    elif _is_uri(name):
        return None
    return os.path.abspath(name)


def _local_spec(source: str) -> str | None:
    """Input ``source`` as the local engine reads it: a path (file, folder, glob) as given, a
    ``file:`` URI as its path; None for a store's URI, which only Spark reaches."""
    local = _local_path(source)
    return local if local is None or _is_uri(source) else source


def _local_names(sources: list[str]) -> dict[str, str]:
    """The local engine's name of each local input file (``sources.resolve_paths``: as given,
    relative or absolute, or as its folder or glob finds it; a ``file:`` URI's by its path), by
    its absolute path (``_local_path``): what the partitions name the rows' files by
    (``_as_named``), Spark naming them as URIs. A source the driver cannot list is left out
    (Spark says what is wrong with it)."""
    from .io.sources import resolve_paths

    out: dict[str, str] = {}
    for source in sources:
        spec = _local_spec(source)
        if spec is None:
            continue
        try:
            files = resolve_paths([spec])
        except InputError:
            continue
        out.update({os.path.abspath(f): str(f) for f in files})
    return out


def _decided_marks(sources: list[str], cfg: Config, text: list[str], sniffed: dict | None = None
                   ) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The decimal mark of each text number column per input file, decided on the driver as
    the local engine decides it: the local loader's ``Loaded.decimals`` over the same files
    (from each file's first 100,000 rows; without its quoting check and line count), keyed by
    the local engine's names of the files (``_local_names``); and the report warning for the
    inputs it cannot open (a store's URI), whose numbers are read each by itself. ``text``: the
    canonical number columns Spark reads as text (none: typed numbers need no mark, and nothing
    is read). ``sniffed``: the files ``_dialects`` sniffed (``_sniff``), not sniffed again."""
    if not text:
        return {}, []
    from .io.load import load_files
    from .io.sources import resolve_paths

    paths = {s: _local_spec(s) for s in sources}
    local = [p for p in paths.values() if p is not None]
    sniffed = {} if sniffed is None else sniffed
    decided = load_files([_sniff(f, sniffed) for f in resolve_paths(local)], cfg, checks=False).decimals \
        if local else {}
    marks = {c: files for c, files in decided.items() if c in text}
    stores = [s for s, p in paths.items() if p is None]
    if not stores:
        return marks, []
    return marks, [(f"{', '.join(stores)}: the decimal mark of the text numbers ({', '.join(text)}) is not decided "
                    "per file in a store only Spark reaches, so each value is read by itself (1.234 is 1.234 and "
                    "1,500 is 1500 even in a decimal-comma file, where --engine local reads 1234 and 1.5) — copy "
                    "such files to a local path, or write the numbers as numbers (Parquet)")]


def _store_warnings(sources: list[str]) -> list[str]:
    """The report warning for the CSV/TSV inputs in a store only Spark reaches (``_dialects``
    decides nothing there): each is read with the separator its extension names, and its
    first line as the header."""
    stores = [s for s in sources if _local_path(s) is None and _text_name(s)]
    if not stores:
        return []
    return [(f"{', '.join(stores)}: the field separator is not sniffed per file in a store only Spark reaches, so "
             "such a file is read with a comma (a tab for .tsv/.tab) — a ';'- or tab-separated .csv there does not "
             "read as with --engine local, whose rows-swallowed-by-a-quote check does not run there either — copy "
             "such files to a local path, or convert them to Parquet")]


def _text_name(path: str) -> bool:
    """Whether ``path`` names CSV/TSV text by its extension (.gz/.zst/.bz2 aside), as ``_reader`` reads it."""
    low = path.lower().rstrip("/")
    for comp in (".gz", ".zst", ".bz2"):
        low = low.removesuffix(comp)
    return low.endswith((".csv", ".tsv", ".tab", ".txt"))


def _dataset(spark, uri: str):
    """A folder URI with no format in its name (``s3a://bucket/events/``, hive partitions such
    as ``date=2026-11-02/`` welcome): a Parquet dataset, as Spark writes one, read by Spark (which
    lists it: the driver may not see that store). Anything else there is a one-line error."""
    try:
        return _numbered(spark.read.parquet(uri))
    except _spark_errors("Py4JJavaError") as exc:   # (no such path, not Parquet, ...)
        text = _java_text(exc)
        if "[PATH_NOT_FOUND]" in text:
            raise spark_error(exc) from None
        raise InputError(f"{uri}: cannot be read as a Parquet dataset ({_last_line(text, exc)[:200]})",
                         f"name CSV or NDJSON files by their extension, e.g. {uri.rstrip('/')}/*.csv") from None


def _csv(spark, path: str | list[str], sep: str, encoding: str = "utf-8", names: list[str] | None = None):
    """A CSV/TSV file (or directory) as the local reader reads it (``sources.scan_file``): every
    field text; quotes inside a field are doubled (RFC 4180; Spark's own default escapes them
    with a backslash). A row longer than its header keeps its surplus fields in ``_extra``
    (rejected as ``extra_fields``: Spark would drop them silently), ``_blank`` says every field
    is empty, and an empty line is a row too (Spark's CSV reader skips them).

    One pass over the file's text first finds whether a quoted field spans lines (a line with
    an odd number of quotes). A usual CSV, whose quoted fields stay on their line, is then read
    as its lines, each parsed (``from_csv``) and numbered by its place in its file
    (``_numbered_lines``) — split over many tasks, with ``_row`` as the local reader gives it.
    A file where a field spans lines is read with ``multiLine``, one task per file, its rows
    unnumbered, and its empty lines outside quoted fields added (``_blank_lines``).

    ``encoding``: the files' text encoding as the local loader sniffs it (``_dialects``): a
    Latin-1 or Windows-1252 file is decoded as it is locally (``_text_lines``; before, Spark
    read its bytes as UTF-8, each é a U+FFFD, so ids that differ by one such letter were one).

    ``names``: the columns of a file with no header row, as the driver decided them
    (``_dialects``: a Snowplow enriched TSV, ``sources.headerless``): every line is a row
    (``_row`` from 1, as the local reader numbers it), and quotes are plain text (its JSON
    contexts hold bare quotes; the local reader reads it with quoting off)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    from .io.sources import _EXTRAS, BLANK, EXTRA
    from .schema import ROW, SOURCE_FILE

    _quiet_loggers(spark)
    value = F.col("value")
    lines = _text_lines(spark, path, encoding)
    lines = lines.withColumn("__q", F.length(value) - F.length(F.regexp_replace(value, '"', "")))
    headerless = names is not None
    # (no quoting: Spark's empty quote character turns quoting off; no field spans lines then)
    spans = not headerless and bool(lines.where(F.col("__q") % 2 == 1).limit(1).count())
    options = {"sep": sep, "quote": ""} if headerless else {"sep": sep, "escape": '"'}
    reader = spark.read.options(**options).option("multiLine", spans).option("header", True)
    if encoding in _CHARSETS:   # (Spark's CSV reader takes ISO-8859-1, not Windows-1252: _cp1252 puts it right)
        reader = reader.option("encoding", "ISO-8859-1")
    if names is None:
        names = reader.option("inferSchema", False).csv(path).columns   # (the header: its first line)
        if encoding == "cp1252":
            names = [n.translate(_CP1252) for n in names]
    # the header's columns, then room for surplus fields, by position (the header row is skipped)
    fields = [*names, *_EXTRAS]
    surplus = [F.col(x) for x in _EXTRAS]
    out = [*names,
           F.when(F.greatest(*(x.isNotNull() for x in surplus)), F.concat_ws(sep, *surplus)).alias(EXTRA),
           F.least(*(F.col(c).isNull() for c in fields)).alias(BLANK)]
    if not spans:
        rows = _numbered_lines(lines)
        # (line 0: the header; with no header row, line 0 is row 1)
        rows = rows.withColumn(ROW, F.col(ROW) + 1) if headerless else rows.where(F.col(ROW) > 0)
        ddl = ", ".join(f"`{c.replace('`', '``')}` STRING" for c in fields)
        parsed = F.from_csv(value, ddl, options)
        return rows.select(parsed.alias("__r"), ROW, SOURCE_FILE) \
            .select(*(F.col("__r")[c].alias(c) for c in fields), ROW, SOURCE_FILE).select(*out, ROW, SOURCE_FILE)
    schema = StructType([StructField(c, StringType()) for c in fields])
    raw = reader.option("enforceSchema", True).schema(schema).csv(path)
    if encoding == "cp1252":
        raw = raw.select(*(_cp1252(F.col(c)).alias(c) for c in fields))
    return raw.select(*out, F.input_file_name().alias(SOURCE_FILE)) \
        .unionByName(_blank_lines(lines, names), allowMissingColumns=True)


# The 8-bit encodings the local loader sniffs (sources._sniff_encoding), read by Spark as
# ISO-8859-1 (its text reader keeps a line's bytes; its CSV reader and ``decode`` take no other
# 8-bit charset), then the 32 characters where Windows-1252 differs put right: ``_CP1252``
# (Windows-1252's five unassigned bytes as U+FFFD, as the local loader's copy has them).
_CHARSETS = ("latin-1", "cp1252")
_HIGH = bytes(range(0x80, 0xA0))
_CP1252 = str.maketrans(_HIGH.decode("latin-1"), _HIGH.decode("cp1252", errors="replace"))


def _cp1252(text):
    """Spark column ``text``, a Windows-1252 text read as ISO-8859-1, as Windows-1252 reads it."""
    from pyspark.sql import functions as F

    return F.translate(text, _HIGH.decode("latin-1"), _HIGH.decode("cp1252", errors="replace"))


def _text_lines(spark, path: str | list[str], encoding: str = "utf-8"):
    """The lines of the text files of ``path`` (``value``), each with Spark's row id (``__i``),
    its partition (``__p``) and its file (``_file``): what ``_numbered_lines`` numbers.
    ``encoding``: a Latin-1 or Windows-1252 file's lines are decoded as the local loader's
    UTF-8 copy has them (``sources._text_path``; ``_CHARSETS``)."""
    from pyspark.sql import functions as F

    from .schema import SOURCE_FILE

    value = F.col("value")
    if encoding in _CHARSETS:
        value = F.decode(value.cast("binary"), "ISO-8859-1")
        if encoding == "cp1252":
            value = _cp1252(value)
    return spark.read.text(path).select(value.alias("value"), F.monotonically_increasing_id().alias("__i"),
                                        F.spark_partition_id().alias("__p"), F.input_file_name().alias(SOURCE_FILE))


def _numbered_lines(lines):
    """``lines`` (``_text_lines``: a file's lines as text with ``__i``, Spark's row id, and
    ``__p``, its partition) with ``_row``: each line's 0-based place in its file. A row id is its
    partition's number, then its place in that partition; a file's pieces are partitions in
    file order, so a line's place is the lines of the file's earlier pieces plus its place in
    its own (one small aggregate per piece, no shuffle of the lines)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from .schema import ROW, SOURCE_FILE

    at = F.col("__i").bitwiseAND((1 << 33) - 1)   # (the place in the partition: the id's low 33 bits)
    pieces = lines.groupBy(SOURCE_FILE, "__p").agg(F.min(at).alias("__lo"), F.count(F.lit(1)).alias("__n"))
    earlier = Window.partitionBy(SOURCE_FILE).orderBy("__p").rowsBetween(Window.unboundedPreceding, -1)
    pieces = pieces.withColumn("__off", F.coalesce(F.sum("__n").over(earlier), F.lit(0)))
    return lines.join(F.broadcast(pieces), [SOURCE_FILE, "__p"]) \
        .withColumn(ROW, (F.col("__off") + at - F.col("__lo")).cast("long"))


def _text_table(spark, path: str, sep: str, sniffed: dict):
    """The CSV/TSV files of ``path`` (a file, glob or folder named as CSV/TSV; or a local
    folder of any files, found by the local engine's folder rules), each read as the local
    loader reads it: the driver decides each file's dialect with that loader's own functions
    (``_dialects``), and Spark reads each group of files of one dialect in one read (``_csv``),
    unioned by name; a group's files are named to Spark as literal paths (``_literal``). A
    store only Spark reaches is read with ``sep`` (the extension's: tab for .tsv/.tab, else a
    comma; ``_store_warnings`` says so). ``sniffed``: as ``_dialects``."""
    groups = _dialects(path, sniffed)
    if groups is None:
        return _csv(spark, path, sep)
    whole = len(groups) == 1 and not os.path.isdir(_local_spec(path))   # (one dialect: read as named, as before)
    _quiet_loggers(spark)
    frames = []
    for (fmt, separator, header, encoding, headerless), files in groups.items():
        literal = [_literal(f) for f in files]
        named = path if whole else literal
        if fmt == "parquet":
            frames.append(_numbered(spark.read.parquet(*literal)))
        elif fmt == "ndjson":
            frames.append(_ndjson(spark, named))
        else:
            frames.append(_csv(spark, named, separator, encoding, list(header) if headerless else None))
    return _union(frames)


# The characters of a Hadoop glob pattern, as which Spark takes every path it is given
# (``FileSystem.globStatus``), the backslash that escapes them included.
_HADOOP_GLOB = str.maketrans({c: "\\" + c for c in "\\[]{}*?"})


def _literal(path: str) -> str:
    """The path of one file (or a ``file:`` URI), as Spark reads that very file: its glob
    characters escaped with a backslash, so that ``events[1].csv`` is not the pattern that
    matches ``events1.csv`` (nor ``a{b,c}.csv`` two names)."""
    return path.translate(_HADOOP_GLOB)


def _sniff(f: Path, sniffed: dict):
    """``sources.sniff_format`` of local file ``f``, once per run: ``sniffed`` (file name ->
    ``SourceFile``) keeps it for the next caller, so that the driver's one sniff of a file
    serves both its dialect (``_dialects``) and its decimal marks (``_decided_marks``)."""
    from .io.sources import sniff_format

    key = str(f)
    if key not in sniffed:
        sniffed[key] = sniff_format(f)
    return sniffed[key]


def _dialects(path: str, sniffed: dict) -> dict[tuple[str, str, tuple[str, ...], str, bool], list[str]] | None:
    """The files of ``path`` that the driver can open (a local file, folder, glob or ``file:``
    URI: ``_local_path``) by how the local loader reads each (``sources.sniff_format``, from
    its first bytes: the format, a .csv holding NDJSON or Parquet included, and the field
    separator, taken from the header line; the header, ``file_schema``; the text encoding:
    Latin-1 and Windows-1252 apart, UTF-16/32 an error; whether the file has no header row, a
    Snowplow enriched TSV read with its fixed column names as the header, ``sources.headerless``):
    (format, separator, header, encoding, headerless) -> the files, named as Spark will read them (a ``file:`` URI stays one). On the
    way, each CSV file gets the local reader's check for rows swallowed by a quote closed rows
    later (``sources.check_quoting``: an error naming the line). None for a store only Spark
    reaches (nothing is decided, nor checked, there). ``sniffed``: each file's sniff is kept
    there (``_sniff``) for ``_decided_marks``."""
    local = _local_spec(path)
    if local is None:
        return None
    from .io.sources import BLANK, EXTRA, check_quoting, file_schema, headerless, resolve_paths
    from .schema import ROW, SOURCE_FILE

    uri = _is_uri(path)
    groups: dict[tuple[str, str, tuple[str, ...], str, bool], list[str]] = {}
    for f in resolve_paths([local]):
        src = _sniff(f, sniffed)
        if src.encoding.startswith(("utf-16", "utf-32")):
            raise InputError(f"{f}: {src.encoding.upper()} text, which --engine spark does not read (Spark splits "
                             "its lines on single bytes)", f"convert it to UTF-8 (iconv -f {src.encoding.upper()} -t "
                             "UTF-8), or run with --engine local")
        header: tuple[str, ...] = ()
        sep, encoding, bare = "", "utf-8", False
        if src.format in ("csv", "tsv"):
            check_quoting(src)
            sep, header = src.sep, tuple(file_schema(src).names())
            encoding = src.encoding if src.encoding in _CHARSETS else "utf-8"   # (Spark takes a UTF-8 BOM)
            bare = headerless(src)
            if bare:   # (the file's columns, without what the local scan adds)
                header = tuple(c for c in header if c not in (ROW, SOURCE_FILE, EXTRA, BLANK))
        groups.setdefault((src.format, sep, header, encoding, bare), []).append(f"file:{f}" if uri else str(f))
    return groups


def _blank_lines(lines, names: list[str]):
    """A row of nulls (``_blank``, so rejected as ``empty_row``, with its file) for every empty
    line of a CSV read with ``multiLine`` that is outside a quoted field: Spark's CSV reader
    skips them, the local one reads each as a row. ``lines``: the CSV's lines as text
    (``value``, its quotes ``__q``, its place ``__i``, its file), as ``_csv`` reads them; a
    line's place in or out of quotes is worked out by the quotes before it in its file (in
    file order: Spark numbers a file's lines in order)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from .io.sources import BLANK
    from .schema import SOURCE_FILE

    before = Window.partitionBy(SOURCE_FILE).orderBy("__i").rowsBetween(Window.unboundedPreceding, -1)
    inside = F.coalesce(F.sum("__q").over(before), F.lit(0)) % 2 == 1
    nulls = [F.lit(None).cast("string").alias(c) for c in names]
    return lines.withColumn("__in", inside).where((F.col("value") == "") & ~F.col("__in")) \
        .select(*nulls, F.lit(True).alias(BLANK), SOURCE_FILE)


def _ndjson(spark, path: str):
    """NDJSON as the local reader takes it: a line that is not a JSON object is an error naming
    the file and the line's text (the local engine names its line too), where Spark would make
    it a row of nulls. The rows are the file's lines, numbered (``_numbered_lines``: ``_row``
    is the line, as the local reader reports it) and parsed with the schema Spark infers for
    the file (``from_json``: Spark's own JSON reader, so the same values); blank lines are no
    rows, as locally."""
    from pyspark.sql import functions as F

    from .schema import ROW, SOURCE_FILE

    raw = spark.read.json(path)
    corrupt = spark.conf.get("spark.sql.columnNameOfCorruptRecord", "_corrupt_record")
    if corrupt in raw.columns:
        # (every column referenced: Spark refuses a query of a raw file's corrupt-record column alone)
        bad = raw.where(F.col(corrupt).isNotNull()).withColumn("__file", F.input_file_name()).limit(1).collect()
        if bad:
            line = " ".join(str(bad[0][corrupt]).split())
            line = line if len(line) <= 80 else line[:77] + "..."
            raise InputError(f"{bad[0]['__file']}: a line is not a JSON object: {line!r}",
                             "fix or remove that line (NDJSON needs one JSON object per line); "
                             "'funnel validate' (the local engine) names its line number")
        raw = raw.drop(corrupt)
    value = F.col("value")
    rows = _numbered_lines(_text_lines(spark, path)).where(~value.rlike("^[ \\t\\r\\n]*$"))   # (blank lines: no rows)
    # every field of the line null ('{}' or all nulls): the local reader's _blank of a generic
    # NDJSON table, taken as such only for one (_analyze_spark; a vendor export has none)
    empty = F.least(*(F.col(c).isNull() for c in raw.columns)) if raw.columns else F.lit(True)
    return rows.select(F.from_json(value, raw.schema).alias("__r"), (F.col(ROW) + 1).alias(ROW), SOURCE_FILE) \
        .select("__r.*", ROW, SOURCE_FILE).withColumn(_JSON_BLANK, empty)


_JSON_BLANK = "__json_blank"   # (_ndjson's: every field of the line null)


# Spark's loggers of warnings funnel's reads always cause, set to errors only (``_quiet_loggers``):
# a CSV file whose header is shorter than the schema, which ``_csv``'s room for surplus fields
# always makes it; and a path that is a glob, as every ``_literal`` file with an escaped
# character is (FileStreamSink looks for a streaming sink's metadata there and prints a stack
# trace: "Assume no metadata directory"; its package since Spark 4.1 and before).
_QUIET = ("org.apache.spark.sql.catalyst.csv.CSVHeaderChecker",
          "org.apache.spark.sql.execution.streaming.sinks.FileStreamSink",
          "org.apache.spark.sql.execution.streaming.FileStreamSink")


def _quiet_loggers(spark) -> None:
    """The ``_QUIET`` loggers set to errors only (where the JVM is reachable: not on Spark Connect)."""
    try:
        jvm = spark.sparkContext._jvm
        for logger in _QUIET:
            jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
                logger, jvm.org.apache.logging.log4j.Level.ERROR)
    except (AttributeError, *_spark_errors("Py4JError")):
        return   # (no JVM gateway, or another logging backend: the warnings stay)


def _spark_errors(gateway: str) -> tuple[type[BaseException], ...]:
    """PySpark's errors and py4j's error class named ``gateway`` (``Py4JError``: any from the
    JVM gateway; ``Py4JJavaError``: an exception thrown in the JVM), where py4j is installed (a
    Spark Connect client may lack it)."""
    from pyspark.errors import PySparkException

    try:
        from py4j import protocol
    except ImportError:
        return (PySparkException,)
    return PySparkException, getattr(protocol, gateway)


def _read(spark, sources: list[str], sniffed: dict):
    """The sources as one Spark DataFrame, each row with the file it came from (``_file``) and,
    for Parquet and CSV without fields spanning lines, its row in it (``_row``). ``sniffed``:
    the local files sniffed on the way, by name (``_sniff``)."""
    return _union([_reader(spark, s, sniffed) for s in sources])


def _union(frames: list):
    """Frames read from sources as one, each row with the file it came from (``_file``), named
    per frame before the union (after a mapInArrow Spark no longer knows it, and
    ``input_file_name`` takes one source: a CSV names its rows itself, ``_csv``)."""
    from functools import reduce

    from pyspark.sql import functions as F

    from .schema import SOURCE_FILE

    named = [f if SOURCE_FILE in f.columns else f.withColumn(SOURCE_FILE, F.input_file_name()) for f in frames]
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), named)


def _empty(raw) -> pl.DataFrame:
    """A polars frame with no rows and the schema of the Spark DataFrame ``raw``."""
    from pyspark.sql.pandas.types import to_arrow_schema

    try:
        arrow = to_arrow_schema(raw.schema, timezone="UTC")
    except TypeError:   # (PySpark 3.5: no timezone argument; timestamps are UTC)
        arrow = to_arrow_schema(raw.schema)
    return pl.DataFrame(arrow.empty_table())


def _vendor(raw, cfg: Config, where: str) -> str | None:
    """The vendor export format of the Spark DataFrame ``raw`` (``--format``, else sniffed from
    its schema as the local engine does), or None for a generic event table."""
    from .io.load import _detect_vendor

    return _detect_vendor(_empty(raw).schema, cfg, where)


def _adapted(raw, vendor: str):
    """A vendor export (``raw``) as generic events: the vendor's adapter (funnel.io.adapters,
    the local engine's; row by row) run on every Arrow batch by ``mapInArrow``; the file and
    row of each event pass through."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema

    from .io.adapters import ADAPTERS

    mod = ADAPTERS[vendor]
    out = mod.adapt(_empty(raw).lazy()).collect().to_arrow()
    # Arrow types Spark takes back (polars writes large strings and string views)
    target = pa.schema([pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) or
                                 pa.types.is_string_view(f.type) else f.type) for f in out.schema])

    def run(batches):
        for batch in batches:
            frame = pl.from_arrow(pa.Table.from_batches([batch]))
            yield from mod.adapt(frame.lazy()).collect().to_arrow().cast(target).to_batches()
    return raw.mapInArrow(run, from_arrow_schema(target))


# --- on the executors: one shard ----------------------------------------------------------

def _sessions_log(shipped: tuple[str, bytes, list[str]] | None):
    """The sessions log shipped from the driver (name, Arrow IPC, attributes), or None."""
    if shipped is None:
        return None
    from .api import SessionsLog

    name, blob, attrs = shipped
    return SessionsLog(name, pl.read_ipc(io.BytesIO(blob)).lazy(), attrs)


def _prepare_shard(batches, rename: dict[str, str], cfg: Config, marks: dict[str, dict[str, str]],
                   files: dict[str, str], log=None, names: dict[str, str] | None = None, funnel_only: bool = False
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(usable events with _entity/_step, rejected rows) of one shard, as ``api.prepare`` does
    (``marks``: the driver's decimal marks, ``_decided_marks``; ``files``: the local engine's
    names of the files, ``_local_names``, which the rows' files are named by; ``log``: the
    sessions log, joined as there; ``names``: the columns' names in the input, which the
    rejected rows' details use, ``Loaded.names``; ``funnel_only``: only the funnel's columns
    kept, as ``api.prepare``'s)."""
    from .api import event_chain, project_input, with_sessions_log
    from .core.normalize import missing_ids, normalize
    from .schema import REJECT, ROW

    import pyarrow as pa

    batches = [b for b in batches if b.num_rows]
    if not batches:
        return pl.DataFrame(), pl.DataFrame()
    df = _as_named(pl.from_arrow(pa.Table.from_batches(batches)), files)
    row = pl.col(ROW).cast(pl.Int64) if ROW in df.columns else pl.lit(None, pl.Int64)   # (Parquet: _numbered)
    lf = missing_ids(df.lazy().rename(rename).with_columns(row.alias(ROW)), cfg.missing_ids)
    out = event_chain(normalize(project_input(lf, cfg), cfg.timezone, decimals=marks, names=names), cfg,
                      build_sessions=True, funnel_only=funnel_only).collect()
    usable = with_sessions_log(out.filter(pl.col(REJECT).is_null()).drop(REJECT).lazy(), [], log)[0].collect()
    return usable, out.filter(pl.col(REJECT).is_not_null())


def _as_named(df: pl.DataFrame, files: dict[str, str]) -> pl.DataFrame:
    """Shard ``df`` with each row's file (``_file``, as Spark names it: a ``file:///…`` URI, a
    space as ``%20``) named as the local engine names it (``files``: ``_local_names``; a local
    file not there by its path), so that rejected rows, decimal marks (``_decided_marks``) and
    names per file (``Loaded``'s keys) are the local engine's. A store's URI stays as Spark
    gives it."""
    from .schema import SOURCE_FILE

    if SOURCE_FILE not in df.columns:
        return df
    named = {}
    for name in df.get_column(SOURCE_FILE).unique().drop_nulls().to_list():
        path = _local_path(name, encoded=True)
        named[name] = name if path is None else files.get(path, path)
    return df.with_columns(pl.col(SOURCE_FILE).replace(named)) if named else df


def _blobs(p: parts.Partials):
    import pyarrow as pa

    names, blobs = [], []
    for name, df in p.items():
        buf = io.BytesIO()
        df.write_ipc(buf)
        names.append(name)
        blobs.append(buf.getvalue())
    yield pa.RecordBatch.from_pydict({"name": names, "blob": blobs},
                                     schema=pa.schema([("name", pa.string()), ("blob", pa.binary())]))


def _in_spans(frame: pl.DataFrame, spans):
    """(prefix, events) of a shard's usable events per period: ``spans`` are (prefix, span or
    None); a span keeps the entities whose first event is in it (``periods.entities_in``)."""
    from .periods import entities_in

    for prefix, span in spans:
        yield prefix, frame if span is None else entities_in(frame.lazy(), span).collect()


def _pass0(rename, cfg, marks, files):
    def run(batches):   # CI mode: the shard's first and last usable event time
        from .schema import TS

        usable, _ = _prepare_shard(batches, rename, cfg, marks, files)
        if usable.height:
            yield from _blobs({"_bounds": usable.select(pl.col(TS).min().alias("min_ts"),
                                                        pl.col(TS).max().alias("max_ts"))})
    return run


TABLE = "_table:"   # a per-shard table (carts, rejected rows): concatenated, not added
SHARED = "shared"   # pass 1's table of the shared users' records (recovery over all shards)


def _pass1(rename, cfg, marks, files, attrs, log, spans, shared: pl.Series):
    def run(batches):
        from .api import entity_records, shard_baseline

        usable, _ = _prepare_shard(batches, rename, cfg, marks, files, _sessions_log(log))
        if usable.height == 0:
            return
        for prefix, frame in _in_spans(usable.drop("_built_session"), spans):
            if frame.height:
                rec = entity_records(frame, cfg, attrs).collect()
                out = {prefix + k: v for k, v in shard_baseline(frame.lazy(), cfg, attrs, rec).items()}
                theirs = rec.filter(parts.of_shared(shared)) if shared.len() else rec.clear()
                if theirs.height:   # their recovery is decided on the driver, over all shards
                    out[TABLE + prefix + SHARED] = theirs
                yield from _blobs(out)
    return run


def _pass2(rename, cfg, marks, files, attrs, log, baseline_ipc: dict[str, bytes], tables: bool, spans,
           shared: pl.Series, fixed_ipc: dict[str, bytes], names: dict[str, str], funnel_only: bool = False):
    """Pass 2 on each shard: every partial (``shard_partials``), or with ``funnel_only`` the
    funnel's (``api.shard_funnel``: no baseline, no diagnosis; the shared users' records as a
    table, ``DEFERRED``, for ``merge_funnel_only`` on the driver)."""
    def run(batches):
        from .api import carts_table, entity_records, reject_counts, shard_diagnosis, shard_partials, timed
        from .schema import ENTITY

        usable, rejects = _prepare_shard(batches, rename, cfg, marks, files, _sessions_log(log), names, funnel_only)
        if usable.height == 0 and rejects.height == 0:
            return
        meta = {
            "_input": pl.DataFrame({
                "n_rows": [usable.height + rejects.height],
                "n_sessionized": [int(usable["_built_session"].sum()) if usable.height else 0],
                "n_timed": [usable.select(timed(cfg.timezone).sum()).item() if usable.height else 0],   # (dates only?)
            }),
            "_rejects": reject_counts(rejects, cfg),   # per cause, the capped sessions, per step: as the local engine
        }
        p: parts.Partials = dict(meta)
        if tables and rejects.height:
            p[TABLE + "rejects"] = rejects.drop("_built_session", strict=False)
        if usable.height:
            for prefix, frame in _in_spans(usable.drop("_built_session"), spans):
                if not frame.height:
                    continue
                if funnel_only:
                    from .api import DEFERRED, shard_funnel

                    p[prefix + "_users"] = parts.user_tally(frame, shared)
                    got = shard_funnel(frame.lazy(), cfg, shared=shared)
                    if DEFERRED in got:
                        p[TABLE + prefix + DEFERRED] = got.pop(DEFERRED)
                    p.update({prefix + k: v for k, v in got.items()})
                    continue
                baseline = {k[len(prefix):]: pl.read_ipc(io.BytesIO(v)) for k, v in baseline_ipc.items()
                            if k.startswith(prefix)}
                ev = frame.lazy()
                rec = entity_records(frame, cfg, attrs).collect()
                if prefix in fixed_ipc:   # the shared users' carts: recovered over all shards (driver)
                    rec = rec.update(pl.read_ipc(io.BytesIO(fixed_ipc[prefix])), on=ENTITY)
                diag = shard_diagnosis(ev, cfg, attrs, baseline, rec)
                p[prefix + "_users"] = parts.user_tally(frame, shared)   # merged by addition: users_of
                p.update({prefix + k: v for k, v in shard_partials(ev, cfg, attrs, baseline, diag).items()})
                if tables and prefix == CURRENT:
                    p[TABLE + "carts"] = carts_table(diag, cfg)
        yield from _blobs(p)
    return run


CURRENT, PREVIOUS = "cur/", "prev/"   # the partials of the analysed period and of the comparison


def _collect_partials(df) -> parts.Partials:
    """Driver side: Arrow rows of (name, blob) from every shard -> merged partials; per-shard
    tables (``TABLE`` names) are concatenated instead."""
    table = df.toArrow() if hasattr(df, "toArrow") else None
    rows = table.to_pylist() if table is not None else [r.asDict() for r in df.collect()]
    shards: list[parts.Partials] = []
    tables: dict[str, list[pl.DataFrame]] = {}
    for r in rows:
        frame = pl.read_ipc(io.BytesIO(r["blob"]))
        if r["name"].startswith(TABLE):
            tables.setdefault(r["name"], []).append(frame)
        else:
            shards.append({r["name"]: frame})
    out = parts.merge(shards) if shards else {}
    out.update({name: pl.concat(frames, how="diagonal_relaxed") for name, frames in tables.items()})
    return out


# --- the driver -----------------------------------------------------------------------------

def analyze_spark(sources: str | list[str] | tuple[str, ...], cfg: Config, *, sessions: str | None = None,
                  progress=None, spark=None, tables: bool = True, period=None, compare=None,
                  funnel_only: bool = False, quiet: bool = False):
    """``api.analyze`` on Spark: the same report sections, and (``tables``) the per-cart and
    rejected-row tables, brought from the shards to the driver (rejected rows carry their file,
    named as the local engine names it, ``_as_named``, and their row in it: ``_numbered``,
    ``_numbered_lines``). ``period``, ``compare`` and
    ``cfg.fail_on`` as in ``api.analyze`` (CI mode); ``funnel_only`` too (the funnel and
    abandonment counts only, ``api.shard_funnel`` on each shard; ignored with a comparison or
    gates). ``quiet``: a session it creates logs errors only, with no progress bars
    (``spark_session``). A failed Spark job is a one-line error
    (``spark_error``)."""
    _require_spark()
    try:
        return _analyze_spark(sources, cfg, sessions=sessions, progress=progress, spark=spark, tables=tables,
                              period=period, compare=compare, funnel_only=funnel_only, quiet=quiet)
    except _spark_errors("Py4JJavaError") as exc:
        raise spark_error(exc) from None


def spark_error(exc: BaseException) -> FunnelError:
    """The one-line error for a failed Spark job: a file Spark could not read is an
    ``InputError`` naming it; an error funnel raised inside a task (e.g. an ``InputError``)
    is raised again as itself; anything else is an ``EngineError`` with Spark's own first line
    of the cause (its log, above it, has the rest)."""
    import re

    from . import errors

    text = _java_text(exc)
    missing = re.search(r"\[PATH_NOT_FOUND\] Path does not exist: (\S+?)\.?\s", text + " ")
    if missing:
        return errors.InputError(f"{missing.group(1)}: no such file or folder",
                                 "check the path, and that Spark is configured for that store")
    unread = re.search(r"\[FAILED_READ_FILE[^\]]*\] Encountered error while reading file (\S+?)\.?\s", text + " ")
    if unread:
        return errors.InputError(f"{unread.group(1)}: Spark could not read the file (corrupt or not what its "
                                 "name says)", "check it with 'funnel validate' (the local engine names what is "
                                 "wrong), or leave it out")
    repeated = re.search(r"\[COLUMN_ALREADY_EXISTS\] The column `([^`]*)` already exists", text)
    if repeated:   # (Spark's JSON reader: an object naming a key twice; polars takes the first)
        return errors.InputError(f"a JSON object in the input names the key '{repeated.group(1)}' twice, which Spark "
                                 "cannot read", "remove the repeated key, or run with --engine local (which takes "
                                 "the first value)")
    ours = re.search(r"funnel\.(?:\w+\.)*(InputError|ConfigError|OutputError): (.+)", text)
    if ours:
        return getattr(errors, ours.group(1))(ours.group(2).strip())
    return EngineError(f"the Spark job failed: {_last_line(text, exc)[:300]}", "see Spark's log above for the rest")


def _java_text(exc: BaseException) -> str:
    """The text of a Spark error, its innermost Java cause (what went wrong) on the last line."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    if java is not None:
        cause = java
        while cause.getCause() is not None:
            cause = cause.getCause()
        text += "\n" + str(cause.toString())
    return text


def _last_line(text: str, exc: BaseException) -> str:
    """The last non-blank line of a Spark error's ``text`` (``_java_text``: its innermost
    cause), else the error's class name."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), type(exc).__name__)


def _analyze_spark(sources: str | list[str] | tuple[str, ...], cfg: Config, *, sessions: str | None = None,
                   progress=None, spark=None, tables: bool = True, period=None, compare=None,
                   funnel_only: bool = False, quiet: bool = False):
    """``analyze_spark``, whose Spark errors it turns into one line."""
    from . import gates, periods
    from .api import (Analysis, _check_gates, _ci_report, _no_entities_in, _no_period, _summary, build_report,
                      CART_ORDER, check_segments, midnight_warning, read_sessions_log, reject_table, segment_choices,
                      shared_recovery, step_warnings, whole_entities)
    from .core.normalize import NUMBER_COLUMNS
    from .io.detect import detect_roles
    from .io.load import check_format, source_names
    from .io.sources import BLANK, EXTRA, encoding_warnings, skipped_files
    from .schema import CANONICAL_COLUMNS, DEFAULT_SEGMENT_CANDIDATES, REJECT, ROLE_BY_NAME, ROW, SOURCE_FILE, TS

    say = progress or (lambda _msg: None)
    rules = gates.config_rules(cfg)  # bad rules fail before any work
    # (as api.analyze: a comparison or gates need the full analysis)
    funnel_only = funnel_only and compare is None and not getattr(period, "compare", None) and not rules
    check_format(cfg)
    cfg.check()
    if isinstance(sources, str):
        sources = [sources]
    spark = spark or spark_session(quiet)
    from pyspark.sql import functions as F   # (imported after the availability check)

    spark.conf.set("spark.sql.session.timeZone", "UTC")
    say("reading input with Spark")
    sniffed: dict = {}   # (the driver's sniff of each local file: its dialect and its decimal marks)
    raw = _read(spark, list(sources), sniffed)
    vendor, mapping = _vendor(raw.drop(_JSON_BLANK), cfg, ", ".join(sources)), None
    if _JSON_BLANK in raw.columns:
        if not vendor:   # (a generic NDJSON line's _blank, as the local reader's; a vendor export has none)
            known = F.col(BLANK) if BLANK in raw.columns else F.lit(None).cast("boolean")
            raw = raw.withColumn(BLANK, F.coalesce(known, F.col(_JSON_BLANK)))
        raw = raw.drop(_JSON_BLANK)
    if vendor:   # read as generic events, with the local engine's adapter
        from .io.adapters import ADAPTERS

        raw, mapping = _adapted(raw, vendor), dict(ADAPTERS[vendor].MAPPING)
    names = [c for c in raw.columns if c not in (ROW, SOURCE_FILE, EXTRA, BLANK)]
    roles = detect_roles(names, {} if vendor else cfg.columns, where=", ".join(sources), level=cfg.level,
                         given=cfg)
    rename = {src: ROLE_BY_NAME[r].column for r, src in roles.items()}
    others = [c for c in names if c not in rename]
    rename.update({c: f"prop_{c}" for c in others if c in CANONICAL_COLUMNS})
    extras = [rename.get(c, c) for c in others]
    attrs = [c for c in extras if c in DEFAULT_SEGMENT_CANDIDATES or c in cfg.segments]
    kept = list(attrs)   # the events' own columns a rejected row carries (api.reject_table)
    # each file's decimal mark of its text numbers, decided on the driver as locally, for the shards
    types = dict(raw.dtypes)
    marks, undecided = _decided_marks(list(sources), cfg, [c for s, c in rename.items()
                                                           if c in NUMBER_COLUMNS and types[s] == "string"], sniffed)
    files = _local_names(list(sources))   # (the rows' files, named as the local engine names them)
    # The sessions log (one row per session) is read on the driver and shipped to every shard.
    log = read_sessions_log(sessions, cfg) if sessions else None
    shipped = None
    if log is not None:
        attrs = log.joined_attrs(attrs)
        buf = io.BytesIO()
        log.lf.collect().write_ipc(buf)
        shipped = (log.name, buf.getvalue(), log.attrs)
    check_segments(cfg, attrs, segment_choices(extras, (), log))   # (no currency, payment method: not kept here)
    user_src = roles.get("user_id")
    sess_src = roles.get("session_id")
    ids = [_spark_id(c, cfg.missing_ids) for c in (user_src, sess_src) if c]
    whole_sessions = bool(user_src and sess_src) and whole_entities(cfg)
    if whole_sessions:
        # A session goes whole to the shard of its smallest user id (rows without a user id
        # and rows with one, or several users: as funnel.core.partials.session_owners). A
        # user-level funnel's entity is the row's own user id (else session id): the key as it is.
        from pyspark.sql import Window

        sid, uid = _spark_id(sess_src, cfg.missing_ids), _spark_id(user_src, cfg.missing_ids)
        owner = F.when(sid.isNotNull(), F.min(uid).over(Window.partitionBy(sid)))
        ids.insert(0, owner)
    key = F.coalesce(*ids) if ids else F.lit(0)
    shared = _shared_users(raw, user_src if whole_sessions else None, sess_src, cfg.missing_ids)   # (none by the row's own ids)
    # Timestamps cross as strings only when Spark cannot type them (CSV); typed columns stay typed.
    shards = raw.withColumn("__shard", key) \
        .repartition("__shard").drop("__shard")   # (a window cannot be a repartition expression)
    span = prev_span = lo = hi = None
    if not _no_period(period) or compare is not None:
        say("pass 0: the first and last event per shard (periods)")
        b = _collect_partials(shards.mapInArrow(_pass0(rename, cfg, marks, files), PARTIAL_SCHEMA))
        if "_bounds" not in b:
            _no_usable_rows(sources)
        lo, hi = b["_bounds"].row(0)
        span, prev_span = periods.resolve_periods(pl.DataFrame({TS: [lo, hi]}).lazy(), period, compare)
        _check_gates(rules, prev_span)
    spans = [(CURRENT, span)] + ([(PREVIOUS, prev_span)] if prev_span is not None else [])
    baseline: parts.Partials = {}   # (funnel-only: no baselines, no diagnosis)
    if not funnel_only:
        say("pass 1: baselines per shard")
        baseline = _collect_partials(shards.mapInArrow(
            _pass1(rename, cfg, marks, files, attrs, shipped, spans, shared), PARTIAL_SCHEMA))
    fixed = {}   # per period, the shared users' carts recovered or not over all their sessions
    for prefix, _ in spans:
        theirs = baseline.pop(TABLE + prefix + SHARED, None)
        got = shared_recovery([theirs.lazy()], shared, cfg)[0] if theirs is not None else pl.DataFrame()
        if got.height:
            fixed[prefix] = _ipc(got)
    ipc = {k: _ipc(v) for k, v in baseline.items()}
    say("pass 2: funnel counts per shard" if funnel_only else "pass 2: diagnosis and partials per shard")
    names = source_names(mapping=mapping) if mapping is not None else source_names(roles)   # (as load_events)
    p = _collect_partials(shards.mapInArrow(
        _pass2(rename, cfg, marks, files, attrs, shipped, ipc, tables, spans, shared, fixed, names, funnel_only),
        PARTIAL_SCHEMA))
    carts = p.pop(TABLE + "carts", pl.DataFrame())
    rejected = p.pop(TABLE + "rejects", None)
    if "_input" not in p:
        _no_usable_rows(sources)
    meta = p.pop("_input").row(0, named=True)
    counts = p.pop("_rejects")
    source = {"files": list(sources), "format": vendor or "events",
              "columns": mapping or _in_local_order(roles, files, sniffed, cfg)}

    def report_of(prefix: str):
        part = {name[len(prefix):]: df for name, df in p.items() if name.startswith(prefix)}
        if "totals" not in part:
            return None
        users = parts.users_of(part.pop("_users"))
        if funnel_only:   # (the shared users' abandonment: recovered over all their sessions)
            from .api import DEFERRED, merge_funnel_only

            deferred = p.get(TABLE + prefix + DEFERRED)
            part = merge_funnel_only([part] + ([{DEFERRED: deferred}] if deferred is not None else []), cfg)
        inp = _summary(source, counts, int(meta["n_rows"]), users, bool(meta["n_sessionized"]), log, part)
        return build_report(part, cfg, inp, attrs, funnel_only=funnel_only)

    say("building the report")
    report = report_of(CURRENT)
    if report is None:
        if span is None:
            _no_usable_rows(sources)
        raise _no_entities_in(span, lo, hi, cfg)
    before = report_of(PREVIOUS) if prev_span is not None else None
    report = _ci_report(report, span, prev_span, before, rules)
    # (a step no entity reached, rare: only then are the input's event names counted, one more job)
    report = dataclasses.replace(report, warnings=step_warnings(report, cfg, lambda: _event_names(raw, rename), counts)
        + midnight_warning(
        report, cfg, lambda: int(meta["n_timed"] or 0)) + skipped_files(list(sources)) + encoding_warnings(list(sources))
        + undecided + _store_warnings(list(sources)) + report.warnings)
    return Analysis(report=report, carts=carts.sort(CART_ORDER) if carts.height else carts, counts=counts,
                    rejects=reject_table(rejected if rejected is not None else pl.DataFrame(
                        schema={SOURCE_FILE: pl.String, ROW: pl.Int64, REJECT: pl.String,
                                **dict.fromkeys(kept, pl.String)}), log if tables else None,
                        by_line=True))


def _in_local_order(roles: dict[str, str], files: dict[str, str], sniffed: dict, cfg: Config) -> dict[str, str]:
    """``roles`` (role -> column, detected on the union of the files' columns) in the order the
    local engine's ``input.columns`` gives them (``load.load_files``: each file's roles, the
    first file's first, then those a later file adds). ``files``: the local files
    (``_local_names``), sniffed once (``_sniff``); a single file, or files the driver cannot
    read (a store's), keep the union's order."""
    from .io.detect import detect_roles
    from .io.sources import BLANK, EXTRA, file_schema
    from .schema import ROW, SOURCE_FILE

    if len(files) < 2:
        return dict(roles)
    order: list[str] = []
    for name in files.values():
        try:
            src = _sniff(Path(name), sniffed)
            names = [c for c in file_schema(src).names() if c not in (ROW, SOURCE_FILE, EXTRA, BLANK)]
            found = detect_roles(names, cfg.columns, where=name, level=cfg.level, given=cfg)
        except (InputError, OSError, pl.exceptions.PolarsError):
            continue   # (the union's order for what this file would add)
        order += [r for r in found if r not in order]
    rank = {r: i for i, r in enumerate(order)}
    return {r: roles[r] for r in sorted(roles, key=lambda r: rank.get(r, len(rank)))}


def _event_names(raw, rename: dict[str, str]) -> dict[str, int] | None:
    """``api.event_names`` on Spark: the input's distinct event names, as read (the local
    engine's ``clean_string``, on the driver: the names are few), with their rows; one job over
    the event column of ``raw`` (``rename``: its columns' canonical names). None without one."""
    from pyspark.sql import functions as F

    from .core.normalize import clean_string
    from .schema import EVENT

    src = next((s for s, c in rename.items() if c == EVENT), None)
    if src is None:
        return None
    rows = raw.groupBy(F.col(src).cast("string").alias(EVENT)).count().collect()
    got = pl.DataFrame({EVENT: [r[EVENT] for r in rows], "n": [r["count"] for r in rows]},
                       schema={EVENT: pl.String, "n": pl.Int64})
    return dict(got.select(clean_string(EVENT), "n").drop_nulls(EVENT).group_by(EVENT).agg(pl.col("n").sum())
                .iter_rows())


def _ipc(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_ipc(buf)
    return buf.getvalue()


# ``partials._id`` (``normalize.harmless``, then outer white space stripped) in Java's regex
# syntax, for the shard key: the partitions then hold every row of an id as they will read it.
_J_BREAKS = "[\\t\\n\\r\\u000B\\f]+"
_J_UNSAFE = "[\\p{Cc}\\u200E\\u200F\\u202A-\\u202E\\u2066-\\u2069]"
_J_OUTER_BLANKS = "^\\p{IsWhite_Space}+|\\p{IsWhite_Space}+$"


def _spark_id(c: str, missing: tuple[str, ...] = ()):
    """Id column ``c`` for the shard key, as the partitions will read it (``partials._id``):
    line breaks and tabs one space, other control and bidi-override characters U+FFFD, outer
    white space stripped, blank or a null spelled as text (``TEXT_NULLS``) = missing
    (tests/test_spark.py compares them on every such character and spelling), and so is an id
    listed in ``missing`` (``[input] missing_ids``: ``normalize.missing_ids``)."""
    from pyspark.sql import functions as F

    from .core.normalize import TEXT_NULLS

    t = F.regexp_replace(F.regexp_replace(F.col(c).cast("string"), _J_BREAKS, " "), _J_UNSAFE, "\uFFFD")
    t = F.regexp_replace(t, _J_OUTER_BLANKS, "")
    return F.when(~t.isin(*TEXT_NULLS, *missing), t)   # (blank, a null spelled as text, or a listed id: missing)


def _shared_users(raw, user_src: str | None, sess_src: str | None, missing: tuple[str, ...] = ()) -> pl.Series:
    """The users a shard may not hold alone, as the partitions read them (cleaned), for
    ``partials.user_tally`` and the recovery over all shards: every user id of a session with
    several (the session goes to the shard of the smallest). One job over the two id columns;
    empty without both."""
    from .core.partials import _id
    from .schema import USER

    if not (user_src and sess_src):
        return parts.NO_SHARED
    from pyspark.sql import functions as F

    u, s = _spark_id(user_src, missing), _spark_id(sess_src, missing)
    several = raw.where(s.isNotNull() & u.isNotNull()).groupBy(s).agg(F.collect_set(u).alias("us")) \
        .where(F.size("us") > 1).select(F.explode("us").alias("u"))
    got = [r["u"] for r in several.distinct().collect()]
    return pl.DataFrame({USER: got}, schema={USER: pl.String}).select(_id(USER, False)) \
        .to_series().drop_nulls().unique().sort()


def _no_usable_rows(sources) -> None:
    from .errors import InputError

    raise InputError(f"{', '.join(sources)}: no usable rows", "check the input with 'funnel validate'")


__all__ = ["EngineError", "analyze_spark", "spark_session"]
