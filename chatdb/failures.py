"""Turn database exceptions into one clear sentence for an operator.

Alembic's command line prints a ``CommandError`` as ``FAILED: <message>`` and exits
with status 255, without a traceback (``alembic --raiseerr`` shows it). Everything a
migration run can hit is converted to such a sentence here (lock timeouts in
:mod:`chatdb.deploy.locking`): what failed, where, and what to do.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from chatdb.urls import mask_url

# (regular expression on the lower-cased driver message, hint); the first match wins.
_CONNECT_HINTS = (
    ("connection refused", "nothing listens there; check host and port, or start the server"),
    ("could not translate host name", "the host name is unknown; check the host in DATABASE_URL"),
    ("name or service not known", "the host name is unknown; check the host in DATABASE_URL"),
    (
        "temporary failure in name resolution",
        "the host name could not be resolved (DNS); check the host and this machine's network",
    ),
    ("password authentication failed", "the password was refused; check the credentials"),
    ("no password supplied", "the server wants a password; put it in DATABASE_URL"),
    (
        "no encryption",
        (
            "the server accepts only SSL connections; remove sslmode=disable from "
            "DATABASE_URL (or set sslmode=require)"
        ),
    ),
    (
        "no pg_hba.conf entry",
        (
            "the server does not admit this user, database or address; "
            "check them, or ask the database's administrator"
        ),
    ),
    (
        r'database ".*" does not exist',
        (
            "the database does not exist; check its name at the end "
            "of DATABASE_URL (Supabase's is postgres)"
        ),
    ),
    (r'role ".*" does not exist', "the role does not exist; check the user name in DATABASE_URL"),
    (
        "permission denied for database",
        ("this role may not connect to the database; grant it CONNECT or use another role"),
    ),
    (
        "server does not support ssl",
        (
            "DATABASE_URL requires SSL (sslmode=require) but the "
            "server does not offer it; use the server's SSL port, or drop sslmode for a local server"
        ),
    ),
    ("ssl", "the server's SSL requirement was not met; add ?sslmode=require to DATABASE_URL"),
    ("timeout expired", "the server did not answer in time; check the address and firewall"),
)

# What to do after a statement failed, by SQLSTATE (or its class, the first two characters).
_STATEMENT_HINTS = {
    "42501": "connect as a role that may create in schema public and owns the chat tables "
    "(postgres on Supabase), or grant the missing privilege",
    "57014": "a statement ran longer than statement_timeout or was cancelled; re-run at a "
    "quieter time or raise -x statement_timeout",
    "40P01": "it deadlocked with another session's transaction; re-run",
    "53": "the server ran out of a resource (disk, memory or connections); free it and re-run",
    "08": "the connection to the server was lost; check the server and re-run",
}
_DEFAULT_STATEMENT_HINT = "fix the cause named above and re-run"


def first_line(exc: BaseException) -> str:
    """The first line of the driver's message, without PostgreSQL's ERROR: prefix."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    line = text[0] if text else type(original).__name__
    return line.removeprefix("ERROR:").strip()


def connection_failure(url: URL, exc: BaseException) -> str:
    """One sentence for a failed connection attempt."""
    message = str(getattr(exc, "orig", None) or exc).lower()
    hint = next((h for needle, h in _CONNECT_HINTS if re.search(needle, message)), "see the reason")
    return f"Cannot connect to {mask_url(url)}: {hint} ({first_line(exc)}); nothing was changed."


def statement_hint(exc: DBAPIError) -> str:
    code = getattr(exc.orig, "pgcode", None) or ""
    return _STATEMENT_HINTS.get(code) or _STATEMENT_HINTS.get(code[:2]) or _DEFAULT_STATEMENT_HINT


def shown_statement(exc: DBAPIError, limit: int = 160) -> str:
    """The failed statement on one line, without its -- comments (lint annotations and
    the like). For a DO block, the statement inside it that failed, as PL/pgSQL reports
    it in the error's context, says more than the block's first words."""
    statement = " ".join(re.sub(r"--[^\n]*", "", exc.statement or "").split())
    context = getattr(getattr(exc.orig, "diag", None), "context", None) or ""
    inner = re.findall(
        r'SQL statement "((?:(?!SQL statement ").)*)"\nPL/pgSQL function inline_code_block',
        context,
        re.DOTALL,
    )
    if statement.upper().startswith("DO ") and inner:
        statement = "DO block, at " + " ".join(inner[-1].split())
    return statement if len(statement) <= limit else statement[: limit - 3] + "..."


def statement_failure(exc: DBAPIError, step: str | None) -> str:
    """One sentence for a statement that failed during a migration run.

    ``step`` is Alembic's short description of the running step, e.g.
    ``upgrade 004 -> 008``.
    """
    where = f"Migration step ({step})" if step else "The migration run"
    return (
        f"{where} failed: {first_line(exc)} (statement: {shown_statement(exc)}); "
        f"the run was rolled back and the database is as it was: {statement_hint(exc)}."
    )
