"""Index chat_messages.media_url and metadata where they are set (013_add_missing_chat_columns.sql).

Revision ID: 013
Revises: 012
Create Date: 2026-11-26

What: the chat effects of the hand-run ``013_add_missing_chat_columns.sql``:
1. chat_messages.media_url text and metadata jsonb, added where they are missing
   (004 has both);
2. the two partial indexes: idx_chat_messages_media_url (media_url) WHERE media_url
   IS NOT NULL, and idx_chat_messages_metadata USING gin (metadata) WHERE metadata
   IS NOT NULL.

Why: the backend sends media_url and metadata with media, payment and system
messages (chat.py:711-728, 1040-1062) and reads messages by them; most messages have
neither, so the indexes cover only the rows that do.

On a database where the hand-run 013 ran: the columns and both indexes exist, with
the same definitions: nothing changes. On a large table the indexes are built
concurrently (chatdb.deploy.online).

Downgrade removes the two indexes. The columns are 004's (the models declare them
since 004): at 012 they are what 012 expects, so they stay, with their values.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "013"
down_revision: str | Sequence[str] | None = "012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGES = "chat_messages"


def upgrade() -> None:
    op.add_column(MESSAGES, sa.Column("media_url", sa.Text()), schema="public", if_not_exists=True)
    op.add_column(
        MESSAGES, sa.Column("metadata", postgresql.JSONB()), schema="public", if_not_exists=True
    )
    op.create_index(
        "idx_chat_messages_media_url",
        MESSAGES,
        ["media_url"],
        schema="public",
        if_not_exists=True,
        postgresql_where=sa.text("media_url IS NOT NULL"),
    )
    op.create_index(
        "idx_chat_messages_metadata",
        MESSAGES,
        ["metadata"],
        schema="public",
        if_not_exists=True,
        postgresql_using="gin",
        postgresql_where=sa.text("metadata IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "idx_chat_messages_metadata", table_name=MESSAGES, schema="public", if_exists=True
    )
    op.drop_index(
        "idx_chat_messages_media_url", table_name=MESSAGES, schema="public", if_exists=True
    )
