"""Documentation that shows a command runs it: the README's and the guides' shell blocks,
pasted as written (tests.docs: only the example URLs are the test's), and the output a
page shows for them is what they print.

Every ```sh block of README.md and docs/*.md is run by a test: here, or, for the guides
that take a database through several steps, by the test of those steps
(``GUIDES_RUN_ELSEWHERE``). A page with a shell block that no test runs fails
``test_every_shell_block_is_run_by_a_test``.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from alembic.script import ScriptDirectory

from chatdb.project import alembic_config
from tests.docs import (
    WHOLE_SUITE,
    Reader,
    blocks,
    delete_local_cluster,
    is_whole_suite,
    project_folder,
    shell_blocks,
    text_after,
)
from tests.pg import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
# Pages whose blocks another test pastes, step by step, with the checks of each step.
GUIDES_RUN_ELSEWHERE = {
    "docs/taking-over-production.md": "tests/test_taking_over.py",
    "docs/changing-the-schema-walkthrough.md": "tests/test_autogenerate.py",
    "docs/benchmark.md": "tests/test_bench_online.py",
}
PLACEHOLDER = "postgresql://..."  # what a page writes for "your database's URL"
SUPABASE_EXAMPLE = (
    "postgresql://postgres:<password>@db.<project>.supabase.co:5432/postgres?sslmode=require"
)


def pages() -> list:
    return [README, *sorted(DOCS.glob("*.md"))]


# The pages this file's tests paste.
RUN_HERE = {
    "README.md",
    "docs/access.md",
    "docs/drift.md",
    "docs/deploying.md",
    "docs/testing.md",
    "docs/when-the-backend-changes.md",
}


def test_every_shell_block_is_run_by_a_test():
    """A new page, or a new shell block on a page no test pastes, fails here: give it a
    test (or make it a ```text block if it only shows output)."""
    with_blocks = {str(page.relative_to(ROOT)) for page in pages() if shell_blocks(page)}
    covered = RUN_HERE | set(GUIDES_RUN_ELSEWHERE)
    assert with_blocks - covered == set(), "pages whose shell blocks no test runs"
    for name, test in GUIDES_RUN_ELSEWHERE.items():
        assert name in (ROOT / test).read_text(), f"{test} does not paste {name}"


def test_ci_runs_the_readmes_test_command_as_written():
    """The one line the reader leaves to CI (the whole suite cannot run inside itself):
    the README's test command is .ci/run's, verbatim."""
    (block,) = shell_blocks(README)
    lines = [line for line in block.text.splitlines() if is_whole_suite(line)]
    assert lines, f"the README's first shell block has no `{WHOLE_SUITE}` line"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line.split("#")[0].strip() == WHOLE_SUITE for line in ci)


def test_the_readmes_two_commands_on_a_fresh_copy(tmp_path):
    """./dev up in a project with no cluster: it makes one, migrates it, and prints what
    the README shows (the port is the cluster's own); then ./dev down --delete."""
    folder = project_folder(tmp_path / "project")
    (block,) = shell_blocks(README)
    reader = Reader(folder)
    try:
        (result,) = reader.run_all([block])
        shown = text_after(README, block)
        port = re.search(r"127\.0\.0\.1:(\d+)/", result.stdout)
        assert port, result.stdout
        expected = shown.text.replace("127.0.0.1:44625", f"127.0.0.1:{port[1]}")
        assert result.stdout.splitlines() == expected.splitlines()
    finally:
        delete_local_cluster(folder)


def page_output(page, url: str, shown_url: str) -> tuple[str, str]:
    """What the page's one shell block prints against ``url``, and what the page shows
    (its ```text block after the command, the example URL replaced by ``url``)."""
    (block,) = shell_blocks(page)
    (result,) = Reader(ROOT, {PLACEHOLDER: url}).run_all([block])
    shown = text_after(page, block)
    return result.stdout, shown.text.replace(shown_url, url) + "\n"


def test_the_access_page_shows_what_chatdb_access_prints_at_head(supabase_head_db):
    printed, shown = page_output(
        DOCS / "access.md", supabase_head_db.url, "postgresql://postgres@127.0.0.1:35071/app"
    )
    assert printed == shown


def test_the_drift_page_runs_at_head(head_db):
    (block,) = shell_blocks(DOCS / "drift.md")
    (result,) = Reader(ROOT, {PLACEHOLDER: head_db.url}).run_all([block])
    assert result.stdout.startswith(f"No drift: {head_db.url} (from DATABASE_URL) matches")


def test_the_deploying_page_migrates_as_written(empty_db):
    """The command line, and its spelled-out defaults (a second run: nothing to apply)."""
    first, second, *_ = shell_blocks(DOCS / "deploying.md")
    reader = Reader(ROOT, {SUPABASE_EXAMPLE: empty_db.url})
    reader.run_all([first, second])
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert empty_db.scalar("SELECT version_num FROM alembic_version") == head
    assert "No revision applied" in reader.ran[-1][1].stderr


PLAN_ROLE_EXAMPLE = (
    "postgresql://chatdb_plan:<password>@db.<project>.supabase.co:5432/postgres?sslmode=require"
)


def test_the_deploying_pages_pull_request_job_by_hand(shape_d_db, local_copy, tmp_path):
    """The read-only role made on "production" (shape d, the likeliest), then the pull
    request job's script run by hand with it, into an empty copy: the summary it writes
    says the deploy would succeed."""
    *_, role, by_hand = shell_blocks(DOCS / "deploying.md")
    folder = project_folder(tmp_path / "project", ".github", "calls")
    plan_role_url = shape_d_db.url.replace("postgresql://postgres@", "postgresql://chatdb_plan@")
    local = "postgresql://postgres@127.0.0.1:44625/takeover"
    reader = Reader(
        folder,
        {SUPABASE_EXAMPLE: shape_d_db.url, PLAN_ROLE_EXAMPLE: plan_role_url, local: local_copy},
    )
    reader.run_all([role, by_hand])
    assert "the plan job would fail" not in reader.ran[-1][1].stdout, reader.ran[-1][1].stderr
    summary = (folder / "plan-summary.md").read_text()
    assert "**The deploy would succeed.**" in summary, summary


def small_backend(root) -> None:
    """A backend beside the project (``../binaapp``), as the guide's reader has one: a
    git repository with one call on a chat table."""
    app = root / "backend" / "app"
    app.mkdir(parents=True)
    (root / ".git").mkdir()
    (app / "chat.py").write_text(
        "def send(supabase, conversation_id, text):\n"
        '    return supabase.table("chat_messages").insert(\n'
        '        {"conversation_id": conversation_id, "sender_type": "customer",\n'
        '         "message_text": text}\n'
        "    ).execute()\n"
    )


def test_the_backend_change_guide_rescans_and_checks(head_db, tmp_path):
    """Rescan a backend beside the project (the calls file rewritten, its git diff read),
    check the calls at the copy's local cluster, then at another database."""
    rescan, check, against = shell_blocks(DOCS / "when-the-backend-changes.md")
    folder = project_folder(tmp_path / "project", "calls")
    small_backend(tmp_path / "binaapp")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(folder)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "the project"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    reader = Reader(folder, {PLACEHOLDER: head_db.url})
    try:
        scanned, checked, elsewhere = reader.run_all([rescan, check, against])
    finally:
        delete_local_cluster(folder)
    written = (folder / "calls" / "backend.calls").read_text()
    assert (
        "backend/app/chat.py:2 chat_messages insert writes=conversation_id,sender_type," in written
    )
    assert "+backend/app/chat.py:2 chat_messages insert" in scanned.stdout  # git diff
    assert "1 of 1 calls succeed" in checked.stdout
    assert "1 of 1 calls succeed" in elsewhere.stdout


def test_the_testing_page_runs_but_the_whole_suite(tmp_path):
    """Its examples run pytest on one small file, with three workers and with none; the
    whole suite is CI's own line."""
    (block,) = shell_blocks(DOCS / "testing.md")
    (result,) = Reader(ROOT).run_all([block])
    assert len(re.findall(r"\b\d+ passed\b", result.stdout)) == 2, result.stdout


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_fences_are_closed_and_shell_blocks_name_their_language(page):
    """A block the reader would miss: an unclosed fence, or a command shown in a block
    with no language (give it sh, or text if it is output)."""
    text = page.read_text()
    fences = [line for line in text.splitlines() if re.match(r"^\s*```", line)]
    assert len(fences) % 2 == 0, f"{page.name}: an unclosed ``` fence"
    for block in blocks(page):
        if block.lang == "":
            assert not re.search(r"^\s*(\./dev|\.venv/bin/|alembic |psql |pg_dump )",
                                 block.text, re.MULTILINE), f"{block}: a command in a block with no language"  # fmt: skip
