"""Which values a run's backfills would change, measured by ``chatdb plan``.

A backfill (``op.backfill``) changes values that are already there: 008 fills NULL
``customer_id``, 012 turns a NULL or empty ``message_type`` into ``'text'``, and a
table's triggers may stamp other columns of the rows it writes (004's
``update_chat_conversations_updated_at`` sets ``updated_at``). "Rows updated" does not
say which values change; this says it, column by column, from what the database did.

In the plan's transaction (which always rolls back), each backfill that runs there is
measured: the rows it will touch are copied into a temporary table first, the backfill
runs, and each column of those rows is compared with its copy (``IS DISTINCT FROM``
over the text of the values). A backfill that the deploy would run on the online path
(before its transaction, in batches) is not run by the plan: the rows it would touch
are counted instead (:func:`count_online`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection

from chatdb.deploy.online.steps import qualified
from chatdb.revisions.prerequisites import has_column

TEMP_PREFIX = "chatdb_plan_rows_"


@dataclass(frozen=True)
class Change:
    """In one column, the rows whose value a backfill fills (it was NULL) and those whose
    value it replaces (it was another value)."""

    filled: int = 0
    replaced: int = 0

    def __str__(self) -> str:
        parts = []
        if self.filled:
            parts.append(f"{self.filled} filled (were NULL)")
        if self.replaced:
            parts.append(f"{self.replaced} replaced")
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class Rewrite:
    """What one backfill changes: per column, the rows whose value it fills or replaces
    (its own column, and any other that a trigger sets as it writes them). ``online``:
    counted, not run (the rows where its condition holds, in its column)."""

    step: str | None
    table: str
    column: str
    expression: str
    where: str
    changed: dict[str, Change]
    online: bool = False

    def sentences(self) -> list[str]:
        how = f"{self.column} = {self.expression} where {self.where}"
        step = f"{self.step}: " if self.step else ""
        out = []
        for column, change in self.changed.items():
            if not (change.filled or change.replaced):
                continue
            what = how if column == self.column else f"set by a trigger as {self.column} is filled"
            if self.online:
                what += "; online, before the run's transaction"
            out.append(f"{self.table}.{column}: {change} ({step}{what})")
        return out

    def of_columns(self, existing: set[str]) -> Rewrite:
        """Only the columns in ``existing`` (those the table had before the run: a
        column the run adds has no value to change)."""
        kept = {column: c for column, c in self.changed.items() if column in existing}
        return Rewrite(
            self.step, self.table, self.column, self.expression, self.where, kept, self.online
        )

    @property
    def replaces(self) -> bool:
        """Whether a value that was there (not NULL) is replaced."""
        return any(change.replaced for change in self.changed.values())


@dataclass
class Recorder:
    """The backfills measured in one planned run."""

    current_step: Callable[[], str | None] = lambda: None
    found: list[Rewrite] = field(default_factory=list)

    def measure(
        self,
        connection: Connection,
        table: str,
        column: str,
        expression: str,
        where: str,
        run_backfill: Callable[[], None],
    ) -> None:
        """Run ``run_backfill`` (the backfill's UPDATE) between a copy of the rows it
        touches and the comparison of each of their columns with that copy."""
        copy = f"{TEMP_PREFIX}{len(self.found)}"
        relation = qualified(table)
        connection.execute(
            text(
                f"CREATE TEMP TABLE {copy} ON COMMIT DROP AS SELECT * FROM {relation} WHERE {where}"
            )
        )
        run_backfill()
        columns = list(
            connection.execute(
                text(
                    "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) "
                    "AND attnum > 0 AND NOT attisdropped AND attname IN "
                    "(SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:c) "
                    "AND attnum > 0) ORDER BY attnum"
                ),
                {"t": relation, "c": f"pg_temp.{copy}"},
            ).scalars()
        )
        names = [name for name in columns if name != "id"]
        changed: dict[str, Change] = {}
        if "id" in columns and names:
            counts = ", ".join(
                f'count(*) FILTER (WHERE was."{n}" IS NULL AND now_."{n}" IS NOT NULL), '
                f'count(*) FILTER (WHERE was."{n}" IS NOT NULL '
                f'AND now_."{n}"::text IS DISTINCT FROM was."{n}"::text)'
                for n in names
            )
            row = list(
                connection.execute(
                    text(f"SELECT {counts} FROM {copy} was JOIN {relation} now_ USING (id)")
                ).one()
            )
            changed = {n: Change(int(row[2 * i]), int(row[2 * i + 1])) for i, n in enumerate(names)}
        # The backfill's own column first, then the others it changed (a trigger's).
        ordered = {column: changed.get(column, Change())}
        ordered |= {n: c for n, c in changed.items() if n != column and (c.filled or c.replaced)}
        self.found.append(Rewrite(self.current_step(), table, column, expression, where, ordered))


def count_online(
    connection: Connection, table: str, column: str, expression: str, where: str
) -> Rewrite | None:
    """A backfill of the online path, which the plan does not run: the rows where its
    condition holds (each would get ``expression``). None when the column does not exist
    yet (an online step adds it): a new column has no value to change."""
    if not has_column(connection, table, column):
        return None
    filled, replaced = connection.execute(
        text(
            f"SELECT count(*) FILTER (WHERE {column} IS NULL), "
            f"count(*) FILTER (WHERE {column} IS NOT NULL) "
            f"FROM {qualified(table)} WHERE {where}"
        )
    ).one()
    change = Change(int(filled), int(replaced))
    return Rewrite(None, table, column, expression, where, {column: change}, online=True)
