"""The ``-x key=value`` options of a run, read strictly (one object of them all:
:class:`chatdb.deploy.run_options.RunOptions`).

A mistyped option must stop the run before it connects, with one sentence naming
it: a silently ignored ``-x lock_timout=5s`` (or ``-x lock_timeout=5``: 5 what?) is
how a deploy ends up queueing behind live traffic with the defaults. So every name a
run accepts is listed in :data:`KNOWN`, an unknown one is refused naming the closest
valid one, and durations need a unit.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from chatdb.failures import BadInput

# Every -x name a run accepts, with what it sets (docs/deploying.md, "Options", says more).
KNOWN: dict[str, str] = {
    "lock_timeout": "how long one statement waits for a lock (5s)",
    "statement_timeout": "how long one statement may run (1min)",
    "lock_retries": "how many times a run that hit lock_timeout is run again (3)",
    "lock_retry_delay": "the pause before the first retry, doubling (1s)",
    "migration_lock_wait": "how long a run waits for another deploy's migration lock (10min)",
    "allow_transaction_pooler": "run on port 6543 anyway (false)",
    "allow_data_loss": "let a run drop tables or columns that hold values (false)",
    "allow_wider_access": "let a run widen what anon or authenticated can do (false)",
    "allow_breaking_calls": "let a run break a call the backend makes (false)",
    "calls_file": "the backend's calls a run keeps working (calls/backend.calls)",
    "pgrst_channel": "the channel of the PostgREST reload NOTIFY (pgrst)",
    "pgrst_reload": "send the PostgREST reload NOTIFY (true)",
    "online": "online path for large tables: auto, always or never (auto)",
    "online_threshold": "estimated rows from which a table takes the online path (5000)",
    "online_batch_ms": "target duration of one backfill batch (40ms)",
    "online_batch_size": "rows of the first backfill batch (1000)",
    "online_batch_pause_ms": "pause between backfill batches, in milliseconds (0)",
}
# Names of earlier releases, still accepted: the online path used to be 008's alone.
ALIASES: dict[str, str] = {
    "online_008": "online",
    "online_008_threshold": "online_threshold",
    "online_008_batch_size": "online_batch_size",
    "online_008_batch_pause_ms": "online_batch_pause_ms",
}


def from_list(x: list[str]) -> dict[str, str]:
    """``-x`` arguments as Alembic reads them (``get_x_argument(as_dictionary=True)``):
    ``key=value``, a missing ``=`` giving an empty value; for commands that pass them
    on to Alembic (chatdb up) and check them first."""
    return {key: value for key, _, value in (arg.partition("=") for arg in x)}


def canonical(x_args: Mapping[str, str]) -> dict[str, str]:
    """``x_args`` with every name checked and aliases replaced by their current name.

    An unknown name is a BadInput naming the closest valid one."""
    out: dict[str, str] = {}
    for name, value in x_args.items():
        current = ALIASES.get(name, name)
        if current not in KNOWN:
            raise BadInput(unknown_option(name))
        if current in out and out[current] != value:
            raise BadInput(
                f"-x {name}={value!r} contradicts -x {current}={out[current]!r}: give it once."
            )
        out[current] = value
    return out


def unknown_option(name: str) -> str:
    names = [*KNOWN, *ALIASES]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean -x {close[0]}?" if close else "the valid ones are " + ", ".join(KNOWN)
    return (
        f"-x {name} is not an option of this project: {hint} Nothing was attempted "
        "(docs/deploying.md, section Options, lists them)."
    )


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
        raise BadInput(
            f"-x {name}={raw!r} is not a duration: write it with a unit, e.g. 5s, 500ms "
            "or 2min (0 means no limit)."
        )
    if ms > _MAX_MS:
        raise BadInput(f"-x {name}={raw!r} is out of range: at most 24 days, or 0.")
    return Duration(ms, raw.replace(" ", "") if ms else "0 (no limit)")


def count(x_args: Mapping[str, str], name: str, default: int) -> int:
    """``-x name=3``: a whole number, 0 or more."""
    raw = x_args.get(name, str(default)).strip()
    if not raw.isdigit():
        raise BadInput(f"-x {name}={raw!r} is not a whole number (0 or more).")
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
    raise BadInput(f"-x {name}={raw!r} is not a boolean: use true or false.")


def choice(x_args: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    """``-x name=word``: one of ``choices``."""
    raw = x_args.get(name, default).strip().lower()
    if raw not in choices:
        raise BadInput(f"-x {name}={raw!r} is not one of {', '.join(choices)}.")
    return raw
