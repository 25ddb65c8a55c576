"""The chat system: conversations, messages, participants, their RLS, grants and triggers.

Revision ID: 004
Revises: c001
Create Date: 2026-11-25

Why: replicates the hand-run ``004_chat_system.sql`` (kept as
``tests/sql/original_004_chat_system.sql``) exactly, objects and names included, weak
policies as they ran in production (hardening is a later revision).

Behaviour on a database where the hand-run SQL already ran (adoption): it succeeds
and changes nothing. Tables and indexes use IF NOT EXISTS, policies are replaced
by name, the trigger function and triggers are CREATE OR REPLACE (PostgreSQL 14+),
grants are idempotent, and a table joins the publication only when it is not yet a
member (the original added them unconditionally, which fails on a re-run).
On a drifted chat_conversations without customer_id (an older script made it), the
customer_id index waits for 008, which adds the column and then the index.

Before changing anything it checks every prerequisite (see revision 000) and refuses
with one message listing all that is missing.

On a large existing chat table (the adoption of a table an older script made) its
indexes are built CONCURRENTLY before the run's transaction, like every index of
every revision (op.create_index, chatdb.deploy.online).

An existing chat table of another shape (the older script's, FIX A's rebuild) meets
this revision already converged to its columns, defaults, foreign keys and index names
by revision c001, which runs just before it.

Downgrade removes what 004 created: the three tables (their indexes, policies,
triggers, grants and publication membership go with them) and the function
update_conversation_on_message(). It leaves the prerequisites, which belong to
others, alone. A run that would drop rows with them is refused, with the row counts,
unless ``-x allow_data_loss=true`` (chatdb.deploy.data_loss).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from chatdb.deploy import data_loss
from chatdb.revisions import policies, prerequisites

revision: str = "004"
down_revision: str | Sequence[str] | None = "c001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("chat_conversations", "chat_messages", "chat_participants")
OWNER_EXPR = "website_id IN (SELECT id FROM websites WHERE user_id = auth.uid())"

POLICIES = (
    # (table, name, command, USING, WITH CHECK)
    ("chat_conversations", "Service role full access to conversations", "ALL", "true", "true"),
    ("chat_conversations", "Owners can view own conversations", "SELECT", OWNER_EXPR, None),
    ("chat_conversations", "Owners can manage own conversations", "ALL", OWNER_EXPR, None),
    ("chat_conversations", "Anyone can create conversations", "INSERT", None, "true"),
    ("chat_conversations", "Customers can view own conversations", "SELECT", "true", None),
    ("chat_messages", "Service role full access to messages", "ALL", "true", "true"),
    ("chat_messages", "Anyone can view messages", "SELECT", "true", None),
    ("chat_messages", "Anyone can insert messages", "INSERT", None, "true"),
    ("chat_messages", "Anyone can update messages", "UPDATE", "true", None),
    ("chat_participants", "Service role full access to participants", "ALL", "true", "true"),
    ("chat_participants", "Anyone can view participants", "SELECT", "true", None),
    ("chat_participants", "Anyone can manage participants", "ALL", "true", "true"),
)

INDEXES = (
    ("idx_chat_conversations_order", "chat_conversations", ["order_id"]),
    ("idx_chat_conversations_website", "chat_conversations", ["website_id"]),
    ("idx_chat_conversations_status", "chat_conversations", ["status"]),
    ("idx_chat_conversations_updated", "chat_conversations", [sa.text("updated_at DESC")]),
    ("idx_chat_messages_conversation", "chat_messages", ["conversation_id"]),
    ("idx_chat_messages_created", "chat_messages", [sa.text("created_at DESC")]),
    ("idx_chat_messages_sender", "chat_messages", ["sender_type", "sender_id"]),
    ("idx_chat_participants_conversation", "chat_participants", ["conversation_id"]),
    ("idx_chat_participants_user", "chat_participants", ["user_type", "user_id"]),
)


def upgrade() -> None:
    if not context.is_offline_mode() and not prerequisites.collecting():
        prerequisites.require(prerequisites.missing(op.get_bind()))
    create_tables()
    create_indexes()
    for table in TABLES:
        op.execute(access_sql(table))
    create_message_trigger()
    op.execute(
        "CREATE OR REPLACE TRIGGER update_chat_conversations_updated_at "
        "BEFORE UPDATE ON public.chat_conversations "
        "FOR EACH ROW EXECUTE FUNCTION update_updated_at_column()"
    )
    for table in TABLES:
        add_to_realtime_publication(table)


def downgrade() -> None:
    data_loss.before_dropping_tables(op.get_context(), TABLES)
    op.execute("DROP TABLE IF EXISTS public.chat_participants")
    op.execute("DROP TABLE IF EXISTS public.chat_messages")
    op.execute("DROP TABLE IF EXISTS public.chat_conversations")
    op.execute("DROP FUNCTION IF EXISTS public.update_conversation_on_message()")


# Steps of the upgrade, in the order it runs them.


def create_tables() -> None:
    op.execute("""
        CREATE TABLE IF NOT EXISTS public.chat_conversations (
          id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
          order_id uuid REFERENCES public.delivery_orders(id) ON DELETE SET NULL,
          website_id uuid NOT NULL REFERENCES public.websites(id) ON DELETE CASCADE,
          customer_id text NOT NULL,
          customer_name text,
          customer_phone text,
          status text DEFAULT 'active',
          -- squawk-ignore prefer-bigint-over-int -- the spec's type, as production has it
          unread_owner integer DEFAULT 0,
          -- squawk-ignore prefer-bigint-over-int -- the spec's type, as production has it
          unread_customer integer DEFAULT 0,
          -- squawk-ignore prefer-bigint-over-int -- the spec's type, as production has it
          unread_rider integer DEFAULT 0,
          created_at timestamptz DEFAULT now(),
          updated_at timestamptz DEFAULT now()
        )""")
    op.execute("""
        CREATE TABLE IF NOT EXISTS public.chat_messages (
          id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
          conversation_id uuid NOT NULL
            REFERENCES public.chat_conversations(id) ON DELETE CASCADE,
          sender_type text NOT NULL,
          sender_id text,
          sender_name text,
          message_type text DEFAULT 'text',
          content text,
          media_url text,
          metadata jsonb,
          is_read boolean DEFAULT false,
          read_at timestamptz,
          read_by jsonb DEFAULT '[]'::jsonb,
          created_at timestamptz DEFAULT now()
        )""")
    op.execute("""
        CREATE TABLE IF NOT EXISTS public.chat_participants (
          id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
          conversation_id uuid NOT NULL
            REFERENCES public.chat_conversations(id) ON DELETE CASCADE,
          user_type text NOT NULL,
          user_id text,
          user_name text,
          is_online boolean DEFAULT false,
          last_seen timestamptz,
          created_at timestamptz DEFAULT now(),
          UNIQUE (conversation_id, user_type, user_id)
        )""")


def create_indexes() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, schema="public", if_not_exists=True)
    # A drifted table without customer_id gets this index from 008.
    if not context.is_offline_mode():
        if prerequisites.has_column(op.get_bind(), "chat_conversations", "customer_id"):
            op.create_index(
                "idx_chat_conversations_customer",
                "chat_conversations",
                ["customer_id"],
                schema="public",
                if_not_exists=True,
            )
        return
    op.execute("""
        DO $$
        BEGIN
          IF EXISTS (SELECT 1 FROM information_schema.columns
                     WHERE table_schema = 'public' AND table_name = 'chat_conversations'
                       AND column_name = 'customer_id') THEN
            CREATE INDEX IF NOT EXISTS idx_chat_conversations_customer
              ON public.chat_conversations (customer_id);
          END IF;
        END $$""")


def access_sql(table: str) -> str:
    """The table's row level security, its policies (replaced by name: PostgreSQL has no
    CREATE OR REPLACE POLICY) and 004's GRANTs, as one batch of statements: one round
    trip, where every statement of the run's transaction holds the run's locks a little
    longer on a live table."""
    statements = [f"ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY"]
    for policy_table, *policy in POLICIES:
        if policy_table == table:
            statements += policies.replace_sql(table, *policy)
    statements += [
        f"GRANT ALL ON public.{table} TO service_role",
        f"GRANT ALL ON public.{table} TO authenticated",
        f"GRANT SELECT, INSERT, UPDATE ON public.{table} TO anon",
    ]
    return ";\n".join(statements)


def create_message_trigger() -> None:
    # The function body is the hand-run SQL's, character for character, so adopting a
    # database where it ran leaves pg_proc.prosrc unchanged.
    op.execute("""CREATE OR REPLACE FUNCTION public.update_conversation_on_message()
RETURNS TRIGGER AS $$
BEGIN
    UPDATE chat_conversations
    SET updated_at = NOW()
    WHERE id = NEW.conversation_id;

    IF NEW.sender_type = 'customer' THEN
        UPDATE chat_conversations
        SET unread_owner = unread_owner + 1,
            unread_rider = unread_rider + 1
        WHERE id = NEW.conversation_id;
    ELSIF NEW.sender_type = 'owner' THEN
        UPDATE chat_conversations
        SET unread_customer = unread_customer + 1,
            unread_rider = unread_rider + 1
        WHERE id = NEW.conversation_id;
    ELSIF NEW.sender_type = 'rider' THEN
        UPDATE chat_conversations
        SET unread_customer = unread_customer + 1,
            unread_owner = unread_owner + 1
        WHERE id = NEW.conversation_id;
    END IF;

    RETURN NEW;
END;
$$ LANGUAGE plpgsql""")
    op.execute(
        "CREATE OR REPLACE TRIGGER update_conversation_on_message_trigger "
        "AFTER INSERT ON public.chat_messages "
        "FOR EACH ROW EXECUTE FUNCTION update_conversation_on_message()"
    )


def add_to_realtime_publication(table: str) -> None:
    op.execute(f"""
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_publication_tables
                         WHERE pubname = 'supabase_realtime'
                           AND schemaname = 'public' AND tablename = '{table}') THEN
            ALTER PUBLICATION supabase_realtime ADD TABLE public.{table};
          END IF;
        END $$""")
