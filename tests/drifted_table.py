"""A drifted chat_conversations, as production had it before 008: made by an older
script without customer_id (or with it nullable and NULL rows). Used by the tests of
008 and by benchmarks/bench_online.py.

Two starting points: :func:`make_drifted` turns a database at revision 004 into a
drifted one (004's objects all there, customer_id missing or nullable);
:func:`make_older_script_tables` builds, on a database at revision 000, the tables
as the older script made them, before any of 004 ran.

Rows are deterministic (ids are md5 hashes of their number), so two databases built
with the same arguments hold the same rows and can be compared value by value.
Every tenth conversation has no phone, so both terms of the backfill formula occur.
"""

from __future__ import annotations

import hashlib
import uuid

import psycopg

WEBSITES = 10


def conversation_id(n: int) -> uuid.UUID:
    """The id of conversation number ``n`` (1-based), as the builder makes it."""
    return uuid.UUID(hashlib.md5(f"conv{n}".encode()).hexdigest())


def make_drifted(url: str, rows: int, *, customer_id: str = "missing", phone: bool = True) -> None:
    """Turn the chat_conversations of a database at revision 004 into a drifted one
    holding ``rows`` conversations.

    customer_id="missing": the column does not exist (its index goes with it);
    customer_id="nullable": it exists without NOT NULL or index, and two rows in three
    are NULL. phone=False drops customer_phone too (the formula's other form).
    """
    with psycopg.connect(url, autocommit=True) as conn:
        if customer_id == "missing":
            conn.execute("ALTER TABLE chat_conversations DROP COLUMN customer_id")
        elif customer_id == "nullable":
            conn.execute("DROP INDEX idx_chat_conversations_customer")
            conn.execute("ALTER TABLE chat_conversations ALTER COLUMN customer_id DROP NOT NULL")
        else:
            raise ValueError(f"customer_id={customer_id!r}: use 'missing' or 'nullable'")
        if not phone:
            conn.execute("ALTER TABLE chat_conversations DROP COLUMN customer_phone")
        fill_conversations(conn, rows, customer_id=customer_id, phone=phone)


# The chat tables as the older script made them: 004's columns of chat_conversations
# without customer_id, 004's chat_messages; no index but the primary keys, no foreign
# key to websites or delivery_orders, no trigger, no row level security, no policy,
# no grant, no publication membership.
OLDER_SCRIPT_TABLES = (
    """
    CREATE TABLE chat_conversations (
      id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
      order_id uuid,
      website_id uuid NOT NULL,
      customer_name text,
      customer_phone text,
      status text DEFAULT 'active',
      unread_owner integer DEFAULT 0,
      unread_customer integer DEFAULT 0,
      unread_rider integer DEFAULT 0,
      created_at timestamptz DEFAULT now(),
      updated_at timestamptz DEFAULT now()
    )""",
    """
    CREATE TABLE chat_messages (
      id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
      conversation_id uuid NOT NULL REFERENCES chat_conversations(id) ON DELETE CASCADE,
      sender_type text NOT NULL,
      sender_id text,
      sender_name text,
      message_type text DEFAULT 'text',
      content text,
      media_url text,
      metadata jsonb,
      is_read boolean DEFAULT false,
      read_at timestamptz,
      read_by jsonb DEFAULT '[]'::jsonb,
      created_at timestamptz DEFAULT now()
    )""",
)


def make_older_script_tables(url: str, rows: int) -> None:
    """On a database at revision 000, create chat_conversations and chat_messages as the
    older script made them (OLDER_SCRIPT_TABLES: none of 004's other objects) and fill
    chat_conversations with ``rows`` conversations, the same rows make_drifted writes."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in OLDER_SCRIPT_TABLES:
            conn.execute(statement)
        fill_conversations(conn, rows)


def fill_conversations(
    conn: psycopg.Connection, rows: int, *, customer_id: str = "missing", phone: bool = True
) -> None:
    """Insert the WEBSITES websites and ``rows`` deterministic conversations, then
    VACUUM ANALYZE (``conn`` in autocommit mode). ``customer_id``: "missing" (not
    written), "nullable" (two rows in three NULL) or "filled" (every row has 008's value:
    a table at revision 008)."""
    conn.execute(
        "INSERT INTO websites (id, user_id) SELECT md5('website' || w)::uuid, "
        "md5('user' || w)::uuid FROM generate_series(1, %s) w",
        (WEBSITES,),
    )
    columns = ["id", "website_id", "customer_name", "status", "created_at", "updated_at"]
    values = [
        "md5('conv' || g)::uuid",
        f"md5('website' || (g %% {WEBSITES} + 1))::uuid",
        "'Customer ' || g",
        "(ARRAY['active', 'closed', 'archived'])[g %% 3 + 1]",
        "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'",
        "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'",
    ]
    if phone:
        columns.append("customer_phone")
        values.append("CASE WHEN g %% 10 = 0 THEN NULL ELSE lpad(g::text, 10, '0') END")
    if customer_id == "nullable":
        columns.append("customer_id")
        values.append("CASE WHEN g %% 3 = 0 THEN 'customer_kept_' || g END")
    elif customer_id == "filled":  # a table at 008: the column NOT NULL, 008's values
        columns.append("customer_id")
        values.append(
            "CASE WHEN g %% 10 = 0 THEN 'customer_unknown_' || md5('conv' || g)::uuid "
            "ELSE 'customer_' || lpad(g::text, 10, '0') END"
            if phone
            else "'customer_unknown_' || md5('conv' || g)::uuid"
        )
    conn.execute(
        f"INSERT INTO chat_conversations ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM generate_series(1, %s) g",
        (rows,),
    )
    conn.execute("VACUUM ANALYZE chat_conversations")


def expected_customer_id(row_customer_id: str | None, phone: str | None, id_: object) -> str:
    """The spec's formula, computed in Python: what 008 must leave in a row."""
    if row_customer_id is not None:
        return row_customer_id
    if phone is not None:
        return f"customer_{phone}"
    return f"customer_unknown_{id_}"


def conversation_rows(conn: psycopg.Connection) -> list[dict]:
    """Every conversation as a dict of its columns, in id order, without updated_at:
    the backfill fires the BEFORE UPDATE trigger (updated_at = now()) in every path,
    the hand-run SQL's included."""
    return [
        row
        for (row,) in conn.execute(
            "SELECT to_jsonb(c) - 'updated_at' FROM chat_conversations c ORDER BY id"
        )
    ]
