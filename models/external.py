"""Tables owned by earlier migrations, declared only as far as 004's foreign keys need.

They are not the chat system's: autogenerate skips them (``EXTERNAL_TABLES``) and
no revision of this project creates or alters them, except the prerequisites
revision ``000`` on a plain PostgreSQL where they are absent.
"""

import uuid

from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

EXTERNAL_TABLES = frozenset({"websites", "delivery_orders"})
# Functions of earlier migrations that chat triggers call: never created, changed or
# dropped by this project (update_updated_at_column() runs the updated_at trigger).
EXTERNAL_FUNCTIONS = frozenset({"update_updated_at_column"})


class Website(Base):
    __tablename__ = "websites"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID | None]


class DeliveryOrder(Base):
    __tablename__ = "delivery_orders"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
