"""Sessions from user activity when the log has no session id.

A user's events are ordered by time; a new session starts after more than ``timeout`` of
inactivity (the analytics default is 30 minutes). Rows that already carry a session id keep it.
Session ids built here read ``<user_id>#<n>`` with n counting from 1 per user.
"""

from __future__ import annotations

import polars as pl

from ..schema import REJECT, SESSION, TS, USER


def sessionize(lf: pl.LazyFrame, timeout_us: int) -> pl.LazyFrame:
    need = pl.col(SESSION).is_null() & pl.col(USER).is_not_null()
    if REJECT in lf.collect_schema().names():
        need = need & pl.col(REJECT).is_null()
    t = pl.col(TS).dt.epoch("us")
    # Gap to the previous event of the same user among rows that need a session.
    ordered = lf.with_columns(need.alias("_need")).sort(USER, TS, maintain_order=True)
    prev = pl.when(pl.col("_need")).then(t).shift(1).over(USER, "_need")
    new = (t - prev > timeout_us) | prev.is_null()
    n = new.cast(pl.Int32).cum_sum().over(USER, "_need")
    built = pl.col(USER) + pl.lit("#") + n.cast(pl.String)
    return ordered.with_columns(
        pl.when(pl.col("_need")).then(built).otherwise(pl.col(SESSION)).alias(SESSION)
    ).drop("_need")
