"""Issue 2 (e): the PostgREST reload notification after a migration run."""

import pytest
from alembic.util import CommandError

from chatdb.deploy.reload import ReloadHook, notify_statement, quote_channel
from chatdb.deploy.run_options import RunOptions
from tests.deploying import dump
from tests.pg import alembic_cli, listening, migrate

RELOAD = ("pgrst", "reload schema")


# The hook's pieces, without a database.


def test_channel_is_quoted_only_when_needed():
    assert quote_channel("pgrst") == "pgrst"
    assert quote_channel("My Channel") == '"My Channel"'
    assert quote_channel('a"b') == '"a""b"'


def hook(x_args: dict[str, str], environ: dict[str, str]) -> ReloadHook:
    """The hook as env.py makes it: from the run's options, read from ``-x`` and the
    environment."""
    return ReloadHook.from_options(RunOptions.from_x(x_args, environ))


def test_notify_statement():
    assert notify_statement("pgrst") == "NOTIFY pgrst, 'reload schema'"


def test_channel_option_beats_environment_beats_default():
    assert hook({}, {}).channel == "pgrst"
    assert hook({}, {"PGRST_DB_CHANNEL": "env_ch"}).channel == "env_ch"
    assert hook({"pgrst_channel": "x_ch"}, {"PGRST_DB_CHANNEL": "env_ch"}).channel == "x_ch"


def test_reload_can_be_turned_off_and_rejects_unknown_words():
    assert hook({"pgrst_reload": "false"}, {}).enabled is False
    assert hook({"pgrst_reload": "ON"}, {}).enabled is True
    with pytest.raises(CommandError, match="pgrst_reload='maybe' is not a boolean"):
        hook({"pgrst_reload": "maybe"}, {})


def test_unknown_reload_word_is_one_line_from_the_cli():
    result = alembic_cli("-x", "pgrst_reload=maybe", "upgrade", "head", "--sql")
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.strip() == (
        "FAILED: -x pgrst_reload='maybe' is not a boolean: use true or false."
    )


# Against a real server: what a LISTENing PostgREST would receive.


def test_upgrade_sends_exactly_one_reload(empty_db):
    with listening(empty_db.url) as postgrest:
        migrate(empty_db.url, "head")
        assert postgrest.received() == [RELOAD]


def test_no_op_upgrade_sends_nothing(head_db):
    with listening(head_db.url) as postgrest:
        config = migrate(head_db.url, "head")
        assert postgrest.received() == []
    assert config.attributes["reload_hook"].applied == []


def test_downgrade_sends_one_reload(head_db):
    with listening(head_db.url) as postgrest:
        migrate(head_db.url, "000", down=True, x=["allow_breaking_calls=true"])
        assert postgrest.received() == [RELOAD]


def test_failed_run_sends_nothing_and_changes_nothing(empty_db):
    """000 and 004 succeed, 008's backfill fails: no notification, nothing left behind.
    The conversation's website exists: revision c001 (below 004) refuses orphans."""
    empty_db.conn.execute(
        """
        CREATE TABLE websites (id uuid PRIMARY KEY, user_id uuid);
        INSERT INTO websites (id) VALUES ('00000000-0000-0000-0000-000000000002');
        CREATE TABLE chat_conversations (
          id uuid PRIMARY KEY, order_id uuid, website_id uuid NOT NULL,
          customer_phone text, status text, updated_at timestamptz);
        INSERT INTO chat_conversations (id, website_id)
          VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002');
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
          AS $$ BEGIN RAISE EXCEPTION 'updates refused by test'; END $$;
        CREATE TRIGGER refuse BEFORE UPDATE ON chat_conversations
          FOR EACH ROW EXECUTE FUNCTION refuse();
        """
    )
    before = dump(empty_db.url)
    with listening(empty_db.url) as postgrest:
        result = alembic_cli("upgrade", "head", url=empty_db.url)
        assert result.returncode != 0
        assert postgrest.received() == []
    assert "updates refused by test" in result.stdout
    assert empty_db.scalar("SELECT to_regclass('alembic_version')::text") is None
    assert empty_db.scalar("SELECT to_regclass('chat_messages')::text") is None
    assert dump(empty_db.url) == before


def test_channel_option_is_honoured(empty_db):
    with listening(empty_db.url, "pgrst") as default, listening(empty_db.url, "my_api") as custom:
        migrate(empty_db.url, "head", x=["pgrst_channel=my_api"])
        assert custom.received() == [("my_api", "reload schema")]
        assert default.received(wait=0.1) == []


def test_channel_from_environment_is_honoured(empty_db):
    with listening(empty_db.url, "from_env") as postgrest:
        result = alembic_cli(
            "upgrade", "head", url=empty_db.url, env={"PGRST_DB_CHANNEL": "from_env"}
        )
        assert result.returncode == 0, result.stderr
        assert postgrest.received() == [("from_env", "reload schema")]


def test_reload_off_sends_nothing(empty_db):
    with listening(empty_db.url) as postgrest:
        migrate(empty_db.url, "head", x=["pgrst_reload=false"])
        assert postgrest.received() == []


def test_one_log_line_names_the_channel(empty_db):
    result = alembic_cli("-x", "pgrst_channel=api", "upgrade", "head", url=empty_db.url)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "reload" in line.lower()]
    assert lines == [
        (
            "INFO [chatdb.deploy.reload] PostgREST schema reload sent: NOTIFY on channel 'api' "
            "with payload 'reload schema'"
        )
    ]


def test_offline_sql_ends_with_the_notify():
    result = alembic_cli("upgrade", "head", "--sql")
    assert result.returncode == 0, result.stderr
    statements = [s.strip() for s in result.stdout.split(";") if s.strip()]
    assert statements[-2:] == ["NOTIFY pgrst, 'reload schema'", "COMMIT"]


def test_offline_sql_honours_channel_and_off_switch():
    custom = alembic_cli("-x", "pgrst_channel=Api Chan", "upgrade", "head", "--sql")
    assert "NOTIFY \"Api Chan\", 'reload schema';" in custom.stdout
    off = alembic_cli("-x", "pgrst_reload=false", "upgrade", "head", "--sql")
    assert off.returncode == 0, off.stderr
    assert "NOTIFY" not in off.stdout
