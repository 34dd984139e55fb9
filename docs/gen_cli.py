"""Regenerate docs/cli.md from the CLI's own --help text (tests/test_docs.py checks it is current).

    python docs/gen_cli.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OUT = Path(__file__).resolve().parent / "cli.md"
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def _help(*args: str) -> str:
    from typer.testing import CliRunner

    from funnel.cli import app

    res = CliRunner().invoke(app, [*args, "--help"], prog_name="funnel", env=ENV)
    return "\n".join(line.rstrip() for line in res.output.strip().splitlines())


def commands() -> list[str]:
    from funnel.cli import app

    return [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]


def render() -> str:
    lines = ["# funnel CLI reference", "",
             "Generated from `--help` by `python docs/gen_cli.py`; `tests/test_docs.py` fails when it is stale.", "",
             "Exit codes: 0 ok · 1 a `--fail-on` gate fired · 2 usage, input or config error.", "",
             "## funnel", "", "```text", _help(), "```", ""]
    for name in commands():
        lines += [f"## funnel {name}", "", "```text", _help(name), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
