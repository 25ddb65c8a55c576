"""SQLAlchemy models of the chat system (schema ``public``).

``Base.metadata`` is Alembic's ``target_metadata``. The tables ``websites`` and
``delivery_orders`` belong to earlier migrations: they are declared in
:mod:`models.external` only as far as the chat tables' foreign keys need them, and
autogenerate never looks at them (see :data:`EXTERNAL_TABLES`).
"""

from models.base import Base
from models.chat import ChatConversation, ChatMessage, ChatParticipant
from models.external import EXTERNAL_TABLES, DeliveryOrder, Website

__all__ = [
    "Base",
    "ChatConversation",
    "ChatMessage",
    "ChatParticipant",
    "DeliveryOrder",
    "EXTERNAL_TABLES",
    "Website",
]
