"""Benchmark: how a deploy behaves on a large live chat_conversations, against the hand-run SQL.

    .venv/bin/python benchmarks/bench_online.py --rows 1000000 --from base
    .venv/bin/python benchmarks/bench_online.py --rows 1000000 --from 004

Starts its own throwaway PostgreSQL (chatdb.local.server.Cluster, fsync on, default
settings) and builds a template database with --rows conversations
(tests/drifted_table.py):

- ``--from base`` (default): revision 000, then chat_conversations and chat_messages as
  the older script made them (no customer_id, none of 004's other objects);
- ``--from 004``: revision 004, then chat_conversations drifted (customer_id dropped).

Then on the same server, one after the other, each on a fresh copy of the template,
it applies (a) the hand-run SQL of the revisions the run applies (004 and 008 from
base, 008 from 004), each file sent as one query string, which PostgreSQL runs as one
transaction; (b) ``alembic upgrade head``, the real command line, DATABASE_URL set,
with the benchmark's ``-x`` options.

During each, --clients threads loop (no think time by default) over: read a random
conversation by id, bump its updated_at, insert a chat_messages row referencing it,
each operation timed on its own autocommit connection. A monitor thread samples
pg_stat_activity every few milliseconds for the migration's backend and rebuilds the
statements it ran. For each arm it prints the wall time, the worst and p99 latency of
the client operations that overlapped the migration, client operations and errors,
the NULL customer_id left, the schema outcome, and which migration statement was
running when the worst operation started; for (b) also the time of each step.
Nothing is asserted: these are figures for docs/benchmark.md (docs/benchmark.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
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

from chatdb.local.server import Cluster
from tests.drifted_table import conversation_id, make_drifted, make_older_script_tables
from tests.pg import ALEMBIC, SQL_DIR, migrate

# The hand-run SQL of each revision that has one, in the order a run applies them.
ORIGINAL_SQL = {
    "004": SQL_DIR / "original_004_chat_system.sql",
    "008": SQL_DIR / "original_008_fix_customer_id.sql",
}
# What a run from each starting point applies.
APPLIED_FROM = {"base": ("004", "008"), "004": ("008",)}

CLIENT_APP = "bench client"
ORIGINAL_APP = "bench original sql"
MONITOR_APP = "bench monitor"
PROJECT_APP_PATTERN = "chatdb%"  # alembic names its session 'chatdb migrate'

KINDS = ("read", "update", "insert")
SLOW_OP_MS = 50  # the report counts client operations slower than this
OPERATIONS = {
    # The columns an API built for the older table reads (it does not know customer_id).
    "read": "SELECT id, website_id, customer_name, customer_phone, status, unread_owner, "
    "updated_at FROM chat_conversations WHERE id = %s",
    "update": "UPDATE chat_conversations SET updated_at = now() WHERE id = %s",
    "insert": "INSERT INTO chat_messages (conversation_id, sender_type, content) "
    "VALUES (%s, 'customer', 'hello')",
}

# A line the deploy logs about a step's duration: "INFO [chatdb.deploy.x] ... in 1.23 s".
TIMED_LOG_LINE = re.compile(r"\[chatdb\.deploy(?:\.[\w.]+)?\] .* in \d+(?:\.\d+)? s\b")


# ---------------------------------------------------------------------- client load


@dataclass
class Op:
    kind: str
    start: float  # time.perf_counter()
    end: float
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.end - self.start) * 1000


@dataclass
class ClientLoad:
    """Client threads that loop over OPERATIONS on random conversations until stopped."""

    url: str
    rows: int
    clients: int
    think_s: float
    ops: list[Op] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> list[Op]:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        return self.ops

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True, application_name=CLIENT_APP)
        # A bound, so that a stuck run cannot hang the benchmark for ever.
        conn.execute("SET statement_timeout = '10min'")
        return conn

    def _client(self, n: int) -> None:
        rng = random.Random(n)
        mine: list[Op] = []
        conn: psycopg.Connection | None = None
        while not self.stop.is_set():
            if conn is None or conn.closed:
                start = time.perf_counter()
                try:
                    conn = self._connect()
                except psycopg.Error as exc:
                    mine.append(Op("connect", start, time.perf_counter(), message(exc)))
                    time.sleep(0.1)
                    continue
            target = conversation_id(rng.randint(1, self.rows))
            for kind in KINDS:
                start = time.perf_counter()
                error = None
                try:
                    cursor = conn.execute(OPERATIONS[kind], (target,))
                    if kind == "read":
                        cursor.fetchall()
                except psycopg.Error as exc:
                    error = message(exc)
                mine.append(Op(kind, start, time.perf_counter(), error))
                if conn.closed:
                    break
            if self.think_s:
                time.sleep(self.think_s)
        if conn is not None:
            conn.close()
        self.ops.extend(mine)  # list.extend is atomic under the GIL


def message(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


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


class Monitor(threading.Thread):
    """Samples pg_stat_activity on its own autocommit connection every ``period_s`` for
    the backends whose application_name is LIKE ``app_pattern`` or whose pid was given
    to :meth:`watch`, and rebuilds the statements they ran."""

    def __init__(self, url: str, period_s: float, app_pattern: str | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.period_s = period_s
        self.app_pattern = app_pattern
        self.pids: list[int] = []
        self.statements: dict[tuple[int, float], Statement] = {}
        self.samples = 0
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


# ---------------------------------------------------------------------- the two arms


@dataclass
class Applied:
    log: list[str]
    stderr: str = ""


@dataclass
class Arm:
    label: str
    wall_s: float
    ops: list[Op]
    window: tuple[float, float]
    nulls: int
    schema: str
    applied: Applied
    statements: list[Statement]
    samples: int
    monitor_error: str | None

    def during(self) -> list[Op]:
        t0, t1 = self.window
        return [op for op in self.ops if op.start <= t1 and op.end >= t0]

    def before(self) -> list[Op]:
        return [op for op in self.ops if op.end < self.window[0]]

    def worst_op(self) -> Op | None:
        return max(self.during(), key=lambda op: op.latency_ms, default=None)


def apply_original(files: list[Path]) -> Callable[[str, Monitor], Applied]:
    """The hand-run files, each as one query string: PostgreSQL runs it as one
    transaction. A file that fails is rolled back whole, and the next one still runs
    (an operator runs them one by one)."""

    def apply(url: str, monitor: Monitor) -> Applied:
        log: list[str] = []
        with psycopg.connect(url, autocommit=True, application_name=ORIGINAL_APP) as conn:
            monitor.watch(conn.info.backend_pid)
            conn.add_notice_handler(lambda d: log.append(f"  NOTICE: {d.message_primary}"))
            for path in files:
                start = time.perf_counter()
                try:
                    conn.execute(path.read_text())
                    result = "committed"
                except psycopg.Error as exc:
                    result = f"FAILED and rolled back ({message(exc)})"
                log.append(f"{path.name}: {result} after {time.perf_counter() - start:.2f} s")
        return Applied(log)

    return apply


def apply_project(x_args: list[str]) -> Callable[[str, Monitor], Applied]:
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
    label: str,
    url: str,
    apply: Callable[[str, Monitor], Applied],
    app_pattern: str | None,
    args: argparse.Namespace,
) -> Arm:
    load = ClientLoad(url, args.rows, args.clients, args.think_ms / 1000)
    monitor = Monitor(url, args.sample_ms / 1000, app_pattern)
    monitor.start()
    monitor.ready.wait()
    load.start()
    time.sleep(args.warmup)
    t0 = time.perf_counter()
    applied = apply(url, monitor)
    t1 = time.perf_counter()
    time.sleep(args.cooldown)
    ops = load.finish()
    statements = monitor.finish()
    nulls, schema = outcome(url)
    return Arm(
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
    )


def outcome(url: str) -> tuple[int, str]:
    """NULLs left in customer_id, and the schema's state: the column, the index, whether
    004's objects exist, the version Alembic recorded."""
    with psycopg.connect(url, autocommit=True) as conn:

        def one(sql: str):
            row = conn.execute(sql).fetchone()
            return None if row is None else row[0]

        notnull = one(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'chat_conversations'::regclass "
            "AND attname = 'customer_id' AND NOT attisdropped"
        )
        nulls = (
            -1
            if notnull is None
            else one("SELECT count(*) FROM chat_conversations WHERE customer_id IS NULL")
        )
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
    column = "missing" if notnull is None else ("NOT NULL" if notnull else "nullable")
    index_state = "absent" if index is None else ("valid" if index else "INVALID")
    objects = "present" if participants and rls else "absent"
    return nulls, (
        f"customer_id {column}; idx_chat_conversations_customer {index_state}; "
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
        r"^WITH done AS \(UPDATE (\S+) SET ",
        lambda m: f"backfill of {m[1].split('.')[-1]}: UPDATE batches of pages",
    ),
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


def describe(statement: Statement) -> str:
    """A statement in one short line; a hand-run file is named."""
    for path in ORIGINAL_SQL.values():
        if path.read_text().startswith(statement.query[:200]):
            return f"{path.name} (the whole file, one query string)"
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
    per_kind = ", ".join(
        f"{kind} {sum(1 for op in during if op.kind == kind)} (worst "
        f"{worst([op for op in during if op.kind == kind]):.1f} ms)"
        for kind in KINDS
    )
    before = arm.before()
    print(f"\n{arm.label}")
    for line in arm.applied.log:
        print(f"    | {line}")
    print(f"  migration wall time       {arm.wall_s:9.2f} s")
    print(f"  worst client op           {worst(during):9.1f} ms")
    print(f"  p99 client op             {percentile(latencies, 99):9.1f} ms")
    print(f"  client ops during it      {len(during):9d}  ({per_kind})")
    print(f"  client errors             {len(errors):9d}")
    for text in sorted({op.error for op in errors})[:3]:
        print(f"    {text}")
    print(f"  NULL customer_id left     {arm.nulls:9d}")
    print(f"  schema after              {arm.schema}")
    print(
        f"  baseline before it        p99 {percentile([o.latency_ms for o in before], 99):.1f} ms,"
        f" worst {worst(before):.1f} ms over {len(before)} ops"
    )
    if arm.monitor_error:
        print(f"  monitor failed            {arm.monitor_error}")
    if steps:
        report_steps(arm, args)
    report_slow_ops(arm)
    report_worst_op(arm)


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


def build_template(url: str, start: str, rows: int) -> None:
    if start == "base":
        migrate(url, "000")
        make_older_script_tables(url, rows)
    else:
        migrate(url, "004")
        make_drifted(url, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="conversations")
    parser.add_argument(
        "--from",
        dest="start",
        choices=("base", "004"),
        default="base",
        help="base: revision 000 and the older script's tables; 004: 004 with customer_id dropped",
    )
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument(
        "--think-ms", type=float, default=0.0, help="pause of each client between its loops"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before")
    parser.add_argument("--cooldown", type=float, default=1.0, help="seconds of load after")
    parser.add_argument(
        "--sample-ms", type=float, default=5.0, help="period of the pg_stat_activity samples"
    )
    parser.add_argument(
        "-x",
        action="append",
        default=[],
        dest="x_args",
        metavar="KEY=VALUE",
        help="passed to alembic as -x (repeatable), e.g. -x online_008_batch_size=1000",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the cluster's folder (server stopped)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    applied = APPLIED_FROM[args.start]
    originals = [ORIGINAL_SQL[revision] for revision in applied if revision in ORIGINAL_SQL]

    cluster = Cluster.in_new_folder("chatdb-bench-")
    cluster.start()
    try:
        admin = psycopg.connect(cluster.url("postgres"), autocommit=True)
        start = (
            "base (revision 000 and the older script's chat tables)"
            if args.start == "base"
            else "004 (revision 004, customer_id dropped)"
        )
        print(
            f"bench_online: from {start}, {args.rows:,} conversations; {args.clients} clients "
            f"(each loops: read, update, insert), think time {args.think_ms:g} ms; "
            f"migration sampled every {args.sample_ms:g} ms"
        )
        print(f"machine: {machine(admin)}")
        began = time.perf_counter()
        admin.execute("CREATE DATABASE bench_template")
        build_template(cluster.url("bench_template"), args.start, args.rows)
        admin.execute("CHECKPOINT")
        print(f"built the template in {time.perf_counter() - began:.1f} s")
        x_shown = "".join(f" -x {x}" for x in args.x_args)
        arms = []
        for name, label, apply, app_pattern in (
            (
                "bench_original",
                "(a) original SQL: " + ", then ".join(p.name for p in originals) + ", each one "
                "query string (one transaction)",
                apply_original(originals),
                None,
            ),
            (
                "bench_project",
                f"(b) project: alembic{x_shown} upgrade head",
                apply_project(args.x_args),
                PROJECT_APP_PATTERN,
            ),
        ):
            admin.execute(f"CREATE DATABASE {name} TEMPLATE bench_template STRATEGY FILE_COPY")
            admin.execute("CHECKPOINT")
            arm = run_arm(label, cluster.url(name), apply, app_pattern, args)
            report(arm, args, steps=name == "bench_project")
            arms.append(arm)
            if not args.keep:
                admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
            admin.execute("CHECKPOINT")
        original, project = arms
        worst_original, worst_project = worst(original.during()), worst(project.during())
        print(
            f"\ncomparison: worst client op original {worst_original:.1f} ms, project "
            f"{worst_project:.1f} ms, ratio original / project "
            f"{worst_original / worst_project:.1f}; wall time original {original.wall_s:.2f} s, "
            f"project {project.wall_s:.2f} s"
        )
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
