"""Revision c001 (converge older chat tables to 004's shape): what it leaves alone, what it
refuses, before any change, and the guard it writes into a --sql script.

What it converges, on every shape, is tests/test_convergence.py's; here are its edges.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from alembic.script import ScriptDirectory

from chatdb.project import alembic_config
from tests import catalog, shapes
from tests.deploying import dump
from tests.pg import alembic_cli

BAD = {
    91: "'site-42'",
    92: "'undefined'",
}


def c001():
    return ScriptDirectory.from_config(alembic_config()).get_revision("c001").module


def failure(result) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith("FAILED: ")]
    # Refused before any change: exit code 4 (docs/failures.md).
    assert result.returncode == 4 and len(lines) == 1, result.stdout + result.stderr
    return lines[0]


def refused(db, *x: str) -> str:
    """Run the deploy, expect c001's refusal, and the database exactly as before."""
    before = dump(db.url)
    args = [arg for option in x for arg in ("-x", option)]
    line = failure(alembic_cli(*args, "upgrade", "head", url=db.url))
    assert line.startswith("FAILED: Revision c001 cannot bring the chat tables to 004's shape")
    assert line.endswith(
        "Nothing was changed (these checks run before any change): fix them and re-run "
        "(docs/taking-over-production.md, 'When a step refuses')."
    )
    assert dump(db.url) == before
    return line


# --------------------------------------------------------------------------- nothing to do


@pytest.mark.parametrize("shape", ["a", "c"])
def test_on_004s_tables_it_changes_nothing(shape, request):
    db = request.getfixturevalue(f"shape_{shape}_db")
    before, rows = catalog.snapshot(db.conn), shapes.all_rows(db.conn)
    result = alembic_cli("upgrade", "c001", url=db.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert catalog.snapshot(db.conn) == before
    assert shapes.all_rows(db.conn) == rows


def test_without_chat_tables_it_changes_nothing(supabase_db):
    before = catalog.snapshot(supabase_db.conn)
    assert alembic_cli("upgrade", "c001", url=supabase_db.url).returncode == 0
    assert catalog.snapshot(supabase_db.conn) == before


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("online", ["auto", "always"])
def test_ids_that_do_not_cast_are_refused_before_any_change(shape_b_db, online):
    """-x online=always: pass 1 would run steps (columns, conversions) that commit one by
    one; the refusal comes from pass 1's collection, before any of them."""
    shapes.add_bad_website_ids(shape_b_db.conn)
    line = refused(shape_b_db, f"online={online}")
    listed = ", ".join(f"{shapes.conversation_id(n)} ({value})" for n, value in BAD.items())
    assert (
        "in 1 place(s): chat_conversations.website_id holds 2 value(s) that are not uuids "
        f"(ids {listed}): correct them or set them to NULL where 004 allows it."
    ) in line


def test_orphans_of_a_missing_foreign_key_are_refused_naming_them(shape_b_db):
    db = shape_b_db
    nowhere = "0d000000-0000-4000-8000-000000000099"
    db.conn.execute("UPDATE chat_conversations SET order_id = %s WHERE id = %s",
                    (nowhere, shapes.conversation_id(3)))  # fmt: skip
    db.conn.execute("DELETE FROM delivery_orders WHERE website_id = %s", (shapes.WEBSITE_B,))
    db.conn.execute("DELETE FROM websites WHERE id = %s", (shapes.WEBSITE_B,))
    line = refused(db)
    assert (
        f"chat_conversations.order_id names a delivery_orders row that does not exist in 1 "
        f"row(s) (ids {shapes.conversation_id(3)} ('{nowhere}')), so foreign key "
        "chat_conversations_order_id_fkey cannot be added: add the missing delivery_orders "
        "rows, or correct or delete these rows"
    ) in line
    orphans = ", ".join(
        f"{shapes.conversation_id(n)} ('{value}')"
        for n, value in ((3, shapes.WEBSITE_B), (4, str(shapes.WEBSITE_B).upper()))
    )
    assert (
        f"chat_conversations.website_id names a websites row that does not exist in 2 row(s) "
        f"(ids {orphans})"
    ) in line


def test_every_problem_is_listed_in_one_sentence(shape_a_db):
    db = shape_a_db
    db.conn.execute("""
        ALTER TABLE chat_participants ALTER COLUMN user_type DROP NOT NULL;
        UPDATE chat_participants SET user_type = NULL WHERE user_type = 'rider';
        ALTER TABLE chat_conversations ALTER COLUMN unread_owner TYPE bigint;
        ALTER TABLE chat_messages DROP COLUMN sender_type CASCADE;
    """)
    line = refused(db, "online=always")
    assert "in 3 place(s): " in line
    assert (
        "chat_conversations.unread_owner is bigint, 004 declares integer: c001 converts only "
        "text ids to uuid; convert it by hand"
    ) in line
    assert (
        "chat_messages has rows and no column sender_type, which 004 declares text NOT NULL "
        "without a default: c001 cannot invent its values"
    ) in line
    assert (
        f"chat_participants.user_type is NULL in 1 row(s) (ids {shapes.participant_id(3)}); "
        "004 declares it NOT NULL: give those rows a value or delete them"
    ) in line


def test_a_refusal_names_a_few_ids_and_counts_the_rest(shape_b_db):
    db = shape_b_db
    db.conn.execute(
        "INSERT INTO chat_conversations (id, website_id, customer_name, customer_phone) "
        "SELECT ('c2000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'shop-' || n, "
        "'x', '' FROM generate_series(1, 8) n"
    )
    line = refused(db)
    assert "holds 8 value(s) that are not uuids (ids " in line
    assert ", ... (3 more)): " in line
    assert len(re.findall(r"c2000000-0000-4000-8000-\d{12}", line)) == 5


# --------------------------------------------------------------------------- the uuid test


@pytest.mark.parametrize(
    "value",
    [
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
        "",
        " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11",
        "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "site-42",
        "undefined",
    ],
)
def test_the_uuid_pattern_accepts_exactly_what_the_cast_accepts(supabase_db, value):
    matches = supabase_db.scalar("SELECT %s ~ %s", (value, c001().UUID_TEXT))
    try:
        with supabase_db.conn.transaction():
            supabase_db.conn.execute("SELECT %s::uuid", (value,))
        casts = True
    except psycopg.errors.InvalidTextRepresentation:
        casts = False
    assert matches == casts


# --------------------------------------------------------------------------- --sql


def guard_sql() -> str:
    result = alembic_cli("upgrade", "000:c001", "--sql")
    assert result.returncode == 0, result.stderr
    return re.search(r"DO \$\$.*?END \$\$;", result.stdout, re.DOTALL)[0]


@pytest.mark.parametrize("shape, raises", [("a", False), ("b", True), ("c", False), ("d", True)])
def test_a_sql_script_raises_where_the_tables_are_not_004s(shape, raises, request):
    db = request.getfixturevalue(f"shape_{shape}_db")
    if not raises:
        db.conn.execute(guard_sql())
        return
    with pytest.raises(psycopg.errors.RaiseException) as error:
        db.conn.execute(guard_sql())
    assert error.value.diag.message_primary.startswith(
        "Revision c001: the chat tables exist and are not in the shape of 004"
    )
