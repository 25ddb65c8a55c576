"""Issue 2 (6): `chatdb up` starts or reuses a local cluster, migrates it, says what it did."""

import re
from pathlib import Path

import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.convergence import chatdb_run
from tests.pg import ROOT


def revisions(project: Path) -> list[str]:
    """Every revision of the project, base first, as ``chatdb up`` applies them."""
    script = ScriptDirectory.from_config(Config(str(project / "alembic.ini")))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_up_migrates_a_local_cluster_then_reuses_it(project_copy):
    first = chatdb_run("up", url=None, cwd=project_copy)
    assert first.returncode == 0, first.stderr
    migrating, applied = first.stdout.splitlines()
    url = re.fullmatch(r"Migrating (\S+) \(the local cluster in \.chatdb/\)", migrating).group(1)
    assert applied == "Applied revisions: " + ", ".join(revisions(project_copy))
    # At head, whatever head is: the code and the database agree.
    drift = chatdb_run("drift", url=None, cwd=project_copy)
    assert drift.returncode == 0, drift.stdout + drift.stderr
    assert drift.stdout.startswith(f"No drift: {url} (the local cluster in .chatdb/) matches")

    again = chatdb_run("up", url=None, cwd=project_copy)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"Migrating {url} (the local cluster in .chatdb/)",
        "Applied revisions: none (already at head)",
    ]

    down = chatdb_run("down", url=None, cwd=project_copy)
    assert down.returncode == 0 and down.stdout.startswith("Stopped")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    restarted = chatdb_run("up", url=None, cwd=project_copy)
    assert restarted.stdout.splitlines() == again.stdout.splitlines()


def test_state_lives_in_the_git_ignored_folder(project_copy):
    assert chatdb_run("up", url=None, cwd=project_copy).returncode == 0
    assert (project_copy / ".chatdb" / "cluster.json").is_file()
    assert (project_copy / ".chatdb" / "pgdata" / "PG_VERSION").exists()
    assert ".chatdb/" in (ROOT / ".gitignore").read_text().splitlines()
