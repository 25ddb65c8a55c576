"""Repair chat_conversations.customer_id: add it, backfill it, make it NOT NULL, index it.

Revision ID: 008
Revises: 004
Create Date: 2026-11-25

Why: production's chat_conversations was first made by an older script without
customer_id (or with it nullable and NULL rows). The hand-run
``008_fix_chat_conversations_customer_id.sql`` repaired it, but wrapped the backfill
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

Where the all-or-nothing line is: runs are one transaction, except 008 on a large
chat_conversations, which must not stall the chat API while it backfills and
indexes. ``-x online_008=auto`` (the default) takes the online path
(chatdb.deploy.online) when PostgreSQL's estimate of the table's rows
(pg_class.reltuples) is at least 5,000 (``-x online_008_threshold=ROWS``);
``always`` / ``never`` force a path. The online path commits in steps and is
resumable instead of all-or-nothing: killed at any point, a re-run finishes the
job and nothing is lost, and revisions applied before 008 in the same run stay
committed. Small tables, a fresh database where 000+004+008 run together (its new
table has no estimate yet) and ``--sql`` scripts take the transactional path below:
rolled back whole on any error.

Both paths end with the same schema and rows as the hand-run SQL, and both clean up
what an interrupted online run may have left: its CHECK constraint
chat_conversations_customer_id_not_null and an INVALID index from a failed
concurrent build. Like the hand-run UPDATE, the backfill fires the BEFORE UPDATE
trigger, so backfilled rows get updated_at = now().

On a database where the hand-run 008 (or 004 as it ran) left everything in place,
each step finds nothing to do.

Downgrade is a no-op: 008 repairs a drifted table to the state 004 defines
(customer_id text NOT NULL with its index), so after it the schema is what 004
left; undoing the repair would re-create the drift, not 004's schema.
"""

from collections.abc import Sequence

from alembic import context, op
from chatdb.deploy import online
from chatdb.deploy.online import BACKFILL_WITH_PHONE, BACKFILL_WITHOUT_PHONE, CHECK_NAME, INDEX_NAME
from chatdb.revisions.lint import justified

revision: str = "008"
down_revision: str | Sequence[str] | None = "004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    options = online.Options.from_x_args(context.get_x_argument(as_dictionary=True))
    connection = None if context.is_offline_mode() else op.get_bind()
    if online.decide(connection, options):
        online.repair_online(op, options)
    else:
        repair_in_transaction()
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


def repair_in_transaction() -> None:
    """Steps 1-4 in the run's transaction: small tables, all or nothing."""
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
    op.execute(
        justified(
            "ALTER TABLE public.chat_conversations ALTER COLUMN customer_id SET NOT NULL",
            "adding-not-nullable-field",
            "a small table (below the online line): the scan holds its lock for milliseconds",
        )
    )
    op.execute(
        justified(
            f"ALTER TABLE public.chat_conversations DROP CONSTRAINT IF EXISTS {CHECK_NAME}",
            "ban-drop-constraint",
            "only the temporary check of an interrupted online run; NOT NULL gives its guarantee",
        )
    )
    op.execute(f"""
        DO $$
        BEGIN
          IF EXISTS (SELECT 1 FROM pg_index
                     WHERE indexrelid = to_regclass('public.{INDEX_NAME}') AND NOT indisvalid) THEN
            DROP INDEX public.{INDEX_NAME};
          END IF;
        END $$""")
    op.execute(
        justified(
            f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON public.chat_conversations (customer_id)",
            "require-concurrent-index-creation",
            "CONCURRENTLY cannot run in the run's transaction; a small table builds in milliseconds",
        )
    )
