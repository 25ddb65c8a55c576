"""What "converged to head" means, as checks (issue 12, item 2), shared by the tests of
taking a database over (test_convergence, test_plan, test_taking_over):

- ``drift_problems(url)``: ``chatdb drift`` lists only objects the code does not declare
  (an extra column, index or policy): every sentence that says a declared object is
  missing or differs is a problem;
- ``value_problems(before, after)``: every row and every value of ``before`` (tests.shapes
  .all_rows, columns the code does not declare included) is in ``after``, except what the
  revisions' documented backfills change (docs/taking-over-production.md): a NULL filled
  (008's customer_id, 009's message_text, 012's message_type), an empty message_type
  made 'text' (012), and the ``updated_at`` that 008's backfill stamps on the rows it
  fills, as the hand-run 008 did;
- ``contract_problems(conn)``: every call of the backend's calls file
  (calls/backend.calls, run by tests.contract) does at head what the models say.

Also the builders of combinations of the shapes (``COMBINATIONS``), and the runs of the
real command lines (``alembic_run``, ``chatdb_run``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests import shapes, warm
from tests.contract import contract_problems  # noqa: F401 - the convergence tests' check
from tests.pg import ROOT, command_env, run_sql_file

CHATDB = str(Path(sys.executable).with_name("chatdb"))
UNDECLARED = (
    "is in the database but not in the code",
    "is not in the code (an extra policy",
)


def chatdb_run(
    *args: str, url: str | None, cwd: Path = ROOT, timeout: float = 180, **extra_env: str
) -> subprocess.CompletedProcess:
    """The real ``chatdb`` command line against ``url`` (None: no DATABASE_URL), in ``cwd``."""
    return warm.run([CHATDB, *args], cwd=cwd, env=command_env(url, **extra_env), timeout=timeout)


def drift_sections(report: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    current = None
    for line in report.splitlines()[1:]:
        if line.startswith("  - "):
            groups[current].append(line[4:])
        elif line and not line.startswith("Read-only check"):
            current = line
            groups[current] = []
    return groups


def drift_problems(url: str) -> list[str]:
    """What ``chatdb drift`` says of declared objects (missing or different)."""
    result = chatdb_run("drift", url=url)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return [
        f"{table}: {sentence}"
        for table, sentences in drift_sections(result.stdout).items()
        for sentence in sentences
        if not any(mark in sentence for mark in UNDECLARED)
    ]


# Values a revision replaces, as its docstring and the takeover guide say: 012's backfill.
DOCUMENTED_REPLACEMENTS = {"chat_messages": {"message_type": ("", "text")}}


def value_problems(before: dict, after: dict) -> list[str]:
    """Every value of ``before`` that ``after`` does not keep, but fills of NULLs, the
    documented replacements (DOCUMENTED_REPLACEMENTS) and the updated_at that a fill of
    customer_id stamps."""
    filled_conversations = {
        row["id"] for row in before.get("chat_conversations", []) if row["customer_id"] is None
    }
    problems = []
    for sentence in shapes.lost(before, after):
        table, row_id = sentence.split(": ", 1)[0].split(" ")
        if " was None, is " in sentence:
            continue
        replaced = DOCUMENTED_REPLACEMENTS.get(table, {})
        if any(
            sentence.endswith(f": {column} was {old!r}, is {new!r}")
            for column, (old, new) in replaced.items()
        ):
            continue
        stamped = f"{table} {row_id}: updated_at was "
        if sentence.startswith(stamped) and row_id in filled_conversations:
            continue
        problems.append(sentence)
    return problems


# --------------------------------------------------------------------------- combinations


def _participants(url: str) -> None:
    shapes._fill(url, shapes._participants)


def b_then_fix_a_then_049(url: str) -> None:
    """The older script's tables, then FIX A without its FIX B (its CREATE TABLE IF NOT
    EXISTS makes only chat_participants, its index idx_chat_conversations_customer goes on
    customer_phone, its "Allow all" policies, grants and publication apply to all three),
    then 049; participants for the conversations."""
    shapes.build_b(url)
    run_sql_file(url, "hand_run/014_fix_a.sql")
    run_sql_file(url, "hand_run/049_chat.sql")
    _participants(url)


def b_then_010_012_013(url: str) -> None:
    """The older script's tables, then 010 (row level security, "Allow all" policies),
    012 and 013 (message_type default, indexes)."""
    shapes.build_b(url)
    for name in ("010_enable_chat_realtime_and_rls", "012_fix_chat_message_type"):
        run_sql_file(url, f"hand_run/{name}.sql")
    run_sql_file(url, "hand_run/013_add_missing_chat_columns.sql")


def a_then_010(url: str) -> None:
    """004 and 008 by hand, then 010's "Allow all" policies beside 004's."""
    shapes.build_a(url)
    run_sql_file(url, "hand_run/010_enable_chat_realtime_and_rls.sql")


def fix_a_without_049(url: str) -> None:
    """FIX A's rebuild, with rows, never hardened."""
    run_sql_file(url, "hand_run/014_fix_a.sql")
    shapes._fill(url, shapes._rows_fix_a)


# name: builder. No combination needs -x allow_wider_access: head (c003) leaves the chat
# tables to the service role, so it never widens what anon or authenticated can do.
COMBINATIONS: dict[str, Callable[[str], None]] = {
    "b+fix_a+049": b_then_fix_a_then_049,
    "b+010+012+013": b_then_010_012_013,
    "a+010": a_then_010,
    "fix_a": fix_a_without_049,
}
