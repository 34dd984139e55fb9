"""Column-role detection for generic tabular logs (the 'events' format)."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import TYPE_CHECKING

from ..errors import InputError, did_you_mean
from ..schema import ROLE_BY_NAME, ROLES, ROW, SOURCE_FILE

if TYPE_CHECKING:
    from ..config import Config


def _show(name: str, width: int = 40) -> str:
    """A column name as it may appear in a message: no control characters, at most ``width``."""
    clean = re.sub(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]", "\ufffd", name)
    return clean if len(clean) <= width else clean[: width - 1] + "…"


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def detect_roles(columns: list[str], overrides: dict[str, str] | None = None,
                 where: str = "input", level: str = "session", given: Config | None = None) -> dict[str, str]:
    """Map role name -> source column. Explicit overrides win; then synonyms in priority order.

    Raises InputError naming the missing role, the columns found and the closest candidates
    (``level="user"``: a user id is required too); an override naming no column, where it was
    set (``given``: the config whose ``columns`` the overrides are: its file and key, or the flag).
    """
    overrides = overrides or {}
    cols = [c for c in columns if c not in (SOURCE_FILE, ROW)]
    roles: dict[str, str] = {}
    used: set[str] = set()
    for role, col in overrides.items():
        if col not in cols:
            near = did_you_mean(col, cols)
            hint = (f"did you mean {' or '.join(repr(_show(n)) for n in near)}?" if near
                    else f"columns found: {', '.join(_show(c) for c in cols[:20])}")
            setting = given.given("columns", role, value=True) if given is not None else f"role {role} = {col!r}"
            raise InputError(f"{_show(setting, 120)}: no such column in {where}", hint)
        roles[role] = col
        used.add(col)
    for role in ROLES:
        if role.name in roles:
            continue
        hit = role_column(role.name, cols, used)
        if hit is not None:
            roles[role.name] = hit
            used.add(hit)
    _require(roles, cols, where, level)
    return roles


def role_column(role: str, columns: list[str], used: Collection[str] = ()) -> str | None:
    """The column of ``columns`` (not among ``used``) that role ``role`` is detected in: the
    one named as its first synonym that any is named as, names compared without case and
    punctuation (``Session-ID`` is ``session_id``; of two alike, the first). ``detect_roles``
    detects every role so; a sessions log its session id column (``load.load_sessions``)."""
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(_norm(c), c)
    return next((hit for syn in ROLE_BY_NAME[role].synonyms
                 if (hit := by_norm.get(_norm(syn))) is not None and hit not in used), None)


def _require(roles: dict[str, str], cols: list[str], where: str, level: str = "session") -> None:
    shown = ", ".join(_show(c) for c in cols[:20]) + (" …" if len(cols) > 20 else "")
    taken = set(roles.values())
    for name in ("timestamp", "event"):
        if name not in roles:
            _taken(name, roles, where)
            near = [c for c in cols
                    if c not in taken and any(did_you_mean(s, [c]) for s in ROLE_BY_NAME[name].synonyms)]
            hint = (f"did you mean {' or '.join(repr(_show(n)) for n in near[:3])}? " if near else "") + \
                f"set it with --column {name}=COLUMN or [columns] {name} = \"...\" in funnel.toml"
            raise InputError(f"{where}: no {name} column found (columns: {shown})", hint)
    if "session_id" not in roles and "user_id" not in roles:
        _taken("session_id", roles, where)
        _taken("user_id", roles, where)
        raise InputError(f"{where}: no session id or user id column found (columns: {shown})",
                         "set one with --column session_id=COLUMN or --column user_id=COLUMN")
    if level == "user" and "user_id" not in roles:
        _taken("user_id", roles, where)
        # (else every entity would be a session, coalesce(user, session): sessions counted as users)
        raise InputError(f"{where}: a user-level funnel (--unit user) needs a user id column, and none was found "
                         f"(columns: {shown})",
                         "map one with --column user_id=COLUMN or [columns] user_id = \"...\" in funnel.toml, "
                         "or count sessions (without --unit user)")


def _taken(name: str, roles: dict[str, str], where: str) -> None:
    """Role ``name`` has no column because another role was set to the column named as it is
    (``--column event=timestamp``): an error saying so, not 'no timestamp column' beside a
    column named timestamp."""
    names = {_norm(s) for s in ROLE_BY_NAME[name].synonyms}
    for other, col in roles.items():
        if _norm(col) in names:
            raise InputError(f"{where}: column {_show(col)!r} is already taken by the {other} role, so the {name} "
                             "role has no column",
                             f"map {other} to another column, or set --column {name}=COLUMN")
