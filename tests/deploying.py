"""Test-side helpers of the deploy-safety tests (tests/test_deploy_*.py).

- :func:`dump`: the whole database (schema and rows) as pg_dump prints it, to compare
  "exactly as before", version table included;
- :func:`start_cli`: the real ``alembic`` command line, started without waiting;
- :class:`Deploy`: ``alembic upgrade head`` (or a revision) in the background, its log
  lines collected;
- :class:`Blocker`: a transaction the test holds open, as live traffic would;
- :func:`wait_until`: poll the server until something is true;
- :func:`add_revision`, :func:`deploy`, :func:`failed_line`: a revision after head in a
  copy of the project (fixture ``project_with_a_revision``, tests/fixtures.py), deployed
  with the real command line, and the one line of a refusal.
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from chatdb.deploy.locking import LOCK_KEY, WAITING_POLL
from chatdb.local.server import bindir
from tests import warm
from tests.pg import ALEMBIC, ROOT, command_env, revision_ids

# A deploy waiting for the migration lock polls pg_try_advisory_lock in autocommit (it
# holds no transaction, so no lock wait shows in pg_locks): between polls, its session
# is idle and that poll is its last query. Its polls carry a comment of their own once it
# has said whom it waits for (chatdb.deploy.locking.WAITING_POLL).
POLLING = WAITING_POLL.replace(":key", str(LOCK_KEY))
WAITING_FOR_MIGRATION_LOCK = f"""
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'chatdb migrate'
      AND query = '{POLLING}'
"""


def dump(url: str, env: dict[str, str] | None = None) -> str:
    """pg_dump of the whole database: every object and every row."""
    result = subprocess.run(
        [str(bindir() / "pg_dump"), "--no-sync", "--restrict-key=chatdbtest", "--dbname", url],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    return result.stdout


def start_cli(*args: str, url: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``alembic *args`` as a deploy runs it, without waiting for it to end."""
    return warm.popen([ALEMBIC, *args], cwd=ROOT, env=command_env(url, **(env or {})))


class Deploy:
    """``alembic *x upgrade <target>`` (head unless told) in the background; its log lines
    are collected as they come, so that a test can wait for one."""

    def __init__(self, url: str, *x: str, target: str = "head") -> None:
        self.started = time.monotonic()
        self.ended: float | None = None
        self.process = start_cli(*x, "upgrade", target, url=url)
        self.lines: list[str] = []
        self.stdout = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
        self.process.wait()
        self.ended = time.monotonic()

    def wait_for_line(self, pattern: str, timeout: float = 60) -> str:
        """The first log line matching ``pattern`` (a regular expression)."""

        def found() -> str | None:
            if self.process.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"the deploy ended before logging {pattern!r}:\n{self.log}")
            return next((line for line in self.lines if re.search(pattern, line)), None)

        return wait_until(found, f"the deploy logs {pattern!r}", timeout)

    def finish(self, timeout: float = 300) -> int:
        self.stdout = self.process.stdout.read()
        self._reader.join(timeout)
        self.process.wait(timeout)
        self.process.stdout.close()
        return self.process.returncode

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    @property
    def seconds(self) -> float:
        assert self.ended is not None
        return self.ended - self.started

    @property
    def failure(self) -> str:
        """The one line Alembic prints for a CommandError, with no traceback anywhere."""
        assert self.process.returncode not in (0, None)
        assert "Traceback" not in self.stdout + self.log, self.stdout + self.log
        lines = self.stdout.strip().splitlines()
        assert len(lines) == 1, self.stdout
        return lines[0]


def wait_until(check: Callable[[], object], what: str, timeout: float = 60) -> object:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


class Blocker:
    """A session of its own with an open transaction, as live traffic holds one."""

    def __init__(self, url: str, *statements: str) -> None:
        self.conn = psycopg.connect(url, autocommit=False, application_name="test blocker")
        for statement in statements:
            self.conn.execute(statement)
        self.pid = self.conn.info.backend_pid

    def release(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


@contextmanager
def blocking(url: str, *statements: str) -> Iterator[Blocker]:
    blocker = Blocker(url, *statements)
    try:
        yield blocker
    finally:
        blocker.close()


def run_waiting_sql(on: str) -> str:
    """SQL for the pid of a migration run's session ('chatdb migrate') that waits for a
    lock ``on`` a table (its name) or on a row another transaction holds
    ('transactionid'); no row while none does."""
    return (
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE NOT l.granted AND a.application_name = 'chatdb migrate' "
        f"AND (l.relation = to_regclass('{on}') OR l.locktype = '{on}')"
    )


def waiting_pids(conn: psycopg.Connection, table: str) -> list[int]:
    """Sessions waiting for a lock on ``table`` (a migration queued behind a blocker)."""
    rows = conn.execute(
        "SELECT pid FROM pg_locks WHERE NOT granted AND relation = to_regclass(%s)", (table,)
    ).fetchall()
    return [row[0] for row in rows]


# --------------------------------------------------------------------------- a revision after head


def add_revision(project: Path, *statements: str) -> None:
    """Revision t01 after head, running ``statements``."""
    body = "\n".join(f"    op.execute({statement!r})" for statement in statements)
    (project / "alembic" / "versions" / "t01_test_revision.py").write_text(
        textwrap.dedent(f'''\
            """A revision of the test.

            Revision ID: t01
            Revises: {revision_ids()[-1]}
            """

            from alembic import op

            revision = "t01"
            down_revision = "{revision_ids()[-1]}"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
            ''')
        + body
        + "\n\n\ndef downgrade() -> None:\n    pass\n"
    )


def deploy(project: Path, url: str, *x: str) -> subprocess.CompletedProcess:
    args = [arg for option in x for arg in ("-x", option)]
    return warm.run(
        [ALEMBIC, *args, "upgrade", "head"], cwd=project, env=command_env(url), timeout=180
    )


def failed_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith("FAILED: ")]
    # Refused before any change: exit code 4 (docs/failures.md).
    assert result.returncode == 4 and len(lines) == 1, result.stdout + result.stderr
    return lines[0]
