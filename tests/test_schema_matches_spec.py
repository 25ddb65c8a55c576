"""Issue 2 (a-c): after `alembic upgrade 008` the live catalog is the spec of 004 and 008
(docs/spec/chat-schema.md), item by item; adopting a database where the hand-run 004 ran
changes nothing. These tests pin the SQL history: they check the database at 008, not at
head (what head builds is checked against the models: tests/test_migration_properties.py,
tests/test_autogenerate.py, tests/test_drift.py)."""

from tests import catalog
from tests.pg import migrate


def test_008_on_plain_postgresql_matches_spec(at_008_db):
    """Pins the SQL history: 000, 004 and 008 build chat-schema.md on plain PostgreSQL."""
    assert catalog.spec_differences(catalog.snapshot(at_008_db.conn)) == []


def test_008_on_supabase_like_database_matches_spec(supabase_at_008_db):
    """Pins the SQL history: 000, 004 and 008 build chat-schema.md on a Supabase-like db."""
    assert catalog.spec_differences(catalog.snapshot(supabase_at_008_db.conn)) == []


def test_prerequisites_revision_is_a_no_op_on_supabase(supabase_db):
    before = supabase_prerequisites(supabase_db)
    migrate(supabase_db.url, "000")
    assert supabase_prerequisites(supabase_db) == before


def test_adopting_hand_run_004_succeeds_and_changes_nothing(hand_run_db):
    """Pins the SQL history: 004 and 008 adopt the hand-run 004 without a change."""
    before = catalog.snapshot(hand_run_db.conn)
    function_before = function_source(hand_run_db)
    migrate(hand_run_db.url, "008")
    assert catalog.snapshot(hand_run_db.conn) == before
    assert function_source(hand_run_db) == function_before
    assert hand_run_db.scalar("SELECT version_num FROM alembic_version") == "008"


def test_adoption_keeps_rows(hand_run_db):
    website = hand_run_db.scalar("INSERT INTO websites DEFAULT VALUES RETURNING id")
    hand_run_db.conn.execute(
        "INSERT INTO chat_conversations (website_id, customer_id) VALUES (%s, 'customer_1')",
        (website,),
    )
    migrate(hand_run_db.url, "head")
    assert hand_run_db.rows("SELECT customer_id FROM chat_conversations") == [("customer_1",)]


def supabase_prerequisites(db) -> list[tuple]:
    """Everything revision 000 could touch, as rows to compare before and after."""
    return db.rows(
        """
        SELECT 'role', rolname || ':' || rolbypassrls::text || ':' || rolinherit::text
          FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role')
        UNION ALL SELECT 'proc', p.oid::regprocedure::text || ':' || md5(p.prosrc)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname IN ('auth', 'public')
            AND p.proname IN ('uid', 'role', 'update_updated_at_column')
        UNION ALL SELECT 'ext', extname || ':' || extnamespace::regnamespace::text FROM pg_extension
        UNION ALL SELECT 'pub', pubname FROM pg_publication
        UNION ALL SELECT 'defacl', defaclrole::regrole::text || ':' || defaclobjtype::text
                               || ':' || defaclacl::text FROM pg_default_acl
        UNION ALL SELECT 'table', relname FROM pg_class
          WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
            AND relname <> 'alembic_version'
        UNION ALL SELECT 'comment', coalesce(obj_description('public.websites'::regclass), '')
        ORDER BY 1, 2
        """
    )


def function_source(db) -> str:
    return db.scalar("SELECT prosrc FROM pg_proc WHERE proname = 'update_conversation_on_message'")
