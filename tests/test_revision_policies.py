"""chatdb.revisions.policies: the CREATE/DROP pair 004, 049 and c003 write policies with,
and the refusal check 049 and c003 end with, against a real database at head."""

from __future__ import annotations

import psycopg
import pytest

from chatdb.revisions import policies

POLICY_ROW = """
    SELECT roles::text[], cmd, qual, with_check FROM pg_policies
    WHERE schemaname = 'public' AND tablename = %s AND policyname = %s"""


def test_create_and_drop_are_a_pair(head_db):
    """A downgrade puts 004's policies back with create_sql: each clause must land where
    pg_policies reads it, or the policy put back is not the one 004 made."""
    name = "Test readers"
    head_db.conn.execute(
        policies.create_sql("chat_messages", name, "SELECT", "is_read", None, "authenticated")
    )
    assert head_db.rows(POLICY_ROW, ("chat_messages", name)) == [
        (["authenticated"], "SELECT", "is_read", None)
    ], "create_sql wrote another policy than the one asked for"
    head_db.conn.execute(
        policies.create_sql("chat_messages", "Test writers", "INSERT", None, "true")
    )
    assert head_db.rows(POLICY_ROW, ("chat_messages", "Test writers")) == [
        (["public"], "INSERT", None, "true")
    ], "with no TO clause a policy is PUBLIC's, as 004's are"
    for _ in range(2):  # IF EXISTS: dropping what is gone is a no-op
        head_db.conn.execute(policies.drop_sql("chat_messages", name))
    assert head_db.rows(POLICY_ROW, ("chat_messages", name)) == []


def test_the_service_role_policy_is_049s(head_db):
    """049 and c003 both write their policy with service_role_only_sql; replacing head's
    policy with it must leave pg_policies as it was, or the two revisions disagree."""
    for table in ("chat_messages", "chat_conversations", "chat_participants"):
        name = f"Service role manages {table}"
        before = head_db.rows(POLICY_ROW, (table, name))
        assert before, f"head has no {name!r}: the revisions no longer make it"
        head_db.conn.execute(";\n".join(policies.service_role_only_sql(table, name)))
        assert head_db.rows(POLICY_ROW, (table, name)) == before


def test_the_refusal_check_fails_only_on_a_finding(head_db):
    """The check ends 049 and c003: silent when its query finds nothing, and when it finds
    something, a failure whose message names it (quotes in the message kept)."""
    head_db.conn.execute(policies.refuse_if_any_sql("SELECT NULL::text", "never: %"))
    with pytest.raises(psycopg.errors.RaiseException) as refused:
        head_db.conn.execute(
            policies.refuse_if_any_sql("SELECT 'chat_messages: \"x\"'", "can't stay: %; drop it")
        )
    assert str(refused.value).splitlines()[0] == 'can\'t stay: chat_messages: "x"; drop it'
