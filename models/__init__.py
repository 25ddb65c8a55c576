"""SQLAlchemy models of the chat system (schema ``public``).

``Base.metadata`` is Alembic's ``target_metadata``. The tables ``websites`` and
``delivery_orders`` belong to earlier migrations: they are declared in
:mod:`models.external` only as far as the chat tables' foreign keys need them, and
autogenerate never looks at them (see :data:`EXTERNAL_TABLES`).

``DECLARED`` holds the chat system's other objects (row level security, policies,
the trigger function, triggers, grants, realtime publication membership), which
``chatdb.schema.autogen`` compares alongside the tables.
"""

from models.access import GRANTS, REALTIME_PUBLICATION, REALTIME_TABLES
from models.base import Base
from models.chat import ChatConversation, ChatMessage, ChatParticipant
from models.entities import Declared
from models.external import EXTERNAL_FUNCTIONS, EXTERNAL_TABLES, DeliveryOrder, Website
from models.functions import FUNCTIONS
from models.policies import POLICIES, ROW_LEVEL_SECURITY
from models.triggers import TRIGGERS

DECLARED = Declared(
    policies=POLICIES,
    triggers=TRIGGERS,
    functions=FUNCTIONS,
    grants=GRANTS,
    row_level_security=ROW_LEVEL_SECURITY,
    publication=REALTIME_PUBLICATION,
    publication_tables=REALTIME_TABLES,
)

__all__ = [
    "DECLARED",
    "EXTERNAL_FUNCTIONS",
    "EXTERNAL_TABLES",
    "Base",
    "ChatConversation",
    "ChatMessage",
    "ChatParticipant",
    "DeliveryOrder",
    "Website",
]
