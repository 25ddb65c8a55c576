"""Turn database exceptions into one clear sentence for an operator.

Alembic's command line prints a ``CommandError`` as ``FAILED: <message>`` and exits
with status 1, without a traceback (``alembic --raiseerr`` shows it). Everything a
migration run can hit is converted to such a sentence here.
"""

from __future__ import annotations

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from chatdb.urls import mask_url

_CONNECT_HINTS = (
    ("connection refused", "nothing listens there; check host and port, or start the server"),
    ("could not translate host name", "the host name is unknown; check the host in DATABASE_URL"),
    ("name or service not known", "the host name is unknown; check the host in DATABASE_URL"),
    ("password authentication failed", "the password was refused; check the credentials"),
    ("no password supplied", "the server wants a password; put it in DATABASE_URL"),
    ("does not exist", "the database or role does not exist; check the name in DATABASE_URL"),
    ("ssl", "the server's SSL requirement was not met; add ?sslmode=require to DATABASE_URL"),
    ("timeout expired", "the server did not answer in time; check the address and firewall"),
)


def first_line(exc: BaseException) -> str:
    """The first line of the driver's message, without PostgreSQL's ERROR: prefix."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    line = text[0] if text else type(original).__name__
    return line.removeprefix("ERROR:").strip()


def connection_failure(url: URL, exc: BaseException) -> str:
    """One sentence for a failed connection attempt."""
    message = str(getattr(exc, "orig", None) or exc).lower()
    hint = next((h for needle, h in _CONNECT_HINTS if needle in message), "see the reason")
    return f"Cannot connect to {mask_url(url)}: {hint} ({first_line(exc)})."


def statement_failure(exc: DBAPIError, step: str | None) -> str:
    """One sentence for a statement that failed during a migration run.

    ``step`` is Alembic's short description of the running step, e.g.
    ``upgrade 004 -> 008, fix chat_conversations customer_id``.
    """
    statement = " ".join((exc.statement or "").split())
    if len(statement) > 160:
        statement = statement[:157] + "..."
    where = f"Migration step ({step})" if step else "The migration run"
    return (
        f"{where} failed: {first_line(exc)} (statement: {statement}); "
        "the run was rolled back and the database is as it was."
    )
