"""Differences between the code and a database, in plain sentences: the vocabulary that
``chatdb drift`` prints and ``alembic check`` fails with.

:func:`describe` turns autogenerate's operations (Alembic's own and this project's
:class:`chatdb.schema.objects.ObjectOp`) into sentences grouped by table;
:func:`one_line` says the same in one logical line. Both commands import it from here,
one floor below each of them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from alembic.operations import ops
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import CompileError

from chatdb.schema.objects import ObjectOp

FUNCTIONS_GROUP = "functions"


def describe(upgrade_ops: ops.UpgradeOps) -> dict[str, list[str]]:
    """Sentences grouped by table (tables by name, functions last); inside a table:
    columns, indexes, constraints, then row level security, policies, triggers, grants
    and publication, each kind in alphabetical order (the report is the same on every
    run). A table that is missing or extra is one sentence: what comes and goes with it
    is only counted."""
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


def differs(subject: str, groups: dict[str, list[str]]) -> str:
    count = sum(len(sentences) for sentences in groups.values())
    return (
        f"{subject} differs from the models and the declared objects "
        f"in {count} way{'s' if count != 1 else ''}:"
    )


def one_line(groups: dict[str, list[str]]) -> str:
    """The same sentences in one logical line, for ``alembic check``: Alembic prints a
    failure as ``FAILED: <message>`` and, on a terminal, re-wraps it to the terminal's
    width, joining lines, so a multi-line layout would not survive there. Groups are
    ``table: sentence; sentence``, one after the other."""
    parts = [f"{group}: {'; '.join(sentences)}" for group, sentences in groups.items()]
    return (
        f"{differs('the database', groups)} {'; '.join(parts)}. "
        "(chatdb drift prints the same list, one difference per line.)"
    )
