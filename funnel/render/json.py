"""JSON renderer: the machine contract (schema_version 1, stable key order, deterministic)."""

from __future__ import annotations

import json
import math
from typing import Any

from ..model import Report


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def report_dict(report: Report, include_ids: bool = False) -> dict[str, Any]:
    """The JSON document as a dict (NaN/inf become null)."""
    return _clean(report.to_dict())


def render_json(report: Report, include_ids: bool = False, **_: Any) -> str:
    return json.dumps(report_dict(report, include_ids), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
