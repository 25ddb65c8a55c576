"""RLS hardening of chat_messages and chat_conversations: service role only (049_rls_hardening_service_role_scope.sql).

Revision ID: 049
Revises: 014
Create Date: 2026-11-26

What: the chat part of the hand-run ``049_rls_hardening_service_role_scope.sql`` (its
sections 3a and 3b, the only file marked as applied to production):
1. on chat_messages, drop every public policy 049 names ("Allow all chat_messages",
   "chat_messages_all", 004's "Anyone can view / insert / update messages" and
   "Service role full access to messages") and create "Service role manages
   chat_messages": FOR ALL TO service_role USING (auth.role() = 'service_role') WITH
   CHECK (auth.role() = 'service_role');
2. the same on chat_conversations ("Allow all chat_conversations",
   "chat_conversations_all", "Anyone can create conversations", "Service role full
   access to conversations"; "Service role manages chat_conversations"). The owner
   policies ("Owners can view / manage own conversations") stay, as in 049.

Why: 004's policies apply to PUBLIC, so anyone holding the anon key (every browser
that opens a chat widget) could read every shop's conversations and messages, rewrite
them and delete them. The backend uses the service-role key, which bypasses row level
security, so it loses nothing; nothing else reads or writes these tables directly
(after-008.md, section 1).

Beyond the file, deliberately:
- it also drops 004's "Customers can view own conversations" (SELECT USING (true), no
  TO clause). 049's drop list misses it, although its own verification query (no
  permissive USING (true) / WITH CHECK (true) policy for public, anon or authenticated
  on the tables it hardens) matches it: left in place it keeps every conversation, with
  the customers' names and phone numbers, readable by anon, which is what 049 set out
  to close. Its name promises a filter it never had; a customer has no identity of its
  own in the database (the widget goes through the backend);
- it drops "Allow all chat_participants" where a database has it (014's FIX A made it).
  004's "Anyone can manage participants" (FOR ALL USING (true) WITH CHECK (true)) grants
  exactly the same, so no access changes; otherwise chat_participants is left alone, as
  049 left it (its weak policies stay: see chatdb access);
- it creates auth.role() where absent (chatdb.revisions.prerequisites, shared with
  revision 000, which provides it on plain PostgreSQL since it was added there): a
  database that went past 000 before that has auth.uid() but no auth.role();
- it ends with 049's verification query as a check that fails the run: if a permissive
  policy with USING (true) or WITH CHECK (true) for public, anon or authenticated is
  left on chat_messages or chat_conversations (one 049 does not know by name, e.g. a
  hand-made "Allow conversation viewing"), the run stops, naming it, and nothing is
  changed: drop or scope it by hand (or in a revision), then re-run.

Not replicated: the rest of the file (other tables, storage.objects), and 010's "Allow
all chat_messages" / "Allow all chat_conversations" policies, for which there is no
revision 010 (its publication and row level security effects are 004's; its policies
are what this revision drops: replicating them would open every row between 010 and
049). Row level security is on since 004, as 049 assumes.

On a database where the hand-run 049 ran: the names it drops are gone, the two
"Service role manages ..." policies are dropped and created again, identical: nothing
changes, but "Customers can view own conversations" goes where it is still there.

Downgrade removes the two "Service role manages ..." policies and creates again the
seven policies of 004 that this revision drops, as 004 defines them, and auth.role()
if this revision created it. It does not create "Allow all ..." policies, which no
revision of this project creates. That widens what anon and authenticated can do, so a
downgrade run is refused unless ``-x allow_wider_access=true`` (chatdb.deploy.widening).
"""

from collections.abc import Sequence

from alembic import op

from chatdb.revisions import policies, prerequisites

revision: str = "049"
down_revision: str | Sequence[str] | None = "014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARKER = "created by chatdb revision 049 (absent before); its downgrade removes it"
MESSAGES, CONVERSATIONS, PARTICIPANTS = "chat_messages", "chat_conversations", "chat_participants"

# (table, the policies it drops: 049's list, then this revision's additions)
DROPPED = (
    (
        MESSAGES,
        (
            "Allow all chat_messages",
            "chat_messages_all",
            "Anyone can view messages",
            "Anyone can insert messages",
            "Anyone can update messages",
            "Service role full access to messages",
        ),
    ),
    (
        CONVERSATIONS,
        (
            "Allow all chat_conversations",
            "chat_conversations_all",
            "Anyone can create conversations",
            "Service role full access to conversations",
            "Customers can view own conversations",  # not in 049's list: see the docstring
        ),
    ),
    (PARTICIPANTS, ("Allow all chat_participants",)),  # FIX A's; 004's grant the same
)
SERVICE_ROLE_POLICIES = (
    (MESSAGES, "Service role manages chat_messages"),
    (CONVERSATIONS, "Service role manages chat_conversations"),
)
# 004's policies that the upgrade drops, as 004 creates them: (table, name, command,
# USING, WITH CHECK). The downgrade puts them back.
POLICIES_OF_004 = (
    (CONVERSATIONS, "Service role full access to conversations", "ALL", "true", "true"),
    (CONVERSATIONS, "Anyone can create conversations", "INSERT", None, "true"),
    (CONVERSATIONS, "Customers can view own conversations", "SELECT", "true", None),
    (MESSAGES, "Service role full access to messages", "ALL", "true", "true"),
    (MESSAGES, "Anyone can view messages", "SELECT", "true", None),
    (MESSAGES, "Anyone can insert messages", "INSERT", None, "true"),
    (MESSAGES, "Anyone can update messages", "UPDATE", "true", None),
)

# 049's verification query (its last lines), on the two tables it hardens: a permissive
# policy that opens every row to public, anon or authenticated.
STILL_OPEN = """
    SELECT string_agg(format('%s: "%s"', tablename, policyname), ', '
                      ORDER BY tablename, policyname)
    FROM pg_policies
    WHERE schemaname = 'public'
      AND tablename IN ('chat_messages', 'chat_conversations')
      AND permissive = 'PERMISSIVE'
      AND (qual = 'true' OR with_check = 'true')
      AND roles && ARRAY['public', 'anon', 'authenticated']::name[]"""


def upgrade() -> None:
    op.execute(prerequisites.create_auth_role_sql(MARKER))
    # One batch of statements (one round trip: the run's transaction holds its locks on
    # the live tables until it commits).
    statements = [policies.drop_sql(table, name) for table, names in DROPPED for name in names]
    for table, name in SERVICE_ROLE_POLICIES:
        statements += policies.service_role_only_sql(table, name)
    op.execute(";\n".join(statements))
    op.execute(
        policies.refuse_if_any_sql(
            STILL_OPEN,
            "after 049, policies still open every row of the chat tables to public, anon "
            "or authenticated (USING (true) or WITH CHECK (true)): %; drop them or scope "
            "them TO service_role, then re-run",
        )
    )


def downgrade() -> None:
    for table, name in SERVICE_ROLE_POLICIES:
        op.execute(policies.drop_sql(table, name))
    for policy in POLICIES_OF_004:
        for statement in policies.replace_sql(*policy):
            op.execute(statement)
    op.execute(prerequisites.drop_auth_role_sql(MARKER))
