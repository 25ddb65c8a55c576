"""Issue 4: the online path (chatdb.deploy.online) on a drifted chat_conversations, as
revision 008 takes it: pass 1 runs its operations on the large table online, committed
step by step, and pass 2 is the run's one transaction.

Tests of 008's repair on that path (same result as the hand-run SQL, its formula, kills
and failures mid-way, its index) run ``alembic upgrade 008`` (REPAIR) and check the spec
of 004 and 008 (tests.catalog): they pin the SQL history, as each says. Tests of the
path's behaviour (options, thresholds, a fresh database, the reload) run to head,
whatever it is (read from the script directory).

Real servers, real ``alembic`` processes. Tables are small (a few thousand rows) and
the online path is forced with ``-x online=always`` and small first batches, so that
kills land at known points: the test holds a lock the run must wait for, watches the
run until it waits there, then kills it. Batches are sized from their measured
duration, so no test computes where a batch ends.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from chatdb.deploy import options
from chatdb.deploy.online import executor
from chatdb.deploy.online.executor import Executor
from chatdb.deploy.online.settings import DEFAULT_BATCH_MS, OnlineOptions
from chatdb.deploy.online.steps import (
    AddColumn,
    install_fill_trigger,
    on_new_row,
    table_columns,
)
from chatdb.project import alembic_config
from tests import catalog
from tests.deploying import Deploy, run_waiting_sql
from tests.drifted_table import conversation_rows, expected_customer_id, make_drifted
from tests.pg import BREAKS_THE_DELIVERY_INSERT, Database, alembic_cli, migrate, run_sql_file

ROWS = 2_000
ALWAYS = ("-x", "online=always", "-x", "online_batch_size=97")
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
# The revision whose repair of customer_id the tests of the online path's result are about.
REPAIR = "008"
AS_008_DID = ("-x", BREAKS_THE_DELIVERY_INSERT)  # tests.pg says why


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def make_db(server):
    """Factory of fresh databases at revision 004 whose chat_conversations is drifted."""
    made: list[tuple[str, Database]] = []

    def make(rows: int = ROWS, **drift) -> Database:
        name = f"online_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = server.url(name)
        migrate(url, "004")
        make_drifted(url, rows, **drift)
        db = Database(url, psycopg.connect(url, autocommit=True))
        made.append((name, db))
        return db

    yield make
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        for name, db in made:
            db.conn.close()
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def upgrade(db: Database, target: str, *x: str) -> subprocess.CompletedProcess:
    """``alembic *x upgrade <target>``, which must succeed."""
    result = alembic_cli(*x, "upgrade", target, url=db.url)
    assert result.returncode == 0, result.stderr
    return result


def wait_until(db: Database, sql: str, what: str, deploy: Deploy | None = None):
    """Poll ``sql`` until it returns a non-NULL, true-ish value; return it. A guard
    against a hung test, not a speed assertion."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        value = db.scalar(sql)
        if value:
            return value
        if deploy is not None and deploy.process.poll() is not None:
            pytest.fail(f"alembic exited ({deploy.process.returncode}) before {what}: {deploy.log}")
        time.sleep(0.02)
    pytest.fail(f"gave up waiting for {what}")


def kill_run(db: Database, deploy: Deploy, *keep: psycopg.Connection) -> None:
    """SIGKILL the alembic process, then end its server backends (every client backend
    on the database but the test's own connections), as the server does once it
    notices its client is gone."""
    deploy.process.send_signal(signal.SIGKILL)
    assert deploy.finish() == -signal.SIGKILL
    ours = [db.conn.info.backend_pid, *(conn.info.backend_pid for conn in keep)]
    others = (
        "FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND NOT pid = ANY(%s)"
    )
    db.scalar(f"SELECT count(pg_terminate_backend(pid)) {others}", (ours,))
    deadline = time.monotonic() + 60
    while db.scalar(f"SELECT count(*) {others}", (ours,)) and time.monotonic() < deadline:
        time.sleep(0.02)


def state(db: Database) -> dict:
    """Version, customer_id's NOT NULL (None: no column), its NULLs, the index's validity."""
    not_null = db.scalar(
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'chat_conversations'::regclass "
        "AND attname = 'customer_id' AND NOT attisdropped"
    )
    return {
        "version": db.scalar("SELECT version_num FROM alembic_version"),
        "not_null": not_null,
        "nulls": None
        if not_null is None
        else db.scalar("SELECT count(*) FROM chat_conversations WHERE customer_id IS NULL"),
        "index_valid": db.scalar(
            "SELECT indisvalid FROM pg_index "
            "WHERE indexrelid = to_regclass('public.idx_chat_conversations_customer')"
        ),
    }


def expected_ids(rows_before: list[dict]) -> list[str]:
    return [
        expected_customer_id(r.get("customer_id"), r.get("customer_phone"), r["id"])
        for r in rows_before
    ]


def assert_repaired(db: Database, rows_before: list[dict]) -> None:
    """At 008, schema as the spec of 004 and 008 says, every row's customer_id by the
    formula, every other value as it was."""
    assert db.scalar("SELECT version_num FROM alembic_version") == REPAIR
    assert catalog.spec_differences(catalog.snapshot(db.conn)) == []
    after = conversation_rows(db.conn)
    assert [r["customer_id"] for r in after] == expected_ids(rows_before)
    assert [{k: v for k, v in r.items() if k != "customer_id"} for r in after] == [
        {k: v for k, v in r.items() if k != "customer_id"} for r in rows_before
    ]


@contextmanager
def open_snapshot(db: Database) -> Iterator[psycopg.Connection]:
    """A transaction holding a snapshot (and no lock on the chat tables):
    CREATE INDEX CONCURRENTLY waits for it in its last phase."""
    with psycopg.connect(db.url) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT 1 FROM websites LIMIT 1")
        yield holder


def make_invalid_index(db: Database) -> None:
    """Leave what a failed concurrent build leaves: the index, marked INVALID. The
    build is made to wait for an older snapshot and gives up on its lock_timeout."""
    with open_snapshot(db), psycopg.connect(db.url, autocommit=True) as builder:
        builder.execute("SET lock_timeout = '100ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            builder.execute(
                "CREATE INDEX CONCURRENTLY idx_chat_conversations_customer "
                "ON chat_conversations (customer_id)"
            )
    assert state(db)["index_valid"] is False


# --------------------------------------------------------------------------- options


def test_options_are_read_strictly():
    assert OnlineOptions.from_x({}) == OnlineOptions()
    read = OnlineOptions.from_x(
        {
            "online": "Always",
            "online_threshold": "5",
            "online_batch_ms": "40",
            "online_batch_size": "10",
            "online_batch_pause_ms": "3",
        }
    )
    assert read == OnlineOptions("always", 5, 40, 10, 3)
    for bad, message in (
        ({"online": "sometimes"}, "-x online='sometimes' is not one of auto, always, never."),
        ({"online_batch_size": "0"}, "-x online_batch_size=0 is not a batch"),
        ({"online_batch_ms": "0"}, "-x online_batch_ms=0 is not a duration"),
        ({"online_threshold": "many"}, "-x online_threshold='many' is not a whole number"),
        ({"online_batch_pause_ms": "-1"}, "-x online_batch_pause_ms='-1' is not a whole"),
    ):
        with pytest.raises(CommandError) as failure:
            OnlineOptions.from_x(bad)
        assert str(failure.value).startswith(message)


def test_the_names_of_the_008_only_release_are_aliases():
    old = {
        "online_008": "never",
        "online_008_threshold": "7",
        "online_008_batch_size": "9",
        "online_008_batch_pause_ms": "2",
    }
    assert options.canonical(old) == {
        "online": "never",
        "online_threshold": "7",
        "online_batch_size": "9",
        "online_batch_pause_ms": "2",
    }
    assert OnlineOptions.from_x(options.canonical(old)) == OnlineOptions(
        "never", 7, DEFAULT_BATCH_MS, 9, 2
    )
    with pytest.raises(CommandError, match="-x online='always' contradicts -x online='never'"):
        options.canonical({"online_008": "never", "online": "always"})


def test_the_line_is_the_estimate_against_the_threshold():
    auto = OnlineOptions(threshold=20_000)
    assert auto.takes_online_path(20_000)
    assert not auto.takes_online_path(19_999)
    assert OnlineOptions("always", 20_000).takes_online_path(0)
    assert not OnlineOptions("never", 20_000).takes_online_path(10**9)


def test_a_bad_option_fails_before_any_change(make_db):
    db = make_db(100)
    result = alembic_cli("-x", "online=sometimes", "upgrade", "head", url=db.url)
    assert result.returncode != 0
    assert "-x online='sometimes' is not one of auto, always, never." in result.stdout
    assert state(db) == {"version": "004", "not_null": None, "nulls": None, "index_valid": None}


def test_auto_goes_online_above_the_threshold_only(make_db):
    big, small = make_db(), make_db()
    assert (
        "chat_conversations: online path (estimated rows 2000, threshold 1000, -x online=auto)"
        in upgrade(big, "head", "-x", "online_threshold=1000").stderr
    )
    small_run = upgrade(small, "head", "-x", "online_threshold=100000").stderr
    assert (
        "chat_conversations: transactional path (estimated rows 2000, threshold 100000, "
        "-x online=auto)" in small_run
    )
    assert "online:" not in small_run


def test_a_fresh_database_takes_no_online_path(empty_db, head_db):
    """Every table is created by the run itself: empty, nothing to do online, even
    with -x online=always; the whole run is one transaction, and it builds what a run
    to head builds without the option (head_db, on the same server)."""
    result = upgrade(empty_db, "head", "-x", "online=always")
    assert " path (estimated rows" not in result.stderr
    assert "online:" not in result.stderr
    assert empty_db.scalar("SELECT version_num FROM alembic_version") == HEAD
    assert catalog.snapshot(empty_db.conn) == catalog.snapshot(head_db.conn)


def test_offline_sql_cannot_take_the_online_path():
    result = alembic_cli("-x", "online=always", "upgrade", "004:008", "--sql")
    assert result.returncode != 0
    assert "cannot be rendered with --sql" in result.stdout


# --------------------------------------------------------------------------- same result


@pytest.mark.parametrize("drift", ["missing", "nullable"])
def test_online_path_leaves_what_the_transactional_path_and_the_hand_run_sql_leave(make_db, drift):
    """Pins the SQL history: 008 on either path against its hand-run file, at 008."""
    dbs = {arm: make_db(customer_id=drift) for arm in ("original", "never", "always")}
    before = conversation_rows(dbs["never"].conn)
    run_sql_file(dbs["original"].url, "original_008_fix_customer_id.sql")
    upgrade(dbs["never"], REPAIR, "-x", "online=never", *AS_008_DID)
    assert (
        "chat_conversations: online path"
        in upgrade(dbs["always"], REPAIR, *ALWAYS, *AS_008_DID).stderr
    )

    snapshots = {arm: catalog.snapshot(db.conn) for arm, db in dbs.items()}
    assert snapshots["always"] == snapshots["never"] == snapshots["original"]
    rows = {arm: conversation_rows(db.conn) for arm, db in dbs.items()}
    assert rows["always"] == rows["never"] == rows["original"]
    for arm in ("never", "always"):
        assert_repaired(dbs[arm], before)


def test_without_customer_phone_both_paths_use_the_formula_without_it(make_db):
    """Pins the SQL history: 008's formula without the phone term, at 008 (009 indexes
    customer_phone, so a run past 008 needs the column)."""
    dbs = {arm: make_db(customer_id="missing", phone=False) for arm in ("never", "always")}
    before = conversation_rows(dbs["never"].conn)
    for arm, db in dbs.items():
        upgrade(db, REPAIR, "-x", f"online={arm}", "-x", "online_batch_size=97", *AS_008_DID)
    assert conversation_rows(dbs["always"].conn) == conversation_rows(dbs["never"].conn)
    assert catalog.snapshot(dbs["always"].conn) == catalog.snapshot(dbs["never"].conn)
    customer_ids = [r["customer_id"] for r in conversation_rows(dbs["always"].conn)]
    assert customer_ids == expected_ids(before)
    assert all(c.startswith("customer_unknown_") for c in customer_ids)


def test_rows_clients_move_while_the_backfill_walks_the_pages_are_filled_as_well(make_db):
    """The backfill walks the table's pages in order (ctid ranges), and a client's UPDATE
    writes a row's new version elsewhere: behind the walk, or past the last page it
    reads. Each column the pass fills has a helper trigger that fills a row as a client
    writes it, including a column with a condition of its own and no NOT NULL after it
    (012's message_type: NULL or ''). If this fails, rows that clients touched during a
    deploy keep the values the revision replaces, which the hand-run UPDATE would not
    have left: look at chatdb.deploy.online.steps.install_fill_trigger."""
    db = make_db(rows=200)
    db.conn.execute(
        "INSERT INTO chat_messages (conversation_id, sender_type, content, message_type) "
        "SELECT c.id, 'customer', 'hello ' || n, NULL "
        "FROM generate_series(1, 3000) n, LATERAL (SELECT id FROM chat_conversations "
        "ORDER BY id OFFSET n % 200 LIMIT 1) c"
    )
    pages = db.scalar("SELECT pg_relation_size('chat_messages') / 8192")
    deploy = Deploy(db.url, *ALWAYS, "-x", "online_batch_pause_ms=100")
    wait_until(
        db,
        "SELECT 1 FROM pg_trigger WHERE tgname = 'chatdb_fill_message_text'",
        "the helpers of chat_messages' backfill are installed",
        deploy,
    )
    # The walk is at its start: move the rows of the last pages, still to fill.
    with psycopg.connect(db.url) as client:
        moved = [
            row[0]
            for row in client.execute(
                "SELECT id FROM chat_messages WHERE message_type IS NULL "
                f"AND ctid >= '({pages - 3},0)' FOR UPDATE"
            )
        ]
        client.execute(
            "UPDATE chat_messages SET sender_name = 'moved' WHERE id = ANY(%s)", (moved,)
        )
    assert deploy.finish() == 0, deploy.log
    assert moved
    left = db.scalar(
        "SELECT count(*) FROM chat_messages WHERE message_type IS NULL OR message_type = '' "
        "OR message_text IS NULL"
    )
    assert left == 0, f"{left} messages kept their old values"
    assert db.scalar(
        "SELECT bool_and(message_type = 'text' AND message_text = content) FROM chat_messages "
        "WHERE id = ANY(%s)",
        (moved,),
    )


# --------------------------------------------------------------------------- interrupted runs


def test_killed_during_the_backfill_a_rerun_finishes_it(make_db):
    """Pins the SQL history: 008's backfill, killed and re-run, at 008."""
    db = make_db(customer_id="nullable")
    before = conversation_rows(db.conn)
    null_ids = [r["id"] for r in before if r["customer_id"] is None]
    locked = null_ids[len(null_ids) // 2]  # a row the backfill must update

    with psycopg.connect(db.url) as locker:
        locker.execute("SELECT 1 FROM chat_conversations WHERE id = %s FOR UPDATE", (locked,))
        deploy = Deploy(db.url, *ALWAYS, *AS_008_DID, target=REPAIR)
        # The walk skips the locked row; the pages of its batch are swept after the walk,
        # waiting for the row under the short lock_timeout, again and again.
        deploy.wait_for_line(r"backfill batch could not get its lock .*\(attempt 2 of")
        kill_run(db, deploy, locker)
        locker.rollback()

    interrupted = state(db)
    assert interrupted["version"] == "004" and interrupted["not_null"] is False
    assert 0 < interrupted["nulls"] < len(null_ids)
    upgrade(db, REPAIR, *ALWAYS, *AS_008_DID)
    assert_repaired(db, before)


def test_a_batch_skips_a_row_a_client_holds_and_the_sweep_fills_it_after_the_walk(make_db):
    """Pins the SQL history: 008's backfill, at 008. A client holds a row to fill (a hot
    conversation): the batch that meets it runs again without it, so the walk goes on
    and fills every other row without waiting for the client; after the walk, the pages
    of that batch are swept, waiting for the row, which is filled once the client lets
    it go. If this fails, a batch waits for clients (and clients for the batch) or a row
    a client held is left unfilled: look at BackfillGroup in chatdb.deploy.online.steps."""
    db = make_db(customer_id="nullable")
    before = conversation_rows(db.conn)
    null_ids = [r["id"] for r in before if r["customer_id"] is None]
    held = null_ids[len(null_ids) // 2]
    with psycopg.connect(db.url) as client:
        client.execute("SELECT 1 FROM chat_conversations WHERE id = %s FOR UPDATE", (held,))
        deploy = Deploy(db.url, *ALWAYS, *AS_008_DID, target=REPAIR)
        deploy.wait_for_line(r"backfill batch could not get its lock .*\(attempt 2 of")
        # The walk is done: every row but the held one is filled, the held one is not.
        assert db.scalar(
            "SELECT array_agg(id::text) FROM chat_conversations WHERE customer_id IS NULL"
        ) == [str(held)]
        client.rollback()
    assert deploy.finish() == 0, deploy.log
    assert_repaired(db, before)
    assert re.search(r"1 met a row a client held and skipped it, 1 such rows filled", deploy.log)


def test_a_backfill_writes_most_new_versions_in_place(make_db):
    """Each batch updates the rows of its pages in shares (every third place, then the
    next, then the rest), so that most new versions fit in the room the earlier shares
    freed on their own page (HOT updates: no new page, no index entry). One UPDATE of
    every row of a full table puts every new version on a new page: the table doubles.
    If this fails, look at SPLIT in chatdb.deploy.online.steps."""
    db = make_db(rows=200)
    db.conn.execute(
        "INSERT INTO chat_messages (conversation_id, sender_type, content) "
        "SELECT c.id, 'customer', 'hello ' || n FROM generate_series(1, 4000) n, "
        "LATERAL (SELECT id FROM chat_conversations ORDER BY id OFFSET n % 200 LIMIT 1) c"
    )
    db.conn.execute("VACUUM ANALYZE chat_messages")
    before = db.scalar("SELECT pg_relation_size('chat_messages')")
    upgrade(db, HEAD, *ALWAYS)
    assert db.scalar("SELECT count(*) FROM chat_messages WHERE message_text = content") == 4000
    after = db.scalar("SELECT pg_relation_size('chat_messages')")
    assert after < 1.6 * before, (before, after)


def test_a_fill_helper_tests_its_condition_in_the_triggers_when_clause(make_db):
    """A helper trigger whose condition is not ``column IS NULL`` (012's message_type:
    NULL or '') is still called only for the rows that need it: its condition, read on
    NEW, is the trigger's WHEN clause, so the rows a backfill writes and most that
    clients write do not call the function at all."""
    db = make_db(rows=10)
    engine = create_engine(
        db.url.replace("postgresql://", "postgresql+psycopg2://"), isolation_level="AUTOCOMMIT"
    )
    condition = "message_type IS NULL OR message_type = ''"
    try:
        with engine.connect() as connection:
            ex = Executor(connection)
            columns = table_columns(ex, "chat_messages")
            install_fill_trigger(ex, "chat_messages", "message_type", "'text'", condition, columns)
    finally:
        engine.dispose()
    definition = db.scalar(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'chatdb_fill_message_type'"
    )
    assert "WHEN (((new.message_type IS NULL) OR (new.message_type = ''::text)))" in definition
    conversation = db.scalar("SELECT id FROM chat_conversations LIMIT 1")
    for given, stored in ((None, "text"), ("", "text"), ("image", "image")):
        assert (
            db.scalar(
                "INSERT INTO chat_messages (conversation_id, sender_type, message_type) "
                "VALUES (%s, 'customer', %s) RETURNING message_type",
                (conversation, given),
            )
            == stored
        )


@pytest.mark.parametrize(
    ("condition", "on_new"),
    [
        ("customer_id IS NULL", "NEW.customer_id IS NULL"),
        (
            "message_type IS NULL OR message_type = ''",
            "NEW.message_type IS NULL OR NEW.message_type = ''",
        ),
        ("lower(content) = 'message_type'", "lower(NEW.content) = 'message_type'"),
        ("id::text <> x.content", "NEW.id::text <> x.content"),
        ('"content" IS NULL', 'NEW."content" IS NULL'),
        ("content IN (SELECT 1)", None),  # a subquery: WHEN cannot hold it
        ("E'x' = content", None),  # an escape string: not followed
        ("1 = 1", None),  # no column
    ],
)
def test_a_condition_is_read_on_the_new_row_column_by_column(condition, on_new):
    columns = frozenset({"id", "content", "customer_id", "message_type"})
    assert on_new_row(condition, columns) == on_new


def test_killed_during_the_concurrent_index_build_a_rerun_rebuilds_it(make_db):
    """Pins the SQL history: 008's index, killed mid-build and rebuilt, at 008."""
    db = make_db()
    before = conversation_rows(db.conn)
    with open_snapshot(db) as snapshot_holder:
        deploy = Deploy(db.url, *ALWAYS, *AS_008_DID, target=REPAIR)
        wait_until(
            db,
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event = 'virtualxid'",
            "the concurrent index build to wait",
            deploy,
        )
        kill_run(db, deploy, snapshot_holder)
    # Every row filled, the NOT NULL check validated (NOT NULL itself is the run's last
    # transaction's), the index left INVALID.
    interrupted = state(db)
    assert interrupted == {"version": "004", "not_null": False, "nulls": 0, "index_valid": False}
    assert db.scalar(
        "SELECT convalidated FROM pg_constraint WHERE conname = 'chat_conversations_customer_id_not_null'"
    )

    result = upgrade(db, REPAIR, *ALWAYS, *AS_008_DID)
    assert "is INVALID (an interrupted concurrent build); dropping and building it again" in (
        result.stderr
    )
    assert_repaired(db, before)


def test_an_error_fails_the_run_keeps_the_committed_batches_and_a_rerun_finishes(make_db):
    """Pins the SQL history: 008's backfill fails on a row, then finishes, at 008."""
    db = make_db(customer_id="nullable")
    before = conversation_rows(db.conn)
    null_ids = [r["id"] for r in before if r["customer_id"] is None]
    refused = null_ids[len(null_ids) // 2]
    db.conn.execute(f"""
        CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.id = '{refused}' THEN RAISE EXCEPTION 'refused row %', NEW.id; END IF;
          RETURN NEW;
        END $$""")
    db.conn.execute(
        "CREATE TRIGGER refuse_one BEFORE UPDATE ON chat_conversations "
        "FOR EACH ROW EXECUTE FUNCTION refuse_one()"
    )

    result = alembic_cli(*ALWAYS, *AS_008_DID, "upgrade", REPAIR, url=db.url)
    assert result.returncode != 0
    assert result.stdout.strip() == (
        "FAILED: Migration step (online, before the run's transaction) failed: at "
        "chat_conversations: fill customer_id in batches of pages (one pass over the table): "
        f"refused row {refused}; the online steps committed before it are kept (they commit "
        "one by one): fix the cause and re-run `alembic upgrade head` to finish."
    )
    failed = state(db)
    assert failed["version"] == "004" and failed["not_null"] is False
    assert 0 < failed["nulls"] < len(null_ids)

    db.conn.execute("DROP TRIGGER refuse_one ON chat_conversations")
    db.conn.execute("DROP FUNCTION refuse_one()")
    upgrade(db, REPAIR, *ALWAYS, *AS_008_DID)
    assert_repaired(db, before)


@pytest.mark.parametrize("mode", ["never", "always"])
def test_an_invalid_index_left_by_a_failed_build_is_rebuilt(make_db, mode):
    """Pins the SQL history: 008's index, found INVALID, is rebuilt on either path, at 008."""
    db = make_db(customer_id="nullable")
    before = conversation_rows(db.conn)
    make_invalid_index(db)
    upgrade(db, REPAIR, "-x", f"online={mode}", *AS_008_DID)
    assert state(db)["index_valid"] is True
    assert_repaired(db, before)


def test_add_column_waits_under_a_short_lock_timeout_and_retries(make_db):
    """Pins the SQL history: 008's ADD COLUMN customer_id waits and retries, at 008."""
    db = make_db()
    before = conversation_rows(db.conn)
    with psycopg.connect(db.url) as reader:
        reader.execute("LOCK TABLE chat_conversations IN ACCESS SHARE MODE")
        deploy = Deploy(db.url, *ALWAYS, *AS_008_DID, target=REPAIR)
        deploy.wait_for_line(
            r"online: add column customer_id \(catalog only\) could not get its lock within "
            r"50 ms \(attempt 2 of 60\); retrying in 0.10 s$"
        )
        reader.rollback()
        assert deploy.finish() == 0, deploy.log
    assert "online: chat_conversations: add column customer_id (catalog only) in " in deploy.log
    assert_repaired(db, before)


def test_a_lock_never_released_fails_the_step_after_its_attempts(make_db, monkeypatch):
    db = make_db()
    monkeypatch.setattr(executor, "LOCK_ATTEMPTS", 3)
    slept = []
    engine = create_engine(
        db.url.replace("postgresql://", "postgresql+psycopg2://"), isolation_level="AUTOCOMMIT"
    )
    step = AddColumn(
        "chat_conversations",
        "customer_id",
        "ALTER TABLE public.chat_conversations ADD COLUMN IF NOT EXISTS customer_id TEXT",
    )
    try:
        with psycopg.connect(db.url) as reader, engine.connect() as connection:
            reader.execute("LOCK TABLE chat_conversations IN ACCESS SHARE MODE")
            ex = Executor(connection, sleep=slept.append)
            with pytest.raises(OperationalError, match="lock timeout"):
                step.run(ex, OnlineOptions())
            assert ex.step == "add column customer_id (catalog only)"
            assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
    finally:
        engine.dispose()
    assert slept == [0.05, 0.1]
    assert state(db)["not_null"] is None  # the column was never added


# --------------------------------------------------------------------------- reload


def test_one_notify_and_only_after_the_last_commit(make_db):
    db = make_db()
    with (
        psycopg.connect(db.url, autocommit=True) as listener,
        psycopg.connect(db.url) as version_lock,
    ):
        listener.execute("LISTEN pgrst")
        # Hold the version row: the run's last transaction (version UPDATE, then
        # NOTIFY) waits there after every step of the online path has committed.
        version_lock.execute("SELECT 1 FROM alembic_version FOR UPDATE")
        deploy = Deploy(db.url, *ALWAYS)
        wait_until(
            db,
            # The version UPDATE goes in one batch with the statements before it (too long
            # for pg_stat_activity.query): the run waits for the row lock, a transactionid.
            run_waiting_sql("transactionid"),
            "the run's last transaction",
            deploy,
        )
        assert state(db)["index_valid"] is True  # the online steps are all committed
        assert notifications_until_sentinel(db, listener, "sentinel-1") == []
        version_lock.rollback()
        assert deploy.finish() == 0, deploy.log
        assert notifications_until_sentinel(db, listener, "sentinel-2") == ["reload schema"]


def notifications_until_sentinel(
    db: Database, listener: psycopg.Connection, sentinel: str
) -> list[str]:
    """Payloads on pgrst delivered before ``sentinel``, which this sends now: PostgreSQL
    delivers notifications in commit order, so all earlier commits' come first."""
    db.conn.execute("SELECT pg_notify('pgrst', %s)", (sentinel,))
    payloads = []
    for note in listener.notifies(timeout=60):
        if note.payload == sentinel:
            return payloads
        payloads.append(note.payload)
    pytest.fail(f"{sentinel} never arrived")
