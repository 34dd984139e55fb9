"""Atomic output writing: a temp file in the target folder, then rename.

An existing report is replaced only by a complete one; a failed write leaves nothing behind.
Files this process read as input are never written (``protect``). CSV cells that a spreadsheet
would run as a formula (``=``, ``+``, ``-``, ``@``, tab or CR first, and not a plain number) are
prefixed with ``'`` — log text must not execute in the reader's spreadsheet.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import polars as pl

from ..errors import OutputError

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


def _target(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"cannot write {p}: it is a folder", "give a file name")
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


def _atomic(path: str | Path, fill: Callable[[str], None]) -> Path:
    """Create a temp file next to ``path``, let ``fill`` write it, then rename it into place."""
    p = _target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {p} ({exc.strerror})", "choose a writable location") from None
    try:
        fill(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {p} ({exc.strerror or exc})", "choose a writable location") from None
    except pl.exceptions.PolarsError as exc:
        Path(tmp).unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise OutputError(f"cannot write {p} ({first})", "choose a writable location") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


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
