"""Add chat_conversations.website_name, as 014's FIX A rebuild gives it (014_diagnose_and_fix_chat_schema.sql).

Revision ID: 014
Revises: 013
Create Date: 2026-11-26

What: chat_conversations.website_name text (nullable, no default), added where it is
missing.

Why: the backend writes website_name with every conversation it creates from the widget
or for a delivery order (chat.py:414-428, delivery.py:329-339). Against 004+008 the
column does not exist, PostgREST answers PGRST204 and the conversation is not created
(docs/spec/after-008.md, section 1). The column exists in no runnable SQL file but the
rebuild that ``014_diagnose_and_fix_chat_schema.sql`` ships inside a comment ("FIX B"
drops the three tables, "FIX A" creates them again); production's tables were most
likely rebuilt that way (after-008.md, section 3).

What of 014 is not replicated, and why:
- the rebuild itself (FIX B's DROP TABLE, FIX A's CREATE TABLE): it throws every row
  away; here the tables 004 made are kept and only the column is added;
- FIX A's other differences from 004: gen_random_uuid() defaults, no sender_name and
  no read_by on chat_messages, no triggers, idx_chat_conversations_customer built on
  customer_phone (004's index of that name is on customer_id, which 008 repaired;
  009 indexes customer_phone as idx_chat_conversations_phone). 004's definitions stay;
- its policies "Allow all chat_conversations", "Allow all chat_messages" and "Allow
  all chat_participants" (FOR ALL USING (true) WITH CHECK (true), no TO clause):
  replicating them would open every row to anon from 014 until 049 drops them again;
  049 drops them where a database has them;
- GRANT ALL to the three API roles and the publication membership: 004's grants and
  Supabase's default privileges already give ALL, and the tables are members since 004;
- the diagnostics (PART 1, PART 4) and FIX C: they change nothing.

On a database where FIX A ran (website_name already there, with its values): nothing
changes. On a large table the column is added online (a catalog change).

Downgrade drops website_name. Its values are counted first (op.drop_column,
chatdb.deploy.data_loss): a downgrade that would lose website names is refused unless
``-x allow_data_loss=true``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "014"
down_revision: str | Sequence[str] | None = "013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONVERSATIONS = "chat_conversations"


def upgrade() -> None:
    op.add_column(
        CONVERSATIONS, sa.Column("website_name", sa.Text()), schema="public", if_not_exists=True
    )


def downgrade() -> None:
    op.drop_column(CONVERSATIONS, "website_name", schema="public")
