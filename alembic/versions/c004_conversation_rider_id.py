"""Add chat_conversations.rider_id, the column of 005_customer_notifications.sql the backend writes.

Revision ID: c004
Revises: c003
Create Date: 2026-12-02

What: chat_conversations.rider_id uuid (nullable, no default), added where it is
missing.

Why: when a rider is assigned to an order, the backend writes the rider on the order's
conversation (``.table("chat_conversations").update({"rider_id": ...})``, BinaApp at
7938e1d, backend/app/api/v1/endpoints/delivery.py:2859 and 3550, as
``chatdb calls scan`` reads them into calls/backend.calls). The column comes from the
hand-run ``005_customer_notifications.sql`` (docs/spec/after-008.md, section 2), which
no revision replicated: against 004 and the later files, PostgREST answers PGRST204
("Could not find the 'rider_id' column of 'chat_conversations' in the schema cache"),
the backend logs it (the update is best effort) and the conversation never learns its
rider. ``chatdb calls check`` at c003 shows both calls failing; at head every call of
the calls file succeeds.

Why c004 and not 005: the id of a replica is its file's number, and a revision 005
would have to come between 004 and 008, where a database already past 008 would never
run it (Alembic applies what comes after the database's revision). This revision
replicates the one column of 005 the backend needs, so it takes a ``c`` id after head.

What of 005 is not replicated, and why:
- ``REFERENCES riders(id)``: riders belongs to the delivery system, not the chat system,
  and a plain PostgreSQL (local, CI) has no such table; where the hand-run 005 made the
  foreign key it is kept (``chatdb drift`` lists it among what the code does not
  declare);
- ``owner_id``, ``last_message``, ``last_message_at`` and the trigger
  ``update_conversation_last_message_trigger`` that copies each message's ``content``
  into ``last_message``: no call of the backend reads or writes them (calls/backend.calls),
  and the trigger would write on every message sent, to a column nobody reads; where
  005 ran they are kept as they are;
- 005's other tables (notifications, ...): outside the chat system.

On a database where 005 ran (rider_id already there, with its values): nothing changes.
On a large table the column is added online (a catalog change).

Downgrade drops rider_id. Its values are counted first (op.drop_column,
chatdb.deploy.data_loss): a downgrade that would lose them is refused unless
``-x allow_data_loss=true``; and it breaks the backend's rider updates again, which the
calls guard refuses unless ``-x allow_breaking_calls=true``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c004"
down_revision: str | Sequence[str] | None = "c003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONVERSATIONS = "chat_conversations"


def upgrade() -> None:
    op.add_column(
        CONVERSATIONS,
        sa.Column("rider_id", postgresql.UUID(as_uuid=True)),
        schema="public",
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_column(CONVERSATIONS, "rider_id", schema="public")
