"""Issue 2 (h): downgrade to base and back up; base leaves no chat object behind."""

from tests import catalog
from tests.pg import migrate

CHAT_OBJECTS = """
SELECT c.relname FROM pg_class c WHERE c.relname LIKE '%chat%'
UNION ALL SELECT p.proname FROM pg_proc p
  WHERE p.proname IN ('update_conversation_on_message', 'set_chat_conversation_customer_id')
UNION ALL SELECT pol.polname FROM pg_policy pol
UNION ALL SELECT t.tgname FROM pg_trigger t WHERE NOT t.tgisinternal
UNION ALL SELECT tablename FROM pg_publication_tables
"""

# Down to base (or 000) the backend's calls lose their tables: the calls guard refuses
# that unless told (chatdb.deploy.calls_guard).
TAKES_THE_CALLS_AWAY = "allow_breaking_calls=true"


def test_base_leaves_no_chat_object_and_head_comes_back(head_db):
    before = catalog.snapshot(head_db.conn)
    migrate(head_db.url, "base", down=True, x=[TAKES_THE_CALLS_AWAY])
    assert head_db.rows(CHAT_OBJECTS) == []
    assert head_db.rows("SELECT version_num FROM alembic_version") == []
    migrate(head_db.url, "head")
    assert catalog.snapshot(head_db.conn) == before


def test_base_on_plain_postgresql_removes_what_000_created(head_db):
    migrate(head_db.url, "base", down=True, x=[TAKES_THE_CALLS_AWAY])
    assert (
        head_db.scalar(
            "SELECT count(*) FROM pg_class WHERE relname IN ('websites', 'delivery_orders')"
        )
        == 0
    )
    assert head_db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'auth'") == 0
    assert head_db.scalar("SELECT count(*) FROM pg_publication") == 0
    assert head_db.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'uuid-ossp'") == 0
    assert head_db.scalar("SELECT count(*) FROM pg_default_acl") == 0


def test_base_on_supabase_keeps_what_others_own(supabase_head_db):
    db = supabase_head_db
    db.conn.execute("INSERT INTO websites DEFAULT VALUES")
    migrate(db.url, "base", down=True, x=[TAKES_THE_CALLS_AWAY])
    assert db.rows(CHAT_OBJECTS) == []
    assert db.scalar("SELECT count(*) FROM websites") == 1
    assert db.scalar("SELECT to_regprocedure('auth.uid()')::text") == "auth.uid()"
    assert db.scalar("SELECT to_regprocedure('auth.role()')::text") == "auth.role()"
    assert db.scalar("SELECT to_regprocedure('update_updated_at_column()')::text") is not None
    assert db.scalar("SELECT count(*) FROM pg_publication WHERE pubname = 'supabase_realtime'") == 1
    assert db.scalar("SELECT count(*) FROM pg_roles WHERE rolname = 'service_role'") == 1


def test_004_downgrade_keeps_the_prerequisites(head_db):
    migrate(head_db.url, "000", down=True, x=[TAKES_THE_CALLS_AWAY])
    assert head_db.scalar("SELECT to_regclass('chat_conversations')::text") is None
    assert head_db.scalar("SELECT to_regclass('websites')::text") == "websites"
    assert head_db.scalar("SELECT to_regprocedure('update_updated_at_column()')::text") is not None
