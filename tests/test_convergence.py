"""Issue 12, item 2: every shape of a database to take over, and combinations of them,
converges to head with ``alembic upgrade head``: what the code declares is there as
declared (``chatdb drift`` lists only what it does not declare), every row and every
value is kept (columns the code does not declare included), and every call of the
backend's contract does what it should (every write succeeds).

Each shape runs twice: as a deploy runs by default (these small tables take the
transactional path) and with ``-x online=always``, so that every conversion, column,
foreign key and index takes the online path of a large table, quickly. One test builds
a table past the real threshold (5,000 estimated rows) and lets the run choose.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from tests import shapes
from tests.convergence import (
    COMBINATIONS,
    contract_problems,
    drift_problems,
    value_problems,
)
from tests.pg import alembic_cli, revision_ids


def upgrade(url: str, *x: str):
    args = [arg for option in x for arg in ("-x", option)]
    return alembic_cli(*args, "upgrade", "head", url=url, timeout=300)


def assert_converged(db, before: dict, result) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert db.scalar("SELECT version_num FROM alembic_version") == revision_ids()[-1]
    problems = drift_problems(db.url)
    problems += value_problems(before, shapes.all_rows(db.conn))
    problems += contract_problems(db.conn)
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("online", ["auto", "always"])
def test_each_shape_converges_to_head(any_shape_db, online):
    db = any_shape_db
    before = shapes.all_rows(db.conn)
    result = upgrade(db.url, f"online={online}")  # no other option: none is needed
    assert_converged(db, before, result)
    if online == "always":
        assert "online: " in result.stderr  # the steps ran, and said so


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_combinations_of_the_shapes_converge_to_head(supabase_db, name):
    COMBINATIONS[name](supabase_db.url)
    before = shapes.all_rows(supabase_db.conn)
    assert all(before.values()), "every chat table has rows"
    result = upgrade(supabase_db.url)
    assert_converged(supabase_db, before, result)


def test_shape_b_converts_text_ids_keeps_message_and_relaxes_what_004_allows(shape_b_db):
    db = shape_b_db
    raw = dict(db.rows("SELECT id::text, website_id FROM chat_conversations"))
    result = upgrade(db.url)
    assert result.returncode == 0, result.stdout + result.stderr
    columns = dict(
        db.rows(
            "SELECT column_name, data_type || ' ' || is_nullable FROM information_schema.columns "
            "WHERE table_name = 'chat_conversations' AND column_name IN "
            "('website_id', 'order_id', 'customer_name', 'customer_phone', 'status')"
        )
    )
    assert columns == {
        "website_id": "uuid NO",
        "order_id": "uuid YES",
        "customer_name": "text YES",
        "customer_phone": "text YES",
        "status": "text YES",
    }
    converted = dict(db.rows("SELECT id::text, website_id::text FROM chat_conversations"))
    assert converted == {id_: website.lower() for id_, website in raw.items()}
    # message stays, with its values, and no longer refuses the backend's inserts
    messages = dict(db.rows("SELECT id::text, message FROM chat_messages"))
    assert messages == {
        str(shapes.message_id(n)): texts[0] for n, texts in shapes.OLDER_TEXTS.items()
    }
    assert (
        db.scalar(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'chat_messages' AND column_name = 'message'"
        )
        == "YES"
    )
    # the unread counters came with 004's default
    assert db.rows("SELECT DISTINCT unread_owner, unread_customer, unread_rider "
                   "FROM chat_conversations") == [(0, 0, 0)]  # fmt: skip


def test_shape_d_gets_004s_defaults_columns_and_index_names(shape_d_db):
    db = shape_d_db
    result = upgrade(db.url, "allow_wider_access=true")
    assert result.returncode == 0, result.stdout + result.stderr
    defaults = db.rows(
        "SELECT DISTINCT regexp_replace(pg_get_expr(adbin, adrelid), '^extensions\\.', '') "
        "FROM pg_attrdef d JOIN pg_attribute a "
        "ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE a.attname = 'id' "
        "AND d.adrelid::regclass::text LIKE 'chat_%'"
    )
    assert defaults == [("uuid_generate_v4()",)]
    indexes = dict(
        db.rows(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN "
            "('idx_chat_conversations_customer', 'idx_chat_conversations_phone')"
        )
    )
    assert indexes["idx_chat_conversations_customer"].endswith("USING btree (customer_id)")
    assert indexes["idx_chat_conversations_phone"].endswith("USING btree (customer_phone)")
    read_by = db.rows("SELECT DISTINCT read_by::text, sender_name FROM chat_messages")
    assert read_by == [("[]", None)]


def test_where_009s_phone_index_exists_fix_as_misnamed_copy_is_dropped(shape_d_db):
    db = shape_d_db
    db.conn.execute(
        "CREATE INDEX idx_chat_conversations_phone ON chat_conversations (customer_phone)"
    )
    result = upgrade(db.url, "allow_wider_access=true", "online=always")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "drop index idx_chat_conversations_customer concurrently" in result.stderr
    phone_indexes = db.rows(
        "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%(customer_phone)'"
    )
    assert phone_indexes == [("idx_chat_conversations_phone",)]


def test_a_table_past_the_threshold_takes_the_online_path_by_itself(shape_b_db):
    """Shape (b) with 6,000 conversations (ANALYZEd: the estimate is what VACUUM and
    ANALYZE keep): chat_conversations is past 5,000 and goes online, chat_messages (8
    rows) stays transactional, and the result is the same."""
    db = shape_b_db
    db.conn.execute(
        "INSERT INTO chat_conversations (id, website_id, order_id, customer_name, "
        "customer_phone, status, created_at, updated_at) "
        "SELECT ('c1000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, "
        f"'{shapes.WEBSITE_A}', NULL, 'Bulk', '01' || n, 'active', "
        "'2026-01-01', '2026-01-01' FROM generate_series(1, 6000) n"
    )
    db.conn.execute("ANALYZE chat_conversations")
    before = shapes.all_rows(db.conn)
    result = upgrade(db.url)
    assert re.search(r"chat_conversations: online path \(estimated rows 600\d", result.stderr)
    assert "chat_messages: transactional path" in result.stderr
    assert "convert website_id to uuid in a new column, then swap" in result.stderr
    assert (
        "add foreign key chat_conversations_website_id_fkey, validated without blocking writes"
        in result.stderr
    )
    assert "build index idx_chat_conversations_website concurrently" in result.stderr
    assert_converged(db, before, result)


def test_shape_b_with_rows_a_backend_writes_after_the_takeover(shape_b_db):
    """The backend's own writes on the converged (b): message written without message
    (the older NOT NULL column), a conversation without name or phone."""
    db = shape_b_db
    assert upgrade(db.url).returncode == 0
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO chat_messages (conversation_id, sender_type, message_text) "
            "VALUES (%s, 'customer', 'Hai')",
            (shapes.conversation_id(1),),
        )
        conn.execute(
            "INSERT INTO chat_conversations (website_id, status) VALUES (%s, 'active')",
            (shapes.WEBSITE_A,),
        )
