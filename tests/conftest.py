"""Shared fixtures: the bundled sample and a runner for the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EVENTS = ROOT / "sample_data" / "events.csv"
SAMPLE_SESSIONS = ROOT / "sample_data" / "sessions.csv"


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None
            ) -> subprocess.CompletedProcess:
    """Run `python -m funnel ...` as a user would (real process, real exit code)."""
    e = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "SOURCE_DATE_EPOCH": "1790000000", **(env or {})}
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "funnel", *args], cwd=cwd or ROOT, env=e, input=input,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def sample_analysis():
    """The analysis of the bundled sample (computed once per test session)."""
    from funnel.api import analyze

    return analyze(str(SAMPLE_EVENTS), sessions=str(SAMPLE_SESSIONS))
