"""Self-check of tests/catalog.py against a real PostgreSQL server.

Proves that spec_differences() passes on a database built like production
(supabase_like.sql + the original 004) and fails, with the matching sentence,
when one object drifts. Each test gets its own clone of a
template database (see conftest.py).
"""

import psycopg2
import pytest

from tests import catalog


@pytest.fixture
def original_db(hand_run_db):
    """A database prepared like production after the hand-run 004 (no Alembic)."""
    return hand_run_db.conn


def _differences_after(conn, sql):
    conn.execute(sql)
    return catalog.spec_differences(catalog.snapshot(conn))


def test_original_004_matches_spec(original_db):
    assert catalog.spec_differences(catalog.snapshot(original_db)) == []


def test_snapshot_is_stable(original_db):
    assert catalog.snapshot(original_db) == catalog.snapshot(original_db)


def test_snapshot_is_the_same_through_psycopg2(original_db, hand_run_db):
    other = psycopg2.connect(hand_run_db.url)
    try:
        assert catalog.snapshot(other) == catalog.snapshot(original_db)
    finally:
        other.close()


def test_snapshot_leaves_search_path_alone(original_db):
    original_db.execute("SET search_path = public")
    catalog.snapshot(original_db)
    assert original_db.execute("SHOW search_path").fetchone() == ("public",)


def test_dropped_policy_is_reported(original_db):
    differences = _differences_after(
        original_db, 'DROP POLICY "Anyone can view messages" ON chat_messages'
    )
    assert differences == ['chat_messages: policy "Anyone can view messages" is missing']


def test_changed_column_default_is_reported(original_db):
    differences = _differences_after(
        original_db, "ALTER TABLE chat_messages ALTER COLUMN read_by DROP DEFAULT"
    )
    assert differences == ["chat_messages.read_by: default is NULL, spec says '[]'::jsonb"]


def test_dropped_index_is_reported(original_db):
    differences = _differences_after(original_db, "DROP INDEX idx_chat_conversations_customer")
    assert differences == ["chat_conversations: index idx_chat_conversations_customer is missing"]


def test_nullable_column_is_reported(original_db):
    differences = _differences_after(
        original_db, "ALTER TABLE chat_conversations ALTER COLUMN customer_id DROP NOT NULL"
    )
    assert differences == ["chat_conversations.customer_id: is nullable, spec says NOT NULL"]


def test_revoked_privilege_is_reported(original_db):
    differences = _differences_after(original_db, "REVOKE DELETE ON chat_participants FROM anon")
    assert differences == [
        (
            "chat_participants: role anon lacks DELETE, spec says "
            "DELETE, INSERT, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE"
        )
    ]


def test_publication_membership_is_reported(original_db):
    differences = _differences_after(
        original_db, "ALTER PUBLICATION supabase_realtime DROP TABLE chat_messages"
    )
    assert differences == [
        "chat_messages: not a member of publication supabase_realtime, spec says it is"
    ]


def test_changed_policy_expression_is_reported(original_db):
    differences = _differences_after(
        original_db,
        'ALTER POLICY "Owners can view own conversations" ON chat_conversations USING (true)',
    )
    assert differences == [
        'chat_conversations: policy "Owners can view own conversations": USING is true, '
        "spec says " + catalog.OWNER_EXPR
    ]


def test_missing_tables_are_reported(supabase_db):
    differences = catalog.spec_differences(catalog.snapshot(supabase_db.conn))
    assert differences == [
        "chat_conversations: table is missing",
        "chat_messages: table is missing",
        "chat_participants: table is missing",
        "function update_conversation_on_message() is missing",
    ]
