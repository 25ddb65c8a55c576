"""The run's transaction sends the revisions' statements in batches.

Every statement of the run's transaction is a round trip during which the locks the
transaction already holds stay held; on a live table each lock is a stall for every
client that needs the table. So the statements a revision sends and whose answer it
does not read (DDL, ``op.execute``: everything Alembic's implementation executes but
its version-table bookkeeping) are held, and sent together, as one query string, just
before anything else reaches the server: a query whose answer someone reads (a
revision's check, an operation's look at the catalog, the version table, the run's
guards) always sees every statement sent before it. The order of statements never
changes; only the round trips go.

A batch that fails is rolled back to a savepoint taken at its start (in the same
query string) and its statements are sent again one by one, so that the failure
names the statement, and the step (revision), it came from, as if they had never
been batched. A lock timeout or a lost connection is not replayed: the run's own
handling of those applies to the batch as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from alembic.ddl.postgresql import PostgresqlImpl
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import UpdateBase

from chatdb.deploy import session

log = logging.getLogger("chatdb.deploy.batching")

SAVEPOINT = "chatdb_batch"
NOT_REPLAYED = (session.LOCK_NOT_AVAILABLE,)  # the run retries the whole transaction


class StatementBatch:
    """The statements held for the next round trip, each with the step it came from."""

    def __init__(
        self,
        connection: Connection,
        current_step: Callable[[], str | None],
        set_step: Callable[[str | None], None],
    ) -> None:
        self.connection = connection
        self.current_step = current_step
        self.set_step = set_step
        self.pending: list[tuple[str, str | None]] = []
        self.round_trips_saved = 0
        self._sending = False
        event.listen(connection, "before_cursor_execute", self._before_anything_else)

    def close(self) -> None:
        session.quietly(
            lambda: event.remove(
                self.connection, "before_cursor_execute", self._before_anything_else
            ),
            "statement batch",
        )

    def add(self, sql: str) -> None:
        """Hold ``sql``, as SQLAlchemy compiles it for the driver (a literal ``%`` doubled:
        the batch is sent through the driver's parameter formatting)."""
        self.pending.append((sql, self.current_step()))

    def _before_anything_else(self, *_: Any) -> None:
        if not self._sending:
            self.send()

    def send(self) -> None:
        """Send what is held, in one round trip (see the module docstring)."""
        if not self.pending or self._sending:
            return
        batch, self.pending = self.pending, []
        self._sending = True
        try:
            if len(batch) == 1:
                self._one(*batch[0])
                return
            body = ";\n".join(sql for sql, _ in batch)
            try:
                self.connection.exec_driver_sql(
                    f"SAVEPOINT {SAVEPOINT};\n{body};\nRELEASE SAVEPOINT {SAVEPOINT}"
                )
            except DBAPIError as exc:
                if session.sqlstate(exc) in NOT_REPLAYED or session.is_disconnect(exc):
                    raise
                self.connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                for sql, step in batch:
                    self._one(sql, step)
                raise  # every statement passed on its own: report the batch's error
            self.round_trips_saved += len(batch) - 1
        finally:
            self._sending = False

    def _one(self, sql: str, step: str | None) -> None:
        current = self.current_step()
        self.set_step(step)
        self.connection.exec_driver_sql(sql)
        self.set_step(current)


class BatchingImpl(PostgresqlImpl):
    """Alembic's PostgreSQL implementation, holding its statements in a batch."""

    batch: StatementBatch

    def _exec(
        self,
        construct: Any,
        execution_options: Any = None,
        multiparams: Any = None,
        params: Any = None,
    ) -> Any:
        if not (self.as_sql or execution_options or multiparams or params):
            if isinstance(construct, str):
                construct = text(construct)
            if isinstance(construct, UpdateBase) and _is_version_table(construct):
                # Alembic's own bookkeeping: the migration lock keeps any other run off the
                # version table, so its statement matches its one row; held like the rest.
                compiled = construct.compile(
                    dialect=self.dialect, compile_kwargs={"literal_binds": True}
                )
                self.batch.add(str(compiled).strip())
                return _OneRow()
            if isinstance(construct, ClauseElement) and not isinstance(construct, UpdateBase):
                compiled = construct.compile(dialect=self.dialect)
                if not compiled.params:
                    self.batch.add(str(compiled).strip())
                    return None
        self.batch.send()
        return super()._exec(construct, execution_options, multiparams, params or {})


class _OneRow:
    """What Alembic reads of its version-table statement's result: one row matched."""

    rowcount = 1


def _is_version_table(construct: Any) -> bool:
    table = getattr(construct, "table", None)
    return getattr(table, "name", None) == "alembic_version" and not getattr(
        construct, "_returning", ()
    )


def attach(migration_context: Any, batch: StatementBatch) -> None:
    """Make ``migration_context`` (configured, not yet running) send its statements
    through ``batch``."""
    impl = migration_context.impl
    batching = BatchingImpl(
        impl.dialect,
        impl.connection,
        impl.as_sql,
        impl.transactional_ddl,
        impl.output_buffer,
        impl.context_opts,
    )
    batching.batch = batch
    migration_context.impl = batching
