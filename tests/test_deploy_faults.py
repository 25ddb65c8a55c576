"""Issue 13: deploys that meet each other, wait, deadlock, or lose their server.

Real servers and real ``alembic upgrade head`` processes (head read from the script
directory), on a drifted chat_conversations forced onto the online path (``-x
online=always``, a modest row count); one run stops at 008, whose backfill it crashes.
The crash tests run on a cluster of this module's own (fsync on, so that a crash keeps
every commit), stopped with ``pg_ctl stop -m immediate`` while a run is at a known
point, then started again.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from chatdb.deploy import session
from chatdb.deploy.locking import LOCK_KEY
from chatdb.deploy.reload import notify_statement
from chatdb.deploy.run import Run
from chatdb.deploy.run_options import RunOptions
from chatdb.deploy.runtime import lost_server
from chatdb.local.server import Cluster, as_server_user, bindir
from chatdb.project import alembic_config
from tests.deploying import POLLING, Deploy, dump, run_waiting_sql, wait_until
from tests.drifted_table import conversation_rows, expected_customer_id, make_drifted
from tests.pg import Database, Listener, migrate

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
ROWS = 3_000
ONLINE = ("-x", "online=always", "-x", "online_batch_size=100")
RELOAD = ("pgrst", "reload schema")
# The driver's reason: whether it read the server's last words depends on timing.
GONE = (
    r"\((terminating connection due to (immediate shutdown|administrator) command|server "
    r"closed the connection unexpectedly)\)"
)
APPLIED = re.compile(r"Running upgrade \S* -> (\w+)")
RERUN = (
    "re-run `alembic upgrade head` once the server is back; it finishes the job (or finds "
    "nothing to do)."
)


# --------------------------------------------------------------------------- helpers


def new_database(admin_url: str, url_of, rows: int = ROWS, **drift) -> Database:
    """A fresh database at revision 004 whose chat_conversations is drifted."""
    name = f"faults_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = url_of(name)
    migrate(url, "004")
    make_drifted(url, rows, **drift)
    return Database(url, psycopg.connect(url, autocommit=True))


@pytest.fixture
def make_db(server):
    made: list[Database] = []

    def make(rows: int = ROWS, **drift) -> Database:
        made.append(new_database(server.url("postgres"), server.url, rows, **drift))
        return made[-1]

    yield make
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        for db in made:
            db.conn.close()
            admin.execute(f'DROP DATABASE "{db.url.rsplit("/", 1)[1]}" WITH (FORCE)')


def repaired(db: Database, before: list[dict]) -> None:
    """At head, every row's customer_id by the spec's formula, NOT NULL, index valid."""
    assert db.scalar("SELECT version_num FROM alembic_version") == HEAD
    after = conversation_rows(db.conn)
    assert [r["customer_id"] for r in after] == [
        expected_customer_id(r.get("customer_id"), r.get("customer_phone"), r["id"]) for r in before
    ]
    assert db.scalar(
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'chat_conversations'::regclass "
        "AND attname = 'customer_id'"
    )
    assert db.scalar(
        "SELECT indisvalid FROM pg_index "
        "WHERE indexrelid = 'public.idx_chat_conversations_customer'::regclass"
    )


def online_steps(deploy: Deploy) -> str:
    """What pass 1 said it would do: "online: <n> step(s) on <tables>, before the run's
    transaction" (one such line per run that takes the online path)."""
    [line] = [
        line.split("] ", 1)[1]
        for line in deploy.lines
        if re.search(r"online: \d+ step\(s\) on ", line)
    ]
    return line


def backends(db: Database, where: str, params: tuple = ()) -> list[tuple]:
    return db.rows(
        "SELECT pid, state, backend_xmin, query FROM pg_stat_activity "
        f"WHERE datname = current_database() AND {where}",
        params,
    )


def migrate_backends(db: Database) -> list[tuple]:
    return backends(db, "application_name = 'chatdb migrate'")


# --------------------------------------------------------------------------- 13.1


def test_six_deploys_at_once_on_a_large_table_all_succeed_with_one_reload(make_db):
    single, shared = make_db(), make_db()
    before = conversation_rows(shared.conn)

    alone = Deploy(single.url, *ONLINE)
    assert alone.finish() == 0, alone.log
    online = online_steps(alone)
    assert " on chat_conversations" in online, online
    revisions = APPLIED.findall(alone.log)  # every revision after 004, up to head
    assert revisions[-1] == HEAD
    idle = Deploy(single.url, *ONLINE)  # what a deploy that finds nothing to do costs
    assert idle.finish() == 0, idle.log

    listener = Listener(shared.url)
    waiter_states: set[tuple[str, bool]] = set()
    try:
        deploys = [Deploy(shared.url, *ONLINE) for _ in range(6)]
        while any(d.process.poll() is None for d in deploys):
            for _, state, xmin, query in migrate_backends(shared):
                if query == POLLING:
                    waiter_states.add((state, xmin is None))
            time.sleep(0.05)
        codes = [d.finish() for d in deploys]
        assert codes == [0] * 6, "\n\n".join(d.stdout + d.log for d in deploys)
        assert listener.received() == [RELOAD]
    finally:
        listener.close()

    logs = [d.log for d in deploys]
    # One of them ran the online steps and applied the revisions, each once.
    assert sum(online in log for log in logs) == 1
    assert sorted(rev for log in logs for rev in APPLIED.findall(log)) == sorted(revisions)
    # They met: at least one queued behind another (how many depends on start-up times).
    assert any("Another deploy holds the migration lock" in log for log in logs)
    repaired(shared, before)
    # Waiters poll between idle stretches: never a transaction (nor a snapshot) held.
    assert ("idle", True) in waiter_states
    assert not {s for s in waiter_states if s[0] != "active" and s != ("idle", True)}
    # No deploy took longer than the single run plus its queueing behind the others.
    slowest = max(d.seconds for d in deploys)
    budget = alone.seconds + 6 * idle.seconds
    print(
        f"single run {alone.seconds:.2f} s, no-op run {idle.seconds:.2f} s, six at once: "
        f"slowest {slowest:.2f} s (budget {budget:.2f} s)"
    )
    assert slowest < 2 * budget


def test_a_waiting_deploy_holds_no_transaction_and_no_snapshot(make_db):
    db = make_db(100)
    with psycopg.connect(db.url, autocommit=True) as holder:
        holder.execute(f"SELECT pg_advisory_lock({LOCK_KEY})")
        deploy = Deploy(db.url, *ONLINE)
        deploy.wait_for_line("Another deploy holds the migration lock")
        seen = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            seen += [(state, xmin) for _, state, xmin, _ in migrate_backends(db)]
            time.sleep(0.01)
        assert ("idle", None) in seen
        assert all(state in ("idle", "active") for state, _ in seen), seen
        assert all(xmin is None for state, xmin in seen if state == "idle"), seen
        holder.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})")
        assert deploy.finish() == 0, deploy.log


# --------------------------------------------------------------------------- 13.2


def test_the_concurrent_index_build_says_which_transaction_it_waits_for(make_db):
    """A client's REPEATABLE READ transaction holds a snapshot: CREATE INDEX CONCURRENTLY
    waits for it to end; every 5 s (WATCH_EVERY_S) the run names it."""
    db = make_db()
    before = conversation_rows(db.conn)
    with psycopg.connect(db.url, application_name="test snapshot") as client:
        client_pid = client.info.backend_pid
        client.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        client.execute("SELECT count(*) FROM websites")
        deploy = Deploy(db.url, *ONLINE)
        line = deploy.wait_for_line("has waited", timeout=120)
        assert line.endswith(
            "online: CREATE INDEX CONCURRENTLY idx_chat_conversations_customer has waited 5 s "
            f"so far for process {client_pid} (application 'test snapshot', idle "
            "in transaction, query: SELECT count(*) FROM websites) to end its transaction"
        ), line
        client.rollback()
        assert deploy.finish() == 0, deploy.log
    repaired(db, before)


# --------------------------------------------------------------------------- 13.3


def test_a_deadlock_fails_the_run_once_naming_both_sides(make_db):
    """The run's concurrent index build waits for a client's snapshot; the client then
    asks for a lock the build holds: a real deadlock, which PostgreSQL breaks by
    cancelling the build. It is said once, not retried."""
    db = make_db()
    before = conversation_rows(db.conn)
    # The run checks for a deadlock 3 s into a wait; the client never does first.
    db.conn.execute(f"ALTER DATABASE \"{db.conn.info.dbname}\" SET deadlock_timeout = '3s'")
    with psycopg.connect(db.url, application_name="test client") as client:
        client_pid = client.info.backend_pid
        client.execute("SET deadlock_timeout = '10min'")
        client.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        client.execute("SELECT count(*) FROM websites")
        deploy = Deploy(db.url, *ONLINE)
        run_pid = wait_until(
            lambda: db.scalar(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event = 'virtualxid'"
            ),
            "the concurrent index build waits for the client's snapshot",
        )
        client.execute("LOCK TABLE chat_conversations IN SHARE MODE")  # granted once broken
        assert deploy.finish() != 0
        client.rollback()
    line = deploy.failure
    assert re.fullmatch(
        r"FAILED: Migration step \(online, before the run's transaction\) failed: CREATE INDEX "
        r"CONCURRENTLY idx_chat_conversations_customer deadlocked with process "
        rf"{client_pid} \(application 'test client', (active|idle in "
        r"transaction), query: LOCK TABLE chat_conversations IN SHARE MODE\), while this run "
        rf"\(process {run_pid}\) ran: CREATE INDEX CONCURRENTLY IF NOT EXISTS "
        r"idx_chat_conversations_customer ON public.chat_conversations \(customer_id\); "
        r"PostgreSQL cancelled this run's statement; the online steps committed before it "
        r"are kept \(they commit one by one\): fix the cause and re-run `alembic upgrade "
        r"head` to finish\.",
        line,
    ), line
    print(line)
    assert not [x for x in deploy.lines if "deadlock" in x or "attempt" in x], deploy.log

    db.conn.execute(f'ALTER DATABASE "{db.conn.info.dbname}" RESET deadlock_timeout')
    rerun = Deploy(db.url, *ONLINE)
    assert rerun.finish() == 0, rerun.log
    assert "is INVALID (an interrupted concurrent build)" in rerun.log
    repaired(db, before)


def test_the_run_yields_when_locking_its_tables_deadlocks_with_a_client(make_db):
    """A client holds chat_messages (an insert's lock) and then reads chat_conversations,
    which the run's first lock attempt holds while it waits for chat_messages: a
    deadlock. The attempt lets go (as after a lock timeout), the client goes on, and the
    run takes both tables once the client has committed."""
    db = make_db()
    with psycopg.connect(db.url, application_name="test client") as client:
        client.execute("SET deadlock_timeout = '10min'")
        client.execute("LOCK TABLE chat_messages IN ROW EXCLUSIVE MODE")
        deploy = Deploy(db.url, "-x", "online=never", "-x", "lock_retries=0")
        # Polled without a pause: the client must wait for chat_conversations within the
        # attempt's first 10 ms (its deadlock_timeout), for the attempt to see the cycle.
        deadline = time.monotonic() + 60
        while not db.scalar(run_waiting_sql("chat_messages")):
            assert time.monotonic() < deadline, "the run's lock attempt never waited"
        client.execute("SELECT count(*) FROM chat_conversations")  # waits, then runs
        client.commit()
    assert deploy.finish() == 0, deploy.log
    assert re.search(r"chat_messages locked after \d+ attempt\(s\)", deploy.log), deploy.log
    assert db.scalar("SELECT version_num FROM alembic_version") == HEAD


def test_a_deadlock_in_the_runs_transaction_names_both_sides(make_db):
    """The transactional path: the run locks its tables first, so the one wait left
    in its transaction is on rows it does not own; here the version row, which a
    client has updated. The client then reads chat_conversations, which the run holds:
    a deadlock. PostgreSQL cancels the run's statement; the run says who with, and
    which statement of which revision it was running (a batch that fails is replayed
    one statement at a time to name it)."""
    db = make_db()
    db.conn.execute(f"ALTER DATABASE \"{db.url.rsplit('/', 1)[1]}\" SET deadlock_timeout = '1s'")
    before = dump(db.url)
    with psycopg.connect(db.url, application_name="test client") as client:
        client_pid = client.info.backend_pid
        client.execute("SET deadlock_timeout = '10min'")
        client.execute("UPDATE alembic_version SET version_num = version_num")
        deploy = Deploy(db.url, "-x", "online=never", "-x", "lock_retries=0")
        run_pid = wait_until(
            lambda: db.scalar(run_waiting_sql("transactionid")),
            "the run's transaction waits for the client's version row",
        )
        client.execute("SELECT count(*) FROM chat_conversations")
        assert deploy.finish() != 0
        client.rollback()
    line = deploy.failure
    assert re.fullmatch(
        r"FAILED: Migration step \(upgrade 004 -> 008\) deadlocked with process "
        rf"{client_pid} \(application 'test client', (active|idle in transaction), query: "
        r"SELECT count\(\*\) FROM chat_conversations\), while this run \(process "
        rf"{run_pid}\) ran: UPDATE alembic_version SET version_num='008' WHERE "
        r"alembic_version\.version_num = '004'; PostgreSQL cancelled this run's statement; "
        r"the run was rolled back and the database is as it was: end or wait out that "
        r"transaction, then re-run\.",
        line,
    ), line
    print(line)
    assert dump(db.url) == before


# --------------------------------------------------------------------------- 13.4


@pytest.fixture(scope="module")
def crashable() -> Iterator[Cluster]:
    """A cluster of this module's own, for tests that crash it. fsync stays on: a
    crash must keep every commit."""
    cluster = Cluster.in_new_folder("chatdb-test-crash-")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.discard()


def crash(cluster: Cluster) -> None:
    """Stop the server the hard way: every backend killed at once, no checkpoint."""
    subprocess.run(
        as_server_user(
            [str(bindir() / "pg_ctl"), "stop", "-w", "-m", "immediate", "-D", str(cluster.datadir)]
        ),
        check=True,
        capture_output=True,
    )


@pytest.fixture
def crash_db(crashable) -> Iterator:
    made: list[Database] = []

    def make(**drift) -> Database:
        made.append(new_database(crashable.url("postgres"), crashable.url, **drift))
        return made[-1]

    yield make
    if not crashable.is_running():
        crashable.start()
    with psycopg.connect(crashable.url("postgres"), autocommit=True) as admin:
        for db in made:
            db.conn.close()
            admin.execute(f'DROP DATABASE "{db.url.rsplit("/", 1)[1]}" WITH (FORCE)')


@contextmanager
def doomed(url: str, **kw) -> Iterator[psycopg.Connection]:
    """A connection the test holds while it crashes the server: closed, not rolled back."""
    conn = psycopg.connect(url, **kw)
    try:
        yield conn
    finally:
        conn.close()


def reconnect(db: Database) -> Database:
    db.conn.close()
    return Database(db.url, psycopg.connect(db.url, autocommit=True))


def rerun_sends_one_reload(db: Database) -> None:
    listener = Listener(db.url)
    try:
        deploy = Deploy(db.url, *ONLINE)
        assert deploy.finish() == 0, deploy.log
        assert listener.received() == [RELOAD]
    finally:
        listener.close()


def test_the_server_crashes_during_the_transactional_path(crashable, crash_db):
    db = crash_db(customer_id="nullable")
    rows = conversation_rows(db.conn)
    before = dump(db.url)
    with doomed(db.url, application_name="test reader") as reader:
        reader.execute("SELECT count(*) FROM chat_conversations")  # ACCESS SHARE, held
        deploy = Deploy(db.url, "-x", "online=never", "-x", "lock_timeout=10min")
        wait_until(
            lambda: db.scalar(run_waiting_sql("chat_conversations")),
            "the run's transaction waits for chat_conversations",
        )
        crash(crashable)
        assert deploy.finish() != 0
    crashable.start()
    assert re.fullmatch(
        # The run's transaction locks its tables first: it is there that it waits.
        r"FAILED: The server went away in the run's transaction \(locking "
        r"public\.chat_conversations, public\.chat_messages\) "
        rf"{GONE}; the transaction was rolled back, so nothing of it was kept: " + re.escape(RERUN),
        deploy.failure,
    ), deploy.failure
    print(deploy.failure)
    db = reconnect(db)
    assert dump(db.url) == before
    rerun_sends_one_reload(db)
    repaired(db, rows)


def test_the_server_crashes_during_the_online_backfill(crashable, crash_db):
    """Pins the SQL history: the crash lands in 008's backfill, so the crashed run goes to
    008 (past it, a revision's catalog step on chat_conversations would wait for the
    locked row first); the re-run goes to head, as the failure says."""
    db = crash_db(customer_id="nullable")
    rows = conversation_rows(db.conn)
    nulls = [r["id"] for r in rows if r["customer_id"] is None]
    with doomed(db.url) as locker:
        locker.execute(
            "SELECT 1 FROM chat_conversations WHERE id = %s FOR UPDATE", (nulls[len(nulls) // 2],)
        )
        deploy = Deploy(db.url, *ONLINE, target="008")
        deploy.wait_for_line(r"backfill batch could not get its lock .*\(attempt 2 of")
        filled = db.scalar("SELECT count(*) FROM chat_conversations WHERE customer_id IS NOT NULL")
        crash(crashable)
        assert deploy.finish() != 0
    crashable.start()
    assert re.fullmatch(
        r"FAILED: The server went away during the online step chat_conversations: fill "
        rf"customer_id in batches of pages \(one pass over the table\) {GONE}; the online work "
        r"committed before it is kept \(each online statement, and each batch of a backfill, "
        r"commits as it goes\): " + re.escape(RERUN),
        deploy.failure,
    ), deploy.failure
    print(deploy.failure)
    db = reconnect(db)
    # Every committed batch survived the crash, and nothing else changed.
    assert db.scalar("SELECT version_num FROM alembic_version") == "004"
    kept = conversation_rows(db.conn)
    assert sum(r["customer_id"] is not None for r in kept) == filled > len(rows) - len(nulls)
    for old, new in zip(rows, kept, strict=True):
        assert new["customer_id"] in (
            old["customer_id"],
            expected_customer_id(old["customer_id"], old["customer_phone"], old["id"]),
        )
    rerun_sends_one_reload(db)
    repaired(db, rows)


def test_the_server_crashes_during_the_concurrent_index_build(crashable, crash_db):
    db = crash_db()
    rows = conversation_rows(db.conn)
    with doomed(db.url, application_name="test snapshot") as client:
        client.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        client.execute("SELECT count(*) FROM websites")
        deploy = Deploy(db.url, *ONLINE)
        wait_until(
            lambda: db.scalar(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event = 'virtualxid'"
            ),
            "the concurrent index build waits for the client's snapshot",
        )
        crash(crashable)
        assert deploy.finish() != 0
    crashable.start()
    assert re.fullmatch(
        r"FAILED: The server went away during the online step CREATE INDEX CONCURRENTLY "
        rf"idx_chat_conversations_customer {GONE}; the online work committed before it is "
        r"kept \(each online statement, and each batch of a backfill, commits as it goes\): "
        + re.escape(RERUN),
        deploy.failure,
    ), deploy.failure
    db = reconnect(db)
    assert db.scalar("SELECT version_num FROM alembic_version") == "004"
    assert db.scalar("SELECT count(*) FROM chat_conversations WHERE customer_id IS NULL") == 0
    assert (
        db.scalar(
            "SELECT indisvalid FROM pg_index "
            "WHERE indexrelid = 'public.idx_chat_conversations_customer'::regclass"
        )
        is False
    )
    rerun_sends_one_reload(db)
    repaired(db, rows)


def test_a_connection_lost_at_the_notify_or_the_commit_says_what_that_means(make_db):
    """The NOTIFY and the COMMIT are the run's last two statements, too quick to be hit
    from outside: the sentence is checked on a real lost connection, a session ended by
    the server, whose next statement is the NOTIFY."""
    db = make_db(100)
    engine = create_engine(db.url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            db.scalar("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(DBAPIError) as lost:
                connection.exec_driver_sql(notify_statement("pgrst"))
            assert session.is_disconnect(lost.value)
            run = Run(connection, RunOptions())
            run.stage = "commit"
            at_notify = lost_server(lost.value, run, "upgrade 004 -> 008")
            lost.value.statement = None  # as when COMMIT itself fails
            at_commit = lost_server(lost.value, run, "upgrade 004 -> 008")
    finally:
        engine.dispose()
    assert re.fullmatch(
        rf"The server went away while it sent the PostgREST reload NOTIFY, before its COMMIT "
        rf"{GONE}; the run's transaction was rolled back, so nothing of it was kept: "
        + re.escape(RERUN),
        at_notify,
    ), at_notify
    assert re.fullmatch(
        rf"The server went away while the run's transaction committed {GONE}; whether that "
        r"commit happened is unknown \(both are safe\): " + re.escape(RERUN),
        at_commit,
    ), at_commit


def test_a_deploy_whose_connection_is_cut_while_it_waits_for_the_lock(make_db):
    db = make_db(100)
    before = dump(db.url)
    with psycopg.connect(db.url, autocommit=True) as holder:
        holder.execute(f"SELECT pg_advisory_lock({LOCK_KEY})")
        deploy = Deploy(db.url, *ONLINE)
        deploy.wait_for_line("Another deploy holds the migration lock")
        db.scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'chatdb migrate' AND datname = current_database()"
        )
        assert deploy.finish() != 0
    assert re.fullmatch(
        rf"FAILED: The server went away while it waited for the migration lock {GONE}; "
        r"nothing was changed: " + re.escape(RERUN),
        deploy.failure,
    ), deploy.failure
    print(deploy.failure)
    assert dump(db.url) == before
