"""Test-side helpers of the deploy-safety tests (tests/test_deploy_*.py).

- :func:`dump`: the whole database (schema and rows) as pg_dump prints it, to compare
  "exactly as before", version table included;
- :func:`start_cli`: the real ``alembic`` command line, started without waiting;
- :class:`Blocker`: a transaction the test holds open, as live traffic would;
- :func:`wait_until`: poll the server until something is true.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from chatdb.deploy.locking import LOCK_KEY
from chatdb.local.server import bindir
from tests.pg import ALEMBIC, ROOT

WAITING_FOR_MIGRATION_LOCK = f"""
    SELECT count(*) FROM pg_locks
    WHERE locktype = 'advisory' AND NOT granted AND classid::bigint = {LOCK_KEY >> 32}
      AND objid::bigint = {LOCK_KEY & 0xFFFFFFFF} AND objsubid = 1
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
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PGRST_DB_CHANNEL")}
    environ.update(DATABASE_URL=url, **(env or {}))
    return subprocess.Popen(
        [ALEMBIC, *args],
        cwd=ROOT,
        env=environ,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


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


def waiting_pids(conn: psycopg.Connection, table: str) -> list[int]:
    """Sessions waiting for a lock on ``table`` (a migration queued behind a blocker)."""
    rows = conn.execute(
        "SELECT pid FROM pg_locks WHERE NOT granted AND relation = to_regclass(%s)", (table,)
    ).fetchall()
    return [row[0] for row in rows]
