"""No run widens what anon or authenticated (or PUBLIC) can do on an existing table,
unless the operator says so with ``-x allow_wider_access=true``.

Before a run changes anything, :meth:`Guard.snapshot` computes, for every chat table
that exists, what each of those roles can do (the computation of ``chatdb access``:
role x table x command -> all / filtered / none / refused rows). Before each commit
the run makes, :meth:`Guard.check` computes it again, inside the transaction, and
compares cell by cell. A cell is wider when:

- its rows grew: refused -> none -> filtered -> all (a command allowed that was
  refused, every row where some or none were reachable);
- it stays "filtered", but by a condition that was not there before (a new permissive
  policy, or a restrictive one gone), in any part that decides the rows: the command's
  USING, the SELECT policies an UPDATE or DELETE also needs, an UPDATE's WITH CHECK
  (chatdb.inspect.access.policy_reach lists the parts).

Any wider cell fails the run (rolled back whole) with each cell and the policy or
grant responsible (for a cell that was refused, the privileges it lacked: an UPDATE or
DELETE needs SELECT too); with the option, each is logged and the run goes on. For
anon, a condition that compares with ``auth.uid()`` and is never true without a user
id reaches no row (the anon key's JWT has no ``sub``; chatdb.inspect.access says
"none" for such a cell): a policy that only gives signed-in owners their rows widens
authenticated's cells, not anon's. Tables the
run creates have no "before" and are not compared: what a revision gives a new table
is what it declares.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from chatdb.deploy.run_options import ALLOW_WIDER_ACCESS
from chatdb.failures import Refused, StoppedPartWay
from chatdb.inspect import access
from chatdb.inspect.access import ALL, FILTERED, NONE, PUBLIC, REFUSED, Cell, format_through

log = logging.getLogger("chatdb.deploy.widening")

OVERRIDE = ALLOW_WIDER_ACCESS
ROLES = ("anon", "authenticated", PUBLIC)
_RANK = {REFUSED: 3, NONE: 2, FILTERED: 1, ALL: 0}
BEFORE_COMMIT = "before it commits"


@dataclass(frozen=True)
class Widened:
    before: Cell
    after: Cell

    def __str__(self) -> str:
        a = self.after
        if self.before.rows == REFUSED:
            why = f"now granted {'/'.join(newly_granted(self.before))}" + (
                f", rows through {format_through(a.through)}" if a.through else ""
            )
        else:
            why = f"through {format_through(a.through)}"
            new = new_conditions(self.before, a)
            if a.rows == self.before.rows and new:
                why += (
                    " ("
                    + "; ".join(
                        f"restrictive condition gone: {shown(c)}"
                        if restrictive(c)
                        else f"new condition: {shown(c)}"
                        for c in new
                    )
                    + ")"
                )
        return f"{a.role} {a.table} {a.command}: {self.before.rows} -> {a.rows} {why}"


def newly_granted(before: Cell) -> list[str]:
    """The privileges a refused cell lacked ("no SELECT/UPDATE privilege"): an UPDATE or
    DELETE also needs SELECT, so the grant that widens it may be SELECT's."""
    for reason in before.through:
        if reason.startswith("no ") and reason.endswith(" privilege"):
            return reason[3 : -len(" privilege")].split("/")
    return [before.command]


_PART = re.compile(r"^\[(select|check)\] ")


def restrictive(condition: str) -> bool:
    """A restrictive policy's condition ("AND ..."), in any part of a cell's conditions
    (chatdb.inspect.access: "[select] ", "[check] ")."""
    return _PART.sub("", condition).startswith("AND ")


def shown(condition: str) -> str:
    part = _PART.match(condition)
    bare = _PART.sub("", condition)
    if part is None:
        return bare
    return ("WITH CHECK " if part[1] == "check" else "rows visible to SELECT: ") + bare


def _parts(conditions: frozenset[str]) -> dict[str, tuple[set[str], set[str]]]:
    """Conditions by part ("" for the command's own): (permissive, restrictive)."""
    parts: dict[str, tuple[set[str], set[str]]] = {}
    for condition in conditions:
        match = _PART.match(condition)
        permissive, limiting = parts.setdefault(match[0] if match else "", (set(), set()))
        (limiting if restrictive(condition) else permissive).add(condition)
    return parts


def new_conditions(before: Cell, after: Cell) -> list[str]:
    """The permissive conditions ``after`` adds to a part of ``before`` that did not let
    every row through already ("true"), and the restrictive ones it no longer has."""
    was, now = _parts(before.conditions), _parts(after.conditions)
    found = []
    for part in sorted(set(was) | set(now)):
        permissive_was, limiting_was = was.get(part, (set(), set()))
        permissive_now, limiting_now = now.get(part, (set(), set()))
        if part + "true" not in permissive_was:
            found += sorted(permissive_now - permissive_was)
        found += sorted(limiting_was - limiting_now)
    return found


def wider(before: Cell, after: Cell) -> bool:
    if _RANK[after.rows] != _RANK[before.rows]:
        return _RANK[after.rows] < _RANK[before.rows]
    if after.rows != FILTERED:
        return False
    return bool(new_conditions(before, after))


def chat_tables(connection: Connection) -> tuple[str, ...]:
    """The chat tables that exist now: every table of schema public named chat_..."""
    return tuple(
        connection.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') "
                "AND starts_with(c.relname, 'chat_') ORDER BY c.relname"
            )
        ).scalars()
    )


class Guard:
    """The access check of one run (one attempt)."""

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.tables: tuple[str, ...] = ()
        self.before: dict[tuple[str, str, str], Cell] = {}

    def snapshot(self, connection: Connection) -> None:
        """What the roles can do before the run changes anything."""
        self.tables = chat_tables(connection)
        if not self.tables or not _roles_exist(connection):
            self.tables = ()
            return
        cells = access.matrix(connection, self.tables, ROLES)
        self.before = {(c.role, c.table, c.command): c for c in cells}

    def widened(self, connection: Connection) -> list[Widened]:
        if not self.before:
            return []
        remaining = [t for t in self.tables if t in set(chat_tables(connection))]
        if not remaining:
            return []
        after = access.matrix(connection, remaining, ROLES)
        return [
            Widened(self.before[key], cell)
            for cell in after
            if (key := (cell.role, cell.table, cell.command)) in self.before
            and wider(self.before[key], cell)
        ]

    def check(self, connection: Connection, when: str = BEFORE_COMMIT) -> None:
        """Fail the run (its transaction rolls back) if it widened a cell, unless allowed:
        Refused before the commit; after the online steps of pass 1, which commit one by
        one, StoppedPartWay (what they committed is kept). Then log each widened cell."""
        found = self.widened(connection)
        if not found:
            return
        if self.allowed:
            for cell in found:
                log.warning("-x %s=true: access widened: %s", OVERRIDE, cell)
            return
        if when == BEFORE_COMMIT:
            kept, kind = "the run was rolled back and the database is as it was", Refused
        else:  # the online steps of pass 1 commit one by one
            kept, kind = "the run stopped; the online steps it committed are kept", StoppedPartWay
        raise kind(
            f"The run would widen what anon, authenticated or PUBLIC can do on tables that "
            f"existed before it ({when}), in {len(found)} cell(s): "
            + "; ".join(map(str, found))
            + f"; {kept}: review the change "
            f"(`chatdb plan` shows it), then re-run with -x {OVERRIDE}=true to accept it."
        )


def _roles_exist(connection: Connection) -> bool:
    """anon and authenticated exist (before revision 000 on plain PostgreSQL they do not,
    and nobody but the owner can do anything: there is nothing to widen from)."""
    return (
        connection.execute(
            text("SELECT count(*) FROM pg_roles WHERE rolname IN ('anon', 'authenticated')")
        ).scalar()
        == 2
    )
