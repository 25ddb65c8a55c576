"""``--format markdown`` of chatdb plan, drift and access: headings and tables for a job
summary or a pull request comment, saying the same facts as the plain text (which stays
the default, unchanged: the other tests compare it line by line).

Each test runs both formats on the same database and checks that every fact line of the
text is in the Markdown, once its escapes are read back (chatdb.markdown).
"""

from __future__ import annotations

import itertools
import re

import pytest

from chatdb import markdown as md
from tests.convergence import chatdb_run
from tests.deploying import add_revision
from tests.pg import ROOT


def unescaped(markdown: str) -> str:
    """The Markdown with its backslash escapes read back, as a reader sees the text."""
    return re.sub(r"\\(.)", r"\1", markdown)


def both(*args: str, url: str, cwd=ROOT) -> tuple:
    text = chatdb_run(*args, url=url, cwd=cwd)
    markdown = chatdb_run(*args, "--format", "markdown", url=url, cwd=cwd)
    assert text.returncode == markdown.returncode, text.stdout + markdown.stdout
    assert markdown.stderr.count("FAILED") == 0, markdown.stderr
    return text, markdown


def table_rows(markdown: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with ``header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


# --------------------------------------------------------------------------- the helpers


def test_escape_keeps_sql_literal_and_words_readable():
    sentence = "default '[]'::jsonb, *all* `rows` <b> ~~x~~ _private_ gen_random_uuid()"
    escaped = md.escape(sentence)
    assert "gen_random_uuid()" in escaped  # an underscore inside a word starts nothing
    assert r"\_private\_" in escaped and r"\*all\*" in escaped and r"\`rows\`" in escaped
    assert r"\<b>" in escaped and r"\[\]" in escaped and r"\~\~x\~\~" in escaped
    assert unescaped(escaped) == sentence


def test_a_table_cell_keeps_its_pipes_and_a_code_span_its_backticks():
    assert md.table(("a", "b"), [("x|y", md.code("p`q"))]) == [
        "| a | b |",
        "|---|---|",
        r"| x\|y | ``p`q`` |",
    ]
    assert md.fenced("a\n```\nb") == ["````text", "a\n```\nb", "````"]


# --------------------------------------------------------------------------- chatdb plan


def test_plan_markdown_of_shape_d_says_what_the_text_says_with_its_failed_verdict(
    shape_d_db, project_with_a_revision
):
    """Production's likeliest shape (d), and a revision after head that opens the
    conversations to everyone: the plan refuses it as the deploy would (WIDER)."""
    add_revision(
        project_with_a_revision,
        'CREATE POLICY "Debug: anyone reads conversations" ON public.chat_conversations '
        "FOR SELECT USING (true)",
    )
    text, markdown = both("plan", url=shape_d_db.url, cwd=project_with_a_revision)
    assert text.returncode == 1  # refused: it widens access
    out = markdown.stdout
    for heading in (
        "## Plan of `alembic upgrade head` for ",
        "### Changes, by table",
        "### Access that would change (anon, authenticated, PUBLIC)",
        "### Hazards",
        "### Verdict",
    ):
        assert f"\n{heading}" in "\n" + out, heading
    read = unescaped(out)
    for line in text.stdout.splitlines():
        if line.startswith("    - "):  # a change
            assert f"\n- {line[6:]}\n" in read, line
    [failed] = [line for line in text.stdout.splitlines() if line.startswith("FAILED: ")]
    assert read.rstrip().endswith("### Verdict\n\n" + failed)
    wider = [row for row in table_rows(out, "|   | role |") if row[0] == "**WIDER**"]
    assert [row[:6] for row in wider] == [
        ["**WIDER**", f"`{role}`", "`chat_conversations`", "SELECT", "none", "all"]
        for role in ("anon", "authenticated")
    ]
    locks = table_rows(out, "| table | lock |")
    assert ["`public.chat_conversations`", "ACCESS EXCLUSIVE", "reads and writes wait"] in locks


def test_plan_markdown_of_a_database_at_head_has_nothing_to_apply(supabase_head_db):
    text, markdown = both("plan", url=supabase_head_db.url)
    assert text.returncode == 0
    changes = markdown.stdout.split("### Changes, by table\n\n", 1)[1].split("\n", 1)[0]
    assert changes == "None."
    assert markdown.stdout.rstrip().endswith(
        "### Verdict\n\n**The deploy would succeed: nothing to apply, the database is at head.**"
    )


def test_plan_markdown_of_shape_b_lists_rows_written_in_a_table(shape_b_db):
    text, markdown = both("plan", url=shape_b_db.url)
    assert text.returncode == 0, text.stdout
    written = table_rows(markdown.stdout, "| table | updated |")
    assert ["`public.chat_messages`", "8", "0", "0"] in written
    assert "    public.chat_messages: 8 updated, 0 deleted, 0 inserted" in text.stdout
    assert (
        "**Tables rewritten in the transaction (every row copied under ACCESS EXCLUSIVE)**: "
        + ("`chat_conversations`")
        in markdown.stdout
    )
    applied = text.stdout.rsplit("The deploy would succeed: it applies ", 1)[1].strip()
    assert markdown.stdout.rstrip().endswith(f"**The deploy would succeed: it applies {applied}**")


def test_a_format_that_does_not_exist_is_a_usage_error(supabase_head_db):
    result = chatdb_run("plan", "--format", "html", url=supabase_head_db.url)
    assert result.returncode == 2
    assert "invalid choice: 'html'" in result.stderr


# --------------------------------------------------------------------------- chatdb drift


def test_drift_markdown_lists_the_same_sentences_under_a_heading_per_table(shape_b_db):
    text, markdown = both("drift", url=shape_b_db.url)
    assert text.returncode == 1
    out = markdown.stdout
    assert out.startswith("## Drift\n\n")
    for heading in ("### `chat_conversations`", "### `chat_messages`", "### Functions"):
        assert f"\n{heading}\n" in out, heading
    read = unescaped(out)
    sentences = [line[4:] for line in text.stdout.splitlines() if line.startswith("  - ")]
    assert sentences and all(f"\n- {sentence}\n" in read for sentence in sentences)
    assert read.count("\n- ") == len(sentences)
    assert out.rstrip().endswith("Read-only check: nothing was changed.")


def test_drift_markdown_of_a_database_at_head_says_no_drift(supabase_head_db):
    text, markdown = both("drift", url=supabase_head_db.url)
    assert text.returncode == 0
    assert markdown.stdout.startswith("## No drift\n\n")
    assert unescaped(markdown.stdout).splitlines()[2] == text.stdout.strip().removeprefix(
        "No drift: "
    )


# --------------------------------------------------------------------------- chatdb access


@pytest.mark.parametrize("shape", ["b", "d"])
def test_access_markdown_is_the_matrix_as_a_table_with_the_same_flags(shape, request):
    db = request.getfixturevalue(f"shape_{shape}_db")
    text, markdown = both("access", url=db.url)
    assert text.returncode == 0
    out = markdown.stdout
    assert out.startswith("## Access to the chat tables at ")
    rows = table_rows(out, "|   | role |")
    lines = text.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["role", "table"])
    cells = list(itertools.takewhile(bool, lines[header + 1 :]))
    assert len(rows) == len(cells) > 0
    for row, line in zip(rows, cells):
        role, table, command, reach = line[2:].split()[:4]
        assert row[1:5] == [f"`{role}`", f"`{table}`", command, reach], line
        assert (row[0] == "**!**") == line.startswith("!"), line
    flagged = sum(1 for line in cells if line.startswith("!"))
    assert f"can change or remove rows it does not own: {flagged} cell(s)." in unescaped(out)
    if shape == "b":  # the older script's tables: no chat_participants
        assert unescaped(out).rstrip().endswith(text.stdout.strip().splitlines()[-1])
        assert "Not listed: chat_participants" in text.stdout
