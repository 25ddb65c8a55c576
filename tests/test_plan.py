"""Issue 12, item 3: ``chatdb plan`` runs the pending revisions against DATABASE_URL in a
transaction that always rolls back, and says what the deploy would do: changes by
table, the access cells that would change, and the hazards (locks held until commit,
rows written, values dropped), all read from what the database did in that transaction.

Nothing is committed (pg_dump before and after), no reload NOTIFY is sent, the exit
status says whether the deploy would succeed, and a failure is the deploy's own FAILED
line.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests import shapes
from tests.convergence import chatdb_run
from tests.deploying import blocking, dump
from tests.pg import ROOT, alembic_cli, copy_project, listening, revision_ids

HEAD = revision_ids()[-1]


def plan(url: str, *x: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return chatdb_run("plan", *[a for option in x for a in ("-x", option)], url=url, cwd=cwd)


def planned(db, *x: str) -> subprocess.CompletedProcess:
    """Plan, checking that nothing was committed and nothing was sent to PostgREST."""
    before = dump(db.url)
    with listening(db.url) as postgrest:
        result = plan(db.url, *x)
        assert postgrest.received() == []
    assert dump(db.url) == before
    assert result.stderr.count("FAILED") == 0
    return result


def section(report: str, title: str) -> str:
    """The lines of one part of the report (Changes, Access, Hazards)."""
    part = report.split(f"\n{title}\n", 1)[1]
    return part.split("\n\n", 1)[0]


def failed_line(stdout: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.startswith("FAILED: ")]
    return line


@pytest.mark.parametrize("shape", ["a", "b", "c", "d"])
def test_the_plan_of_each_shape_changes_nothing_and_says_what_the_deploy_does(shape, request):
    db = request.getfixturevalue(f"shape_{shape}_db")
    result = planned(db)
    print(result.stdout)  # the report, for the record (pytest -s)
    report = result.stdout
    for title in ("Changes, by table:", "Access that would change (anon, authenticated, PUBLIC):"):
        assert f"\n{title}\n" in report
    assert "\nHazards:\n" in report
    assert "Run in a transaction that was rolled back: nothing was changed" in report
    # The row estimate each table's line gives is the one the run logs and decides by.
    logged = dict(re.findall(r"\] (chat_\w+): \w+ path \(estimated rows (\d+),", result.stderr))
    said = dict(re.findall(r"\n  (chat_\w+)  \(about ([\d,]+) rows", report))
    assert said and said == {t: f"{int(logged[t]):,}" for t in said}, (said, logged)
    if shape == "d":  # two messages an older writer stored without a type (tests.shapes)
        assert (
            "    chat_messages.message_type: 1 filled (were NULL), 1 replaced (upgrade 009 -> "
            "012: message_type = 'text' where message_type IS NULL OR message_type = '')"
        ) in section(report, "Hazards:").splitlines()
    deploy = alembic_cli("upgrade", "head", url=db.url)
    assert result.returncode == 0, report  # with no -x option, on every shape
    assert "WIDER" not in report
    applied = report.rsplit("The deploy would succeed: it applies ", 1)[1].strip().rstrip(".")
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert applied.split(", ") == [
        line.split(" -> ")[1].split(",")[0]
        for line in deploy.stderr.splitlines()
        if "Running upgrade " in line
    ]


def test_the_plan_of_shape_b_names_conversions_locks_rewrites_and_rows(shape_b_db):
    report = planned(shape_b_db).stdout
    changes = section(report, "Changes, by table:")
    for sentence in (
        "column website_id: type text -> uuid",
        "column order_id: type text -> uuid",
        "column customer_name: NOT NULL -> nullable",
        "column unread_owner added: integer, default 0",
        (
            "constraint chat_conversations_website_id_fkey created: FOREIGN KEY (website_id) "
            "REFERENCES websites(id) ON DELETE CASCADE"
        ),
        "index idx_chat_conversations_website built: btree (website_id)",
        "row level security enabled",
        "joins publication supabase_realtime",
        "column message: NOT NULL -> nullable",
        "column message_text added: text NOT NULL, default ''::text",
        "function update_conversation_on_message() created",
    ):
        assert f"    - {sentence}\n" in changes + "\n", sentence
    assert "  chat_participants  (created by the run)" in changes
    access = section(report, "Access that would change (anon, authenticated, PUBLIC):")
    assert "anon          chat_messages       SELECT all -> none  through no policy" in access
    assert "WIDER" not in access
    hazards = report.split("\nHazards:\n", 1)[1]
    for line in (
        "    public.chat_conversations      ACCESS EXCLUSIVE: reads and writes wait",
        "    public.websites                SHARE ROW EXCLUSIVE: writes wait, reads go on",
        (
            "  Tables rewritten in the transaction (every row copied under ACCESS EXCLUSIVE): "
            "chat_conversations"
        ),
        "    public.chat_conversations: 2 updated, 0 deleted, 0 inserted",  # 008's fill
        "    public.chat_messages: 8 updated, 0 deleted, 0 inserted",  # 009's message_text
    ):
        assert line in hazards.splitlines(), line


def test_where_the_online_path_would_run_the_plan_says_so_and_runs_none_of_it(shape_b_db):
    report = planned(shape_b_db, "online=always").stdout
    changes = section(report, "Changes, by table:")
    for sentence in (
        "online path: the slow work before the transaction",
        (
            "- online, before the run's transaction: convert website_id to uuid in a new column, "
            "then swap (online)"
        ),
        (
            "- online, before the run's transaction: add foreign key "
            "chat_conversations_website_id_fkey, validated without blocking writes"
        ),
        (
            "- online, before the run's transaction: build index idx_chat_conversations_website "
            "concurrently (reads and writes go on)"
        ),
        (
            "- online, before the run's transaction: check that customer_id holds no NULL "
            "(validated without blocking writes), then SET NOT NULL in the run's transaction"
        ),
    ):
        assert sentence in changes, sentence
    assert "column website_id: type" not in changes  # said once, by its step
    assert "(plus, online, the rows of: chat_conversations: convert order_id" in report


def test_a_refusal_is_the_deploys_failed_line_and_exit_1(shape_b_db):
    shapes.add_bad_website_ids(shape_b_db.conn)
    result = planned(shape_b_db)
    assert result.returncode == 1
    deploy = alembic_cli("upgrade", "head", url=shape_b_db.url)
    assert failed_line(result.stdout) == failed_line(deploy.stdout)
    assert failed_line(result.stdout).startswith("FAILED: Revision c001 cannot bring")
    assert "(the run stopped before it changed anything; see below)" in result.stdout


def test_a_database_at_head_has_nothing_to_plan(supabase_head_db):
    result = planned(supabase_head_db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Database at {HEAD}; revisions to apply: none: the database is at head" in (
        result.stdout
    )
    assert section(result.stdout, "Changes, by table:") == "  (none)"
    assert result.stdout.endswith(
        "The deploy would succeed: nothing to apply, the database is at head.\n"
    )


def test_the_plan_waits_for_locks_like_a_deploy_under_the_same_lock_timeout(shape_a_db):
    db = shape_a_db
    with blocking(db.url, "LOCK TABLE chat_messages IN ACCESS SHARE MODE") as live:
        result = plan(db.url, "lock_timeout=300ms", "lock_retries=0")
        assert result.returncode == 1
        line = failed_line(result.stdout)
        assert "could not lock table public.chat_messages within lock_timeout=300ms" in line
        assert f"process {live.pid}" in line


# --------------------------------------------------------------------------- values dropped


@pytest.fixture
def project(tmp_path) -> Path:
    copy_project(tmp_path, "pyproject.toml")
    (tmp_path / "alembic" / "versions" / "t01_drop_content.py").write_text(
        textwrap.dedent(f'''\
            """Drop chat_messages.content (a test revision).

            Revision ID: t01
            Revises: {HEAD}
            """

            from alembic import op

            revision = "t01"
            down_revision = "{HEAD}"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
                op.drop_column("chat_messages", "content")


            def downgrade() -> None:
                pass
            ''')
    )
    return tmp_path


def test_values_a_revision_would_drop_are_listed_and_refused(project, supabase_head_db):
    db = supabase_head_db
    db.conn.execute("""
        INSERT INTO websites (id) VALUES ('ab000000-0000-4000-8000-000000000001');
        INSERT INTO chat_conversations (id, website_id, customer_id)
          VALUES ('c0000000-0000-4000-8000-000000000001',
                  'ab000000-0000-4000-8000-000000000001', 'customer_1');
        INSERT INTO chat_messages (conversation_id, sender_type, content)
          VALUES ('c0000000-0000-4000-8000-000000000001', 'customer', 'Helo');
    """)
    before = dump(db.url)
    result = plan(db.url, cwd=project)
    assert dump(db.url) == before
    assert result.returncode == 1
    dropped = f"column chat_messages.content, 1 value (upgrade {HEAD} -> t01)"
    assert f"    {dropped}\n" in result.stdout
    assert failed_line(result.stdout).startswith(
        f"FAILED: The run would drop 1 table or column(s) holding values: {dropped}"
    )
    allowed = plan(db.url, "allow_data_loss=true", cwd=project)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert f"    {dropped}\n" in allowed.stdout
    assert "    - column content dropped (was text)" in allowed.stdout
    assert dump(db.url) == before


def test_the_plan_of_a_fresh_plain_database_lists_what_000_and_004_create(empty_db):
    result = planned(empty_db)
    assert result.returncode == 0, result.stdout + result.stderr
    changes = section(result.stdout, "Changes, by table:")
    for table in ("chat_conversations", "chat_messages", "chat_participants"):
        assert f"  {table}  (created by the run)" in changes
    assert "function update_updated_at_column() created" in changes
    assert (
        "Database at no revision (no alembic_version table); revisions to apply: "
        + (", ".join(revision_ids()))
        in result.stdout
    )
