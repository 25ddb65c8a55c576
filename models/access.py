"""Who may use the chat tables through the API, and which tables Realtime publishes.

Grants are the *effective* table privileges of Supabase's API roles. 004's SQL grants
anon only SELECT, INSERT and UPDATE, but on Supabase the platform's default privileges
(and revision 000 on plain PostgreSQL) already give anon, authenticated and
service_role ALL on every table the migration role creates in public. What the
database has, and what production has, is therefore ALL for all three roles; that is
what is declared here, so that autogenerate at head is empty and a hardening revision
is one edit away (e.g. anon: ``("SELECT", "INSERT", "UPDATE")`` autogenerates the
REVOKE of the rest).

Only these three roles are compared, and only table-level privileges: the owner's
own privileges, other platform roles and column grants are left alone.
"""

from models.entities import ALL, Grant
from models.policies import CONVERSATIONS, MESSAGES, PARTICIPANTS

API_ROLES = ("anon", "authenticated", "service_role")
CHAT_TABLES = (CONVERSATIONS, MESSAGES, PARTICIPANTS)

GRANTS = tuple(Grant(table, role, ALL) for table in CHAT_TABLES for role in API_ROLES)

REALTIME_PUBLICATION = "supabase_realtime"
REALTIME_TABLES = frozenset(CHAT_TABLES)
