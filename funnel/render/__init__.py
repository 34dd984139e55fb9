"""Renderers: a registry of functions turning a Report into text (terminal, JSON, Markdown, HTML).

Every format is built from the same typed Report; none of them computes statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model import Report

Renderer = Callable[..., str]


def _json(report: Report, **kw: Any) -> str:
    from .json import render_json

    return render_json(report, **kw)


def _markdown(report: Report, **kw: Any) -> str:
    from .markdown import render_markdown

    return render_markdown(report, **kw)


def _html(report: Report, **kw: Any) -> str:
    from .html import render_html

    return render_html(report, **kw)


RENDERERS: dict[str, Renderer] = {"json": _json, "markdown": _markdown, "html": _html}


def render(report: Report, fmt: str, **kw: Any) -> str:
    """Render ``report`` as ``json``, ``markdown`` or ``html``."""
    try:
        fn = RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(RENDERERS)}") from None
    return fn(report, **kw)
