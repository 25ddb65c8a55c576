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
from collections import Counter
from typing import Any, TextIO

from alembic.autogenerate import produce_migrations
from alembic.operations import ops
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import CompileError, DBAPIError

from chatdb import markdown as md
from chatdb.database import read_only
from chatdb.failures import Finding, RolledBack, first_line
from chatdb.project import alembic_config

CLEAN, DRIFTED = 0, Finding.exit_code
APPLICATION_NAME = "chatdb drift"
FUNCTIONS_GROUP = "functions"


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


# --------------------------------------------------------------------------- words


def describe(upgrade_ops: ops.UpgradeOps) -> dict[str, list[str]]:
    """Sentences grouped by table (tables by name, functions last); inside a table:
    columns, indexes, constraints, then row level security, policies, triggers, grants
    and publication, each kind in alphabetical order (the report is the same on every
    run). A table that is missing or extra is one sentence: what comes and goes with it
    is only counted."""
    # Imported here, after env.py ran: chatdb.schema.autogen imports ``models``, which must be
    # the project's that alembic.ini's prepend_sys_path points at (the working copy).
    from chatdb.schema.autogen import ObjectOp

    whole_tables: dict[str, str] = {}
    for op in upgrade_ops.ops:
        if isinstance(op, ops.CreateTableOp):
            whole_tables[op.table_name] = "the table is missing"
        elif isinstance(op, ops.DropTableOp):
            whole_tables[op.table_name] = "the table is in the database but not in the code"
    found: dict[str, list[tuple[int, str]]] = {table: [] for table in whole_tables}
    hidden: dict[str, Counter] = {table: Counter() for table in whole_tables}
    seen: set[int] = set()
    for op in upgrade_ops.ops:
        if isinstance(op, (ops.CreateTableOp, ops.DropTableOp)):
            continue
        if isinstance(op, ops.ModifyTableOps) and op.table_name in hidden:
            hidden[op.table_name].update(_kind_of(child) for child in op.ops)
        elif isinstance(op, ops.ModifyTableOps):
            replaced = replaced_indexes(op.ops)
            found.setdefault(op.table_name, []).extend(
                (_RANK.index(_kind_of(child)), sentence)
                for child in op.ops
                for sentence in column_or_index_words(child, replaced)
            )
        elif isinstance(op, ObjectOp):
            change = op.change
            if change is None or id(change) in seen:
                continue
            seen.add(id(change))
            if change.table in hidden:
                hidden[change.table][change.kind] += 1
            else:
                found.setdefault(change.table or FUNCTIONS_GROUP, []).append(
                    (_RANK.index(change.kind), change.sentence)
                )
        else:
            found.setdefault(getattr(op, "table_name", None) or "other", []).append(
                (len(_RANK), f"{op.to_diff_tuple()}")
            )
    for table, sentence in whole_tables.items():
        if hidden[table] and sentence.endswith("missing"):
            sentence += ", and with it what the code declares on it: " + _kinds(hidden[table])
        found[table].insert(0, (-1, sentence))
    order = sorted(name for name in found if name != FUNCTIONS_GROUP)
    if FUNCTIONS_GROUP in found:
        order.append(FUNCTIONS_GROUP)
    return {
        name: [sentence for _, sentence in sorted(found[name])] for name in order if found[name]
    }


_RANK = (
    "column",
    "index",
    "constraint",
    "row_level_security",
    "policy",
    "trigger",
    "grant",
    "publication",
    "function",
)


def _kind_of(op: Any) -> str:
    if isinstance(op, (ops.AddColumnOp, ops.DropColumnOp, ops.AlterColumnOp)):
        return "column"
    if isinstance(op, (ops.CreateIndexOp, ops.DropIndexOp)):
        return "index"
    return "constraint"


def _kinds(kinds: Counter) -> str:
    """``Counter({"policy": 3, "row_level_security": 1})`` as "3 policies, row level security"."""
    plural = {"index": "indexes", "policy": "policies"}
    parts = []
    for kind, count in kinds.items():
        if kind == "row_level_security":
            parts.append("row level security")
        elif kind == "publication":
            parts.append("publication membership")
        elif kind == "grant":
            parts.append(f"grants to {count} role{'s' if count != 1 else ''}")
        else:
            parts.append(f"{count} {kind if count == 1 else plural.get(kind, kind + 's')}")
    return ", ".join(parts)


def _type(type_: Any) -> str:
    try:
        return type_.compile(dialect=postgresql.dialect()).lower()
    except (CompileError, NotImplementedError, AttributeError):  # a type PostgreSQL cannot render
        return str(type_).lower()


def _default(default: Any) -> str:
    if default in (None, False):
        return "no default"
    arg = getattr(default, "arg", default)
    return f"default {getattr(arg, 'text', arg)}"


def _null(nullable: bool | None) -> str:
    return "nullable" if nullable in (None, True) else "NOT NULL"


def replaced_indexes(table_ops: list[Any]) -> dict[str, ops.CreateIndexOp]:
    """Indexes dropped and created again under the same name (their columns, method or
    predicate differ), by name: the live index's definition (the drop's undo)."""
    created = {op.index_name for op in table_ops if isinstance(op, ops.CreateIndexOp)}
    return {
        op.index_name: op._reverse
        for op in table_ops
        if isinstance(op, ops.DropIndexOp) and op.index_name in created and op._reverse
    }


def index_definition(op: ops.CreateIndexOp) -> str:
    """``on (columns)``, with ``USING method`` when not btree and the partial index's WHERE."""
    columns = ", ".join(getattr(c, "name", None) or str(c) for c in op.columns)
    words = f"on ({columns})"
    using = op.kw.get("postgresql_using")
    if using and using.lower() != "btree":
        words += f" USING {using}"
    where = op.kw.get("postgresql_where")
    if where is not None:
        words += f" WHERE {' '.join(str(getattr(where, 'text', where)).split())}"
    return words


def column_or_index_words(
    op: Any, replaced: dict[str, ops.CreateIndexOp] | None = None
) -> list[str]:
    """Plain sentences for one of Alembic's table-level operations. ``replaced``: the
    indexes dropped and created again (one sentence, on the create)."""
    replaced = replaced or {}
    if isinstance(op, ops.DropIndexOp) and op.index_name in replaced:
        return []
    if isinstance(op, ops.CreateIndexOp) and op.index_name in replaced:
        live, code = index_definition(replaced[op.index_name]), index_definition(op)
        return [
            f"index {op.index_name} differs: it is {live} in the database, the code says {code}"
        ]
    if isinstance(op, ops.AddColumnOp):
        column = op.column
        default = "" if column.server_default is None else f", {_default(column.server_default)}"
        return [
            (
                f"column {column.name} is missing "
                f"(the code says {_type(column.type)} {_null(column.nullable)}{default})"
            )
        ]
    if isinstance(op, ops.DropColumnOp):
        column = op.to_column()
        return [
            (
                f"column {op.column_name} ({_type(column.type)} {_null(column.nullable)}) "
                "is in the database but not in the code"
            )
        ]
    if isinstance(op, ops.AlterColumnOp):
        return _alter_column_words(op)
    if isinstance(op, ops.CreateIndexOp):
        return [f"index {op.index_name} {index_definition(op)} is missing"]
    if isinstance(op, ops.DropIndexOp):
        return [f"index {op.index_name} is in the database but not in the code"]
    if isinstance(op, ops.CreateForeignKeyOp):
        ondelete = op.kw.get("ondelete")
        tail = f" ON DELETE {ondelete}" if ondelete else ""
        return [
            (
                f"foreign key {op.constraint_name} ({', '.join(op.local_cols)} -> "
                f"{op.referent_table}({', '.join(op.remote_cols)}){tail}) is missing"
            )
        ]
    if isinstance(op, ops.CreateUniqueConstraintOp):
        return [f"unique constraint {op.constraint_name} ({', '.join(op.columns)}) is missing"]
    if isinstance(op, ops.CreatePrimaryKeyOp):
        return [f"primary key {op.constraint_name} ({', '.join(op.columns)}) is missing"]
    if isinstance(op, ops.CreateCheckConstraintOp):
        return [f"check constraint {op.constraint_name} is missing"]
    if isinstance(op, ops.DropConstraintOp):
        kind = {
            "foreignkey": "foreign key",
            "unique": "unique constraint",
            "primary": "primary key",
            "check": "check constraint",
        }.get(op.constraint_type or "", "constraint")
        return [f"{kind} {op.constraint_name} is in the database but not in the code"]
    return [f"{op.to_diff_tuple()}"]


def _alter_column_words(op: ops.AlterColumnOp) -> list[str]:
    column, out = op.column_name, []
    if op.modify_type is not None:
        out.append(
            f"column {column} is {_type(op.existing_type)}, the code says {_type(op.modify_type)}"
        )
    if op.modify_nullable is not None:
        out.append(
            f"column {column} is {_null(not op.modify_nullable)}, "
            f"the code says {_null(op.modify_nullable)}"
        )
    if op.modify_server_default is not False:
        out.append(
            f"column {column} has {_default(op.existing_server_default)}, "
            f"the code says {_default(op.modify_server_default)}"
        )
    if op.modify_comment is not False:
        out.append(f"column {column}'s comment differs from the code")
    return out


def _differs(subject: str, groups: dict[str, list[str]]) -> str:
    count = sum(len(sentences) for sentences in groups.values())
    return (
        f"{subject} differs from the models and the declared objects "
        f"in {count} way{'s' if count != 1 else ''}:"
    )


NO_DRIFT = (
    "{url} matches the models and the declared objects (read-only check, nothing was changed)."
)
READ_ONLY = "Read-only check: nothing was changed."


def report(shown_url: str, groups: dict[str, list[str]]) -> str:
    """The printed report."""
    if not groups:
        return f"No drift: {NO_DRIFT.format(url=shown_url)}"
    lines = [f"Drift: {_differs(shown_url, groups)}"]
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
    lines = [md.heading(2, "Drift"), "", md.escape(_differs(shown_url, groups))]
    for table, sentences in groups.items():
        title = "Functions" if table == FUNCTIONS_GROUP else md.code(table)
        lines += ["", md.heading(3, title), ""]
        lines += md.bullets(md.escape(sentence) for sentence in sentences)
    lines += ["", md.escape(READ_ONLY)]
    return "\n".join(lines)


def one_line(groups: dict[str, list[str]]) -> str:
    """The same sentences in one logical line, for ``alembic check``: Alembic prints a
    failure as ``FAILED: <message>`` and, on a terminal, re-wraps it to the terminal's
    width, joining lines, so a multi-line layout would not survive there. Groups are
    ``table: sentence; sentence``, one after the other."""
    parts = [f"{group}: {'; '.join(sentences)}" for group, sentences in groups.items()]
    return (
        f"{_differs('the database', groups)} {'; '.join(parts)}. "
        "(chatdb drift prints the same list, one difference per line.)"
    )
