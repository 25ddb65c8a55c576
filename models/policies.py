"""Row level security of the chat tables at head: enabled on all three, 004's policies
that 049 keeps, and 049's two service-role policies.

Revision 049 (the chat part of production's hardening) dropped 004's public policies
on chat_messages and chat_conversations ("Service role full access to ...", "Anyone
can ...", and "Customers can view own conversations", which 049's own list missed) and
scoped what the backend needs TO service_role. chat_participants keeps 004's three
policies, weak as they are (anon can change and delete every participant; see
``chatdb access``): 049 left that table alone. A further change is made by editing
this file and running ``alembic revision --autogenerate``.

Expressions are written as PostgreSQL prints them back (``pg_policies``), so that the
comparison needs no round trip through the database: ``auth.uid()`` qualified, column
references qualified inside subqueries, an outer pair of parentheses around operators.
"""

from models.entities import Policy

CONVERSATIONS = "chat_conversations"
MESSAGES = "chat_messages"
PARTICIPANTS = "chat_participants"

ROW_LEVEL_SECURITY = frozenset({CONVERSATIONS, MESSAGES, PARTICIPANTS})

# The conversation belongs to a website the requesting user owns.
OWNER_EXPR = (
    "(website_id IN (SELECT websites.id FROM websites WHERE (websites.user_id = auth.uid())))"
)

# The request's JWT is the service role's (049's predicate; service_role bypasses row
# level security anyway: the policies say whom the tables are for).
SERVICE_ROLE_ONLY = "(auth.role() = 'service_role'::text)"

POLICIES = (
    Policy(CONVERSATIONS, "Owners can view own conversations", "SELECT", OWNER_EXPR),
    Policy(CONVERSATIONS, "Owners can manage own conversations", "ALL", OWNER_EXPR),
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
    Policy(PARTICIPANTS, "Service role full access to participants", "ALL", "true", "true"),
    Policy(PARTICIPANTS, "Anyone can view participants", "SELECT", "true"),
    Policy(PARTICIPANTS, "Anyone can manage participants", "ALL", "true", "true"),
)
