"""The backend's PostgREST calls on the chat tables, as facts: one :class:`Call` a line.

A calls file (the project's is ``calls/backend.calls``) is written by ``chatdb calls
scan DIR... --write FILE`` and read by ``chatdb calls check``, the deploy's calls guard
and the benchmark's load. It holds facts read from the backend's code, never its code:
where each call is (``path:line`` of its ``.table(``/``.from_(`` or of its HTTP request),
the table, the operation and the columns it writes, selects, filters and orders by.
One call a line, words separated by spaces, so that a rescan reads as a diff::

    # a comment
    backend/app/api/v1/endpoints/chat.py:496 chat_conversations select selects=* filters=id.eq
    backend/app/api/v1/endpoints/chat.py:428 chat_conversations insert writes=id,website_id via=_insert_with_column_fallback
    unresolved backend/app/services/supabase_client.py:450 the table name comes from a parameter ...

- ``writes``: the columns of the payload (insert, update, upsert), as the code first
  tries it (a backend that retries without a missing column still wanted it);
- ``selects``: the columns asked for, ``*`` for all (the default of PostgREST);
- ``filters``: ``column.operator`` (PostgREST's operators: eq, neq, gt, gte, lt, lte,
  like, ilike, is, in, cs, cd, ...);
- ``orders``: ``column.asc`` or ``column.desc``;
- ``limit``: the row limit, when the call sets one;
- ``via``: the helper the call goes through, when not a direct chain (a wrapper of
  the backend that takes the table and the payload, or ``httpx``/``requests``);
- ``retry``: the error codes on which the code drops the column the error names and
  sends the call again (chat.py's column fallbacks retry on 42703, "column ... does not
  exist"); a check runs the call as the code would, and says which columns it lost.

``unresolved`` lines are what a scan found but could not resolve (a table name or a
payload computed elsewhere), with the reason: nothing is skipped silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

OPERATIONS = ("select", "insert", "update", "upsert", "delete")
WRITING = ("insert", "update", "upsert")
_KEYS = ("writes", "selects", "filters", "orders", "limit", "via", "retry")
_WHERE = re.compile(r"^(?P<path>\S+):(?P<line>\d+)$")
UNRESOLVED = "unresolved"


class CallsFileError(ValueError):
    """A line of a calls file that is not a call: the file was edited by hand, or is not
    a calls file. The message names the file, the line and what is wrong."""


@dataclass(frozen=True)
class Filter:
    column: str
    operator: str

    def __str__(self) -> str:
        return f"{self.column}.{self.operator}"


@dataclass(frozen=True)
class Order:
    column: str
    descending: bool = False

    def __str__(self) -> str:
        return f"{self.column}.{'desc' if self.descending else 'asc'}"


@dataclass(frozen=True)
class Call:
    """One PostgREST call of the backend on a table."""

    path: str
    line: int
    table: str
    operation: str
    writes: tuple[str, ...] = ()
    selects: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    orders: tuple[Order, ...] = ()
    limit: int | None = None
    via: str = ""
    retry: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def title(self) -> str:
        """How every report names the call: ``path:line table operation``."""
        return f"{self.where} {self.table} {self.operation}"

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the call names (written, selected, filtered, ordered by), ``*``
        left out, in that order, once each."""
        named = [*self.writes, *self.selects, *(f.column for f in self.filters)]
        named += [o.column for o in self.orders]
        return tuple(dict.fromkeys(c for c in named if c != "*"))

    def render(self) -> str:
        words = [self.where, self.table, self.operation]
        for key, values in (
            ("writes", self.writes),
            ("selects", self.selects),
            ("filters", tuple(map(str, self.filters))),
            ("orders", tuple(map(str, self.orders))),
        ):
            if values:
                words.append(f"{key}={','.join(values)}")
        if self.limit is not None:
            words.append(f"limit={self.limit}")
        if self.via:
            words.append(f"via={self.via}")
        if self.retry:
            words.append(f"retry={','.join(self.retry)}")
        return " ".join(words)

    @classmethod
    def parse(cls, text: str) -> Call:
        """A line as :meth:`render` writes it; ValueError saying what is wrong."""
        words = text.split()
        if len(words) < 3:
            raise ValueError("a call is: path:line table operation [key=value ...]")
        where, table, operation, *rest = words
        match = _WHERE.match(where)
        if not match:
            raise ValueError(f"{where!r} is not path:line")
        if operation not in OPERATIONS:
            raise ValueError(f"{operation!r} is not one of {', '.join(OPERATIONS)}")
        values: dict[str, str] = {}
        for word in rest:
            key, sep, value = word.partition("=")
            if not sep or key not in _KEYS or not value:
                raise ValueError(f"{word!r} is not one of {'=, '.join(_KEYS)}= with a value")
            if key in values:
                raise ValueError(f"{key}= given twice")
            values[key] = value
        split = lambda key: tuple(values[key].split(",")) if key in values else ()
        return cls(
            path=match["path"],
            line=int(match["line"]),
            table=table,
            operation=operation,
            writes=split("writes"),
            selects=split("selects"),
            filters=tuple(_filter(word) for word in split("filters")),
            orders=tuple(_order(word) for word in split("orders")),
            limit=int(values["limit"]) if "limit" in values else None,
            via=values.get("via", ""),
            retry=split("retry"),
        )


def _filter(word: str) -> Filter:
    column, sep, operator = word.partition(".")
    if not sep or not column or not operator:
        raise ValueError(f"filter {word!r} is not column.operator")
    return Filter(column, operator)


def _order(word: str) -> Order:
    column, sep, direction = word.rpartition(".")
    if not sep or direction not in ("asc", "desc") or not column:
        raise ValueError(f"order {word!r} is not column.asc or column.desc")
    return Order(column, direction == "desc")


@dataclass(frozen=True)
class Unresolved:
    """A call a scan found and could not resolve, and why."""

    path: str
    line: int
    reason: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def render(self) -> str:
        return f"{UNRESOLVED} {self.where} {self.reason}"


@dataclass
class CallsFile:
    """The calls of a backend, the calls a scan could not resolve, and a header of
    comments (what was scanned, from where)."""

    calls: list[Call] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    header: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"# {line}" if line else "#" for line in self.header]
        lines += [call.render() for call in self.calls]
        lines += [u.render() for u in self.unresolved]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        path.write_text(self.render())

    @classmethod
    def parse(cls, text: str, name: str = "calls file") -> CallsFile:
        out = cls()
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                if not out.calls and not out.unresolved:
                    out.header.append(line[1:].strip())
                continue
            try:
                if line.startswith(UNRESOLVED + " "):
                    out.unresolved.append(_unresolved(line))
                else:
                    out.calls.append(Call.parse(line))
            except ValueError as exc:
                raise CallsFileError(f"{name}, line {number}: {exc}") from None
        return out

    @classmethod
    def read(cls, path: Path) -> CallsFile:
        return cls.parse(Path(path).read_text(), str(path))

    def on_tables(self, tables: Iterable[str]) -> list[Call]:
        wanted = set(tables)
        return [call for call in self.calls if call.table in wanted]


def _unresolved(line: str) -> Unresolved:
    _, where, *reason = line.split(" ", 2)
    match = _WHERE.match(where)
    if not match or not reason or not reason[0].strip():
        raise ValueError("an unresolved line is: unresolved path:line reason")
    return Unresolved(match["path"], int(match["line"]), reason[0].strip())
