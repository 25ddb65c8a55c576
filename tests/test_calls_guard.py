"""Issue 19, item 4: no deploy breaks a call the backend makes, unless the operator says so.

Before a run changes anything, the calls of the project's calls file (calls/backend.calls,
read from the backend's code) run as PostgREST runs them for the service-role key; before
it commits they run again inside its transaction. A call that worked and would fail (or
would work only by dropping a column it got) refuses the run, exit 4, naming
``path:line``, table and column, and leaves the database as it was; ``-x
allow_breaking_calls=true`` accepts it, logging each. ``chatdb plan`` says the same:
"backend calls after this deploy: N of M succeed (K fixed, B broken)". The test cases: a
revision dropping chat_messages.message_text, and a downgrade below 009.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.contract import calls
from tests.convergence import chatdb_run
from tests.deploying import add_revision, deploy, dump, failed_line
from tests.pg import alembic_cli, migrate

CALLS = calls()
WRITES_MESSAGE_TEXT = [
    c for c in CALLS if c.table == "chat_messages" and "message_text" in c.writes
]
DROP_MESSAGE_TEXT = "ALTER TABLE public.chat_messages DROP COLUMN message_text"
BROKEN = "-x allow_breaking_calls=true: backend call broken: "
SUMMARY = re.compile(
    r"backend calls after this deploy: (\d+) of (\d+) succeed \((\d+) fixed, (\d+) broken"
    r"(?:, (\d+) of them still answering without a column)?\)"
)


def broken_calls(line: str) -> list[str]:
    """The calls a refusal names, each as ``path:line table operation: code column``."""
    named = line.split("that work now (calls/backend.calls): ", 1)[1]
    return named.split("; the run was rolled back", 1)[0].split("; ")


def test_a_revision_dropping_a_column_the_backend_writes_is_refused(
    project_with_a_revision, head_db
):
    """Every call that sends message_text would get PGRST204: each is named, with its
    place in the backend's code, and nothing is changed."""
    add_revision(project_with_a_revision, DROP_MESSAGE_TEXT)
    before = dump(head_db.url)
    refused = deploy(project_with_a_revision, head_db.url)
    line = failed_line(refused)
    assert line.startswith("FAILED: The run would break ")
    named = broken_calls(line)
    for call in WRITES_MESSAGE_TEXT:
        assert f"{call.where} chat_messages {call.operation}: PGRST204 message_text" in named
    assert len(named) == int(line.split("would break ", 1)[1].split(" ", 1)[0])
    assert line.endswith("or re-run with -x allow_breaking_calls=true to accept it.")
    assert dump(head_db.url) == before


def test_the_option_accepts_it_and_logs_each_broken_call(project_with_a_revision, head_db):
    add_revision(project_with_a_revision, DROP_MESSAGE_TEXT)
    refused = failed_line(deploy(project_with_a_revision, head_db.url))
    accepted = deploy(project_with_a_revision, head_db.url, "allow_breaking_calls=true")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    logged = [line.split(BROKEN, 1)[1] for line in accepted.stderr.splitlines() if BROKEN in line]
    assert logged == broken_calls(refused)
    assert head_db.scalar("SELECT version_num FROM alembic_version") == "t01"


def test_the_plan_says_it_and_fails_as_the_deploy_would(project_with_a_revision, head_db):
    add_revision(project_with_a_revision, DROP_MESSAGE_TEXT)
    planned = chatdb_run("plan", url=head_db.url, cwd=project_with_a_revision)
    assert planned.returncode == 1, planned.stdout + planned.stderr
    summary = SUMMARY.search(planned.stdout)
    assert summary, planned.stdout
    succeed, total, fixed, broken, answering = (int(n or 0) for n in summary.groups())
    assert (total, fixed) == (len(CALLS), 0)
    assert broken >= len(WRITES_MESSAGE_TEXT)
    assert planned.stdout.count("  BROKEN ") == broken
    # A broken call that still succeeds, by its retry dropping the column, is counted,
    # and the summary says so (chat.py:311 reads message_text, its retry drops it).
    degraded = len(re.findall(r"  BROKEN .*: loses ", planned.stdout))
    assert degraded >= 1, planned.stdout
    assert (succeed, answering) == (total - broken + degraded, degraded)
    deployed = deploy(project_with_a_revision, head_db.url)
    assert [line for line in planned.stdout.splitlines() if line.startswith("FAILED: ")] == [
        failed_line(deployed)
    ]


def test_a_downgrade_below_009_breaks_the_calls_that_send_message_text(supabase_head_db):
    """Past 049 the downgrade widens access too (its own option); past 009 and 014 it
    drops message_text and website_name, which the backend sends."""
    db = supabase_head_db
    before = dump(db.url)
    refused = alembic_cli("-x", "allow_wider_access=true", "downgrade", "008", url=db.url)
    line = failed_line(refused)
    named = broken_calls(line)
    for call in WRITES_MESSAGE_TEXT:
        assert f"{call.where} chat_messages {call.operation}: PGRST204 message_text" in named
    assert any(entry.endswith("PGRST204 website_name") for entry in named)
    assert dump(db.url) == before
    options = ["allow_wider_access=true", "allow_breaking_calls=true"]
    migrate(db.url, "008", down=True, x=options)
    assert db.scalar("SELECT version_num FROM alembic_version") == "008"


def test_the_plan_at_008_counts_what_the_deploy_fixes(supabase_at_008_db):
    planned = chatdb_run("plan", url=supabase_at_008_db.url)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    succeed, total, fixed, broken, answering = SUMMARY.search(planned.stdout).groups()
    assert (succeed, total, broken, answering) == (str(len(CALLS)), str(len(CALLS)), "0", None)
    fixed = int(fixed)
    fixed_lines = [line for line in planned.stdout.splitlines() if line.startswith("  fixed  ")]
    assert len(fixed_lines) == fixed > 0
    for call in WRITES_MESSAGE_TEXT:
        assert f"  fixed  {call.where} chat_messages {call.operation}" in fixed_lines


def test_the_calls_leave_nothing_behind(head_db):
    """The snapshot and the comparison run the calls in transactions that roll back: a
    run at head adds no row anywhere (rows the calls need included)."""
    migrate(head_db.url, "head")
    before = dump(head_db.url)
    # A run with something to apply: down one revision and up again, through the guard.
    migrate(head_db.url, "-1", down=True, x=["allow_data_loss=true", "allow_breaking_calls=true"])
    migrate(head_db.url, "head")
    assert dump(head_db.url) == before


def test_without_a_calls_file_nothing_is_checked(project_with_a_revision, head_db):
    shutil.rmtree(project_with_a_revision / "calls")
    add_revision(project_with_a_revision, DROP_MESSAGE_TEXT)
    result = deploy(project_with_a_revision, head_db.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "backend calls after this deploy" not in result.stderr


@pytest.mark.parametrize(
    "content, sentence",
    [
        ("backend/x.py:1 chat_messages sing\n", "line 1: 'sing' is not one of select"),
        ("nothing at all\n", "line 1: 'nothing' is not path:line"),
    ],
)
def test_a_malformed_calls_file_stops_the_run_before_it_connects(
    project_with_a_revision, content, sentence
):
    (project_with_a_revision / "calls" / "backend.calls").write_text(content)
    unreachable = "postgresql://postgres@127.0.0.1:1/nowhere"
    result = deploy(project_with_a_revision, unreachable)
    assert result.returncode == 2, result.stdout + result.stderr  # BadInput: nothing attempted
    [line] = result.stdout.splitlines()
    assert line.startswith("FAILED: The calls file ") and sentence in line


def test_a_calls_file_option_that_names_no_file_is_bad_input(head_db):
    result = alembic_cli("-x", "calls_file=calls/none.calls", "upgrade", "head", url=head_db.url)
    assert result.returncode == 2
    assert result.stdout.startswith("FAILED: -x calls_file='calls/none.calls': no such file")


def test_the_plan_names_the_calls_file_it_ran(project_with_a_revision, head_db):
    """With -x calls_file the plan runs that file's calls and says so: a heading naming
    the project's file would tell the reader the wrong contract was checked."""
    add_revision(project_with_a_revision, DROP_MESSAGE_TEXT)
    other = project_with_a_revision / "calls" / "other.calls"
    other.write_text("".join(f"{call.render()}\n" for call in WRITES_MESSAGE_TEXT))
    planned = chatdb_run(
        "plan", "-x", "calls_file=calls/other.calls", url=head_db.url, cwd=project_with_a_revision
    )
    assert planned.returncode == 1, planned.stdout + planned.stderr
    assert "\nBackend calls (calls/other.calls, run as PostgREST runs them):\n" in planned.stdout
    succeed, total, _, broken, _ = SUMMARY.search(planned.stdout).groups()
    assert (succeed, total, broken) == ("0", str(len(WRITES_MESSAGE_TEXT)), total)
