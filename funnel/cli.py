"""Command line: a thin typer layer. Each command parses options, calls the library, renders,
and returns an exit code: 0 ok, 1 a --fail-on gate fired, 2 usage/input/config error."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__, allocator
from .errors import ConfigError, FunnelError, PipeClosed

app = typer.Typer(
    name="funnel",
    help="Checkout-funnel diagnostics: where buyers give up, why, and what to fix first.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)

EventsArg = Annotated[list[str], typer.Argument(
    metavar="EVENTS",
    help="Event logs: files, folders or globs (CSV/TSV/Parquet/NDJSON, optionally .gz/.zst).",
    show_default=False)]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", metavar="FILE", help="funnel.toml (default: ./funnel.toml or [tool.funnel] in ./pyproject.toml).")]
ColumnOpt = Annotated[list[str] | None, typer.Option(
    "--column", metavar="ROLE=COLUMN", help="Set a column role: ROLE=COLUMN (e.g. timestamp=event_time). Repeatable.")]
FormatOpt = Annotated[str | None, typer.Option(
    "--format", metavar="FORMAT", help="Input format: auto, events, ga4, segment, snowplow, shopify.")]
TzOpt = Annotated[str | None, typer.Option("--timezone", metavar="ZONE", help="Time zone of naive timestamps (IANA name).")]
SessionsOpt = Annotated[str | None, typer.Option(
    "--sessions", metavar="FILE", help="Sessions log (device, channel, country, …) joined on session id.")]
StepsOpt = Annotated[str | None, typer.Option(
    "--steps", metavar="A,B,C", help="Ordered funnel steps as event names: a,b,c; alternatives as name=ev1|ev2.")]
WindowOpt = Annotated[str | None, typer.Option(
    "--window", metavar="DURATION", help="Funnel window: 30m, 24h, 7d (default 24h).")]
OrderOpt = Annotated[str | None, typer.Option(
    "--order", metavar="ORDER", help="ordered (default), strict or any.")]
ExcludeOpt = Annotated[list[str] | None, typer.Option(
    "--exclude", metavar="EVENT",
    help="Exclusion event: sessions with it between their first and last step are not counted. Repeatable.")]
TimeoutOpt = Annotated[str | None, typer.Option(
    "--session-timeout", metavar="DURATION",
    help="Inactivity that starts a new session when the log has no session id (default 30m).")]
# The period flags, shared by analyze and explain (an entity belongs to a period by its first event).
SinceOpt = Annotated[str | None, typer.Option("--since", metavar="TIME", help="Only sessions whose first event is at or after this UTC date/time (inclusive).")]
UntilOpt = Annotated[str | None, typer.Option("--until", metavar="TIME", help="Only sessions whose first event is before this UTC date/time (exclusive; a date means 00:00Z).")]
PeriodOpt = Annotated[str | None, typer.Option("--period", metavar="PERIOD", help="last-week, last-7d, YYYY-Www, YYYY-MM or START..END (relative to --as-of).")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", metavar="TIME", help="The instant relative periods end at (default: the end of the data).")]


def _consoles(machine_to_stdout: bool):
    """The human console (stdout, or stderr when a machine format takes stdout) and the error
    console. Data is printed as written: markup in it is escaped where it is printed, and emoji
    codes are off (an event ':smile:' or a column 'event:x:' would otherwise show as a picture)."""
    from rich.console import Console

    no_color = bool(os.environ.get("NO_COLOR"))
    human = Console(stderr=machine_to_stdout, no_color=no_color, highlight=False, soft_wrap=False, emoji=False)
    err = Console(stderr=True, no_color=no_color, highlight=False, emoji=False)
    return human, err


def _keep_existing(paths: list[Path], force: bool, other: str) -> None:
    """``init`` and ``sample`` write files of fixed names: without --force, existing ones are
    left alone (an error naming them). ``other``: what --out picks instead (name, folder)."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        from .errors import OutputError

        one = len(existing) == 1
        raise OutputError(f"{', '.join(existing)} already exist{'s' if one else ''}",
                          f"use --force to overwrite {'it' if one else 'them'} or --out to pick another {other}")


def _wrote(console, path) -> None:
    """'wrote PATH' (a path is text, not markup: 'reports/[w47]/…' keeps its brackets); nothing
    for stdout."""
    from rich.markup import escape

    if str(path) != STDOUT:
        console.print(f"wrote {escape(str(path))}", highlight=False, soft_wrap=True)


STDOUT = "/dev/stdout"


def _stdout(target: str | None) -> str | None:
    """An output target, with '-' (stdout) as a path the file writers write into
    (``io.writers``: a device is written into, not replaced)."""
    if target != "-":
        return target
    if not os.path.exists(STDOUT):
        raise ConfigError("'-' (stdout) is not available for this output here", "give a file name")
    sys.stdout.flush()
    return STDOUT


def _distinct_outputs(outputs: dict[str, str | Path | None]) -> None:
    """Two outputs must not share stdout ('-', JSON and Markdown) or a file: each would
    overwrite or interleave with the other. (A folder may be shared: each output writes its
    own file there, ``_in_folder``.)"""
    seen: dict[str, str] = {}
    for flag, target in outputs.items():
        if not target or Path(target).is_dir() or str(target).endswith(("/", os.sep)):
            continue
        key = "-" if str(target) == "-" else str(Path(target).expanduser().resolve())
        if key in seen:
            where = "stdout" if key == "-" else str(target)
            raise ConfigError(f"{seen[key]} and {flag} would both write to {where}",
                              "send one of them to a file" if key == "-" else "give each output its own file")
        seen[key] = flag


def _fail(err_console, exc: FunnelError) -> None:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _not_empty(flags: dict[str, str | list[str] | None]) -> None:
    """A flag given an empty value (``--steps ''``: an unset CI variable, usually) is an error;
    it fell back to the default (or to no output) silently. A list: each value of a repeatable flag."""
    for flag, value in flags.items():
        for v in value if isinstance(value, list) else [value]:
            if v is not None and not str(v).strip():
                raise ConfigError(f"{flag} is empty", f"give {flag} a value, or leave the flag out")


def _base_config(config: Path | None, columns: list[str] | None, fmt: str | None, tz: str | None):
    from .config import load_config, validate_timezone
    from .schema import ROLE_BY_NAME

    _not_empty({"--format": fmt, "--timezone": tz})
    cfg = load_config(config)
    overrides: dict = {}
    if columns:
        cols, given = dict(cfg.columns), set()
        for item in columns:
            role, sep, col = item.partition("=")
            if not sep or not col:
                raise ConfigError(f"invalid --column {item!r}", "write ROLE=COLUMN, e.g. --column timestamp=event_time")
            if role not in ROLE_BY_NAME:
                from .errors import suggestion

                raise ConfigError(f"unknown column role {role!r} in --column",
                                  suggestion(role, ROLE_BY_NAME) or f"roles: {', '.join(ROLE_BY_NAME)}")
            if role in given:   # (the last would win silently)
                raise ConfigError(f"--column sets the {role} role twice ({cols[role]!r} and {col!r})",
                                  f"keep one --column {role}=COLUMN")
            cols[role] = col
            given.add(role)
        overrides["columns"] = cols
    if fmt:
        overrides["format"] = fmt
    if tz:
        overrides["timezone"] = validate_timezone(tz)
    return cfg.with_overrides(**overrides)


def _engine_overrides(cfg, *, steps, window, order, unit, exclude, session_timeout):
    """Funnel-engine flags shared by analyze and explain, validated and applied over ``cfg``."""
    from .config import LEVELS, ORDERS, parse_duration, parse_steps, validate_choice

    _not_empty({"--steps": steps, "--window": window, "--order": order, "--unit": unit,
                "--session-timeout": session_timeout, "--exclude": exclude})
    return cfg.with_overrides(
        steps=parse_steps(steps) if steps else None,
        window=parse_duration(window, "--window") if window else None,
        order=validate_choice(order, ORDERS, "--order") if order else None,
        level=validate_choice(unit, LEVELS, "--unit") if unit else None,
        exclude=tuple(exclude) if exclude else None,
        session_timeout=parse_duration(session_timeout, "--session-timeout") if session_timeout else None,
    )


def _write_machine(target: str, text: str) -> str | None:
    """Write a machine format to stdout (``-``) or atomically to a file; returns the file written."""
    if target == "-":
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            raise PipeClosed from None
        return None
    from .io.writers import write_text_atomic

    return str(write_text_atomic(target, text))


class _Progress:
    """A transient status line on stderr while reading (only on a terminal)."""

    def __init__(self, console) -> None:
        self.status = None
        if console.is_terminal:
            self.status = console.status("starting…")

    def __enter__(self):
        if self.status:
            self.status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.status:
            self.status.__exit__(*exc)

    def __call__(self, msg: str) -> None:
        if self.status:
            self.status.update(msg + "…")


@app.command()
def analyze(
    events: EventsArg,
    sessions: SessionsOpt = None,
    config: ConfigOpt = None,
    steps: StepsOpt = None,
    window: WindowOpt = None,
    order: OrderOpt = None,
    unit: Annotated[str | None, typer.Option("--unit", metavar="UNIT", help="Count sessions (default) or users.")] = None,
    exclude: ExcludeOpt = None,
    segment: Annotated[list[str] | None, typer.Option("--segment", metavar="COLUMN", help="Break down by this column (sessions log or events). Repeatable.")] = None,
    session_timeout: TimeoutOpt = None,
    html: Annotated[str | None, typer.Option("--html", metavar="FILE|DIR", help="Write the HTML report here (a folder gets a file named after the period), or - for stdout.")] = None,
    json_out: Annotated[str | None, typer.Option("--json", metavar="FILE|-", help="Write the JSON report to FILE, or - for stdout.")] = None,
    markdown: Annotated[str | None, typer.Option("--markdown", metavar="FILE|-", help="Write the Markdown summary to FILE, or - for stdout.")] = None,
    carts: Annotated[str | None, typer.Option("--carts", metavar="FILE", help="Write the per-cart table (CSV, or Parquet by extension), or - for stdout (CSV).")] = None,
    rejects: Annotated[str | None, typer.Option("--rejects", metavar="FILE", help="Write rejected rows with their cause (CSV or Parquet), or - for stdout (CSV).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Any rejected row is an error (exit 2).")] = False,
    plotlyjs: Annotated[str, typer.Option("--plotlyjs", metavar="MODE", help="inline (default, works offline) or cdn (small file).")] = "inline",
    include_ids: Annotated[bool, typer.Option("--include-ids", help="Keep session/user ids in the reports (pages, segment values; e-mails and UUIDs in the HTML).")] = False,
    columns: ColumnOpt = None,
    fmt: FormatOpt = None,
    timezone: TzOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No terminal tables.")] = False,
    engine: Annotated[str, typer.Option("--engine", metavar="ENGINE", help="local (default: polars, one machine) or spark (PySpark; local mode or the cluster your Spark configuration points at).")] = "local",
    funnel_only: Annotated[bool, typer.Option("--funnel-only", help="Only the funnel and abandonment counts (fast; no reasons, paths or HTML). Implied by --steps with only --json.")] = False,
    since: SinceOpt = None,
    until: UntilOpt = None,
    period: PeriodOpt = None,
    as_of: AsOfOpt = None,
    compare: Annotated[str | None, typer.Option("--compare", metavar="PERIOD", help="Compare with: previous (the period of equal length before) or START..END.")] = None,
    fail_on: Annotated[list[str] | None, typer.Option("--fail-on", metavar="RULE", help="Exit 1 when RULE holds, e.g. 'abandonment_rate > 0.8', 'conversion_drop > 5'. Repeatable; adds to [gates] fail_on.")] = None,
) -> None:
    """Analyse event logs: funnel, abandoned carts, reasons and the fixes worth most."""
    # --steps with --json alone implies the funnel-only path; asking for anything it does not
    # produce (another output, segments, a comparison, gates) means the full analysis.
    only = funnel_only or bool(steps and json_out and not (html or markdown or carts or segment or compare or fail_on))
    if not only:   # the full analysis's shards reuse freed memory (set before polars loads)
        allocator.tune()
    machine_stdout = "-" in (json_out, markdown, html, carts, rejects)
    human, err = _consoles(machine_stdout)
    try:
        _not_empty({"--sessions": sessions, "--html": html, "--json": json_out, "--markdown": markdown,
                    "--carts": carts, "--rejects": rejects, "--period": period, "--since": since, "--until": until,
                    "--as-of": as_of, "--compare": compare})
        cfg = _engine_overrides(_base_config(config, columns, fmt, timezone), steps=steps, window=window,
                                order=order, unit=unit, exclude=exclude, session_timeout=session_timeout)
        cfg = cfg.with_overrides(segments=tuple(segment) if segment else None, include_ids=include_ids or None)
        if plotlyjs not in ("inline", "cdn"):
            raise ConfigError(f"invalid --plotlyjs {plotlyjs!r}", "choose inline or cdn")
        _distinct_outputs({"--json": json_out, "--markdown": markdown, "--html": html, "--carts": carts,
                           "--rejects": rejects})
        from .io.writers import frame_target

        for flag, target, example in (("--carts", carts, "carts.csv"), ("--rejects", rejects, "rejects.csv")):
            if target:
                frame_target(target, example, flag)
        html, carts, rejects = _stdout(html), _stdout(carts), _stdout(rejects)
        from .periods import PeriodSpec

        spec = PeriodSpec(period=period, since=since, until=until, as_of=as_of, compare=compare)
        if fail_on:
            cfg = cfg.with_overrides(fail_on=tuple(dict.fromkeys((*cfg.fail_on, *fail_on))))
        from .api import analyze as run

        if engine not in ("local", "spark"):
            raise ConfigError(f"invalid --engine {engine!r}", "choose local or spark")
        if funnel_only:
            _funnel_only_flags(html=html, markdown=markdown, carts=carts, segment=segment)
        elif only and (cfg.segments or cfg.fail_on):   # funnel.toml's segments or gates: the full
            only = False                                # analysis too (polars loaded: allocator untuned)
        with _Progress(err) as progress:
            if engine == "spark":
                from .spark import analyze_spark

                result = analyze_spark(events, cfg, sessions=sessions, progress=progress,
                                       tables=bool(carts or rejects), period=spec, funnel_only=only, quiet=quiet)
            else:
                # The tables go straight to their files (a large input streams them from its
                # shards); with --strict nothing is written when rows are rejected, so they wait.
                result = run(events, cfg, sessions=sessions, progress=progress, period=spec, funnel_only=only,
                             tables=bool(carts or rejects), carts_to=None if strict else carts,
                             rejects_to=None if strict else rejects)
        report = result.report
        if strict:
            _strict(report, rejects, result.rejects)
        _write_outputs(report, result, human, html=html, json_out=json_out, markdown=markdown,
                       carts=carts, rejects=rejects, plotlyjs=plotlyjs, include_ids=cfg.include_ids,
                       quiet=quiet, tables_written=engine != "spark" and not strict, funnel_only=only)
        if quiet:  # the terminal tables (which list warnings and gates) were skipped: still say them
            from rich.markup import escape

            from .render.terminal import print_warnings

            print_warnings(report.warnings, err)
            for g in report.gates:
                if g.fired:
                    human.print(f"gate {escape(g.rule)}: {'n/a' if g.value is None else f'{g.value:.4g}'} "
                                "[red]FIRED[/]", soft_wrap=True)
    except FunnelError as exc:
        _fail(err, exc)
    raise typer.Exit(1 if any(g.fired for g in report.gates) else 0)


def _funnel_only_flags(**flags) -> None:
    """``--funnel-only`` with a flag asking for what it does not produce is a usage error
    naming the flags (rather than a run that silently leaves them out)."""
    asked = [f"--{name}" for name, value in flags.items() if value]
    if asked:
        raise ConfigError(f"--funnel-only computes the funnel and abandonment counts only, not {'/'.join(asked)}",
                          f"drop {'/'.join(asked)}, or run without --funnel-only")


def _period_label(report) -> str:
    """``2026-W47``, ``2026-11`` or ``<start>_<end>`` (dates) for output file names."""
    start, end = report.input.period.start, report.input.period.end
    if not start or not end:
        return "report"
    from .periods import label_for, parse_instant

    return label_for(parse_instant(start, "period start"), parse_instant(end, "period end"))


def _in_folder(path: str, report, ext: str) -> Path:
    """``path`` itself, or ``path/funnel-<period>.<ext>`` when it is a folder (or ends with /)."""
    target = Path(path)
    if target.is_dir() or path.endswith(("/", os.sep)):
        return target / f"funnel-{_period_label(report)}.{ext}"
    return target


def _strict(report, rejects: str | None = None, table=None) -> None:
    """``--strict``: any row of the input not used (rejected events, sessions-log rows) is an
    error, one line naming both. ``rejects``: the --rejects file, written first (``table``:
    the rows), so the evidence is kept; the line then names it."""
    inp = report.input
    causes = lambda counts: ", ".join(f"{c.key} {c.count}" for c in counts)   # (plain numbers, as in CI logs)
    rows = lambda n: f"{n} row" + ("" if n == 1 else "s")
    unused = []
    if inp.rows_rejected:
        unused.append(f"{rows(inp.rows_rejected)} rejected ({causes(inp.rejected)})")
    if inp.sessions_log_rejected:
        unused.append(f"{rows(sum(c.count for c in inp.sessions_log_rejected))} of the sessions log "
                      f"{inp.sessions_log} not used ({causes(inp.sessions_log_rejected)})")
    if unused:
        from .errors import InputError

        where = "write them out with --rejects FILE"
        if rejects and table is not None:
            from .io.writers import write_frame

            write_frame(rejects, table)
            where = "they are listed on stdout" if rejects == STDOUT else f"they are listed in {rejects}"
        raise InputError("--strict: " + "; ".join(unused), f"fix the input, or run without --strict ({where})")


def _write_outputs(report, result, human, *, html, json_out, markdown, carts, rejects, plotlyjs,
                   include_ids, quiet, tables_written=False, funnel_only=False) -> None:
    """``tables_written``: ``analyze`` wrote --carts/--rejects itself (``carts_to``/``rejects_to``).
    ``funnel_only``: no default HTML report and no diagnosis tables (there is no diagnosis)."""
    from .io.writers import write_frame, write_text_atomic
    from .render import render

    written: list[str] = []
    for target, fmt, ext, kw in ((json_out, "json", "json", {"include_ids": include_ids}),
                                 (markdown, "markdown", "md", {})):
        if target:
            path = _write_machine(target if target == "-" else str(_in_folder(target, report, ext)),
                                  render(report, fmt, **kw))
            if path:
                written.append(path)
    if html is None and not json_out and not markdown and not funnel_only:
        html = "reports/"  # the default: a file named after the period in ./reports
    if html:
        text = render(report, "html", plotlyjs=plotlyjs, include_ids=include_ids)
        written.append(str(write_text_atomic(_in_folder(html, report, "html"), text)))
    for path, table in ((carts, result.carts), (rejects, result.rejects)):
        if path:
            written.append(str(Path(path)) if tables_written else str(write_frame(path, table)))
    if not quiet:
        from .render.terminal import print_report

        print_report(report, human, diagnosis=not funnel_only)
    for w in written:
        _wrote(human, w)


@app.command()
def sample(
    sessions: Annotated[int, typer.Option("--sessions", min=10, metavar="N", help="Number of sessions to generate.")] = 6000,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="Random seed (same seed, same files).")] = 7,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output folder.")] = Path("sample_data"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Generate a realistic shop log with planted causes: events.csv, sessions.csv, labels.csv."""
    human, err = _consoles(False)
    try:
        from .io.sample import sample_paths, write_sample

        if str(out) == "-":
            raise ConfigError("funnel sample writes three files into a folder, not to stdout", "give a folder with --out")
        _keep_existing(sample_paths(out), force, "folder")
        try:
            paths = write_sample(out, n_sessions=sessions, seed=seed)
        except OSError as exc:
            from .errors import OutputError

            raise OutputError(f"cannot write to {out} ({exc.strerror})", "choose a writable folder with --out") from None
        for p in paths:
            _wrote(human, p)
    except FunnelError as exc:
        _fail(err, exc)


@app.command()
def validate(
    events: EventsArg,
    sessions: SessionsOpt = None,
    config: ConfigOpt = None,
    columns: ColumnOpt = None,
    fmt: FormatOpt = None,
    timezone: TzOpt = None,
    json_out: Annotated[str | None, typer.Option("--json", metavar="FILE|-", help="Write the findings as JSON to FILE or -.")] = None,
) -> None:
    """Read the input and report what was detected; exit 2 when it is unusable."""
    allocator.tune()   # (shards as the full analysis's)
    human, err = _consoles(json_out == "-")
    try:
        from .validate import describe_input, print_description

        _not_empty({"--sessions": sessions, "--json": json_out})
        if json_out:
            from .io.writers import file_target

            file_target(json_out, "validate.json", "--json")
        cfg = _base_config(config, columns, fmt, timezone)
        with _Progress(err) as progress:
            desc = describe_input(events, cfg, progress=progress, sessions=sessions)
        if json_out:
            import json

            _write_machine(json_out, json.dumps(desc, indent=2, ensure_ascii=False) + "\n")
        print_description(desc, human)
        if desc["usable_rows"] == 0:
            from .errors import InputError

            raise InputError(f"{', '.join(desc['files'])}: no usable rows", "see the rejected rows above")
    except FunnelError as exc:
        _fail(err, exc)


@app.command()
def init(
    events: Annotated[list[str] | None, typer.Argument(metavar="[EVENTS]...", help="Optional event logs to detect column roles from.")] = None,
    out: Annotated[str, typer.Option("--out", metavar="FILE", help="Where to write the config, or - for stdout.")] = "funnel.toml",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    columns: ColumnOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Write a commented funnel.toml with the detected column roles and the default funnel."""
    human, err = _consoles(str(out) == "-")
    try:
        from .io.writers import file_target
        from .validate import init_toml

        file_target(out, "funnel.toml", "--out")
        out = Path(_stdout(out))
        if str(out) != STDOUT:
            _keep_existing([out], force, "name")
        cfg = _base_config(None, columns, fmt, None)
        text, placeholders = init_toml(events or [], cfg)
        from .io.writers import write_text_atomic

        write_text_atomic(out, text)
        _wrote(human, out)
        if placeholders:   # (the user's own file: the ids may be named)
            from rich.markup import escape

            human.print(escape(f"note: {len(placeholders)} likely placeholder id(s) listed under [input] missing_ids "
                               f"(read as no id): {', '.join(repr(i) for i, _ in placeholders)} — check them in {out}"))
    except FunnelError as exc:
        _fail(err, exc)


@app.command()
def explain(
    session_id: Annotated[str, typer.Argument(metavar="SESSION_ID", help="The session to explain (a user id with --unit user).", show_default=False)],
    events: EventsArg,
    sessions: SessionsOpt = None,
    config: ConfigOpt = None,
    steps: StepsOpt = None,
    window: WindowOpt = None,
    order: OrderOpt = None,
    unit: Annotated[str | None, typer.Option("--unit", metavar="UNIT", help="Explain a session (default) or a user.")] = None,
    exclude: ExcludeOpt = None,
    session_timeout: TimeoutOpt = None,
    json_out: Annotated[str | None, typer.Option("--json", metavar="FILE|-", help="Write the explanation as JSON to FILE, or - for stdout.")] = None,
    columns: ColumnOpt = None,
    fmt: FormatOpt = None,
    timezone: TzOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    period: PeriodOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Why is this visitor counted as dropped? Its events in order, which one satisfied each step,
    why later ones did not (tie, window, order), its exit step and the diagnosed reason.
    With --period/--since/--until, as the run of that period sees it (its --carts row)."""
    allocator.tune()   # (shards as the full analysis's)
    human, err = _consoles(json_out == "-")
    try:
        from .core.explain import explain as run

        _not_empty({"--sessions": sessions, "--json": json_out, "--period": period, "--since": since,
                    "--until": until, "--as-of": as_of})
        if json_out:
            from .io.writers import file_target

            file_target(json_out, "explain.json", "--json")
        cfg = _engine_overrides(_base_config(config, columns, fmt, timezone), steps=steps, window=window,
                                order=order, unit=unit, exclude=exclude, session_timeout=session_timeout)
        from .periods import PeriodSpec

        spec = PeriodSpec(period=period, since=since, until=until, as_of=as_of)
        ex = run(events, session_id, cfg, sessions=sessions, period=spec)
        from .io.sources import skipped_files
        from .render.terminal import explain_table, print_warnings

        print_warnings(skipped_files(events), err)   # (files of a folder not read: said)
        if json_out:
            import json

            _write_machine(json_out, json.dumps(ex.to_dict(), indent=2, ensure_ascii=False) + "\n")
        from rich.markup import escape

        human.print(explain_table(ex))
        human.print(f"[bold]{escape(ex.verdict)}[/]", soft_wrap=True)
        human.print(f"exit step: {escape(ex.exit_step or 'none')}", highlight=False)
        if ex.reason is not None:
            conf = "" if ex.confidence is None else f" (confidence {ex.confidence:.0%})"
            human.print(f"reason: {escape(ex.reason)}{conf}" + (" · recovered later" if ex.recovered else ""),
                        highlight=False)
            for ev in ex.evidence or []:
                human.print(f"  evidence: {escape(ev.signal)} — {escape(ev.description)}", highlight=False, soft_wrap=True)
        if ex.diagnosis_note:
            human.print(escape(ex.diagnosis_note), highlight=False, soft_wrap=True)
        if json_out and json_out != "-":
            _wrote(human, json_out)
    except FunnelError as exc:
        _fail(err, exc)


def version_callback(value: bool) -> None:
    if value:
        print(f"funnel {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Checkout-funnel diagnostics: where buyers give up, why, and what to fix first."""


_PANIC_DETAIL = re.compile(r"^(stack backtrace:|\s+\d+: |\s+at |note: |\s*$)")


def _without_panic_reports(text: str) -> str:
    """``text`` minus the Rust runtime's reports of panics: the ``thread '…' panicked at`` line,
    its message and its backtrace. A polars panic reaches Python as an exception that funnel
    turns into its one-line error (or, unexpected, an 'unexpected …' line)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("thread '") and " panicked at " in line:
            skipping, message = True, True
            if out and not out[-1].strip():   # the blank line the runtime prints first
                out.pop()
            continue
        if skipping and message:        # the panic's message, the line after
            message = False
            continue
        if skipping and _PANIC_DETAIL.match(line):
            continue
        skipping = False
        out.append(line)
    return "".join(out)


@contextlib.contextmanager
def _native_stderr_aside():
    """What native code writes to file descriptor 2 (polars' Rust runtime: panic reports with
    backtraces) goes to a temporary file while the command runs; Python's ``sys.stderr`` (progress,
    errors) keeps writing to the real stderr. Afterwards the captured text is passed on, minus
    panic reports (kept with FUNNEL_DEBUG=1): a corrupt file then gets one line, not a backtrace."""
    import tempfile

    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (AttributeError, OSError, ValueError):   # no descriptor 2 (embedded use): leave it
        yield
        return
    py_err = sys.stderr
    capture = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    sys.stderr = open(real, "w", encoding=getattr(py_err, "encoding", None) or "utf-8",  # noqa: SIM115
                      errors="backslashreplace", buffering=1, closefd=False)
    os.dup2(capture.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)
        sys.stderr.close()
        sys.stderr = py_err
        os.close(real)
        capture.seek(0)
        native = capture.read().decode("utf-8", "replace")
        capture.close()
        rest = native if os.environ.get("FUNNEL_DEBUG") else _without_panic_reports(native)
        if rest.strip():
            py_err.write(rest)
            py_err.flush()


def main() -> None:
    """Console entry point: never a traceback; unexpected errors exit 2 with one line."""
    with _native_stderr_aside():
        _main()


def _main() -> None:
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except PipeClosed:   # '| head': the reader has what it wanted; what is left unflushed goes nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except BaseException as exc:   # last line of defence (BaseException: polars panics)
        if os.environ.get("FUNNEL_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {first} — this is a bug in funnel; "
                         "rerun with FUNNEL_DEBUG=1 for details and report it\n")
        sys.exit(2)
