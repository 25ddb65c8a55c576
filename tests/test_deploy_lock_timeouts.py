"""Issue 3 (2): a run never queues long behind live traffic; it retries, then names the blocker.

The live traffic is a transaction the test holds open after reading chat_conversations
(ACCESS SHARE): 008's ALTER TABLE needs ACCESS EXCLUSIVE and must wait for it. At 004
as the run finds it, 008 has nothing to do and takes no lock (each of its steps decides
on the server), so the tests first make customer_id nullable: 008 must SET NOT NULL, the
run's first statement that waits for the reader. The runs go to head, whatever it is.
"""

from alembic.script import ScriptDirectory

from chatdb.project import alembic_config
from tests.deploying import blocking, dump, start_cli
from tests.pg import alembic_cli
from tests.test_bad_input import failure_line

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

LIVE_READ = "SELECT count(*) FROM chat_conversations"
FAST = ["-x", "lock_timeout=100ms", "-x", "lock_retry_delay=50ms"]


def version(db) -> str:
    return db.scalar("SELECT version_num FROM alembic_version")


def make_008_need_its_lock(db) -> None:
    """customer_id nullable, as in a drifted table: 008 must SET NOT NULL, under an
    ACCESS EXCLUSIVE lock on chat_conversations."""
    db.conn.execute("ALTER TABLE chat_conversations ALTER COLUMN customer_id DROP NOT NULL")


def test_blocked_run_retries_then_names_the_table_and_the_blocker(db_at_004):
    make_008_need_its_lock(db_at_004)
    before = dump(db_at_004.url)
    with blocking(db_at_004.url, LIVE_READ) as live:
        result = alembic_cli(*FAST, "-x", "lock_retries=2", "upgrade", "head", url=db_at_004.url)
        assert failure_line(result) == (
            "FAILED: Migration step (locking public.chat_conversations, public.chat_messages) "
            "could not lock table public.chat_conversations within lock_timeout=100ms: process "
            f"{live.pid} (application 'test blocker', idle in transaction, query: {LIVE_READ}) "
            "holds it (gave up after 3 attempt(s)); the run was rolled back and the database "
            "is as it was: end or wait out that transaction and re-run, or raise "
            "-x lock_timeout / -x lock_retries."
        )
    retries = [line for line in result.stderr.splitlines() if "retry" in line]
    assert [line.split("; ")[-1] for line in retries] == [
        "the run was rolled back, retry 1 of 2 in 0.1s",
        "the run was rolled back, retry 2 of 2 in 0.1s",
    ]
    assert dump(db_at_004.url) == before


def test_a_retry_succeeds_once_the_blocker_lets_go(db_at_004):
    make_008_need_its_lock(db_at_004)
    with blocking(db_at_004.url, LIVE_READ) as live:
        deploy = start_cli(*FAST, "-x", "lock_retries=50", "upgrade", "head", url=db_at_004.url)
        for line in deploy.stderr:
            if "retry 1 of 50" in line:
                break
        live.release()
        _, err = deploy.communicate(timeout=120)
    assert deploy.returncode == 0, err
    assert version(db_at_004) == HEAD


def test_the_default_lock_timeout_ends_the_wait(db_at_004):
    """No -x lock_timeout: the run still gives up by itself (after 5 s) instead of queueing."""
    make_008_need_its_lock(db_at_004)
    with blocking(db_at_004.url, LIVE_READ):
        result = alembic_cli("-x", "lock_retries=0", "upgrade", "head", url=db_at_004.url)
    assert "within lock_timeout=5s" in failure_line(result)
    assert version(db_at_004) == "004"


def make_backfill_run(db, body: str) -> None:
    """Give 008's backfill one row to update, through a trigger whose plpgsql is ``body``:
    the run executes it inside its transaction, with its session settings. The trigger
    fires on updates of customer_id, the column the backfill fills, and no other (the
    backend's calls, which the run checks before and after, never write it)."""
    make_008_need_its_lock(db)
    website = db.scalar("INSERT INTO websites DEFAULT VALUES RETURNING id")
    db.conn.execute("INSERT INTO chat_conversations (website_id) VALUES (%s)", (website,))
    db.conn.execute(
        f"CREATE FUNCTION test_hook() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$;"
        "CREATE TRIGGER test_hook BEFORE UPDATE OF customer_id ON chat_conversations "
        "FOR EACH ROW EXECUTE FUNCTION test_hook()"
    )


SHOW_TIMEOUTS = (
    "RAISE EXCEPTION 'lock_timeout=% statement_timeout=%', "
    "current_setting('lock_timeout'), current_setting('statement_timeout');"
)


def test_the_run_sets_lock_timeout_and_statement_timeout_by_default(db_at_004):
    make_backfill_run(db_at_004, SHOW_TIMEOUTS)
    before = dump(db_at_004.url)
    line = failure_line(alembic_cli("upgrade", "head", url=db_at_004.url))
    assert line.startswith(
        "FAILED: Migration step (upgrade 004 -> 008) failed: lock_timeout=5s "
        "statement_timeout=1min (statement: UPDATE public.chat_conversations SET "
        "customer_id = COALESCE(customer_id, 'customer_' || customer_phone,"
    )
    assert line.endswith(
        "the run was rolled back and the database is as it was: "
        "fix the cause named above and re-run."
    )
    assert dump(db_at_004.url) == before


def test_the_timeouts_follow_the_options(db_at_004):
    make_backfill_run(db_at_004, SHOW_TIMEOUTS)
    result = alembic_cli(
        "-x", "lock_timeout=2s", "-x", "statement_timeout=90s", "upgrade", "head", url=db_at_004.url
    )
    assert "failed: lock_timeout=2s statement_timeout=90s (statement:" in failure_line(result)


def test_statement_timeout_cuts_a_long_statement(db_at_004):
    make_backfill_run(db_at_004, "PERFORM pg_sleep(60); RETURN NEW;")
    before = dump(db_at_004.url)
    line = failure_line(
        alembic_cli("-x", "statement_timeout=300ms", "upgrade", "head", url=db_at_004.url)
    )
    assert (
        "failed: canceling statement due to statement timeout (statement: UPDATE "
        "public.chat_conversations SET customer_id = COALESCE(" in line
    )
    assert line.endswith(
        "the database is as it was: a statement ran longer than statement_timeout or was "
        "cancelled; re-run at a quieter time or raise -x statement_timeout."
    )
    assert dump(db_at_004.url) == before
