"""How a migration run meets the database: from DATABASE_URL, safely, with clear failures.

env.py calls :func:`run_online` with a function that runs one attempt (configure,
one transaction, run_migrations). This module connects (refusing the transaction
pooler, :mod:`chatdb.deploy.pooler`), takes the migration lock and sets the run's timeouts
(:mod:`chatdb.deploy.locking`), retries the whole attempt when a lock was not available,
and turns every failure into one sentence (:mod:`chatdb.failures`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from alembic.util import CommandError
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from chatdb.deploy import locking
from chatdb.deploy.pooler import refuse_transaction_pooler
from chatdb.failures import connection_failure, statement_failure
from chatdb.urls import ENV_VAR, DatabaseUrlError, database_url_from_env, mask_url

OFFLINE_PLACEHOLDER_URL = "postgresql+psycopg2://offline/placeholder"
APPLICATION_NAME = "chatdb migrate"
T = TypeVar("T")


def reads_scripts_only(cmd_opts: Any, environ: dict[str, str] | None = None) -> bool:
    """True for the command-line commands that read only the revision files, when no
    DATABASE_URL is set: ``alembic history`` and a hand-written ``alembic revision``
    (not ``--autogenerate``). alembic.ini's ``revision_environment`` runs env.py for
    them (so new revisions get numbered ids), but they must not need a database.
    ``cmd_opts`` is Alembic's parsed command line (``config.cmd_opts``)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, "").strip() or cmd_opts is None:
        return False
    command = getattr(cmd_opts.cmd[0], "__name__", "")
    return command == "history" or (
        command == "revision" and not getattr(cmd_opts, "autogenerate", False)
    )


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


def run_online(
    attributes: dict[str, Any], x_args: dict[str, str], attempt: Callable[[Connection], T]
) -> T:
    """Run ``attempt`` (configure + one transaction + run_migrations) safely; see the
    module docstring. Failures become a CommandError of one sentence.

    A connection passed in ``config.attributes["connection"]`` (tests, embedding
    tools) is used as it is, once: its owner manages locks and transactions.
    """
    given = attributes.get("connection")
    if given is not None:
        return attempt(given)
    opts = locking.DeployOptions.from_x(x_args)
    try:
        url = database_url_from_env()
    except DatabaseUrlError as exc:
        raise CommandError(str(exc)) from None
    refuse_transaction_pooler(url, x_args)
    running = RunningStep()

    def fresh_attempt(connection: Connection) -> T:
        running.step = None
        return attempt(connection)

    with connected(url) as connection, running.watching():
        try:
            locking.acquire(connection, opts)
            return locking.with_lock_retries(connection, opts, fresh_attempt, lambda: running.step)
        except DBAPIError as exc:
            raise CommandError(statement_failure(exc, running.step)) from None
