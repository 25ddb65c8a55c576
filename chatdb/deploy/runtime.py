"""How a migration run meets the database: from DATABASE_URL, safely, with clear failures.

env.py calls :func:`run_online` with a function that runs one attempt (configure,
one transaction, run_migrations). This module connects (refusing the transaction
pooler, :mod:`chatdb.deploy.pooler`), takes the migration lock and sets the run's timeouts
(:mod:`chatdb.deploy.locking`), retries the whole attempt when a lock was not available,
and turns every failure into one sentence of its kind (:mod:`chatdb.failures`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from chatdb import database
from chatdb.database import APPLICATION_NAME, Target, connect_args, connected
from chatdb.deploy import locking, session
from chatdb.deploy.pooler import refuse_transaction_pooler
from chatdb.deploy.run import Run
from chatdb.deploy.run_options import RunOptions
from chatdb.failures import RolledBack, StoppedPartWay, first_line, statement_failure
from chatdb.urls import ENV_VAR, DatabaseUrlError, database_url_from_env

OFFLINE_PLACEHOLDER_URL = "postgresql+psycopg2://offline/placeholder"
T = TypeVar("T")


def reads_scripts_only(cmd_opts: Any, environ: dict[str, str] | None = None) -> bool:
    """True for the command-line commands that read only the revision files, when no
    DATABASE_URL is set: ``alembic history`` and a hand-written ``alembic revision``
    (not ``--autogenerate``). alembic.ini's ``revision_environment`` runs env.py for
    them (so new revisions get numbered ids), but they must not need a database.
    ``cmd_opts`` is Alembic's parsed command line (``config.cmd_opts``)."""
    environ = os.environ if environ is None else environ
    cmd = getattr(cmd_opts, "cmd", None)  # None through Alembic's Python API
    if environ.get(ENV_VAR, "").strip() or not cmd:
        return False
    command = getattr(cmd[0], "__name__", "")
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
            self.step = named_base(getattr(record.args[0], "short_log", str(record.args[0])))

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


def named_base(short_log: str) -> str:
    """Alembic's short description of a step, with base named where it leaves a blank:
    "upgrade  -> 000" is "upgrade base -> 000", "downgrade 000 -> " is "... -> base"."""
    return re.sub(r" -> $", " -> base", re.sub(r"^(\S+)  -> ", r"\1 base -> ", short_log))


def run_online(
    attributes: dict[str, Any],
    options: RunOptions,
    attempt: Callable[[Connection, Run], T],
) -> T:
    """Run ``attempt`` (prepare, configure, one transaction, run_migrations) safely; see
    the module docstring. Failures become a :class:`chatdb.failures.Failure` of one
    sentence, of their kind.

    ``config.attributes["connection"]`` may hold what an embedding tool passes: a
    Connection (tests, Alembic's cookbook) is used as it is, once: its owner manages
    locks and transactions; an Engine (pytest-alembic's convention) names the database,
    which the run then connects to as a deploy does (migration lock, timeouts, retries).
    Otherwise the database is ``config.attributes["target"]`` (a
    :class:`chatdb.database.Target`: chatdb up passes the local cluster), else
    DATABASE_URL.
    """
    given = attributes.get("connection")
    if isinstance(given, Connection):
        return attempt(given, Run(given, options))
    opts = options.deploy
    target: Target = (
        database.engine_target(given)
        if isinstance(given, Engine)
        else attributes.get("target") or database.from_env()
    )
    url = target.url
    refuse_transaction_pooler(url, options.allow_transaction_pooler)
    running = RunningStep()
    runs: list[Run] = []

    def fresh_attempt(connection: Connection) -> T:
        running.step = None
        run = Run(
            connection,
            options,
            plan=attributes.get("plan"),
            current_step=lambda: running.step,
            set_step=lambda step: setattr(running, "step", step),
            open_watcher=lambda: _watcher(url),
        )
        runs.append(run)
        try:
            return attempt(connection, run)
        finally:
            run.close()

    with connected(target) as connection, running.watching():
        try:
            locking.acquire(connection, opts)
            try:
                return locking.with_lock_retries(
                    connection, opts, fresh_attempt, lambda: running.step
                )
            finally:
                locking.release(connection)
        except DBAPIError as exc:
            if session.is_disconnect(exc):
                raise StoppedPartWay(
                    lost_server(exc, runs[-1] if runs else None, running.step)
                ) from None
            if runs and session.sqlstate(exc) == session.DEADLOCK:
                raise RolledBack(deadlock_failure(exc, runs[-1], running.step)) from None
            raise RolledBack(statement_failure(exc, running.step)) from None


def _watcher(url: URL) -> Connection:
    """A connection of its own for the online path's watcher (autocommit, read only)."""
    engine = create_engine(
        url,
        poolclass=pool.NullPool,
        connect_args=connect_args(url, f"{APPLICATION_NAME} (watch)"),
        isolation_level="AUTOCOMMIT",
    )
    return engine.connect()


def deadlock_failure(exc: DBAPIError, run: Run, step: str | None) -> str:
    """One sentence for a run's transaction that PostgreSQL cancelled to break a
    deadlock: both sides named (asked once the run has rolled back and let go of the
    migration lock, while the other side is usually still there)."""
    where = f"Migration step ({step})" if step else "The migration run"
    return (
        f"{run.executor.deadlock_sentence(exc, where)}; the run was rolled back and the "
        "database is as it was: end or wait out that transaction, then re-run."
    )


def lost_server(exc: DBAPIError, run: Run | None, step: str | None) -> str:
    """One sentence for a run whose server went away (a crash, a failover, a cut
    connection): where, what was kept, and that a re-run finishes the job."""
    reason = first_line(exc)
    if run is None:
        where, kept = "while it waited for the migration lock", "nothing was changed"
    elif run.stage == "prepare":
        where, kept = "while it read the database, before changing it", "nothing was changed"
    elif run.stage == "online":
        where = f"during the online step {run.executor.step}"
        kept = (
            "the online work committed before it is kept (each online statement, and each "
            "batch of a backfill, commits as it goes)"
            if run.executor.committed
            else "nothing was changed"
        )
    elif run.stage == "commit" and (exc.statement or "").startswith("NOTIFY"):
        where = "while it sent the PostgREST reload NOTIFY, before its COMMIT"
        kept = "the run's transaction was rolled back, so nothing of it was kept"
    elif run.stage == "commit":
        where = "while the run's transaction committed"
        kept = "whether that commit happened is unknown (both are safe)"
    else:
        where = f"in the run's transaction ({step or 'before the first revision'})"
        kept = "the transaction was rolled back, so nothing of it was kept"
    if run is not None and run.stage != "online" and run.executor.committed:
        kept += "; the online steps it committed before that transaction are kept"
    return (
        f"The server went away {where} ({reason}); {kept}: re-run `alembic upgrade head` "
        "once the server is back; it finishes the job (or finds nothing to do)."
    )
