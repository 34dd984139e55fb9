"""Golden outputs: the committed example report is exactly what the tool produces for the bundled
sample. After an intended change, regenerate it (and the README screenshot) with:

    SOURCE_DATE_EPOCH=1795000000 funnel analyze sample_data/events.csv --sessions sample_data/sessions.csv \\
        --html reports/sample-report.html --json reports/sample-report.json --markdown reports/sample-report.md -q
    python docs/screenshot.py
"""

from __future__ import annotations

from conftest import ROOT, run_cli


def test_sample_report_json_and_markdown_are_current(tmp_path):
    r = run_cli("analyze", "sample_data/events.csv", "--sessions", "sample_data/sessions.csv",
                "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"), "-q",
                env={"SOURCE_DATE_EPOCH": "1795000000"})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r.json").read_text() == (ROOT / "reports" / "sample-report.json").read_text()
    assert (tmp_path / "r.md").read_text() == (ROOT / "reports" / "sample-report.md").read_text()
