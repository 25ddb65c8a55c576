"""Keep a deploy from colliding with another deploy or stalling live traffic.

- The migration lock: a session-level advisory lock on :data:`LOCK_KEY`, taken right
  after connecting and before Alembic reads the version table. Concurrent deploys
  (several replicas running ``alembic upgrade head``) queue on it, so each revision is
  applied once. A waiting run polls ``pg_try_advisory_lock`` in autocommit, holding
  no transaction and no snapshot (it must never hold up the deploy that works, whose
  concurrent index builds wait for old snapshots); it logs the holder, and waits at
  most ``-x migration_lock_wait``. The lock goes with the session: it is released
  when the run closes its connection, or when the process dies.
- The run's timeouts, set at session level once the lock is held: ``lock_timeout``
  (a DDL statement that queues behind a long transaction makes every live query on
  that table queue behind it, so it gives up quickly) and ``statement_timeout``.
  ``client_connection_check_interval`` makes the server end the session of a deploy
  that died mid-statement, instead of holding its locks until the statement ends.
- Lock retries: a run whose statement hit lock_timeout (SQLSTATE 55P03) has been
  rolled back whole; it is retried from the start, with backoff, ``-x lock_retries``
  times. Then it fails naming the table and the process that holds it.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from chatdb.deploy import options, session
from chatdb.deploy.options import Duration
from chatdb.failures import Refused, RolledBack

log = logging.getLogger("chatdb.deploy.locking")

# One fixed bigint for every deploy of this project ("chatdbmg" read as 8 bytes).
# Advisory locks are per database, so deploys to other databases never wait on it.
LOCK_KEY = int.from_bytes(b"chatdbmg", "big")
CLIENT_CHECK_INTERVAL = "2s"
# A waiting deploy polls the lock every 0.2-0.4 s and says it still waits every 30 s.
POLL_S = 0.2
REPORT_EVERY_S = 30.0
MAX_BACKOFF_S = 30.0

TRY_LOCK = "SELECT pg_try_advisory_lock(:key)"
# The polls of a deploy that waits, once it has said whom for: pg_stat_activity shows a
# waiting deploy by this query (its last one, between polls).
WAITING_POLL = "SELECT pg_try_advisory_lock(:key) /* chatdb: waiting for the migration lock */"

DEFAULTS = {
    "lock_timeout": "5s",
    "statement_timeout": "1min",
    "migration_lock_wait": "10min",
    "lock_retry_delay": "1s",
}
DEFAULT_LOCK_RETRIES = 3

T = TypeVar("T")


@dataclass(frozen=True)
class DeployOptions:
    """The run's ``-x`` options about locks and time (see docs/deploying.md)."""

    lock_timeout: Duration
    statement_timeout: Duration
    migration_lock_wait: Duration
    lock_retries: int
    lock_retry_delay: Duration

    @classmethod
    def from_x(cls, x_args: dict[str, str]) -> DeployOptions:
        durations = {name: options.duration(x_args, name, dflt) for name, dflt in DEFAULTS.items()}
        retries = options.count(x_args, "lock_retries", DEFAULT_LOCK_RETRIES)
        return cls(lock_retries=retries, **durations)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2, ...): doubling, capped."""
        return min(self.lock_retry_delay.seconds * 2 ** (retry - 1), MAX_BACKOFF_S)


@dataclass(frozen=True)
class Holder:
    """Another session holding a lock, as pg_locks and pg_stat_activity show it."""

    pid: int
    mode: str | None
    state: str | None
    query: str | None
    application: str | None

    def __str__(self) -> str:
        details = [
            f"application {self.application!r}" if self.application else "",
            self.state or "",
            f"query: {shorten(self.query)}" if visible(self.query) else "",
        ]
        shown = ", ".join(d for d in details if d)
        return f"process {self.pid}" + (f" ({shown})" if shown else "")


@dataclass(frozen=True)
class LockConflict:
    """What a statement that hit lock_timeout was waiting for, looked up after the fact."""

    table: str | None
    holders: list[Holder]


def visible(query: str | None) -> bool:
    """pg_stat_activity hides other roles' queries unless we may read all stats."""
    return bool(query) and query != "<insufficient privilege>"


def shorten(sql: str | None, limit: int = 120) -> str:
    flat = " ".join((sql or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def is_lock_timeout(exc: BaseException) -> bool:
    return session.sqlstate(exc) == session.LOCK_NOT_AVAILABLE


_HOLDERS_SQL = """
    SELECT l.pid, l.mode, a.state, a.query, nullif(a.application_name, '')
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.granted AND l.pid <> pg_backend_pid()
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND {where}
    ORDER BY l.pid
"""


def lock_holders(connection: Connection) -> list[Holder]:
    """The sessions holding the migration lock (none when it was just released)."""
    sql = _HOLDERS_SQL.format(
        where="l.locktype = 'advisory' AND l.classid::bigint = :hi "
        "AND l.objid::bigint = :lo AND l.objsubid = 1"
    )
    rows = connection.execute(text(sql), {"hi": LOCK_KEY >> 32, "lo": LOCK_KEY & 0xFFFFFFFF})
    return [Holder(*row) for row in rows]


def _candidate_relations(exc: DBAPIError) -> list[str]:
    """Names the failed statement (and the error's context) mention, in order."""
    orig = getattr(exc, "orig", None)
    context = getattr(getattr(orig, "diag", None), "context", None) or ""
    names = re.findall(r'relation "([^"]+)"', context)
    names += re.findall(r"[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)?", exc.statement or "")
    return list(dict.fromkeys(names))


def conflict_of(connection: Connection, exc: DBAPIError) -> LockConflict:
    """The first table the failed statement names on which another session holds a lock,
    and those sessions. Run it right after the failure, while the blocker still holds it."""
    sql = text(
        """
        SELECT format('%I.%I', n.nspname, c.relname), t.ord
        FROM unnest(:names) WITH ORDINALITY AS t(name, ord)
        JOIN pg_class c ON c.oid = to_regclass(t.name)
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
        ORDER BY t.ord
        """
    ).bindparams(bindparam("names", type_=ARRAY(TEXT)))
    tables = [row[0] for row in connection.execute(sql, {"names": _candidate_relations(exc)})]
    for table in dict.fromkeys(tables):
        holders_sql = _HOLDERS_SQL.format(where="l.relation = CAST(:table AS regclass)")
        holders = [Holder(*row) for row in connection.execute(text(holders_sql), {"table": table})]
        if holders:
            return LockConflict(table, holders)
    return LockConflict(tables[0] if tables else None, [])


def _set_client_check(connection: Connection) -> None:
    """Best effort: PostgreSQL 14+ on Linux/macOS; some hosts make it read-only."""
    connection.execute(
        text(f"""
        DO $$
        BEGIN
          PERFORM set_config('client_connection_check_interval', '{CLIENT_CHECK_INTERVAL}', false);
        EXCEPTION WHEN OTHERS THEN
          NULL;
        END $$""")
    )


def timeout_statements(opts: DeployOptions) -> list[str]:
    """The run's timeouts as SET statements: sent once the lock is held, and written at
    the top of a ``--sql`` script so that whoever runs the script gets them too."""
    return [
        f"SET lock_timeout = {opts.lock_timeout.sql}",
        f"SET statement_timeout = {opts.statement_timeout.sql}",
    ]


def acquire(
    connection: Connection,
    opts: DeployOptions,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Take the migration lock, waiting for another deploy if need be, then set the run's
    timeouts.

    The wait polls ``pg_try_advisory_lock`` in autocommit: between polls the session
    holds no transaction and no snapshot, so nothing a waiting deploy does can hold up
    the deploy that has the lock (CREATE INDEX CONCURRENTLY waits for every transaction
    older than its snapshot; a waiter blocked in ``pg_advisory_lock`` inside a
    transaction is one, and the two would wait for each other for ever)."""
    key = {"key": LOCK_KEY}

    def try_lock(sql: str = TRY_LOCK) -> bool:
        return bool(connection.execute(text(sql), key).scalar())

    with session.autocommit(connection):
        if not try_lock():
            holders = lock_holders(connection)
            log.info(
                "Another deploy holds the migration lock%s; waiting for it, at most %s "
                "(-x migration_lock_wait)",
                held_by(holders),
                opts.migration_lock_wait,
            )
            started = last_report = clock()
            while not try_lock(WAITING_POLL):
                now = clock()
                if opts.migration_lock_wait.ms and now - started > opts.migration_lock_wait.seconds:
                    raise Refused(lock_wait_failure(opts, lock_holders(connection)))
                if now - last_report >= REPORT_EVERY_S:
                    last_report = now
                    log.info(
                        "Still waiting for the migration lock after %.0f s%s",
                        now - started,
                        held_by(lock_holders(connection)),
                    )
                sleep(POLL_S + random.uniform(0, POLL_S))
            log.info("Migration lock acquired: the other deploy finished")
        for statement in timeout_statements(opts):
            connection.execute(text(statement))
        _set_client_check(connection)


def release(connection: Connection) -> None:
    """Let the next deploy in at once: the lock would also go with the session, but a
    session ends a moment after its client closes it. Quiet on a dead connection."""

    def unlock() -> None:
        if connection.in_transaction():
            connection.rollback()
        with session.autocommit(connection):
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})

    session.quietly(unlock, "migration lock")


def with_lock_retries(
    connection: Connection,
    opts: DeployOptions,
    attempt: Callable[[Connection], T],
    current_step: Callable[[], str | None],
) -> T:
    """Run ``attempt`` (a whole migration run in one transaction); when one of its
    statements hits lock_timeout, run it again from the start, at most lock_retries times."""
    retry = 0
    while True:
        try:
            return attempt(connection)
        except DBAPIError as exc:
            if not is_lock_timeout(exc):
                raise
            step = current_step()
            if connection.in_transaction():
                connection.rollback()
            conflict = conflict_of(connection, exc)
            connection.rollback()
            if retry >= opts.lock_retries:
                raise RolledBack(lock_failure(step, conflict, opts, retry + 1)) from None
            retry += 1
            delay = opts.backoff(retry)
            log.warning(
                "%s; the run was rolled back, retry %d of %d in %.1fs",
                blocked_sentence(step, conflict, opts),
                retry,
                opts.lock_retries,
                delay,
            )
            time.sleep(delay)


def blocked_sentence(step: str | None, conflict: LockConflict, opts: DeployOptions) -> str:
    where = f"Migration step ({step})" if step else "The migration run"
    what = f"table {conflict.table}" if conflict.table else "a lock it needs"
    sentence = f"{where} could not lock {what} within lock_timeout={opts.lock_timeout}"
    if conflict.holders:
        first, *others = conflict.holders
        more = f" and {len(others)} other process(es)" if others else ""
        sentence += f": {first}{more} holds it"
    elif conflict.table:
        sentence += " (the process that held it has let go since)"
    return sentence


def lock_failure(
    step: str | None, conflict: LockConflict, opts: DeployOptions, attempts: int
) -> str:
    """The one sentence of a run that never got its lock."""
    return (
        f"{blocked_sentence(step, conflict, opts)} (gave up after {attempts} attempt(s)); "
        "the run was rolled back and the database is as it was: end or wait out that "
        "transaction and re-run, or raise -x lock_timeout / -x lock_retries."
    )


def held_by(holders: list[Holder]) -> str:
    return f": {', '.join(map(str, holders))}" if holders else ""


def lock_wait_failure(opts: DeployOptions, holders: list[Holder]) -> str:
    return (
        "Another deploy held the migration lock for longer than "
        f"migration_lock_wait={opts.migration_lock_wait}{held_by(holders)}; nothing was "
        "changed: let it finish (or end it) and re-run, or raise -x migration_lock_wait."
    )
