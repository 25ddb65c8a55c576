"""The chat system's tables at head: as migration 004 (repaired by 008) defines them,
with what the revisions after it add (009: message_text and the phone indexes; 012:
the message_type index; 013: the partial media_url and metadata indexes; 014:
website_name; c004: rider_id).

Names of indexes and constraints are PostgreSQL's defaults or the SQL files' own,
because production databases already hold these objects under these names.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

UUID_DEFAULT = text("uuid_generate_v4()")
NOW = text("now()")


class ChatConversation(Base):
    __tablename__ = "chat_conversations"
    __table_args__ = (
        Index("idx_chat_conversations_order", "order_id"),
        Index("idx_chat_conversations_website", "website_id"),
        Index("idx_chat_conversations_customer", "customer_id"),
        Index("idx_chat_conversations_status", "status"),
        Index("idx_chat_conversations_updated", text("updated_at DESC")),
        Index("idx_chat_conversations_phone", "customer_phone"),
        Index("idx_chat_conversations_website_phone", "website_id", "customer_phone"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=UUID_DEFAULT)
    order_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("delivery_orders.id", ondelete="SET NULL")
    )
    website_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("websites.id", ondelete="CASCADE"))
    customer_id: Mapped[str] = mapped_column(Text)
    customer_name: Mapped[str | None] = mapped_column(Text)
    customer_phone: Mapped[str | None] = mapped_column(Text)
    # 014 (FIX A's column): the backend writes it with every conversation it creates.
    website_name: Mapped[str | None] = mapped_column(Text)
    # c004 (005's column): the backend writes the rider assigned to the order.
    rider_id: Mapped[uuid.UUID | None]
    status: Mapped[str | None] = mapped_column(Text, server_default=text("'active'::text"))
    unread_owner: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    unread_customer: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    unread_rider: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=NOW)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=NOW)


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        Index("idx_chat_messages_conversation", "conversation_id"),
        Index("idx_chat_messages_created", text("created_at DESC")),
        Index("idx_chat_messages_sender", "sender_type", "sender_id"),
        Index("idx_chat_messages_type", "message_type"),
        Index(
            "idx_chat_messages_media_url",
            "media_url",
            postgresql_where=text("(media_url IS NOT NULL)"),
        ),
        Index(
            "idx_chat_messages_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_where=text("(metadata IS NOT NULL)"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=UUID_DEFAULT)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("chat_conversations.id", ondelete="CASCADE")
    )
    sender_type: Mapped[str] = mapped_column(Text)
    sender_id: Mapped[str | None] = mapped_column(Text)
    sender_name: Mapped[str | None] = mapped_column(Text)
    message_type: Mapped[str | None] = mapped_column(Text, server_default=text("'text'::text"))
    content: Mapped[str | None] = mapped_column(Text)
    # 009: what the backend writes a message's text to (content is kept, and read).
    message_text: Mapped[str] = mapped_column(Text, server_default=text("''::text"))
    media_url: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    is_read: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_by: Mapped[Any | None] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=NOW)


class ChatParticipant(Base):
    __tablename__ = "chat_participants"
    __table_args__ = (
        UniqueConstraint("conversation_id", "user_type", "user_id"),
        Index("idx_chat_participants_conversation", "conversation_id"),
        Index("idx_chat_participants_user", "user_type", "user_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=UUID_DEFAULT)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("chat_conversations.id", ondelete="CASCADE")
    )
    user_type: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    user_name: Mapped[str | None] = mapped_column(Text)
    is_online: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=NOW)
