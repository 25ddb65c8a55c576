"""The kinds of non-table objects the chat system declares in code, and their DDL.

Tables are SQLAlchemy models (:mod:`models.chat`); everything else the chat system
owns in PostgreSQL is declared with the small value types below, in
:mod:`models.policies`, :mod:`models.functions`, :mod:`models.triggers` and
:mod:`models.access`. ``chatdb.schema.autogen`` compares them with the live catalog
(``alembic revision --autogenerate``, ``alembic check``) and ``chatdb.inspect.drift``
reports the differences in words.

Policy expressions and trigger definitions are written in any form PostgreSQL
accepts (``customer_id = auth.uid()::text``, ``EXECUTE PROCEDURE f()``): they are
compared with the catalog as PostgreSQL understands them, not as text
(:mod:`chatdb.inspect.normalize`, read-only). Function bodies are kept by PostgreSQL as
written, and compared as written (whitespace aside).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SCHEMA = "public"
ALL = "ALL"
# Table privileges in PostgreSQL's order; servers from PostgreSQL 17 add MAINTAIN,
# and ALL always means "every privilege this server knows" (read from the server).
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def quote_ident(name: str) -> str:
    """An identifier as PostgreSQL needs it in SQL: bare when it is a plain lower-case word."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def normalise_sql(text: str | None) -> str | None:
    """Text of an expression for comparison: runs of whitespace are one space, and the
    spacing next to parentheses does not count (PostgreSQL prints ``( SELECT``)."""
    if text is None:
        return None
    text = " ".join(text.split())
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))


def qualified(table: str) -> str:
    return f"{SCHEMA}.{quote_ident(table)}"


@dataclass(frozen=True)
class Policy:
    """A row level security policy. ``command`` is ALL, SELECT, INSERT, UPDATE or DELETE;
    ``roles`` ("public" means no TO clause: every role)."""

    table: str
    name: str
    command: str
    using: str | None = None
    with_check: str | None = None
    permissive: bool = True
    roles: tuple[str, ...] = ("public",)

    @property
    def key(self) -> tuple[str, str]:
        return (self.table, self.name)

    def create_sql(self) -> str:
        sql = (
            f"CREATE POLICY {quote_ident(self.name)} ON {qualified(self.table)}"
            f" AS {'PERMISSIVE' if self.permissive else 'RESTRICTIVE'} FOR {self.command}"
            f" TO {', '.join(self.roles)}"
        )
        if self.using is not None:
            sql += f" USING ({self.using})"
        if self.with_check is not None:
            sql += f" WITH CHECK ({self.with_check})"
        return sql

    def drop_sql(self) -> str:
        return f"DROP POLICY {quote_ident(self.name)} ON {qualified(self.table)}"


@dataclass(frozen=True)
class Trigger:
    """A trigger; ``definition`` is what follows ``CREATE TRIGGER <name>`` (timing,
    events, ``ON <table>``, level, WHEN, function), in any spelling PostgreSQL accepts;
    read back from the database, it is ``pg_get_triggerdef``'s."""

    table: str
    name: str
    definition: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.table, self.name)

    def create_sql(self) -> str:
        return f"CREATE TRIGGER {quote_ident(self.name)} {self.definition}"

    def drop_sql(self) -> str:
        return f"DROP TRIGGER {quote_ident(self.name)} ON {qualified(self.table)}"


@dataclass(frozen=True)
class Function:
    """A function in schema public. ``body`` is the text between the dollar quotes
    (PostgreSQL keeps it as written, in ``pg_proc.prosrc``)."""

    name: str
    returns: str
    language: str
    body: str
    arguments: str = ""
    security_definer: bool = False
    # The live function's own CREATE statement (pg_get_functiondef), used to put it
    # back on downgrade; None for a declared function.
    live_definition: str | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.arguments)

    @property
    def signature(self) -> str:
        return f"{SCHEMA}.{quote_ident(self.name)}({self.arguments})"

    def create_sql(self) -> str:
        if self.live_definition is not None:
            return self.live_definition
        if "$function$" in self.body:
            raise ValueError(f"function {self.name}: the body must not contain $function$")
        security = " SECURITY DEFINER" if self.security_definer else ""
        return (
            f"CREATE OR REPLACE FUNCTION {self.signature} RETURNS {self.returns}"
            f" LANGUAGE {self.language}{security}"
            f" AS $function${self.body}$function$"
        )

    def drop_sql(self) -> str:
        return f"DROP FUNCTION {self.signature}"


@dataclass(frozen=True)
class Grant:
    """Table privileges of one role: ``privileges`` is ALL or a tuple of privilege names.
    Only table-level privileges are compared (column grants and grant options are not)."""

    table: str
    role: str
    privileges: str | tuple[str, ...] = ALL

    @property
    def key(self) -> tuple[str, str]:
        return (self.table, self.role)

    def expanded(self, all_privileges: tuple[str, ...]) -> frozenset[str]:
        if self.privileges == ALL:
            return frozenset(all_privileges)
        return frozenset(p.upper() for p in self.privileges)


@dataclass(frozen=True)
class Declared:
    """Everything the chat system declares besides its tables."""

    policies: tuple[Policy, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    functions: tuple[Function, ...] = ()
    grants: tuple[Grant, ...] = ()
    # Tables with row level security enabled.
    row_level_security: frozenset[str] = frozenset()
    # The publication Supabase Realtime reads, and the chat tables that are its members.
    publication: str = "supabase_realtime"
    publication_tables: frozenset[str] = frozenset()

    @property
    def granted_roles(self) -> tuple[str, ...]:
        return tuple(sorted({grant.role for grant in self.grants}))

    def tables_referenced(self) -> set[str]:
        return (
            {p.table for p in self.policies}
            | {t.table for t in self.triggers}
            | {g.table for g in self.grants}
            | set(self.row_level_security)
            | set(self.publication_tables)
        )
