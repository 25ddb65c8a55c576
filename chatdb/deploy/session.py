"""The run's database session: autocommit stretches, session settings, a lost server.

A run uses one session for everything (the migration lock is a session lock). Some of
its work must hold no transaction (waiting for the lock, the online steps, which
commit one by one), some runs in Alembic's one transaction. Settings changed for one
step are put back afterwards, and nothing here raises a second error when the server
has gone away: the first error is the one worth reporting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection

from chatdb.sqltext import literal, send  # noqa: F401 - the run's modules call session.send

log = logging.getLogger("chatdb.deploy.session")

# The SQLSTATEs a run answers by waiting or trying again.
LOCK_NOT_AVAILABLE, DEADLOCK = "55P03", "40P01"

# SQLSTATE classes and driver messages that mean the session is gone.
_LOST_CLASSES = ("08", "57P01", "57P02", "57P03")  # connection exception; admin/crash shutdown
_LOST_WORDS = (
    "server closed the connection",
    "terminating connection",
    "connection already closed",
    "could not receive data from server",
    "could not send data to server",
    "ssl syscall error",
    "connection not open",
    "no connection to the server",
    "the connection is closed",
)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of the server's error behind ``exc`` (a DBAPIError), if any."""
    return getattr(getattr(exc, "orig", None), "pgcode", None)


def is_disconnect(exc: BaseException) -> bool:
    """True when ``exc`` says the server (or the network to it) went away."""
    if getattr(exc, "connection_invalidated", False):
        return True
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "pgcode", None) or ""
    if code.startswith(_LOST_CLASSES[0]) or code in _LOST_CLASSES[1:]:
        return True
    message = str(orig).lower()
    return any(word in message for word in _LOST_WORDS)


def quietly(action, what: str) -> None:
    """Run a clean-up ``action``; on a dead (or failing) session log it and go on."""
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - clean-up must never mask the first error
        log.debug("clean-up (%s) skipped: %s", what, exc)


@contextmanager
def autocommit(connection: Connection) -> Iterator[Connection]:
    """Statements on ``connection`` commit one by one inside the block: no transaction
    (and no snapshot) is held between them. The isolation level is put back after."""
    if connection.in_transaction():
        connection.commit()
    previous = connection.get_isolation_level()
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield connection
    finally:
        # SQLAlchemy "begins" even in autocommit mode (nothing is sent to the server);
        # that logical transaction must end before the isolation level can change.
        def restore() -> None:
            if connection.in_transaction():
                connection.commit()
            connection.execution_options(isolation_level=previous)

        quietly(restore, "isolation level")


# deadlock_timeout while a lock is awaited under a short lock_timeout: PostgreSQL cancels
# an autovacuum that blocks a waiting lock only when the waiter's deadlock check runs.
WAITING_DEADLOCK_TIMEOUT = "10ms"


def best_effort_sql(name: str, value: str, *, local: bool) -> str:
    """``set_config(name, value, local)``, skipped where the role may not change the
    setting (deadlock_timeout needs a superuser or GRANT SET)."""
    return (
        f"DO $$ BEGIN PERFORM set_config({literal(name)}, {literal(value)}, "
        f"{'true' if local else 'false'}); EXCEPTION WHEN OTHERS THEN NULL; END $$"
    )


@contextmanager
def setting(connection: Connection, name: str, value: str) -> Iterator[None]:
    """Set a session setting for one step, then put the session's value back (quietly:
    on a dead session there is nothing to put back)."""
    saved = connection.execute(text("SELECT current_setting(:name)"), {"name": name}).scalar()
    connection.execute(text(f"SET {name} = {literal(value)}"))
    try:
        yield
    finally:
        quietly(lambda: connection.execute(text(f"SET {name} = {literal(saved)}")), name)
