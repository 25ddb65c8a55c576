"""The connection a migration run uses: from DATABASE_URL, with clear failures.

env.py calls :func:`migration_connection`; everything it needs to know about URLs
and failures lives here and in :mod:`chatdb.urls` / :mod:`chatdb.failures`.
"""

from __future__ import annotations

import logging

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic.util import CommandError
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from chatdb.failures import connection_failure, statement_failure
from chatdb.urls import DatabaseUrlError, database_url_from_env

OFFLINE_PLACEHOLDER_URL = "postgresql+psycopg2://offline/placeholder"


def offline_url() -> str:
    """URL for ``--sql`` mode: only the dialect matters, so DATABASE_URL is optional."""
    try:
        return database_url_from_env().render_as_string(hide_password=False)
    except DatabaseUrlError:
        return OFFLINE_PLACEHOLDER_URL


class RunningStep(logging.Handler):
    """Remembers the step Alembic announced last ("Running upgrade 004 -> 008, ..."),
    so that a failure can name the revision it happened in."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.step: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Running %s" and record.args:
            self.step = getattr(record.args[0], "short_log", str(record.args[0]))

    @contextmanager
    def watching(self) -> Iterator[None]:
        logger = logging.getLogger("alembic.runtime.migration")
        previous_level = logger.level
        logger.addHandler(self)
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(self)
            logger.setLevel(previous_level)


@contextmanager
def migration_connection(attributes: dict[str, Any]) -> Iterator[Connection]:
    """Yield the connection to migrate with; translate failures into CommandError.

    A connection passed in ``config.attributes["connection"]`` (tests, embedding
    tools) is used as it is; otherwise one is opened from DATABASE_URL.
    """
    given = attributes.get("connection")
    if given is not None:
        yield given
        return
    try:
        url = database_url_from_env()
    except DatabaseUrlError as exc:
        raise CommandError(str(exc)) from None
    engine = create_engine(url, poolclass=pool.NullPool)
    running = RunningStep()
    try:
        try:
            connection = engine.connect()
        except OperationalError as exc:
            raise CommandError(connection_failure(url, exc)) from None
        with connection, running.watching():
            try:
                yield connection
            except DBAPIError as exc:
                raise CommandError(statement_failure(exc, running.step)) from None
    finally:
        engine.dispose()
