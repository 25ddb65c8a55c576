"""The online steps: what a revision's operation becomes on a large existing table.

Each step is collected from a revision (chatdb.deploy.online.ops), says in words what
it does (``describe``, used by ``chatdb plan``), and runs on an :class:`Executor`.
Every step first reads the catalog (or looks only at rows still to do), so a re-run
after a kill at any point does what is left, and never redoes or loses committed work.
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from dataclasses import dataclass, field
from typing import ClassVar

from sqlalchemy import TextClause, text
from sqlalchemy.exc import DBAPIError

from chatdb.deploy import session
from chatdb.deploy.online.executor import Executor
from chatdb.deploy.online.settings import (
    DEFAULT_ROWS_PER_PAGE,
    MAX_BATCH,
    MIN_BATCH,
    OnlineOptions,
)
from chatdb.deploy.session import LOCK_NOT_AVAILABLE
from chatdb.revisions import lint

log = logging.getLogger("chatdb.deploy.online")

# A backfill batch's UPDATEs, each over a share of the rows of its pages (BackfillGroup).
SPLIT = 3

SCHEMA = "public"
# squawk (tests/test_migration_lint.py) asks for a transaction so that a failed step can
# be re-run; each step here reads the catalog first and the whole path is resumable.
RERUNNABLE = lint.ignore(
    "prefer-robust-stmts", "resumable: a re-run finishes (chatdb.deploy.online)"
)

Key = tuple[str, ...]


def qualified(table: str) -> str:
    return f"{SCHEMA}.{table}"


def helper_name(prefix: str, table: str, column: str) -> str:
    """A name of at most 63 characters (PostgreSQL's limit) for a helper object."""
    return f"{prefix}_{table}_{column}"[:63]


def check_name(table: str, column: str) -> str:
    """The temporary CHECK (column IS NOT NULL) of the online SET NOT NULL."""
    return f"{table}_{column}_not_null"[:63]


# --------------------------------------------------------------------------- catalog


def column_exists(ex: Executor, table: str, column: str) -> bool:
    return bool(
        ex.scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:t) "
            "AND attname = :c AND attnum > 0 AND NOT attisdropped)",
            t=qualified(table),
            c=column,
        )
    )


def column_type(ex: Executor, table: str, column: str) -> str | None:
    return ex.scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
        "to_regclass(:t) AND attname = :c AND attnum > 0 AND NOT attisdropped",
        t=qualified(table),
        c=column,
    )


def column_nullable(ex: Executor, table: str, column: str) -> bool:
    return bool(
        ex.scalar(
            "SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = to_regclass(:t) "
            "AND attname = :c AND NOT attisdropped",
            t=qualified(table),
            c=column,
        )
    )


def constraint_state(ex: Executor, table: str, name: str) -> str | None:
    """None when absent, else 'valid' or 'not valid' (pg_constraint.convalidated)."""
    validated = ex.scalar(
        "SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass(:t) AND conname = :n",
        t=qualified(table),
        n=name,
    )
    return None if validated is None else ("valid" if validated else "not valid")


def index_state(ex: Executor, name: str) -> str | None:
    """None when absent, else 'valid' or 'invalid' (pg_index.indisvalid)."""
    valid = ex.scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:i)",
        i=qualified(name),
    )
    return None if valid is None else ("valid" if valid else "invalid")


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    """One online step on ``table``. ``order`` places it within its table's steps:
    catalog changes, conversions, backfills, NOT NULL checks, foreign keys, indexes."""

    table: str
    order: ClassVar[int] = 0

    @property
    def key(self) -> Key:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def run(self, ex: Executor, options: OnlineOptions) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class AddColumn(Step):
    """``ADD COLUMN`` with no default or a non-volatile one: a catalog change only."""

    column: str
    sql: str  # ALTER TABLE ... ADD COLUMN IF NOT EXISTS ...
    order: ClassVar[int] = 0

    @property
    def key(self) -> Key:
        return ("column", self.table, self.column)

    def describe(self) -> str:
        return f"add column {self.column} (catalog only)"

    def run(self, ex: Executor, options: OnlineOptions) -> None:
        if column_exists(ex, self.table, self.column):
            return
        ex.catalog(self.describe(), self.sql)


@dataclass(frozen=True)
class SetDefault(Step):
    """``ALTER COLUMN ... SET DEFAULT``: a catalog change only, done before the backfill
    so that rows clients insert meanwhile get it."""

    column: str
    default: str
    order: ClassVar[int] = 1

    @property
    def key(self) -> Key:
        return ("default", self.table, self.column)

    def describe(self) -> str:
        return f"set the default of {self.column} to {self.default} (catalog only)"

    def run(self, ex: Executor, options: OnlineOptions) -> None:
        ex.catalog(
            self.describe(),
            RERUNNABLE + f"ALTER TABLE {qualified(self.table)} ALTER COLUMN {self.column} "
            f"SET DEFAULT {self.default}",
        )


@dataclass(frozen=True)
class Backfill(Step):
    """``UPDATE <table> SET <column> = <expression> WHERE <condition>``, in batches.

    ``condition`` defaults to ``<column> IS NULL``. ``also_set`` are assignments made
    with it (e.g. updated_at = now(), what a BEFORE UPDATE trigger of 004 would do),
    applied where those columns exist."""

    column: str
    expression: str
    condition: str
    also_set: tuple[tuple[str, str], ...] = ()
    order: ClassVar[int] = 3

    @property
    def key(self) -> Key:
        return ("backfill", self.table, self.column)

    def describe(self) -> str:
        return f"fill {self.column} where {self.condition}, in batches"

    def run(self, ex: Executor, options: OnlineOptions) -> None:  # run as part of a group
        BackfillGroup(self.table, (self,)).run(ex, options)


@dataclass(frozen=True)
class BackfillGroup(Step):
    """The backfills of one table, in one pass over it: each batch is one UPDATE that
    fills every column of the group that needs it (fewer passes than one per column).

    The pass walks the table's pages in order (``ctid`` ranges, a TID range scan), not
    its primary key: a batch reads and writes neighbouring pages instead of one random
    page per row, which on a table larger than shared_buffers is several times faster.

    A client that writes a row while the pass runs may move it (an UPDATE writes a new
    version elsewhere), behind the walk or past its end. So before the walk each column
    gets a helper trigger (BEFORE INSERT OR UPDATE) that applies the backfill to any row
    a client writes while its condition holds: every row is then either walked where it
    lies or filled when written. The only second pass is the sweep of the pages whose
    batch skipped a row a client held (SKIP LOCKED). ``kept_in_step`` says another
    trigger already does this (ConvertType's). The helpers are dropped in the run's last
    transaction."""

    backfills: tuple[Backfill, ...]
    kept_in_step: bool = False
    order: ClassVar[int] = 3

    @property
    def key(self) -> Key:
        return ("backfills", self.table, *(b.column for b in self.backfills))

    def describe(self) -> str:
        columns = ", ".join(b.column for b in self.backfills)
        return f"fill {columns} in batches of pages (one pass over the table)"

    def run(self, ex: Executor, options: OnlineOptions) -> None:
        columns = table_columns(ex, self.table)
        if not self.kept_in_step:
            for b in self.backfills:
                install_fill_trigger(ex, self.table, b.column, b.expression, b.condition, columns)
        assignments, conditions = self._assignments(columns)
        if not conditions:
            return
        where = " OR ".join(f"({c})" for c in conditions)
        # Read after the helpers are in place: a row written since is theirs to fill.
        pages, rows_per_page = ex.rows(
            "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int, "
            "CASE WHEN c.relpages > 0 AND c.reltuples > 0 "
            "THEN c.reltuples / c.relpages ELSE 0 END "
            "FROM pg_class c WHERE c.oid = to_regclass(:t)",
            t=qualified(self.table),
        )[0]
        stats = BatchStats.in_pages(options.first_batch, rows_per_page or DEFAULT_ROWS_PER_PAGE)
        table = qualified(self.table)
        pages_of = (
            "ctid >= format('(%s,0)', CAST(:first AS bigint))::tid "
            "AND ctid < format('(%s,0)', CAST(:stop AS bigint))::tid"
        )

        # A batch is SPLIT UPDATEs of the rows of its pages that need filling: first those
        # at every SPLIT-th place of each page (a full page has no room for their new
        # versions, which go elsewhere), then the next share, whose new versions mostly
        # fit in the room the first freed on their own page once it is pruned (a HOT
        # update: no index entry, no new page), and so on, the last taking every row
        # left. On chat_messages, a third less WAL than one UPDATE of every row, where
        # each new version goes to a new page with an entry in each index (and a quarter
        # less time). Each runs under the short lock_timeout; when a client holds one of its
        # rows (a hot row) for longer than that, the same pages again, skipping the rows
        # a client holds (they are swept after the walk): a batch never waits long for a
        # client, so clients never queue for long behind a batch that waits, and a batch
        # and a client never deadlock.
        def statements(only: str) -> tuple[TextClause, TextClause]:
            plain = text(
                f"WITH done AS (UPDATE {table} SET {assignments} WHERE {pages_of}{only} "
                f"AND ({where}) RETURNING 1) SELECT count(*) FROM done"
            )
            skipping = text(
                f"WITH picked AS (SELECT ctid FROM {table} WHERE {pages_of}{only} "
                f"AND ({where}) FOR NO KEY UPDATE SKIP LOCKED), "
                f"done AS (UPDATE {table} SET {assignments} "
                f"WHERE ctid = ANY (ARRAY(SELECT ctid FROM picked)) AND ({where}) RETURNING 1) "
                "SELECT count(*) FROM done"
            )
            return plain, skipping

        # (ctid::text::point)[1] is a row's place on its page (its line pointer)
        shares = [
            statements(f" AND (ctid::text::point)[1]::int % {SPLIT} = {n}") for n in range(1, SPLIT)
        ] + [statements("")]
        plain = shares[-1][0]
        first = 0
        with ex.short_locks():
            with session.setting(ex.connection, "enable_seqscan", "off"):
                while first < pages:
                    params = {"first": first, "stop": min(pages, first + stats.size)}
                    started = time.perf_counter()
                    updated = sum(
                        self._batch(ex, plain, skipping, params, stats)
                        for plain, skipping in shares
                    )
                    full = params["stop"] - first == stats.size
                    stats.record(updated, time.perf_counter() - started, full, options)
                    first = params["stop"]
                    if options.pause_ms:
                        ex.sleep(options.pause_ms / 1000)
            stats.swept = self._sweep(ex, plain, stats.skipped)
        log.info("online: %s: %s: %s", self.table, self.describe(), stats.summary())

    @staticmethod
    def _batch(
        ex: Executor, plain: TextClause, skipping: TextClause, params: dict, stats: BatchStats
    ) -> int:
        """One batch: ``plain``; on a lock timeout, ``skipping`` (retried on a lock
        timeout of its own, a table lock)."""
        try:
            return ex.guarded(lambda: ex.connection.execute(plain, params).scalar_one())
        except DBAPIError as exc:
            if session.sqlstate(exc) != LOCK_NOT_AVAILABLE:
                raise
        if params not in stats.skipped:
            stats.skipped.append(params)
        return ex.retry_locks(
            "backfill batch", lambda: ex.connection.execute(skipping, params).scalar_one()
        )

    @staticmethod
    def _sweep(ex: Executor, plain: TextClause, skipped: list[dict]) -> int:
        """The pages of the batches that skipped a row a client held: again, waiting for
        the row (under the short lock_timeout, retried). A client that wrote the row
        meanwhile had it filled by the helper trigger; this fills it where the client's
        transaction did not write it after all (it only locked it, or rolled back)."""
        return sum(
            ex.retry_locks(
                "backfill batch", lambda p=params: ex.connection.execute(plain, p).scalar_one()
            )
            for params in skipped
        )

    def _assignments(self, columns: frozenset[str]) -> tuple[str, list[str]]:
        """The SET list, each column assigned only where its own condition holds (an
        ``also_set`` column only where the table has it), and the conditions."""
        sets, conditions = [], []
        extra: dict[str, str] = {}
        for b in self.backfills:
            sets.append(
                f"{b.column} = CASE WHEN {b.condition} THEN {b.expression} ELSE {b.column} END"
            )
            conditions.append(b.condition)
            for column, value in b.also_set:
                if column in columns:
                    extra[column] = value
        sets += [f"{column} = {value}" for column, value in extra.items()]
        return ", ".join(sets), conditions


@dataclass
class BatchStats:
    """Batch sizes (in pages) chosen from measured batch durations, and what to say
    about them."""

    size: int  # pages
    rows_per_page: float
    rows: int = 0
    # the pages of the batches that met a row a client held, run again skipping it
    skipped: list[dict] = field(default_factory=list)
    swept: int = 0  # rows filled after the walk (skipped by it: a client held them)
    durations: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    @classmethod
    def in_pages(cls, first_batch_rows: int, rows_per_page: float) -> BatchStats:
        """The first batch, ``first_batch_rows`` rows (-x online_batch_size), in pages."""
        return cls(max(1, round(first_batch_rows / rows_per_page)), rows_per_page)

    def record(self, updated: int, seconds: float, full: bool, options: OnlineOptions) -> None:
        self.rows += updated
        self.durations.append(seconds)
        self.sizes.append(self.size)
        if full:  # a batch of the whole size: a fair measure of it
            most = max(1, int(MAX_BATCH / self.rows_per_page))
            least = max(1, int(MIN_BATCH / self.rows_per_page))
            self.size = options.next_batch(self.size, seconds, least, most)

    def summary(self) -> str:
        if not self.durations:
            return "nothing to do"
        ms = [d * 1000 for d in self.durations]
        return (
            f"{self.rows + self.swept:,} rows in {len(ms)} batches (batch size "
            f"{self.sizes[0]:,} -> {max(self.sizes):,} pages; median "
            f"{statistics.median(ms):.0f} ms, slowest {max(ms):.0f} ms; {len(self.skipped):,} "
            f"met a row a client held and skipped it, {self.swept:,} such rows filled after "
            "the walk)"
        )


def fill_helper_names(table: str, column: str) -> tuple[str, str]:
    """The helper's function (schema public) and trigger (on the table) names."""
    return helper_name("chatdb_fill", table, column), f"chatdb_fill_{column}"[:63]


def table_columns(ex: Executor, table: str) -> frozenset[str]:
    return frozenset(
        name
        for (name,) in ex.rows(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) "
            "AND attnum > 0 AND NOT attisdropped",
            t=qualified(table),
        )
    )


# A condition's tokens: a string constant, a quoted name, a word, or one other character.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[A-Za-z_][A-Za-z_0-9]*|\s+|.", re.DOTALL)


def on_new_row(condition: str, columns: frozenset[str]) -> str | None:
    """``condition`` (an SQL expression on a row of the table) with each of its column
    names read from NEW, for a trigger's WHEN clause: ``message_type IS NULL OR
    message_type = ''`` becomes ``NEW.message_type IS NULL OR NEW.message_type = ''``.
    A name is a column when the table has it and it is not qualified (``x.name``), a
    function (``name(``) or a type (``::name``). None when the condition holds what a
    WHEN clause cannot (a subquery) or what this reading does not follow (dollar
    quotes, an escape string) or names no column: the trigger's function then tests
    it itself."""
    tokens = [m[0] for m in _TOKENS.finditer(condition)]
    words = [t for t in tokens if not t.isspace()]
    if "$" in tokens or any(w.lower() == "select" for w in words):
        return None
    out: list[str] = []
    for n, token in enumerate(tokens):
        before = [t for t in tokens[:n] if not t.isspace()][-2:]
        after = next((t for t in tokens[n + 1 :] if not t.isspace()), "")
        if token[0] == "'" and before and before[-1].upper() == "E":
            return None
        name = token[1:-1].replace('""', '"') if token[0] == '"' else token.lower()
        if (
            (token[0] == '"' or token[0].isalpha() or token[0] == "_")
            and name in columns
            and (not before or before[-1] != ".")
            and before[-2:] != [":", ":"]
            and after != "("
        ):
            out.append(f"NEW.{token}")
        else:
            out.append(token)
    return "".join(out) if any(t.startswith("NEW.") for t in out) else None


def install_fill_trigger(
    ex: Executor,
    table: str,
    column: str,
    expression: str,
    condition: str,
    columns: frozenset[str],
) -> None:
    """The helper of a backfill (see BackfillGroup): a row written with ``condition``
    true gets ``column = expression``, as the backfill's UPDATE would give it.
    ``columns``: the table's, to read the condition on NEW in the trigger's WHEN."""
    function, trigger = fill_helper_names(table, column)
    # WHEN keeps the function from being called at all for a row that does not need it:
    # every row the backfill itself writes, and most that clients write. A condition
    # WHEN cannot hold (a subquery) is tested inside the function only.
    new_row = on_new_row(condition, columns)
    when = f"WHEN ({new_row}) " if new_row else ""
    test = new_row or f"(SELECT {condition} FROM (SELECT NEW.*) AS row_)"
    ex.catalog(
        f"install the helper that fills {column} on write",
        f"CREATE OR REPLACE FUNCTION {qualified(function)}() RETURNS trigger "
        f"LANGUAGE plpgsql AS $chatdb$ BEGIN IF {test} THEN "
        f"NEW.{column} := (SELECT {expression} FROM (SELECT NEW.*) AS row_); "
        "END IF; RETURN NEW; END $chatdb$",
        f"CREATE OR REPLACE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON "
        f"{qualified(table)} FOR EACH ROW {when}"
        f"EXECUTE FUNCTION {qualified(function)}()",
    )


def fill_trigger_sql_drop(table: str, column: str) -> list[str]:
    """The statements that remove a backfill's helper (the run's last transaction)."""
    function, trigger = fill_helper_names(table, column)
    return [
        f"DROP TRIGGER IF EXISTS {trigger} ON {qualified(table)}",
        lint.ignore(
            "ban-drop-function", "the backfill's own helper, made by pass 1; no client calls it"
        )
        + f"DROP FUNCTION IF EXISTS {qualified(function)}()",
    ]


@dataclass(frozen=True)
class NotNull(Step):
    """The slow half of SET NOT NULL: ``CHECK (<column> IS NOT NULL) NOT VALID`` (a
    catalog change), then ``VALIDATE CONSTRAINT`` (a scan that blocks no client). The
    run's last transaction then sets NOT NULL, which PostgreSQL 12+ does without a
    scan thanks to the valid check, and drops the check."""

    column: str
    order: ClassVar[int] = 4

    @property
    def key(self) -> Key:
        return ("not_null", self.table, self.column)

    def describe(self) -> str:
        return f"check that {self.column} holds no NULL (validated without blocking writes)"

    def run(self, ex: Executor, options: OnlineOptions) -> None:
        if not column_nullable(ex, self.table, self.column):
            return
        name = check_name(self.table, self.column)
        state = constraint_state(ex, self.table, name)
        if state is None:
            ex.catalog(
                f"add the NOT VALID check {name}",
                RERUNNABLE + f"ALTER TABLE {qualified(self.table)} ADD CONSTRAINT {name} "
                f"CHECK ({self.column} IS NOT NULL) NOT VALID",
            )
        if state != "valid":
            ex.long(
                f"VALIDATE CONSTRAINT {name}",
                RERUNNABLE + f"ALTER TABLE {qualified(self.table)} VALIDATE CONSTRAINT {name}",
            )


@dataclass(frozen=True)
class ForeignKey(Step):
    """``ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID`` (a catalog change), then
    ``VALIDATE CONSTRAINT`` (a scan that blocks no client)."""

    name: str
    sql: str  # ALTER TABLE ... ADD CONSTRAINT <name> FOREIGN KEY ... NOT VALID
    order: ClassVar[int] = 5

    @property
    def key(self) -> Key:
        return ("constraint", self.table, self.name)

    def describe(self) -> str:
        return f"add foreign key {self.name}, validated without blocking writes"

    def run(self, ex: Executor, options: OnlineOptions) -> None:
        state = constraint_state(ex, self.table, self.name)
        if state is None:
            ex.catalog(
                f"add foreign key {self.name} NOT VALID",
                RERUNNABLE + self.sql,
            )
        if state != "valid":
            ex.long(
                f"VALIDATE CONSTRAINT {self.name}",
                RERUNNABLE + f"ALTER TABLE {qualified(self.table)} VALIDATE CONSTRAINT {self.name}",
            )


@dataclass(frozen=True)
class BuildIndex(Step):
    """``CREATE INDEX CONCURRENTLY``; an INVALID index left by an interrupted build is
    dropped concurrently and built again."""

    name: str
    create_sql: str  # CREATE INDEX CONCURRENTLY IF NOT EXISTS ...
    order: ClassVar[int] = 6

    @property
    def key(self) -> Key:
        return ("index", self.name)

    def describe(self) -> str:
        return f"build index {self.name} concurrently (reads and writes go on)"

    def run(self, ex: Executor, options: OnlineOptions) -> None:
        state = index_state(ex, self.name)
        if state == "valid":
            return
        if state == "invalid":
            log.warning(
                "online: index %s is INVALID (an interrupted concurrent build); "
                "dropping and building it again",
                self.name,
            )
            ex.long(
                f"DROP INDEX CONCURRENTLY {self.name}",
                f"DROP INDEX CONCURRENTLY IF EXISTS {qualified(self.name)}",
            )
        ex.long(f"CREATE INDEX CONCURRENTLY {self.name}", self.create_sql)
        if index_state(ex, self.name) != "valid":
            raise RuntimeError(f"index {self.name} is not valid after its concurrent build")


@dataclass(frozen=True)
class RenameIndex(Step):
    """``ALTER INDEX ... RENAME``: a catalog change. Run before the table's index builds,
    so that a revision can build an index under a name an older index held (revision
    c001: FIX A's idx_chat_conversations_customer, on customer_phone)."""

    name: str
    new_name: str
    order: ClassVar[int] = 0

    @property
    def key(self) -> Key:
        return ("rename_index", self.name)

    def describe(self) -> str:
        return f"rename index {self.name} to {self.new_name} (catalog only)"

    def run(self, ex: Executor, options: OnlineOptions) -> None:
        if index_state(ex, self.name) is None:  # renamed by an earlier (interrupted) run
            return
        ex.catalog(
            self.describe(),
            RERUNNABLE + f"ALTER INDEX {qualified(self.name)} RENAME TO {self.new_name}",
        )


@dataclass(frozen=True)
class DropIndex(Step):
    """``DROP INDEX CONCURRENTLY``: reads and writes go on. Run before the table's index
    builds, for the same reason as :class:`RenameIndex`. An index holds no value of its
    own: dropping one loses no data."""

    name: str
    order: ClassVar[int] = 0

    @property
    def key(self) -> Key:
        return ("drop_index", self.name)

    def describe(self) -> str:
        return f"drop index {self.name} concurrently (reads and writes go on)"

    def run(self, ex: Executor, options: OnlineOptions) -> None:
        if index_state(ex, self.name) is None:
            return
        ex.long(
            f"DROP INDEX CONCURRENTLY {self.name}",
            f"DROP INDEX CONCURRENTLY IF EXISTS {qualified(self.name)}",
        )


@dataclass(frozen=True)
class ConvertType(Step):
    """A column's type changed without rewriting the table under a lock: a new column
    of the new type, kept in step by a trigger, filled in batches, indexed like the old
    one concurrently, checked NOT NULL if the old one was; then, in one short catalog
    transaction, the old column is dropped and the new one takes its name and its
    indexes' names. The values are kept (converted by ``using``)."""

    column: str
    type_sql: str
    using: str  # the conversion, in terms of the column, e.g. website_id::uuid
    order: ClassVar[int] = 2

    @property
    def key(self) -> Key:
        return ("convert", self.table, self.column)

    @property
    def shadow(self) -> str:
        return f"{self.column}__chatdb_new"[:63]

    def describe(self) -> str:
        return f"convert {self.column} to {self.type_sql} in a new column, then swap (online)"

    def run(self, ex: Executor, options: OnlineOptions) -> None:
        current = column_type(ex, self.table, self.column)
        if current is None or current == self.type_sql:
            return
        table, shadow = qualified(self.table), self.shadow
        function = helper_name("chatdb_sync", self.table, self.column)
        trigger = f"chatdb_sync_{self.column}"[:63]
        if not column_exists(ex, self.table, shadow):
            ex.catalog(
                f"add column {shadow}", f"ALTER TABLE {table} ADD COLUMN {shadow} {self.type_sql}"
            )
        ex.catalog(
            f"keep {shadow} in step with {self.column}",
            f"CREATE OR REPLACE FUNCTION {qualified(function)}() RETURNS trigger "
            f"LANGUAGE plpgsql AS $chatdb$ BEGIN NEW.{shadow} := "
            f"(SELECT {self.using} FROM (SELECT NEW.*) AS row_); RETURN NEW; END $chatdb$",
            f"CREATE OR REPLACE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {qualified(function)}()",
        )
        fill = Backfill(
            self.table,
            shadow,
            self.using,
            f"{shadow} IS NULL AND {self.column} IS NOT NULL",
        )
        BackfillGroup(self.table, (fill,), kept_in_step=True).run(ex, options)
        not_null = not column_nullable(ex, self.table, self.column)
        if not_null:
            NotNull(self.table, shadow).run(ex, options)
        renames = []
        for name, definition in ex.rows(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(:t) "
            "AND :col = ANY(SELECT attname FROM pg_attribute WHERE attrelid = i.indrelid "
            "AND attnum = ANY(i.indkey))",
            t=table,
            col=self.column,
        ):
            new_name = f"{name}__chatdb_new"[:63]
            new_definition = re.sub(
                rf"\b{re.escape(self.column)}\b", shadow, definition.split(" ON ", 1)[1]
            )
            BuildIndex(
                self.table,
                new_name,
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {new_name} ON {new_definition}",
            ).run(ex, options)
            renames.append(f"ALTER INDEX {qualified(new_name)} RENAME TO {name}")
        swap = [
            f"DROP TRIGGER IF EXISTS {trigger} ON {table}",
            f"DROP FUNCTION IF EXISTS {qualified(function)}()",
            f"ALTER TABLE {table} DROP COLUMN {self.column}",
            f"ALTER TABLE {table} RENAME COLUMN {shadow} TO {self.column}",
            *renames,
        ]
        if not_null:
            check = check_name(self.table, shadow)
            swap += [
                f"ALTER TABLE {table} ALTER COLUMN {self.column} SET NOT NULL",
                f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}",
            ]
        ex.catalog(f"swap {self.column} for its converted copy", *swap)


# --------------------------------------------------------------------------- schedule


def schedule(steps: list[Step]) -> list[Step]:
    """The order in which pass 1 runs the collected steps: table by table (in the order
    revisions touch them), and within a table catalog changes first, then conversions,
    the table's backfills in one pass, NOT NULL checks, foreign keys, and index builds
    last (so that the backfill does not maintain them row by row)."""
    tables = list(dict.fromkeys(step.table for step in steps))
    ordered: list[Step] = []
    for table in tables:
        mine = [step for step in steps if step.table == table]
        backfills = tuple(s for s in mine if isinstance(s, Backfill))
        others = [s for s in mine if not isinstance(s, Backfill)]
        if backfills:
            others.append(BackfillGroup(table, backfills))
        ordered += sorted(others, key=lambda s: s.order)
    return ordered
