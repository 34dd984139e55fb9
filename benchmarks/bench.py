"""Scale benchmark: funnel vs a bare polars scan vs an independent DuckDB SQL funnel.

    python benchmarks/bench.py --sizes 1M,20M [--repeat 1] [--contenders funnel-only,full,ci,...]

Optional contender: ClickHouse's windowFunnel through chDB (``pip install chdb``), run when
chDB is installed; its step counts are checked against funnel's too.

Every contender runs as its own subprocess, one after the other on the same file, in the same
run (the machine may be shared: compare the ratios, not the absolute seconds). Peak memory is
the child's peak RSS from ``os.wait4``. Generated logs are cached under benchmarks/data/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import STEPS, cached, parse_size

PY = sys.executable
WINDOW_US = 24 * 3600 * 1_000_000

POLARS_COUNT = """
import sys, polars as pl
n = (pl.scan_parquet(sys.argv[1]).group_by("session_id").agg(pl.len())
     .select(pl.len()).collect(engine="streaming").item())
print(n)
"""

# Ordered funnel (windowFunnel 'strict_increase' semantics, as funnel.core.funnel documents):
# a step-k event advances the attempt of the latest step-(k-1) qualifying event at or before it
# (ASOF join), if that event is strictly earlier and within the window of the attempt's anchor.
DUCKDB_SQL = """
import sys, duckdb
path, steps, window = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")  # long queries would print a bar into the answer
case = " ".join(f"WHEN '{e}' THEN {i}" for i, e in enumerate(steps))
inlist = ", ".join(f"'{e}'" for e in steps)
ctes = [f\"\"\"ev AS (SELECT DISTINCT session_id AS e, epoch_us(timestamp) AS t,
                 CASE event {case} END AS s
          FROM read_parquet('{path}') WHERE event IN ({inlist}) AND session_id IS NOT NULL)\"\"\",
        "q0 AS (SELECT e, t, t AS anchor FROM ev WHERE s = 0)"]
for k in range(1, len(steps)):
    ctes.append(f\"\"\"q{k} AS (SELECT c.e, c.t, p.anchor FROM (SELECT e, t FROM ev WHERE s = {k}) c
        ASOF JOIN q{k-1} p ON c.e = p.e AND c.t >= p.t
        WHERE p.t < c.t AND c.t - p.anchor <= {window})\"\"\")
sel = " UNION ALL ".join(f"SELECT {k} AS step, count(DISTINCT e) AS n FROM q{k}" for k in range(len(steps)))
rows = con.execute("WITH " + ",\\n".join(ctes) + " " + sel + " ORDER BY step").fetchall()
print(",".join(str(n) for _, n in rows))
if len(sys.argv) > 4:   # also the input totals funnel's JSON reports (input.rows_read/sessions/users/period)
    tot = con.execute(f\"\"\"SELECT count(*), count(DISTINCT session_id), count(DISTINCT user_id),
        min(timestamp)::VARCHAR, max(timestamp)::VARCHAR FROM read_parquet('{path}')\"\"\").fetchone()
    print(",".join(str(x) for x in tot[:3]))
"""

# ClickHouse's windowFunnel through chDB (optional: ``pip install chdb``): each session's longest
# chain of steps in strictly increasing time within the window from its first step; the step
# counts are the sessions whose chain reaches each step.
CHDB_SQL = """
import sys, chdb
path, steps, window = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
conds = ", ".join(f"event = '{e}'" for e in steps)
q = (f"SELECT level, count() FROM (SELECT windowFunnel({window}, 'strict_increase')"
     f"(toUInt64(toUnixTimestamp64Micro(timestamp)), {conds}) AS level FROM file('{path}', Parquet) "
     f"WHERE session_id IS NOT NULL GROUP BY session_id) GROUP BY level")
levels = {int(l): int(n) for l, n in (line.split(",") for line in str(chdb.query(q, "CSV")).split())}
print(",".join(str(sum(n for l, n in levels.items() if l >= k)) for k in range(1, len(steps) + 1)))
"""


def has_chdb() -> bool:
    import importlib.util

    return importlib.util.find_spec("chdb") is not None


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one subprocess."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        secs = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{stderr[-2000:]}")
    return secs, ru.ru_maxrss / 1024, stdout


def funnel_counts(report_json: str) -> str:
    rep = json.loads(Path(report_json).read_text())
    return ",".join(str(s["sessions"]) for s in rep["funnel"]["steps"])


def funnel_totals(report_json: str) -> str:
    inp = json.loads(Path(report_json).read_text())["input"]
    return ",".join(str(inp[k]) for k in ("rows_read", "sessions", "users"))


KEYS = {"funnel-only": "funnel analyze --steps --json (funnel only)",
        "full": "funnel analyze (full analysis + HTML report)",
        "ci": "funnel analyze --period last-7d --compare previous (weekly CI job + HTML report)",
        "polars": "polars scan + group_by(session).len()",
        "duckdb": "DuckDB SQL funnel (ASOF join per step)",
        "duckdb-totals": "DuckDB SQL funnel + input totals (rows, sessions, users, period)",
        "chdb": "chDB (ClickHouse) windowFunnel"}


def bench_size(n: int, data_dir: Path, repeat: int, only: list[str] | None = None
               ) -> tuple[int, list[tuple[str, float, float]]]:
    import polars as pl

    path = cached(n, data_dir)
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    steps = ",".join(STEPS)
    tmp = Path(tempfile.mkdtemp(prefix="funnel-bench-"))
    contenders = {
        "funnel analyze --steps --json (funnel only)":
            [PY, "-m", "funnel", "analyze", str(path), "--steps", steps, "--json", str(tmp / "f.json"), "-q"],
        "funnel analyze (full analysis + HTML report)":
            [PY, "-m", "funnel", "analyze", str(path), "--steps", steps, "--json", str(tmp / "full.json"),
             "--html", str(tmp / "r.html"), "-q"],
        KEYS["ci"]:
            [PY, "-m", "funnel", "analyze", str(path), "--steps", steps, "--period", "last-7d", "--compare",
             "previous", "--json", str(tmp / "ci.json"), "--html", str(tmp / "ci.html"), "-q"],
        "polars scan + group_by(session).len()": [PY, "-c", POLARS_COUNT, str(path)],
        "DuckDB SQL funnel (ASOF join per step)": [PY, "-c", DUCKDB_SQL, str(path), steps, str(WINDOW_US)],
        KEYS["duckdb-totals"]: [PY, "-c", DUCKDB_SQL, str(path), steps, str(WINDOW_US), "totals"],
    }
    if has_chdb():   # optional contender
        contenders[KEYS["chdb"]] = [PY, "-c", CHDB_SQL, str(path), steps, str(WINDOW_US)]
    if only:
        contenders = {name: cmd for name, cmd in contenders.items() if name in {KEYS[k] for k in only}}
    results = []
    answers = {}
    for name, cmd in contenders.items():
        best = None
        for _ in range(repeat):
            secs, mb, out = run(cmd)
            best = (secs, mb, out) if best is None or secs < best[0] else best
        results.append((name, best[0], best[1]))
        answers[name] = best[2].strip().splitlines()
    mine = funnel_counts(str(tmp / "f.json")) if (tmp / "f.json").exists() else None
    full = funnel_counts(str(tmp / "full.json")) if (tmp / "full.json").exists() else mine
    duck = answers.get(KEYS["duckdb"], answers.get(KEYS["duckdb-totals"], [mine]))[0]
    agree = "yes" if mine == duck == full else f"NO (funnel {mine} / full {full} / duckdb {duck})"
    print(f"  step counts agree with DuckDB: {agree}  [{mine}]", file=sys.stderr)
    if KEYS["chdb"] in answers:
        ch = answers[KEYS["chdb"]][0]
        print(f"  step counts agree with chDB windowFunnel: {'yes' if ch == mine else 'NO'}  "
              f"[funnel {mine} / chdb {ch}]", file=sys.stderr)
    if KEYS["duckdb-totals"] in answers:
        ours, theirs = funnel_totals(str(tmp / "f.json")), answers[KEYS["duckdb-totals"]][1]
        print(f"  rows, sessions, users agree with DuckDB: {'yes' if ours == theirs else 'NO'}  "
              f"[funnel {ours} / duckdb {theirs}]", file=sys.stderr)
    return rows, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M,20M", help="comma-separated event counts, e.g. 1M,20M,100M")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender (best time kept)")
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--contenders", default=",".join(k for k in KEYS if k != "chdb" or has_chdb()),
                    help=f"comma-separated subset of {', '.join(KEYS)} (the first two need funnel-only for ratios)")
    args = ap.parse_args()
    only = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = [c for c in only if c not in KEYS]
    if "chdb" in only and not has_chdb():
        ap.error("the chdb contender needs chDB: pip install chdb")
    if unknown or "funnel-only" not in only:
        ap.error(f"--contenders must include funnel-only and name only {', '.join(KEYS)}")
    import polars as pl

    print(f"# {date.today()} · {platform.machine()} · {os.cpu_count()} cores · "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB RAM · "
          f"Python {platform.python_version()} · polars {pl.__version__} · duckdb "
          f"{__import__('duckdb').__version__}")
    print()
    print("| events | contender | seconds | peak RSS MB | time vs DuckDB funnel | time vs DuckDB funnel + totals "
          "| time vs funnel-only |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for size in args.sizes.split(","):
        n = parse_size(size)
        print(f"generating/benchmarking {size} …", file=sys.stderr)
        rows, results = bench_size(n, args.data, args.repeat, only)
        duck = next((s for name, s, _ in results if name == KEYS["duckdb"]), None)
        duck_tot = next((s for name, s, _ in results if name == KEYS["duckdb-totals"]), None)
        first = results[0][1]
        for name, secs, mb in results:
            vs_duck = f"{secs / duck:.2f}x" if duck else "n/a"
            vs_tot = f"{secs / duck_tot:.2f}x" if duck_tot else "n/a"
            print(f"| {rows:,} | {name} | {secs:.1f} | {mb:,.0f} | {vs_duck} | {vs_tot} | {secs / first:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
