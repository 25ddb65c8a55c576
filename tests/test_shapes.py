"""Self-checks of tests/shapes.py and tests/sql/hand_run/: each shape of a database to take
over is what docs/spec/after-008.md (section 3) says, its rows are what the builders
promise, all_rows reads them back value for value, and the deviations the hand-run
files' headers claim were needed are needed.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from tests import catalog
from tests.pg import SQL_DIR, run_sql_file
from tests.postgrest import postgrest_request
from tests.shapes import (
    BAD_WEBSITE_IDS,
    BUILDERS,
    CHAT_TABLES,
    CONVERSATIONS,
    MESSAGES,
    NEWER_MESSAGE,
    OLDER_TEXTS,
    PARTICIPANTS,
    UPPER_CASE_CONVERSATION,
    WEBSITE_B,
    add_bad_website_ids,
    all_rows,
    build_b,
    conversation_id,
    lost,
    message_id,
)

# Every policy name 049's sections 3a and 3b drop (049 then creates the two "Service
# role manages ..." policies under the last name of each list).
DROPPED_BY_049 = {
    "chat_messages": {
        "Allow all chat_messages",
        "chat_messages_all",
        "Anyone can view messages",
        "Anyone can insert messages",
        "Anyone can update messages",
        "Service role full access to messages",
    },
    "chat_conversations": {
        "Allow all chat_conversations",
        "chat_conversations_all",
        "Anyone can create conversations",
        "Service role full access to conversations",
    },
}
SERVICE_ROLE_ONLY = {
    "permissive": "PERMISSIVE",
    "cmd": "ALL",
    "roles": ["service_role"],
    "qual": "(auth.role() = 'service_role'::text)",
    "with_check": "(auth.role() = 'service_role'::text)",
}
ALLOW_ALL = {
    "permissive": "PERMISSIVE",
    "cmd": "ALL",
    "roles": ["public"],
    "qual": "true",
    "with_check": "true",
}
TEXT = "text"


def _col(type_, not_null=False, default=None):
    return {"type": type_, "not_null": not_null, "default": default}


def _index(name, table, definition):
    return f"CREATE INDEX {name} ON public.{table} USING {definition}"


def _indexes(table_snapshot):
    return {name: index["definition"] for name, index in table_snapshot["indexes"].items()}


# --------------------------------------------------------------------------- the shapes


def test_shape_a_is_004_and_008_as_the_spec_says(shape_a_db):
    assert catalog.spec_differences(catalog.snapshot(shape_a_db.conn)) == []


def test_shape_b_is_the_older_scripts_tables(shape_b_db):
    tables = catalog.snapshot(shape_b_db.conn)["tables"]
    assert tables["chat_participants"] == {"exists": False}
    conversations, messages = tables["chat_conversations"], tables["chat_messages"]
    assert conversations["columns"] == {
        "id": _col("uuid", True, "extensions.uuid_generate_v4()"),
        "website_id": _col(TEXT, True),
        "order_id": _col(TEXT),
        "customer_id": _col(TEXT),
        "customer_name": _col(TEXT, True),
        "customer_phone": _col(TEXT, True),
        "status": _col(TEXT, True, "'active'::text"),
        "created_at": _col("timestamp with time zone", False, "now()"),
        "updated_at": _col("timestamp with time zone", False, "now()"),
    }
    assert messages["columns"] == {
        "id": _col("uuid", True, "extensions.uuid_generate_v4()"),
        "conversation_id": _col("uuid", True),
        "sender_type": _col(TEXT, True),
        "message": _col(TEXT, True),
        "content": _col(TEXT),
        "message_type": _col(TEXT, False, "'text'::text"),
        "media_url": _col(TEXT),
        "metadata": _col("jsonb"),
        "is_read": _col("boolean", False, "false"),
        "created_at": _col("timestamp with time zone", False, "now()"),
    }
    assert messages["constraints"]["chat_messages_conversation_id_fkey"]["definition"] == (
        "FOREIGN KEY (conversation_id) REFERENCES chat_conversations(id) ON DELETE CASCADE"
    )
    assert set(conversations["constraints"]) == {"chat_conversations_pkey"}
    for table in (conversations, messages):
        assert not table["rls_enabled"]
        assert table["policies"] == {}
        assert table["triggers"] == {}
        assert not table["in_publication"]


def test_shape_c_has_049s_policies_and_what_009_to_013_added(shape_c_db):
    tables = catalog.snapshot(shape_c_db.conn)["tables"]
    conversations, messages = tables["chat_conversations"], tables["chat_messages"]
    participants = tables["chat_participants"]
    assert messages["policies"] == {"Service role manages chat_messages": SERVICE_ROLE_ONLY}
    assert set(conversations["policies"]) == {
        "Service role manages chat_conversations",
        "Owners can view own conversations",
        "Owners can manage own conversations",
        # 004's SELECT USING (true): not in 049's drop list, so it is still there
        "Customers can view own conversations",
    }
    assert conversations["policies"]["Service role manages chat_conversations"] == (
        SERVICE_ROLE_ONLY
    )
    for table, names in DROPPED_BY_049.items():
        assert not names & set(tables[table]["policies"])
    # 049 leaves chat_participants alone: 004's three policies
    assert participants["policies"] == catalog.EXPECTED["tables"]["chat_participants"]["policies"]
    assert messages["columns"]["message_text"] == _col(TEXT, True, "''::text")
    assert messages["columns"]["message_type"] == _col(TEXT, False, "'text'::text")
    indexes = _indexes(conversations) | _indexes(messages)
    expected_indexes = {
        "idx_chat_conversations_customer": _index(
            "idx_chat_conversations_customer", "chat_conversations", "btree (customer_id)"
        ),
        "idx_chat_conversations_phone": _index(
            "idx_chat_conversations_phone", "chat_conversations", "btree (customer_phone)"
        ),
        "idx_chat_conversations_website_phone": _index(
            "idx_chat_conversations_website_phone",
            "chat_conversations",
            "btree (website_id, customer_phone)",
        ),
        "idx_chat_messages_type": _index(
            "idx_chat_messages_type", "chat_messages", "btree (message_type)"
        ),
        "idx_chat_messages_media_url": _index(
            "idx_chat_messages_media_url",
            "chat_messages",
            "btree (media_url) WHERE (media_url IS NOT NULL)",
        ),
        "idx_chat_messages_metadata": _index(
            "idx_chat_messages_metadata",
            "chat_messages",
            "gin (metadata) WHERE (metadata IS NOT NULL)",
        ),
    }
    assert {name: indexes.get(name) for name in expected_indexes} == expected_indexes
    for table in tables.values():
        assert table["rls_enabled"] and table["in_publication"]
    assert set(conversations["triggers"]) == {"update_chat_conversations_updated_at"}
    assert set(messages["triggers"]) == {"update_conversation_on_message_trigger"}


def test_shape_d_is_fix_as_rebuild_hardened_by_049(shape_d_db):
    tables = catalog.snapshot(shape_d_db.conn)["tables"]
    conversations, messages = tables["chat_conversations"], tables["chat_messages"]
    participants = tables["chat_participants"]
    assert conversations["columns"]["website_name"] == _col(TEXT)
    assert conversations["columns"]["customer_id"] == _col(TEXT, True)
    assert messages["columns"]["message_text"] == _col(TEXT, True, "''::text")
    assert "sender_name" not in messages["columns"]
    assert "read_by" not in messages["columns"]
    for table in tables.values():
        assert table["columns"]["id"] == _col("uuid", True, "gen_random_uuid()")
    assert _indexes(conversations) == {
        "chat_conversations_pkey": "CREATE UNIQUE INDEX chat_conversations_pkey "
        "ON public.chat_conversations USING btree (id)",
        "idx_chat_conversations_website": _index(
            "idx_chat_conversations_website", "chat_conversations", "btree (website_id)"
        ),
        # the name of 004's index on customer_id, built on customer_phone
        "idx_chat_conversations_customer": _index(
            "idx_chat_conversations_customer", "chat_conversations", "btree (customer_phone)"
        ),
        "idx_chat_conversations_status": _index(
            "idx_chat_conversations_status", "chat_conversations", "btree (status)"
        ),
    }
    assert set(_indexes(messages)) == {
        "chat_messages_pkey",
        "idx_chat_messages_conversation",
        "idx_chat_messages_created",
    }
    assert set(_indexes(participants)) == {
        "chat_participants_pkey",
        "chat_participants_conversation_id_user_type_user_id_key",
        "idx_chat_participants_conversation",
    }
    assert messages["policies"] == {"Service role manages chat_messages": SERVICE_ROLE_ONLY}
    assert conversations["policies"] == {
        "Service role manages chat_conversations": SERVICE_ROLE_ONLY
    }
    assert participants["policies"] == {"Allow all chat_participants": ALLOW_ALL}
    for table in tables.values():
        assert table["rls_enabled"] and table["in_publication"]
        assert table["triggers"] == {}


# --------------------------------------------------------------------------- the rows

EXPECTED_COUNTS = {
    "a": {"chat_conversations": 4, "chat_messages": 8, "chat_participants": 4},
    "b": {"chat_conversations": 4, "chat_messages": 8},
    "c": {"chat_conversations": 4, "chat_messages": 9, "chat_participants": 4},
    "d": {"chat_conversations": 4, "chat_messages": 8, "chat_participants": 4},
}


def test_every_chat_table_of_every_shape_has_its_rows(any_shape_db):
    rows = all_rows(any_shape_db.conn)
    assert {table: len(r) for table, r in rows.items()} == EXPECTED_COUNTS[any_shape_db.shape]
    conversations = {row["id"]: row for row in rows["chat_conversations"]}
    messages = rows["chat_messages"]
    assert set(conversations) == {str(c.id) for c in CONVERSATIONS}
    assert {row["sender_type"] for row in messages} == {"customer", "owner", "rider", "system"}
    assert any(row["media_url"] and row["metadata"] for row in messages)
    websites = {row["website_id"] for row in conversations.values()}
    owners = dict(any_shape_db.rows("SELECT id::text, user_id::text FROM websites"))
    assert websites <= set(owners) and len(websites) == 2 and None not in owners.values()


def test_the_rows_hold_together(any_shape_db):
    """Rows are written with triggers (and so foreign key checks) off: check them here."""
    db = any_shape_db
    links = [  # (child table, its column naming the parent, parent table)
        ("chat_messages", "conversation_id", "chat_conversations"),
        ("chat_conversations", "website_id", "websites"),
        ("chat_conversations", "order_id", "delivery_orders"),
    ]
    if "chat_participants" in all_rows(db.conn):
        links.append(("chat_participants", "conversation_id", "chat_conversations"))
    orphans = [
        db.scalar(
            f"SELECT count(*) FROM {child} x WHERE x.{column} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {parent} p WHERE p.id::text = lower(x.{column}::text))"
        )
        for child, column, parent in links
    ]
    assert orphans == [0] * len(links)
    assert db.scalar("SELECT count(*) FROM chat_conversations WHERE order_id IS NOT NULL") == 2


def test_phones_customer_ids_and_contents_vary_as_promised(any_shape_db):
    rows = all_rows(any_shape_db.conn)
    conversations = {row["id"]: row for row in rows["chat_conversations"]}
    without_phone = [c for c in CONVERSATIONS if c.phone is None]
    shape = any_shape_db.shape
    for c in without_phone:
        assert conversations[str(c.id)]["customer_phone"] == ("" if shape == "b" else None)
    customer_ids = {c.n: conversations[str(c.id)]["customer_id"] for c in CONVERSATIONS}
    if shape == "b":  # nullable: the rows without one have none
        assert customer_ids == {c.n: c.customer_id for c in CONVERSATIONS}
        assert None in customer_ids.values()
    else:  # NOT NULL since 008 (or FIX A): 008's formula
        assert customer_ids == {c.n: c.customer_id_008() for c in CONVERSATIONS}
        assert customer_ids[2] == f"customer_unknown_{conversation_id(2)}"
    text_column = {"a": "content", "b": "message", "c": "content", "d": "message_text"}[shape]
    texts = [row[text_column] for row in rows["chat_messages"]]
    assert "" in texts
    if shape in "ac":
        assert None in texts  # content NULL


def test_shape_b_writes_one_website_id_in_upper_case(shape_b_db):
    raw = dict(shape_b_db.rows("SELECT id::text, website_id FROM chat_conversations"))
    upper = str(conversation_id(UPPER_CASE_CONVERSATION))
    assert raw[upper] == str(WEBSITE_B).upper() != str(WEBSITE_B)
    # all_rows lower-cases it, so it compares equal to the uuid it casts to
    rows = {row["id"]: row for row in all_rows(shape_b_db.conn)["chat_conversations"]}
    assert rows[upper]["website_id"] == str(WEBSITE_B)
    messages = {row["id"]: row for row in all_rows(shape_b_db.conn)["chat_messages"]}
    assert {
        n: (messages[str(message_id(n))]["message"], messages[str(message_id(n))]["content"])
        for n in OLDER_TEXTS
    } == OLDER_TEXTS


def test_shape_c_backfilled_message_text_from_content(shape_c_db):
    rows = {row["id"]: row for row in all_rows(shape_c_db.conn)["chat_messages"]}
    for m in MESSAGES:  # written before 009: COALESCE(NULLIF(content, ''), '')
        assert rows[str(m.id)]["message_text"] == (m.text or "")
        assert rows[str(m.id)]["message_type"] == m.message_type
    newer = rows[str(NEWER_MESSAGE.id)]  # written after 049 by today's backend
    assert (newer["message_text"], newer["content"]) == (NEWER_MESSAGE.text, None)


def test_shape_d_has_website_names_where_the_widget_wrote_them(shape_d_db):
    rows = {row["id"]: row for row in all_rows(shape_d_db.conn)["chat_conversations"]}
    assert {n: rows[str(conversation_id(n))]["website_name"] for n in (1, 2, 3, 4)} == {
        1: "Kedai Aminah",
        2: None,
        3: "Restoran Chong",
        4: None,
    }


def test_participants_are_the_promised_ones(any_shape_db):
    rows = all_rows(any_shape_db.conn)
    if any_shape_db.shape == "b":
        assert "chat_participants" not in rows
        return
    got = [(r["user_type"], r["user_id"]) for r in rows["chat_participants"]]
    assert got == [(p.user_type, p.user_id) for p in PARTICIPANTS]


# --------------------------------------------------------------------------- all_rows


def test_all_rows_is_json_and_independent_of_the_session_time_zone(any_shape_db):
    conn = any_shape_db.conn
    rows = all_rows(conn)
    assert json.loads(json.dumps(rows)) == rows
    assert all(
        isinstance(value, str | None) for r in rows.values() for row in r for value in row.values()
    )
    conn.execute("SET timezone TO 'Asia/Kuala_Lumpur'")
    assert all_rows(conn) == rows
    assert rows["chat_conversations"][0]["created_at"] == "2026-01-10 09:00:00"


def test_all_rows_has_every_column_the_code_does_not_declare(shape_b_db):
    rows = all_rows(shape_b_db.conn)
    assert list(rows["chat_messages"][0]) == [
        "id",
        "conversation_id",
        "sender_type",
        "message",
        "content",
        "message_type",
        "media_url",
        "metadata",
        "is_read",
        "created_at",
    ]
    assert rows["chat_messages"][0]["message"] == OLDER_TEXTS[1][0]


def test_text_ids_converted_to_uuid_compare_equal(shape_b_db):
    before = all_rows(shape_b_db.conn)
    shape_b_db.conn.execute(
        "ALTER TABLE chat_conversations ALTER COLUMN website_id TYPE uuid USING website_id::uuid,"
        " ALTER COLUMN order_id TYPE uuid USING order_id::uuid"
    )
    after = all_rows(shape_b_db.conn)
    assert lost(before, after) == []
    assert after == before


def test_lost_names_every_value_not_kept(shape_a_db):
    db = shape_a_db
    before = all_rows(db.conn)
    first = str(conversation_id(1))
    db.conn.execute("UPDATE chat_conversations SET customer_name = 'X' WHERE id = %s", (first,))
    db.conn.execute("ALTER TABLE chat_messages DROP COLUMN read_by")
    db.conn.execute("DELETE FROM chat_participants WHERE user_type = 'rider'")
    db.conn.execute("ALTER TABLE chat_conversations ADD COLUMN website_name text")  # not a loss
    got = lost(before, all_rows(db.conn))
    assert f"chat_conversations {first}: customer_name was 'Aminah', is 'X'" in got
    # 004's trigger stamped updated_at: a change too
    assert f"chat_conversations {first}: updated_at was '2026-01-10 09:30:00', is " in "".join(got)
    assert sum("column read_by is gone" in sentence for sentence in got) == len(MESSAGES)
    assert [s for s in got if s.startswith("chat_participants")] == [
        "chat_participants fa000000-0000-4000-8000-000000000003: the row is gone"
    ]
    assert len(got) == 2 + len(MESSAGES) + 1


@pytest.mark.parametrize("shape", sorted(BUILDERS))
def test_a_builder_writes_the_same_values_every_time(shape, supabase_db, request):
    BUILDERS[shape](supabase_db.url)
    template = request.getfixturevalue(f"shape_{shape}_db")
    assert all_rows(supabase_db.conn) == all_rows(template.conn)


def test_bad_ids_variant_adds_website_ids_that_do_not_cast(shape_b_db, supabase_db):
    build_b(supabase_db.url, bad_ids_variant=True)
    add_bad_website_ids(shape_b_db.conn)
    assert all_rows(supabase_db.conn) == all_rows(shape_b_db.conn)
    bad = supabase_db.rows(
        "SELECT website_id FROM chat_conversations WHERE website_id !~* "
        "'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' ORDER BY website_id"
    )
    assert [website for (website,) in bad] == sorted(BAD_WEBSITE_IDS)
    assert supabase_db.scalar(
        "SELECT count(*) FROM chat_messages m JOIN chat_conversations c "
        "ON c.id = m.conversation_id WHERE c.website_id = 'site-42'"
    )
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        supabase_db.conn.execute(
            "ALTER TABLE chat_conversations ALTER COLUMN website_id TYPE uuid "
            "USING website_id::uuid"
        )


# --------------------------------------------------------------------------- the hand-run SQL


def _column_exists(db, table, column) -> bool:
    return bool(
        db.scalar(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s AND column_name = %s",
            (table, column),
        )
    )


def test_faithful_009_fails_on_004s_tables_for_want_of_message(shape_a_db):
    with pytest.raises(psycopg.errors.UndefinedColumn) as failure:
        run_sql_file(shape_a_db.url, "hand_run/009_phone_based_chat.sql")
    assert failure.value.diag.message_primary == 'column "message" does not exist'
    assert not _column_exists(shape_a_db, "chat_messages", "message_text")


def test_faithful_009_fails_on_the_older_tables_for_want_of_participants(shape_b_db):
    with pytest.raises(psycopg.errors.UndefinedTable) as failure:
        run_sql_file(shape_b_db.url, "hand_run/009_phone_based_chat.sql")
    assert failure.value.diag.message_primary == 'relation "chat_participants" does not exist'
    assert not _column_exists(shape_b_db, "chat_messages", "message_text")


def test_faithful_009_runs_where_message_and_participants_exist(shape_b_db):
    shape_b_db.conn.execute("CREATE TABLE chat_participants (id uuid PRIMARY KEY)")
    run_sql_file(shape_b_db.url, "hand_run/009_phone_based_chat.sql")
    rows = {row["id"]: row for row in all_rows(shape_b_db.conn)["chat_messages"]}
    for n, (message, content) in OLDER_TEXTS.items():
        assert rows[str(message_id(n))]["message_text"] == (message or content or "")


def test_009s_original_last_line_is_a_syntax_error_that_runs_nothing(shape_b_db):
    shape_b_db.conn.execute("CREATE TABLE chat_participants (id uuid PRIMARY KEY)")
    fixed = (SQL_DIR / "hand_run/009_phone_based_chat.sql").read_text()
    wrapped = (
        "DO $$ BEGIN RAISE NOTICE '✅ Phone-based chat migration completed successfully!'; END $$;"
    )
    assert fixed.rstrip().endswith(wrapped)
    original = fixed.replace(
        wrapped, "RAISE NOTICE '✅ Phone-based chat migration completed successfully!';"
    )
    with pytest.raises(psycopg.errors.SyntaxError):
        shape_b_db.conn.execute(original)
    assert not _column_exists(shape_b_db, "chat_messages", "message_text")


def test_010s_publication_lines_fail_where_004_ran(shape_a_db):
    with pytest.raises(psycopg.errors.DuplicateObject):
        shape_a_db.conn.execute("ALTER PUBLICATION supabase_realtime ADD TABLE chat_messages")


def test_auth_role_reads_the_jwts_role_claim(supabase_db):
    for legacy in (False, True):
        with postgrest_request(supabase_db.conn, "service_role", legacy=legacy) as conn:
            assert conn.execute("SELECT auth.role()").fetchone()[0] == "service_role"
    assert supabase_db.scalar("SELECT auth.role()") is None
    for role in ("anon", "authenticated", "service_role"):
        assert supabase_db.scalar(
            "SELECT has_function_privilege(%s, 'auth.role()', 'EXECUTE')", (role,)
        )


def test_chat_tables_are_the_three(any_shape_db):
    assert set(all_rows(any_shape_db.conn)) <= set(CHAT_TABLES)
