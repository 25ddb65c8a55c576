"""Connecting to the database at DATABASE_URL: shared by every command.

A command that cannot reach the server fails after 10 s instead of hanging, names
itself in pg_stat_activity, and turns a failure to connect into one sentence
(:mod:`chatdb.failures`) with the password masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic.util import CommandError
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import OperationalError

from chatdb.failures import connection_failure
from chatdb.urls import database_url_from_env, mask_url

APPLICATION_NAME = "chatdb migrate"


def connect_args(url: URL, application_name: str = APPLICATION_NAME) -> dict[str, Any]:
    """psycopg2 options unless DATABASE_URL sets them: a command that cannot reach the
    server fails after 10 s instead of hanging, and names itself in pg_stat_activity."""
    defaults = {"connect_timeout": 10, "application_name": application_name}
    return {key: value for key, value in defaults.items() if key not in url.query}


@contextmanager
def connected(url: URL, application_name: str = APPLICATION_NAME) -> Iterator[Connection]:
    """A connection to ``url``; a failure to connect is a CommandError of one sentence."""
    engine = create_engine(
        url, poolclass=pool.NullPool, connect_args=connect_args(url, application_name)
    )
    try:
        try:
            connection = engine.connect()
        except OperationalError as exc:
            raise CommandError(connection_failure(url, exc)) from None
        with connection:
            yield connection
    finally:
        engine.dispose()


@contextmanager
def read_only(application_name: str) -> Iterator[tuple[Connection, str]]:
    """DATABASE_URL for the commands that only look (chatdb access, chatdb drift): a
    connection whose every transaction is READ ONLY, so PostgreSQL itself refuses any
    write, rolled back at the end; with the URL as printable (password masked)."""
    url = database_url_from_env()
    with connected(url, application_name) as connection:
        readonly = connection.execution_options(postgresql_readonly=True)
        try:
            yield readonly, mask_url(url.set(drivername="postgresql"))
        finally:
            readonly.rollback()
