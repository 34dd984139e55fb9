"""Find input files and scan them lazily (CSV/TSV, Parquet, NDJSON; plain, .gz or .zst).

Each file becomes a LazyFrame with two bookkeeping columns: ``_file`` (the path as given)
and ``_row`` (1-based data row within the file), so every rejected row can be named.
Tabular text is read as strings (types are parsed later, row by row, so one bad value
rejects one row instead of failing the whole file).
"""

from __future__ import annotations

import glob as globmod
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..schema import ROW, SOURCE_FILE

COMPRESSIONS = (".gz", ".zst", ".zstd")
FORMATS = ("csv", "tsv", "parquet", "ndjson")
_EXT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv", ".parquet": "parquet",
        ".pq": "parquet", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson"}


@dataclass(frozen=True)
class SourceFile:
    path: Path
    format: str          # csv | tsv | parquet | ndjson
    compression: str     # "" | gz | zst
    size: int


def resolve_paths(specs: list[str] | tuple[str, ...]) -> list[Path]:
    """Files, globs and folders (recursively, hidden files skipped) -> sorted unique files."""
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if any(ch in spec for ch in "*?["):
            hits = sorted(Path(h) for h in globmod.glob(spec, recursive=True) if Path(h).is_file())
            if not hits:
                raise InputError(f"no files match {spec!r}", "check the pattern (quote it so the shell does not expand it)")
            out.extend(hits)
        elif p.is_dir():
            hits = sorted(f for f in p.rglob("*") if f.is_file() and not _hidden(f, p) and _known(f))
            if not hits:
                raise InputError(f"folder {spec} holds no CSV, TSV, Parquet or NDJSON files",
                                 "point at the files or a folder that contains them")
            out.extend(hits)
        elif p.is_file():
            out.append(p)
        elif p.exists():
            raise InputError(f"{spec} is not a regular file", "pass a file, a folder or a glob")
        else:
            raise InputError(f"file not found: {spec}", "check the path (run 'funnel sample' for example data)")
    seen: set[Path] = set()
    uniq = []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            uniq.append(f)
    return uniq


def _hidden(f: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) and "=" not in part for part in f.relative_to(root).parts)


def _known(f: Path) -> bool:
    name = f.name.lower()
    for c in COMPRESSIONS:
        if name.endswith(c):
            name = name[: -len(c)]
    return Path(name).suffix in _EXT


def sniff_format(path: Path) -> SourceFile:
    """Format from the extension, confirmed or found by the first bytes."""
    name = path.name.lower()
    compression = ""
    for c in COMPRESSIONS:
        if name.endswith(c):
            compression = "zst" if c.startswith(".zst") else "gz"
            name = name[: -len(c)]
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: the file is empty", "export the log again or remove the file from the input")
    head = path.open("rb").read(4096)
    if head[:2] == b"\x1f\x8b":
        compression = "gz"
    elif head[:4] == b"\x28\xb5\x2f\xfd":
        compression = "zst"
    if head[:4] == b"PAR1":
        return SourceFile(path, "parquet", "", size)
    fmt = _EXT.get(Path(name).suffix)
    if fmt == "parquet":
        raise InputError(f"{path}: not a Parquet file (no PAR1 header)", "check the file or its extension")
    if compression:
        text = _decompressed_head(path, compression)
    else:
        text = head
    if fmt is None or fmt == "csv":
        stripped = text.lstrip()
        if stripped[:1] in (b"{",):
            fmt = "ndjson"
        elif fmt is None:
            first = text.split(b"\n", 1)[0]
            fmt = "tsv" if first.count(b"\t") > first.count(b",") else "csv"
    if fmt == "csv":
        first = text.split(b"\n", 1)[0]
        if first.count(b"\t") > first.count(b","):
            fmt = "tsv"
    if b"\x00" in text[:1024] and fmt != "parquet":
        raise InputError(f"{path}: looks like a binary file, not {fmt.upper()}",
                         "pass CSV, TSV, Parquet or NDJSON (optionally .gz/.zst)")
    return SourceFile(path, fmt, compression, size)


def _decompressed_head(path: Path, compression: str) -> bytes:
    try:
        if compression == "gz":
            import gzip

            with gzip.open(path, "rb") as fh:
                return fh.read(4096)
        import zstandard  # optional: polars reads .zst itself; this is only for sniffing

        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as fh:
            return fh.read(4096)
    except ImportError:
        return b""
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot decompress ({exc})", "the file may be truncated; export it again") from None


def scan_file(src: SourceFile) -> pl.LazyFrame:
    """Lazy scan of one file with ``_file`` and ``_row`` added."""
    p = str(src.path)
    if src.format == "parquet":
        lf = pl.scan_parquet(p)
    elif src.format == "ndjson":
        lf = pl.scan_ndjson(p, infer_schema_length=1000)
    else:
        lf = pl.scan_csv(
            p, separator="\t" if src.format == "tsv" else ",", infer_schema=False,
            encoding="utf8-lossy", truncate_ragged_lines=True, missing_columns="insert",
        )
    return lf.with_row_index(ROW, offset=1).with_columns(pl.lit(p).alias(SOURCE_FILE))


def file_schema(src: SourceFile) -> pl.Schema:
    """Column names and types, reading only what the format needs."""
    try:
        return scan_file(src).collect_schema()
    except Exception as exc:  # polars raises many types for unreadable files
        raise InputError(f"{src.path}: cannot read as {src.format.upper()} ({_short(exc)})",
                         "check that the file is complete and in the format its name says") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
