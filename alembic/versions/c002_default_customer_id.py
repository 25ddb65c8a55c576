"""Give a conversation inserted without customer_id 008's value, by a BEFORE INSERT trigger.

Revision ID: c002
Revises: 049
Create Date: 2026-11-26

What: function set_chat_conversation_customer_id() and trigger
set_chat_conversation_customer_id_trigger, BEFORE INSERT ON chat_conversations FOR
EACH ROW: a row inserted with customer_id NULL (or without it) gets 008's formula,
``COALESCE('customer_' || customer_phone, 'customer_unknown_' || id::text)``, exactly
what 008's backfill gave the rows it found (COALESCE(customer_id, ...), customer_id
being NULL). customer_id stays NOT NULL: every row still has one, a row that names
one keeps it, and an UPDATE to NULL still fails.

Why: 008 made customer_id NOT NULL, but the backend's delivery path creates the
conversation of an order without it (delivery.py:329-345, "the column was removed"):
the insert fails with 23502, the backend logs it and the order gets no conversation
(docs/spec/after-008.md, section 1). That path sends customer_phone "" when the order
has none, which the formula turns into 'customer_', the same value 008's backfill gave
such a row. The value for a phone is the one the widget computes ('customer_' ||
phone, chat.py:414-428), so a customer's conversations keep one customer_id whichever
path made them.

No SQL file of the history does this (the id is ``c`` + 3 digits, so it can never
collide with the replica of a later SQL file): on a database where the hand-run SQL
ran, the function and trigger are new. Idempotent: CREATE OR REPLACE. The trigger
changes only the row being inserted, as the caller; it needs no privilege.

Downgrade drops the trigger and the function.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c002"
down_revision: str | Sequence[str] | None = "049"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = "public.set_chat_conversation_customer_id()"
TRIGGER = "set_chat_conversation_customer_id_trigger"
# As models/functions.py declares it (PostgreSQL keeps a body as written).
BODY = """
BEGIN
    IF NEW.customer_id IS NULL THEN
        NEW.customer_id := COALESCE('customer_' || NEW.customer_phone,
                                    'customer_unknown_' || NEW.id::text);
    END IF;
    RETURN NEW;
END;
"""


def upgrade() -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {FUNCTION} RETURNS trigger LANGUAGE plpgsql "
        f"AS $function${BODY}$function$"
    )
    op.execute(
        f"CREATE OR REPLACE TRIGGER {TRIGGER} BEFORE INSERT ON public.chat_conversations "
        "FOR EACH ROW EXECUTE FUNCTION set_chat_conversation_customer_id()"
    )


def downgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON public.chat_conversations")
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}")
