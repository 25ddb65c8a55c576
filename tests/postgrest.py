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
its result returned as PostgREST's JSON body. The statements are chatdb.calls.postgrest's
(the calls check runs the same text); here they run on the tests' psycopg 3 connections.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from chatdb.calls.postgrest import (
    Cache,
    Filter,
    Pgrst204,  # noqa: F401 - the tests catch it from here
    check_payload,
    check_table,
    insert_sql,
    request_sql,
    schema_cache_of,
    schema_cache_sql,
    select_sql,
    update_sql,
)
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
    with conn.transaction(force_rollback=not commit):
        conn.execute(request_sql(role, sub, legacy=legacy))
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
# The three calls below run a whole request as PostgREST does with the service-role key
# (the chat backend's key), with chatdb.calls.postgrest's statements: the payload's
# columns looked up in the schema cache first (Pgrst204, nothing sent), then one
# statement as the JWT's role, its rows answered as JSON. Database errors surface as
# psycopg errors carrying their SQLSTATE (23502 not_null_violation, 42703 for an unknown
# selected column, ...).


def schema_cache(conn: psycopg.Connection, schema: str = "public") -> Cache:
    """PostgREST's schema cache of ``schema``, read now: {table: {column: type}}.

    Pass one to the calls below to keep it across schema changes, as a PostgREST that
    has not reloaded would; by default each call reads a fresh one (a reloaded cache).
    """
    return schema_cache_of(conn.execute(schema_cache_sql(schema)).fetchall())


def _request(conn: psycopg.Connection, statement: str, role: str, commit: bool) -> list[dict]:
    with postgrest_request(conn, role, commit=commit):
        return conn.execute(statement).fetchone()[0]


def rest_insert(
    conn: psycopg.Connection,
    table: str,
    payload: dict,
    *,
    role: str = "service_role",
    commit: bool = True,
    cache: Cache | None = None,
) -> list[dict]:
    """``POST /rest/v1/<table>`` with ``payload`` and ``Prefer: return=representation``."""
    check_payload(table, list(payload), schema_cache(conn) if cache is None else cache)
    return _request(conn, insert_sql(table, payload), role, commit)


def rest_update(
    conn: psycopg.Connection,
    table: str,
    payload: dict,
    filters: list[Filter] | tuple[Filter, ...],
    *,
    role: str = "service_role",
    commit: bool = True,
    cache: Cache | None = None,
) -> list[dict]:
    """``PATCH /rest/v1/<table>?<filters>`` with ``payload``, returning the updated rows."""
    cache = schema_cache(conn) if cache is None else cache
    check_payload(table, list(payload), cache)
    return _request(conn, update_sql(table, payload, filters, cache[table]), role, commit)


def rest_select(
    conn: psycopg.Connection,
    table: str,
    columns: list[str] | tuple[str, ...],
    filters: list[Filter] | tuple[Filter, ...] = (),
    order: list[str] | tuple[str, ...] = (),
    *,
    limit: int | None = None,
    role: str = "service_role",
    cache: Cache | None = None,
) -> list[dict]:
    """``GET /rest/v1/<table>?select=<columns>&<filters>&order=<order>&limit=<limit>``.

    ``columns`` may be ``["*"]``; ``order`` items are PostgREST's ``column.desc`` or
    ``column.asc``. Read-only: the transaction is rolled back.
    """
    cache = schema_cache(conn) if cache is None else cache
    check_table(table, cache)
    statement = select_sql(table, columns, filters, order, cache[table], limit)
    return _request(conn, statement, role, commit=False)
