-- Reconstruction of the hand-run migration 004_chat_system.sql as it ran in
-- production (Supabase). For tests and benchmarks only: the Alembic revisions do
-- not use this file. Kept faithful on purpose, including its weaknesses (not
-- idempotent policies/triggers, unconditional ALTER PUBLICATION, weak policies).

-- ---------------------------------------------------------------- tables
CREATE TABLE IF NOT EXISTS chat_conversations (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    order_id UUID REFERENCES delivery_orders(id) ON DELETE SET NULL,
    website_id UUID NOT NULL REFERENCES websites(id) ON DELETE CASCADE,
    customer_id TEXT NOT NULL,
    customer_name TEXT,
    customer_phone TEXT,
    status TEXT DEFAULT 'active',
    unread_owner INTEGER DEFAULT 0,
    unread_customer INTEGER DEFAULT 0,
    unread_rider INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS chat_messages (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    conversation_id UUID NOT NULL REFERENCES chat_conversations(id) ON DELETE CASCADE,
    sender_type TEXT NOT NULL,
    sender_id TEXT,
    sender_name TEXT,
    message_type TEXT DEFAULT 'text',
    content TEXT,
    media_url TEXT,
    metadata JSONB,
    is_read BOOLEAN DEFAULT FALSE,
    read_at TIMESTAMPTZ,
    read_by JSONB DEFAULT '[]'::jsonb,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS chat_participants (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    conversation_id UUID NOT NULL REFERENCES chat_conversations(id) ON DELETE CASCADE,
    user_type TEXT NOT NULL,
    user_id TEXT,
    user_name TEXT,
    is_online BOOLEAN DEFAULT FALSE,
    last_seen TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(conversation_id, user_type, user_id)
);

-- ---------------------------------------------------------------- indexes
CREATE INDEX IF NOT EXISTS idx_chat_conversations_order ON chat_conversations(order_id);
CREATE INDEX IF NOT EXISTS idx_chat_conversations_website ON chat_conversations(website_id);
CREATE INDEX IF NOT EXISTS idx_chat_conversations_customer ON chat_conversations(customer_id);
CREATE INDEX IF NOT EXISTS idx_chat_conversations_status ON chat_conversations(status);
CREATE INDEX IF NOT EXISTS idx_chat_conversations_updated ON chat_conversations(updated_at DESC);
CREATE INDEX IF NOT EXISTS idx_chat_messages_conversation ON chat_messages(conversation_id);
CREATE INDEX IF NOT EXISTS idx_chat_messages_created ON chat_messages(created_at DESC);
CREATE INDEX IF NOT EXISTS idx_chat_messages_sender ON chat_messages(sender_type, sender_id);
CREATE INDEX IF NOT EXISTS idx_chat_participants_conversation ON chat_participants(conversation_id);
CREATE INDEX IF NOT EXISTS idx_chat_participants_user ON chat_participants(user_type, user_id);

-- ---------------------------------------------------------------- row level security
ALTER TABLE chat_conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE chat_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE chat_participants ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Service role full access to conversations" ON chat_conversations
    FOR ALL USING (true) WITH CHECK (true);

CREATE POLICY "Owners can view own conversations" ON chat_conversations
    FOR SELECT USING (
        website_id IN (SELECT id FROM websites WHERE user_id = auth.uid())
    );

CREATE POLICY "Owners can manage own conversations" ON chat_conversations
    FOR ALL USING (
        website_id IN (SELECT id FROM websites WHERE user_id = auth.uid())
    );

CREATE POLICY "Anyone can create conversations" ON chat_conversations
    FOR INSERT WITH CHECK (true);

CREATE POLICY "Customers can view own conversations" ON chat_conversations
    FOR SELECT USING (true);

CREATE POLICY "Service role full access to messages" ON chat_messages
    FOR ALL USING (true) WITH CHECK (true);

CREATE POLICY "Anyone can view messages" ON chat_messages
    FOR SELECT USING (true);

CREATE POLICY "Anyone can insert messages" ON chat_messages
    FOR INSERT WITH CHECK (true);

CREATE POLICY "Anyone can update messages" ON chat_messages
    FOR UPDATE USING (true);

CREATE POLICY "Service role full access to participants" ON chat_participants
    FOR ALL USING (true) WITH CHECK (true);

CREATE POLICY "Anyone can view participants" ON chat_participants
    FOR SELECT USING (true);

CREATE POLICY "Anyone can manage participants" ON chat_participants
    FOR ALL USING (true) WITH CHECK (true);

-- ---------------------------------------------------------------- triggers
CREATE OR REPLACE FUNCTION update_conversation_on_message()
RETURNS TRIGGER AS $$
BEGIN
    UPDATE chat_conversations
    SET updated_at = NOW()
    WHERE id = NEW.conversation_id;

    IF NEW.sender_type = 'customer' THEN
        UPDATE chat_conversations
        SET unread_owner = unread_owner + 1,
            unread_rider = unread_rider + 1
        WHERE id = NEW.conversation_id;
    ELSIF NEW.sender_type = 'owner' THEN
        UPDATE chat_conversations
        SET unread_customer = unread_customer + 1,
            unread_rider = unread_rider + 1
        WHERE id = NEW.conversation_id;
    ELSIF NEW.sender_type = 'rider' THEN
        UPDATE chat_conversations
        SET unread_customer = unread_customer + 1,
            unread_owner = unread_owner + 1
        WHERE id = NEW.conversation_id;
    END IF;

    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER update_chat_conversations_updated_at
    BEFORE UPDATE ON chat_conversations
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at_column();

CREATE TRIGGER update_conversation_on_message_trigger
    AFTER INSERT ON chat_messages
    FOR EACH ROW
    EXECUTE FUNCTION update_conversation_on_message();

-- ---------------------------------------------------------------- grants
GRANT ALL ON chat_conversations TO service_role;
GRANT ALL ON chat_messages TO service_role;
GRANT ALL ON chat_participants TO service_role;

GRANT ALL ON chat_conversations TO authenticated;
GRANT ALL ON chat_messages TO authenticated;
GRANT ALL ON chat_participants TO authenticated;

GRANT SELECT, INSERT, UPDATE ON chat_conversations TO anon;
GRANT SELECT, INSERT, UPDATE ON chat_messages TO anon;
GRANT SELECT, INSERT, UPDATE ON chat_participants TO anon;

-- ---------------------------------------------------------------- realtime
-- Unconditional, as in the original: fails if a table is already a member.
ALTER PUBLICATION supabase_realtime ADD TABLE chat_conversations;
ALTER PUBLICATION supabase_realtime ADD TABLE chat_messages;
ALTER PUBLICATION supabase_realtime ADD TABLE chat_participants;
