"""funnel: checkout-funnel diagnostics — where buyers give up, why, and what to fix first.

The public API is ``funnel.analyze(...)`` (returns an ``Analysis`` with a typed ``Report``)
and ``funnel.render(report, fmt)``. Heavy modules load on first use so ``import funnel``
stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .api import Analysis, analyze
    from .config import Config, load_config
    from .render import render

__all__ = ["Analysis", "Config", "__version__", "analyze", "load_config", "render"]


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
