"""Read the chat system's non-table objects from a live database, read-only.

The result uses the same value types as the declarations (:mod:`models.entities`),
so comparing code and database is comparing values. Only SELECTs are run (plus a
``set_config`` of the session's search_path, restored afterwards), so this works in
a read-only transaction: ``chatdb drift`` relies on that.

Expressions are read under ``search_path = pg_catalog, public``: PostgreSQL then
prints ``auth.uid()`` qualified and the chat tables' columns unqualified, the same on
a plain PostgreSQL and on Supabase (whose sessions also have ``extensions`` on
their path).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection

from models.entities import SCHEMA, TABLE_PRIVILEGES, Function, Policy, Trigger

DEPARSE_SEARCH_PATH = "pg_catalog, public"


@dataclass
class LiveObjects:
    """What the database holds for the chat tables found (by name) in schema public."""

    # Existing chat tables, each with its row level security flag.
    tables: dict[str, bool] = field(default_factory=dict)
    policies: dict[tuple[str, str], Policy] = field(default_factory=dict)
    triggers: dict[tuple[str, str], Trigger] = field(default_factory=dict)
    # Public functions the chat triggers execute, and those asked for by name.
    functions: dict[tuple[str, str], Function] = field(default_factory=dict)
    grants: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    publication_exists: bool = False
    publication_for_all: bool = False
    publication_members: set[str] = field(default_factory=set)
    # Every table privilege this server knows (what ALL means here).
    all_privileges: tuple[str, ...] = TABLE_PRIVILEGES


def read(
    connection: Connection,
    *,
    table_names: Iterable[str],
    table_prefix: str,
    function_names: Iterable[str],
    roles: Iterable[str],
    publication: str,
) -> LiveObjects:
    """Read the objects of the tables named ``table_names`` or starting with
    ``table_prefix`` in schema public."""
    with deparse_search_path(connection):
        live = LiveObjects()
        live.tables = _tables(connection, sorted(table_names), table_prefix)
        tables = sorted(live.tables)
        live.policies = read_policies(connection, tables)
        live.triggers, trigger_functions = _triggers(connection, tables)
        live.functions = _functions(connection, sorted(set(function_names) | trigger_functions))
        live.all_privileges = _all_privileges(connection)
        live.grants = _grants(connection, tables, sorted(roles))
        _publication(connection, live, publication)
        return live


@contextmanager
def deparse_search_path(connection: Connection) -> Iterator[None]:
    """The session's search_path set to :data:`DEPARSE_SEARCH_PATH` (with ``set_config``,
    which a read-only transaction allows), then put back as it was."""
    saved = connection.scalar(text("SELECT current_setting('search_path')"))
    connection.execute(
        text("SELECT set_config('search_path', :path, false)"), {"path": DEPARSE_SEARCH_PATH}
    )
    try:
        yield
    finally:
        connection.execute(text("SELECT set_config('search_path', :path, false)"), {"path": saved})


def _tables(connection: Connection, names: list[str], prefix: str) -> dict[str, bool]:
    rows = connection.execute(
        text(
            "SELECT c.relname, c.relrowsecurity FROM pg_class c "
            "WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relkind IN ('r', 'p') "
            "AND (c.relname = ANY(:names) OR starts_with(c.relname, :prefix))"
        ),
        {"schema": SCHEMA, "names": names, "prefix": prefix},
    )
    return {name: bool(rls) for name, rls in rows}


def read_policies(connection: Connection, tables: list[str]) -> dict[tuple[str, str], Policy]:
    """The policies of ``tables`` in schema public, by (table, name); also read by
    chatdb.inspect.access."""
    rows = connection.execute(
        text(
            "SELECT tablename, policyname, permissive, CAST(roles AS text[]), cmd, qual, "
            "with_check FROM pg_policies WHERE schemaname = :schema AND tablename = ANY(:tables)"
        ),
        {"schema": SCHEMA, "tables": tables},
    )
    policies = {}
    for table, name, permissive, roles, cmd, qual, with_check in rows:
        policy = Policy(
            table=table,
            name=name,
            command=cmd,
            using=qual,
            with_check=with_check,
            permissive=permissive == "PERMISSIVE",
            roles=tuple(sorted(roles)),
        )
        policies[policy.key] = policy
    return policies


def _triggers(
    connection: Connection, tables: list[str]
) -> tuple[dict[tuple[str, str], Trigger], set[str]]:
    """The tables' own triggers, and the names of the public functions they execute."""
    rows = connection.execute(
        text(
            "SELECT c.relname, t.tgname, "
            "regexp_replace(pg_get_triggerdef(t.oid), "
            "'^CREATE (CONSTRAINT )?TRIGGER ' || quote_ident(t.tgname) || ' ', ''), "
            "p.proname, p.pronamespace = CAST(:schema AS regnamespace) "
            "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE NOT t.tgisinternal AND c.relnamespace = CAST(:schema AS regnamespace) "
            "AND c.relname = ANY(:tables)"
        ),
        {"schema": SCHEMA, "tables": tables},
    )
    triggers, functions = {}, set()
    for table, name, definition, function, in_schema in rows:
        trigger = Trigger(table=table, name=name, definition=definition)
        triggers[trigger.key] = trigger
        if in_schema:
            functions.add(function)
    return triggers, functions


def _functions(connection: Connection, names: list[str]) -> dict[tuple[str, str], Function]:
    rows = connection.execute(
        text(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid), "
            "format_type(p.prorettype, NULL), l.lanname, p.prosrc, p.prosecdef, "
            "pg_get_functiondef(p.oid) "
            "FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
            "WHERE p.pronamespace = CAST(:schema AS regnamespace) AND p.prokind = 'f' "
            "AND p.proname = ANY(:names)"
        ),
        {"schema": SCHEMA, "names": names},
    )
    functions = {}
    for name, arguments, returns, language, body, secdef, definition in rows:
        function = Function(
            name=name,
            arguments=arguments,
            returns=returns,
            language=language,
            body=body,
            security_definer=bool(secdef),
            live_definition=definition.strip(),
        )
        functions[function.key] = function
    return functions


def _all_privileges(connection: Connection) -> tuple[str, ...]:
    """What a table owner holds by default: every table privilege of this server version."""
    rows = connection.execute(
        text(
            "SELECT a.privilege_type FROM aclexplode(acldefault('r', "
            "(SELECT oid FROM pg_roles WHERE rolname = current_user))) a"
        )
    ).scalars()
    found = set(rows)
    known = [p for p in TABLE_PRIVILEGES if p in found]
    return tuple(known + sorted(found - set(known)))


def _grants(
    connection: Connection, tables: list[str], roles: list[str]
) -> dict[tuple[str, str], frozenset[str]]:
    rows = connection.execute(
        text(
            "SELECT c.relname, r.rolname, a.privilege_type "
            "FROM pg_class c CROSS JOIN pg_roles r "
            "LEFT JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
            "ON a.grantee = r.oid "
            "WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relkind IN ('r', 'p') "
            "AND c.relname = ANY(:tables) AND r.rolname = ANY(:roles)"
        ),
        {"schema": SCHEMA, "tables": tables, "roles": roles},
    )
    grants: dict[tuple[str, str], set[str]] = {}
    for table, role, privilege in rows:
        privileges = grants.setdefault((table, role), set())
        if privilege is not None:
            privileges.add(privilege)
    return {key: frozenset(value) for key, value in grants.items()}


def _publication(connection: Connection, live: LiveObjects, publication: str) -> None:
    row = connection.execute(
        text("SELECT puballtables FROM pg_publication WHERE pubname = :name"),
        {"name": publication},
    ).first()
    if row is None:
        return
    live.publication_exists = True
    live.publication_for_all = bool(row[0])
    live.publication_members = set(
        connection.execute(
            text(
                "SELECT tablename FROM pg_publication_tables "
                "WHERE pubname = :name AND schemaname = :schema"
            ),
            {"name": publication, "schema": SCHEMA},
        ).scalars()
    )
