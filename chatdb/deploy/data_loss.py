"""The downgrade data-loss guard: refuse to drop chat tables that hold rows.

A downgrade that drops conversations and messages is a one-way door for the data in
them. Called first in a revision's downgrade(), :func:`refuse_data_loss` counts the
rows of the tables it is about to drop and, if any holds rows, stops the run (which
is rolled back whole) with the counts, unless ``-x allow_data_loss=true``.

With ``--sql`` nothing can be counted when the script is written, so the guard is
written into the script instead: a DO block that raises when it is run against
tables holding rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection

from alembic import context, op
from chatdb.deploy.options import flag

log = logging.getLogger("chatdb.deploy.data_loss")

OVERRIDE = "allow_data_loss"


def will_drop(table: str, marker: str | None) -> str:
    """SQL: true when the downgrade will drop ``table``: it exists and, when the step only
    drops tables it created, carries that step's ``marker`` comment."""
    exists = f"to_regclass('public.{table}') IS NOT NULL"
    if marker is None:
        return exists
    return f"{exists} AND obj_description(to_regclass('public.{table}'), 'pg_class') = '{marker}'"


def row_counts(
    connection: Connection, tables: Sequence[str], marker: str | None = None
) -> dict[str, int]:
    """Rows of each table the downgrade will drop, in the given order."""
    counts = {}
    for table in tables:
        if connection.execute(text(f"SELECT {will_drop(table, marker)}")).scalar():
            counts[table] = connection.execute(
                text(f"SELECT count(*) FROM public.{table}")
            ).scalar()
    return counts


def describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {n} row{'s' if n != 1 else ''}" for table, n in counts.items())


def refuse_data_loss(step: str, tables: Sequence[str], *, marker: str | None = None) -> None:
    """Stop ``step`` (e.g. "downgrade 004 -> 000") if any of ``tables`` holds rows.

    ``marker``: the step drops only the tables whose comment is ``marker`` (revision 000
    drops websites and delivery_orders only where it created them).
    """
    if flag(context.get_x_argument(as_dictionary=True), OVERRIDE):
        log.warning("-x %s=true: %s drops %s whatever they hold", OVERRIDE, step, ", ".join(tables))
        return
    if context.is_offline_mode():
        op.execute(guard_sql(step, tables, marker))
        return
    counts = row_counts(op.get_bind(), tables, marker)
    if any(counts.values()):
        raise CommandError(
            f"The {step} would drop tables holding rows ({describe(counts)}); nothing was "
            f"changed: back the data up, then re-run with -x {OVERRIDE}=true to drop it."
        )


def guard_sql(step: str, tables: Sequence[str], marker: str | None = None) -> str:
    """The guard as SQL, for --sql scripts: raises if a table it will drop holds a row."""
    counts = "\n".join(
        f"""          IF {will_drop(table, marker)} THEN
            EXECUTE 'SELECT count(*) FROM public.{table}' INTO n;
            IF n > 0 THEN
              held := held || format('{table} %s row%s, ', n, CASE WHEN n = 1 THEN '' ELSE 's' END);
            END IF;
          END IF;"""
        for table in tables
    )
    return f"""
        DO $$
        DECLARE
          n bigint;
          held text := '';
        BEGIN
{counts}
          IF held <> '' THEN
            RAISE EXCEPTION 'The {step} would drop tables holding rows (%); nothing was changed: '
              'back the data up, then write the script with -x {OVERRIDE}=true to drop it',
              rtrim(held, ', ');
          END IF;
        END $$"""
