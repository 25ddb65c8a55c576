"""DATABASE_URL handling: parse, normalise to the psycopg2 driver, mask for printing.

Supabase hands out ``postgres://`` and ``postgresql://`` connection strings, often
with query parameters such as ``sslmode=require``. SQLAlchemy 2.1 maps a bare
``postgresql://`` to psycopg 3, so the driver is always named explicitly here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from chatdb.failures import BadInput

ENV_VAR = "DATABASE_URL"
DRIVERNAME = "postgresql+psycopg2"
ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg2")
LOCAL_HINT = "run `./dev up` for a local throwaway database"


class DatabaseUrlError(BadInput, ValueError):
    """DATABASE_URL is missing or cannot be used; the message is one sentence."""


def parse_database_url(raw: str) -> URL:
    """Return ``raw`` as a SQLAlchemy URL that uses psycopg2, or raise DatabaseUrlError."""
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme not in ACCEPTED_SCHEMES:
        raise DatabaseUrlError(
            f"{ENV_VAR} is malformed: expected postgresql://user:password@host:port/dbname "
            f"(or postgres://), got {mask_url_text(raw)!r}; {LOCAL_HINT}."
        )
    try:
        url = make_url(DRIVERNAME + "://" + raw.split("://", 1)[1])
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(
            f"{ENV_VAR} is malformed: could not parse {mask_url_text(raw)!r}; {LOCAL_HINT}."
        ) from None
    if not url.database and "host" not in url.query:
        raise DatabaseUrlError(
            f"{ENV_VAR} names no database ({mask_url(url)}): add /dbname, e.g. /postgres; "
            f"{LOCAL_HINT}."
        )
    return url


def database_url_from_env(environ: Mapping[str, str] | None = None) -> URL:
    """The URL from DATABASE_URL, or DatabaseUrlError naming the variable and the local way."""
    environ = os.environ if environ is None else environ
    raw = environ.get(ENV_VAR, "").strip()
    if not raw:
        raise DatabaseUrlError(
            f"{ENV_VAR} is not set: export {ENV_VAR}=postgresql://user:password@host:5432/postgres "
            f"for a real database, or {LOCAL_HINT}."
        )
    return parse_database_url(raw)


def mask_url(url: URL) -> str:
    """The URL as text with its password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def mask_url_text(raw: str) -> str:
    """Mask the password of a URL given as text, even one SQLAlchemy cannot parse."""
    if "://" not in raw:
        return raw if "@" not in raw else "***@" + raw.rsplit("@", 1)[1]
    scheme, rest = raw.split("://", 1)
    if "@" not in rest:
        return raw
    userinfo, hostpart = rest.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    masked = f"{user}:***" if ":" in userinfo else user
    return f"{scheme}://{masked}@{hostpart}"


def libpq_url(url: URL) -> str:
    """The URL in the plain ``postgresql://`` form that psql and libpq understand."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
