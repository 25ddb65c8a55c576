"""Row level security of the chat tables: enabled on all three, and 004's twelve policies.

The policies are replicated as they ran in production, weak as they are (anon can read
every conversation; see the spec): hardening them is a later revision, made by editing
this file and running ``alembic revision --autogenerate``.

Expressions may be written in any form PostgreSQL accepts: autogenerate, ``alembic
check`` and ``chatdb drift`` compare them with ``pg_policies`` as PostgreSQL
understands them (chatdb.inspect.normalize). 004's are kept in the form PostgreSQL
prints, which needs no round trip through the server at all.
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

POLICIES = (
    Policy(CONVERSATIONS, "Service role full access to conversations", "ALL", "true", "true"),
    Policy(CONVERSATIONS, "Owners can view own conversations", "SELECT", OWNER_EXPR),
    Policy(CONVERSATIONS, "Owners can manage own conversations", "ALL", OWNER_EXPR),
    Policy(CONVERSATIONS, "Anyone can create conversations", "INSERT", with_check="true"),
    Policy(CONVERSATIONS, "Customers can view own conversations", "SELECT", "true"),
    Policy(MESSAGES, "Service role full access to messages", "ALL", "true", "true"),
    Policy(MESSAGES, "Anyone can view messages", "SELECT", "true"),
    Policy(MESSAGES, "Anyone can insert messages", "INSERT", with_check="true"),
    Policy(MESSAGES, "Anyone can update messages", "UPDATE", "true"),
    Policy(PARTICIPANTS, "Service role full access to participants", "ALL", "true", "true"),
    Policy(PARTICIPANTS, "Anyone can view participants", "SELECT", "true"),
    Policy(PARTICIPANTS, "Anyone can manage participants", "ALL", "true", "true"),
)
