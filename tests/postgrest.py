"""Requests as PostgREST runs them, seeded chat rows, and the access matrix the spec implies.

PostgREST runs every request in its own transaction, as a database role, with the
JWT's claims in transaction-local settings::

    BEGIN;
    SET LOCAL ROLE anon;                                   -- or authenticated, service_role
    SELECT set_config('request.jwt.claims', '{"role": "anon"}', true);
    <the statement>
    COMMIT;

(PostgREST before v9 set one setting per claim, ``request.jwt.claim.sub`` and so on.)
auth.uid() reads the ``sub`` claim from either. :func:`postgrest_request` reproduces
that on a test connection, which is a superuser: everything it runs afterwards in the
transaction runs with the role's privileges and policies, as PostgREST's would.

:func:`rest_insert`, :func:`rest_update` and :func:`rest_select` go one step further and
run a whole request the way PostgREST builds it for the service-role key (the key the
chat backend uses): the payload's columns checked against the schema cache first
(PGRST204), then one statement over ``json_populate_recordset`` / ``json_populate_record``,
its result returned as PostgREST's JSON body.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from chatdb.inspect.access import ALL, COMMANDS, NONE, REFUSED, read_matrix_from_env
from tests.pg import database_url

OWNER = uuid.UUID("00000000-0000-4000-8000-00000000000a")  # owns the seeded "own" website
STRANGER = uuid.UUID("00000000-0000-4000-8000-00000000000b")  # owns the "other" website

# Who calls the API: the role PostgREST switches to and the JWT's sub (None: no user).
CALLERS = {
    "anon": ("anon", None),
    "owner": ("authenticated", OWNER),
    "stranger": ("authenticated", STRANGER),
    "service_role": ("service_role", None),
}


@contextmanager
def postgrest_request(
    conn: psycopg.Connection,
    role: str,
    sub: uuid.UUID | None = None,
    *,
    legacy: bool = False,
    commit: bool = False,
) -> Iterator[psycopg.Connection]:
    """One PostgREST request: a transaction, SET LOCAL ROLE, the JWT claims as settings.

    Rolled back at the end unless ``commit``; an error inside rolls it back and is
    re-raised. ``legacy`` sets ``request.jwt.claim.<name>`` per claim instead of the
    JSON ``request.jwt.claims`` (PostgREST before v9).
    """
    claims: dict[str, str] = {"role": role}
    if sub is not None:
        claims["sub"] = str(sub)
    with conn.transaction(force_rollback=not commit):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        if legacy:
            for name, value in claims.items():
                conn.execute(
                    "SELECT set_config(%s, %s, true)", (f"request.jwt.claim.{name}", value)
                )
        else:
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        yield conn


@dataclass(frozen=True)
class Seed:
    """Rows in two websites: OWNER's ("own") and STRANGER's ("other")."""

    own_website: uuid.UUID
    other_website: uuid.UUID
    own_conversation: uuid.UUID
    other_conversation: uuid.UUID
    ids: dict[str, list[uuid.UUID]]  # every seeded row id, by table
    own_unread: tuple[int, int, int]  # own conversation's (unread_owner, _customer, _rider)


def seed(conn: psycopg.Connection) -> Seed:
    """As the superuser (no RLS): per website a conversation, a message and a participant."""
    ids: dict[str, list[uuid.UUID]] = {
        "chat_conversations": [],
        "chat_messages": [],
        "chat_participants": [],
    }
    websites, conversations = [], []
    for user, phone in ((OWNER, "0100000001"), (STRANGER, "0100000002")):
        website = conn.execute(
            "INSERT INTO websites (user_id) VALUES (%s) RETURNING id", (user,)
        ).fetchone()[0]
        conversation = conn.execute(
            "INSERT INTO chat_conversations (website_id, customer_id, customer_name, "
            "customer_phone, status) VALUES (%s, %s, 'Seeded', %s, 'active') RETURNING id",
            (website, f"customer_{phone}", phone),
        ).fetchone()[0]
        message = conn.execute(
            "INSERT INTO chat_messages (conversation_id, sender_type, sender_id, content) "
            "VALUES (%s, 'customer', %s, 'seeded') RETURNING id",
            (conversation, f"customer_{phone}"),
        ).fetchone()[0]
        participant = conn.execute(
            "INSERT INTO chat_participants (conversation_id, user_type, user_id) "
            "VALUES (%s, 'customer', %s) RETURNING id",
            (conversation, f"customer_{phone}"),
        ).fetchone()[0]
        for table, row in (
            ("chat_conversations", conversation),
            ("chat_messages", message),
            ("chat_participants", participant),
        ):
            ids[table].append(row)
        websites.append(website)
        conversations.append(conversation)
    unread = conn.execute(
        "SELECT unread_owner, unread_customer, unread_rider FROM chat_conversations WHERE id = %s",
        (conversations[0],),
    ).fetchone()
    return Seed(websites[0], websites[1], conversations[0], conversations[1], ids, unread)


# The matrix at revision 008, as docs/spec/chat-schema.md implies it ("Grants" and "Row
# level security"): effective privileges are ALL for the three roles (004's GRANTs plus
# the platform's default privileges), service_role bypasses RLS, and 004's "Service role
# full access" policies apply to PUBLIC, so anon and authenticated reach every row of
# every command. Each cell: (rows, the policies that decide it).
_CONVERSATIONS_FULL = "Service role full access to conversations"
_MESSAGES_FULL = "Service role full access to messages"
_PARTICIPANTS_FULL = "Service role full access to participants"
_PARTICIPANT_CELLS = {
    ("chat_participants", "SELECT"): (
        "Anyone can manage participants",
        "Anyone can view participants",
        _PARTICIPANTS_FULL,
    ),
    ("chat_participants", "INSERT"): ("Anyone can manage participants", _PARTICIPANTS_FULL),
    ("chat_participants", "UPDATE"): ("Anyone can manage participants", _PARTICIPANTS_FULL),
    ("chat_participants", "DELETE"): ("Anyone can manage participants", _PARTICIPANTS_FULL),
}
_POLICY_CELLS_AT_008 = {
    ("chat_conversations", "SELECT"): ("Customers can view own conversations", _CONVERSATIONS_FULL),
    ("chat_conversations", "INSERT"): ("Anyone can create conversations", _CONVERSATIONS_FULL),
    ("chat_conversations", "UPDATE"): (_CONVERSATIONS_FULL,),
    ("chat_conversations", "DELETE"): (_CONVERSATIONS_FULL,),
    ("chat_messages", "SELECT"): ("Anyone can view messages", _MESSAGES_FULL),
    ("chat_messages", "INSERT"): ("Anyone can insert messages", _MESSAGES_FULL),
    ("chat_messages", "UPDATE"): ("Anyone can update messages", _MESSAGES_FULL),
    ("chat_messages", "DELETE"): (_MESSAGES_FULL,),
    **_PARTICIPANT_CELLS,
}
SPEC_MATRIX_AT_008: dict[tuple[str, str, str], tuple[str, tuple[str, ...]]] = {
    (role, table, command): (ALL, ("BYPASSRLS",) if role == "service_role" else policies)
    for role in ("anon", "authenticated", "service_role")
    for (table, command), policies in _POLICY_CELLS_AT_008.items()
}

# The matrix at head: after revision 049 (the chat part of production's hardening) and
# c003, each chat table has one policy, "Service role manages <table>", TO service_role:
# anon and authenticated (a signed-in owner included) reach no row of any table, and no
# policy is left for anon's auth.uid() to be NULL in. service_role bypasses RLS.
_API_CELLS_AT_HEAD: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    (table, command): (NONE, ("no policy",))
    for table in ("chat_conversations", "chat_messages", "chat_participants")
    for command in COMMANDS
}
SPEC_MATRIX: dict[tuple[str, str, str], tuple[str, tuple[str, ...]]] = {
    (role, table, command): (ALL, ("BYPASSRLS",)) if role == "service_role" else cell
    for role in ("anon", "authenticated", "service_role")
    for (table, command), cell in _API_CELLS_AT_HEAD.items()
}


def anon_writes(matrix) -> set[tuple[str, str, str]]:
    """The cells where anon changes or removes rows it does not own (chatdb access flags
    them): UPDATE or DELETE reaching every row."""
    return {
        (role, table, command)
        for (role, table, command), (rows, _) in matrix.items()
        if role == "anon" and command in ("UPDATE", "DELETE") and rows == ALL
    }


SPEC_ANON_WRITES_AT_008 = anon_writes(SPEC_MATRIX_AT_008)  # all six
SPEC_ANON_WRITES = anon_writes(SPEC_MATRIX)  # none

# A hardened state of revision 008, for tests only: 004's "Service role full access"
# policies scoped TO service_role, anon's UPDATE/DELETE revoked, and the message trigger
# made SECURITY DEFINER (without that, a customer's message would fail: the trigger
# updates the conversation as the caller). Not what 049 did, a state that is not
# uniformly "all", to show that the requests and `chatdb access` still agree.
HARDENING_SKETCH = """
ALTER POLICY "Service role full access to conversations" ON public.chat_conversations
    TO service_role;
ALTER POLICY "Service role full access to messages" ON public.chat_messages TO service_role;
ALTER POLICY "Service role full access to participants" ON public.chat_participants
    TO service_role;
REVOKE UPDATE, DELETE, TRUNCATE ON public.chat_conversations, public.chat_messages,
    public.chat_participants FROM anon;
ALTER FUNCTION public.update_conversation_on_message() SECURITY DEFINER SET search_path = public;
"""


def live_matrix(url: str) -> dict[tuple[str, str, str], tuple[str, tuple[str, ...]]]:
    """What `chatdb access` computes for the database at ``url``, as a dict."""
    with database_url(url):
        cells, _ = read_matrix_from_env()
    return {(c.role, c.table, c.command): (c.rows, c.through) for c in cells}


def refusal(exc: psycopg.errors.InsufficientPrivilege) -> str:
    """SQLSTATE 42501 means either: a missing privilege ("permission denied for table
    ...", REFUSED) or a policy that rejects the new row ("new row violates row-level
    security policy ...", NONE)."""
    message = exc.diag.message_primary or ""
    if message.startswith("permission denied"):
        return REFUSED
    if "row-level security" in message:
        return NONE
    raise exc


# --------------------------------------------------------------------------- REST calls
#
# The three calls below are what PostgREST does with a request of the service-role key
# (the chat backend's key), in the order it does it:
# 1. it looks the payload's columns up in its schema cache, and answers HTTP 400 with
#    PGRST204 for the first one it does not know, without sending anything to the
#    database (the backend's fallback, which looks for "column ... does not exist",
#    does not recognise that message);
# 2. it runs one statement, in a transaction, as the JWT's role, the payload read with
#    json_populate_recordset (INSERT) or json_populate_record (UPDATE), so a value is
#    converted to its column's type by PostgreSQL, and a column the payload does not
#    name gets its default (INSERT) or is left alone (UPDATE);
# 3. it answers the rows (Prefer: return=representation) as JSON.
# Selected and filtered columns are not checked against the cache: PostgreSQL reports
# an unknown one (42703, "column chat_messages.message does not exist"), and PostgREST
# passes that on; the backend's select fallback (chat.py's _fetch_chat_messages) is
# written for exactly that message. Database errors surface here as psycopg errors
# carrying their SQLSTATE (23502 not_null_violation, ...).
#
# Times: JSON output of timestamptz follows the session's TimeZone; each request sets
# it to UTC, the time zone of a Supabase database, so results do not depend on the
# test machine.

Filter = tuple[str, str, object]  # (column, "eq" | "neq" | "in", value); "in" takes a list
_OPERATORS = {"eq": "=", "neq": "<>"}


class Pgrst204(Exception):
    """PostgREST's error for a payload column its schema cache does not have (HTTP 400)."""

    code = "PGRST204"

    def __init__(self, table: str, column: str) -> None:
        self.table = table
        self.column = column
        self.message = f"Could not find the '{column}' column of '{table}' in the schema cache"
        super().__init__(f"{self.code}: {self.message}")


def schema_cache(conn: psycopg.Connection, schema: str = "public") -> dict[str, dict[str, str]]:
    """PostgREST's schema cache of ``schema``, read now: {table: {column: type}}.

    Pass one to the calls below to keep it across schema changes, as a PostgREST that
    has not reloaded would; by default each call reads a fresh one (a reloaded cache).
    """
    rows = conn.execute(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
        (schema,),
    ).fetchall()
    cache: dict[str, dict[str, str]] = {}
    for table, column, type_ in rows:
        cache.setdefault(table, {})[column] = type_
    return cache


def _cached_columns(conn, table: str, cache) -> dict[str, str]:
    cache = schema_cache(conn) if cache is None else cache
    return cache.get(table, {})


def _check_payload(table: str, names, columns: dict[str, str]) -> None:
    for name in names:
        if name not in columns:
            raise Pgrst204(table, name)


def _column(table: str, name: str) -> sql.Composable:
    return sql.Identifier("public", table, name)


def _where(table: str, filters, columns: dict[str, str]) -> tuple[sql.Composable, list]:
    """PostgREST's filters: the value is a literal PostgreSQL casts to the column's type."""
    parts, params = [], []
    for name, operator, value in filters:
        column = _column(table, name)
        type_ = columns.get(name)  # unknown: no cast, and PostgreSQL reports the column
        if operator == "in":
            cast = sql.SQL("::{}[]").format(sql.SQL(type_)) if type_ else sql.SQL("")
            parts.append(sql.SQL("{} = ANY(%s{})").format(column, cast))
            params.append([None if v is None else str(v) for v in value])
        else:
            cast = sql.SQL("::{}").format(sql.SQL(type_)) if type_ else sql.SQL("")
            parts.append(sql.SQL("{} {} %s{}").format(column, sql.SQL(_OPERATORS[operator]), cast))
            params.append(None if value is None else str(value))
    if not parts:
        return sql.SQL(""), params
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params


def _as_json_body(statement: sql.Composable) -> sql.Composable:
    return sql.SQL(
        "WITH pgrst_source AS ({}) "
        "SELECT coalesce(json_agg(pgrst_source), '[]'::json) FROM pgrst_source"
    ).format(statement)


def _request(conn, statement, params, role: str, commit: bool) -> list[dict]:
    with postgrest_request(conn, role, commit=commit):
        conn.execute("SET LOCAL timezone TO 'UTC'")
        return conn.execute(_as_json_body(statement), params).fetchone()[0]


def rest_insert(
    conn: psycopg.Connection,
    table: str,
    payload: dict,
    *,
    role: str = "service_role",
    commit: bool = True,
    cache: dict[str, dict[str, str]] | None = None,
) -> list[dict]:
    """``POST /rest/v1/<table>`` with ``payload`` and ``Prefer: return=representation``."""
    columns = _cached_columns(conn, table, cache)
    _check_payload(table, payload, columns)
    target = sql.Identifier("public", table)
    names = sql.SQL(", ").join(sql.Identifier(name) for name in payload)
    statement = sql.SQL(
        "INSERT INTO {target} ({names}) SELECT {names} "
        "FROM json_populate_recordset(NULL::{target}, %s::json) RETURNING {target}.*"
    ).format(target=target, names=names)
    return _request(conn, statement, [json.dumps([payload])], role, commit)


def rest_update(
    conn: psycopg.Connection,
    table: str,
    payload: dict,
    filters: list[Filter] | tuple[Filter, ...],
    *,
    role: str = "service_role",
    commit: bool = True,
    cache: dict[str, dict[str, str]] | None = None,
) -> list[dict]:
    """``PATCH /rest/v1/<table>?<filters>`` with ``payload``, returning the updated rows."""
    columns = _cached_columns(conn, table, cache)
    _check_payload(table, payload, columns)
    target = sql.Identifier("public", table)
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = pgrst_body.{}").format(sql.Identifier(name), sql.Identifier(name))
        for name in payload
    )
    where, params = _where(table, filters, columns)
    statement = sql.SQL(
        "UPDATE {target} SET {assignments} "
        "FROM (SELECT * FROM json_populate_record(NULL::{target}, %s::json)) pgrst_body"
        "{where} RETURNING {target}.*"
    ).format(target=target, assignments=assignments, where=where)
    return _request(conn, statement, [json.dumps(payload), *params], role, commit)


def rest_select(
    conn: psycopg.Connection,
    table: str,
    columns: list[str] | tuple[str, ...],
    filters: list[Filter] | tuple[Filter, ...] = (),
    order: list[str] | tuple[str, ...] = (),
    *,
    limit: int | None = None,
    role: str = "service_role",
    cache: dict[str, dict[str, str]] | None = None,
) -> list[dict]:
    """``GET /rest/v1/<table>?select=<columns>&<filters>&order=<order>&limit=<limit>``.

    ``columns`` may be ``["*"]``; ``order`` items are PostgREST's ``column.desc`` or
    ``column.asc`` (or a bare column). Read-only: the transaction is rolled back.
    """
    known = _cached_columns(conn, table, cache)
    selected = (
        sql.SQL("{}.*").format(sql.Identifier("public", table))
        if list(columns) == ["*"]
        else sql.SQL(", ").join(_column(table, name) for name in columns)
    )
    where, params = _where(table, filters, known)
    ordering = []
    for item in order:
        name, _, direction = item.partition(".")
        ordering.append(
            sql.SQL("{} {}").format(
                _column(table, name), sql.SQL("DESC" if direction == "desc" else "ASC")
            )
        )
    statement = sql.SQL("SELECT {} FROM {}{}").format(
        selected, sql.Identifier("public", table), where
    )
    if ordering:
        statement += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(ordering)
    if limit is not None:
        statement += sql.SQL(" LIMIT {}").format(sql.Literal(limit))
    return _request(conn, statement, params, role, commit=False)
