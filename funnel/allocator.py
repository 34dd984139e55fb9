"""polars' allocator, set for the CLI's full analysis (and ``validate``, ``explain``) before
polars loads.

polars allocates with jemalloc (on Linux) and, by its own setting, hands freed pages back to
the system half a second after they are freed. The full analysis works through user shards of
5M rows, each allocating its frames afresh, so every shard faulted its memory in again: at
19.4M events the kernel's time was a third of the full analysis's CPU (8.6 s of 35.7 s).
Freed pages kept for 3 s are reused by the next shard instead (docs/scale.md, "The
allocator"; a one-pass input of 4.9M rows gains too, 5.2 s -> 4.7 s). The funnel-only route's
20M-row shards would keep too much that way (4.2 GB instead of 2.9 GB at 19.4M events), so
it keeps polars' setting.

jemalloc reads ``_RJEM_MALLOC_CONF`` once, when polars loads: ``tune`` only applies before
that. This module must not import polars.
"""

from __future__ import annotations

import os
import sys

VAR = "_RJEM_MALLOC_CONF"
ALLOCATOR_CONF = "dirty_decay_ms:3000,muzzy_decay_ms:0"
_DECAY = ("dirty_decay_ms", "muzzy_decay_ms")
_POLARS_DECAY = {"dirty_decay_ms:500", "muzzy_decay_ms:1000"}   # what polars writes into the variable


def allocator_conf(current: str | None) -> str:
    """``current`` (the variable's value) with funnel's decay times last, where later options
    win; unchanged if it sets decay times of the user's own. polars writes its own decay times
    into the variable when it loads, so a process started by one that had loaded polars
    inherits them: those are not the user's choice."""
    opts = [o for o in (current or "").split(",") if o]
    if any(o.split(":")[0] in _DECAY and o not in _POLARS_DECAY for o in opts):
        return current or ""
    return ",".join([*opts, ALLOCATOR_CONF])


def tune() -> bool:
    """Set funnel's decay times for this process's polars, if polars has not loaded yet, and
    return whether they will apply."""
    if "polars" in sys.modules:
        return False
    os.environ[VAR] = allocator_conf(os.environ.get(VAR))
    return True
