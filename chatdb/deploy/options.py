"""The ``-x key=value`` options of a deploy run, read strictly.

A mistyped value must stop the run before it connects, with one sentence naming
the option; a silently ignored ``-x lock_timeout=5`` (5 what?) is how a deploy ends
up queueing behind live traffic. Durations therefore need a unit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from alembic.util import CommandError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|min|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_MAX_MS = 2_147_483_647  # PostgreSQL's timeouts are an int of milliseconds


@dataclass(frozen=True)
class Duration:
    """A time span as PostgreSQL's timeouts take it; 0 means no limit."""

    ms: int
    text: str

    @property
    def seconds(self) -> float:
        return self.ms / 1000

    @property
    def sql(self) -> str:
        """The value for ``SET lock_timeout = ...`` (a quoted literal in milliseconds)."""
        return f"'{self.ms}ms'"

    def __str__(self) -> str:
        return self.text


def duration(x_args: Mapping[str, str], name: str, default: str) -> Duration:
    """``-x name=5s``: a number with a unit (ms, s, min, h), or 0 for no limit."""
    raw = x_args.get(name, default).strip().lower()
    match = _DURATION.match(raw)
    if raw == "0":
        ms = 0
    elif match:
        ms = round(float(match[1]) * _UNIT_MS[match[2]])
    else:
        raise CommandError(
            f"-x {name}={raw!r} is not a duration: write it with a unit, e.g. 5s, 500ms "
            "or 2min (0 means no limit)."
        )
    if ms > _MAX_MS:
        raise CommandError(f"-x {name}={raw!r} is out of range: at most 24 days, or 0.")
    return Duration(ms, raw.replace(" ", "") if ms else "0 (no limit)")


def count(x_args: Mapping[str, str], name: str, default: int) -> int:
    """``-x name=3``: a whole number, 0 or more."""
    raw = x_args.get(name, str(default)).strip()
    if not raw.isdigit():
        raise CommandError(f"-x {name}={raw!r} is not a whole number (0 or more).")
    return int(raw)


TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def flag(x_args: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    """``-x name=true``: an on/off option; an unknown word is an error, not a default."""
    raw = x_args.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise CommandError(f"-x {name}={raw!r} is not a boolean: use true or false.")
