"""funnel: checkout-funnel diagnostics — where buyers give up, why, and what to fix first.

The public API is ``funnel.analyze(...)`` (returns an ``Analysis`` with a typed ``Report``)
and ``funnel.render(report, fmt)``. Heavy modules load on first use so ``import funnel``
stays light.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# polars' allocator (jemalloc, on Linux) hands freed pages back to the system half a second
# after they are freed (polars' setting), so each user shard faulted its memory in afresh: a
# third of the full analysis's CPU time was the kernel's (8.6 s of 36 s at 19.4M events).
# Freed pages kept a few seconds are reused by the next shard instead (docs/scale.md).
ALLOCATOR_CONF = "dirty_decay_ms:3000,muzzy_decay_ms:0"
_POLARS_DECAY = {"dirty_decay_ms:500", "muzzy_decay_ms:1000"}   # what polars writes into the variable


def allocator_conf(current: str | None) -> str:
    """``_RJEM_MALLOC_CONF`` with funnel's decay times (``ALLOCATOR_CONF``) last, where later
    options win, unless ``current`` sets decay times of the user's own: then it is kept as it is.
    polars writes its own decay times into the variable when it loads, so a process started by
    one that had loaded polars inherits them: those are not a choice of the user's."""
    opts = [o for o in (current or "").split(",") if o]
    if any(o.split(":")[0] in ("dirty_decay_ms", "muzzy_decay_ms") and o not in _POLARS_DECAY for o in opts):
        return current or ""
    return ",".join([*opts, ALLOCATOR_CONF])


# jemalloc reads the variable once, when polars loads: this applies when funnel is imported
# first (the CLI always is; polars loads only on first use).
os.environ["_RJEM_MALLOC_CONF"] = allocator_conf(os.environ.get("_RJEM_MALLOC_CONF"))

if TYPE_CHECKING:  # pragma: no cover
    from .api import Analysis, analyze
    from .config import Config, load_config
    from .render import render

__all__ = ["ALLOCATOR_CONF", "Analysis", "Config", "__version__", "analyze", "load_config", "render"]


def __getattr__(name: str) -> Any:
    if name in ("analyze", "Analysis"):
        from . import api

        return getattr(api, name)
    if name in ("Config", "load_config"):
        from . import config

        return getattr(config, name)
    if name == "render":
        from .render import render

        return render
    raise AttributeError(f"module 'funnel' has no attribute {name!r}")
