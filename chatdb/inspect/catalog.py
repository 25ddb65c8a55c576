"""A snapshot of the chat tables' catalog, and the differences between two, in words.

``chatdb plan`` (chatdb.deploy.plan) takes a snapshot before a run changes anything and
another inside the run's transaction, just before it rolls back; :func:`differences`
says what the run changed, table by table: columns, constraints, indexes, row level
security, policies, grants of the API roles (and PUBLIC), triggers, publication
membership, and the functions the chat triggers execute. Every value is read from the
catalog with SELECTs only, so this works in a read-only transaction too.

Expressions are deparsed under ``search_path = pg_catalog, public`` (restored after), so
two snapshots of one database compare equal whatever the session's path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

SCHEMA = "public"
TABLE_PREFIX = "chat_"
PUBLICATION = "supabase_realtime"
GRANTEES = ("anon", "authenticated", "service_role", "PUBLIC")
DEPARSE_SEARCH_PATH = "pg_catalog, public"
PRIVILEGE_ORDER = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "MAINTAIN",
)


@dataclass(frozen=True)
class Column:
    type: str
    not_null: bool
    default: str | None

    def __str__(self) -> str:
        out = self.type + (" NOT NULL" if self.not_null else "")
        return out + (f", default {self.default}" if self.default is not None else "")


@dataclass(frozen=True)
class PolicyShape:
    command: str
    permissive: bool
    roles: tuple[str, ...]
    using: str | None
    with_check: str | None

    def __str__(self) -> str:
        out = f"FOR {self.command} TO {', '.join(self.roles)}"
        if not self.permissive:
            out = "AS RESTRICTIVE " + out
        if self.using is not None:
            out += f" USING {self.using}"
        if self.with_check is not None:
            out += f" WITH CHECK {self.with_check}"
        return out


@dataclass
class Table:
    columns: dict[str, Column] = field(default_factory=dict)
    constraints: dict[str, str] = field(default_factory=dict)  # name: definition
    indexes: dict[str, str] = field(default_factory=dict)  # name: what follows USING
    rls: tuple[bool, bool] = (False, False)  # enabled, forced
    policies: dict[str, PolicyShape] = field(default_factory=dict)
    grants: dict[str, tuple[str, ...]] = field(default_factory=dict)  # grantee: privileges
    triggers: dict[str, str] = field(default_factory=dict)  # name: definition
    in_publication: bool = False
    relfilenode: int = 0  # changes when the table is rewritten
    estimated_rows: float = -1.0  # pg_class.reltuples: -1 when never vacuumed or analyzed


@dataclass
class Snapshot:
    tables: dict[str, Table] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)  # signature: definition


def _rows(connection: Connection, sql: str, **params: Any) -> list:
    return list(connection.execute(text(sql), params))


def chat_tables(connection: Connection) -> list[str]:
    return [
        name
        for (name,) in _rows(
            connection,
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = CAST(:s AS regnamespace) "
            "AND c.relkind IN ('r', 'p') AND starts_with(c.relname, :p) ORDER BY c.relname",
            s=SCHEMA,
            p=TABLE_PREFIX,
        )
    ]


def snapshot(connection: Connection) -> Snapshot:
    """The catalog of every table of schema public named chat_..., as plain values."""
    saved = connection.execute(text("SELECT current_setting('search_path')")).scalar()
    connection.execute(
        text("SELECT set_config('search_path', :p, false)"), {"p": DEPARSE_SEARCH_PATH}
    )
    try:
        shot = Snapshot()
        for name in chat_tables(connection):
            shot.tables[name] = _table(connection, name)
        shot.functions = _functions(connection)
        return shot
    finally:
        connection.execute(text("SELECT set_config('search_path', :p, false)"), {"p": saved})


def _table(connection: Connection, name: str) -> Table:
    t = f"{SCHEMA}.{name}"
    table = Table()
    for column, type_, not_null, default in _rows(
        connection,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        t=t,
    ):
        table.columns[column] = Column(type_, bool(not_null), default)
    for constraint, definition, valid in _rows(
        connection,
        "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
        "WHERE conrelid = to_regclass(:t) AND contype <> 'n' ORDER BY conname",
        t=t,
    ):
        table.constraints[constraint] = definition + ("" if valid else " (NOT VALID)")
    for index, definition, valid in _rows(
        connection,
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(:t) "
        "ORDER BY c.relname",
        t=t,
    ):
        shape = definition.split(" USING ", 1)[1]
        if definition.startswith("CREATE UNIQUE"):
            shape = "UNIQUE " + shape
        table.indexes[index] = shape + ("" if valid else " (INVALID)")
    [(enabled, forced, relfilenode, estimate)] = _rows(
        connection,
        "SELECT relrowsecurity, relforcerowsecurity, relfilenode, reltuples FROM pg_class "
        "WHERE oid = to_regclass(:t)",
        t=t,
    )
    table.rls = (bool(enabled), bool(forced))
    table.relfilenode, table.estimated_rows = int(relfilenode), float(estimate)
    for policy, permissive, command, roles, using, check in _rows(
        connection,
        "SELECT policyname, permissive, cmd, CAST(roles AS text[]), qual, with_check "
        "FROM pg_policies WHERE schemaname = :s AND tablename = :n ORDER BY policyname",
        s=SCHEMA,
        n=name,
    ):
        table.policies[policy] = PolicyShape(
            command, permissive == "PERMISSIVE", tuple(sorted(roles)), one_line(using),
            one_line(check),
        )  # fmt: skip
    granted: dict[str, set[str]] = {}
    for grantee, privilege in _rows(
        connection,
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE r.rolname END, a.privilege_type "
        "FROM pg_class c CROSS JOIN LATERAL "
        "aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
        "LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE c.oid = to_regclass(:t)",
        t=t,
    ):
        if grantee in GRANTEES:
            granted.setdefault(grantee, set()).add(privilege)
    table.grants = {
        grantee: tuple(sorted(privileges, key=_privilege_rank))
        for grantee, privileges in sorted(granted.items())
    }
    for trigger, definition in _rows(
        connection,
        "SELECT t.tgname, regexp_replace(pg_get_triggerdef(t.oid), "
        "'^CREATE (CONSTRAINT )?TRIGGER \\S+ ', '') FROM pg_trigger t "
        "WHERE t.tgrelid = to_regclass(:t) AND NOT t.tgisinternal ORDER BY t.tgname",
        t=t,
    ):
        table.triggers[trigger] = definition
    table.in_publication = bool(
        connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = :p "
                "AND schemaname = :s AND tablename = :n)"
            ),
            {"p": PUBLICATION, "s": SCHEMA, "n": name},
        ).scalar()
    )
    return table


def _privilege_rank(privilege: str) -> int:
    return PRIVILEGE_ORDER.index(privilege) if privilege in PRIVILEGE_ORDER else 99


def _functions(connection: Connection) -> dict[str, str]:
    """Every function of schema public (the chat triggers' among them): signature and
    definition."""
    return dict(
        _rows(
            connection,
            "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p "
            "WHERE p.pronamespace = CAST(:s AS regnamespace) AND p.prokind = 'f'",
            s=SCHEMA,
        )
    )


def one_line(sql: str | None) -> str | None:
    """An expression as one line: PostgreSQL prints subqueries over several."""
    if sql is None:
        return None
    sql = " ".join(sql.split())
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", sql))


# --------------------------------------------------------------------------- differences


def differences(before: Snapshot, after: Snapshot) -> dict[str, list[str]]:
    """What changed from ``before`` to ``after``, in sentences grouped by table (tables in
    order of name), then "functions"."""
    out: dict[str, list[str]] = {}
    for name in sorted(set(before.tables) | set(after.tables)):
        old, new = before.tables.get(name), after.tables.get(name)
        if old is None:
            out[name] = created(new)
        elif new is None:
            out[name] = ["the table is dropped"]
        else:
            found = table_differences(old, new)
            if found:
                out[name] = found
    functions = []
    for signature in sorted(set(before.functions) | set(after.functions)):
        was, now = before.functions.get(signature), after.functions.get(signature)
        if was is None:
            functions.append(f"function {signature} created")
        elif now is None:
            functions.append(f"function {signature} dropped")
        elif was != now:
            functions.append(f"function {signature} replaced (its definition changes)")
    if functions:
        out["functions"] = functions
    return out


def created(table: Table) -> list[str]:
    columns = ", ".join(f"{name} {column}" for name, column in table.columns.items())
    out = [f"the table is created: {columns}"]
    out += [f"constraint {n}: {d}" for n, d in table.constraints.items()]
    out += [f"index {n} built: {d}" for n, d in table.indexes.items()]
    out += _rls_words((False, False), table.rls)
    out += [f'policy "{n}" created: {p}' for n, p in table.policies.items()]
    out += [f"trigger {n} created: {d}" for n, d in table.triggers.items()]
    out += _grant_words({}, table.grants)
    if table.in_publication:
        out.append(f"joins publication {PUBLICATION}")
    return out


def table_differences(old: Table, new: Table) -> list[str]:
    out: list[str] = []
    for name in [*old.columns, *(n for n in new.columns if n not in old.columns)]:
        was, now = old.columns.get(name), new.columns.get(name)
        if was is None:
            out.append(f"column {name} added: {now}")
        elif now is None:
            out.append(f"column {name} dropped (was {was})")
        else:
            if was.type != now.type:
                out.append(f"column {name}: type {was.type} -> {now.type}")
            if was.not_null != now.not_null:
                out.append(
                    f"column {name}: {'NOT NULL -> nullable' if was.not_null else 'nullable -> NOT NULL'}"
                )
            if was.default != now.default:
                out.append(
                    f"column {name}: default {was.default or '(none)'} -> {now.default or '(none)'}"
                )
    out += _named_differences("constraint", old.constraints, new.constraints, quote=False)
    out += _index_differences(old.indexes, new.indexes)
    out += _rls_words(old.rls, new.rls)
    out += _policy_differences(old.policies, new.policies)
    out += _named_differences("trigger", old.triggers, new.triggers, quote=False)
    out += _grant_words(old.grants, new.grants)
    if old.in_publication != new.in_publication:
        verb = "joins" if new.in_publication else "leaves"
        out.append(f"{verb} publication {PUBLICATION}")
    return out


def _named_differences(
    kind: str, old: dict[str, Any], new: dict[str, Any], *, quote: bool
) -> list[str]:
    def shown(name: str) -> str:
        return f'"{name}"' if quote else name

    out = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            out.append(f"{kind} {shown(name)} created: {new[name]}")
        elif name not in new:
            out.append(f"{kind} {shown(name)} dropped (was {old[name]})")
        elif old[name] != new[name]:
            out.append(f"{kind} {shown(name)} replaced: {old[name]} -> {new[name]}")
    return out


def _index_differences(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Index changes; an index whose definition now has a new name is said renamed (and
    its old name, if it now holds another definition, built)."""
    renamed: dict[str, str] = {}
    for name, definition in new.items():
        if name in old:
            continue
        source = next(
            (n for n, d in old.items() if d == definition and new.get(n) != d and n not in renamed),
            None,
        )
        if source is not None:
            renamed[source] = name
    out = [f"index {a} renamed to {b} ({old[a]})" for a, b in sorted(renamed.items())]
    for name in sorted(set(old) | set(new)):
        if name in renamed.values():
            continue
        was, now = old.get(name), new.get(name)
        if was == now:
            continue
        if now is None:
            if name not in renamed:
                out.append(f"index {name} dropped (was {was})")
        elif was is None or name in renamed:
            out.append(f"index {name} built: {now}")
        else:
            out.append(f"index {name} rebuilt: {was} -> {now}")
    return out


def _rls_words(old: tuple[bool, bool], new: tuple[bool, bool]) -> list[str]:
    out = []
    if old[0] != new[0]:
        out.append(f"row level security {'enabled' if new[0] else 'disabled'}")
    if old[1] != new[1]:
        out.append(f"row level security {'forced' if new[1] else 'no longer forced'}")
    return out


def _policy_differences(old: dict[str, PolicyShape], new: dict[str, PolicyShape]) -> list[str]:
    return _named_differences("policy", old, new, quote=True)


def _grant_words(old: dict[str, tuple[str, ...]], new: dict[str, tuple[str, ...]]) -> list[str]:
    out = []
    for grantee in GRANTEES:
        was, now = set(old.get(grantee, ())), set(new.get(grantee, ()))
        if now - was:
            out.append(f"{grantee} granted {', '.join(sorted(now - was, key=_privilege_rank))}")
        if was - now:
            out.append(f"{grantee} loses {', '.join(sorted(was - now, key=_privilege_rank))}")
    return out
