-- Shape (b) of docs/spec/after-008.md section 3: the chat tables as "the older script"
-- made them, before 004. Test fixture, not a copy of one file: no runnable file in
-- yassirar77-cloud/binaapp (commit 7938e1d) makes exactly these tables. It is built
-- from tests/test_drift.py's PRODUCTION_SQL and the issue's description of production
-- ("text website_id, message text NOT NULL, no sender_id"):
-- - chat_conversations: text website_id NOT NULL, text order_id, customer_id text
--   nullable, customer_name/customer_phone/status NOT NULL, no unread counters;
-- - chat_messages: uuid conversation_id with its foreign key, sender_type NOT NULL,
--   no sender_id, `message text NOT NULL`, content, message_type DEFAULT 'text',
--   media_url, metadata, is_read, created_at (PRODUCTION_SQL also has sender_id,
--   sender_name, read_at and read_by: left out, as the description says);
-- - no chat_participants, no row level security, no policies, no triggers, no
--   publication membership; the grants are Supabase's default privileges.
-- The closest file in BinaApp, database/migrations/002_delivery_chat_tables.sql, has a
-- nullable text website_id, a chat_messages with only sender_type, sender_id, message
-- and created_at, and `CREATE POLICY IF NOT EXISTS`, which PostgreSQL does not have (a
-- syntax error: as one script it runs nothing). backend/app/main.py (the setup SQL it
-- prints) also makes text website_id/order_id tables, with message_text instead of
-- message. Run on a database prepared like Supabase (uuid_generate_v4() on the
-- search_path through schema extensions).

CREATE TABLE public.chat_conversations (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  website_id text NOT NULL,
  order_id text,
  customer_id text,
  customer_name text NOT NULL,
  customer_phone text NOT NULL,
  status text NOT NULL DEFAULT 'active',
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);

CREATE TABLE public.chat_messages (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
  conversation_id uuid NOT NULL REFERENCES public.chat_conversations (id) ON DELETE CASCADE,
  sender_type text NOT NULL,
  message text NOT NULL,
  content text,
  message_type text DEFAULT 'text',
  media_url text,
  metadata jsonb,
  is_read boolean DEFAULT false,
  created_at timestamptz DEFAULT now()
);
