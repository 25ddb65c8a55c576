"""Issue 2 (i), issue 11 (6): bad input gets one clear line, ``FAILED: ...``, and the exit
code of its kind (docs/failures.md), from alembic and chatdb alike."""

import subprocess

import pytest

from chatdb.local.server import free_port
from tests.convergence import chatdb_run
from tests.pg import alembic_cli


def failure_line(result: subprocess.CompletedProcess, code: int | None = None) -> str:
    """The one line Alembic prints for a CommandError (stdout), with no traceback anywhere;
    the exit code is ``code`` when given, else any failure's."""
    assert result.returncode != 0 if code is None else result.returncode == code, result
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return lines[0]


def test_no_database_url():
    line = failure_line(alembic_cli("upgrade", "head"), 2)
    assert line.startswith("FAILED: DATABASE_URL is not set")
    assert "./dev up" in line


def test_malformed_database_url():
    line = failure_line(alembic_cli("upgrade", "head", url="mysql://root:hunter2@db/chat"), 2)
    assert line.startswith("FAILED: DATABASE_URL is malformed")
    assert "hunter2" not in line


def test_unreachable_server():
    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/postgres"
    line = failure_line(alembic_cli("upgrade", "head", url=url), 3)
    assert line.startswith("FAILED: Cannot connect to postgresql://postgres:***@127.0.0.1:")
    assert "/postgres (from DATABASE_URL): nothing listens there" in line
    assert "hunter2" not in line


@pytest.mark.parametrize(
    "url, code, start",
    [
        ("mysql://x@y/z", 2, "FAILED: DATABASE_URL is malformed"),
        (None, 3, "FAILED: Cannot connect to postgresql://u@127.0.0.1:"),
    ],
)
def test_chatdb_up_with_a_bad_database_url(url, code, start):
    result = chatdb_run("up", url=url or f"postgresql://u@127.0.0.1:{free_port()}/db")
    assert result.returncode == code
    assert result.stdout.splitlines()[-1].startswith(start)
    assert "Traceback" not in result.stdout + result.stderr
