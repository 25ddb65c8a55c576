"""Issue 3 (3): a run is all or nothing, even when it is killed.

"Exactly as before" is pg_dump's whole output (every object and every row, the
version table included), taken before and after.
"""

import os
import signal

from alembic.script import ScriptDirectory

from chatdb.project import alembic_config
from tests.deploying import blocking, dump, start_cli, wait_until, waiting_pids
from tests.pg import alembic_cli, listening
from tests.test_bad_input import failure_line

# The last revision of a run to head, whichever it is: revisions are added after 008.
HEAD = ScriptDirectory.from_config(alembic_config()).get_revision("head")

# Fails the run at its very end: the UPDATE of alembic_version to the head revision,
# after every revision ran in the same transaction. The version table is created by
# the run itself, so an event trigger gives it the refusing trigger when it appears.
REFUSE_HEAD_VERSION = f"""
    CREATE FUNCTION refuse_head_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.version_num = '{HEAD.revision}' THEN
        RAISE EXCEPTION 'version % refused by the test', NEW.version_num;
      END IF;
      RETURN NEW;
    END $$;
    CREATE FUNCTION guard_version_table() RETURNS event_trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                 WHERE object_identity = 'public.alembic_version') THEN
        CREATE TRIGGER refuse_head_version BEFORE INSERT OR UPDATE ON public.alembic_version
          FOR EACH ROW EXECUTE FUNCTION refuse_head_version();
      END IF;
    END $$;
    CREATE EVENT TRIGGER guard_version_table ON ddl_command_end
      WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION guard_version_table();
"""


def test_a_run_failing_in_its_last_revision_leaves_the_database_exactly_as_before(empty_db):
    empty_db.conn.execute(REFUSE_HEAD_VERSION)
    before = dump(empty_db.url)
    with listening(empty_db.url) as postgrest:
        result = alembic_cli("upgrade", "head", url=empty_db.url)
        assert postgrest.received() == []
    line = failure_line(result)
    assert line.startswith(
        f"FAILED: Migration step (upgrade {HEAD.down_revision} -> {HEAD.revision}) failed: "
        f"version {HEAD.revision} refused by the test (statement: UPDATE alembic_version SET "
        f"version_num='{HEAD.revision}'"
    ), line
    assert line.endswith(
        "the run was rolled back and the database is as it was: fix the cause named above and "
        "re-run."
    )
    assert "Running upgrade  -> 000" in result.stderr  # every revision ran, then was undone
    assert f"Running upgrade {HEAD.down_revision} -> {HEAD.revision}" in result.stderr
    assert dump(empty_db.url) == before


def test_a_run_killed_mid_way_leaves_the_database_as_before_and_the_next_run_completes(
    supabase_db,
):
    """The test holds a write lock on delivery_orders, as a live order insert would; the
    run (with long timeouts, so that none of them ends the wait) has applied 000 and waits
    in 004's first CREATE TABLE, which references delivery_orders. It is killed there."""
    db = supabase_db
    before = dump(db.url)
    with blocking(db.url, "LOCK TABLE delivery_orders IN ROW EXCLUSIVE MODE") as live:
        deploy = start_cli(
            "-x",
            "lock_timeout=10min",
            "-x",
            "statement_timeout=10min",
            "upgrade",
            "head",
            url=db.url,
        )
        backend = wait_until(
            lambda: waiting_pids(db.conn, "delivery_orders"), "the run waits for delivery_orders"
        )[0]
        os.kill(deploy.pid, signal.SIGKILL)
        deploy.communicate()
        assert deploy.returncode == -signal.SIGKILL
        # The server notices the dead client (client_connection_check_interval) and ends
        # its session, rolling the run back, while the live transaction still holds on.
        wait_until(
            lambda: (
                not db.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend,))
            ),
            "the killed run's session is gone",
            timeout=30,
        )
        assert dump(db.url) == before
        live.release()
    result = alembic_cli("upgrade", "head", url=db.url)
    assert result.returncode == 0, result.stderr
    assert db.rows("SELECT version_num FROM alembic_version") == [(HEAD.revision,)]
