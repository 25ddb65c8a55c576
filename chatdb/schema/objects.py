"""The operations autogenerate writes for the chat system's non-table objects (policies,
triggers, grants, row level security, publication membership, functions), and which
tables are the chat system's: the vocabulary shared by autogenerate
(:mod:`chatdb.schema.autogen`), its sentences (:mod:`chatdb.schema.words`) and the
access report of a revision (:mod:`chatdb.schema.access_report`).

It imports nothing of the project's models at import time: ``chatdb drift`` and
``chatdb`` load it before env.py puts the project's folder on sys.path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from alembic.autogenerate import renderers
from alembic.operations.ops import MigrateOperation

VERSION_TABLE = "alembic_version"
CHAT_TABLE_PREFIX = "chat_"
# A change's phase: drops of objects before Alembic's table operations, creates after.
BEFORE_TABLES, AFTER_TABLES = 1, 3


@dataclass(eq=False)
class Change:
    """One difference between the code and the database: a sentence for people, and the
    operations that remove it."""

    table: str | None  # None for a function
    kind: str
    name: str
    sentence: str
    ops: list[ObjectOp] = field(default_factory=list)

    def add(self, action: str, phase: int, sql: list[str], undo: list[str]) -> Change:
        self.ops.append(ObjectOp(action, self.kind, self.table, self.name, sql, undo, phase, self))
        return self


class ObjectOp(MigrateOperation):
    """SQL that changes one non-table object, with the SQL that undoes it (downgrade).

    Rendered into a revision as ``op.execute(...)`` calls: a revision file stays a
    self-contained record and never depends on how this module evolves.
    """

    _reverse_action: ClassVar[dict[str, str]] = {"add": "drop", "drop": "add", "alter": "alter"}

    def __init__(
        self,
        action: str,
        kind: str,
        table: str | None,
        name: str,
        sql: list[str],
        undo: list[str],
        phase: int,
        change: Change | None = None,
    ) -> None:
        self.action, self.kind, self.table, self.name = action, kind, table, name
        self.sql, self.undo, self.phase, self.change = list(sql), list(undo), phase, change

    def reverse(self) -> ObjectOp:
        return ObjectOp(
            self._reverse_action[self.action],
            self.kind,
            self.table,
            self.name,
            self.undo,
            self.sql,
            self.phase,
            self.change,
        )

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return (f"{self.action}_{self.kind}", self.table, self.name)

    def describe(self) -> str:
        where = f" on {self.table}" if self.table else ""
        label = self.kind.replace("_", " ")
        name = f'"{self.name}"' if self.kind == "policy" else self.name
        return " ".join(filter(None, (self.action, label, name))) + where


def render_execute(sql: str) -> str:
    """``op.execute(...)`` of one statement, readable and exact: a statement with both kinds
    of quotes (a policy name and a string literal) is triple-quoted rather than escaped;
    a multi-line one (a function) becomes one literal per line, so that indenting the
    revision never changes the SQL."""
    if "\n" in sql:
        lines = "".join(f"    {line!r}\n" for line in sql.splitlines(keepends=True))
        return f"op.execute(\n{lines})"
    if '"' in sql and "'" in sql and '"""' not in sql and "\\" not in sql and sql[-1] != '"':
        return f'op.execute("""{sql}""")'
    return f"op.execute({sql!r})"


@renderers.dispatch_for(ObjectOp)
def render_object_op(autogen_context: Any, op: ObjectOp) -> list[str]:
    if not op.sql:  # e.g. the downgrade of a new table's grants: the table goes anyway
        return []
    return [f"# {op.describe()}"] + [render_execute(sql) for sql in op.sql]


def chat_tables_of(metadata_tables: Any) -> set[str]:
    """Names of the models' chat tables (the metadata minus other migrations' tables)."""
    from models import EXTERNAL_TABLES  # the project's, once env.py has put it on sys.path

    return {
        table.name
        for table in metadata_tables
        if table.schema is None
        and table.name not in EXTERNAL_TABLES
        and table.name != VERSION_TABLE
    }
