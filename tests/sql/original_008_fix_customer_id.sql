-- Reconstruction of the hand-run migration 008_fix_chat_conversations_customer_id.sql,
-- for tests and benchmarks only: the Alembic revisions do not use this file.
-- Kept faithful on purpose, including its weakness: the backfill and the
-- SET NOT NULL sit in a block that turns every error into a NOTICE, so a failed
-- backfill passes silently and leaves customer_id nullable.

-- 1. the column
ALTER TABLE chat_conversations ADD COLUMN IF NOT EXISTS customer_id TEXT;

-- 2-3. backfill and NOT NULL, errors swallowed
DO $$
BEGIN
    UPDATE chat_conversations
    SET customer_id = COALESCE(customer_id, 'customer_' || customer_phone, 'customer_unknown_' || id::text)
    WHERE customer_id IS NULL;

    ALTER TABLE chat_conversations ALTER COLUMN customer_id SET NOT NULL;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'Could not backfill customer_id / set NOT NULL: %', SQLERRM;
END
$$;

-- 4. the index
CREATE INDEX IF NOT EXISTS idx_chat_conversations_customer ON chat_conversations(customer_id);

-- 5. verification
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'public'
          AND table_name = 'chat_conversations'
          AND column_name = 'customer_id'
    ) THEN
        RAISE EXCEPTION 'customer_id column is missing from chat_conversations';
    END IF;
END
$$;

-- 6. PostgREST schema cache reload
NOTIFY pgrst, 'reload schema';
