"""PostgREST's requests as chatdb.calls.postgrest builds them (tests/postgrest.py runs
them on the tests' connections): the schema cache's PGRST204 before anything runs, a
stale cache, PostgreSQL's 42703 for an unknown selected column, payload values converted
to their columns' types, filters and order. tests/test_calls_check.py runs the same
statements through ``run_calls``.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.postgrest import (
    OWNER,
    Pgrst204,
    rest_insert,
    rest_select,
    rest_update,
    schema_cache,
)

WEBSITE = str(uuid.UUID("5eed0000-0000-4000-8000-000000000001"))
ORDER = str(uuid.UUID("5eed0000-0000-4000-8000-000000000002"))
CONVERSATION = str(uuid.UUID("5eed0000-0000-4000-8000-000000000003"))
PHONE = "0123456789"


def seed(conn: psycopg.Connection) -> None:
    """A website of OWNER, an order, a conversation and two customer messages, written
    as the superuser with columns 008 and head share."""
    conn.execute("INSERT INTO websites (id, user_id) VALUES (%s, %s)", (WEBSITE, OWNER))
    conn.execute("INSERT INTO delivery_orders (id) VALUES (%s)", (ORDER,))
    conn.execute(
        "INSERT INTO chat_conversations (id, order_id, website_id, customer_id, customer_name, "
        "customer_phone, status) VALUES (%s, %s, %s, %s, 'Aminah', %s, 'active')",
        (CONVERSATION, ORDER, WEBSITE, f"customer_{PHONE}", PHONE),
    )
    for content in ("Ada nasi lemak?", "Resit"):
        conn.execute(
            "INSERT INTO chat_messages (conversation_id, sender_type, sender_id, content) "
            "VALUES (%s, 'customer', %s, %s)",
            (CONVERSATION, f"customer_{PHONE}", content),
        )


def test_pgrst204_names_the_first_unknown_column_and_runs_nothing(at_008_db):
    seed(at_008_db.conn)
    count = "SELECT count(*) FROM chat_conversations"
    before = at_008_db.scalar(count)
    payload = {"website_id": WEBSITE, "website_name": "Kedai", "owner_id": "x", "status": "active"}
    with pytest.raises(Pgrst204) as error:  # the missing customer_id never reaches the db
        rest_insert(at_008_db.conn, "chat_conversations", payload)
    assert error.value.message == (
        "Could not find the 'website_name' column of 'chat_conversations' in the schema cache"
    )
    assert (error.value.code, error.value.column) == ("PGRST204", "website_name")
    with pytest.raises(Pgrst204):
        rest_update(
            at_008_db.conn, "chat_messages", {"message_text": "x"}, [("id", "eq", CONVERSATION)]
        )
    assert at_008_db.scalar(count) == before


def test_a_stale_schema_cache_answers_pgrst204_until_it_is_read_again(at_008_db):
    seed(at_008_db.conn)
    stale = schema_cache(at_008_db.conn)
    at_008_db.conn.execute("ALTER TABLE chat_conversations ADD COLUMN website_name text")
    update = ({"website_name": "Kedai"}, [("id", "eq", CONVERSATION)])
    with pytest.raises(Pgrst204):
        rest_update(at_008_db.conn, "chat_conversations", *update, cache=stale)
    (row,) = rest_update(at_008_db.conn, "chat_conversations", *update)
    assert row["website_name"] == "Kedai"


def test_an_unknown_selected_column_is_postgresqls_42703(at_008_db):
    """PostgREST does not check select= against its cache: PostgreSQL answers, in the words
    the backend's fallback looks for ("column ... does not exist")."""
    with pytest.raises(psycopg.errors.UndefinedColumn) as error:
        rest_select(at_008_db.conn, "chat_messages", ["id", "message"])
    assert error.value.diag.message_primary == "column chat_messages.message does not exist"


def test_payload_values_become_their_columns_types(at_008_db):
    seed(at_008_db.conn)
    common = {"conversation_id": CONVERSATION, "sender_type": "customer"}
    (obj,) = rest_insert(
        at_008_db.conn,
        "chat_messages",
        {**common, "metadata": {"a": [1, 2]}, "created_at": "2026-07-04T10:15:30"},
    )
    (text,) = rest_insert(at_008_db.conn, "chat_messages", {**common, "metadata": '{"a": 1}'})
    assert obj["metadata"] == {"a": [1, 2]}  # a JSON object stays an object
    assert text["metadata"] == '{"a": 1}'  # json.dumps(...) is stored as a JSON string
    assert obj["created_at"] == "2026-07-04T10:15:30+00:00"  # read in UTC
    assert obj["read_by"] == [] and obj["is_read"] is False  # defaults for what is not sent
    kind = "SELECT jsonb_typeof(metadata) FROM chat_messages WHERE id = %s"
    assert at_008_db.scalar(kind, (text["id"],)) == "string"


def test_filters_eq_neq_in_and_order(at_008_db):
    seed(at_008_db.conn)
    conn = at_008_db.conn
    owner_message = {"conversation_id": CONVERSATION, "sender_type": "owner", "content": "Ya"}
    rest_insert(conn, "chat_messages", owner_message)
    read = rest_update(
        conn,
        "chat_messages",
        {"is_read": True},
        [("conversation_id", "eq", CONVERSATION), ("sender_type", "neq", "owner")],
    )
    assert {row["sender_type"] for row in read} == {"customer"} and len(read) == 2
    rows = rest_select(
        conn, "chat_conversations", ["id"], [("website_id", "in", [WEBSITE, CONVERSATION])]
    )
    assert rows == [{"id": CONVERSATION}]
    ordered = rest_select(
        conn,
        "chat_messages",
        ["sender_type"],
        [("conversation_id", "eq", CONVERSATION)],
        ["created_at.desc"],
        limit=1,
    )
    assert ordered == [{"sender_type": "owner"}]
