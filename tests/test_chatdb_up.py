"""Issue 2 (6): `chatdb up` starts or reuses a local cluster, migrates it, says what it did."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory

from chatdb.project import alembic_config
from tests.pg import ROOT

CHATDB = str(Path(sys.executable).with_name("chatdb"))


@pytest.fixture
def project_copy(tmp_path):
    """The project's migration files in a folder of their own, so .chatdb/ lands there."""
    for name in ("alembic", "models"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    yield tmp_path
    subprocess.run([CHATDB, "down", "--delete"], cwd=tmp_path, capture_output=True, check=False)


def chatdb(cwd: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url
    return subprocess.run(
        [CHATDB, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_up_migrates_a_local_cluster_then_reuses_it(project_copy):
    first = chatdb(project_copy, "up")
    assert first.returncode == 0, first.stderr
    url = re.search(r"Database: (\S+)", first.stdout).group(1)
    scripts = ScriptDirectory.from_config(alembic_config())
    every = [rev.revision for rev in reversed(list(scripts.walk_revisions()))]
    assert f"Applied revisions: {', '.join(every)}" in first.stdout
    drift = chatdb(project_copy, "drift", url=url)  # head is what the models say
    assert drift.returncode == 0, drift.stdout + drift.stderr

    again = chatdb(project_copy, "up")
    assert again.returncode == 0, again.stderr
    assert f"Database: {url}" in again.stdout
    assert "Applied revisions: none (already at head)" in again.stdout

    down = chatdb(project_copy, "down")
    assert down.returncode == 0 and down.stdout.startswith("Stopped")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    restarted = chatdb(project_copy, "up")
    assert f"Database: {url}" in restarted.stdout
    assert "Applied revisions: none (already at head)" in restarted.stdout


def test_state_lives_in_the_git_ignored_folder(project_copy):
    assert chatdb(project_copy, "up").returncode == 0
    assert (project_copy / ".chatdb" / "cluster.json").is_file()
    assert (project_copy / ".chatdb" / "pgdata" / "PG_VERSION").exists()
    assert ".chatdb/" in (ROOT / ".gitignore").read_text().splitlines()
