"""polars' allocator set for the user shards (``funnel.allocator``, docs/scale.md "The
allocator"): freed pages are kept 3 s for the next shard to reuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funnel import allocator
from funnel.cli import app

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = str(ROOT / "sample_data" / "events.csv")
VAR = allocator.VAR
OURS = allocator.ALLOCATOR_CONF


def _run(code: str, inherited: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != VAR}
    if inherited is not None:
        env[VAR] = inherited
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=True)


def test_decay_times_of_the_users_own_win_and_other_options_are_kept():
    assert allocator.allocator_conf(None) == allocator.allocator_conf("") == OURS
    assert allocator.allocator_conf("dirty_decay_ms:0") == "dirty_decay_ms:0"
    assert allocator.allocator_conf("narenas:2,muzzy_decay_ms:-1") == "narenas:2,muzzy_decay_ms:-1"
    assert allocator.allocator_conf("narenas:2") == "narenas:2," + OURS


def test_tune_applies_only_before_polars_loads():
    code = (f"import os, sys; from funnel import allocator; print(allocator.tune(), os.environ['{VAR}']); "
            "import polars; print(allocator.tune())")
    assert _run(code).stdout.split() == ["True", OURS, "False"]


@pytest.mark.parametrize("inherited", [None, "polars"])
def test_jemalloc_takes_funnels_decay_times(inherited):
    """Where polars runs on jemalloc (Linux), asked to print its statistics at exit it reports
    funnel's decay times; also in a process started by one that had loaded polars, which
    inherits polars' own decay times in the variable (the benchmark script's children did)."""
    if inherited == "polars":
        inherited = _run(f"import os, polars; print(os.environ.get('{VAR}', ''))").stdout.strip()
        if "decay" not in inherited:
            pytest.skip("this polars does not write its decay times into the variable")
    code = (f"import os; from funnel import allocator; allocator.tune(); os.environ['{VAR}'] += ',stats_print:true'; "
            "import polars as pl; pl.DataFrame({'a': [1]})")
    err = _run(code, inherited).stderr
    if "jemalloc statistics" not in err:   # (polars on another allocator: nothing to check)
        pytest.skip("polars does not run on jemalloc here")
    for opt in OURS.split(","):
        name, value = opt.split(":")
        assert any(line.strip().startswith(f"opt.{name}: {value}") for line in err.splitlines()), name


@pytest.mark.parametrize(("args", "tuned"), [
    (["analyze", SAMPLE, "-q"], True),                                      # the full analysis
    (["analyze", SAMPLE, "-q", "--period", "last-7d", "--compare", "previous"], True),   # the weekly CI job
    (["validate", SAMPLE], True),
    (["explain", "__first__", SAMPLE], True),
    (["analyze", SAMPLE, "-q", "--steps", "add_to_cart,purchase", "--json", "-"], False),  # funnel only: polars' own
    (["analyze", SAMPLE, "-q", "--funnel-only", "--json", "-"], False),
])
def test_the_cli_tunes_the_allocator_for_user_shards_only(args, tuned, monkeypatch, tmp_path):
    if "__first__" in args:   # a session of the sample
        first = Path(SAMPLE).read_text().splitlines()[:2]
        args = [a if a != "__first__" else first[1].split(",")[first[0].split(",").index("session_id")] for a in args]
    calls = []
    monkeypatch.setattr(allocator, "tune", lambda: calls.append(1) or False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert bool(calls) is tuned
