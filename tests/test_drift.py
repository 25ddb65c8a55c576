"""``chatdb drift`` (issue 5, item 5): how a live database differs from the code, in words.

Run through the real ``chatdb`` command. The production-like database is built here
with SQL, as the issue describes production: chat_conversations made by an older
script, chat_messages with an extra NOT NULL column, no chat_participants.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chatdb.local.server import free_port
from tests import catalog
from tests.convergence import chatdb_run, drift_sections
from tests.pg import ROOT

CHATDB = str(Path(sys.executable).with_name("chatdb"))

# The chat tables as an older script made them, on a database prepared like Supabase
# (roles, auth.uid(), default privileges, publication, websites, delivery_orders).
PRODUCTION_SQL = """
CREATE TABLE public.chat_conversations (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  website_id text NOT NULL,
  order_id text,
  customer_id text,
  customer_name text NOT NULL,
  customer_phone text NOT NULL,
  status text NOT NULL DEFAULT 'active',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);
CREATE TABLE public.chat_messages (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  conversation_id uuid NOT NULL REFERENCES public.chat_conversations (id) ON DELETE CASCADE,
  sender_type text NOT NULL,
  sender_id text,
  sender_name text,
  message_type text DEFAULT 'text',
  message text NOT NULL,
  content text,
  media_url text,
  metadata jsonb,
  is_read boolean DEFAULT false,
  read_at timestamptz,
  read_by jsonb DEFAULT '[]'::jsonb,
  created_at timestamptz DEFAULT now()
);
"""


def drift(url: str | None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return chatdb_run("drift", url=url, cwd=cwd, timeout=120)


@pytest.fixture
def production_db(supabase_db):
    supabase_db.conn.execute(PRODUCTION_SQL)
    return supabase_db


def test_production_drift_is_reported_table_by_table(production_db):
    result = drift(production_db.url)
    print(result.stdout)  # the report itself, for the record (pytest -s)
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    groups = drift_sections(result.stdout)
    assert list(groups) == ["chat_conversations", "chat_messages", "chat_participants", "functions"]
    conversations = groups["chat_conversations"]
    for sentence in (
        "column website_id is text, the code says uuid",
        "column order_id is text, the code says uuid",
        "column customer_name is NOT NULL, the code says nullable",
        "column customer_phone is NOT NULL, the code says nullable",
        "column customer_id is nullable, the code says NOT NULL",
        "column status is NOT NULL, the code says nullable",
        "column unread_owner is missing (the code says integer nullable, default 0)",
        "column unread_customer is missing (the code says integer nullable, default 0)",
        "column unread_rider is missing (the code says integer nullable, default 0)",
        "index idx_chat_conversations_customer on (customer_id) is missing",
        "column website_name is missing (the code says text nullable)",
        "index idx_chat_conversations_website_phone on (website_id, customer_phone) is missing",
        (
            "foreign key chat_conversations_website_id_fkey (website_id -> websites(id) "
            "ON DELETE CASCADE) is missing"
        ),
        "row level security is disabled, the code enables it",
        'policy "Service role manages chat_conversations" is missing',
        "trigger update_chat_conversations_updated_at is missing",
        "the table is not in publication supabase_realtime, the code says it is",
    ):
        assert sentence in conversations
    for sentence in (
        "column message (text NOT NULL) is in the database but not in the code",
        "column message_text is missing (the code says text NOT NULL, default ''::text)",
        (
            "index idx_chat_messages_metadata on (metadata) USING gin "
            "WHERE (metadata IS NOT NULL) is missing"
        ),
        'policy "Service role manages chat_messages" is missing',
    ):
        assert sentence in groups["chat_messages"]
    assert groups["chat_participants"] == [
        (
            "the table is missing, and with it what the code declares on it: 2 indexes, "
            "row level security, 1 policy, grants to 3 roles, publication membership"
        )
    ]
    assert groups["functions"] == [
        "function set_chat_conversation_customer_id() is missing",
        "function update_conversation_on_message() is missing",
    ]
    # The effective privileges (Supabase's default privileges: ALL) are what the code says.
    assert not [s for group in groups.values() for s in group if s.startswith("role ")]
    header = result.stdout.splitlines()[0]
    count = sum(len(group) for group in groups.values())
    assert header.endswith(f"differs from the models and the declared objects in {count} ways:")


@pytest.fixture(params=["head_db", "supabase_head_db"])
def any_head_db(request):
    return request.getfixturevalue(request.param)


def test_a_database_at_head_has_no_drift(any_head_db):
    result = drift(any_head_db.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("No drift: postgresql://")


def test_drifted_policies_indexes_grants_triggers_and_functions(head_db):
    head_db.conn.execute("""
        ALTER POLICY "Service role manages chat_messages" ON chat_messages USING (false);
        CREATE POLICY "Debug: read everything" ON chat_messages FOR SELECT TO anon USING (true);
        DROP INDEX idx_chat_messages_created;
        DROP INDEX idx_chat_messages_metadata;
        CREATE INDEX idx_chat_messages_metadata ON chat_messages USING gin (metadata);
        ALTER TABLE chat_messages ALTER COLUMN sender_id TYPE varchar(64);
        REVOKE DELETE, TRUNCATE ON chat_messages FROM anon;
        DROP TRIGGER update_chat_conversations_updated_at ON chat_conversations;
        ALTER TABLE chat_participants DISABLE ROW LEVEL SECURITY;
        ALTER PUBLICATION supabase_realtime DROP TABLE chat_participants;
        CREATE OR REPLACE FUNCTION update_conversation_on_message() RETURNS trigger
          LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
    """)
    result = drift(head_db.url)
    assert result.returncode == 1, result.stderr
    assert drift_sections(result.stdout) == {
        "chat_conversations": [
            "trigger update_chat_conversations_updated_at is missing",
        ],
        "chat_messages": [
            "column sender_id is varchar(64), the code says text",
            "index idx_chat_messages_created on (created_at DESC) is missing",
            (
                "index idx_chat_messages_metadata differs: it is on (metadata) USING gin in "
                "the database, the code says on (metadata) USING gin WHERE (metadata IS NOT NULL)"
            ),
            (
                'policy "Debug: read everything" is not in the code (an extra policy: '
                "FOR SELECT TO anon USING true)"
            ),
            (
                'policy "Service role manages chat_messages" differs: USING is false in the '
                "database, the code says (auth.role() = 'service_role'::text)"
            ),
            "role anon lacks DELETE, TRUNCATE (the code grants ALL)",
        ],
        "chat_participants": [
            "row level security is disabled, the code enables it",
            "the table is not in publication supabase_realtime, the code says it is",
        ],
        "functions": [
            "function update_conversation_on_message() differs: its body differs from the code",
        ],
    }


def test_drift_never_writes(production_db):
    """The report needs no write (it works where every transaction is read-only) and
    leaves the catalog as it was: not even Alembic's version table is created."""
    before = catalog.snapshot(production_db.conn)
    expected = drift(production_db.url).stdout
    dbname = production_db.conn.info.dbname
    production_db.conn.execute(f"ALTER DATABASE {dbname} SET default_transaction_read_only = on")
    try:
        result = drift(production_db.url)
    finally:
        production_db.conn.execute(f"ALTER DATABASE {dbname} RESET default_transaction_read_only")
    assert result.returncode == 1, result.stderr
    assert result.stdout == expected
    assert catalog.snapshot(production_db.conn) == before
    assert production_db.scalar("SELECT to_regclass('public.alembic_version')") is None


@pytest.mark.parametrize(
    "url, code, message",
    [
        (None, 2, "FAILED: DATABASE_URL is not set and no local cluster is recorded in .chatdb/"),
        ("mysql://user:secret@localhost/db", 2, "FAILED: DATABASE_URL is malformed"),
        (
            "postgresql://postgres:secret@127.0.0.1:{port}/postgres",
            3,
            "FAILED: Cannot connect to postgresql://postgres:***@127.0.0.1:",
        ),
    ],
)
def test_bad_input_is_one_sentence_and_the_code_of_its_kind(url, code, message, tmp_path):
    """Without DATABASE_URL, drift uses the local cluster of the project it runs in: here
    a folder with none (the repository may have one running)."""
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    result = drift(url.format(port=free_port()) if url else None, cwd=tmp_path)
    assert result.returncode == code
    assert result.stdout.startswith(message)
    assert len(result.stdout.strip().splitlines()) == 1
    assert "secret" not in result.stdout + result.stderr
