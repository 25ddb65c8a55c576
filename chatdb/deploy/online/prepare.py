"""Pass 1 of an upgrade: the pending revisions' work on large existing tables, online,
before the run's one transaction.

Why a pass of its own: the online steps commit one by one. If they ran where their
revision sits in the run (008 after 004, say), every revision before them would have
to be committed first, and a commit in the middle of a run can expose a state the
run never means to leave: 004 re-creating public policies that 049, later in the same
run, drops again. Collected first and run first, the online steps only add columns,
fill values, validate checks and foreign keys, build indexes, convert a column's type
(a new column swapped in, values kept) and free an index name a build needs (renamed,
or dropped where it duplicates another); none of them changes what a role can do.
Everything else (policies, grants, triggers, NOT NULL) is in the run's last and only
other commit.

How: each pending revision's upgrade() runs once on a migration context whose
statements are not executed (:class:`_NotExecuted`), with the operations of
chatdb.deploy.online.ops recording an online step for each operation on a large
existing table. The steps are then ordered (steps.schedule) and run.
"""

from __future__ import annotations

import logging
from typing import Any

from alembic.ddl.postgresql import PostgresqlImpl
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from chatdb.deploy.online.executor import Executor
from chatdb.deploy.online.state import RunState
from chatdb.deploy.online.steps import Step, schedule

log = logging.getLogger("chatdb.deploy.online")


class _NotExecuted(PostgresqlImpl):
    """A migration context's implementation that executes nothing: pass 1 runs the
    revisions' code only to see which operations touch large tables."""

    def _exec(self, construct: Any, *args: Any, **kw: Any) -> None:
        return None


def command_function(env_context: Any) -> Any:
    """The function the Alembic command gave the environment: upgrade's, downgrade's,
    check's... (``fn`` of EnvironmentContext's options; env.py passes the ``context``
    module, whose ``_proxy`` is the EnvironmentContext of the running command)."""
    environment = getattr(env_context, "_proxy", env_context)
    return getattr(environment, "context_opts", {}).get("fn")


def pending_upgrade_steps(
    env_context: Any, connection: Connection
) -> tuple[MigrationContext, list]:
    """The revisions this run is about to apply (empty unless it is an upgrade), and a
    migration context on ``connection`` that executes nothing."""
    context = MigrationContext.configure(connection=connection, opts={})
    fn = command_function(env_context)
    if getattr(fn, "__name__", "") != "upgrade":
        return context, []
    steps = fn(context.get_current_heads(), context)
    return context, [step for step in steps if step.is_upgrade]


def collect(env_context: Any, state: RunState) -> list[Step]:
    """Run the pending revisions' upgrade() with nothing executed; return the online
    steps they need, in the order pass 1 runs them."""
    context, steps = pending_upgrade_steps(env_context, state.connection)
    if not steps:
        return []
    context.opts["chatdb_online"] = state
    context.impl = _NotExecuted(
        context.dialect, context.connection, False, True, None, context.opts
    )
    with Operations.context(context):
        for step in steps:
            step.migration_fn()
    return schedule(state.collected)


def run(steps: list[Step], state: RunState, executor: Executor) -> None:
    """Run the online steps, each committed as it goes (resumable: see steps): the
    connection is in autocommit mode."""
    if not steps:
        return
    log.info(
        "online: %d step(s) on %s, before the run's transaction",
        len(steps),
        ", ".join(dict.fromkeys(s.table for s in steps)),
    )
    for step in steps:
        if step.key in state.executed:
            continue
        with executor.timed(f"{step.table}: {step.describe()}"):
            step.run(executor, state.options)
        state.executed.add(step.key)


ROUNDS = 3


def run_rounds(env_context: Any, steps: list[Step], state: RunState, executor: Executor) -> None:
    """Pass 1, then again for the tables that grew past the threshold while it ran (a
    table the run found small would otherwise be backfilled and indexed inside the run's
    transaction, holding its locks), at most ROUNDS times in all."""
    run(steps, state, executor)
    for _ in range(ROUNDS - 1):
        if not state.redecide():
            return
        more = [step for step in collect(env_context, state) if step.key not in state.executed]
        run(more, state, executor)
