"""Benchmark: a deploy under the backend's own load, against the hand-run SQL and the
hand-written online recipe.

    .venv/bin/python benchmarks/bench_online.py --rows 100000 --from base
    .venv/bin/python benchmarks/bench_online.py --rows 100000 --from 008

Starts its own throwaway PostgreSQL (chatdb.local.server.Cluster, fsync on, default
settings) and builds a template database with --rows conversations and ten times as
many messages (--messages-per-conversation):

- ``--from base`` (default): revision 000, then chat_conversations and chat_messages as
  the older script made them (no customer_id, none of 004's other objects), with the
  index on chat_messages.conversation_id the backend's reads need;
- ``--from 008``: revision 008 (chat_messages without message_text: 009's and 012's
  message backfills are the work);
- ``--from 004``: revision 004, then chat_conversations drifted (customer_id dropped).

Then on the same server, one after the other, each on a fresh copy of the template:
(0) the client load alone, no deploy (the machine's noise floor); (a) the hand-run SQL
of the revisions the run applies, each file sent as one query string (one transaction);
(b) the hand-written online recipe a careful operator would run instead
(benchmarks/recipe.py); (c) ``alembic upgrade head``, the real command line; (d) the
same upgrade with no client (the floor of the work itself).

During (0) to (c), --clients threads send the backend's own calls (benchmarks/load.py:
message sends, reads of a conversation's messages, mark-reads, unread resets, new
conversations; 90 % of them on 2 % of the conversations) as PostgREST runs them. A
monitor thread samples pg_stat_activity every few milliseconds for the migration's
backend and rebuilds the statements it ran. For each arm it prints the wall time, the
worst and p99 latency of the client requests that overlapped the migration, client
requests and errors, the NULLs left, the schema outcome, and which migration statement
was running when the worst request started; for (b) and (c) the time of each step and
the rows per second of each backfill; then a summary against the targets, and a
picture of the latencies (matplotlib, the ``bench`` extra). Nothing is asserted:
these are figures for docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg

from benchmarks import load, picture, recipe
from benchmarks.load import ClientLoad, LoadCall, Op, message
from chatdb.local.server import Cluster
from tests.drifted_table import fill_conversations, make_drifted, make_older_script_tables
from tests.pg import ALEMBIC, SQL_DIR, migrate

HAND_RUN = SQL_DIR / "hand_run"
# The hand-run SQL of each revision that has one, in the order a run applies them
# (009 as it had to be run on 004's tables, which have no column "message").
ORIGINAL_SQL = {
    "004": SQL_DIR / "original_004_chat_system.sql",
    "008": SQL_DIR / "original_008_fix_customer_id.sql",
    "009": HAND_RUN / "009_phone_based_chat_without_message_column.sql",
    "012": HAND_RUN / "012_fix_chat_message_type.sql",
    "013": HAND_RUN / "013_add_missing_chat_columns.sql",
}
# What the hand-run arm applies from each starting point: from 008, the files of the
# revisions that change chat_messages' rows and indexes.
APPLIED_FROM = {"base": ("004", "008"), "004": ("008",), "008": ("009", "012", "013")}
STARTS = {
    "base": "base (revision 000 and the older script's chat tables)",
    "004": "004 (revision 004, customer_id dropped)",
    "008": "008 (revision 008: chat_messages without message_text)",
}
ARMS = ("original", "recipe", "project", "floor", "alone")
DEFAULT_FLOOR_S = 30.0  # the floor's length when the project's arm does not run

ORIGINAL_APP = "bench original sql"
RECIPE_APP = "bench recipe"
MONITOR_APP = "bench monitor"
PROJECT_APP_PATTERN = "chatdb%"  # alembic names its session 'chatdb migrate'

SLOW_OP_MS = 50  # the report counts client requests slower than this
TARGET_WORST_MS, TARGET_FLOOR_MS = 100, 50

# A line the deploy logs about a step's duration: "INFO [chatdb.deploy.x] ... in 1.23 s".
TIMED_LOG_LINE = re.compile(r"\[chatdb\.deploy(?:\.[\w.]+)?\] .* in \d+(?:\.\d+)? s\b")
# The online path's backfill lines: the rows it filled, and the step's duration.
BACKFILL_ROWS = re.compile(r"online: (\w+): (fill .+?): ([\d,]+) rows in ")
BACKFILL_SECONDS = re.compile(r"online: (\w+): (fill .+?) in (\d+(?:\.\d+)?) s\b")

# ---------------------------------------------------------------------- statement monitor

# One sample: the server's clock, and the migration's backends (none: one row of NULLs).
SAMPLE_SQL = """
SELECT extract(epoch FROM clock_timestamp())::float8,
       a.pid, a.state,
       extract(epoch FROM a.query_start)::float8,
       extract(epoch FROM a.state_change)::float8,
       extract(epoch FROM a.xact_start)::float8,
       a.wait_event_type, a.wait_event, a.query
FROM (SELECT 1) AS one
LEFT JOIN pg_stat_activity a
  ON a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
 AND (a.application_name LIKE %(app)s OR a.pid = ANY(%(pids)s::int[]))
"""


@dataclass
class Statement:
    """One statement of the migration, rebuilt from samples. Times are on this
    process's time.perf_counter() clock."""

    pid: int
    start: float  # pg_stat_activity.query_start
    query: str
    xact_start: float | None
    first_seen: float | None = None  # first sample showing it running
    last_seen: float | None = None  # last sample showing it running
    ended: float | None = None  # state_change of a sample showing it done (exact)
    waits: list[tuple[float, str | None]] = field(default_factory=list)

    @property
    def end(self) -> float:
        """Exact when a sample saw it done; else the last sample that showed it running."""
        if self.ended is not None:
            return self.ended
        return self.last_seen if self.last_seen is not None else self.start

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)

    def wait_at(self, moment: float) -> str | None:
        """The wait event of the sample nearest to ``moment`` while it ran."""
        if not self.waits:
            return None
        return min(self.waits, key=lambda sample: abs(sample[0] - moment))[1]

    def waits_seen(self) -> list[str]:
        return sorted({wait for _, wait in self.waits if wait})


# One sample of the clients: what each active one waits for ("CPU": none, it runs or
# waits for a core), and whether a lock it waits for is held by the migration.
CLIENTS_SQL = """
SELECT a.pid, coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU'),
       a.wait_event_type = 'Lock' AND pg_blocking_pids(a.pid) && %(pids)s::int[]
FROM pg_stat_activity a
WHERE a.application_name = %(app)s AND a.state = 'active'
"""


class Monitor(threading.Thread):
    """Samples pg_stat_activity on its own autocommit connection every ``period_s`` for
    the backends whose application_name is LIKE ``app_pattern`` or whose pid was given
    to :meth:`watch`, and rebuilds the statements they ran; and samples what the active
    clients wait for (:attr:`client_waits`)."""

    def __init__(self, url: str, period_s: float, app_pattern: str | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.period_s = period_s
        self.app_pattern = app_pattern
        self.pids: list[int] = []
        self.statements: dict[tuple[int, float], Statement] = {}
        self.samples = 0
        # (moment, pid, wait, blocked by the migration) of each active client, each sample
        self.client_waits: list[tuple[float, int, str, bool]] = []
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.error: str | None = None

    def watch(self, pid: int) -> None:
        self.pids.append(pid)

    def finish(self) -> list[Statement]:
        self.stopping.set()
        self.join()
        return sorted(self.statements.values(), key=lambda s: (s.start, s.pid))

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, application_name=MONITOR_APP) as conn:
                offset = clock_offset(conn)
                self.ready.set()
                while not self.stopping.is_set():
                    began = time.perf_counter()
                    rows = conn.execute(
                        SAMPLE_SQL, {"app": self.app_pattern, "pids": list(self.pids)}
                    ).fetchall()
                    self.samples += 1
                    for row in rows:
                        self._record(row, offset)
                    moment = rows[0][0] - offset
                    migration = sorted({*self.pids, *(r[1] for r in rows if r[1] is not None)})
                    for pid, wait, blocked in conn.execute(
                        CLIENTS_SQL, {"app": load.CLIENT_APP, "pids": migration}
                    ).fetchall():
                        self.client_waits.append((moment, pid, wait, bool(blocked)))
                    time.sleep(max(0.0, self.period_s - (time.perf_counter() - began)))
        except psycopg.Error as exc:
            self.error = message(exc)
        finally:
            self.ready.set()

    def _record(self, row: tuple, offset: float) -> None:
        now, pid, state, query_start, state_change, xact_start, wait_type, wait, query = row
        if pid is None or query_start is None or not query:
            return
        key = (pid, query_start)
        statement = self.statements.get(key)
        if statement is None:
            statement = self.statements[key] = Statement(
                pid=pid,
                start=query_start - offset,
                query=query,
                xact_start=None if xact_start is None else xact_start - offset,
            )
        moment = now - offset
        if state == "active":
            if statement.first_seen is None:
                statement.first_seen = moment
            statement.last_seen = moment
            statement.waits.append((moment, f"{wait_type}:{wait}" if wait else None))
        elif state and state.startswith("idle") and state_change is not None:
            statement.ended = state_change - offset


def clock_offset(conn: psycopg.Connection) -> float:
    """The server's clock (epoch seconds) minus this process's perf_counter()."""
    before = time.perf_counter()
    server = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()[0]
    after = time.perf_counter()
    return server - (before + after) / 2


# ---------------------------------------------------------------------- the arms


@dataclass
class Applied:
    log: list[str]
    stderr: str = ""
    steps: list[recipe.Timed] = field(default_factory=list)  # the recipe's, timed


@dataclass
class Arm:
    name: str
    label: str
    wall_s: float
    ops: list[Op]
    window: tuple[float, float]
    nulls: dict[str, int]
    schema: str
    applied: Applied
    statements: list[Statement]
    samples: int
    monitor_error: str | None
    client_waits: list[tuple[float, int, str, bool]] = field(default_factory=list)
    wal_bytes: int = 0  # WAL the server wrote from the migration's start to its end

    def during(self) -> list[Op]:
        t0, t1 = self.window
        return [op for op in self.ops if op.start <= t1 and op.end >= t0]

    def before(self) -> list[Op]:
        return [op for op in self.ops if op.end < self.window[0]]

    def worst_op(self) -> Op | None:
        return max(self.during(), key=lambda op: op.latency_ms, default=None)

    def errors(self) -> list[Op]:
        return [op for op in self.during() if op.error]


Apply = Callable[[str, "Monitor"], Applied]


def apply_nothing(seconds: Callable[[], float]) -> Apply:
    """No deploy: the load alone for ``seconds()`` (the machine's noise floor)."""

    def apply(url: str, monitor: Monitor) -> Applied:
        time.sleep(seconds())
        return Applied([f"no deploy: the load alone for {seconds():.1f} s"])

    return apply


def apply_original(files: list[Path]) -> Apply:
    """The hand-run files, each as one query string: PostgreSQL runs it as one
    transaction. A file that fails is rolled back whole, and the next one still runs
    (an operator runs them one by one)."""

    def apply(url: str, monitor: Monitor) -> Applied:
        log: list[str] = []
        with psycopg.connect(url, autocommit=True, application_name=ORIGINAL_APP) as conn:
            monitor.watch(conn.info.backend_pid)
            conn.add_notice_handler(lambda d: log.append(f"  NOTICE: {d.message_primary}"))
            timed = []
            for path in files:
                start = time.perf_counter()
                try:
                    conn.execute(path.read_text())
                    result = "committed"
                except psycopg.Error as exc:
                    result = f"FAILED and rolled back ({message(exc)})"
                timed.append(recipe.Timed(path.name, start, time.perf_counter(), result))
                log.append(f"{path.name}: {result} after {time.perf_counter() - start:.2f} s")
        return Applied(log, steps=timed)

    return apply


def apply_recipe(steps: list[recipe.Step]) -> Apply:
    """The hand-written online recipe (benchmarks/recipe.py), step by step."""

    def apply(url: str, monitor: Monitor) -> Applied:
        with psycopg.connect(url, autocommit=True, application_name=RECIPE_APP) as conn:
            monitor.watch(conn.info.backend_pid)
            try:
                timed = recipe.run(conn, steps)
            except (psycopg.Error, RuntimeError) as exc:
                return Applied([f"recipe FAILED: {message(exc)}"])
        lines = [
            f"{step.label}: {step.seconds:.2f} s" + (f" ({step.detail})" if step.detail else "")
            for step in timed
        ]
        return Applied(lines, steps=timed)

    return apply


def apply_project(x_args: list[str]) -> Apply:
    """``alembic [-x ...] upgrade head``, the real command line, DATABASE_URL set."""

    def apply(url: str, monitor: Monitor) -> Applied:
        env = {k: v for k, v in os.environ.items() if k != "PGRST_DB_CHANNEL"}
        env["DATABASE_URL"] = url
        argv = [ALEMBIC, *[a for x in x_args for a in ("-x", x)], "upgrade", "head"]
        result = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        # Alembic prints a failure once, as "FAILED: ..." on stdout.
        lines = [
            line
            for line in (result.stderr + result.stdout).splitlines()
            if "[chatdb" in line or "FAILED" in line
        ]
        if result.returncode != 0:
            lines.append(f"alembic exited with status {result.returncode}")
        return Applied(lines, result.stderr)

    return apply


def run_arm(
    name: str,
    label: str,
    url: str,
    apply: Apply,
    app_pattern: str | None,
    args: argparse.Namespace,
    calls: dict[str, LoadCall],
    clients: int,
) -> Arm:
    loaded = ClientLoad(url, args.rows, clients, args.think_ms / 1000, calls)
    monitor = Monitor(url, args.sample_ms / 1000, app_pattern)
    monitor.start()
    monitor.ready.wait()
    loaded.start()
    if clients:
        time.sleep(args.warmup)
    with psycopg.connect(url, autocommit=True) as conn:
        lsn0 = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    t0 = time.perf_counter()
    applied = apply(url, monitor)
    t1 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        wal = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn0,)
        ).fetchone()[0]
    if clients:
        time.sleep(args.cooldown)
    ops = loaded.finish()
    statements = monitor.finish()
    nulls, schema = outcome(url)
    return Arm(
        name,
        label,
        t1 - t0,
        ops,
        (t0, t1),
        nulls,
        schema,
        applied,
        statements,
        monitor.samples,
        monitor.error,
        monitor.client_waits,
        int(wal),
    )


# What must be filled when the run is done: (table, column, condition of a row left).
FILLED = (
    ("chat_conversations", "customer_id", "customer_id IS NULL"),
    ("chat_messages", "message_text", "message_text IS NULL"),
    ("chat_messages", "message_type", "message_type IS NULL OR message_type = ''"),
)


def outcome(url: str) -> tuple[dict[str, int], str]:
    """The rows left unfilled per column (-1: the column is missing), and the schema's
    state: customer_id and message_text, the customer_id index, whether 004's objects
    exist, the version Alembic recorded."""
    with psycopg.connect(url, autocommit=True) as conn:

        def one(sql: str):
            row = conn.execute(sql).fetchone()
            return None if row is None else row[0]

        def notnull(table: str, column: str) -> bool | None:
            return one(
                f"SELECT attnotnull FROM pg_attribute WHERE attrelid = '{table}'::regclass "
                f"AND attname = '{column}' AND NOT attisdropped"
            )

        nulls = {}
        for table, column, left in FILLED:
            exists = notnull(table, column) is not None
            nulls[column] = one(f"SELECT count(*) FROM {table} WHERE {left}") if exists else -1
        index = one(
            "SELECT indisvalid FROM pg_index "
            "WHERE indexrelid = to_regclass('public.idx_chat_conversations_customer')"
        )
        participants = one("SELECT to_regclass('public.chat_participants') IS NOT NULL")
        rls = one("SELECT relrowsecurity FROM pg_class WHERE oid = 'chat_conversations'::regclass")
        version = one(
            "SELECT string_agg(version_num, ',') FROM alembic_version"
            if one("SELECT to_regclass('public.alembic_version') IS NOT NULL")
            else "SELECT NULL"
        )
        columns = {
            column: notnull(table, column)
            for table, column in (
                ("chat_conversations", "customer_id"),
                ("chat_messages", "message_text"),
            )
        }
    shown = "; ".join(
        f"{column} {'missing' if state is None else ('NOT NULL' if state else 'nullable')}"
        for column, state in columns.items()
    )
    index_state = "absent" if index is None else ("valid" if index else "INVALID")
    objects = "present" if participants and rls else "absent"
    return nulls, (
        f"{shown}; idx_chat_conversations_customer {index_state}; "
        f"004's objects (chat_participants, RLS) {objects}; alembic_version {version or 'none'}"
    )


# ---------------------------------------------------------------------- statements to steps


def normalized(query: str) -> str:
    """The statement without comment lines, its whitespace collapsed."""
    lines = [line for line in query.splitlines() if not line.strip().startswith("--")]
    return " ".join(" ".join(lines).split())


def shortened(query: str, width: int = 120) -> str:
    text = normalized(query)
    return text if len(text) <= width else text[: width - 3] + "..."


# How a statement's normalized text names its step: (pattern, name); the first that
# matches wins. Statements that none matches are grouped by their transaction.
STEP_NAMES: list[tuple[str, Callable[[re.Match[str]], str]]] = [
    (
        r"^CREATE (?:UNIQUE )?INDEX (CONCURRENTLY )?(?:IF NOT EXISTS )?(\S+)",
        lambda m: f"CREATE INDEX {m[1] or ''}{m[2]}",
    ),
    (
        r"^DROP INDEX (CONCURRENTLY )?(?:IF EXISTS )?(\S+)",
        lambda m: f"DROP INDEX {m[1] or ''}{m[2]}",
    ),
    (
        r"^ALTER TABLE (?:ONLY )?(\S+) VALIDATE CONSTRAINT (\S+)",
        lambda m: f"ALTER TABLE {m[1]} VALIDATE CONSTRAINT {m[2]}",
    ),
    (
        r"^ALTER TABLE (?:ONLY )?(\S+) (ADD COLUMN|ADD CONSTRAINT|DROP CONSTRAINT|ALTER COLUMN \S+ SET NOT NULL)",
        lambda m: f"ALTER TABLE {m[1]} {m[2]}",
    ),
    (
        r"^WITH (?:done AS \(UPDATE|picked AS \(SELECT ctid FROM) (\S+) ",
        lambda m: f"backfill of {m[1].split('.')[-1]}: UPDATE batches of pages",
    ),
    (
        r"^WITH batch AS \(SELECT id FROM (\S+) ",
        lambda m: f"keyset batches of {m[1].split('.')[-1]} (recipe)",
    ),
    (r"^UPDATE (\S+) t SET (\w+) = ", lambda m: f"sweep of {m[2]} (recipe)"),
    (r"^UPDATE \S*chat_conversations SET customer_id = ", lambda m: "backfill: one UPDATE"),
    (
        r"^DO .*\bUPDATE \S*chat_conversations SET customer_id = ",
        lambda m: "backfill: one UPDATE of every NULL row (DO block)",
    ),
    (r"pg_(?:try_)?advisory_lock", lambda m: "migration lock"),
]
STEP_RULES = [(re.compile(pattern, re.IGNORECASE), name) for pattern, name in STEP_NAMES]


@dataclass
class Step:
    label: str
    statements: list[Statement]

    @property
    def start(self) -> float:
        return min(s.start for s in self.statements)

    @property
    def end(self) -> float:
        return max(s.end for s in self.statements)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.statements)


def transactions(statements: list[Statement]) -> tuple[set[float], float | None]:
    """The xact_start of every multi-statement transaction, and of the last one."""
    multi = {
        s.xact_start
        for s in statements
        if s.xact_start is not None
        and (s.start - s.xact_start > 1e-6 or normalized(s.query).upper() == "BEGIN")
    }
    return multi, max(multi, default=None)


def step_name(statement: Statement) -> str | None:
    """The step a statement names by itself (STEP_RULES), or None."""
    text = normalized(statement.query)
    for pattern, name in STEP_RULES:
        match = pattern.search(text)
        if match:
            return name(match)
    return None


def steps_of(statements: list[Statement], t0: float) -> list[Step]:
    """Group statements into steps: named ones by their rule (repeated ones, such as the
    backfill's batches, aggregated); the others with the final transaction, or with a
    transaction that holds a named step (its locks are held between statements), or
    else as the run's other short statements (session setup, SETs, catalog reads)."""
    multi, final = transactions(statements)
    holding = {s.xact_start for s in statements if s.xact_start in multi and step_name(s)}
    steps: dict[str, Step] = {}
    for statement in statements:
        label = step_name(statement)
        if label is None:
            if statement.xact_start is not None and statement.xact_start == final:
                label = "final transaction (its other statements)"
            elif statement.xact_start in holding:
                label = (
                    f"transaction begun at +{statement.xact_start - t0:.2f} s "
                    "(its other statements)"
                )
            else:
                label = "other short statements (session setup, SET, catalog reads)"
        steps.setdefault(label, Step(label, [])).statements.append(statement)
    return sorted(steps.values(), key=lambda step: step.start)


def covered(statements: list[Statement], t0: float, t1: float) -> float:
    """Seconds of [t0, t1] during which some sampled statement ran."""
    total, reach = 0.0, t0
    for start, end in sorted((max(s.start, t0), min(s.end, t1)) for s in statements):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def running_at(statements: list[Statement], moment: float) -> Statement | None:
    """The sampled statement whose [query_start, end] covers ``moment``."""
    candidates = [s for s in statements if s.start <= moment <= s.end]
    return max(candidates, key=lambda s: s.start, default=None)


@functools.cache
def original_texts() -> dict[str, str]:
    """The hand-run files' texts by name, read once (describe runs per slow request)."""
    return {path.name: path.read_text() for path in ORIGINAL_SQL.values()}


def describe(statement: Statement) -> str:
    """A statement in one short line; a hand-run file is named."""
    for name, sql in original_texts().items():
        if sql.startswith(statement.query[:200]):
            return f"{name} (the whole file, one query string)"
    return shortened(statement.query)


# ---------------------------------------------------------------------- report


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def worst(ops: list[Op]) -> float:
    return max((op.latency_ms for op in ops), default=float("nan"))


def report(arm: Arm, args: argparse.Namespace, *, steps: bool) -> None:
    during = arm.during()
    latencies = [op.latency_ms for op in during]
    errors = [op for op in during if op.error]
    per_kind = load.kinds_line(during, worst)
    before = arm.before()
    print(f"\n{arm.label}")
    for line in arm.applied.log:
        print(f"    | {line}")
    print(f"  migration wall time       {arm.wall_s:9.2f} s")
    print(
        f"  WAL written meanwhile     {arm.wal_bytes / 2**20:9.1f} MB"
        f"  ({arm.wal_bytes / 2**20 / arm.wall_s:.1f} MB/s, clients' included)"
    )
    print(f"  worst client op           {worst(during):9.1f} ms")
    print(f"  p99 client op             {percentile(latencies, 99):9.1f} ms")
    print(f"  client ops during it      {len(during):9d}  ({per_kind})")
    print(f"  client errors             {len(errors):9d}")
    for text in sorted({op.error for op in errors})[:3]:
        print(f"    {text}")
    print(
        "  rows left unfilled        "
        + ", ".join(f"{column} {left}" for column, left in arm.nulls.items())
        + "  (-1: no such column)"
    )
    print(f"  schema after              {arm.schema}")
    print(
        f"  baseline before it        p99 {percentile([o.latency_ms for o in before], 99):.1f} ms,"
        f" worst {worst(before):.1f} ms over {len(before)} ops"
    )
    if arm.monitor_error:
        print(f"  monitor failed            {arm.monitor_error}")
    for line in backfill_lines(arm):
        print(f"  backfill                  {line}")
    report_client_waits(arm)
    if arm.applied.steps:
        report_recipe_steps(arm)
    if steps:
        report_steps(arm, args)
    report_slow_ops(arm)
    report_worst_op(arm)


@dataclass(frozen=True)
class Backfill:
    what: str
    rows: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def __str__(self) -> str:
        return (
            f"{self.what}: {self.rows:,} rows in {self.seconds:.2f} s, "
            f"{self.per_second:,.0f} rows/s"
        )


def backfills(arm: Arm) -> list[Backfill]:
    """Each backfill of the arm: the project's from its log lines (rows, step duration),
    the recipe's from its timed steps (keyset batches and sweep of a column together)."""
    if arm.applied.steps:
        found: dict[str, list[float]] = {}
        for step in arm.applied.steps:
            if step.rows is not None and step.label.startswith("fill "):
                what = step.label.split(":")[0]
                rows, seconds = found.get(what, [0, 0.0])
                found[what] = [rows + step.rows, seconds + step.seconds]
        return [Backfill(what, int(rows), seconds) for what, (rows, seconds) in found.items()]
    rows = {
        (m[1], m[2]): int(m[3].replace(",", "")) for m in BACKFILL_ROWS.finditer(arm.applied.stderr)
    }
    out = []
    for m in BACKFILL_SECONDS.finditer(arm.applied.stderr):
        if (m[1], m[2]) in rows:
            out.append(Backfill(f"{m[1]}: {m[2]}", rows[(m[1], m[2])], float(m[3])))
    return out


def backfill_lines(arm: Arm) -> list[str]:
    return [str(b) for b in backfills(arm)]


def wait_shares(waits: list[tuple[float, int, str, bool]], top: int = 5) -> str:
    """The shares of the samples by wait event ("on a lock the migration holds" apart)."""
    if not waits:
        return "no sample"
    counts: dict[str, int] = {}
    for _, _, wait, blocked in waits:
        label = f"{wait} (held by the migration)" if blocked else wait
        counts[label] = counts.get(label, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    shown = ", ".join(f"{label} {100 * n / len(waits):.0f}%" for label, n in ranked[:top])
    return f"{shown} of {len(waits):,} samples"


def report_client_waits(arm: Arm, over_ms: float = SLOW_OP_MS) -> None:
    """What the active clients waited for during the migration (each sample of each
    active client), and during their requests over ``over_ms`` only (the samples of that
    client's backend within the request): a row lock, a page read, the CPU."""
    t0, t1 = arm.window
    during = [w for w in arm.client_waits if t0 <= w[0] <= t1]
    if not during:
        return
    print(f"  clients' waits during it  {wait_shares(during)} (CPU: running or waiting for a core)")
    slow = [op for op in arm.during() if op.latency_ms > over_ms and op.pid]
    if not slow:
        return
    spans: dict[int, list[tuple[float, float]]] = {}
    for op in slow:
        spans.setdefault(op.pid, []).append((op.start, op.end))
    inside = [w for w in during if any(start <= w[0] <= end for start, end in spans.get(w[1], ()))]
    print(f"    in the requests over {over_ms:g} ms: {wait_shares(inside)}")


def report_recipe_steps(arm: Arm) -> None:
    t0 = arm.window[0]
    print("  steps (timed by the benchmark):")
    print(f"    {'start':>8}  {'seconds':>8}  {'share':>6}  step")
    for step in arm.applied.steps:
        at = f"+{step.start - t0:.2f} s"
        print(
            f"    {at:>8}  {step.seconds:8.3f}  {100 * step.seconds / arm.wall_s:5.1f}%  "
            f"{step.label}" + (f" ({step.detail})" if step.detail else "")
        )


def report_steps(arm: Arm, args: argparse.Namespace) -> None:
    t0, t1 = arm.window
    print(
        f"  steps of the run, from {arm.samples} samples of pg_stat_activity (every "
        f"{args.sample_ms:g} ms; a statement shorter than that is often missed, so the counts "
        "and seconds of short statements are lower bounds):"
    )
    print(f"    {'start':>8}  {'seconds':>8}  {'share':>6}  step")
    for step in steps_of(arm.statements, t0):
        detail = ""
        if len(step.statements) > 1:
            durations = [s.seconds * 1000 for s in step.statements]
            detail = (
                f" ({len(step.statements)} sampled, median {statistics.median(durations):.1f} ms,"
                f" max {max(durations):.1f} ms, from first to last "
                f"{step.end - step.start:.2f} s)"
            )
        at = f"+{step.start - t0:.2f} s"
        print(
            f"    {at:>8}  {step.seconds:8.3f}  "
            f"{100 * step.seconds / arm.wall_s:5.1f}%  {step.label}{detail}"
        )
        waits = [(m, 0, w or "CPU", False) for s in step.statements for m, w in s.waits]
        if len(waits) >= 20:
            print(f"{'':>32}its backend: {wait_shares(waits)}")
    inside = covered(arm.statements, t0, t1)
    first = min((s.start for s in arm.statements), default=t1)
    print(
        f"    not inside a sampled statement: {arm.wall_s - inside:.2f} s of {arm.wall_s:.2f} s "
        f"(of which {max(first - t0, 0):.2f} s before the first one: process start, imports, "
        "connect; the rest between statements and in statements too short to be sampled)"
    )
    timed = [
        line.strip() for line in arm.applied.stderr.splitlines() if TIMED_LOG_LINE.search(line)
    ]
    print("  logged by the run (chatdb.deploy lines with ' in <number> s'):")
    for line in timed:
        print(f"    {line}")
    if not timed:
        print("    (none)")


def report_slow_ops(arm: Arm, over_ms: float = SLOW_OP_MS) -> None:
    """How many client operations took over ``over_ms``, by what the migration was running
    when each started: whether a stall is one outlier or a pattern of a step."""
    slow = [op for op in arm.during() if op.latency_ms > over_ms]
    where: dict[str, list[Op]] = {}
    for op in slow:
        statement = running_at(arm.statements, op.start)
        if statement is None:
            label = "no sampled statement running"
        else:
            label = step_name(statement) or shortened(describe(statement), 80)
        where.setdefault(label, []).append(op)
    print(f"  client ops over {over_ms:g} ms     {len(slow):5d}")
    for label, ops in sorted(where.items(), key=lambda item: -len(item[1])):
        starts = ", ".join(f"+{op.start - arm.window[0]:.2f} s" for op in ops[:6])
        more = ", ..." if len(ops) > 6 else ""
        print(f"    {len(ops):5d} during {label} (starting at {starts}{more})")


def report_worst_op(arm: Arm) -> None:
    op = arm.worst_op()
    if op is None:
        print("  worst op started during   (no client operation overlapped the migration)")
        return
    at = f"{op.kind} {op.latency_ms:.1f} ms, started at +{op.start - arm.window[0]:.2f} s"
    statement = running_at(arm.statements, op.start)
    if statement is not None:
        wait = statement.wait_at(op.start)
        print(
            f"  worst op started during   {at}, while the migration ran: "
            f"{describe(statement)}" + (f" [wait_event {wait}]" if wait else " [no wait_event]")
        )
        return
    earlier = [s for s in arm.statements if s.start <= op.start]
    if not earlier:
        print(f"  worst op started during   {at}, before the migration's first sampled statement")
        return
    last = max(earlier, key=lambda s: s.end)
    later = [s for s in arm.statements if s.start > op.start and s.pid == last.pid]
    following = min(later, key=lambda s: s.start, default=None)
    multi, _ = transactions(arm.statements)
    if following is None:
        where = "after the migration's last sampled statement"
    elif last.xact_start in multi and following.xact_start == last.xact_start:
        where = (
            "between two statements of the transaction begun at "
            f"+{last.xact_start - arm.window[0]:.2f} s, which holds its locks"
        )
    else:
        where = "between two statements"
    line = (
        f"  worst op started during   {at}, while no sampled statement ran, {where}; "
        f"previous (ended {(op.start - last.end) * 1000:.1f} ms before): "
        f"{shortened(describe(last), 100)}"
    )
    if following is not None:
        line += (
            f"; next (began {(following.start - op.start) * 1000:.1f} ms after): "
            f"{shortened(describe(following), 100)}"
        )
    print(line)


def machine(conn: psycopg.Connection) -> str:
    memory = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
    total = memory.splitlines()[1].split()[1] if memory else "?"
    version = conn.execute("SHOW server_version").fetchone()[0]
    settings = ", ".join(
        f"{name} {conn.execute(f'SHOW {name}').fetchone()[0]}"
        for name in (
            "shared_buffers",
            "fsync",
            "synchronous_commit",
            "max_wal_size",
            "maintenance_work_mem",
            "max_parallel_maintenance_workers",
        )
    )
    return (
        f"nproc {os.cpu_count()}, memory {total} total, {platform.machine()}, "
        f"PostgreSQL {version} ({settings})"
    )


def build_template(url: str, start: str, rows: int, per_conversation: int) -> None:
    """The starting point's tables, ``rows`` conversations and ``per_conversation``
    messages for each (written without 004's message trigger, which would bump a
    conversation per message), with the index on chat_messages.conversation_id that
    the backend's reads of a conversation's messages need (004's, by its name)."""
    if start == "base":
        migrate(url, "000")
        make_older_script_tables(url, rows)
    elif start == "004":
        migrate(url, "004")
        make_drifted(url, rows)
    else:
        migrate(url, start)
        with psycopg.connect(url, autocommit=True) as conn:
            fill_conversations(conn, rows, customer_id="filled")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        if per_conversation:
            load.fill_messages(conn, rows, per_conversation)
        conn.execute(
            "CREATE INDEX IF NOT EXISTS idx_chat_messages_conversation "
            "ON chat_messages (conversation_id)"
        )
        conn.execute("VACUUM ANALYZE chat_messages")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="conversations")
    parser.add_argument(
        "--messages-per-conversation",
        type=int,
        default=10,
        dest="per_conversation",
        help="messages in chat_messages for each conversation",
    )
    parser.add_argument(
        "--from",
        dest="start",
        choices=tuple(STARTS),
        default="base",
        help="base: revision 000 and the older script's tables; 008: revision 008; "
        "004: 004 with customer_id dropped",
    )
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument(
        "--think-ms", type=float, default=0.0, help="pause of each client between its requests"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before")
    parser.add_argument("--cooldown", type=float, default=1.0, help="seconds of load after")
    parser.add_argument(
        "--floor",
        type=float,
        default=None,
        help="seconds of the load alone, no deploy (default: as long as the project's "
        f"deploy took, or {DEFAULT_FLOOR_S:g} s)",
    )
    parser.add_argument(
        "--arms",
        default=",".join(ARMS),
        help=f"which arms to run, in this order: {','.join(ARMS)} (comma-separated)",
    )
    parser.add_argument(
        "--calls",
        type=Path,
        default=None,
        help="a calls file (chatdb.calls.model); default the project's calls/backend.calls",
    )
    parser.add_argument(
        "--sample-ms", type=float, default=5.0, help="period of the pg_stat_activity samples"
    )
    parser.add_argument(
        "--picture",
        type=Path,
        default=None,
        help="the PNG of client latency over time (default: /tmp/chatdb-bench-from-START-ROWS.png)",
    )
    parser.add_argument(
        "-x",
        action="append",
        default=[],
        dest="x_args",
        metavar="KEY=VALUE",
        help="passed to alembic as -x (repeatable), e.g. -x online_batch_ms=20",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the cluster's folder (server stopped)"
    )
    args = parser.parse_args(argv)
    arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown or not arms:
        parser.error(f"--arms: {', '.join(unknown) or 'none'}: use some of {', '.join(ARMS)}")
    args.arms = [arm for arm in ARMS if arm in arms]
    if args.floor is None and "project" not in args.arms:
        args.floor = DEFAULT_FLOOR_S
    if args.start == "004" and "recipe" in args.arms:
        args.arms.remove("recipe")  # the recipe is written for base (008) and 008 (009-013)
    return args


def arm_specs(args: argparse.Namespace) -> dict[str, tuple[str, Apply, str | None, int]]:
    """Each arm: its label, what it applies, the application_name its sessions match,
    and its clients."""
    originals = [ORIGINAL_SQL[revision] for revision in APPLIED_FROM[args.start]]
    x_shown = "".join(f" -x {x}" for x in args.x_args)
    specs = {
        "floor": (
            "(d) no deploy: the load alone, as long as the project's deploy or --floor "
            + "(the machine's noise floor)",
            apply_nothing(lambda: args.floor),
            None,
            args.clients,
        ),
        "original": (
            "(a) original SQL: "
            + ", then ".join(p.name for p in originals)
            + ", each one query string (one transaction)",
            apply_original(originals),
            None,
            args.clients,
        ),
        "project": (
            f"(c) project: alembic{x_shown} upgrade head",
            apply_project(args.x_args),
            PROJECT_APP_PATTERN,
            args.clients,
        ),
        "alone": (
            f"(e) project with no client: alembic{x_shown} upgrade head (the floor of the work)",
            apply_project(args.x_args),
            PROJECT_APP_PATTERN,
            0,
        ),
    }
    if args.start in recipe.RECIPES:
        specs["recipe"] = (
            "(b) hand-written online recipe (benchmarks/recipe.py): "
            + recipe.APPLIES[args.start]
            + f" online, keyset batches of {recipe.BATCH:,} ids",
            apply_recipe(recipe.RECIPES[args.start]),
            None,
            args.clients,
        )
    return specs


# ---------------------------------------------------------------------- summary, picture


def summary(arms: dict[str, Arm], args: argparse.Namespace, messages: int) -> None:
    rows = args.rows + messages
    print(
        f"\nsummary: from {args.start}, {args.rows:,} conversations and {messages:,} messages, "
        f"{args.clients} clients"
    )
    for name, arm in arms.items():
        during = arm.during()
        latencies = [op.latency_ms for op in during]
        if name == "floor":
            figures = f"load alone {arm.wall_s:.1f} s"
        else:
            figures = f"wall {arm.wall_s:8.2f} s, WAL {arm.wal_bytes / 2**20:,.0f} MB"
        if name != "alone":
            figures += (
                f", worst {worst(during):9.1f} ms, p99 {percentile(latencies, 99):7.1f} ms, "
                f"{len(during):,} requests, {len(arm.errors())} errors"
            )
        rates = "; ".join(
            f"{b.what.split(': ')[-1]} {b.per_second:,.0f} rows/s" for b in backfills(arm)
        )
        left = sum(max(n, 0) for n in arm.nulls.values())
        print(
            f"  {name:<9} {figures}"
            + (f"; backfills {rates}" if rates else "")
            + (f"; {left:,} rows left unfilled" if left and name != "floor" else "")
        )
    project, alone = arms.get("project"), arms.get("alone")
    for label, arm in (("project", project), ("no clients", alone)):
        if arm is not None:
            print(f"  cost per row ({label}): {arm.wall_s / rows * 1e6:.1f} us "
                  f"(wall time / {rows:,} conversations and messages)")  # fmt: skip
    print("  targets:")
    floor = arms.get("floor")
    if project is not None and floor is not None:
        worst_ms, floor_ms = worst(project.during()), worst(floor.during())
        met = worst_ms < TARGET_WORST_MS and floor_ms < TARGET_FLOOR_MS and not project.errors()
        print(
            f"    worst client op under {TARGET_WORST_MS} ms, no-deploy worst under "
            f"{TARGET_FLOOR_MS} ms, no client error: {'met' if met else 'NOT met'} "
            f"(worst {worst_ms:.1f} ms, no-deploy worst {floor_ms:.1f} ms, "
            f"{len(project.errors())} errors)"
        )
    if project is not None and "recipe" in arms:
        ratio = project.wall_s / arms["recipe"].wall_s
        print(
            f"    project wall at most 0.55 x the recipe's: {'met' if ratio <= 0.55 else 'NOT met'}"
            f" ({ratio:.2f} x)"
        )
    if project is not None and "original" in arms and args.start == "008":
        ratio = project.wall_s / arms["original"].wall_s
        print(
            f"    project wall within 2 x the hand-run SQL's: {'met' if ratio <= 2 else 'NOT met'}"
            f" ({ratio:.2f} x)"
        )


def bands(arm: Arm) -> list[picture.Band]:
    t0 = arm.window[0]
    if arm.applied.steps:
        return [picture.Band(s.label, s.start - t0, s.end - t0) for s in arm.applied.steps]
    return [
        picture.Band(step.label, step.start - t0, step.end - t0)
        for step in steps_of(arm.statements, t0)
        if not step.label.startswith("other short statements")
    ]


def draw(arms: dict[str, Arm], args: argparse.Namespace, messages: int) -> None:
    path = args.picture or Path(f"/tmp/chatdb-bench-from-{args.start}-{args.rows}.png")
    why = picture.available()
    if why is not None:
        print(f"\npicture: none drawn: {why}")
        return
    panels = []
    for name in ("original", "recipe", "project", "floor"):
        arm = arms.get(name)
        if arm is None:
            continue
        t0 = arm.window[0]
        title = (
            f"{arm.label}: wall {arm.wall_s:.1f} s, worst {worst(arm.during()):.1f} ms, "
            f"p99 {percentile([op.latency_ms for op in arm.during()], 99):.1f} ms"
        )
        points = [(op.start - t0, op.latency_ms, op.kind) for op in arm.ops if not op.error]
        panels.append(picture.Panel(title, arm.wall_s, points, bands(arm)))
    if not panels:
        return
    picture.draw(
        panels,
        f"from {args.start}: {args.rows:,} conversations, {messages:,} messages, "
        f"{args.clients} clients, no think time",
        path,
        TARGET_WORST_MS,
    )
    print(f"\npicture: {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM ends the run through its finally: the throwaway cluster is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    messages = args.rows * args.per_conversation
    calls, source = load.backend_calls(args.calls)
    specs = arm_specs(args)
    cluster = Cluster.in_new_folder("chatdb-bench-")
    cluster.start()
    try:
        admin = psycopg.connect(cluster.url("postgres"), autocommit=True)
        print(
            f"bench_online: from {STARTS[args.start]}, {args.rows:,} conversations, "
            f"{messages:,} messages; {args.clients} clients sending the backend's calls, "
            f"think time {args.think_ms:g} ms; migration sampled every {args.sample_ms:g} ms"
        )
        print(f"machine: {machine(admin)}")
        began = time.perf_counter()
        admin.execute("CREATE DATABASE bench_template")
        template = cluster.url("bench_template")
        build_template(template, args.start, args.rows, args.per_conversation)
        admin.execute("CHECKPOINT")
        print(f"built the template in {time.perf_counter() - began:.1f} s")
        with psycopg.connect(template) as conn:
            cache = load.schema_cache(conn)
        print(
            f"the load: {load.HOT_SHARE:.0%} of the requests on every {load.HOT_EVERY}th "
            f"conversation; calls from {source}:"
        )
        for line in load.describe_calls(calls, cache):
            print(f"    {line}")
        arms: dict[str, Arm] = {}
        for name in args.arms:
            label, apply, app_pattern, clients = specs[name]
            database = f"bench_{name}"
            admin.execute(f"CREATE DATABASE {database} TEMPLATE bench_template STRATEGY FILE_COPY")
            admin.execute("CHECKPOINT")
            os.sync()  # the copy's files reach the disk now, not during the arm
            arm = run_arm(
                name, label, cluster.url(database), apply, app_pattern, args, calls, clients
            )
            report(arm, args, steps=name in ("project", "alone"))
            arms[name] = arm
            if name == "project" and args.floor is None:
                args.floor = arm.wall_s
            if not args.keep:
                admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
            admin.execute("CHECKPOINT")
            os.sync()
        summary(arms, args, messages)
        draw(arms, args, messages)
        admin.close()
    finally:
        if args.keep:
            cluster.stop()
            print(f"kept the cluster (stopped) in {cluster.datadir}")
        else:
            cluster.discard()
    return 0


if __name__ == "__main__":
    sys.exit(main())
