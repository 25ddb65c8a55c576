"""``chatdb drift``: how far a database has drifted from the code.

The database is DATABASE_URL's, else the running local cluster in .chatdb/
(:func:`chatdb.database.for_inspection`); the report says which.

It is ``alembic check`` in plain words, and read-only: it runs the project's env.py
(so it compares exactly what autogenerate compares: the models, ``models.DECLARED``
and the options of :mod:`chatdb.schema.autogen`) on a connection whose every transaction is
READ ONLY, so PostgreSQL itself refuses any write. It needs no ``alembic_version``
table and works at any revision, so it can be pointed at a production database that
was never migrated by Alembic.

Exit status: 0 when the database matches the code, 1 when it drifted (a finding);
when it could not check, ``FAILED: <sentence>`` and the code of the failure's kind
(:mod:`chatdb.failures`: 2 no or bad DATABASE_URL, 3 cannot connect, ...).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from alembic.autogenerate import produce_migrations
from alembic.operations import ops
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from chatdb import markdown as md
from chatdb.database import read_only
from chatdb.failures import Finding, RolledBack, first_line
from chatdb.project import alembic_config
from chatdb.schema.words import FUNCTIONS_GROUP, describe, differs

CLEAN, DRIFTED = 0, Finding.exit_code
APPLICATION_NAME = "chatdb drift"


def add_parser(subparsers: Any) -> None:
    """The ``drift`` subcommand of ``chatdb``."""
    parser = subparsers.add_parser(
        "drift",
        help="report how DATABASE_URL (else the running local cluster) differs from the "
        "models (read-only)",
    )
    md.add_format_option(parser)
    parser.set_defaults(func=lambda args: main(fmt=args.format))


def main(out: TextIO | None = None, fmt: str = "text") -> int:
    """Print the report; 0 clean, 1 drifted. A failure to check is raised (a
    :class:`chatdb.failures.Failure`), for ``chatdb``'s main to print and exit with."""
    out = out or sys.stdout
    with read_only(APPLICATION_NAME) as (connection, shown):
        try:
            script = compare(connection)
        except DBAPIError as exc:
            raise RolledBack(
                f"Reading {shown} failed: {first_line(exc)}; nothing was changed."
            ) from None
    groups = describe(script.upgrade_ops)
    print(report_markdown(shown, groups) if fmt == "markdown" else report(shown, groups), file=out)
    return DRIFTED if groups else CLEAN


def compare(connection: Connection) -> ops.MigrationScript:
    """Run env.py on ``connection`` with a function that only compares (dont_mutate: not
    even Alembic's version table is created) and return what autogenerate would write."""
    config = alembic_config()
    config.attributes["connection"] = connection
    config.attributes["configure_logger"] = False
    script = ScriptDirectory.from_config(config)
    found: list[ops.MigrationScript] = []

    def compare_only(_heads: Any, context: Any) -> list:
        found.append(produce_migrations(context, context.opts["target_metadata"]))
        return []

    with EnvironmentContext(config, script, fn=compare_only, dont_mutate=True):
        script.run_env()
    return found[0]


NO_DRIFT = (
    "{url} matches the models and the declared objects (read-only check, nothing was changed)."
)
READ_ONLY = "Read-only check: nothing was changed."


def report(shown_url: str, groups: dict[str, list[str]]) -> str:
    """The printed report."""
    if not groups:
        return f"No drift: {NO_DRIFT.format(url=shown_url)}"
    lines = [f"Drift: {differs(shown_url, groups)}"]
    for table, sentences in groups.items():
        lines.append("")
        lines.append(table)
        lines.extend(f"  - {sentence}" for sentence in sentences)
    lines.append("")
    lines.append(READ_ONLY)
    return "\n".join(lines)


def report_markdown(shown_url: str, groups: dict[str, list[str]]) -> str:
    """The same report as Markdown (``chatdb drift --format markdown``): a heading, then
    one list of sentences per table."""
    if not groups:
        return "\n".join([md.heading(2, "No drift"), "", md.escape(NO_DRIFT.format(url=shown_url))])
    lines = [md.heading(2, "Drift"), "", md.escape(differs(shown_url, groups))]
    for table, sentences in groups.items():
        title = "Functions" if table == FUNCTIONS_GROUP else md.code(table)
        lines += ["", md.heading(3, title), ""]
        lines += md.bullets(md.escape(sentence) for sentence in sentences)
    lines += ["", md.escape(READ_ONLY)]
    return "\n".join(lines)
