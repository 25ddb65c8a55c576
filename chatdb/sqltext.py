"""SQL written as text: string literals, identifiers, and sending text as written.

Shared by the deploy (chatdb.deploy.session) and the calls check (chatdb.calls), which
write statements with their values in them, several to a query string.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection


def literal(value: str) -> str:
    """``value`` as a PostgreSQL string literal, whatever standard_conforming_strings is
    (an ``E''`` literal when it holds a backslash)."""
    if "\\" in value:
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + value.replace("'", "''") + "'"


def identifier(name: str) -> str:
    """``name`` as a quoted PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def send(connection: Connection, sql: str) -> Any:
    """Send ``sql`` (one statement or several) as written, without a parameter
    collection, so that a ``%`` in it (LIKE 'a%') is not taken for a placeholder."""
    return connection.exec_driver_sql(sql, execution_options={"no_parameters": True})
