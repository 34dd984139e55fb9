"""Typed errors. The library raises these; only the CLI turns them into exit code 2."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class FunnelError(Exception):
    """A user-facing error: one line saying what is wrong, plus a hint saying what to do."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, always
        text = self.message if not self.hint else f"{self.message} — {self.hint}"
        return " ".join(text.split())


class InputError(FunnelError):
    """The input files cannot be read or used."""


class ConfigError(FunnelError):
    """The configuration or a flag value is invalid."""


class OutputError(FunnelError):
    """An output file cannot be written."""


class PipeClosed(Exception):
    """The reader of stdout (``| head``) closed it: not an error, the CLI ends quietly with 0,
    as when what was written fitted in the pipe."""


def _words(text: str) -> tuple[str, ...]:
    """The words of a name in sorted order: 'checkout_begin' and 'Begin Checkout' alike."""
    return tuple(sorted(w for w in re.split(r"[\W_]+", text.lower()) if w))


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Closest candidates to ``word`` (case-insensitive), best first: the same words in
    another order ('checkout_begin' for 'begin_checkout') first, then by spelling."""
    cands = list(candidates)
    lower = {c.lower(): c for c in cands}
    same = [c for c in cands if _words(c) == _words(word) and _words(word)]
    hits = difflib.get_close_matches(word.lower(), list(lower), n=n, cutoff=0.6)
    return list(dict.fromkeys([*same, *(lower[h] for h in hits)]))[:n]


def suggestion(word: str, candidates: Iterable[str]) -> str | None:
    hits = did_you_mean(word, candidates)
    if not hits:
        return None
    return "did you mean " + " or ".join(f"'{h}'" for h in hits) + "?"
