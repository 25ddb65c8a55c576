"""Repair chat_conversations.customer_id: add it, backfill it, make it NOT NULL, index it.

Revision ID: 008
Revises: 004
Create Date: 2026-11-25

Why: production's chat_conversations was first made by an older script without
customer_id (or with it nullable and NULL rows). The hand-run
``008_fix_chat_conversations_customer_id.sql`` repaired it, but wrapped the backfill
and SET NOT NULL in a block that turned every error into a NOTICE, so a failed
backfill passed silently. Here every error fails the run, which is rolled back.

Steps (the spec's six):
1. add customer_id text where it is missing;
2. backfill NULLs with COALESCE(customer_id, 'customer_' || customer_phone,
   'customer_unknown_' || id::text); a table without customer_phone uses the
   same formula without the phone term;
3. SET NOT NULL;
4. index idx_chat_conversations_customer;
5. fail with a clear message if customer_id is still missing;
6. the PostgREST schema reload is sent by the post-upgrade hook (chatdb.reload),
   once per run, at commit.

On a database where the hand-run 008 (or 004 as it ran) left everything in place,
each step finds nothing to do.

Downgrade is a no-op: 008 repairs a drifted table to the state 004 defines
(customer_id text NOT NULL with its index), so after it the schema is what 004
left; undoing the repair would re-create the drift, not 004's schema.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "008"
down_revision: str | Sequence[str] | None = "004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_WITH_PHONE = (
    "COALESCE(customer_id, 'customer_' || customer_phone, 'customer_unknown_' || id::text)"
)
BACKFILL_WITHOUT_PHONE = "COALESCE(customer_id, 'customer_unknown_' || id::text)"


def upgrade() -> None:
    op.execute("ALTER TABLE public.chat_conversations ADD COLUMN IF NOT EXISTS customer_id text")
    op.execute(f"""
        DO $$
        BEGIN
          IF EXISTS (SELECT 1 FROM information_schema.columns
                     WHERE table_schema = 'public' AND table_name = 'chat_conversations'
                       AND column_name = 'customer_phone') THEN
            UPDATE public.chat_conversations SET customer_id = {BACKFILL_WITH_PHONE}
            WHERE customer_id IS NULL;
          ELSE
            UPDATE public.chat_conversations SET customer_id = {BACKFILL_WITHOUT_PHONE}
            WHERE customer_id IS NULL;
          END IF;
        END $$""")
    op.execute("ALTER TABLE public.chat_conversations ALTER COLUMN customer_id SET NOT NULL")
    op.execute(
        "CREATE INDEX IF NOT EXISTS idx_chat_conversations_customer "
        "ON public.chat_conversations (customer_id)"
    )
    op.execute("""
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                         WHERE table_schema = 'public' AND table_name = 'chat_conversations'
                           AND column_name = 'customer_id') THEN
            RAISE EXCEPTION 'chat_conversations.customer_id is still missing after 008';
          END IF;
        END $$""")


def downgrade() -> None:
    """No-op: see the module docstring."""
