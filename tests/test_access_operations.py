"""Issue 6 (1): the chat backend's real operations, run as PostgREST runs them, per caller.

Each operation is one request (tests.postgrest.postgrest_request, committed) with the
columns the backend sends, on the conversation of OWNER's website. Callers: anon (a
browser holding the anon key), OWNER signed in, STRANGER signed in (another site's
owner), and service_role (the backend). The outcome of each is observed:

- allowed: the statement did its work, and the row shows it afterwards;
- refused: a grant is missing, "permission denied" (insufficient_privilege);
- filtered: a policy hid the rows (0 rows) or rejected the new row ("new row violates
  row-level security policy").

and compared with what the access matrix says for the cells the operation needs:
SPEC_MATRIX at head (after 049 and c003), `chatdb access`'s live matrix on a hardened database
(revision 008 with tests.postgrest.HARDENING_SKETCH).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pytest

from chatdb.inspect.access import FILTERED, NONE, REFUSED
from tests.postgrest import (
    CALLERS,
    HARDENING_SKETCH,
    OWNER,
    SPEC_MATRIX,
    Seed,
    live_matrix,
    postgrest_request,
    refusal,
    seed,
)

ALLOWED, REFUSED_BY_GRANT, FILTERED_BY_POLICY = "allowed", "refused", "filtered"
PHONE = "0123456789"
CUSTOMER_ID = f"customer_{PHONE}"  # how the backend derives customer_id
SEEDED_CUSTOMER = "customer_0100000001"  # the customer of OWNER's seeded conversation


@dataclass(frozen=True)
class Operation:
    """One backend operation: the request, the cells it needs, how to see it worked.

    ``cells`` are (table, command) pairs the statement needs; RETURNING and filters add
    SELECT. ``trigger_cells`` are needed by a trigger that runs as the caller (unless
    the trigger function is SECURITY DEFINER).
    """

    name: str
    cells: tuple[tuple[str, str], ...]
    run: Callable[[psycopg.Connection, Seed, str], int]
    worked: Callable[[object, Seed, str, int], None]
    trigger_cells: tuple[tuple[str, str], ...] = ()


def create_conversation(conn, rows: Seed, reader: str) -> int:
    return len(
        conn.execute(
            "INSERT INTO chat_conversations (website_id, customer_id, customer_name, customer_phone, "
            "status) VALUES (%s, %s, 'Ada', %s, 'active') RETURNING id",
            (rows.own_website, CUSTOMER_ID, PHONE),
        ).fetchall()
    )


def conversation_created(db, rows: Seed, reader: str, count: int) -> None:
    assert db.rows(
        "SELECT customer_id, customer_name, customer_phone, status, unread_owner "
        "FROM chat_conversations WHERE website_id = %s AND customer_id = %s",
        (rows.own_website, CUSTOMER_ID),
    ) == [(CUSTOMER_ID, "Ada", PHONE, "active", 0)]


def add_participants(conn, rows: Seed, reader: str) -> int:
    return conn.execute(
        "INSERT INTO chat_participants (conversation_id, user_type, user_id, user_name) "
        "VALUES (%s, 'customer', %s, 'Ada'), (%s, 'owner', %s, 'Shop owner')",
        (rows.own_conversation, CUSTOMER_ID, rows.own_conversation, str(OWNER)),
    ).rowcount


def participants_added(db, rows: Seed, reader: str, count: int) -> None:
    assert db.rows(
        "SELECT user_type, user_id FROM chat_participants WHERE conversation_id = %s "
        "AND user_id IN (%s, %s) ORDER BY user_type",
        (rows.own_conversation, CUSTOMER_ID, str(OWNER)),
    ) == [("customer", CUSTOMER_ID), ("owner", str(OWNER))]


def send_welcome(conn, rows: Seed, reader: str) -> int:
    return conn.execute(
        "INSERT INTO chat_messages (conversation_id, sender_type, sender_name, message_type, "
        "content) VALUES (%s, 'system', 'System', 'text', 'Welcome! How can we help?')",
        (rows.own_conversation,),
    ).rowcount


def welcome_sent(db, rows: Seed, reader: str, count: int) -> None:
    assert db.rows(
        "SELECT m.content, c.unread_owner, c.unread_customer, c.unread_rider "
        "FROM chat_messages m JOIN chat_conversations c ON c.id = m.conversation_id "
        "WHERE m.conversation_id = %s AND m.sender_type = 'system'",
        (rows.own_conversation,),
    ) == [("Welcome! How can we help?", *rows.own_unread)]  # a system message counts for nobody


def send_customer_message(conn, rows: Seed, reader: str) -> int:
    return conn.execute(
        "INSERT INTO chat_messages (conversation_id, sender_type, sender_id, sender_name, "
        "content) VALUES (%s, 'customer', %s, 'Ada', 'Is my order on its way?')",
        (rows.own_conversation, SEEDED_CUSTOMER),
    ).rowcount


def customer_message_sent(db, rows: Seed, reader: str, count: int) -> None:
    owner, customer, rider = rows.own_unread
    assert db.rows(
        "SELECT c.unread_owner, c.unread_customer, c.unread_rider FROM chat_conversations c "
        "WHERE c.id = %s",
        (rows.own_conversation,),
    ) == [(owner + 1, customer, rider + 1)]  # the trigger counted it for the owner and the rider
    assert (
        db.scalar(
            "SELECT count(*) FROM chat_messages WHERE conversation_id = %s "
            "AND content = 'Is my order on its way?'",
            (rows.own_conversation,),
        )
        == 1
    )


def mark_read(conn, rows: Seed, reader: str) -> int:
    return conn.execute(
        "UPDATE chat_messages SET is_read = true, read_at = now(), "
        "read_by = coalesce(read_by, '[]'::jsonb) || to_jsonb(%s::text) "
        "WHERE conversation_id = %s AND is_read = false",
        (reader, rows.own_conversation),
    ).rowcount


def marked_read(db, rows: Seed, reader: str, count: int) -> None:
    assert db.rows(
        "SELECT is_read, read_at IS NOT NULL, read_by FROM chat_messages "
        "WHERE conversation_id = %s",
        (rows.own_conversation,),
    ) == [(True, True, [reader])]


def list_conversations(conn, rows: Seed, reader: str) -> int:
    return len(
        conn.execute(
            "SELECT id, customer_name, customer_phone, status, unread_owner, updated_at "
            "FROM chat_conversations WHERE website_id = %s ORDER BY updated_at DESC",
            (rows.own_website,),
        ).fetchall()
    )


def listed(db, rows: Seed, reader: str, count: int) -> None:
    assert count == db.scalar(
        "SELECT count(*) FROM chat_conversations WHERE website_id = %s", (rows.own_website,)
    )


def close_conversation(conn, rows: Seed, reader: str) -> int:
    return conn.execute(
        "UPDATE chat_conversations SET status = 'closed' WHERE id = %s",
        (rows.own_conversation,),
    ).rowcount


def closed(db, rows: Seed, reader: str, count: int) -> None:
    assert (
        db.scalar("SELECT status FROM chat_conversations WHERE id = %s", (rows.own_conversation,))
        == "closed"
    )


CONVERSATIONS, MESSAGES, PARTICIPANTS = "chat_conversations", "chat_messages", "chat_participants"
OPERATIONS = (
    Operation(
        "create conversation",
        ((CONVERSATIONS, "INSERT"), (CONVERSATIONS, "SELECT")),
        create_conversation,
        conversation_created,
    ),
    Operation(
        "add participants", ((PARTICIPANTS, "INSERT"),), add_participants, participants_added
    ),
    Operation(
        "send welcome message",
        ((MESSAGES, "INSERT"),),
        send_welcome,
        welcome_sent,
        trigger_cells=((CONVERSATIONS, "UPDATE"),),
    ),
    Operation(
        "send customer message",
        ((MESSAGES, "INSERT"),),
        send_customer_message,
        customer_message_sent,
        trigger_cells=((CONVERSATIONS, "UPDATE"),),
    ),
    Operation("mark messages read", ((MESSAGES, "UPDATE"),), mark_read, marked_read),
    Operation(
        "list owner's conversations", ((CONVERSATIONS, "SELECT"),), list_conversations, listed
    ),
    Operation("close conversation", ((CONVERSATIONS, "UPDATE"),), close_conversation, closed),
)


def reader_of(caller: str) -> str:
    role, sub = CALLERS[caller]
    return str(sub) if sub else role


def run(db, rows: Seed, caller: str, operation: Operation) -> str:
    """Run the operation as one committed request; return what happened."""
    reader = reader_of(caller)
    try:
        with postgrest_request(db.conn, *CALLERS[caller], commit=True) as conn:
            count = operation.run(conn, rows, reader)
    except psycopg.errors.InsufficientPrivilege as exc:
        return REFUSED_BY_GRANT if refusal(exc) == REFUSED else FILTERED_BY_POLICY
    if count == 0:
        return FILTERED_BY_POLICY
    operation.worked(db, rows, reader, count)
    return ALLOWED


def expected(matrix, caller: str, operation: Operation, trigger_as_caller: bool) -> str:
    """What the matrix implies: a missing grant refuses; "none" filters; "filtered"
    (by ownership: the chat policies' only condition) lets OWNER through, on its own
    website, and nobody else."""
    role, sub = CALLERS[caller]
    needed = [matrix[(role, t, c)][0] for t, c in operation.cells]
    if trigger_as_caller:
        needed += [
            matrix[(role, t, c)][0]
            for t, c in operation.trigger_cells
            if matrix[(role, t, c)][0] == REFUSED
        ]
    if REFUSED in needed:
        return REFUSED_BY_GRANT
    if NONE in needed or (FILTERED in needed and sub != OWNER):
        return FILTERED_BY_POLICY
    return ALLOWED


def trigger_runs_as_caller(db) -> bool:
    return not db.scalar(
        "SELECT prosecdef FROM pg_proc WHERE oid = 'public.update_conversation_on_message()'"
        "::regprocedure"
    )


STATES = {
    # state: (database fixture, SQL applied first, whose matrix to expect)
    "supabase head": ("supabase_head_db", None, "spec"),
    "plain head": ("head_db", None, "spec"),
    "hardened": ("supabase_at_008_db", HARDENING_SKETCH, "live"),
}


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.name)
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("state", STATES)
def test_operation_outcome_is_what_the_access_matrix_says(request, state, caller, operation):
    fixture, prepare, source = STATES[state]
    db = request.getfixturevalue(fixture)
    if prepare:
        db.conn.execute(prepare)
    matrix = SPEC_MATRIX if source == "spec" else live_matrix(db.url)
    rows = seed(db.conn)
    want = expected(matrix, caller, operation, trigger_runs_as_caller(db))
    assert run(db, rows, caller, operation) == want


def test_each_outcome_occurs_on_the_hardened_database(supabase_at_008_db):
    """The comparison above is not vacuous: on the hardened database, requests are
    allowed, refused by a grant and filtered by a policy. Pins the SQL history:
    HARDENING_SKETCH scopes 004's policies, so it runs at 008."""
    db = supabase_at_008_db
    db.conn.execute(HARDENING_SKETCH)
    rows = seed(db.conn)
    close = next(op for op in OPERATIONS if op.name == "close conversation")
    assert run(db, rows, "anon", close) == REFUSED_BY_GRANT
    assert run(db, rows, "stranger", close) == FILTERED_BY_POLICY
    assert run(db, rows, "owner", close) == ALLOWED


def test_at_head_only_the_backend_reaches_the_chat(supabase_head_db):
    """At head (049, then c003) the chat tables are the backend's alone: anon, a stranger
    and the owner of the website, signed in, are filtered by row level security (no
    policy is theirs) on every operation; the backend (service_role) does them all."""
    db = supabase_head_db
    rows = seed(db.conn)
    outcomes = {
        (caller, operation.name): run(db, rows, caller, operation)
        for operation in OPERATIONS
        for caller in ("anon", "stranger", "owner")
    }
    assert set(outcomes.values()) == {FILTERED_BY_POLICY}, outcomes
    for operation in OPERATIONS:  # each on rows of its own, as the parametrized test does
        assert run(db, seed(db.conn), "service_role", operation) == ALLOWED, operation.name


def test_backend_flow_end_to_end_as_service_role(supabase_head_db):
    """The backend's sequence, chained on the conversation it creates."""
    db = supabase_head_db
    website = db.scalar("INSERT INTO websites (user_id) VALUES (%s) RETURNING id", (OWNER,))
    service = CALLERS["service_role"]
    with postgrest_request(db.conn, *service, commit=True) as conn:
        conversation = conn.execute(
            "INSERT INTO chat_conversations (website_id, customer_id, customer_name, "
            "customer_phone, status) VALUES (%s, %s, 'Ada', %s, 'active') RETURNING id",
            (website, CUSTOMER_ID, PHONE),
        ).fetchone()[0]
    with postgrest_request(db.conn, *service, commit=True) as conn:
        conn.execute(
            "INSERT INTO chat_participants (conversation_id, user_type, user_id, user_name) "
            "VALUES (%s, 'customer', %s, 'Ada'), (%s, 'owner', %s, 'Shop owner')",
            (conversation, CUSTOMER_ID, conversation, str(OWNER)),
        )
    for sender, content in (("system", "Welcome!"), ("customer", "Hello")):
        with postgrest_request(db.conn, *service, commit=True) as conn:
            conn.execute(
                "INSERT INTO chat_messages (conversation_id, sender_type, sender_id, content) "
                "VALUES (%s, %s, %s, %s)",
                (conversation, sender, CUSTOMER_ID if sender == "customer" else None, content),
            )
    # The owner reads the chat in the dashboard: the backend marks the messages read
    # (chat.py:934-939, service_role: since 049 nobody else reaches chat_messages) ...
    with postgrest_request(db.conn, *service, commit=True) as conn:
        assert (
            conn.execute(
                "UPDATE chat_messages SET is_read = true, read_at = now(), "
                "read_by = read_by || to_jsonb(%s::text) "
                "WHERE conversation_id = %s AND sender_type = 'customer' AND is_read = false",
                (str(OWNER), conversation),
            ).rowcount
            == 1
        )
    # ... and lists the owner's conversations for the dashboard (chat.py:565-586, the
    # backend's service-role client); the owner, signed in directly, reaches none (c003).
    listing_sql = (
        "SELECT id, status, unread_owner, unread_rider FROM chat_conversations "
        "WHERE website_id = %s ORDER BY updated_at DESC"
    )
    with postgrest_request(db.conn, *service, commit=True) as conn:
        listing = conn.execute(listing_sql, (website,)).fetchall()
    assert listing == [(conversation, "active", 1, 1)]
    with postgrest_request(db.conn, "authenticated", OWNER, commit=True) as conn:
        assert conn.execute(listing_sql, (website,)).fetchall() == []
    with postgrest_request(db.conn, *service, commit=True) as conn:
        conn.execute(
            "UPDATE chat_conversations SET status = 'closed' WHERE id = %s", (conversation,)
        )
    assert db.rows(
        "SELECT status, customer_id FROM chat_conversations WHERE id = %s", (conversation,)
    ) == [("closed", CUSTOMER_ID)]
    assert db.rows(
        "SELECT sender_type, is_read, read_by FROM chat_messages WHERE conversation_id = %s "
        "ORDER BY sender_type",
        (conversation,),
    ) == [("customer", True, [str(OWNER)]), ("system", False, [])]


@pytest.mark.parametrize(
    "legacy", [False, True], ids=["request.jwt.claims", "request.jwt.claim.sub"]
)
def test_auth_uid_is_the_sub_claim_as_postgrest_sets_it(supabase_head_db, legacy):
    db = supabase_head_db
    with postgrest_request(db.conn, "authenticated", OWNER, legacy=legacy) as conn:
        assert conn.execute("SELECT auth.uid(), current_user").fetchone() == (
            OWNER,
            "authenticated",
        )
    with postgrest_request(db.conn, "anon", legacy=legacy) as conn:
        assert conn.execute("SELECT auth.uid(), current_user").fetchone() == (None, "anon")
    # SET LOCAL and set_config(..., true) end with the request.
    assert db.scalar("SELECT current_user") == "postgres"
    assert db.scalar("SELECT auth.uid()") is None


def test_hardening_without_a_definer_trigger_stops_customer_messages(supabase_at_008_db):
    """What a hardening revision must not forget: the message trigger updates the
    conversation as the caller, so revoking anon's UPDATE makes every anon message fail.
    Pins the SQL history: at 008, where anon may still insert messages (049 closed that)."""
    db = supabase_at_008_db
    db.conn.execute(HARDENING_SKETCH)
    db.conn.execute("ALTER FUNCTION public.update_conversation_on_message() SECURITY INVOKER")
    rows = seed(db.conn)
    send = next(op for op in OPERATIONS if op.name == "send customer message")
    assert run(db, rows, "anon", send) == REFUSED_BY_GRANT
    assert db.scalar("SELECT count(*) FROM chat_messages") == 2  # only the seeded ones
