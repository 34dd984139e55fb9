"""funnel's setting of polars' allocator (``funnel.ALLOCATOR_CONF``, docs/scale.md "The
allocator"): freed pages are kept a few seconds for the next user shard to reuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import funnel

ROOT = Path(__file__).resolve().parent.parent
VAR = "_RJEM_MALLOC_CONF"


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != VAR}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120, check=True)


def test_importing_funnel_sets_the_allocator_before_polars_loads():
    code = "import sys, os, funnel; print('polars' in sys.modules, os.environ['_RJEM_MALLOC_CONF'])"
    assert _run(code).stdout.split() == ["False", funnel.ALLOCATOR_CONF]


def test_decay_times_of_the_users_own_win_and_other_options_are_kept():
    assert funnel.allocator_conf(None) == funnel.allocator_conf("") == funnel.ALLOCATOR_CONF
    assert funnel.allocator_conf("dirty_decay_ms:0") == "dirty_decay_ms:0"
    assert funnel.allocator_conf("narenas:2,muzzy_decay_ms:-1") == "narenas:2,muzzy_decay_ms:-1"
    assert funnel.allocator_conf("narenas:2") == "narenas:2," + funnel.ALLOCATOR_CONF
    code = "import os, funnel; print(os.environ['_RJEM_MALLOC_CONF'])"
    assert _run(code, **{VAR: "dirty_decay_ms:0"}).stdout.strip() == "dirty_decay_ms:0"


def test_polars_own_setting_inherited_from_a_parent_process_is_overridden():
    """A process that loaded polars carries polars' decay times in the variable, and the
    processes it starts inherit them (the benchmark script did): funnel's still apply there."""
    parent = _run("import os, polars; print(os.environ['_RJEM_MALLOC_CONF'])").stdout.strip()
    assert funnel.allocator_conf(parent).endswith("," + funnel.ALLOCATOR_CONF)
    _assert_jemalloc_takes(parent)


def test_polars_allocator_takes_the_setting():
    _assert_jemalloc_takes(None)


def _assert_jemalloc_takes(inherited: str | None) -> None:
    """Where polars runs on jemalloc (Linux), the options it reports are funnel's: asked to
    print its statistics at exit, jemalloc shows the decay times funnel chose."""
    code = ("import os, funnel; os.environ['_RJEM_MALLOC_CONF'] += ',stats_print:true'; "
            "import polars as pl; pl.DataFrame({'a': [1]})")
    err = _run(code, **({VAR: inherited} if inherited is not None else {})).stderr
    if "jemalloc statistics" not in err:   # (polars on another allocator: nothing to check)
        return
    opts = dict(kv.split(":", 1) for kv in funnel.ALLOCATOR_CONF.split(","))
    for name, value in opts.items():
        assert any(line.strip().startswith(f"opt.{name}: {value}") for line in err.splitlines()), name
