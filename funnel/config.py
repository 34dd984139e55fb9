"""Configuration: column roles, time zone, steps, window, segments, signal rules, gates.

Sources, lowest to highest precedence: built-in defaults, ``[tool.funnel]`` in a
``pyproject.toml``, ``funnel.toml`` (or ``--config FILE``), command-line flags. Validated once;
unknown keys are errors with a "did you mean".
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, suggestion
from .schema import ROLE_BY_NAME

_UNITS_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000,
             "d": 86_400_000_000, "w": 7 * 86_400_000_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d|w)\s*$")


def parse_duration(text: str, what: str = "duration") -> int:
    """'30m', '24h', '7d', '90s', '1w' -> integer microseconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"invalid {what} {text!r}",
                          "use a number with a unit: 90s, 30m, 24h, 7d or 2w")
    value = float(m.group(1)) * _UNITS_US[m.group(2)]
    if value <= 0:
        raise ConfigError(f"invalid {what} {text!r}", "it must be greater than zero, e.g. 30m, 24h or 7d")
    return int(value)


@dataclass(frozen=True)
class Step:
    """One funnel step: a name and the event names that satisfy it."""

    name: str
    events: tuple[str, ...]


DEFAULT_STEPS: tuple[Step, ...] = (
    Step("cart", ("add_to_cart", "Product Added", "product_added_to_cart")),
    Step("checkout", ("begin_checkout", "Checkout Started", "checkout_started")),
    Step("shipping", ("add_shipping_info", "Shipping Info Entered",
                      "checkout_shipping_info_submitted")),
    Step("payment", ("add_payment_info", "Payment Info Entered", "payment_info_submitted")),
    Step("purchase", ("purchase", "Order Completed", "checkout_completed")),
)

ORDERS = ("ordered", "strict", "any")
LEVELS = ("session", "user")


def parse_steps(spec: str) -> tuple[Step, ...]:
    """``a,b,c`` or ``cart=add_to_cart|Product Added,checkout=begin_checkout``."""
    steps = [_parse_step(part) for part in _step_parts(spec)]
    _check_steps(steps, "--steps")
    return tuple(steps)


def _step_parts(spec: str, where: str = "--steps") -> list[str]:
    """The steps of a ``--steps`` list, one text each (``_parse_step`` reads one). An empty one
    (``a,,b``, a trailing comma) is an error: dropped, the funnel would silently lose a step."""
    parts = [p.strip() for p in spec.split(",")]
    for i, part in enumerate(parts):
        if not part:
            raise ConfigError(f"empty step in {where} {spec!r} (step {i + 1})",
                              "remove the extra comma, or name the missing step: e.g. a,b,c")
    return parts


def _parse_step(part: str) -> Step:
    """One step of ``--steps``: ``event``, ``event1|event2`` or ``name=event1|event2``."""
    if "=" in part:
        name, _, evs = part.partition("=")
        events = tuple(e.strip() for e in evs.split("|") if e.strip())
        name = name.strip()
    else:
        events = tuple(e.strip() for e in part.split("|") if e.strip())
        name = events[0] if events else ""
    if not name or not events:
        raise ConfigError(f"invalid step {part!r} in --steps",
                          "write steps as a,b,c or name=event1|event2")
    return Step(name, events)


def _check_steps(steps: list[Step] | tuple[Step, ...], where: str) -> None:
    if len(steps) < 2:
        raise ConfigError(f"{where} needs at least two steps", "e.g. add_to_cart,purchase")
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: step names must be unique, got {names}")
    seen: dict[str, str] = {}
    for s in steps:
        for e in s.events:
            if e in seen:
                raise ConfigError(f"{where}: event {e!r} is listed in steps {seen[e]!r} and {s.name!r}",
                                  "each event name may satisfy one step only")
            seen[e] = s.name


@dataclass(frozen=True)
class Config:
    """Validated settings for one analysis. Durations are microseconds."""

    columns: dict[str, str] = field(default_factory=dict)   # role -> source column
    format: str = "auto"
    timezone: str = "UTC"
    session_timeout: int = parse_duration("30m")
    steps: tuple[Step, ...] = DEFAULT_STEPS
    window: int = parse_duration("24h")
    order: str = "ordered"
    level: str = "session"
    exclude: tuple[str, ...] = ()
    recovery_horizon: int = parse_duration("7d")
    segments: tuple[str, ...] = ()
    min_segment_size: int = 30
    max_events_per_session: int = 5000
    missing_ids: tuple[str, ...] = ()   # session/user ids that stand for no id (guest, 0, ...)
    sessions_id: str | None = None   # the --sessions log's session id column ([sessions] session_id;
    # unset: the events' session id column if the log has it, else detected as the events' is)
    signals: dict[str, Any] = field(default_factory=dict)   # validated by funnel.core.signals
    fail_on: tuple[str, ...] = ()
    include_ids: bool = False
    source: str = "defaults"
    from_file: dict[str, Any] = field(default_factory=dict)   # settings as the config file set them:
    # an error about a value still in use names the file and key, not the flag

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def with_overrides(self, **kw: Any) -> Config:
        """Apply flag or keyword values (``None`` means 'not given').

        Values are checked as the config file's are, and the forms a caller naturally writes
        are accepted: ``steps="a,b,c"`` or ``["cart=add_to_cart|Product Added", "purchase"]``,
        durations as ``"24h"`` or a ``timedelta``, a single string for a list setting."""
        given = {k: v for k, v in kw.items() if v is not None}
        known = config_fields()
        for k in given:
            if k not in known:
                raise ConfigError(f"unknown setting {k!r}", suggestion(k, known) or f"settings: {', '.join(known)}")
        return replace(self, **{k: _coerce(k, v) for k, v in given.items()})

    def check(self) -> None:
        """The settings checked against each other, once every source is applied (a flag may
        mend the file's value): where the input is read, on every engine. An exclusion event that
        is a step's own event would take out every session reaching that step (buyers excluded
        for buying)."""
        step_of = {e: s.name for s in self.steps for e in s.events}
        for e in self.exclude:
            if e in step_of:
                raise ConfigError(f"{self.given('exclude')} {e!r} is an event of step {step_of[e]!r}: an exclusion "
                                  "event must not be a funnel step's event",
                                  f"drop {e!r} from the exclusions, or from the step's events")

    def given(self, name: str, role: str | None = None, value: bool = False) -> str:
        """Where setting ``name`` (``role``: one role of ``columns``) was given, for an error
        about its value: ``FILE [section] key`` while the config file's value is the one in use
        (``from_file``), else the flag (``--segment``, ``--column``). ``value``: with the (text)
        value as written there: ``FILE [input] format = "ga4"``, ``--column timestamp=ts``."""
        section, key, flag = _GIVEN[name]
        mine, used = self.from_file.get(name), getattr(self, name)
        if role is not None:
            key, mine, used = role, (mine or {}).get(role), used.get(role)
        if mine is not None and mine == used:
            return f"{self.source} [{section}] {key}" + (f" = {toml_value(used)}" if value else "")
        return flag + (f" {role}={used}" if role and value else f" {role}" if role else f" {used}" if value else "")


# setting -> (its table and key in funnel.toml, its flag); a ``columns`` key is the role
_GIVEN: dict[str, tuple[str, str, str]] = {
    "format": ("input", "format", "--format"),
    "columns": ("columns", "", "--column"),
    "exclude": ("funnel", "exclude", "--exclude"),
    "segments": ("segments", "columns", "--segment"),
    "sessions_id": ("sessions", "session_id", "sessions_id"),   # (no flag: the file, or the Python API's keyword)
}


def _coerce(key: str, value: Any) -> Any:
    """A keyword value for ``Config`` field ``key`` in the field's own form (see ``with_overrides``)."""
    from datetime import timedelta

    if key == "steps":
        if isinstance(value, str):
            return parse_steps(value)
        steps = [s if isinstance(s, Step) else _parse_step(str(s)) for s in value]
        _check_steps(steps, "steps")
        return tuple(steps)
    if key in ("window", "session_timeout", "recovery_horizon"):
        if isinstance(value, timedelta):
            value = value // timedelta(microseconds=1)
        if isinstance(value, str):
            return parse_duration(value, key)
        if int(value) <= 0:
            raise ConfigError(f"invalid {key} {value!r}", "a duration in microseconds must be greater than zero")
        return int(value)
    if key in ("order", "level"):
        return validate_choice(value, ORDERS if key == "order" else LEVELS, key)
    if key == "timezone":
        return validate_timezone(value)
    if key in ("exclude", "segments", "fail_on"):
        return (value,) if isinstance(value, str) else _strings(list(value), key, "")
    if key in ("max_events_per_session", "min_segment_size"):
        return _count(value, key, "", 1)
    if key == "missing_ids":
        return _ids((value,) if isinstance(value, str) else list(value), key, "")
    if key == "include_ids":
        return _expect(value, bool, key, "")
    if key == "sessions_id":
        return _column(value, key, "")
    return value


# --- file loading -----------------------------------------------------------------------

_SCHEMA: dict[str, tuple[str, ...]] = {
    "": ("columns", "time", "funnel", "segments", "signals", "thresholds", "gates", "input",
         "report", "sessions"),
    "time": ("timezone", "session_timeout"),
    "funnel": ("steps", "window", "order", "level", "exclude", "recovery_horizon"),
    "segments": ("columns", "min_size"),
    "gates": ("fail_on",),
    "input": ("format", "max_events_per_session", "missing_ids"),
    "report": ("include_ids",),
    "sessions": ("session_id",),
}


def _check_keys(table: dict[str, Any], section: str, src: str) -> None:
    allowed = _SCHEMA[section]
    for key in table:
        if key not in allowed:
            where = f"[{section}]" if section else "top level"
            hint = suggestion(key, allowed) or f"allowed keys: {', '.join(allowed)}"
            raise ConfigError(f"{src}: unknown key {key!r} in {where}", hint)


def _at(src: str) -> str:
    return f"{src}: " if src else ""


_TYPE_NAMES = {str: "a string", dict: "a table", list: "a list", int: "a whole number", bool: "true or false"}


def _expect(value: Any, typ: type | tuple[type, ...], key: str, src: str) -> Any:
    """``value`` if it is a ``typ`` (TOML's booleans are not numbers here), else a ConfigError."""
    types = typ if isinstance(typ, tuple) else (typ,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise ConfigError(f"{_at(src)}{key} must be {names}, got {value!r}")
    return value


def _strings(value: Any, key: str, src: str) -> tuple[str, ...]:
    """A TOML list of strings (event and column names, gate rules)."""
    items = _expect(value, list, key, src)
    for i, v in enumerate(items):
        _expect(v, str, f"{key}[{i}]", src)
    return tuple(items)


def _ids(value: Any, key: str, src: str) -> tuple[str, ...]:
    """``[input] missing_ids``: a list of ids (strings, or whole numbers for integer ids), each
    as the reader compares it (outer blanks stripped; a blank one is missing anyway)."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):   # (one id, not in a list)
        raise ConfigError(f"{_at(src)}{key} must be a list, got {value!r}",
                          f"write it as a list: missing_ids = [{toml_value(value)}]")
    items = _expect(value, list, key, src)
    out = []
    for i, v in enumerate(items):
        text = str(_expect(v, (str, int), f"{key}[{i}]", src)).strip()
        if not text:
            raise ConfigError(f"{_at(src)}{key}[{i}] is blank", "a blank id is read as missing already: drop it")
        out.append(text)
    return tuple(dict.fromkeys(out))


def toml_value(value: str | int) -> str:
    """``value`` as TOML writes it (a quoted string, or a number)."""
    return str(value) if isinstance(value, int) else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _column(value: Any, key: str, src: str) -> str:
    """A column name: a string, not blank."""
    if not _expect(value, str, key, src).strip():
        raise ConfigError(f"{_at(src)}{key} is blank", "name a column, or leave it out")
    return value


def _count(value: Any, key: str, src: str, least: int) -> int:
    if _expect(value, int, key, src) < least:
        raise ConfigError(f"{_at(src)}{key} must be {least} or more, got {value!r}")
    return value


def _section(data: dict[str, Any], section: str, src: str) -> dict[str, Any]:
    """The table ``[section]`` of ``data`` (empty when absent), its keys checked."""
    table = _expect(data.get(section, {}), dict, f"[{section}]", src)
    _check_keys(table, section, src)
    return table


def config_from_mapping(data: dict[str, Any], src: str, base: Config | None = None) -> Config:
    """Validate a parsed TOML mapping and merge it over ``base``. Every error names ``src``."""
    try:
        return _from_mapping(data, src, base or Config())
    except ConfigError as exc:
        if exc.message.startswith(src):
            raise
        raise ConfigError(f"{src}: {exc.message}", exc.hint) from None


def _from_mapping(data: dict[str, Any], src: str, cfg: Config) -> Config:
    _check_keys(data, "", src)
    kw: dict[str, Any] = {"source": src}
    cols = _expect(data.get("columns", {}), dict, "[columns]", src)
    for role, col in cols.items():
        if role not in ROLE_BY_NAME:
            raise ConfigError(f"{src}: unknown column role {role!r} in [columns]",
                              suggestion(role, ROLE_BY_NAME) or f"roles: {', '.join(ROLE_BY_NAME)}")
        _expect(col, str, f"columns.{role}", src)
    if cols:
        kw["columns"] = {**cfg.columns, **cols}
    t = _section(data, "time", src)
    if "timezone" in t:
        kw["timezone"] = validate_timezone(_expect(t["timezone"], str, "time.timezone", src))
    if "session_timeout" in t:
        kw["session_timeout"] = parse_duration(t["session_timeout"], "time.session_timeout")
    f = _section(data, "funnel", src)
    if "steps" in f:
        steps = []
        given = f["steps"]   # (a string, or strings among the tables: written as --steps takes them)
        given = _step_parts(given, f"{_at(src)}funnel.steps") if isinstance(given, str) else given
        for i, s in enumerate(_expect(given, list, "funnel.steps", src)):
            if isinstance(_expect(s, (str, dict), f"funnel.steps[{i}]", src), str):
                if not s.strip():
                    raise ConfigError(f"{src}: empty step in funnel.steps (funnel.steps[{i}])",
                                      "remove it, or name the step's event")
                try:
                    steps.append(_parse_step(s))
                except ConfigError:
                    raise ConfigError(f"{src}: invalid step {s!r} in funnel.steps",
                                      "write a step as \"event\", \"name=event1|event2\" or a [[funnel.steps]] "
                                      "table") from None
                continue
            for k in s:
                if k not in ("name", "events"):
                    raise ConfigError(f"{src}: unknown key {k!r} in funnel.steps[{i}]",
                                      suggestion(k, ("name", "events")) or "keys: name, events")
            name = _expect(s.get("name"), str, f"funnel.steps[{i}].name", src)
            evs = s.get("events", [name])
            evs = (evs,) if isinstance(evs, str) else _strings(evs, f"funnel.steps[{i}].events", src)
            if not evs:
                raise ConfigError(f"{src}: funnel.steps[{i}].events is empty",
                                  f"list the events that satisfy step {name!r}, or leave 'events' out to use its name")
            steps.append(Step(name, evs))
        _check_steps(steps, f"{_at(src)}funnel.steps")
        kw["steps"] = tuple(steps)
    if "window" in f:
        kw["window"] = parse_duration(f["window"], "funnel.window")
    if "order" in f:
        kw["order"] = validate_choice(_expect(f["order"], str, "funnel.order", src), ORDERS, "funnel.order")
    if "level" in f:
        kw["level"] = validate_choice(_expect(f["level"], str, "funnel.level", src), LEVELS, "funnel.level")
    if "exclude" in f:
        kw["exclude"] = _strings(f["exclude"], "funnel.exclude", src)
    if "recovery_horizon" in f:
        kw["recovery_horizon"] = parse_duration(f["recovery_horizon"], "funnel.recovery_horizon")
    seg = _section(data, "segments", src)
    if "columns" in seg:
        kw["segments"] = _strings(seg["columns"], "segments.columns", src)
    if "min_size" in seg:
        kw["min_segment_size"] = _count(seg["min_size"], "segments.min_size", src, 1)
    if "signals" in data or "thresholds" in data:
        kw["signals"] = {"signals": data.get("signals", {}), "thresholds": data.get("thresholds", {}),
                         "source": src}
    g = _section(data, "gates", src)
    if "fail_on" in g:
        kw["fail_on"] = _strings(g["fail_on"], "gates.fail_on", src)
    inp = _section(data, "input", src)
    if "format" in inp:
        kw["format"] = _expect(inp["format"], str, "input.format", src)
    if "max_events_per_session" in inp:
        kw["max_events_per_session"] = _count(inp["max_events_per_session"], "input.max_events_per_session", src, 1)
    if "missing_ids" in inp:
        kw["missing_ids"] = _ids(inp["missing_ids"], "input.missing_ids", src)
    ses = _section(data, "sessions", src)
    if "session_id" in ses:
        kw["sessions_id"] = _column(ses["session_id"], "sessions.session_id", src)
    rep = _section(data, "report", src)
    if "include_ids" in rep:
        kw["include_ids"] = _expect(rep["include_ids"], bool, "report.include_ids", src)
    return replace(cfg, **kw, from_file={k: v for k, v in kw.items() if k != "source"})


def load_config(path: str | Path | None = None, search_dir: str | Path = ".") -> Config:
    """Load ``path``, else ``./funnel.toml``, else ``[tool.funnel]`` in ``./pyproject.toml``."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}", "check the --config path or run 'funnel init'")
        return config_from_mapping(_read_toml(p), str(p))
    d = Path(search_dir)
    if (d / "funnel.toml").is_file():
        return config_from_mapping(_read_toml(d / "funnel.toml"), str(d / "funnel.toml"))
    pp = d / "pyproject.toml"
    if pp.is_file():
        tool = _read_toml(pp).get("tool", {}).get("funnel")
        if isinstance(tool, dict):
            return config_from_mapping(tool, f"{pp} [tool.funnel]")
    return Config()


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})", "fix the syntax or regenerate with 'funnel init'") from None


def validate_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ConfigError(f"invalid {what} {value!r}",
                          suggestion(value, choices) or f"choose one of: {', '.join(choices)}")
    return value


def validate_timezone(tz: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {tz!r}", "use an IANA name such as UTC or Europe/Helsinki") from None
    return tz


def config_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Config))
