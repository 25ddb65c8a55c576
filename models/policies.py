"""Row level security of the chat tables at head: enabled on all three, one policy each,
for the service role.

Revision 049 (the chat part of production's hardening) dropped 004's public policies
on chat_messages and chat_conversations ("Service role full access to ...", "Anyone
can ...", and "Customers can view own conversations", which 049's own list missed) and
scoped what the backend needs TO service_role. Revision c003 did the same for
chat_participants and dropped 004's owner policies: nothing legitimate reaches the chat
tables as anon or authenticated (docs/spec/after-008.md, section 4), so every cell of
theirs is "none" (``chatdb access``). The backend's service-role key bypasses row level
security; these policies say whom the tables are for. A further change is made by
editing this file and running ``alembic revision --autogenerate`` (c003's docstring
shows how to give owners read access back).

Expressions may be written in any form PostgreSQL accepts: autogenerate, ``alembic
check`` and ``chatdb drift`` compare them with ``pg_policies`` as PostgreSQL
understands them (chatdb.inspect.normalize).
"""

from models.entities import Policy

CONVERSATIONS = "chat_conversations"
MESSAGES = "chat_messages"
PARTICIPANTS = "chat_participants"

ROW_LEVEL_SECURITY = frozenset({CONVERSATIONS, MESSAGES, PARTICIPANTS})

# The conversation belongs to a website the requesting user owns (004's owner policies,
# dropped by c003; for a policy that gives owners read access back).
OWNER_EXPR = (
    "(website_id IN (SELECT websites.id FROM websites WHERE (websites.user_id = auth.uid())))"
)

# The request's JWT is the service role's (049's predicate; service_role bypasses row
# level security anyway: the policies say whom the tables are for).
SERVICE_ROLE_ONLY = "(auth.role() = 'service_role'::text)"

POLICIES = (
    Policy(
        CONVERSATIONS,
        "Service role manages chat_conversations",
        "ALL",
        SERVICE_ROLE_ONLY,
        SERVICE_ROLE_ONLY,
        roles=("service_role",),
    ),
    Policy(
        MESSAGES,
        "Service role manages chat_messages",
        "ALL",
        SERVICE_ROLE_ONLY,
        SERVICE_ROLE_ONLY,
        roles=("service_role",),
    ),
    Policy(
        PARTICIPANTS,
        "Service role manages chat_participants",
        "ALL",
        SERVICE_ROLE_ONLY,
        SERVICE_ROLE_ONLY,
        roles=("service_role",),
    ),
)
