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
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from chatdb.inspect.access import ALL, NONE, REFUSED, read_matrix_from_env
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


# The matrix the spec implies at head ("Grants" and "Row level security"): effective
# privileges are ALL for the three roles (004's GRANTs plus the platform's default
# privileges), service_role bypasses RLS, and the "Service role full access" policies
# apply to PUBLIC, so anon and authenticated reach every row of every command. Each
# cell: (rows, the policies that decide it).
_CONVERSATIONS_FULL = "Service role full access to conversations"
_MESSAGES_FULL = "Service role full access to messages"
_PARTICIPANTS_FULL = "Service role full access to participants"
_POLICY_CELLS = {
    ("chat_conversations", "SELECT"): ("Customers can view own conversations", _CONVERSATIONS_FULL),
    ("chat_conversations", "INSERT"): ("Anyone can create conversations", _CONVERSATIONS_FULL),
    ("chat_conversations", "UPDATE"): (_CONVERSATIONS_FULL,),
    ("chat_conversations", "DELETE"): (_CONVERSATIONS_FULL,),
    ("chat_messages", "SELECT"): ("Anyone can view messages", _MESSAGES_FULL),
    ("chat_messages", "INSERT"): ("Anyone can insert messages", _MESSAGES_FULL),
    ("chat_messages", "UPDATE"): ("Anyone can update messages", _MESSAGES_FULL),
    ("chat_messages", "DELETE"): (_MESSAGES_FULL,),
    ("chat_participants", "SELECT"): (
        "Anyone can manage participants",
        "Anyone can view participants",
        _PARTICIPANTS_FULL,
    ),
    ("chat_participants", "INSERT"): ("Anyone can manage participants", _PARTICIPANTS_FULL),
    ("chat_participants", "UPDATE"): ("Anyone can manage participants", _PARTICIPANTS_FULL),
    ("chat_participants", "DELETE"): ("Anyone can manage participants", _PARTICIPANTS_FULL),
}
SPEC_MATRIX: dict[tuple[str, str, str], tuple[str, tuple[str, ...]]] = {
    (role, table, command): (ALL, ("BYPASSRLS",) if role == "service_role" else policies)
    for role in ("anon", "authenticated", "service_role")
    for (table, command), policies in _POLICY_CELLS.items()
}
# The cells where anon changes or removes rows it does not own (chatdb access flags them).
SPEC_ANON_WRITES = {
    ("anon", table, command)
    for table in ("chat_conversations", "chat_messages", "chat_participants")
    for command in ("UPDATE", "DELETE")
}

# A hardened state, for tests only: the "Service role full access" policies scoped TO
# service_role, anon's UPDATE/DELETE revoked, and the message trigger made SECURITY
# DEFINER (without that, a customer's message would fail: the trigger updates the
# conversation as the caller). Not a design for the later revision, a state that is
# not uniformly "all", to show that the requests and `chatdb access` still agree.
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
