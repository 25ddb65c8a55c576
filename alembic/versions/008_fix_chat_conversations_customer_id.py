"""Repair chat_conversations.customer_id: add it, backfill it, make it NOT NULL, index it.

Revision ID: 008
Revises: 004
Create Date: 2026-11-25

Why: production's chat_conversations was first made by an older script without
customer_id (or with it nullable and NULL rows). The hand-run
``008_fix_chat_conversations_customer_id.sql`` (kept as
``tests/sql/original_008_fix_customer_id.sql``) repaired it, but wrapped the backfill
and SET NOT NULL in a block that turned every error into a NOTICE, so a failed
backfill passed silently. Here every error fails the run.

Steps (the spec's six):
1. add customer_id text where it is missing;
2. backfill NULLs with COALESCE(customer_id, 'customer_' || customer_phone,
   'customer_unknown_' || id::text); a table without customer_phone uses the
   same formula without the phone term;
3. SET NOT NULL;
4. index idx_chat_conversations_customer;
5. fail with a clear message if customer_id is still missing;
6. the PostgREST schema reload is sent by the post-upgrade hook (chatdb.deploy.reload),
   once per run, after the run's last commit.

On a small table every step runs in the run's one transaction. On a large one
(chatdb.deploy.online: PostgreSQL's estimate of its rows reaches ``-x
online_threshold``, 5,000 by default) the slow steps run before that transaction,
online and resumable: the column is added (a catalog change), the NULLs are filled
in batches (with a helper trigger filling rows clients write meanwhile), a NOT VALID
check is validated without blocking writes, and the index is built CONCURRENTLY; the
run's transaction then sets NOT NULL without a scan. Like the hand-run UPDATE, which
fired 004's BEFORE UPDATE trigger, the backfill sets updated_at = now() on the rows it
fills (``also_set``: the online path may run before that trigger exists).

Both paths end with the same schema and rows as the hand-run SQL, and both clean up
what an interrupted online run may have left (its check, an INVALID index). On a
database where the hand-run 008 (or 004 as it ran) left everything in place, each
step finds nothing to do.

Downgrade is a no-op: 008 repairs a drifted table to the state 004 defines
(customer_id text NOT NULL with its index), so after it the schema is what 004
left; undoing the repair would re-create the drift, not 004's schema.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from chatdb.revisions import prerequisites

revision: str = "008"
down_revision: str | Sequence[str] | None = "004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "chat_conversations"
INDEX_NAME = "idx_chat_conversations_customer"
BACKFILL_WITH_PHONE = (
    "COALESCE(customer_id, 'customer_' || customer_phone, 'customer_unknown_' || id::text)"
)
BACKFILL_WITHOUT_PHONE = "COALESCE(customer_id, 'customer_unknown_' || id::text)"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("customer_id", sa.Text()), schema="public", if_not_exists=True)
    op.backfill(TABLE, "customer_id", formula(), also_set={"updated_at": "now()"})
    op.alter_column(TABLE, "customer_id", nullable=False, schema="public")
    op.create_index(INDEX_NAME, TABLE, ["customer_id"], schema="public", if_not_exists=True)
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


def formula() -> str:
    """The spec's backfill; without the phone term on a table without customer_phone."""
    if context.is_offline_mode():
        return BACKFILL_WITH_PHONE
    if prerequisites.has_column(op.get_bind(), TABLE, "customer_phone"):
        return BACKFILL_WITH_PHONE
    return BACKFILL_WITHOUT_PHONE
