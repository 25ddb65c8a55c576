"""Declarative base with a naming convention for constraints created from now on.

004's objects carry PostgreSQL's default names (``chat_conversations_pkey``,
``chat_messages_conversation_id_fkey``, ``chat_participants_..._key``). The
convention below produces exactly those names, so it names new constraints (and
unnamed indexes, ``<table>_<columns>_idx``) the way PostgreSQL would and never
renames an existing one. 004's indexes have their own names (``idx_...``), given
explicitly in the models. tests/test_autogenerate.py checks each name against the
one PostgreSQL picks.
"""

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
