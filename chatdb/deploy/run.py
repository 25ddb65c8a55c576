"""One attempt of a run: what it knows, and the checks it makes before it commits.

env.py drives an attempt (chatdb.deploy.runtime makes it, retries it after a lock
timeout):

    run.prepare(context)              # before the transaction: access snapshot, pass 1
    context.configure(..., **run.context_options())
    with context.begin_transaction():
        context.run_migrations()      # pass 2
        run.before_commit()           # data-loss and access guards (chatdb plan: report)
        <reload NOTIFY>

Only upgrades and downgrades are checked; other commands that run env.py (check,
revision --autogenerate, chatdb drift) compare and change nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from chatdb.deploy import data_loss, options, session, widening
from chatdb.deploy.online import prepare
from chatdb.deploy.online.executor import Executor, OnlineStepFailed
from chatdb.deploy.online.settings import OnlineOptions
from chatdb.deploy.online.state import DEPLOY, PLAN, RunState
from chatdb.failures import first_line

log = logging.getLogger("chatdb.deploy.run")

CHANGING_COMMANDS = ("upgrade", "downgrade")


class Run:
    """One attempt of ``alembic upgrade``/``downgrade`` (or of ``chatdb plan``)."""

    def __init__(
        self,
        connection: Connection,
        x_args: Mapping[str, str],
        *,
        plan: Any = None,
        current_step: Callable[[], str | None] = lambda: None,
        open_watcher: Callable[[], Any] | None = None,
    ) -> None:
        self.connection = connection
        self.plan = plan
        self.online = RunState(connection, OnlineOptions.from_x(x_args), plan_only=plan is not None)
        self.data_loss = data_loss.Recorder(options.flag(x_args, data_loss.OVERRIDE), current_step)
        self.access = widening.Guard(options.flag(x_args, widening.OVERRIDE))
        self.executor = Executor(connection, open_watcher=open_watcher)
        self.active = False
        # Where the attempt is, for a failure's sentence: prepare (reading, before pass 1),
        # online (pass 1), transaction (pass 2), commit (guards passed, the reload NOTIFY
        # and COMMIT follow).
        self.stage = "prepare"
        self._transaction_started = time.perf_counter()

    def context_options(self) -> dict[str, Any]:
        """Options for ``context.configure``: the operations of chatdb.deploy.online.ops
        and the drops of chatdb.deploy.data_loss find this run's state there."""
        return {"chatdb_online": self.online, "chatdb_data_loss": self.data_loss}

    # ------------------------------------------------------------------ before

    def prepare(self, env_context: Any) -> None:
        """Before the run's transaction: what the API roles can do now, then pass 1."""
        fn = prepare.command_function(env_context)
        self.active = getattr(fn, "__name__", "") in CHANGING_COMMANDS
        if not self.active:
            self.online = None  # type: ignore[assignment]
            return
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
                prepare.run(steps, self.online, self.executor)
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

    # ------------------------------------------------------------------ before commit

    def before_commit(self) -> None:
        """Inside the transaction, last: refuse a run that drops values or widens
        access (unless allowed); for chatdb plan, report and roll back."""
        if not self.active:
            return
        if self.plan is not None:
            self.plan.after(self)
        self.data_loss.check()
        self.access.check(self.connection)
        if self.plan is not None:
            self.plan.succeeded(self)
        self.stage = "commit"
        log.info(
            "the run's transaction reached its commit in %.3f s (its locks are held until then)",
            time.perf_counter() - self._transaction_started,
        )


def online_failure(sentence: str) -> str:
    return (
        f"Migration step (online, before the run's transaction) failed: {sentence}; the "
        "online steps committed before it are kept (they commit one by one): fix the cause "
        "and re-run `alembic upgrade head` to finish."
    )
