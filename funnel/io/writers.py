"""Atomic output writing: a temp file in the target folder, then rename.

An existing report is replaced only by a complete one; a failed write leaves nothing behind. A
symbolic link is kept (the file it names is replaced), and a device, pipe or socket
(``/dev/null``, ``/dev/stdout``, a shell's ``>(cmd)``) is written into, never replaced.
Files this process read as input are never written (``protect``). CSV cells that a spreadsheet
would run as a formula (``=``, ``+``, ``-``, ``@``, tab or CR first, and not a plain number) are
prefixed with ``'`` — log text must not execute in the reader's spreadsheet.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import polars as pl

from ..errors import OutputError, PipeClosed

_PROTECTED: set[Path] = set()
_FORMULA = r"^[=+\-@\t\r]"
_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


def protect(paths: Iterable[str | Path]) -> None:
    """Mark input files: no writer of this process may replace them."""
    for p in paths:
        try:
            _PROTECTED.add(Path(p).resolve())
        except OSError:
            pass


def file_target(path: str | Path, example: str, flag: str = "") -> None:
    """An output that must be a file: a path ending in ``/`` (a folder, as docs/ci.md says) or
    an existing folder is an error naming it, with ``example`` (a file name) as the way out;
    without it the file would take the folder's name. ``flag``: the option, for the message."""
    text = str(path)
    if text == "-":
        return
    folder = text.rstrip("/" + os.sep) or text
    hint = f"give a file name (e.g. {folder}/{example})" if example else "give a file name"
    for what, holds in (("is", Path(text).is_dir()), ("names", text.endswith(("/", os.sep)))):
        if holds:
            raise OutputError(f"{flag} {text} {what} a folder" if flag else f"cannot write {text}: it {what} a folder",
                              hint)


FRAME_SUFFIXES = (".csv", ".parquet", ".pq")   # write_frame's formats: CSV, Parquet
_EXTENSION = re.compile(r"^\.[a-z][a-z0-9]*$")


def frame_target(path: str | Path, example: str, flag: str = "") -> None:
    """``file_target``, and a name whose extension ``write_frame`` cannot produce (``.xlsx``,
    ``.csv.gz``, ``.json``: CSV would be written into it) is an error naming the ones it can.
    A name without an extension (``/dev/null``, ``/dev/fd/63``) is written as CSV."""
    file_target(path, example, flag)
    p = Path(str(path))
    suffix = p.suffix.lower()
    if str(path) != "-" and not _special(p) and _EXTENSION.match(suffix) and suffix not in FRAME_SUFFIXES:
        name = f"{flag} {path}" if flag else str(path)
        raise OutputError(f"cannot write {name}: {suffix} is not a format funnel writes",
                          f"name it .csv (CSV) or .parquet/.pq (Parquet), e.g. "
                          f"{p.with_name(p.name.split('.')[0] + '.csv')}")


def _target(path: str | Path) -> Path:
    file_target(path, "")
    p = Path(path)
    try:
        if p.resolve() in _PROTECTED:
            raise OutputError(f"refusing to write {p}: it is one of the input files",
                              "choose another output name; the input is never modified")
    except OSError:
        pass
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {p}: cannot create folder {p.parent} ({exc.strerror})",
                          "choose a writable location") from None
    return p


def _special(p: Path) -> bool:
    """``p`` is, or links to, something other than a regular file or nothing: a device
    (``/dev/null``), a pipe, a socket, or a path under /dev or /proc (``/dev/stdout``,
    ``/dev/fd/63`` of a shell's ``>(cmd)``). Such a target is written into, never replaced."""
    if str(p).startswith(("/dev/", "/proc/")):
        return True
    try:
        return not stat.S_ISREG(os.stat(p).st_mode)
    except OSError:   # nothing there (or a dangling link): a new file
        return False


def _failed(p: Path, exc: OSError | pl.exceptions.PolarsError) -> OutputError:
    """The one-line error for a write to ``p`` that failed with ``exc``."""
    if isinstance(exc, OSError):
        why = exc.strerror or exc
    else:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return OutputError(f"cannot write {p} ({why})", "choose a writable location")


_STD_FDS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def _own_fd(p: Path) -> int | None:
    """The descriptor of this process that ``p`` names (``/dev/stdout``, ``/dev/fd/N``,
    ``/proc/self/fd/N``), else None."""
    name = str(p)
    if name in _STD_FDS:
        return _STD_FDS[name]
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return int(name[len(prefix):])
    return None


def _opened(p: Path):
    """``p`` opened for writing. A descriptor of this process (``-`` is ``/dev/stdout``) is
    written through a duplicate of it: opening ``/dev/stdout`` anew, when the shell redirected
    it to a file (``> log``, ``>> log``), would truncate that file and write from its start,
    over what the shell and other commands wrote before; the duplicate shares their offset."""
    fd = _own_fd(p)
    if fd is None:
        return open(p, "wb")
    if fd == 1:
        sys.stdout.flush()   # (what this process printed before comes first)
    return os.fdopen(os.dup(fd), "wb")


def _through(p: Path, fill: Callable[[str], None]) -> Path:
    """Write into the special file ``p``: ``fill`` a temp file, then copy it in."""
    fd, tmp = tempfile.mkstemp(prefix="funnel-", suffix=f"{p.suffix}.tmp")
    os.close(fd)
    try:
        fill(tmp)
        with open(tmp, "rb") as src, _opened(p) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except BrokenPipeError:
        raise PipeClosed from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise _failed(p, exc) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return p


def _atomic(path: str | Path, fill: Callable[[str], None]) -> Path:
    """Create a temp file next to ``path``, let ``fill`` write it, then rename it into place.
    A symbolic link keeps pointing where it did: the file it names is replaced; a device, pipe
    or socket is written into (``_special``)."""
    p = _target(path)
    if _special(p):
        return _through(p, fill)
    shown = p
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        os.close(fd)
    except OSError as exc:
        raise _failed(p, exc) from None
    try:
        fill(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except (OSError, pl.exceptions.PolarsError) as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _failed(p, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return shown


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    def fill(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return _atomic(path, fill)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def _defuse(col: str) -> pl.Expr:
    """Spreadsheet formula guard for one String column (plain numbers are left alone)."""
    c = pl.col(col)
    risky = c.str.contains(_FORMULA) & ~c.str.contains(_NUMBER)
    return pl.when(risky).then(pl.lit("'") + c).otherwise(c).alias(col)


def write_frame(path: str | Path, df: pl.DataFrame | pl.LazyFrame) -> Path:
    """CSV, or Parquet when the name ends in .parquet / .pq (list columns joined for CSV). A
    LazyFrame is streamed to the file (``sink_*``), never held whole."""
    frame_target(path, "table.csv")
    suffix = Path(path).suffix.lower()
    lazy = df.lazy()
    schema = lazy.collect_schema()

    def fill(tmp: str) -> None:
        if suffix in (".parquet", ".pq"):
            lazy.sink_parquet(tmp) if isinstance(df, pl.LazyFrame) else df.write_parquet(tmp)
            return
        flat = lazy.with_columns(
            pl.col(c).cast(pl.List(pl.String)).list.join(";") for c, t in schema.items()
            if isinstance(t, pl.List)
        ).with_columns(
            pl.col(c).struct.json_encode() for c, t in schema.items() if isinstance(t, pl.Struct)
        )
        flat = flat.with_columns(_defuse(c) for c, t in flat.collect_schema().items() if t == pl.String)
        flat.sink_csv(tmp) if isinstance(df, pl.LazyFrame) else flat.collect().write_csv(tmp)

    return _atomic(path, fill)
