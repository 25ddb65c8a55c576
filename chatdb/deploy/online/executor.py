"""How the online steps talk to the database: short locks with retries, long statements
that are watched, per-step timings, and deadlocks reported once with both sides.

Two kinds of statement:

- *catalog* statements (ADD COLUMN, ADD CONSTRAINT ... NOT VALID, CREATE TRIGGER, a
  column swap) need a strong lock for a moment. They run under a short
  ``lock_timeout`` (:data:`LOCK_TIMEOUT_MS`) so that a client never queues behind a
  waiting migration for longer than that, and a lock timeout is retried with backoff.
- *long* statements (VALIDATE CONSTRAINT, CREATE INDEX CONCURRENTLY) block no client
  but take as long as the table is large and wait for other sessions' transactions to
  end; a cancelled concurrent build leaves an INVALID index. They run without
  ``lock_timeout`` and ``statement_timeout``, and while one waits, a watcher on a
  connection of its own logs every few seconds which process it waits for.

A deadlock is not retried: it is reported once, naming the other process, its
application and its query, as PostgreSQL's error detail and pg_stat_activity give them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from chatdb.deploy import session
from chatdb.deploy.locking import Holder, shorten
from chatdb.deploy.session import DEADLOCK, LOCK_NOT_AVAILABLE
from chatdb.failures import StoppedPartWay

log = logging.getLogger("chatdb.deploy.online")

LOCK_TIMEOUT_MS = 50
LOCK_ATTEMPTS = 60
RETRY_DELAY_S = 0.05
MAX_RETRY_DELAY_S = 1.0
WATCH_EVERY_S = 5.0


class OnlineStepFailed(StoppedPartWay):
    """An online step failed; the steps committed before it are kept."""


class Executor:
    """Runs the online steps' statements on ``connection`` (in autocommit mode)."""

    def __init__(
        self,
        connection: Connection,
        *,
        open_watcher: Callable[[], Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.connection = connection
        self.open_watcher = open_watcher
        self.sleep = sleep
        self.step = "the start"
        # Statements of the online path that succeeded (each committed at once): after
        # a lost connection, whether the run had changed anything yet.
        self.committed = 0
        self._pid: int | None = None

    # ------------------------------------------------------------------ reading

    def scalar(self, sql: str, **params: object) -> Any:
        return self.connection.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: object) -> list[Any]:
        return list(self.connection.execute(text(sql), params))

    @property
    def pid(self) -> int:
        if self._pid is None:
            self._pid = int(self.scalar("SELECT pg_backend_pid()"))
        return self._pid

    # ------------------------------------------------------------------ statements

    @contextmanager
    def timed(self, what: str) -> Iterator[None]:
        """Name the step (for failures) and log how long it took."""
        self.step = what
        started = time.perf_counter()
        yield
        log.info("online: %s in %.2f s", what, time.perf_counter() - started)

    @contextmanager
    def doing(self, what: str) -> Iterator[None]:
        """Name a statement of the step while it runs; a failure names it, a success
        gives the step its name back (later failures in the step are the step's)."""
        outer, self.step = self.step, what
        yield
        self.step = outer

    def catalog(self, what: str, *statements: str) -> None:
        """Statements that need a strong lock only to change the catalog, under the short
        lock_timeout; a lock timeout is retried. Sent as one query string, which
        PostgreSQL runs as one transaction (the connection is in autocommit mode)."""
        with self.doing(what):
            self.retrying(what, lambda: session.send(self.connection, ";\n".join(statements)))

    def retrying(self, what: str, action: Callable[[], Any]) -> Any:
        """Run ``action`` under the short lock_timeout; on a lock timeout wait and try
        again, LOCK_ATTEMPTS times, then let the last error fail the run."""
        with self.short_locks():
            return self.retry_locks(what, action)

    @contextmanager
    def short_locks(self) -> Iterator[None]:
        """The session's lock_timeout is the short one inside the block (a loop of many
        statements sets it once), and deadlock_timeout shorter still: PostgreSQL cancels
        an autovacuum that blocks a waiting lock only when the waiter's deadlock check
        runs (deadlock_timeout, 1 s by default, after it starts waiting), so under a
        50 ms lock_timeout an autovacuum of the table (a large backfill starts one) would
        never be cancelled, and a catalog change would retry until it ended (43 s after
        a 3,000,000-row backfill). Best effort, as in the run's transaction: changing
        deadlock_timeout needs a superuser or GRANT SET."""
        saved = self.scalar("SELECT current_setting('deadlock_timeout')")
        with session.setting(self.connection, "lock_timeout", f"{LOCK_TIMEOUT_MS}ms"):
            self._deadlock_timeout(session.WAITING_DEADLOCK_TIMEOUT)
            try:
                yield
            finally:
                session.quietly(lambda: self._deadlock_timeout(saved), "deadlock_timeout")

    def _deadlock_timeout(self, value: str) -> None:
        session.send(
            self.connection, session.best_effort_sql("deadlock_timeout", value, local=False)
        )

    def retry_locks(self, what: str, action: Callable[[], Any]) -> Any:
        """:meth:`retrying`, for a caller that has set the short lock_timeout itself."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.guarded(action)
            except DBAPIError as exc:
                if session.sqlstate(exc) != LOCK_NOT_AVAILABLE or attempt >= LOCK_ATTEMPTS:
                    raise
                delay = min(MAX_RETRY_DELAY_S, RETRY_DELAY_S * 2 ** (attempt - 1))
                log.info(
                    "online: %s could not get its lock within %d ms (attempt %d of %d); "
                    "retrying in %.2f s",
                    what,
                    LOCK_TIMEOUT_MS,
                    attempt,
                    LOCK_ATTEMPTS,
                    delay,
                )
                self.sleep(delay)

    def long(self, what: str, sql: str) -> None:
        """A statement that blocks no client but may run and wait for long: no timeouts,
        and a watcher that says what it waits for."""
        with (
            self.doing(what),
            session.setting(self.connection, "statement_timeout", "0"),
            session.setting(self.connection, "lock_timeout", "0"),
            # One core for the build: parallel workers would take the cores the live
            # clients run on (a 2-core database answers them late while the build runs).
            session.setting(self.connection, "max_parallel_maintenance_workers", "0"),
            self._watching(what),
        ):
            self.guarded(lambda: session.send(self.connection, sql))

    def guarded(self, action: Callable[[], Any]) -> Any:
        """Run ``action``; a deadlock becomes one sentence naming both sides."""
        try:
            result = action()
        except DBAPIError as exc:
            if session.sqlstate(exc) == DEADLOCK:
                raise OnlineStepFailed(self.deadlock_sentence(exc)) from None
            raise
        self.committed += 1
        return result

    # ------------------------------------------------------------------ deadlocks

    def deadlock_sentence(self, exc: DBAPIError, where: str | None = None) -> str:
        """``where`` (default: the online step) deadlocked with whom, running what."""
        detail = getattr(getattr(exc.orig, "diag", None), "message_detail", None) or ""
        queries = dict(re.findall(r"^Process (\d+): (.*)$", detail, re.MULTILINE))
        others = sorted({int(p) for p in re.findall(r"Process (\d+)", detail)} - {self.pid})
        sides = []
        for pid in others:
            holder = self._holder(pid, queries.get(str(pid)))
            sides.append(str(holder))
        other = "; ".join(sides) or "another process (PostgreSQL gave no detail)"
        # Without the -- comments (squawk's notes) that precede some statements.
        ours = shorten(re.sub(r"--[^\n]*", "", queries.get(str(self.pid)) or exc.statement or ""))
        return (
            f"{where or self.step} deadlocked with {other}, while this run (process {self.pid}) ran: "
            f"{ours}; PostgreSQL cancelled this run's statement"
        )

    def _holder(self, pid: int, query: str | None) -> Holder:
        """The other side of a deadlock, as pg_stat_activity still shows it (if at all)."""
        try:
            row = self.connection.execute(
                text(
                    "SELECT state, query, nullif(application_name, '') FROM pg_stat_activity "
                    "WHERE pid = :pid"
                ),
                {"pid": pid},
            ).first()
        except DBAPIError:
            row = None
        state, live_query, application = row if row else (None, None, None)
        return Holder(pid, None, state, query or live_query, application)

    # ------------------------------------------------------------------ watching

    @contextmanager
    def _watching(self, what: str) -> Iterator[None]:
        if self.open_watcher is None:
            yield
            return
        stop = threading.Event()
        pid = self.pid
        thread = threading.Thread(
            target=self._watch, args=(what, pid, stop), name="chatdb-watch", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)

    def _watch(self, what: str, pid: int, stop: threading.Event) -> None:
        """Every WATCH_EVERY_S while ``pid`` waits on a lock, log who it waits for."""
        try:
            watcher = self.open_watcher()
        except Exception as exc:  # noqa: BLE001 - the watcher only informs
            log.debug("online: no watcher for %s: %s", what, exc)
            return
        started = time.monotonic()
        try:
            while not stop.wait(WATCH_EVERY_S):
                rows = watcher.execute(
                    text(
                        "SELECT a.pid, NULL, a.state, a.query, nullif(a.application_name, ''), "
                        "now() - a.xact_start "
                        "FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(:pid))"
                    ),
                    {"pid": pid},
                ).all()
                if rows:
                    waits_for = ", ".join(str(Holder(*row[:5])) for row in rows)
                    log.info(
                        "online: %s has waited %.0f s so far for %s to end its transaction",
                        what,
                        time.monotonic() - started,
                        waits_for,
                    )
        except Exception as exc:  # noqa: BLE001 - the watcher only informs
            log.debug("online: watcher for %s stopped: %s", what, exc)
        finally:
            session.quietly(watcher.close, "watcher")
