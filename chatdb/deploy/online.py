"""Revision 008 on a large table: repair chat_conversations.customer_id online.

Why: the transactional repair (ADD COLUMN, UPDATE every row, SET NOT NULL, CREATE
INDEX, all in the run's one transaction) holds ACCESS EXCLUSIVE on chat_conversations
until it commits, so every read, update and message insert waits for the whole
backfill and index build (1,000,000 rows: 8.6 s in the issue's measurement, 21 s
in benchmarks/bench_008.py, now benchmarks/bench_online.py --from 004). This path
takes a strong lock only for statements that change the catalog and nothing else,
each under a short lock_timeout with retries, and commits its work in steps:

1. ``ADD COLUMN customer_id text`` (catalog only; skipped when the column exists);
2. backfill the NULLs in keyset batches over the primary key, one committed UPDATE
   per batch (row locks on one batch at a time);
3. ``ADD CONSTRAINT chat_conversations_customer_id_not_null CHECK (customer_id IS NOT
   NULL) NOT VALID`` (catalog only; rows written from now on are checked);
4. a sweep backfills rows that clients wrote with NULL while step 2 ran;
5. ``VALIDATE CONSTRAINT`` (SHARE UPDATE EXCLUSIVE: reads and writes go on);
6. ``SET NOT NULL`` (PostgreSQL 12+ sees the valid check and skips the scan), then
   the check is dropped;
7. ``CREATE INDEX CONCURRENTLY``; an INVALID index left by an interrupted concurrent
   build (pg_index.indisvalid false) is dropped concurrently and built again.

Resumable: each step first reads the catalog (or looks only at NULL rows), so a
re-run after a kill at any point does what is left and never loses committed work.
Alembic records 008 only in the run's last transaction, so an interrupted run
leaves the version at 004 and ``alembic upgrade head`` re-runs 008 to finish.

Timeouts: the catalog-only statements and the batches run under a short
``lock_timeout`` (LOCK_TIMEOUT_MS) so that a client never queues behind a waiting
migration for longer than that; a lock timeout or deadlock is retried with
backoff, any other error fails the run. VALIDATE and the concurrent index build
block no client, take as long as the table is large and would leave useless work
(an INVALID index) if cancelled, so they run with ``statement_timeout`` off; the
session's values are restored after each step.

The run's transaction is committed when the online path starts (Alembic's
``autocommit_block``): revisions applied before 008 in the same run are kept even
if 008 is interrupted. The PostgREST NOTIFY that env.py sends afterwards goes into
the transaction Alembic opens after the block, the run's last one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from chatdb.deploy.options import count
from chatdb.failures import first_line
from chatdb.revisions import lint

log = logging.getLogger("chatdb.deploy.online")

TABLE = "public.chat_conversations"
CHECK_NAME = "chat_conversations_customer_id_not_null"
INDEX_NAME = "idx_chat_conversations_customer"

BACKFILL_WITH_PHONE = (
    "COALESCE(customer_id, 'customer_' || customer_phone, 'customer_unknown_' || id::text)"
)
BACKFILL_WITHOUT_PHONE = "COALESCE(customer_id, 'customer_unknown_' || id::text)"

MODES = ("auto", "always", "never")
# The transactional path holds ACCESS EXCLUSIVE for about 21 us per row (benchmarks/
# bench_008.py, now bench_online.py --from 004: 21 s for 1,000,000 rows), so below 5,000
# rows it stalls clients ~100 ms.
DEFAULT_THRESHOLD = 5_000
DEFAULT_BATCH_SIZE = 1_000
LOCK_TIMEOUT_MS = 50
LOCK_ATTEMPTS = 60
RETRY_DELAY_S = 0.05
MAX_RETRY_DELAY_S = 1.0
# SQLSTATEs worth another try: lock_not_available (lock_timeout), deadlock_detected.
RETRYABLE_SQLSTATES = frozenset({"55P03", "40P01"})

# squawk (tests/test_migration_lint.py) asks for a transaction so that a failed step can
# be re-run; each step here reads the catalog first and the whole path is resumable.
RERUNNABLE = lint.ignore("prefer-robust-stmts", "resumable: re-run finishes (chatdb.deploy.online)")

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """``-x online_008=auto|always|never``, ``-x online_008_threshold=ROWS``,
    ``-x online_008_batch_size=ROWS``, ``-x online_008_batch_pause_ms=MS``."""

    mode: str = "auto"
    threshold: int = DEFAULT_THRESHOLD
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_pause_ms: int = 0

    @classmethod
    def from_x_args(cls, x_args: Mapping[str, str]) -> Options:
        """Read the options; a bad value is a CommandError naming the option."""
        mode = x_args.get("online_008", "auto").strip().lower()
        if mode not in MODES:
            raise CommandError(
                f"-x online_008={x_args['online_008']!r} is not one of auto, always, never."
            )
        batch_size = count(x_args, "online_008_batch_size", DEFAULT_BATCH_SIZE)
        if batch_size < 1:
            raise CommandError("-x online_008_batch_size=0 is not a batch: use 1 or more rows.")
        return cls(
            mode=mode,
            threshold=count(x_args, "online_008_threshold", DEFAULT_THRESHOLD),
            batch_size=batch_size,
            batch_pause_ms=count(x_args, "online_008_batch_pause_ms", 0),
        )


def estimated_rows(connection: Connection) -> float:
    """PostgreSQL's estimate of the table's rows (pg_class.reltuples, kept by VACUUM,
    ANALYZE and CREATE INDEX); 0 for a table never analysed (reltuples -1)."""
    value = connection.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table)"), {"table": TABLE}
    ).scalar()
    return max(float(value or 0), 0.0)


def choose_online(mode: str, estimate: float, threshold: int) -> bool:
    """The all-or-nothing line: online only when forced, or when the estimate reaches
    the threshold in ``auto`` mode."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    return estimate >= threshold


def decide(connection: Connection | None, options: Options) -> bool:
    """True for the online path. Offline (``--sql``, no connection) it is the
    transactional path: the online path reads the table to batch and resume."""
    if connection is None:
        if options.mode == "always":
            raise CommandError(
                "-x online_008=always cannot be rendered with --sql: the online path of 008 "
                "reads the table to batch and resume; drop the option or run without --sql."
            )
        return False
    estimate = estimated_rows(connection)
    online = choose_online(options.mode, estimate, options.threshold)
    log.info(
        "008: %s path (estimated rows %d, threshold %d, -x online_008=%s)",
        "online" if online else "transactional",
        estimate,
        options.threshold,
        options.mode,
    )
    return online


class OnlineRepair:
    """The online steps on ``connection``, which must be in autocommit mode."""

    def __init__(
        self, connection: Connection, options: Options, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.connection = connection
        self.options = options
        self.sleep = sleep
        self.step = "the start"

    def run(self) -> None:
        self.add_column()
        if self.column_nullable():
            self.backfill()
            self.add_check()
            self.sweep()
            self.validate_check()
            self.set_not_null()
        self.drop_check()
        self.ensure_index()

    # ------------------------------------------------------------------ steps

    def add_column(self) -> None:
        if self._column_exists("customer_id"):
            return
        self._catalog_only(
            "ADD COLUMN", f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS customer_id text"
        )
        log.info("008 online: added column customer_id")

    def backfill(self) -> int:
        """Fill NULL customer_id batch by batch in primary-key order; returns rows updated.

        The batch bounds come from the primary key index: with seqscan disabled for the
        loop, so that the planner never reads the whole table to find one batch of ids."""
        after: str | None = None
        batches = updated = 0
        with self._setting("enable_seqscan", "off"):
            while True:
                upper = self._batch_upper_bound(after)
                updated += self._update_batch(
                    [
                        c
                        for c, v in (
                            ("id > CAST(:after AS uuid)", after),
                            ("id <= CAST(:upper AS uuid)", upper),
                        )
                        if v is not None
                    ],
                    {"after": after, "upper": upper},
                )
                batches += 1
                if upper is None:
                    break
                after = upper
                self._pause()
        log.info(
            "008 online: backfilled %d rows in %d batches of up to %d",
            updated,
            batches,
            self.options.batch_size,
        )
        return updated

    def sweep(self) -> int:
        """Backfill rows written with NULL after the first pass had passed their ids:
        one sequential read for their ids (no lock beyond reading), then batches by id."""
        self.step = "the search for rows written with NULL"
        with self._setting("statement_timeout", "0"):
            ids = (
                self.connection.execute(
                    text(
                        f"SELECT c.id::text AS null_id FROM {TABLE} c "
                        "WHERE c.customer_id IS NULL ORDER BY c.id"
                    )
                )
                .scalars()
                .all()
            )
        updated = 0
        for start in range(0, len(ids), self.options.batch_size):
            chunk = ids[start : start + self.options.batch_size]
            updated += self._update_batch(["id = ANY(CAST(:ids AS uuid[]))"], {"ids": chunk})
            self._pause()
        log.info("008 online: %d rows written with NULL during the backfill, now filled", updated)
        return updated

    def add_check(self) -> None:
        if self._check_exists():
            return
        self._catalog_only(
            "ADD CONSTRAINT ... NOT VALID",
            RERUNNABLE
            + (
                f"ALTER TABLE {TABLE} ADD CONSTRAINT {CHECK_NAME} "
                "CHECK (customer_id IS NOT NULL) NOT VALID"
            ),
        )

    def validate_check(self) -> None:
        with self._setting("statement_timeout", "0"):
            self._retry_on_lock(
                "VALIDATE CONSTRAINT",
                lambda: self._exec(
                    RERUNNABLE + f"ALTER TABLE {TABLE} VALIDATE CONSTRAINT {CHECK_NAME}"
                ),
                short_lock_timeout=False,
            )
        log.info("008 online: validated %s", CHECK_NAME)

    def set_not_null(self) -> None:
        self._catalog_only(
            "SET NOT NULL",
            RERUNNABLE + (f"ALTER TABLE {TABLE} ALTER COLUMN customer_id SET NOT NULL"),
        )
        log.info("008 online: customer_id is NOT NULL")

    def drop_check(self) -> None:
        if not self._check_exists():
            return
        self._catalog_only(
            "DROP CONSTRAINT",
            lint.ignore(
                "ban-drop-constraint",
                "the temporary check; NOT NULL now gives its guarantee",
            )
            + f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS {CHECK_NAME}",
        )

    def ensure_index(self) -> None:
        """Build the index concurrently; rebuild one left INVALID by an interrupted build."""
        with self._setting("statement_timeout", "0"):
            self._retry_on_lock(
                "CREATE INDEX CONCURRENTLY", self._build_index, short_lock_timeout=False
            )
        if self.index_state() != "valid":
            raise CommandError(f"008: index {INDEX_NAME} is not valid after its concurrent build.")

    def _build_index(self) -> None:
        state = self.index_state()
        if state == "valid":
            return
        if state == "invalid":
            log.warning(
                "008 online: index %s is INVALID (an interrupted concurrent build); "
                "dropping and building it again",
                INDEX_NAME,
            )
            self._exec(f"DROP INDEX CONCURRENTLY IF EXISTS public.{INDEX_NAME}")
        self._exec(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX_NAME} ON {TABLE} (customer_id)")
        log.info("008 online: built index %s concurrently", INDEX_NAME)

    # ------------------------------------------------------------------ catalog

    def column_nullable(self) -> bool:
        return bool(
            self._scalar(
                "SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = to_regclass(:table) "
                "AND attname = 'customer_id' AND NOT attisdropped",
                table=TABLE,
            )
        )

    def index_state(self) -> str | None:
        """None when absent, else 'valid' or 'invalid' (pg_index.indisvalid)."""
        valid = self._scalar(
            "SELECT i.indisvalid FROM pg_index i "
            "WHERE i.indexrelid = to_regclass(:index) AND i.indrelid = to_regclass(:table)",
            index=f"public.{INDEX_NAME}",
            table=TABLE,
        )
        return None if valid is None else ("valid" if valid else "invalid")

    def _column_exists(self, column: str) -> bool:
        return bool(
            self._scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:table) "
                "AND attname = :column AND NOT attisdropped)",
                table=TABLE,
                column=column,
            )
        )

    def _check_exists(self) -> bool:
        return bool(
            self._scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(:table) "
                "AND conname = :name)",
                table=TABLE,
                name=CHECK_NAME,
            )
        )

    @cached_property
    def formula(self) -> str:
        """The spec's backfill; without the phone term when the table has no customer_phone."""
        if self._column_exists("customer_phone"):
            return BACKFILL_WITH_PHONE
        return BACKFILL_WITHOUT_PHONE

    def _update_batch(self, conditions: list[str], params: dict) -> int:
        """One committed UPDATE of the NULL rows matching ``conditions``; rows updated."""
        where = " AND ".join([*conditions, "customer_id IS NULL"])
        sql = text(f"UPDATE {TABLE} SET customer_id = {self.formula} WHERE {where}")
        return self._retry_on_lock(
            "backfill batch",
            lambda: self.connection.execute(sql, params).rowcount,
            short_lock_timeout=True,
        )

    def _pause(self) -> None:
        if self.options.batch_pause_ms:
            self.sleep(self.options.batch_pause_ms / 1000)

    def _batch_upper_bound(self, after: str | None) -> str | None:
        """The id closing the batch that starts after ``after``; None for the last batch."""
        where = "WHERE c.id > CAST(:after AS uuid)" if after is not None else ""
        return self._scalar(
            f"SELECT c.id::text AS bound FROM {TABLE} c {where} ORDER BY c.id OFFSET :skip LIMIT 1",
            after=after,
            skip=self.options.batch_size - 1,
        )

    # ------------------------------------------------------------------ plumbing

    def _catalog_only(self, what: str, sql: str) -> None:
        """A statement that needs ACCESS EXCLUSIVE only to change the catalog: under the
        short lock_timeout, retried."""
        self._retry_on_lock(what, lambda: self._exec(sql), short_lock_timeout=True)

    def _exec(self, sql: str) -> None:
        self.connection.execute(text(sql))

    def _scalar(self, sql: str, **params: object):
        return self.connection.execute(text(sql), params).scalar()

    @contextmanager
    def _setting(self, name: str, value: str) -> Iterator[None]:
        """Set a session setting for one step, then put the session's value back."""
        saved = self._scalar("SELECT current_setting(:name)", name=name)
        self._exec(f"SET {name} = {_literal(value)}")
        try:
            yield
        finally:
            self._exec(f"SET {name} = {_literal(saved)}")

    def _retry_on_lock(self, what: str, action: Callable[[], T], *, short_lock_timeout: bool) -> T:
        """Run ``action``; on a lock timeout or deadlock wait and try again, up to
        LOCK_ATTEMPTS times, then let the last error fail the run."""
        self.step = what
        attempt = 0
        while True:
            attempt += 1
            try:
                if short_lock_timeout:
                    with self._setting("lock_timeout", f"{LOCK_TIMEOUT_MS}ms"):
                        return action()
                return action()
            except DBAPIError as exc:
                code = getattr(exc.orig, "pgcode", None)
                if code not in RETRYABLE_SQLSTATES or attempt >= LOCK_ATTEMPTS:
                    raise
                delay = min(MAX_RETRY_DELAY_S, RETRY_DELAY_S * 2 ** (attempt - 1))
                log.info(
                    "008 online: %s could not get its lock (%s, attempt %d of %d); "
                    "retrying in %.2f s",
                    what,
                    code,
                    attempt,
                    LOCK_ATTEMPTS,
                    delay,
                )
                self.sleep(delay)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def repair_online(op, options: Options) -> None:
    """Run the online steps in an Alembic autocommit block (see the module docstring).

    A failure is a CommandError that says what the generic one cannot: the steps
    committed before it are kept, and a re-run finishes the job. (A lock timeout is
    not left for the run's whole-run retries: each step has retried it already.)"""
    with op.get_context().autocommit_block():
        repair = OnlineRepair(op.get_bind(), options)
        try:
            repair.run()
        except DBAPIError as exc:
            raise CommandError(
                f"Migration step (upgrade 004 -> 008, online path) failed at {repair.step}: "
                f"{first_line(exc)}; the steps committed before it are kept (this path "
                "commits in steps): fix the cause and re-run `alembic upgrade head` to finish."
            ) from None
