"""One attempt of a run: what it knows, and the checks it makes before it commits.

env.py drives an attempt (chatdb.deploy.runtime makes it, retries it after a lock
timeout):

    run.prepare(context)              # before the transaction: the backend's calls and the
                                      # access matrix as they are, then pass 1
    context.configure(..., **run.context_options())
    with context.begin_transaction():
        context.run_migrations()      # pass 2
        <reload NOTIFY>
        run.before_commit()           # data-loss, access and calls guards (chatdb plan: report)

Only upgrades and downgrades are checked; other commands that run env.py (check,
revision --autogenerate, chatdb drift) compare and change nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from chatdb.deploy import batching, calls_guard, data_loss, rewrites, session, widening
from chatdb.deploy.online import prepare
from chatdb.deploy.online.executor import Executor, OnlineStepFailed
from chatdb.deploy.online.state import DEPLOY, PLAN, RunState
from chatdb.deploy.online.steps import qualified
from chatdb.deploy.run_options import RunOptions
from chatdb.failures import first_line

log = logging.getLogger("chatdb.deploy.run")

CHANGING_COMMANDS = ("upgrade", "downgrade")
# One attempt at the run's table locks waits this long (see Run.lock_tables).
LOCK_ATTEMPT_MS = 50


class Run:
    """One attempt of ``alembic upgrade``/``downgrade`` (or of ``chatdb plan``)."""

    def __init__(
        self,
        connection: Connection,
        options: RunOptions,
        *,
        plan: Any = None,
        current_step: Callable[[], str | None] = lambda: None,
        set_step: Callable[[str | None], None] = lambda step: None,
        open_watcher: Callable[[], Any] | None = None,
    ) -> None:
        self.connection = connection
        self.options = options
        self.deploy_options = options.deploy
        self.current_step, self.set_step = current_step, set_step
        self.batch: batching.StatementBatch | None = None
        self.plan = plan
        self.online = RunState(connection, options.online, plan_only=plan is not None)
        self.data_loss = data_loss.Recorder(options.allow_data_loss, current_step)
        # chatdb plan measures the values each backfill changes (chatdb.deploy.rewrites).
        self.rewrites = rewrites.Recorder(current_step) if plan is not None else None
        self.access = widening.Guard(options.allow_wider_access)
        self.calls = calls_guard.Guard.of(options)
        self.executor = Executor(connection, open_watcher=open_watcher)
        self.active = False
        self.applied = True  # whether the run applied a revision (before_commit says)
        # Where the attempt is, for a failure's sentence: prepare (reading, before pass 1),
        # online (pass 1), transaction (pass 2), commit (guards passed, the reload NOTIFY
        # and COMMIT follow).
        self.stage = "prepare"
        self._transaction_started = time.perf_counter()

    def context_options(self) -> dict[str, Any]:
        """Options for ``context.configure``: the operations of chatdb.deploy.online.ops
        and the drops of chatdb.deploy.data_loss find this run's state there."""
        return {
            "chatdb_online": self.online,
            "chatdb_data_loss": self.data_loss,
            "chatdb_rewrites": self.rewrites,
        }

    # ------------------------------------------------------------------ before

    def prepare(self, env_context: Any) -> None:
        """Before the run's transaction: what the API roles can do now, then pass 1."""
        fn = prepare.command_function(env_context)
        self.active = getattr(fn, "__name__", "") in CHANGING_COMMANDS
        if not self.active:
            self.online = None  # type: ignore[assignment]
            return
        # The backend's calls, run before anything changes (in a transaction of their
        # own, rolled back): what works now must work after the run.
        self.calls.snapshot(self.connection)
        # Everything before the run's transaction runs in autocommit: no transaction (and
        # no snapshot) is held, and Alembic then begins the run's own transaction.
        with session.autocommit(self.connection):
            self.access.snapshot(self.connection)
            steps = prepare.collect(env_context, self.online)
            if self.plan is not None:
                self.online.phase = PLAN
                self.plan.before(self, steps)
                self.stage = "transaction"
                return
            self.stage = "online"
            try:
                prepare.run_rounds(env_context, steps, self.online, self.executor)
            except OnlineStepFailed as exc:
                raise OnlineStepFailed(online_failure(str(exc))) from None
            except DBAPIError as exc:
                if session.is_disconnect(exc):
                    raise
                raise OnlineStepFailed(
                    online_failure(f"at {self.executor.step}: {first_line(exc)}")
                ) from None
            if steps:
                self.access.check(self.connection, "after its online steps")
        self.online.phase = DEPLOY
        self.stage = "transaction"
        self._transaction_started = time.perf_counter()

    def lock_tables(self) -> None:
        """First in the run's transaction: lock every existing table its revisions work
        on, in ACCESS EXCLUSIVE mode, before any of their statements.

        Each attempt waits at most LOCK_ATTEMPT_MS, so that the clients that queue behind
        a waiting lock wait no longer than that; attempts go on until the run's
        lock_timeout has passed, then the lock timeout fails the attempt as any other
        would (the run retries it whole, -x lock_retries). While an attempt waits,
        deadlock_timeout is low, so that an autovacuum holding the table (a large
        backfill makes one start) is cancelled at once instead of after a second
        (best effort: changing it needs a superuser, or GRANT SET); an attempt that
        deadlocks with a client (it holds one table and waits for the other) lets go
        and tries again, like one that timed out. Once the locks are
        held, the run's statements never wait, and its transaction is short."""
        if not self.active or self.online is None:
            return
        tables = [t for t in self.online.estimates if self.online.estimate(t) is not None]
        if not tables:
            return
        names = ", ".join(qualified(t) for t in tables)
        self.set_step(f"locking {names}")
        budget = self.deploy_options.lock_timeout.seconds or float("inf")
        started = time.monotonic()
        conn = self.connection
        deadlock_timeout = session.WAITING_DEADLOCK_TIMEOUT
        session.send(
            conn, session.best_effort_sql("deadlock_timeout", deadlock_timeout, local=True)
        )
        session.send(conn, f"SELECT set_config('lock_timeout', '{LOCK_ATTEMPT_MS}ms', true)")
        attempt = 0
        while True:
            attempt += 1
            try:
                session.send(
                    conn,
                    f"SAVEPOINT chatdb_lock; LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE; "
                    "RELEASE SAVEPOINT chatdb_lock",
                )
                break
            except DBAPIError as exc:
                # A deadlock: a client that holds one of the tables waits for another that this
                # attempt holds (the run lost the deadlock): the attempt lets go, as after
                # a lock timeout, and the client goes on.
                retried = (session.LOCK_NOT_AVAILABLE, session.DEADLOCK)
                if session.sqlstate(exc) not in retried or time.monotonic() - started >= budget:
                    raise
                session.send(conn, "ROLLBACK TO SAVEPOINT chatdb_lock")
                time.sleep(min(0.5, 0.01 * 2 ** min(attempt, 6)))
        session.send(
            conn,
            f"SET LOCAL lock_timeout = {self.deploy_options.lock_timeout.sql}; "
            "DO $$ BEGIN SET LOCAL deadlock_timeout TO DEFAULT; "
            "EXCEPTION WHEN OTHERS THEN NULL; END $$",
        )
        if attempt > 1:
            log.info("%s locked after %d attempt(s) of %d ms", names, attempt, LOCK_ATTEMPT_MS)
        self.set_step(None)
        self._transaction_started = time.perf_counter()

    def attach(self, env_context: Any) -> None:
        """After ``context.configure``: the run's transaction sends the revisions'
        statements in batches (chatdb.deploy.batching)."""
        if not self.active or env_context.is_offline_mode():
            return
        self.batch = batching.StatementBatch(self.connection, self.current_step, self.set_step)
        batching.attach(env_context.get_context(), self.batch)

    def close(self) -> None:
        if self.batch is not None:
            self.batch.close()

    # ------------------------------------------------------------------ before commit

    def before_commit(self, *, applied: bool = True) -> None:
        """Inside the transaction, last: send what is batched, then refuse a run that
        drops values, widens access or breaks a call of the backend (unless allowed); for
        chatdb plan, report and roll back. ``applied``: the run applied a revision."""
        if not self.active:
            return
        self.applied = applied
        if self.batch is not None:
            self.batch.send()
        if self.plan is not None:
            self.plan.after(self)
        self.data_loss.check()
        self.access.check(self.connection)
        self.calls.check(self.connection, changed=applied)
        if self.plan is not None:
            self.plan.succeeded(self)
        self.stage = "commit"
        log.info(
            "the run's transaction reached its commit in %.3f s (its locks are held until "
            "then; %d round trips saved by batching)",
            time.perf_counter() - self._transaction_started,
            self.batch.round_trips_saved if self.batch else 0,
        )


def online_failure(sentence: str) -> str:
    return (
        f"Migration step (online, before the run's transaction) failed: {sentence}; the "
        "online steps committed before it are kept (they commit one by one): fix the cause "
        "and re-run `alembic upgrade head` to finish."
    )
