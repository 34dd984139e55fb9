"""Atomic output writing: a temp file in the target folder, then rename.

An existing report is replaced only by a complete one; a failed write leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

from ..errors import OutputError


def _target(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"cannot write {p}: it is a folder", "give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {p.parent} ({exc.strerror})", "choose a writable location") from None
    return p


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    p = _target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {p} ({exc.strerror})", "choose a writable location") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {p} ({exc.strerror})", "choose a writable location") from None
    return p


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_frame(path: str | Path, df: pl.DataFrame) -> Path:
    """CSV, or Parquet when the name ends in .parquet / .pq (list columns joined for CSV)."""
    p = _target(path)
    suffix = p.suffix.lower()
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        if suffix in (".parquet", ".pq"):
            df.write_parquet(tmp)
        else:
            flat = df.with_columns(
                pl.col(c).cast(pl.List(pl.String)).list.join(";") for c, t in df.schema.items()
                if isinstance(t, pl.List)
            ).with_columns(
                pl.col(c).struct.json_encode() for c, t in df.schema.items() if isinstance(t, pl.Struct)
            )
            flat.write_csv(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {p} ({exc.strerror})", "choose a writable location") from None
    return p
