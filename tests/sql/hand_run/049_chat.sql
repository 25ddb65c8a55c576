-- Source: backend/migrations/049_rls_hardening_service_role_scope.sql in
-- yassirar77-cloud/binaapp at commit 7938e1d (the only hand-run file marked as applied
-- to production, "run against prod Supabase on 2026-07-03"): the chat part only, its
-- sections 3a (chat_messages) and 3b (chat_conversations), lines 159-195, inside the
-- file's own BEGIN (line 60) and COMMIT (line 438). Test fixture, not a revision.
-- Deviations from the original:
-- 1. Only sections 3a and 3b: the other sections touch tables that are not part of
--    the chat system (subscriptions, delivery_orders' policies, bina_credits,
--    storage.objects, ...) and do not exist on a test database.
-- Lines 159-195 below are byte for byte the original. It needs auth.role(), which
-- Supabase provides (tests/sql/supabase_like.sql defines it the same way).
-- =========================================================================

BEGIN;

-- 3a. chat_messages — customer chat content (the pg_policies review lists 4
--     permissive policies; repo lineages add more name variants — all dropped
--     via IF EXISTS). Also on the supabase_realtime publication (anon could
--     stream every chat) — REMOVING these policies closes the realtime read too.
-- [FRONTEND] DashboardTab.tsx:232 reads chat_messages via anon (SELECT only) —
--     BREAKS the dashboard chat panel (see header). No frontend writes; the
--     customer chat widget posts through the backend.
DROP POLICY IF EXISTS "Allow all chat_messages"   ON public.chat_messages;
DROP POLICY IF EXISTS "chat_messages_all"          ON public.chat_messages;
DROP POLICY IF EXISTS "Anyone can view messages"   ON public.chat_messages;
DROP POLICY IF EXISTS "Anyone can insert messages" ON public.chat_messages;
DROP POLICY IF EXISTS "Anyone can update messages" ON public.chat_messages;
DROP POLICY IF EXISTS "Service role full access to messages" ON public.chat_messages;
DROP POLICY IF EXISTS "Service role manages chat_messages" ON public.chat_messages;
CREATE POLICY "Service role manages chat_messages"
    ON public.chat_messages
    FOR ALL
    TO service_role
    USING (auth.role() = 'service_role')
    WITH CHECK (auth.role() = 'service_role');

-- 3b. chat_conversations — customer name/phone. Same treatment as 3a.
-- [FRONTEND] DashboardTab.tsx:215 reads chat_conversations via anon (SELECT only)
--     — BREAKS the dashboard chat list (see header). No frontend writes.
--     Owner policies ("Owners can view/manage own conversations") are KEPT — they
--     just don't help the anon session (uid NULL).
DROP POLICY IF EXISTS "Allow all chat_conversations"       ON public.chat_conversations;
DROP POLICY IF EXISTS "chat_conversations_all"             ON public.chat_conversations;
DROP POLICY IF EXISTS "Anyone can create conversations"    ON public.chat_conversations;
DROP POLICY IF EXISTS "Service role full access to conversations" ON public.chat_conversations;
DROP POLICY IF EXISTS "Service role manages chat_conversations" ON public.chat_conversations;
CREATE POLICY "Service role manages chat_conversations"
    ON public.chat_conversations
    FOR ALL
    TO service_role
    USING (auth.role() = 'service_role')
    WITH CHECK (auth.role() = 'service_role');

COMMIT;
