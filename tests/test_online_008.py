"""Issue 4: revision 008's online path (chatdb.deploy.online) on a drifted chat_conversations.

Real servers, real ``alembic`` processes. Tables are small (a few thousand rows) and
the online path is forced with ``-x online_008=always`` and tiny batches, so that
kills land at deterministic points: the test holds a lock the run must wait for,
watches the server until the run waits there, then kills it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from alembic.util import CommandError
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from chatdb.deploy import online
from tests import catalog
from tests.drifted_table import conversation_rows, expected_customer_id, make_drifted
from tests.pg import ALEMBIC, ROOT, Database, alembic_cli, migrate, run_sql_file

ROWS = 2_000
ALWAYS = ("-x", "online_008=always", "-x", "online_008_batch_size=97")


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


def upgrade(db: Database, *x: str) -> subprocess.CompletedProcess:
    result = alembic_cli(*x, "upgrade", "head", url=db.url)
    assert result.returncode == 0, result.stderr
    return result


def start_upgrade(db: Database, *x: str) -> subprocess.Popen:
    """``alembic upgrade head`` as a background process (killed by the test)."""
    env = {k: v for k, v in os.environ.items() if k != "PGRST_DB_CHANNEL"}
    env["DATABASE_URL"] = db.url
    return subprocess.Popen(
        [ALEMBIC, *x, "upgrade", "head"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )


def wait_until(db: Database, sql: str, what: str, process: subprocess.Popen | None = None):
    """Poll ``sql`` until it returns a non-NULL, true-ish value; return it. A guard
    against a hung test, not a speed assertion."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        value = db.scalar(sql)
        if value:
            return value
        if process is not None and process.poll() is not None:
            pytest.fail(
                f"alembic exited ({process.returncode}) before {what}: {process.stderr.read()}"
            )
        time.sleep(0.02)
    pytest.fail(f"gave up waiting for {what}")


def kill_run(db: Database, process: subprocess.Popen, *keep: psycopg.Connection) -> None:
    """SIGKILL the alembic process, then end its server backends (every client backend
    on the database but the test's own connections), as the server does once it
    notices its client is gone."""
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
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
    """Version 008, schema as the spec says, every row's customer_id by the formula."""
    assert db.scalar("SELECT version_num FROM alembic_version") == "008"
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
    assert online.Options.from_x_args({}) == online.Options()
    options = online.Options.from_x_args(
        {"online_008": "Always", "online_008_threshold": "5", "online_008_batch_size": "10"}
    )
    assert (options.mode, options.threshold, options.batch_size) == ("always", 5, 10)
    for bad in (
        {"online_008": "sometimes"},
        {"online_008_batch_size": "0"},
        {"online_008_threshold": "many"},
    ):
        with pytest.raises(CommandError, match="-x online_008"):
            online.Options.from_x_args(bad)


def test_the_line_is_the_estimate_against_the_threshold():
    assert online.choose_online("auto", 20_000, 20_000)
    assert not online.choose_online("auto", 19_999, 20_000)
    assert online.choose_online("always", 0, 20_000)
    assert not online.choose_online("never", 10**9, 20_000)


def test_a_bad_option_fails_before_any_change(make_db):
    db = make_db(100)
    result = alembic_cli("-x", "online_008=sometimes", "upgrade", "head", url=db.url)
    assert result.returncode != 0
    assert "-x online_008='sometimes' is not one of auto, always, never." in result.stdout
    assert state(db) == {"version": "004", "not_null": None, "nulls": None, "index_valid": None}


def test_auto_goes_online_above_the_threshold_only(make_db):
    big, small = make_db(), make_db()
    assert "008: online path" in upgrade(big, "-x", "online_008_threshold=1000").stderr
    assert "008: transactional path" in upgrade(small, "-x", "online_008_threshold=100000").stderr


def test_a_fresh_database_runs_000_004_008_in_one_transaction(empty_db):
    result = upgrade(empty_db)
    assert "008: transactional path (estimated rows 0" in result.stderr
    assert catalog.spec_differences(catalog.snapshot(empty_db.conn)) == []


def test_offline_sql_cannot_take_the_online_path():
    result = alembic_cli("-x", "online_008=always", "upgrade", "004:008", "--sql")
    assert result.returncode != 0
    assert "cannot be rendered with --sql" in result.stdout


# --------------------------------------------------------------------------- same result


@pytest.mark.parametrize("drift", ["missing", "nullable"])
def test_online_path_leaves_what_the_transactional_path_and_the_hand_run_sql_leave(make_db, drift):
    dbs = {arm: make_db(customer_id=drift) for arm in ("original", "never", "always")}
    before = conversation_rows(dbs["never"].conn)
    run_sql_file(dbs["original"].url, "original_008_fix_customer_id.sql")
    upgrade(dbs["never"], "-x", "online_008=never")
    assert "008: online path" in upgrade(dbs["always"], *ALWAYS).stderr

    snapshots = {arm: catalog.snapshot(db.conn) for arm, db in dbs.items()}
    assert snapshots["always"] == snapshots["never"] == snapshots["original"]
    rows = {arm: conversation_rows(db.conn) for arm, db in dbs.items()}
    assert rows["always"] == rows["never"] == rows["original"]
    for arm in ("never", "always"):
        assert_repaired(dbs[arm], before)


def test_without_customer_phone_both_paths_use_the_formula_without_it(make_db):
    dbs = {arm: make_db(customer_id="missing", phone=False) for arm in ("never", "always")}
    before = conversation_rows(dbs["never"].conn)
    for arm, db in dbs.items():
        upgrade(db, "-x", f"online_008={arm}", "-x", "online_008_batch_size=97")
    assert conversation_rows(dbs["always"].conn) == conversation_rows(dbs["never"].conn)
    assert catalog.snapshot(dbs["always"].conn) == catalog.snapshot(dbs["never"].conn)
    customer_ids = [r["customer_id"] for r in conversation_rows(dbs["always"].conn)]
    assert customer_ids == expected_ids(before)
    assert all(c.startswith("customer_unknown_") for c in customer_ids)


# --------------------------------------------------------------------------- interrupted runs


def test_killed_during_the_backfill_a_rerun_finishes_it(make_db):
    db = make_db(customer_id="nullable")
    before = conversation_rows(db.conn)
    ids = [r["id"] for r in before]  # in id order
    null_ids = [r["id"] for r in before if r["customer_id"] is None]
    locked = null_ids[len(null_ids) // 2]  # a row the backfill must update
    batch = 97
    # Rows committed when the run is stuck on the locked row's batch: every NULL row
    # of the batches before it.
    done_before = sum(
        1
        for r in before
        if r["id"] < ids[(ids.index(locked) // batch) * batch] and r["customer_id"] is None
    )
    filled_at_start = sum(1 for r in before if r["customer_id"] is not None)

    with psycopg.connect(db.url) as locker:
        locker.execute("SELECT 1 FROM chat_conversations WHERE id = %s FOR UPDATE", (locked,))
        process = start_upgrade(db, *ALWAYS)
        expected = filled_at_start + done_before
        wait_until(
            db,
            f"SELECT count(*) = {expected} FROM chat_conversations WHERE customer_id IS NOT NULL",
            "the batches before the locked row",
            process,
        )
        kill_run(db, process, locker)
        locker.rollback()

    interrupted = state(db)
    assert interrupted["version"] == "004" and interrupted["not_null"] is False
    assert 0 < interrupted["nulls"] < sum(1 for r in before if r["customer_id"] is None)
    upgrade(db, *ALWAYS)
    assert_repaired(db, before)


def test_killed_during_the_concurrent_index_build_a_rerun_rebuilds_it(make_db):
    db = make_db()
    before = conversation_rows(db.conn)
    with open_snapshot(db) as snapshot_holder:
        process = start_upgrade(db, *ALWAYS)
        wait_until(
            db,
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event = 'virtualxid'",
            "the concurrent index build to wait",
            process,
        )
        kill_run(db, process, snapshot_holder)
    interrupted = state(db)
    assert interrupted == {"version": "004", "not_null": True, "nulls": 0, "index_valid": False}

    result = upgrade(db, *ALWAYS)
    assert "is INVALID (an interrupted concurrent build); dropping and building it again" in (
        result.stderr
    )
    assert_repaired(db, before)


def test_an_error_fails_the_run_keeps_the_committed_batches_and_a_rerun_finishes(make_db):
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

    result = alembic_cli(*ALWAYS, "upgrade", "head", url=db.url)
    assert result.returncode != 0
    assert (
        f"Migration step (upgrade 004 -> 008, online path) failed at backfill "
        f"batch: refused row {refused}; the steps committed before it are kept"
    ) in (result.stdout)
    failed = state(db)
    assert failed["version"] == "004" and failed["not_null"] is False
    assert 0 < failed["nulls"] < len(null_ids)

    db.conn.execute("DROP TRIGGER refuse_one ON chat_conversations")
    db.conn.execute("DROP FUNCTION refuse_one()")
    upgrade(db, *ALWAYS)
    assert_repaired(db, before)


@pytest.mark.parametrize("mode", ["never", "always"])
def test_an_invalid_index_left_by_a_failed_build_is_rebuilt(make_db, mode):
    db = make_db(customer_id="nullable")
    before = conversation_rows(db.conn)
    make_invalid_index(db)
    upgrade(db, "-x", f"online_008={mode}")
    assert state(db)["index_valid"] is True
    assert_repaired(db, before)


def test_add_column_waits_under_a_short_lock_timeout_and_retries(make_db):
    db = make_db()
    before = conversation_rows(db.conn)
    with psycopg.connect(db.url) as reader:
        reader.execute("LOCK TABLE chat_conversations IN ACCESS SHARE MODE")
        process = start_upgrade(db, *ALWAYS)
        retries = 0
        for line in process.stderr:
            retries += "ADD COLUMN could not get its lock (55P03" in line
            if retries == 2:
                break
        assert retries == 2, "the run ended without retrying ADD COLUMN"
        reader.rollback()
        process.stderr.read()
        assert process.wait() == 0
    assert_repaired(db, before)


def test_a_lock_never_released_fails_the_step_after_its_attempts(make_db, monkeypatch):
    db = make_db()
    monkeypatch.setattr(online, "LOCK_ATTEMPTS", 3)
    slept = []
    engine = create_engine(
        db.url.replace("postgresql://", "postgresql+psycopg2://"), isolation_level="AUTOCOMMIT"
    )
    try:
        with psycopg.connect(db.url) as reader, engine.connect() as connection:
            reader.execute("LOCK TABLE chat_conversations IN ACCESS SHARE MODE")
            repair = online.OnlineRepair(connection, online.Options(), sleep=slept.append)
            with pytest.raises(OperationalError, match="lock timeout"):
                repair.add_column()
            assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
    finally:
        engine.dispose()
    assert len(slept) == 2
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
        process = start_upgrade(db, *ALWAYS)
        wait_until(
            db,
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'UPDATE alembic_version%'"
            " AND wait_event_type = 'Lock'",
            "the run's last transaction",
            process,
        )
        assert state(db)["index_valid"] is True  # the online steps are all committed
        assert notifications_until_sentinel(db, listener, "sentinel-1") == []
        version_lock.rollback()
        process.stderr.read()
        assert process.wait() == 0
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
