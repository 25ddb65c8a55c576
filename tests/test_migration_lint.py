"""Issue 4: squawk (the squawk-cli wheel) lints the offline SQL of every revision, and
the statements of the online path, which has no ``--sql`` form, as a real run sends them.

Each revision's ``alembic upgrade <down>:<rev> --sql`` script is linted as it is.
A finding is either fixed or justified beside its statement, in the revision's SQL,
with ``-- squawk-ignore <rule> -- <reason>``. Rules excluded for every revision are
in EXCLUDED, each with its reason; statements that Alembic writes itself (not a
revision) get their justification from this file, in ALEMBIC_STATEMENTS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine

from chatdb.project import alembic_config
from tests.drifted_table import make_drifted
from tests.pg import alembic_cli, migrate

SQUAWK = str(Path(sys.executable).with_name("squawk"))
PG_VERSION = "15"

# No rule is excluded: offline scripts start with the run's SET lock_timeout and
# statement_timeout (env.py), and the online path's recording starts with the SETs
# chatdb.deploy.locking sends before any revision runs.
EXCLUDED: dict[str, str] = {}
ALEMBIC_STATEMENTS = {
    "version_num VARCHAR(32)": "prefer-text-field -- Alembic's own version table, "
    "created empty on the first run",
}


def revisions() -> list[tuple[str | None, str]]:
    scripts = ScriptDirectory.from_config(alembic_config())
    return [(script.down_revision, script.revision) for script in scripts.walk_revisions()]


def squawk(path: Path, excluded: dict[str, str] = EXCLUDED) -> tuple[int, list[dict]]:
    exclude = ["--exclude", ",".join(excluded)] if excluded else []
    result = subprocess.run(
        [SQUAWK, "--pg-version", PG_VERSION, "--reporter", "json", *exclude, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, json.loads(result.stdout or "[]")


def justify_alembic_statements(sql: str) -> str:
    for statement, ignore in ALEMBIC_STATEMENTS.items():
        sql = sql.replace(statement, f"-- squawk-ignore {ignore}\n{statement}")
    return sql


@pytest.mark.parametrize(("down", "rev"), revisions(), ids=lambda value: str(value))
def test_offline_sql_of_each_revision_passes_squawk(tmp_path, down, rev):
    result = alembic_cli("upgrade", f"{down}:{rev}" if down else rev, "--sql")
    assert result.returncode == 0, result.stderr
    assert f"-- Running upgrade {down or ''} -> {rev}" in result.stdout
    path = tmp_path / f"{rev}.sql"
    path.write_text(justify_alembic_statements(result.stdout))
    status, findings = squawk(path)
    assert [f"{rev}.sql:{f['line'] + 1}: {f['rule_name']}: {f['message']}" for f in findings] == []
    assert status == 0


def without_rolled_back(sent: list[str]) -> list[str]:
    """The statements, less the transactions that rolled back (the calls guard's check of
    the backend's calls, before the run: chatdb.deploy.calls_guard). They leave nothing
    behind, and squawk knows only COMMIT as a transaction's end: it would read what
    follows a ROLLBACK as the same transaction."""
    kept, pending = [], None
    for statement in sent:
        if statement == "BEGIN" and pending is None:
            pending = [statement]
        elif pending is not None and statement in ("COMMIT", "ROLLBACK"):
            kept += pending + [statement] if statement == "COMMIT" else []
            pending = None
        elif pending is not None:
            pending.append(statement)
        else:
            kept.append(statement)
    return kept + (pending or [])


def test_statements_of_the_online_path_pass_squawk(db_at_004, tmp_path):
    """Every statement a run sends, pass 1's (autocommit, each its own transaction) and
    pass 2's, with the BEGIN and COMMIT of the run's one transaction where they are."""
    make_drifted(db_at_004.url, 300)
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(cursor.mogrify(statement, parameters).decode().strip().rstrip(";"))

    def transaction(word):
        def mark(conn):
            if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                sent.append(word)

        return mark

    listeners = [
        ("before_cursor_execute", record),
        ("begin", transaction("BEGIN")),
        ("commit", transaction("COMMIT")),
        ("rollback", transaction("ROLLBACK")),
    ]
    for name, listener in listeners:
        event.listen(Engine, name, listener)
    try:
        migrate(db_at_004.url, "head", x=["online=always", "online_batch_size=100"])
    finally:
        for name, listener in listeners:
            event.remove(Engine, name, listener)
    path = tmp_path / "online.sql"
    path.write_text("".join(f"{statement};\n\n" for statement in without_rolled_back(sent)))
    assert any(s.startswith("CREATE INDEX CONCURRENTLY") for s in sent)
    assert "BEGIN" in sent and "COMMIT" in sent
    status, findings = squawk(path)
    assert [f"online.sql:{f['line'] + 1}: {f['rule_name']}: {f['message']}" for f in findings] == []
    assert status == 0


def test_squawk_finds_a_blocking_statement(tmp_path):
    """The lint can fail: a plain CREATE INDEX on a live table, without timeouts, is
    reported for each of the three (so the timeout rules are live, not excluded)."""
    path = tmp_path / "blocking.sql"
    path.write_text("CREATE INDEX IF NOT EXISTS idx_x ON public.chat_conversations (status);\n")
    status, findings = squawk(path)
    assert status != 0
    assert sorted(f["rule_name"] for f in findings) == [
        "require-concurrent-index-creation",
        "require-lock-timeout",
        "require-statement-timeout",
    ]
