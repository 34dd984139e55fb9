"""Find input files and scan them lazily (CSV/TSV, Parquet, NDJSON; plain, .gz or .zst).

Each file becomes a LazyFrame with two bookkeeping columns: ``_file`` (the path as given)
and ``_row`` (1-based data row within the file), so every rejected row can be named.
Tabular text is read as strings (types are parsed later, row by row, so one bad value
rejects one row instead of failing the whole file).

Dirty text is handled here, before polars sees it: UTF-16 and legacy 8-bit files (latin-1 /
Windows-1252, told apart from UTF-8 by their first 64 KB) are transcoded to a private UTF-8 temp
copy (the input itself is never touched), and so are old-Mac CR line ends; a UTF-8 byte-order
mark is accepted; the CSV separator (, tab ; |) is taken from the header line. CSV rows longer
than the header keep their surplus fields in ``_extra`` (so the normalizer can reject them
instead of silently cutting them off) and blank rows are flagged in ``_blank``; NDJSON keys and
types are inferred from the whole file, so a key or a type change first seen after line 1000 is
not lost. When polars cannot read a file, ``read_error`` names the file and, for NDJSON and CSV
quoting, the line.
"""

from __future__ import annotations

import atexit
import codecs
import fnmatch
import functools
import glob as globmod
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import polars as pl

from ..errors import InputError
from ..schema import ROW, SOURCE_FILE

COMPRESSIONS = (".gz", ".zst", ".zstd")
FORMATS = ("csv", "tsv", "parquet", "ndjson")
_EXT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv", ".parquet": "parquet",
        ".pq": "parquet", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson"}
EXTRA = "_extra"            # surplus fields of a CSV row longer than its header (else null)
BLANK = "_blank"            # true for a blank line / a row whose every field is empty (text formats)
_N_EXTRA = 8                # surplus fields kept for the rejects file (more are still detected)
_EXTRAS = [f"_extra_field_{i}" for i in range(_N_EXTRA)]   # the columns the CSV reader gives them
_SNIFF = 65536
# What reading a damaged file can raise. A corrupt Parquet page can make polars panic
# (PanicException derives from BaseException, so ``except Exception`` misses it).
READ_ERRORS: tuple[type[BaseException], ...] = (Exception, pl.exceptions.PanicException)


@functools.cache
def _decompress_errors() -> tuple[type[BaseException], ...]:
    """What a truncated or corrupt .gz/.zst raises while being read."""
    import zlib

    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:
        pass
    return errors


@dataclass(frozen=True)
class SourceFile:
    path: Path
    format: str          # csv | tsv | parquet | ndjson
    compression: str     # "" | gz | zst
    size: int
    encoding: str = "utf-8"   # utf-8 | utf-8-sig | utf-16 | utf-16-le | utf-16-be | cp1252 | latin-1
    newline: str = "\n"       # "\r": old Mac line ends, turned into "\n" in the UTF-8 copy
    separator: str = ""       # CSV/TSV field separator ("" = the format's own: , or tab)

    @property
    def sep(self) -> str:
        return self.separator or ("\t" if self.format == "tsv" else ",")


def resolve_paths(specs: list[str] | tuple[str, ...]) -> list[Path]:
    """Files, globs and folders (recursively, hidden files skipped) -> sorted unique files. A
    spec naming an existing file or folder is that, pattern characters and all (``events[1].csv``)."""
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            hits, skipped = _folder_files(p)
            if not hits:
                also = f" (skipped: {_listed(skipped)})" if skipped else ""
                raise InputError(f"folder {spec} holds no CSV, TSV, Parquet or NDJSON files{also}",
                                 "point at the files or a folder that contains them")
            out.extend(hits)
        elif _glob(spec):
            hits, skipped = _glob_files(spec)
            if skipped and not hits:
                raise InputError(f"every file matching {spec!r} is empty: {', '.join(str(f) for f, _ in skipped[:10])}"
                                 + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""),
                                 "export the logs again, or check the pattern")
            if not hits:
                raise InputError(f"no files match {spec!r}",
                                 "check the pattern (quote it so the shell does not expand it)")
            out.extend(hits)
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
    from .writers import protect

    protect(uniq)   # no output of this process may replace an input
    return uniq


# Files a folder holds beside its logs, by name (any extension, any case): README.txt,
# LICENSE, manifest.json, ... An export's data files are never named so.
_NOT_LOGS = ("readme", "license", "licence", "copying", "notice", "changelog", "changes", "manifest")


def _folder_files(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files of folder ``root`` (recursively, hidden ones aside) read as logs, sorted, and
    the others with why (``_not_a_log``). Only for a folder: a file named explicitly is always
    read (and a file that is no log is then an error saying why)."""
    taken: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for f in sorted(f for f in _walk(root) if f.is_file()):
        why = _not_a_log(f)
        if why is None:
            taken.append(f)
        else:
            skipped.append((f, why))
    return taken, skipped


def _unreadable(exc: OSError) -> InputError:
    """The error for a folder of the input that cannot be listed: a part of the input left out
    silently would be a wrong report."""
    return InputError(f"cannot read folder {exc.filename} ({exc.strerror or exc})",
                      "give funnel read access to it, or name the files or folders to read")


def _walk(root: Path) -> list[Path]:
    """Every entry under folder ``root`` but hidden ones (``_hidden``; a hidden folder is not
    entered), symbolic links to folders not followed. A folder that cannot be listed is an
    error naming it (``Path.rglob`` would skip it without a word)."""
    def fail(exc: OSError) -> None:
        raise _unreadable(exc)

    out: list[Path] = []
    for top, dirs, files in os.walk(root, onerror=fail):
        base = Path(top)
        dirs[:] = [d for d in dirs if not _hidden(base / d, root)]
        out.extend(base / d for d in dirs)
        out.extend(f for f in (base / n for n in files) if not _hidden(f, root))
    return out


def _glob_unreadable(spec: str) -> None:
    """Raise for a folder that glob ``spec`` would have to list but cannot (``glob.glob`` skips
    it without a word): the folders under the pattern's fixed prefix whose path the pattern's
    folder parts can match (any, below a ``**``)."""
    parts = Path(spec).parts
    fixed = next((i for i, part in enumerate(parts) if _glob(part)), len(parts))
    base, rest = Path(*parts[:fixed]) if fixed else Path("."), parts[fixed:]
    if not rest:
        return
    deep = "**" in rest

    def could_match(rel: tuple[str, ...]) -> bool:
        for i, part in enumerate(rel):
            if i >= len(rest) - 1:
                return False
            if rest[i] == "**":
                return True
            if not fnmatch.fnmatchcase(part, rest[i]):
                return False
        return True

    def visit(folder: Path, rel: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as it:
                subs = [e.name for e in it if e.is_dir(follow_symlinks=not deep) and not e.name.startswith(".")]
        except FileNotFoundError:
            return
        except OSError as exc:
            exc.filename = str(folder)
            raise _unreadable(exc) from None
        for name in sorted(subs):
            sub = rel + (name,)
            if (deep or len(sub) < len(rest)) and could_match(sub):
                visit(folder / name, sub)

    if base.is_dir():
        visit(base, ())


def _glob(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def _glob_files(spec: str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files glob ``spec`` matches, sorted, read as logs, and the empty ones (``_empty``),
    skipped: a pattern names its files, so only an empty one is not read."""
    taken: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    _glob_unreadable(spec)
    for f in sorted(Path(h) for h in globmod.glob(spec, recursive=True) if Path(h).is_file()):
        if _empty(f):
            skipped.append((f, EMPTY))
        else:
            taken.append(f)
    return taken, skipped


EMPTY = "empty"


def _magic(head: bytes) -> str:
    """The compression a file's first bytes name: ``gz``, ``zst``, or none."""
    return "gz" if head[:2] == b"\x1f\x8b" else "zst" if head[:4] == b"\x28\xb5\x2f\xfd" else ""


def _empty(f: Path, size: int | None = None, head: bytes | None = None) -> bool:
    """File ``f`` holds nothing: no bytes, or a compressed stream of none (a .gz of nothing).
    Found through a folder or a glob it is skipped (and named); named explicitly, an error.
    ``size`` and ``head`` (its first bytes): given by a caller that read them already."""
    try:
        if size is None:
            size = f.stat().st_size
        if size == 0:
            return True
        if head is None:
            with f.open("rb") as fh:
                head = fh.read(4)
    except OSError:
        return False   # (the reader names what is wrong with it)
    compression = _magic(head)
    if not compression:
        return False
    try:
        with _open_decompressed(f, compression) as fh:
            return not fh.read(1)
    except (ImportError, *_decompress_errors()):
        return False


def _not_a_log(f: Path) -> str | None:
    """Why file ``f``, found in a folder, is not read as a log; None when it is. Taken: the data
    extensions (.csv .tsv .tab .txt .parquet .pq .ndjson .jsonl .json, plain, .gz or .zst) but
    documentation by its name (``_NOT_LOGS``), an empty file (``_empty``), a .json holding one
    pretty-printed JSON document (its first line a lone '{' or '[': funnel's own JSON report, a
    manifest; NDJSON has one object per line) and a .txt whose first line has no field separator
    (prose, not a table)."""
    if not _known(f):
        return "not a data file"
    name, compression = _named(f)
    if name.split(".")[0] in _NOT_LOGS:
        return "documentation"
    if _empty(f):
        return EMPTY
    ext = Path(name).suffix
    if ext not in (".json", ".txt"):
        return None
    try:
        with _open_decompressed(f, compression) as fh:
            head = fh.read(_SNIFF)
    except (ImportError, *_decompress_errors()):
        return None   # (read as a log: the reader names what is wrong with it)
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n").split(b"\n", 1)[0].strip()
    if ext == ".json" and first in (b"{", b"["):
        return "a JSON document, not NDJSON: e.g. a funnel report"
    if ext == ".txt" and first and not any(sep in first for sep in (b",", b"\t", b";", b"|")):
        return "text, not a table"
    return None


def _listed(skipped: list[tuple[Path, str]], most: int = 10) -> str:
    """``skipped`` files as a message lists them: 'a (why), b (why)' and how many more."""
    shown = ", ".join(f"{f} ({why})" for f, why in skipped[:most])
    return shown + (f" and {len(skipped) - most} more" if len(skipped) > most else "")


def skipped_files(specs: list[str] | tuple[str, ...]) -> list[str]:
    """The warning (a report warning and a progress line: a file skipped is never silent) for
    the files of the folders and globs among ``specs`` not read as logs (``_not_a_log``,
    ``_glob_files``), naming them; none when every file is read."""
    skipped = [s for spec in specs
               for s in (_glob_files(spec)[1] if _glob(spec) else
                         _folder_files(Path(spec))[1] if Path(spec).is_dir() else [])]
    if not skipped:
        return []
    return [(f"skipped {len(skipped)} file(s) in the input folder(s) or pattern(s) that are not event logs: "
             f"{_listed(skipped)} — name a file explicitly to read it anyway")]


def _hidden(f: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) and "=" not in part for part in f.relative_to(root).parts)


def _named(path: Path) -> tuple[str, str]:
    """(the file's name in lower case without a compression suffix, the compression that
    suffix names: "gz", "zst" or "")."""
    name, compression = path.name.lower(), ""
    for c in COMPRESSIONS:
        if name.endswith(c):
            name, compression = name[: -len(c)], "zst" if c.startswith(".zst") else "gz"
    return name, compression


def _known(f: Path) -> bool:
    return Path(_named(f)[0]).suffix in _EXT


def sniff_format(path: Path) -> SourceFile:
    """Format, compression and text encoding from the extension and the first bytes."""
    name, compression = _named(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(_SNIFF)
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})", "check that the file is readable") from None
    if _empty(path, size, head):
        raise InputError(f"{path}: the file is empty", "export the log again or remove the file from the input")
    if magic := _magic(head):
        compression = magic
    elif compression and head[:4] != b"PAR1":
        compression = ""    # named .gz/.zst but stored plain: read it as it is
    if head[:4] == b"PAR1":
        return SourceFile(path, "parquet", "", size)
    fmt = _EXT.get(Path(name).suffix)
    what = (fmt or "csv").upper()
    if fmt == "parquet" and compression:
        # (Parquet compresses its own pages, so a .gz/.zst around it saves little: not read)
        raise InputError(f"{path}: a compressed Parquet file (.{compression}), which funnel does not read",
                         f"decompress it first (e.g. {'gunzip -k' if compression == 'gz' else 'zstd -d'} "
                         f"{path.name})")
    if fmt == "parquet":
        raise InputError(f"{path}: not a Parquet file (no PAR1 header)", "check the file or its extension")
    text = _decompressed_head(path, compression) if compression else head
    if text[:4] == b"PK\x03\x04":
        raise InputError(f"{path}: a ZIP archive (or an Excel .xlsx workbook), not {what}",
                         "unzip it, or export the sheet as CSV")
    encoding = _sniff_encoding(text)
    if encoding is None:
        raise InputError(f"{path}: looks like a binary file, not {what}",
                         "pass CSV, TSV, Parquet or NDJSON (optionally .gz/.zst)")
    if encoding != "utf-8":
        text = text.decode(encoding, errors="replace").encode("utf-8")
    stripped = text.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        raise InputError(f"{path}: no header row (the file holds only blank lines)",
                         "export the log again with its header row")
    if re.match(rb"(?i)<(!doctype|html|\?xml|head|body|!--)", stripped):
        raise InputError(f"{path}: looks like an HTML or XML page, not {what}",
                         "the download or export probably failed; fetch the log again")
    if re.match(rb"\[\s*[\[\]{]", stripped) or (fmt == "ndjson" and stripped[:1] == b"["):
        raise InputError(f"{path}: a JSON array, not NDJSON (one JSON object per line)",
                         f"convert it, e.g. jq -c '.[]' {path.name} > events.ndjson")
    lone_cr = len(re.findall(rb"\r(?!\n)", stripped))
    newline = "\r" if lone_cr > stripped.count(b"\n") else "\n"
    if fmt is None or fmt == "csv":
        if stripped[:1] in (b"{",):
            fmt = "ndjson"
    separator = ""
    if fmt in (None, "csv", "tsv"):
        first = re.split(rb"\r\n|\n|\r", stripped, maxsplit=1)[0]
        separator = _sniff_separator(first, "\t" if fmt == "tsv" else ",")
        fmt = "tsv" if separator == "\t" else "csv"
    return SourceFile(path, fmt, compression, size, encoding, newline, separator)


def _sniff_separator(header: bytes, default: str) -> str:
    """The field separator of a header line: the most frequent of , tab ; | outside quotes."""
    bare = re.sub(rb'"[^"]*"', b"", header)
    counts = {sep: bare.count(sep.encode()) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=lambda k: (counts[k], k == default))
    return best if counts[best] > counts[default] else default


def _sniff_encoding(head: bytes) -> str | None:
    """The text encoding of a file from its first bytes; None when it looks binary."""
    if head[:3] == codecs.BOM_UTF8:
        return "utf-8-sig"
    if head[:4] in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE):
        return "utf-32"
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    sample = head[:1024]
    if b"\x00" in sample:
        # UTF-16 without a byte-order mark: ASCII text has every other byte zero.
        even, odd = sample[0::2], sample[1::2]
        if len(sample) >= 8 and odd.count(0) == len(odd) and even.count(0) == 0:
            return "utf-16-le"
        if len(sample) >= 8 and even.count(0) == len(even) and odd.count(0) == 0:
            return "utf-16-be"
        return None
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(head) - 3:
            return "utf-8"          # a multi-byte character cut by the sniff window
    # Some valid multi-byte UTF-8 means a UTF-8 file with a few bad bytes (read lossily);
    # none means a legacy 8-bit file.
    if any(ord(ch) > 127 and ch != "\ufffd" for ch in head.decode("utf-8", errors="replace")):
        return "utf-8"
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _decompressed_head(path: Path, compression: str) -> bytes:
    try:
        with _open_decompressed(path, compression) as fh:
            return fh.read(_SNIFF)
    except ImportError:
        return b""
    except _decompress_errors() as exc:
        raise InputError(f"{path}: cannot decompress ({_short(exc)})",
                         "the file may be truncated; export it again") from None


def _open_decompressed(path: Path, compression: str) -> IO[bytes]:
    if compression == "gz":
        import gzip

        return gzip.open(path, "rb")
    if compression == "zst":
        return io.BufferedReader(_ZstdFrames(path.open("rb")), 1 << 20)
    return path.open("rb")


class _ZstdFrames(io.RawIOBase):
    """A .zst file's decompressed bytes, frame after frame, raising ``ZstdError`` when the file
    ends inside a frame. zstandard's ``stream_reader`` just stops there: a truncated file read
    as a shorter one (a small one as empty: "no header row"), while a truncated .gz raises.
    Wrapped in a ``BufferedReader`` it also gives lines (the quoting and JSON line scans)."""

    def __init__(self, raw: IO[bytes]):
        import zstandard  # optional: polars reads .zst itself; needed only to sniff/transcode

        self._zstd, self._raw, self._frame, self._out = zstandard, raw, None, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not self._out:
            data = self._raw.read(1 << 17)   # (small: what is decompressed waits in _out)
            if not data:
                if self._frame is not None:
                    raise self._zstd.ZstdError("the file ends inside a zstd frame (truncated)")
                return 0
            while data:
                if self._frame is None:
                    self._frame = self._zstd.ZstdDecompressor().decompressobj()
                self._out += self._frame.decompress(data)
                data = b""
                if self._frame.eof:   # a frame ended: what follows starts the next one
                    data, self._frame = self._frame.unused_data, None
        n = min(len(buf), len(self._out))
        buf[:n], self._out = self._out[:n], self._out[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


# --- transcoding to a private UTF-8 copy ----------------------------------------------------

_TMP: dict[str, str] = {}
_TRANSCODED: dict[tuple[str, int, int], Path] = {}


def _tmpdir() -> Path:
    if "dir" not in _TMP:
        d = tempfile.mkdtemp(prefix="funnel-utf8-")
        _TMP["dir"] = d
        atexit.register(shutil.rmtree, d, True)
    return Path(_TMP["dir"])


def literal(path: str | Path) -> str:
    """``path`` for a polars scan of that one file. polars reads every path as a glob pattern, so
    a file named ``events[1].csv`` was read as ``events1.csv`` (or not found); its pattern
    characters go in brackets, where each matches only itself."""
    return re.sub(r"([\[\]*?])", r"[\1]", str(path))


def _text_path(src: SourceFile) -> Path:
    """The path polars should read: the file itself, or its UTF-8 copy when it is not UTF-8."""
    plain = src.encoding == "utf-8" or (src.encoding == "utf-8-sig" and src.format != "ndjson")
    if src.format == "parquet" or (plain and src.newline == "\n"):
        return src.path
    st = src.path.stat()
    key = (str(src.path.resolve()), st.st_size, st.st_mtime_ns)
    hit = _TRANSCODED.get(key)
    if hit is not None and hit.exists():
        return hit
    out = _tmpdir() / f"{len(_TRANSCODED)}-{src.path.name.split('.')[0]}.{src.format}"
    errors = "strict" if src.encoding.startswith(("utf-16", "utf-32", "latin")) else "replace"
    nl, seen, bad = (b"\r" if src.newline == "\r" else b"\n"), [0], [0, 0, 0]   # lines before; bad lines, first, last

    def counted(exc: UnicodeError) -> tuple[str, int]:   # UTF-8 bytes that are not: U+FFFD, and remembered
        if not isinstance(exc, UnicodeDecodeError):
            raise exc
        line = seen[0] + exc.object.count(nl, 0, exc.start) + 1
        if line != bad[2]:
            bad[:] = [bad[0] + 1, bad[1] or line, line]
        return "\ufffd", exc.end

    if src.encoding.startswith("utf-8"):
        codecs.register_error("funnel-utf8", counted)
        errors = "funnel-utf8"
    decoder = codecs.getincrementaldecoder(src.encoding)(errors=errors)
    try:
        with _open_decompressed(src.path, src.compression) as raw, out.open("w", encoding="utf-8", newline="") as dst:
            carry = ""
            while True:
                chunk = raw.read(1 << 20)
                text = carry + decoder.decode(chunk, final=not chunk)
                seen[0] += chunk.count(nl)
                carry = ""
                if src.newline == "\r":
                    if chunk and text.endswith("\r"):
                        text, carry = text[:-1], "\r"
                    text = re.sub(r"\r(?!\n)", "\n", text)
                dst.write(text)
                if not chunk:
                    break
    except _decompress_errors() as exc:
        out.unlink(missing_ok=True)
        raise InputError(f"{src.path}: cannot read as {src.encoding} text ({_short(exc)})",
                         "the file may be truncated or not text; export it again as UTF-8") from None
    if bad[0]:
        _NOT_UTF8[str(src.path.resolve())] = (bad[0], bad[1])
    _TRANSCODED[key] = out
    return out


# --- scanning ---------------------------------------------------------------------------------

_HEADERLESS: set = set()
_HEADERS: dict[tuple[str, int, int], list[str]] = {}
_NDJSON: dict[tuple[str, int, int], pl.Schema] = {}
_NDJSON_FILES: dict[str, SourceFile] = {}   # the ``_file`` value of each NDJSON file scanned -> its source
_BLANK_LINES: dict[tuple[str, int, int], pl.Series] = {}
_RECORDS: dict[tuple[str, int, int], int] = {}   # data rows of a text file (counted_rows)
# Text files with bytes that are not UTF-8, read with U+FFFD in their place (the encoding is
# told from a file's first 64 KB: a UTF-8 file with a stray bad byte keeps its row): path ->
# (lines holding such bytes, the first of them). ``encoding_warnings`` reports them.
_NOT_UTF8: dict[str, tuple[int, int]] = {}


def _key(src: SourceFile) -> tuple[str, int, int]:
    st = src.path.stat()
    return (str(src.path.resolve()), st.st_size, st.st_mtime_ns)


def _enriched_tsv(path: Path, sep: str) -> bool:
    """A Snowplow enriched-event TSV: no header row, 131 fields, its own column order."""
    if sep != "\t":
        return False
    from .adapters.snowplow import is_enriched_tsv_line

    with path.open("rb") as fh:
        return is_enriched_tsv_line(fh.readline(1 << 20))


def headerless(src: SourceFile) -> bool:
    """Whether the CSV/TSV ``src``, once scanned (``scan_file``, ``file_schema``), was read as a
    Snowplow enriched TSV: no header row (data from line 1), the enriched column names, no quoting."""
    return _key(src) in _HEADERLESS


def _csv_header(src: SourceFile, path: Path, sep: str) -> list[str]:
    key = _key(src)
    if key not in _HEADERS and _enriched_tsv(path, sep):
        from .adapters.snowplow import ENRICHED_TSV_COLUMNS

        _HEADERS[key] = list(ENRICHED_TSV_COLUMNS)
        _HEADERLESS.add(key)
    if key not in _HEADERS:
        names = pl.scan_csv(literal(path), separator=sep, infer_schema=False, encoding="utf8-lossy",
                            truncate_ragged_lines=True).collect_schema().names()
        if not any(n.strip() for n in names):
            raise InputError(f"{src.path}: no header row (the first line is blank)",
                             "export the log again with its header row")
        _check_repeated(src, names)
        _HEADERS[key] = names
    return _HEADERS[key]


def _check_repeated(src: SourceFile, names: list[str]) -> None:
    """A header naming a column twice is an error: polars reads the second as ``<name>_duplicated_0``,
    so that column would be kept under a name nobody wrote (or its role taken by the first one)
    without a word. Blank names are left alone (an unnamed column, however often)."""
    for n in names:
        base, sep, k = n.rpartition("_duplicated_")
        if sep and k.isdigit() and base.strip() and base in names:
            from .detect import _show

            raise InputError(f"{src.path}: the header names column {_show(base)!r} more than once",
                             "rename one of them in the header, then map its role with --column ROLE=COLUMN "
                             "if its new name is not a known one")


def _ndjson_schema(src: SourceFile, path: Path) -> pl.Schema:
    """Keys and types from every line (a key first seen on line 5,000 still counts)."""
    key = _key(src)
    if key not in _NDJSON:
        try:
            _NDJSON[key] = pl.scan_ndjson(literal(path), infer_schema_length=None).collect_schema()
        except READ_ERRORS as exc:  # polars raises many types for bad JSON
            raise read_error(src, exc) from None
    return _NDJSON[key]


def scan_file(src: SourceFile, *, text: bool = False) -> pl.LazyFrame:
    """Lazy scan of one file with ``_file`` and ``_row`` added (CSV/TSV: and ``_extra``).

    ``text=True`` reads NDJSON values as strings, like CSV (nested values as JSON text): what the
    generic events format wants, so a type change inside a column rejects rows, not the file.
    """
    p = str(src.path)
    path = _text_path(src)
    if src.format == "parquet":
        lf = pl.scan_parquet(literal(p)).with_row_index(ROW, offset=1)
    elif src.format == "ndjson":
        schema = _ndjson_schema(src, path)
        if text:
            schema = pl.Schema({k: pl.String for k in schema.names()})
        lf = pl.scan_ndjson(literal(path), schema=schema).with_row_index(ROW, offset=1)   # (records: see line_numbers)
        _NDJSON_FILES[p] = src
    else:
        sep = src.sep
        names = _csv_header(src, path, sep)
        extras = _EXTRAS
        # No header mode with surplus columns: row 0 is the header, long rows fill the extras.
        headerless = _key(src) in _HEADERLESS   # Snowplow enriched TSV: data from line 1
        lf = (
            _csv_scan(src, path, names, headerless)
            .with_row_index(ROW, offset=1 if headerless else 0)
            .filter(pl.col(ROW) > 0)
        )
        surplus = pl.any_horizontal([pl.col(x).is_not_null() for x in extras])
        lf = lf.with_columns(
            pl.when(surplus).then(pl.concat_str(extras, separator=sep, ignore_nulls=True))
            .otherwise(None).alias(EXTRA),
            _blank(names, extras),
        ).drop(extras)
    if src.format == "ndjson" and text:
        lf = lf.with_columns(_blank(list(schema.names()), []))
    return lf.with_columns(pl.lit(p).alias(SOURCE_FILE))


def _csv_scan(src: SourceFile, path: Path, names: list[str], headerless: bool) -> pl.LazyFrame:
    """The CSV/TSV reader of ``scan_file``: every line a record, the header included, unless a
    quoted field spans lines; the header's ``names`` and, for long rows, ``_EXTRAS``, all text."""
    schema = {n: pl.String for n in [*names, *_EXTRAS]}
    return pl.scan_csv(literal(path), separator=src.sep, has_header=False, schema=schema, encoding="utf8-lossy",
                       truncate_ragged_lines=True, missing_columns="insert", quote_char=None if headerless else '"')


def check_quoting(src: SourceFile) -> None:
    """CSV/TSV: a quote opened in a field and closed only rows later (a stray quote further
    down) makes the reader take every row between for part of one field — rows lost without a
    word. Raises the malformed-quoting ``InputError`` naming the lines then.

    The usual file has no field spanning lines, and as many lines as records: two native
    counts prove it (~0.4 s for 2 GB). Otherwise the quoting scan (``_bad_csv_line``) looks for a
    quoted field holding whole lines that have a row's separators and no quote; a text field
    that merely spans lines is fine."""
    if src.format not in ("csv", "tsv") or _key(src) in _HEADERLESS:
        return
    path = _text_path(src)
    names = _csv_header(src, path, src.sep)
    try:
        records = _csv_scan(src, path, names, False).select(pl.len()).collect().item()
        lines = _counted_lines(src, path)
    except READ_ERRORS as exc:
        raise read_error(src, exc) from None
    _RECORDS[_key(src)] = records - 1   # (the header is the first record)
    if lines <= records:
        return
    bad = _bad_csv_line(src, len(names))
    if bad is not None:
        raise _quoting_error(src, *bad)


def counted_rows(src: SourceFile) -> int | None:
    """The data rows of CSV/TSV file ``src`` if ``check_quoting`` counted them (it reads every
    record anyway); of an NDJSON file, its lines (one native count, ~0.2 s a GB; blank lines
    included, so never fewer than its records); else None."""
    key = _key(src)
    if key not in _RECORDS and src.format == "ndjson":
        try:
            _RECORDS[key] = _counted_lines(src, _text_path(src))
        except READ_ERRORS as exc:
            raise read_error(src, exc) from None
    return _RECORDS.get(key)


def _counted_lines(src: SourceFile, path: Path) -> int:
    """The lines of ``path`` (``src`` as polars reads it), proving on the way that the text is
    UTF-8 (+~0.05 s a GB): where it is not, the lines with bad bytes are found and remembered
    (``_NOT_UTF8``; a transcoded copy, ``_text_path``, remembered its own while decoding)."""
    try:
        return pl.scan_lines(literal(path)).select(pl.len(), pl.col("line").str.len_bytes().sum()).collect().item(0, 0)
    except pl.exceptions.ComputeError as exc:
        if "utf8" not in str(exc).lower() and "utf-8" not in str(exc).lower():
            raise
    n = first = lines = 0
    with _open_decompressed(path, "") as fh:
        for lines, line in enumerate(fh, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                n, first = n + 1, first or lines
    _NOT_UTF8[str(src.path.resolve())] = (n, first)
    return lines


def encoding_warnings(specs: list[str] | tuple[str, ...]) -> list[str]:
    """Report warnings for the input files (``specs`` as given) that held bytes that are not
    UTF-8, once they have been read: never silent, as U+FFFD in ids can merge distinct ones."""
    out: list[str] = []
    if not _NOT_UTF8:
        return out
    paths = []
    for spec in specs:
        try:
            paths += resolve_paths([spec])
        except InputError:   # (a URI, or a path only Spark reaches: not read here)
            continue
    for path in paths:
        hit = _NOT_UTF8.get(str(path.resolve()))
        if hit:
            n, first = hit
            lines = f"{n:,} lines hold" if n > 1 else "1 line holds"
            out.append(f"{path}: {lines} bytes that are not UTF-8 (the first: line {first:,}), read as U+FFFD (�), "
                       "which can merge distinct ids — if the file is in another encoding (Latin-1, Windows-1252), "
                       "convert it to UTF-8 first")
    return out


def _quoting_error(src: SourceFile, line: int, why: str) -> InputError:
    return InputError(f"{src.path}: line {line} has malformed quoting ({why})",
                      'quote the whole field and double the quotes inside it ("27"" screen"), '
                      "or remove that line")


def _records_before_blank_lines(src: SourceFile) -> pl.Series:
    """For each blank line of the NDJSON file ``src`` (empty or JSON whitespace only), in order:
    how many records precede it. polars' reader skips blank lines, so ``_row`` counts records;
    record r is on line r + (how many of these are below r). One pass over the file's lines,
    cached."""
    key = _key(src)
    if key not in _BLANK_LINES:
        try:
            _BLANK_LINES[key] = (
                pl.scan_lines(literal(_text_path(src)), name="text").with_row_index("line", offset=1)
                .filter(pl.col("text").str.contains(r"^[ \t\r\n]*$"))   # (a test, no stripped copy)
                .with_row_index("blank", offset=1)
                .select((pl.col("line") - pl.col("blank")).alias("records"))
                .collect(engine="streaming")["records"]   # (streamed: only the blank lines are held)
            )
        except READ_ERRORS as exc:
            raise read_error(src, exc) from None
    return _BLANK_LINES[key]


def line_numbers(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` (with ``_file`` and ``_row``, e.g. rejected rows) with the ``_row`` of an NDJSON
    file's records turned into their line in the file, as an editor counts lines: polars' reader
    skips blank lines, so counted as read, records after a blank line were numbered one short.
    Only files with rows here are looked at (one pass over their lines, only if they have some)."""
    if not rows.height or SOURCE_FILE not in rows.columns or ROW not in rows.columns:
        return rows
    for name in rows[SOURCE_FILE].unique().drop_nulls().to_list():
        src = _NDJSON_FILES.get(name)
        before = _records_before_blank_lines(src) if src is not None else None
        if before is None or not before.len():
            continue
        row = pl.col(ROW)
        shift = pl.lit(before).search_sorted(row, side="left").cast(rows[ROW].dtype)
        rows = rows.with_columns(pl.when(pl.col(SOURCE_FILE) == name).then(row + shift).otherwise(row).alias(ROW))
    return rows


def _blank(names: list[str], extras: list[str]) -> pl.Expr:
    """Every field null: a blank line, ',,,' or '{}' (null checks only: cheap on wide files)."""
    cols = [*names, *extras]
    if not cols:
        return pl.lit(True).alias(BLANK)
    return pl.all_horizontal([pl.col(c).is_null() for c in cols]).alias(BLANK)


def file_schema(src: SourceFile) -> pl.Schema:
    """Column names and types, reading only what the format needs (NDJSON: every line)."""
    try:
        return scan_file(src).collect_schema()
    except InputError:
        raise
    except READ_ERRORS as exc:  # polars raises many types for unreadable files
        raise read_error(src, exc) from None


# --- naming what is wrong -----------------------------------------------------------------------

def read_error(src: SourceFile, exc: BaseException) -> InputError:
    """The clearest InputError for a file polars could not read: the bad line when there is one."""
    if src.compression:
        try:
            with _open_decompressed(src.path, src.compression) as fh:
                while fh.read(1 << 20):
                    pass
        except ImportError:
            pass
        except _decompress_errors() as dexc:
            return InputError(f"{src.path}: cannot decompress ({_short(dexc)})",
                              "the file is probably truncated; export or download it again")
    if src.format == "ndjson":
        bad = _bad_json_line(src)
        if bad is not None:
            line, why = bad
            return InputError(f"{src.path}: line {line} is not a JSON object ({why})",
                              "fix or remove that line (NDJSON needs one JSON object per line)")
    if src.format in ("csv", "tsv"):
        bad = _bad_csv_line(src)
        if bad is not None:
            return _quoting_error(src, *bad)
    if isinstance(exc, pl.exceptions.PanicException):
        return InputError(f"{src.path}: the {src.format.upper()} data is corrupt (the reader failed inside the file)",
                          "export or copy the file again: its content is damaged")
    return InputError(f"{src.path}: cannot read as {src.format.upper()} ({_short(exc)})",
                      "check that the file is complete and in the format its name says")


def explain_read_error(files: list[SourceFile], exc: BaseException) -> InputError | None:
    """Which of ``files`` is unreadable, and why (for errors raised only when data is read)."""
    for src in files:
        try:
            scan_file(src, text=src.format != "parquet").select(pl.all().null_count()).collect(engine="streaming")
        except InputError as err:
            return err
        except READ_ERRORS as err:
            return read_error(src, err)
    return None


def _finite(s: str) -> float:
    v = float(s)
    if v in (float("inf"), float("-inf")):
        raise ValueError(f"number {s} out of range")
    return v


def _no_constant(s: str) -> None:
    raise ValueError(f"{s} is not valid JSON")


def _bad_json_line(src: SourceFile) -> tuple[int, str] | None:
    try:
        with _lines(src) as fh:
            for n, raw in enumerate(fh, 1):
                line = raw.strip()
                if n == 1:
                    line = line.removeprefix(codecs.BOM_UTF8)
                if not line:
                    continue
                try:
                    obj = json.loads(line, parse_float=_finite, parse_constant=_no_constant)
                except (ValueError, RecursionError) as exc:
                    return n, getattr(exc, "msg", None) or _short(exc)
                if not isinstance(obj, dict):
                    return n, f"found {_json_kind(obj)}"
    except _decompress_errors():
        return None
    return None


def _lines(src: SourceFile):
    """Context manager over the file's text lines as bytes (decompressed / transcoded)."""
    path = _text_path(src)
    if path != src.path:
        return path.open("rb")
    return _open_decompressed(src.path, src.compression)


def _bad_csv_line(src: SourceFile, columns: int | None = None) -> tuple[int, str] | None:
    """First line breaking RFC 4180 quoting, the way polars refuses it (None when all is fine).
    With the file's number of ``columns``, also a quoted field that holds whole lines with a
    row's separators and no quote: rows swallowed by a quote closed only rows later, which
    polars reads without complaint (``check_quoting``)."""
    sep = ord(src.sep)
    quote = 34
    state, opened = 0, 0          # 0 field start, 1 unquoted, 2 in quotes, 3 quote inside quotes
    rows = 0                      # row-like lines inside the open quoted field

    def swallowed(n: int) -> tuple[int, str] | None:   # the quoted field opened on line ``opened`` ends on n
        if not rows:
            return None
        return opened, (f"a quote opened here is closed only on line {n}, so the {rows:,} rows between "
                        "would be read as part of one field")

    try:
        with _lines(src) as fh:
            for n, raw in enumerate(fh, 1):
                if quote not in raw:
                    if state == 2:   # a whole line inside a quoted field
                        rows += columns is not None and raw.count(sep) >= columns - 1
                    else:
                        state = 0
                    continue
                line = raw.rstrip(b"\r\n")
                if state != 2:
                    state = 0
                for ch in line:
                    if state == 0:
                        if ch == quote:
                            state, opened, rows = 2, n, 0
                        elif ch != sep:
                            state = 1
                    elif state == 1:
                        if ch == sep:
                            state = 0
                        elif ch == quote:
                            return n, 'a " inside a field that does not start with one'
                    elif state == 2:
                        if ch == quote:
                            state = 3
                    elif ch == quote:
                        state = 2
                    elif ch == sep:
                        state = 0
                        if (bad := swallowed(n)) is not None:
                            return bad
                    else:
                        return n, "text after the closing quote of a field"
                if state == 3:
                    state = 0
                    if (bad := swallowed(n)) is not None:
                        return bad
    except _decompress_errors():
        return None
    if state == 2:
        return opened, "a quote opened here is never closed"
    return None


def _json_kind(obj: object) -> str:
    if obj is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean"}.get(type(obj), "a number")


def _short(exc: BaseException) -> str:
    """First line of a library error, safe to print (it may quote bytes of the file)."""
    text = str(exc).strip().splitlines()
    first = text[0][:200] if text else type(exc).__name__
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]", "\ufffd", first)
