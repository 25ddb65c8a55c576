"""Issue 3 (7): a run that would drop tables holding rows refuses, listing every table
(and column) holding values across the whole run with its count and its step, unless
-x allow_data_loss=true; empty ones are not listed. Written with --sql, the script
refuses."""

import subprocess

from alembic.script import ScriptDirectory

from chatdb.local.server import bindir
from chatdb.project import alembic_config
from tests.deploying import dump
from tests.pg import alembic_cli
from tests.test_bad_input import failure_line

SCRIPTS = ScriptDirectory.from_config(alembic_config())

# A downgrade below 009 takes away what the backend's calls use (the chat tables, at
# base): the calls guard refuses it unless told (chatdb.deploy.calls_guard).
TAKES_THE_CALLS_AWAY = "allow_breaking_calls=true"


def downgrade_step(revision: str) -> str:
    """The step that undoes ``revision``, as a run names it: ``downgrade 004 -> 000``
    (the revision below read from the script directory)."""
    return f"downgrade {revision} -> {SCRIPTS.get_revision(revision).down_revision or 'base'}"


def add_chat_rows(db) -> None:
    """One conversation with two messages; no participant."""
    website = db.scalar("INSERT INTO websites DEFAULT VALUES RETURNING id")
    conversation = db.scalar(
        "INSERT INTO chat_conversations (website_id, customer_id) VALUES (%s, 'c1') RETURNING id",
        (website,),
    )
    for sender in ("customer", "owner"):
        db.conn.execute(
            "INSERT INTO chat_messages (conversation_id, sender_type) VALUES (%s, %s)",
            (conversation, sender),
        )


def test_downgrade_refuses_to_drop_chat_rows_and_prints_the_counts(head_db):
    """From head to base, in the order the run drops them. Pins the SQL history: which
    revisions drop what (009's downgrade drops chat_messages.message_text, whose ''
    default is a value in both messages; 014's drops website_name, NULL here, so not
    listed; 004's the chat tables; 000's websites)."""
    add_chat_rows(head_db)
    before = dump(head_db.url)
    line = failure_line(alembic_cli("downgrade", "base", url=head_db.url))
    assert line == (
        "FAILED: The run would drop 4 table or column(s) holding values: column "
        f"chat_messages.message_text, 2 values ({downgrade_step('009')}); table "
        f"chat_conversations, 1 row ({downgrade_step('004')}); table chat_messages, 2 rows "
        f"({downgrade_step('004')}); table websites, 1 row ({downgrade_step('000')}); nothing "
        "was changed: back the data up, then re-run with -x allow_data_loss=true to drop them."
    )
    assert dump(head_db.url) == before


def test_allow_data_loss_drops_them(head_db):
    add_chat_rows(head_db)
    result = alembic_cli(
        "-x", "allow_data_loss=true", "-x", TAKES_THE_CALLS_AWAY, "downgrade", "000",
        url=head_db.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert head_db.scalar("SELECT to_regclass('chat_messages')::text") is None
    assert head_db.rows("SELECT version_num FROM alembic_version") == [("000",)]


def test_empty_chat_tables_are_dropped_without_the_option(head_db):
    """Without -x allow_data_loss: nothing is lost (the backend's calls on the tables go
    with them, which the calls guard lets happen only when told)."""
    result = alembic_cli("-x", TAKES_THE_CALLS_AWAY, "downgrade", "000", url=head_db.url)
    assert result.returncode == 0, result.stderr
    assert head_db.scalar("SELECT to_regclass('chat_conversations')::text") is None


def test_offline_downgrade_script_refuses_when_run_against_rows(head_db):
    add_chat_rows(head_db)
    script = alembic_cli("downgrade", "008:000", "--sql")
    assert script.returncode == 0, script.stderr
    before = dump(head_db.url)
    psql = subprocess.run(
        [str(bindir() / "psql"), "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-d", head_db.url],
        input=script.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert psql.returncode != 0
    assert (
        "The script would drop what holds values: table chat_conversations, 1 row(s); table "
        "chat_messages, 2 row(s); nothing was changed" in psql.stderr
    )
    assert dump(head_db.url) == before


def test_base_refuses_to_drop_websites_that_000_made_and_that_hold_rows(head_db):
    head_db.conn.execute("INSERT INTO websites DEFAULT VALUES")
    before = dump(head_db.url)
    line = failure_line(alembic_cli("downgrade", "base", url=head_db.url))
    assert line == (
        "FAILED: The run would drop 1 table(s) holding values: table websites, 1 row "
        f"({downgrade_step('000')}); nothing was changed: back the data up, then re-run with "
        "-x allow_data_loss=true to drop them."
    )
    assert dump(head_db.url) == before


def test_base_on_supabase_does_not_count_websites_it_leaves_alone(supabase_head_db):
    supabase_head_db.conn.execute("INSERT INTO websites DEFAULT VALUES")
    result = alembic_cli("-x", TAKES_THE_CALLS_AWAY, "downgrade", "base", url=supabase_head_db.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert supabase_head_db.scalar("SELECT count(*) FROM websites") == 1
