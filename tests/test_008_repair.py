"""Issue 2 (d): 008 repairs drifted chat_conversations holding rows, with the exact formula.

These tests pin the SQL history: each runs the revisions up to 008 (``alembic upgrade
008``) and checks what 008 must leave, not what head has.
"""

import pytest

from tests import catalog
from tests.pg import BREAKS_THE_DELIVERY_INSERT, alembic_cli, migrate

PHONE_ROW = "00000000-0000-0000-0000-00000000000a"
NO_PHONE_ROW = "00000000-0000-0000-0000-00000000000b"
SET_ROW = "00000000-0000-0000-0000-00000000000c"


def insert_rows(db, *, with_phone_column=True, with_customer_id=True):
    website = db.scalar("INSERT INTO websites DEFAULT VALUES RETURNING id")
    rows = [
        (PHONE_ROW, "0123456789", None),
        (NO_PHONE_ROW, None, None),
        (SET_ROW, "555", "kept_id"),
    ]
    for row_id, phone, customer_id in rows:
        columns, values = ["id", "website_id"], [row_id, website]
        if with_phone_column:
            columns.append("customer_phone")
            values.append(phone)
        if with_customer_id:
            columns.append("customer_id")
            values.append(customer_id)
        db.conn.execute(
            f"INSERT INTO chat_conversations ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(values))})",
            values,
        )


def customer_ids(db) -> dict[str, str]:
    return {str(r[0]): r[1] for r in db.rows("SELECT id, customer_id FROM chat_conversations")}


def assert_repaired(db):
    assert (
        db.scalar(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'chat_conversations'::regclass "
            "AND attname = 'customer_id'"
        )
        is True
    )
    assert (
        db.scalar("SELECT pg_get_indexdef('idx_chat_conversations_customer'::regclass)")
        == "CREATE INDEX idx_chat_conversations_customer ON public.chat_conversations "
        "USING btree (customer_id)"
    )


def test_column_missing(db_at_004):
    """Pins the SQL history: 008 adds, fills and indexes a missing customer_id."""
    db_at_004.conn.execute("ALTER TABLE chat_conversations DROP COLUMN customer_id")
    insert_rows(db_at_004, with_customer_id=False)
    migrate(db_at_004.url, "008", x=[BREAKS_THE_DELIVERY_INSERT])
    assert customer_ids(db_at_004) == {
        PHONE_ROW: "customer_0123456789",
        NO_PHONE_ROW: f"customer_unknown_{NO_PHONE_ROW}",
        SET_ROW: "customer_555",
    }
    assert_repaired(db_at_004)


def test_column_nullable_with_null_rows(db_at_004):
    """Pins the SQL history: 008 fills the NULLs of a nullable customer_id."""
    db_at_004.conn.execute("ALTER TABLE chat_conversations ALTER COLUMN customer_id DROP NOT NULL")
    insert_rows(db_at_004)
    migrate(db_at_004.url, "008", x=[BREAKS_THE_DELIVERY_INSERT])
    assert customer_ids(db_at_004) == {
        PHONE_ROW: "customer_0123456789",
        NO_PHONE_ROW: f"customer_unknown_{NO_PHONE_ROW}",
        SET_ROW: "kept_id",
    }
    assert_repaired(db_at_004)


def test_table_without_customer_phone(db_at_004):
    """Pins the SQL history: 008's formula without the phone term. (Beyond 008 such a
    table stops: 009 indexes customer_phone, which the backend sends on every create.)"""
    db_at_004.conn.execute(
        "ALTER TABLE chat_conversations DROP COLUMN customer_phone, DROP COLUMN customer_id"
    )
    insert_rows(db_at_004, with_phone_column=False, with_customer_id=False)
    migrate(db_at_004.url, "008", x=[BREAKS_THE_DELIVERY_INSERT])
    assert customer_ids(db_at_004) == {
        row: f"customer_unknown_{row}" for row in (PHONE_ROW, NO_PHONE_ROW, SET_ROW)
    }
    assert_repaired(db_at_004)


def test_older_script_table_is_adopted_and_repaired_in_one_run(empty_db):
    """The production story: chat_conversations made by an older script, then 000+004+008.
    Pins the SQL history: the run stops at 008."""
    empty_db.conn.execute(
        """
        CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
        CREATE TABLE websites (id uuid PRIMARY KEY, user_id uuid);
        CREATE TABLE chat_conversations (
          id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), order_id uuid,
          website_id uuid NOT NULL, customer_name text, customer_phone text,
          status text DEFAULT 'active', unread_owner integer DEFAULT 0,
          unread_customer integer DEFAULT 0, unread_rider integer DEFAULT 0,
          created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
        """
    )
    # Its website exists (revision c001 adds the foreign key, and refuses orphans).
    empty_db.conn.execute("INSERT INTO websites (id) VALUES (%s)", (NO_PHONE_ROW,))
    empty_db.conn.execute(
        "INSERT INTO chat_conversations (id, website_id, customer_phone) VALUES (%s, %s, '77')",
        (PHONE_ROW, NO_PHONE_ROW),
    )
    # The old table was made before revision 000's default privileges: the API roles
    # hold nothing on it, and 004's GRANTs widen that, which the operator must accept.
    migrate(empty_db.url, "008", x=["allow_wider_access=true"])
    assert customer_ids(empty_db) == {PHONE_ROW: "customer_77"}
    assert_repaired(empty_db)


def test_backfill_error_fails_the_run_and_leaves_the_table_as_it_was(db_at_004):
    """The hand-run 008 turned this into a NOTICE and left customer_id nullable. Pins the
    SQL history: the failure names the step 004 -> 008."""
    db_at_004.conn.execute("ALTER TABLE chat_conversations ALTER COLUMN customer_id DROP NOT NULL")
    insert_rows(db_at_004)
    db_at_004.conn.execute(
        """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
          AS $$ BEGIN RAISE EXCEPTION 'backfill refused by test'; END $$;
        CREATE TRIGGER refuse BEFORE UPDATE ON chat_conversations
          FOR EACH ROW EXECUTE FUNCTION refuse();
        """
    )
    before = customer_ids(db_at_004)
    result = alembic_cli("upgrade", "008", url=db_at_004.url)
    assert result.returncode != 0
    failure = result.stdout.strip().splitlines()[-1]
    assert failure.startswith("FAILED: ") and "backfill refused by test" in failure
    assert "004 -> 008" in failure
    assert customer_ids(db_at_004) == before
    assert db_at_004.scalar("SELECT version_num FROM alembic_version") == "004"


@pytest.mark.parametrize("fixture", ["at_008_db", "supabase_at_008_db"])
def test_rerun_of_008_changes_nothing(fixture, request):
    """Pins the SQL history: 008's downgrade and upgrade, at 008."""
    db = request.getfixturevalue(fixture)
    before = catalog.snapshot(db.conn)
    migrate(db.url, "004", down=True)  # 008's downgrade is a no-op ...
    assert catalog.snapshot(db.conn) == before
    migrate(db.url, "008")  # ... and re-applying it finds everything in place
    assert catalog.snapshot(db.conn) == before
