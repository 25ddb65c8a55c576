"""Issue 2 (i): bad input gets one clear line and a non-zero exit, from alembic and chatdb."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatdb.local.server import free_port
from tests.pg import ROOT, alembic_cli

CHATDB = str(Path(sys.executable).with_name("chatdb"))


def failure_line(result: subprocess.CompletedProcess) -> str:
    """The one line Alembic prints for a CommandError (stdout), with no traceback anywhere."""
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return lines[0]


def test_no_database_url():
    line = failure_line(alembic_cli("upgrade", "head"))
    assert line.startswith("FAILED: DATABASE_URL is not set")
    assert "chatdb up" in line


def test_malformed_database_url():
    line = failure_line(alembic_cli("upgrade", "head", url="mysql://root:hunter2@db/chat"))
    assert line.startswith("FAILED: DATABASE_URL is malformed")
    assert "hunter2" not in line


def test_unreachable_server():
    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/postgres"
    line = failure_line(alembic_cli("upgrade", "head", url=url))
    assert line.startswith("FAILED: Cannot connect to postgresql+psycopg2://postgres:***@127.0.0.1")
    assert "hunter2" not in line


@pytest.mark.parametrize(
    "url, start",
    [("mysql://x@y/z", "chatdb: DATABASE_URL is malformed"), (None, "chatdb: Cannot connect")],
)
def test_chatdb_up_with_a_bad_database_url(url, start):
    env = dict(os.environ, DATABASE_URL=url or f"postgresql://u@127.0.0.1:{free_port()}/db")
    result = subprocess.run(
        [CHATDB, "up"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(start)
    assert result.stdout == ""
