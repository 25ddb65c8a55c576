"""Issue 3 (1): concurrent deploys are serialized by the migration lock.

Real ``alembic upgrade head`` processes against one database; a LISTEN connection
stands in for PostgREST and counts the reload notifications. What a run to head
applies is read from the script directory: every revision, once.
"""

import re
import time

import pytest
from alembic.script import ScriptDirectory

from chatdb.deploy.locking import LOCK_KEY
from chatdb.project import alembic_config
from tests.deploying import WAITING_FOR_MIGRATION_LOCK, blocking, start_cli, wait_until
from tests.pg import alembic_cli, listening, migrate
from tests.test_bad_input import failure_line

RELOAD = ("pgrst", "reload schema")
APPLIED = re.compile(r"Running upgrade .*? -> (\w+)")
TAKE_LOCK = f"SELECT pg_advisory_lock({LOCK_KEY})"
SCRIPTS = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPTS.get_current_head()
# Every revision of the history: what a run from an empty database to head applies.
EVERY_REVISION = sorted(script.revision for script in SCRIPTS.walk_revisions())


def finish(processes) -> list[str]:
    """Wait for every process; each must exit 0. Returns their stderr."""
    outputs = [proc.communicate(timeout=300) for proc in processes]
    for proc, (_, err) in zip(processes, outputs, strict=True):
        assert proc.returncode == 0, err
    return [err for _, err in outputs]


def applied(stderrs: list[str]) -> list[str]:
    """Every revision any of the processes applied, sorted."""
    return sorted(rev for err in stderrs for rev in APPLIED.findall(err))


@pytest.mark.parametrize("deploys", [2, 5, 8])
def test_simultaneous_deploys_apply_each_revision_once_and_reload_once(empty_db, deploys):
    with listening(empty_db.url) as postgrest:
        processes = [start_cli("upgrade", "head", url=empty_db.url) for _ in range(deploys)]
        stderrs = finish(processes)
        assert postgrest.received() == [RELOAD]
    assert applied(stderrs) == EVERY_REVISION
    assert empty_db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_queued_deploys_say_they_wait_and_who_for_then_run_one_at_a_time(empty_db):
    """The test holds the lock until all four deploys queue on it: a true pile-up."""
    with listening(empty_db.url) as postgrest:
        with blocking(empty_db.url, TAKE_LOCK) as holder:
            processes = [start_cli("upgrade", "head", url=empty_db.url) for _ in range(4)]
            wait_until(
                lambda: empty_db.scalar(WAITING_FOR_MIGRATION_LOCK) == 4,
                "four deploys wait for the migration lock",
            )
        stderrs = finish(processes)
        assert postgrest.received() == [RELOAD]
    for err in stderrs:
        waits = [line for line in err.splitlines() if "waiting for it" in line]
        expected = (
            "INFO [chatdb.deploy.locking] Another deploy holds the migration lock: process "
            f"{holder.pid} (application 'test blocker', idle in transaction, query: {TAKE_LOCK}); "
            "waiting for it, at most 10min (-x migration_lock_wait)"
        )
        assert waits == [expected]
    assert applied(stderrs) == EVERY_REVISION


def test_the_wait_is_not_cut_by_lock_timeout_or_statement_timeout(empty_db):
    """The database sets both to 50 ms for every session, and the run is told
    lock_timeout=50ms: the deploy still waits for the lock, then applies everything."""
    dbname = empty_db.conn.info.dbname
    for setting in ("lock_timeout", "statement_timeout"):
        empty_db.conn.execute(f"ALTER DATABASE \"{dbname}\" SET {setting} = '50ms'")
    with blocking(empty_db.url, TAKE_LOCK):
        deploy = start_cli("-x", "lock_timeout=50ms", "upgrade", "head", url=empty_db.url)
        wait_until(
            lambda: empty_db.scalar(WAITING_FOR_MIGRATION_LOCK) == 1,
            "the deploy waits for the migration lock",
        )
        time.sleep(1)  # twenty times either timeout: a wait they could cut has ended by now
        assert deploy.poll() is None
        assert empty_db.scalar(WAITING_FOR_MIGRATION_LOCK) == 1
    finish([deploy])
    assert empty_db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_a_deploy_waits_for_the_lock_at_most_migration_lock_wait(empty_db):
    with blocking(empty_db.url, TAKE_LOCK) as holder:
        result = alembic_cli("-x", "migration_lock_wait=300ms", "upgrade", "head", url=empty_db.url)
    assert failure_line(result) == (
        "FAILED: Another deploy held the migration lock for longer than "
        f"migration_lock_wait=300ms: process {holder.pid} (application 'test blocker', "
        f"idle in transaction, query: {TAKE_LOCK}); nothing was changed: let it finish "
        "(or end it) and re-run, or raise -x migration_lock_wait."
    )
    assert empty_db.scalar("SELECT to_regclass('alembic_version')::text") is None


def test_the_lock_is_released_when_the_run_ends(empty_db):
    """In-process (the process lives on): the next deploy gets the lock at once."""
    migrate(empty_db.url, "head")
    assert empty_db.scalar(f"SELECT pg_try_advisory_lock({LOCK_KEY})") is True
