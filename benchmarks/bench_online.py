"""Benchmark: how long revision 008 stalls the chat API, against the hand-run SQL.

    python benchmarks/bench_008.py --rows 1000000

Starts its own throwaway PostgreSQL (chatdb.local.server.Cluster, fsync on), builds a
drifted chat_conversations of --rows rows without customer_id (tests/drifted_table.py) at
revision 004, clones it, and on the same server, one after the other, applies
(a) the hand-run 008 SQL (tests/sql/original_008_fix_customer_id.sql) sent as the
SQL editor sends it: one query string, which PostgreSQL runs as one transaction;
(b) ``alembic upgrade head``, the real command line, with DATABASE_URL set.

During each, client threads keep reading conversations by id, updating their
updated_at and inserting chat_messages that reference them (each on its own
autocommit connection, with a short think time between operations). For each arm
it prints the migration's wall time, the worst and p99 latency of the client
operations that overlapped the migration, client errors and the NULL customer_id
left; then the ratio of the worst latencies. Nothing is asserted: these are
figures for README.md ("Revision 008 on a large table").
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg

from chatdb.local.server import Cluster, free_port, give_to_server_user
from tests.drifted_table import conversation_id, make_drifted
from tests.pg import ALEMBIC, SQL_DIR, migrate

ORIGINAL_SQL = SQL_DIR / "original_008_fix_customer_id.sql"
KINDS = ("read", "update", "insert")
OPERATIONS = {
    # The columns an API built for the drifted table reads (it does not know customer_id).
    "read": "SELECT id, website_id, customer_name, customer_phone, status, unread_owner, "
    "updated_at FROM chat_conversations WHERE id = %s",
    "update": "UPDATE chat_conversations SET updated_at = now() WHERE id = %s",
    "insert": "INSERT INTO chat_messages (conversation_id, sender_type, content) "
    "VALUES (%s, 'customer', 'hello')",
}


@dataclass
class Op:
    kind: str
    start: float
    end: float
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.end - self.start) * 1000


@dataclass
class ClientLoad:
    """Client threads that run OPERATIONS on random conversations until stopped."""

    url: str
    rows: int
    per_kind: int
    think_s: float
    ops: list[Op] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for kind in KINDS:
            for n in range(self.per_kind):
                thread = threading.Thread(target=self._client, args=(kind, n), daemon=True)
                thread.start()
                self.threads.append(thread)

    def finish(self) -> list[Op]:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        return self.ops

    def _client(self, kind: str, n: int) -> None:
        rng = random.Random(f"{kind}{n}")
        mine: list[Op] = []
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '120s'")
            while not self.stop.is_set():
                target = conversation_id(rng.randint(1, self.rows))
                start = time.perf_counter()
                error = None
                try:
                    conn.execute(
                        OPERATIONS[kind], (target,)
                    ).fetchall() if kind == "read" else conn.execute(OPERATIONS[kind], (target,))
                except psycopg.Error as exc:
                    error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                mine.append(Op(kind, start, time.perf_counter(), error))
                time.sleep(self.think_s)
        self.ops.extend(mine)  # list.extend is atomic under the GIL


@dataclass
class Arm:
    label: str
    wall_s: float
    ops: list[Op]
    window: tuple[float, float]
    nulls: int
    schema: str
    log: list[str]

    def during(self) -> list[Op]:
        t0, t1 = self.window
        return [op for op in self.ops if op.start <= t1 and op.end >= t0]

    def before(self) -> list[Op]:
        return [op for op in self.ops if op.end < self.window[0]]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def worst(ops: list[Op]) -> float:
    return max((op.latency_ms for op in ops), default=float("nan"))


def report(arm: Arm) -> None:
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
    for line in arm.log:
        print(f"    | {line}")
    print(f"  migration wall time        {arm.wall_s:8.2f} s")
    print(f"  worst client latency       {worst(during):8.1f} ms")
    print(f"  p99 client latency         {percentile(latencies, 99):8.1f} ms")
    print(f"  client errors              {len(errors):8d}")
    for message in sorted({op.error for op in errors})[:5]:
        print(f"    {message}")
    print(f"  NULL customer_id left      {arm.nulls:8d}")
    print(f"  schema after               {arm.schema}")
    print(f"  client ops during it       {len(during):8d}: {per_kind}")
    print(
        f"  baseline before it         p99 {percentile([o.latency_ms for o in before], 99):.1f} ms,"
        f" worst {worst(before):.1f} ms over {len(before)} ops"
    )


def outcome(url: str) -> tuple[int, str]:
    """NULLs left in customer_id, and the column's and index's state."""
    with psycopg.connect(url, autocommit=True) as conn:
        notnull = conn.execute(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'chat_conversations'::regclass "
            "AND attname = 'customer_id' AND NOT attisdropped"
        ).fetchone()
        if notnull is None:
            return -1, "customer_id missing"
        nulls = conn.execute(
            "SELECT count(*) FROM chat_conversations WHERE customer_id IS NULL"
        ).fetchone()[0]
        index = conn.execute(
            "SELECT indisvalid FROM pg_index "
            "WHERE indexrelid = to_regclass('public.idx_chat_conversations_customer')"
        ).fetchone()
    column = "NOT NULL" if notnull[0] else "nullable"
    index_state = "absent" if index is None else ("valid" if index[0] else "INVALID")
    return nulls, f"customer_id {column}, idx_chat_conversations_customer {index_state}"


def apply_original(url: str) -> list[str]:
    """The hand-run SQL as one query string: PostgreSQL runs it as one transaction."""
    notices: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(f"NOTICE: {d.message_primary}"))
        conn.execute(ORIGINAL_SQL.read_text())
    return notices


def apply_alembic(url: str, x_args: list[str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "PGRST_DB_CHANNEL"}
    env["DATABASE_URL"] = url
    argv = [ALEMBIC, *[a for x in x_args for a in ("-x", x)], "upgrade", "head"]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in result.stderr.splitlines() if "[chatdb" in line or "FAILED" in line]
    if result.returncode != 0:
        lines.append(f"alembic exited with status {result.returncode}")
    return lines


def run_arm(label: str, url: str, apply, args: argparse.Namespace) -> Arm:
    load = ClientLoad(url, args.rows, args.clients_per_kind, args.think_ms / 1000)
    load.start()
    time.sleep(args.warmup)
    t0 = time.perf_counter()
    log = apply(url)
    t1 = time.perf_counter()
    time.sleep(args.cooldown)
    ops = load.finish()
    nulls, schema = outcome(url)
    return Arm(label, t1 - t0, ops, (t0, t1), nulls, schema, log)


def machine(conn: psycopg.Connection) -> str:
    memory = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
    total = memory.splitlines()[1].split()[1] if memory else "?"
    version = conn.execute("SHOW server_version").fetchone()[0]
    settings = ", ".join(
        f"{name} {conn.execute(f'SHOW {name}').fetchone()[0]}"
        for name in ("shared_buffers", "fsync", "synchronous_commit", "max_wal_size")
    )
    return (
        f"nproc {os.cpu_count()}, memory {total} total, {platform.machine()}, "
        f"PostgreSQL {version} ({settings})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--clients-per-kind",
        type=int,
        default=2,
        help="client threads per operation kind (read, update, insert)",
    )
    parser.add_argument(
        "--think-ms", type=float, default=10.0, help="pause of each client between operations"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before")
    parser.add_argument("--cooldown", type=float, default=1.0, help="seconds of load after")
    parser.add_argument(
        "-x",
        action="append",
        default=[],
        dest="x_args",
        help="passed to alembic as -x (e.g. online_008_batch_size=1000)",
    )
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="chatdb-bench-"))
    base.chmod(0o755)
    give_to_server_user(base)
    cluster = Cluster(datadir=base / "data", port=free_port())
    cluster.init()
    cluster.start()
    try:
        admin = psycopg.connect(cluster.url("postgres"), autocommit=True)
        clients = args.clients_per_kind
        print(
            f"bench_008: {args.rows:,} conversations; {3 * clients} clients ({clients} "
            f"readers, {clients} updaters, {clients} message inserters), think time "
            f"{args.think_ms:g} ms"
        )
        print(f"machine: {machine(admin)}")
        started = time.perf_counter()
        admin.execute("CREATE DATABASE bench_template")
        migrate(cluster.url("bench_template"), "004")
        make_drifted(cluster.url("bench_template"), args.rows)
        admin.execute("CHECKPOINT")
        print(f"built the drifted table at revision 004 in {time.perf_counter() - started:.1f} s")
        arms = []
        for name, label, apply in (
            ("bench_original", "(a) original 008 SQL, one transaction", apply_original),
            ("bench_alembic", "(b) alembic upgrade head", lambda u: apply_alembic(u, args.x_args)),
        ):
            admin.execute(f"CREATE DATABASE {name} TEMPLATE bench_template STRATEGY FILE_COPY")
            admin.execute("CHECKPOINT")
            arm = run_arm(label, cluster.url(name), apply, args)
            report(arm)
            arms.append(arm)
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
            admin.execute("CHECKPOINT")
        original, project = (worst(arm.during()) for arm in arms)
        print(
            f"\nworst client latency: original {original:.1f} ms, project {project:.1f} ms; "
            f"ratio original / project = {original / project:.1f}"
        )
        admin.close()
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
