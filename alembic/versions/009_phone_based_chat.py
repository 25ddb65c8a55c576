"""Phone-based chat: chat_messages.message_text, and the phone indexes (009_phone_based_chat.sql).

Revision ID: 009
Revises: 008
Create Date: 2026-11-26

What: the chat effects of the hand-run ``009_phone_based_chat.sql``:
1. chat_messages.message_text text NOT NULL DEFAULT '': added where it is missing, its
   NULLs filled with the file's backfill, COALESCE(NULLIF(message, ''),
   NULLIF(content, ''), ''), then DEFAULT '' and NOT NULL;
2. indexes idx_chat_conversations_phone (customer_phone) and
   idx_chat_conversations_website_phone (website_id, customer_phone).

Why: the backend writes every message with message_text (chat.py:711-728 and every
system message; docs/spec/after-008.md, section 1). Without the column PostgREST
answers PGRST204 and no message is stored. It reads conversations by website and
phone (chat.py:1270-1275), which the two indexes serve.

Adapted: the file's backfill names ``message``, a column only the older script's
tables have; on 004's tables the UPDATE fails (42703) and aborts the whole file. Here
the backfill uses the terms whose columns exist (``message``, ``content``), read from
the catalog (chatdb.revisions.prerequisites.has_column; no pending revision adds or
drops either, so pass 1 reads the same answer). ``--sql`` scripts, written without a
database, use the form for 004's tables, COALESCE(NULLIF(content, ''), ''). The file
backfills only when it adds the column; here NULLs are filled wherever they are, which
changes nothing where the column came with NOT NULL.

Not replicated: its ``GRANT SELECT, INSERT, UPDATE ... TO anon`` on the three tables.
Supabase's default privileges (and revision 000 on plain PostgreSQL) already give anon
ALL on them, so the grant could only widen a database whose grants were narrowed,
which this project never does unasked. Its verification SELECT and NOTICEs change
nothing.

On a database where the hand-run 009 ran (as it had to be run on 004's tables, without
``message``): the column exists, NOT NULL with its default, no NULL to fill, the
indexes exist: nothing changes. On a large table the column, its backfill, the NOT
NULL check and the indexes go online (chatdb.deploy.online).

Downgrade removes what it adds: the two indexes and the column. The column's values
are counted first (op.drop_column, chatdb.deploy.data_loss): a table with messages
refuses the downgrade unless ``-x allow_data_loss=true``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from chatdb.revisions import prerequisites

revision: str = "009"
down_revision: str | Sequence[str] | None = "008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGES = "chat_messages"
CONVERSATIONS = "chat_conversations"
# The file's priority: message > content > empty string; a term only where its column is.
SOURCES = ("message", "content")
INDEXES = (
    ("idx_chat_conversations_phone", ["customer_phone"]),
    ("idx_chat_conversations_website_phone", ["website_id", "customer_phone"]),
)


def upgrade() -> None:
    op.add_column(
        MESSAGES, sa.Column("message_text", sa.Text()), schema="public", if_not_exists=True
    )
    op.backfill(MESSAGES, "message_text", backfill())
    op.alter_column(MESSAGES, "message_text", server_default=sa.text("''"), schema="public")
    op.alter_column(MESSAGES, "message_text", nullable=False, schema="public")
    for name, columns in INDEXES:
        op.create_index(name, CONVERSATIONS, columns, schema="public", if_not_exists=True)


def downgrade() -> None:
    for name, _ in reversed(INDEXES):
        op.drop_index(name, table_name=CONVERSATIONS, schema="public", if_exists=True)
    op.drop_column(MESSAGES, "message_text", schema="public")


def backfill() -> str:
    """COALESCE(NULLIF(message, ''), NULLIF(content, ''), '') without the terms whose
    column the table lacks (``--sql``: 004's table, which has content only)."""
    if context.is_offline_mode():
        present = ["content"]
    else:
        bind = op.get_bind()
        present = [c for c in SOURCES if prerequisites.has_column(bind, MESSAGES, c)]
    return "COALESCE(" + "".join(f"NULLIF({c}, ''), " for c in present) + "'')"
