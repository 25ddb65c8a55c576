"""Fix chat_messages.message_type: default 'text', no NULL or empty type, indexed (012_fix_chat_message_type.sql).

Revision ID: 012
Revises: 009
Create Date: 2026-11-26

What: the chat effects of the hand-run ``012_fix_chat_message_type.sql``:
1. chat_messages.message_type text, added where it is missing (004 has it);
2. DEFAULT 'text' (004's default);
3. ``UPDATE ... SET message_type = 'text' WHERE message_type IS NULL OR
   message_type = ''``, as the file does;
4. index idx_chat_messages_type (message_type).

Why: the backend and the widget branch on message_type (text, image, location,
payment, ...); a message stored without one (a NULL from an older writer, an empty
string) falls through every branch. The index serves reads by type.

On a database where the hand-run 012 ran: the column and its default are there, no
row is NULL or empty, the index exists: nothing changes. On 004's tables only the
backfill (of rows written with an explicit NULL or '') and the index are new. On a
large table the backfill is batched and the index built concurrently
(chatdb.deploy.online).

Downgrade removes the index only. The column and its default are 004's (the models
declare them since 004), so at 009 they are what 009 expects; the backfilled values
are kept ('text' was the default they would have had).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "012"
down_revision: str | Sequence[str] | None = "009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGES = "chat_messages"
INDEX = "idx_chat_messages_type"


def upgrade() -> None:
    op.add_column(
        MESSAGES, sa.Column("message_type", sa.Text()), schema="public", if_not_exists=True
    )
    op.alter_column(MESSAGES, "message_type", server_default=sa.text("'text'"), schema="public")
    op.backfill(
        MESSAGES,
        "message_type",
        "'text'",
        where="message_type IS NULL OR message_type = ''",
    )
    op.create_index(INDEX, MESSAGES, ["message_type"], schema="public", if_not_exists=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=MESSAGES, schema="public", if_exists=True)
