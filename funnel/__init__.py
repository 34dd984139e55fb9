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
# Freed pages kept a few seconds are reused by the next shard instead (docs/scale.md, "The
# allocator"). jemalloc reads this once, when polars loads: it applies when funnel is imported
# first (the CLI always is; polars loads only on first use), and a user's own setting wins.
ALLOCATOR_CONF = "dirty_decay_ms:3000,muzzy_decay_ms:0"
os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR_CONF)

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
