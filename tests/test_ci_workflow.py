"""The example GitHub Actions workflow (docs/examples/weekly-funnel.yml) runs as documented.

No YAML library: a tiny reader pulls out each step's name, ``if:`` and ``run:`` script, and the
scripts that involve funnel are run with bash, as the runner would, on the bundled sample.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE_EVENTS, SAMPLE_SESSIONS

WORKFLOW = ROOT / "docs" / "examples" / "weekly-funnel.yml"
# Steps that need GitHub or the team's own systems; everything else is run by the test.
NOT_RUN = {"Install funnel", "Fetch the event export", "Comment on the pull request"}


@dataclass
class Step:
    name: str
    run: str | None = None
    uses: str | None = None
    if_: str | None = None
    block: str = ""


def read_steps(text: str) -> list[Step]:
    """The job's steps: ``- name:``/``- uses:`` items with their ``run`` (block scalars too)."""
    lines = text.splitlines()
    steps: list[Step] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)- (name|uses): (.*)$", lines[i])
        if not m:
            i += 1
            continue
        indent = len(m[1])
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            j += 1
        item = [lines[i].replace("- ", "  ", 1)] + lines[i + 1:j]
        step = Step(name=m[3], block="\n".join(item))
        k = 0
        while k < len(item):
            km = re.match(r"^(\s*)(name|uses|if|run): ?(.*)$", item[k])
            if km and len(km[1]) == indent + 2:
                key, value = km[2], km[3].strip()
                if key == "run" and value in ("|", ">"):
                    body = []
                    k += 1
                    while k < len(item) and (not item[k].strip() or len(item[k]) - len(item[k].lstrip()) > indent + 2):
                        body.append(item[k])
                        k += 1
                    value = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
                    step.run = value
                    continue
                setattr(step, "if_" if key == "if" else key, value)
            k += 1
        steps.append(step)
        i = j
    return steps


@pytest.fixture(scope="module")
def workflow() -> str:
    return WORKFLOW.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def steps(workflow) -> list[Step]:
    return read_steps(workflow)


def test_workflow_shape(workflow, steps):
    assert "\t" not in workflow
    assert re.search(r'^on:\n  schedule:\n    - cron: "0 6 \* \* 1"', workflow, re.MULTILINE), "weekly, on Mondays"
    names = [s.name for s in steps]
    assert names[:2] == ["actions/checkout@v4", "actions/setup-python@v5"]
    install = next(s for s in steps if s.name == "Install funnel")
    assert "pip install" in install.run
    upload = next(s for s in steps if s.uses and s.uses.startswith("actions/upload-artifact@"))
    assert upload.if_ == "always()" and "path: reports/" in upload.block
    summary = next(s for s in steps if s.name == "Job summary")
    assert summary.if_ == "always()" and "$GITHUB_STEP_SUMMARY" in summary.run
    report = next(s for s in steps if s.name == "Weekly report and gates")
    assert "--period last-week --compare previous" in report.run and "--fail-on" in report.run
    assert set(NOT_RUN) < set(names)


def _runner(tmp_path: Path) -> dict[str, str]:
    """A work directory and environment like the runner's, with `funnel` on the PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "funnel"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m funnel "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "summary.md").write_text("")
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "EVENTS": str(SAMPLE_EVENTS), "SESSIONS": str(SAMPLE_SESSIONS),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "SOURCE_DATE_EPOCH": "1790000000",
            "NO_COLOR": "1", "COLUMNS": "120"}


def run_job(steps: list[Step], tmp_path: Path, edit=lambda s: s) -> list[tuple[str, int, str]]:
    """Run the job's scripts in order; a failed step skips the rest except ``if: always()``."""
    env = _runner(tmp_path)
    results, failed = [], False
    for s in steps:
        if s.run is None or s.name in NOT_RUN or (failed and s.if_ != "always()"):
            continue
        p = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", edit(s.run)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        results.append((s.name, p.returncode, p.stdout + p.stderr))
        failed = failed or p.returncode != 0
    return results


def test_the_weekly_job_on_the_sample_passes_and_writes_everything(steps, tmp_path):
    results = run_job(steps, tmp_path)
    assert [(n, rc) for n, rc, _ in results] == [("Weekly report and gates", 0), ("Job summary", 0)], results
    reports = tmp_path / "reports"
    assert sorted(p.name for p in reports.iterdir()) == ["funnel-2026-W47.html", "funnel-2026-W47.json",
                                                         "funnel-2026-W47.md"]
    doc = json.loads((reports / "funnel-2026-W47.json").read_text())
    assert doc["input"]["period"] == {"start": "2026-11-16T00:00:00Z", "end": "2026-11-23T00:00:00Z"}
    assert doc["comparison"]["previous"] == {"start": "2026-11-09T00:00:00Z", "end": "2026-11-16T00:00:00Z"}
    assert [(g["rule"], g["fired"]) for g in doc["gates"]] == [("conversion_drop > 5", False),
                                                               ("step:purchase:conversion < 0.7", False)]
    summary = (tmp_path / "summary.md").read_text()
    assert summary == (reports / "funnel-2026-W47.md").read_text()
    for part in ("# Checkout funnel report", "## Gates", "## Funnel", "## Change vs previous period",
                 "## Why carts were abandoned", "## Fixes worth most"):
        assert part in summary
    assert "\x1b[" not in summary
    assert (reports / "funnel-2026-W47.html").read_text().lstrip().lower().startswith("<!doctype html>")


def test_the_job_goes_red_in_the_payment_outage_week_and_still_reports(steps, tmp_path):
    # re-run as of the Tuesday after the planted payment outage: last week = 2026-W44
    as_of = "--period last-week --as-of 2026-11-03"
    results = run_job(steps, tmp_path, lambda s: s.replace("--period last-week", as_of))
    assert [(n, rc) for n, rc, _ in results] == [("Weekly report and gates", 1), ("Job summary", 0)], results
    assert "gate step:purchase:conversion < 0.7: 0.6346 FIRED" in results[0][2]
    summary = (tmp_path / "summary.md").read_text()
    assert "❌ fired" in summary and "2026-10-26T00:00:00Z → 2026-11-02T00:00:00Z" in summary
    assert (tmp_path / "reports" / "funnel-2026-W44.html").exists()


def test_a_broken_rule_is_exit_2_not_a_red_gate(steps, tmp_path):
    results = run_job(steps, tmp_path, lambda s: s.replace("conversion_drop > 5", "conversion_drp > 5"))
    name, rc, out = results[0]
    assert rc == 2 and "did you mean 'conversion_drop'" in out and "Traceback" not in out
    assert results[1][:2] == ("Job summary", 0) and (tmp_path / "summary.md").read_text() == ""
