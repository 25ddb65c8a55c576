"""Issue 3 (6): with some of 004's prerequisites but not all, one message lists every
missing one and nothing changes (revision 000 refuses first; 004 checks again itself)."""

from tests.deploying import dump
from tests.pg import alembic_cli, migrate
from tests.test_bad_input import failure_line

USER_ID = (
    "column websites.user_id uuid (its table exists without it, so revision 000 cannot add it)"
)
AUTH_UID = "function auth.uid() returning uuid"


def refused(db) -> str:
    before = dump(db.url)
    line = failure_line(alembic_cli("upgrade", "head", url=db.url))
    assert dump(db.url) == before
    return line


def test_supabase_like_database_without_user_id_and_auth_uid(supabase_db):
    supabase_db.conn.execute("ALTER TABLE websites DROP COLUMN user_id; DROP FUNCTION auth.uid()")
    assert refused(supabase_db) == (
        "FAILED: Migration 004 needs what an earlier migration (or Supabase) provides, and "
        f"this database lacks 2 of it: {AUTH_UID}; {USER_ID}. Nothing was changed: add what "
        "the existing tables lack (revision 000 creates the rest), and re-run."
    )


def test_plain_database_with_a_websites_table_lacking_user_id(empty_db):
    """000 would create auth.uid(), delivery_orders and the rest, but cannot repair websites:
    every missing item is listed once, an absent table without its columns."""
    empty_db.conn.execute("CREATE TABLE websites (id uuid PRIMARY KEY)")
    line = refused(empty_db)
    listed = line.split(" of it: ", 1)[1].split(". Nothing was changed")[0].split("; ")
    assert USER_ID in listed
    assert AUTH_UID in listed
    assert "table delivery_orders" in listed
    assert [name for name in listed if "delivery_orders." in name] == []


def test_004_checks_again_before_changing_anything(empty_db):
    """Prerequisites removed after 000 ran: 004 itself refuses, listing both."""
    migrate(empty_db.url, "000")
    empty_db.conn.execute("ALTER TABLE websites DROP COLUMN user_id; DROP FUNCTION auth.uid()")
    assert refused(empty_db) == (
        "FAILED: Migration 004 needs what an earlier migration (or Supabase) provides, and "
        "this database lacks 2 of it: function auth.uid() returning uuid; column websites.user_id "
        "uuid. Nothing was changed: create them (revision 000 does on plain PostgreSQL; "
        "Supabase provides them), and re-run."
    )
    assert empty_db.rows("SELECT version_num FROM alembic_version") == [("000",)]
