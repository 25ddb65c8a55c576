"""Issue 9 (2, 3, 6): the revisions after 008, each against the hand-run SQL it replicates.

For each replica (009, 012, 013, 049), on two databases prepared like Supabase at the
revision before, with the same rows:

- parity: the hand-run file on one, the revision on the other: same catalog
  (tests.catalog.snapshot) and same values (tests.shapes.all_rows). 049 differs by
  exactly what it does beyond the file (it drops "Customers can view own conversations");
- adoption: the revision, run where the hand-run file ran, changes nothing (049: only
  that policy goes).

014 replicates one column of a rebuild, which cannot run on 004's tables: its parity is
FIX A's column, its adoption a database rebuilt by FIX A. The downgrades remove what the
revisions add, behind the data-loss and access guards; c002's trigger gives 008's value.

These tests pin the SQL history (each names the SQL file and the revision before it).
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from alembic import command
from alembic.util import CommandError

from chatdb.project import alembic_config
from tests import catalog, shapes
from tests.pg import database_url, migrate, run_sql_file
from tests.postgrest import CALLERS, postgrest_request, rest_insert

WEBSITE = uuid.UUID("ab000000-0000-4000-8000-000000000001")
CONVERSATION = uuid.UUID("c0000000-0000-4000-8000-000000000001")
NO_PHONE = uuid.UUID("c0000000-0000-4000-8000-000000000002")
# (id, content, message_type): every case of 009's and 012's backfills.
MESSAGES = (
    ("ee000000-0000-4000-8000-000000000001", "Nak nasi lemak", "text"),
    ("ee000000-0000-4000-8000-000000000002", "", "image"),
    ("ee000000-0000-4000-8000-000000000003", None, None),
    ("ee000000-0000-4000-8000-000000000004", "Sudah bayar", ""),
)
CUSTOMERS_POLICY = "Customers can view own conversations"
OPEN_POLICIES = """
    SELECT tablename, policyname FROM pg_policies
    WHERE schemaname = 'public' AND tablename IN ('chat_messages', 'chat_conversations')
      AND permissive = 'PERMISSIVE' AND (qual = 'true' OR with_check = 'true')
      AND roles && ARRAY['public', 'anon', 'authenticated']::name[]
    ORDER BY 1, 2"""


def seed(db, *, message_column: bool = False) -> None:
    """Conversations (one without a phone) and messages covering the backfills, written
    with triggers off (fixed values; tests.shapes does the same)."""
    with db.conn.transaction():
        db.conn.execute("SET LOCAL session_replication_role = replica")
        db.conn.execute("INSERT INTO websites (id, user_id) VALUES (%s, NULL)", (WEBSITE,))
        db.conn.execute(
            "INSERT INTO chat_conversations (id, website_id, customer_id, customer_phone, "
            "created_at, updated_at) VALUES (%s, %s, 'customer_0123', '0123', "
            "'2026-01-10 09:00+00', '2026-01-10 09:30+00'), (%s, %s, %s, NULL, "
            "'2026-01-10 10:00+00', '2026-01-10 10:30+00')",
            (CONVERSATION, WEBSITE, NO_PHONE, WEBSITE, f"customer_unknown_{NO_PHONE}"),
        )
        for n, (id_, content, kind) in enumerate(MESSAGES):
            db.conn.execute(
                "INSERT INTO chat_messages (id, conversation_id, sender_type, content, "
                "message_type, created_at) VALUES (%s, %s, 'customer', %s, %s, %s)",
                (id_, CONVERSATION, content, kind, f"2026-01-10 09:0{n}+00"),
            )
        if message_column:  # the older script's column, beside content
            db.conn.execute("ALTER TABLE chat_messages ADD COLUMN message text")
            db.conn.execute(
                "UPDATE chat_messages SET message = CASE right(id::text, 1) "
                "WHEN '1' THEN 'Nak nasi lemak!' WHEN '2' THEN '' WHEN '3' THEN 'Helo' END"
            )


def state(db) -> dict:
    """The catalog of the chat tables and every value in them."""
    return {"catalog": catalog.snapshot(db.conn), "rows": shapes.all_rows(db.conn)}


def without_policy(snapshot: dict, table: str, name: str) -> dict:
    copy = {**snapshot, "catalog": {**snapshot["catalog"]}}
    tables = copy["catalog"]["tables"] = dict(copy["catalog"]["tables"])
    tables[table] = {**tables[table], "policies": dict(tables[table]["policies"])}
    del tables[table]["policies"][name]
    return copy


@pytest.fixture
def twins(supabase_db, supabase_at_008_db):
    """Two databases prepared like Supabase at 008, one for the hand-run SQL, one for the
    revision; ``at(revision)`` brings both there and seeds the same rows."""

    def at(revision: str, **seed_options) -> tuple:
        for db in (supabase_db, supabase_at_008_db):
            migrate(db.url, revision)
            seed(db, **seed_options)
        return supabase_db, supabase_at_008_db

    return at


# --------------------------------------------------------------------------- parity, adoption

REPLICAS = {
    # revision: (the revision before it, the hand-run file it replicates)
    "009": ("008", "hand_run/009_phone_based_chat_without_message_column.sql"),
    "012": ("009", "hand_run/012_fix_chat_message_type.sql"),
    "013": ("012", "hand_run/013_add_missing_chat_columns.sql"),
    "049": ("014", "hand_run/049_chat.sql"),
}


@pytest.mark.parametrize("revision", REPLICAS)
def test_revision_does_what_its_hand_run_file_does_and_adopts_it(twins, revision):
    """Pins the SQL history: each replica against its file, from the revision before."""
    before, sql_file = REPLICAS[revision]
    hand_run, alembic_run = twins(before)
    run_sql_file(hand_run.url, sql_file)
    by_hand = state(hand_run)
    migrate(alembic_run.url, revision)
    by_revision = state(alembic_run)
    if revision == "049":  # beyond the file: 004's SELECT USING (true) policy goes too
        assert by_revision == without_policy(by_hand, "chat_conversations", CUSTOMERS_POLICY)
    else:
        assert by_revision == by_hand
    migrate(hand_run.url, revision)  # adoption: the revision where the file ran
    assert state(hand_run) == by_revision


def test_009_backfills_from_message_where_the_older_scripts_column_exists(twins):
    """Pins the SQL history: the faithful 009 (COALESCE(NULLIF(message, ''),
    NULLIF(content, ''), '')) and the revision agree on a table that has ``message``."""
    hand_run, alembic_run = twins("008", message_column=True)
    run_sql_file(hand_run.url, "hand_run/009_phone_based_chat.sql")
    migrate(alembic_run.url, "009")
    assert state(alembic_run) == state(hand_run)
    texts = dict(alembic_run.rows("SELECT id::text, message_text FROM chat_messages"))
    assert texts == {
        MESSAGES[0][0]: "Nak nasi lemak!",  # message first
        MESSAGES[1][0]: "",  # both empty
        MESSAGES[2][0]: "Helo",  # content NULL
        MESSAGES[3][0]: "Sudah bayar",  # message NULL: content
    }


def test_009_fills_message_text_from_content_and_makes_it_not_null(at_008_db):
    """Pins the SQL history: 009 on 004's tables (content only)."""
    seed(at_008_db)
    migrate(at_008_db.url, "009")
    assert dict(at_008_db.rows("SELECT id::text, message_text FROM chat_messages")) == {
        id_: content or "" for id_, content, _ in MESSAGES
    }
    column = catalog.snapshot(at_008_db.conn)["tables"]["chat_messages"]["columns"]
    assert column["message_text"] == {"type": "text", "not_null": True, "default": "''::text"}


def test_012_gives_every_message_a_type(at_008_db):
    """Pins the SQL history: 012's backfill of NULL and '' types."""
    seed(at_008_db)
    migrate(at_008_db.url, "012")
    assert dict(at_008_db.rows("SELECT id::text, message_type FROM chat_messages")) == {
        id_: kind or "text" for id_, _, kind in MESSAGES
    }


def test_014_adds_the_column_fix_a_has(supabase_db, at_008_db):
    """Pins the SQL history: website_name as 014's FIX A defines it (text, nullable, no
    default), on 004's tables."""
    run_sql_file(supabase_db.url, "hand_run/014_fix_a.sql")
    fix_a = catalog.snapshot(supabase_db.conn)["tables"]["chat_conversations"]["columns"]
    migrate(at_008_db.url, "014")
    ours = catalog.snapshot(at_008_db.conn)["tables"]["chat_conversations"]["columns"]
    assert (
        ours["website_name"]
        == fix_a["website_name"]
        == {
            "type": "text",
            "not_null": False,
            "default": None,
        }
    )


def test_014_changes_nothing_where_fix_a_ran(shape_d_db):
    """Pins the SQL history: adoption of 014 on shape (d), FIX A's tables with the
    backend's rows (marked at 013 by hand: FIX A made what 000-013 would find)."""
    before = state(shape_d_db)
    stamp(shape_d_db.url, "013")
    migrate(shape_d_db.url, "014")
    assert state(shape_d_db) == before


def stamp(url: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["configure_logger"] = False
    with database_url(url):
        command.stamp(config, revision)


def many_messages(db, count: int) -> None:
    """``count`` more messages (content '', NULL or text; type NULL, '' or set), with
    fixed ids and times, written with triggers off (the same rows in every database)."""
    with db.conn.transaction():
        db.conn.execute("SET LOCAL session_replication_role = replica")
        db.conn.execute(
            "INSERT INTO chat_messages (id, conversation_id, sender_type, content, message_type, "
            "created_at) SELECT ('ee100000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, "
            "%s, 'customer', (ARRAY['', NULL, 'hi ' || n])[1 + n %% 3], "
            "(ARRAY[NULL, '', 'image'])[1 + n %% 3], '2026-01-11 09:00+00'::timestamptz "
            "+ n * interval '1 minute' FROM generate_series(1, %s) n",
            (CONVERSATION, count),
        )
    db.conn.execute("ANALYZE chat_messages")


def test_on_large_tables_the_revisions_go_online_with_the_same_result(twins, caplog):
    """009's column, backfill and NOT NULL, 012's backfill, the indexes of 009, 012 and 013
    run in pass 1, online (batches, a validated check, CONCURRENTLY), and leave what the
    transactional path leaves."""
    online, transactional = twins("008")
    for db in (online, transactional):
        many_messages(db, 450)
    caplog.set_level("INFO", logger="chatdb.deploy.online")
    migrate(online.url, "head", x=["online=always", "online_batch_size=100"])
    assert "online: " in caplog.text and "step(s) on chat_messages" in caplog.text
    migrate(transactional.url, "head", x=["online=never"])
    by_step = state(transactional)
    assert state(online) == by_step
    texts = {row["message_text"] for row in by_step["rows"]["chat_messages"]}
    assert "" in texts and None not in texts
    kinds = {row["message_type"] for row in by_step["rows"]["chat_messages"]}
    assert kinds == {"text", "image"}


# --------------------------------------------------------------------------- 049


def test_049_leaves_no_public_policy_open_on_messages_or_conversations(twins):
    """Pins the SQL history: 049's verification query finds nothing after the revision,
    but still finds 004's "Customers can view own conversations" after the file."""
    hand_run, alembic_run = twins("014")
    run_sql_file(hand_run.url, "hand_run/049_chat.sql")
    assert hand_run.rows(OPEN_POLICIES) == [("chat_conversations", CUSTOMERS_POLICY)]
    migrate(alembic_run.url, "049")
    assert alembic_run.rows(OPEN_POLICIES) == []


@pytest.mark.parametrize("fixture", ["head_db", "supabase_head_db"])
def test_at_head_no_public_policy_opens_messages_or_conversations(fixture, request):
    db = request.getfixturevalue(fixture)
    assert db.rows(OPEN_POLICIES) == []


def test_049_drops_fix_as_participants_policy_and_keeps_004s(at_008_db):
    """Pins the SQL history: "Allow all chat_participants" (FIX A) grants what 004's
    "Anyone can manage participants" grants; 049 drops it and leaves 004's three."""
    db = at_008_db
    migrate(db.url, "014")
    db.conn.execute(
        'CREATE POLICY "Allow all chat_participants" ON chat_participants '
        "FOR ALL USING (true) WITH CHECK (true)"
    )
    migrate(db.url, "049")
    policies = catalog.snapshot(db.conn)["tables"]["chat_participants"]["policies"]
    assert policies == catalog.EXPECTED["tables"]["chat_participants"]["policies"]


def test_049_refuses_to_leave_an_unknown_open_policy(at_008_db):
    """A public USING (true) policy 049 does not know by name (a hand-made one): the run
    fails naming it, and nothing is changed. Pins the SQL history: from 014 to 049."""
    db = at_008_db
    migrate(db.url, "014")
    db.conn.execute(
        'CREATE POLICY "Allow conversation viewing" ON chat_conversations FOR SELECT USING (true)'
    )
    before = state(db)
    with pytest.raises(CommandError) as failure:
        migrate(db.url, "049")
    assert 'chat_conversations: "Allow conversation viewing"' in str(failure.value)
    assert "drop them or scope them TO service_role" in str(failure.value)
    assert state(db) == before
    assert db.scalar("SELECT version_num FROM alembic_version") == "014"


def test_049_creates_auth_role_where_a_database_past_000_lacks_it(at_008_db):
    """A database that went past 000 before 000 provided auth.role(): 049 makes it (its
    policies call it), it answers the JWT's role, and 049's downgrade removes it. Pins the
    SQL history: 049 and the revision before it."""
    db = at_008_db
    db.conn.execute("DROP FUNCTION auth.role()")
    migrate(db.url, "049")
    assert db.scalar("SELECT obj_description('auth.role()'::regprocedure, 'pg_proc')") == (
        "created by chatdb revision 049 (absent before); its downgrade removes it"
    )
    with postgrest_request(db.conn, "service_role") as conn:
        assert conn.execute("SELECT auth.role()").fetchone() == ("service_role",)
    migrate(db.url, "014", down=True, x=["allow_wider_access=true"])
    assert db.scalar("SELECT to_regprocedure('auth.role()')") is None


def test_000_provides_auth_role_on_plain_postgresql(empty_db):
    """Pins the SQL history: revision 000 (what Supabase provides, on plain PostgreSQL)."""
    migrate(empty_db.url, "000")
    assert empty_db.scalar("SELECT obj_description('auth.role()'::regprocedure, 'pg_proc')") == (
        "created by chatdb revision 000 (absent before); its downgrade removes it"
    )
    for legacy in (False, True):
        with postgrest_request(empty_db.conn, "anon", legacy=legacy) as conn:
            assert conn.execute("SELECT auth.role()").fetchone() == ("anon",)
    migrate(empty_db.url, "base", down=True)
    assert empty_db.scalar("SELECT to_regnamespace('auth')") is None


# --------------------------------------------------------------------------- downgrades


def test_049_downgrade_widens_access_so_it_needs_the_option(supabase_at_008_db):
    """Pins the SQL history: back to 014, 004's public policies return; the access guard
    refuses that unless -x allow_wider_access=true, then 004's policies are as at 008."""
    db = supabase_at_008_db
    at_008 = catalog.snapshot(db.conn)
    migrate(db.url, "049")
    with pytest.raises(CommandError) as refused:
        migrate(db.url, "014", down=True)
    assert "would widen what anon, authenticated or PUBLIC can do" in str(refused.value)
    assert db.scalar("SELECT version_num FROM alembic_version") == "049"
    migrate(db.url, "014", down=True, x=["allow_wider_access=true"])
    policies = {t: catalog.snapshot(db.conn)["tables"][t]["policies"] for t in catalog.TABLES}
    assert policies == {t: at_008["tables"][t]["policies"] for t in catalog.TABLES}


@pytest.mark.parametrize(
    ("revision", "table", "column"),
    [("009", "chat_messages", "message_text"), ("014", "chat_conversations", "website_name")],
)
def test_a_downgrade_that_drops_values_needs_the_option(at_008_db, revision, table, column):
    """Pins the SQL history: 009's and 014's downgrades drop their column; its values are
    counted first (chatdb.deploy.data_loss)."""
    db = at_008_db
    seed(db)
    migrate(db.url, revision)
    db.conn.execute(f"UPDATE {table} SET {column} = 'kept'")
    below = {"009": "008", "014": "013"}[revision]
    with pytest.raises(CommandError) as refused:
        migrate(db.url, below, down=True)
    assert f"column {table}.{column}" in str(refused.value)
    assert db.scalar("SELECT version_num FROM alembic_version") == revision
    # (and what the backend's calls send, which the calls guard refuses to take unless told)
    migrate(db.url, below, down=True, x=["allow_data_loss=true", "allow_breaking_calls=true"])
    assert not db.scalar(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
        (table, column),
    )


@pytest.mark.parametrize("revision", ["012", "013"])
def test_index_only_downgrades_keep_004s_columns_and_values(at_008_db, revision):
    """Pins the SQL history: 012 and 013 add indexes to 004's columns; their downgrades
    drop the indexes only."""
    db = at_008_db
    seed(db)
    below = {"012": "009", "013": "012"}[revision]
    migrate(db.url, below)
    before = state(db)
    migrate(db.url, revision)
    migrate(db.url, below, down=True)
    after = state(db)
    if revision == "012":  # its backfill is not undone: 'text' is 004's default anyway
        for rows in (before, after):
            for row in rows["rows"]["chat_messages"]:
                row["message_type"] = row["message_type"] or "text"
    assert after == before


# --------------------------------------------------------------------------- c002


def insert_conversation(db, **values) -> str:
    (row,) = rest_insert(db.conn, "chat_conversations", {"website_id": str(WEBSITE), **values})
    return row["customer_id"]


def test_c002_gives_a_conversation_without_customer_id_008s_value(head_db):
    head_db.conn.execute("INSERT INTO websites (id) VALUES (%s)", (WEBSITE,))
    new = str(uuid.uuid4())
    assert insert_conversation(head_db, customer_phone="0177777777") == "customer_0177777777"
    assert insert_conversation(head_db, customer_phone="") == "customer_"  # as 008 did
    assert insert_conversation(head_db, id=new) == f"customer_unknown_{new}"
    assert insert_conversation(head_db, customer_id=None, id=str(uuid.uuid4())).startswith(
        "customer_unknown_"
    )
    assert insert_conversation(head_db, customer_id="kept", customer_phone="1") == "kept"
    with pytest.raises(psycopg.errors.NotNullViolation):  # still NOT NULL
        head_db.conn.execute("UPDATE chat_conversations SET customer_id = NULL")


def test_c002_gives_008s_value_to_what_008_backfilled(at_008_db):
    """The trigger's value for a new row is 008's backfill for an old row without one.
    Pins the SQL history: the hand-run 008 at 008, then c002."""
    db = at_008_db
    db.conn.execute("INSERT INTO websites (id) VALUES (%s)", (WEBSITE,))
    db.conn.execute("ALTER TABLE chat_conversations ALTER COLUMN customer_id DROP NOT NULL")
    phones = {str(uuid.uuid4()): phone for phone in ("0123", "", None)}
    for id_, phone in phones.items():
        db.conn.execute(
            "INSERT INTO chat_conversations (id, website_id, customer_phone) VALUES (%s, %s, %s)",
            (id_, WEBSITE, phone),
        )
    run_sql_file(db.url, "original_008_fix_customer_id.sql")
    backfilled = dict(db.rows("SELECT id::text, customer_id FROM chat_conversations"))
    db.conn.execute("DELETE FROM chat_conversations")
    migrate(db.url, "c002")
    for id_, phone in phones.items():
        db.conn.execute(
            "INSERT INTO chat_conversations (id, website_id, customer_phone) VALUES (%s, %s, %s)",
            (id_, WEBSITE, phone),
        )
    assert dict(db.rows("SELECT id::text, customer_id FROM chat_conversations")) == backfilled


def test_c002_needs_no_privilege_of_its_own(supabase_head_db):
    """The trigger runs as the caller and only sets the new row: the backend (its
    service-role key, the delivery path's caller) creates a conversation without
    customer_id, and gets 008's value."""
    db = supabase_head_db
    owner = CALLERS["owner"][1]
    db.conn.execute("INSERT INTO websites (id, user_id) VALUES (%s, %s)", (WEBSITE, owner))
    with postgrest_request(db.conn, *CALLERS["service_role"]) as conn:
        (value,) = conn.execute(
            "INSERT INTO chat_conversations (website_id, customer_phone) VALUES (%s, '0199') "
            "RETURNING customer_id",
            (WEBSITE,),
        ).fetchone()
    assert value == "customer_0199"


def test_c002_downgrade_removes_its_trigger_and_function(head_db):
    """Pins the SQL history: c002's downgrade, to 049 (through c003's, which widens access
    again, and c004's; without c002 the delivery path's insert fails again: each needs
    its option)."""
    migrate(head_db.url, "049", down=True,
            x=["allow_wider_access=true", "allow_breaking_calls=true"])  # fmt: skip
    assert (
        head_db.scalar(
            "SELECT count(*) FROM pg_proc WHERE proname = 'set_chat_conversation_customer_id'"
        )
        == 0
    )
    assert (
        head_db.scalar(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'set_chat_conversation_customer_id_trigger'"
        )
        == 0
    )
