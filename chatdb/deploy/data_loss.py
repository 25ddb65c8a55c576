"""No run loses a row or a value unless the operator says so.

Every drop of a table or a column (``op.drop_table``, ``op.drop_column``, and the
drops revisions write by hand, through :func:`before_dropping_tables`) first counts
what it would take with it: the rows of a table, the values (non-NULL) of a column.
The run goes on inside its transaction and, before it commits, :meth:`Recorder.check`
looks at everything it recorded: if anything held values, the run is refused with
the complete list (each table and column, how much, in which step), and rolled back
whole; ``-x allow_data_loss=true`` lets it commit, after a warning that lists the
same.

With ``--sql`` nothing can be counted when the script is written, so each drop is
preceded in the script by a DO block that raises when run against values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from chatdb.deploy import run_options
from chatdb.failures import Refused

log = logging.getLogger("chatdb.deploy.data_loss")

OVERRIDE = run_options.ALLOW_DATA_LOSS


@dataclass(frozen=True)
class Dropped:
    """A table or a column a step drops, and how many rows or values it held."""

    step: str | None
    table: str
    column: str | None
    held: int

    def __str__(self) -> str:
        where = f" ({self.step})" if self.step else ""
        if self.column is None:
            return f"table {self.table}, {self.held} row{'s' if self.held != 1 else ''}{where}"
        plural = "s" if self.held != 1 else ""
        return f"column {self.table}.{self.column}, {self.held} value{plural}{where}"


@dataclass
class Recorder:
    """The drops of one run (one attempt), checked before it commits."""

    allowed: bool = False
    current_step: Callable[[], str | None] = lambda: None
    dropped: list[Dropped] = field(default_factory=list)

    def record(self, table: str, column: str | None, held: int) -> None:
        self.dropped.append(Dropped(self.current_step(), table, column, held))

    @property
    def losses(self) -> list[Dropped]:
        return [d for d in self.dropped if d.held]

    def check(self) -> None:
        """Refuse (a Refused failure: the transaction rolls back) if a drop held values,
        unless allowed; then warn, listing them, before the run commits."""
        if not self.losses:
            return
        listed = "; ".join(map(str, self.losses))
        if self.allowed:
            log.warning(
                "-x %s=true: this run drops what nothing else keeps: %s; committing",
                OVERRIDE,
                listed,
            )
            return
        raise Refused(refusal(self.losses))


def refusal(losses: Sequence[Dropped]) -> str:
    what = "table" if all(d.column is None for d in losses) else "table or column"
    return (
        f"The run would drop {len(losses)} {what}(s) holding values: "
        + "; ".join(map(str, losses))
        + f"; nothing was changed: back the data up, then re-run with -x {OVERRIDE}=true to "
        "drop them."
    )


# --------------------------------------------------------------------------- counting


def will_drop(table: str, marker: str | None) -> str:
    """SQL: true when the step will drop ``table``: it exists and, when the step drops
    only tables it created, carries that step's ``marker`` comment."""
    exists = f"to_regclass('public.{table}') IS NOT NULL"
    if marker is None:
        return exists
    return f"{exists} AND obj_description(to_regclass('public.{table}'), 'pg_class') = '{marker}'"


def _recorder(migration_context: Any) -> Recorder | None:
    return migration_context.opts.get("chatdb_data_loss")


def _allowed(migration_context: Any) -> bool:
    return run_options.of_context(migration_context).allow_data_loss


def before_dropping_tables(
    migration_context: Any, tables: Sequence[str], *, marker: str | None = None
) -> None:
    """Count the rows of each of ``tables`` that the step will drop (``marker``: only
    those whose comment it is) and record them; with ``--sql``, write the guard.
    ``migration_context``: ``op.get_context()`` in a revision."""
    if migration_context.as_sql:
        if not _allowed(migration_context):
            migration_context.impl.execute(guard_sql([(t, None) for t in tables], marker))
        return
    connection = migration_context.bind
    found = []
    for table in tables:
        if connection.execute(text(f"SELECT {will_drop(table, marker)}")).scalar():
            rows = connection.execute(text(f"SELECT count(*) FROM public.{table}")).scalar()
            found.append((table, None, int(rows)))
    _record(migration_context, found)


def before_dropping_column(migration_context: Any, table: str, column: str) -> None:
    """Count the values (non-NULL) of ``table.column`` and record them."""
    if migration_context.as_sql:
        if not _allowed(migration_context):
            migration_context.impl.execute(guard_sql([(table, column)], None))
        return
    connection = migration_context.bind
    exists = connection.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:t) "
            "AND attname = :c AND attnum > 0 AND NOT attisdropped)"
        ),
        {"t": f"public.{table}", "c": column},
    ).scalar()
    if exists:
        held = connection.execute(text(f'SELECT count("{column}") FROM public.{table}')).scalar()
        _record(migration_context, [(table, column, int(held))])


def _record(migration_context: Any, found: list[tuple[str, str | None, int]]) -> None:
    recorder = _recorder(migration_context)
    if recorder is None:  # outside a run of this project's env.py: refuse at once
        recorder = Recorder(allowed=_allowed(migration_context))
        for table, column, held in found:
            recorder.record(table, column, held)
        recorder.check()
        return
    for table, column, held in found:
        recorder.record(table, column, held)


def guard_sql(drops: Sequence[tuple[str, str | None]], marker: str | None) -> str:
    """The guard as SQL, for --sql scripts: raises if a table or column it will drop
    holds a row or a value."""
    counts = []
    for table, column in drops:
        if column is None:
            counts.append(f"""          IF {will_drop(table, marker)} THEN
            EXECUTE 'SELECT count(*) FROM public.{table}' INTO n;
            IF n > 0 THEN held := held || format('table {table}, %s row(s); ', n); END IF;
          END IF;""")
        else:
            counts.append(f"""          IF to_regclass('public.{table}') IS NOT NULL THEN
            EXECUTE 'SELECT count("{column}") FROM public.{table}' INTO n;
            IF n > 0 THEN held := held || format('column {table}.{column}, %s value(s); ', n);
            END IF;
          END IF;""")
    body = "\n".join(counts)
    return f"""
        DO $$
        DECLARE
          n bigint;
          held text := '';
        BEGIN
{body}
          IF held <> '' THEN
            RAISE EXCEPTION 'The script would drop what holds values: %nothing was changed: '
              'back the data up, then write the script with -x {OVERRIDE}=true to drop it',
              held;
          END IF;
        END $$"""
