"""chatdb.local.server: finding the server binaries and running the server as a non-root user."""

import os
import subprocess
import sys
from pathlib import Path

from chatdb.local.server import as_server_user, bindir, server_user


def test_server_binaries_are_found():
    assert (bindir() / "pg_ctl").is_file()
    assert (bindir() / "initdb").is_file()


def test_server_binaries_are_found_without_them_on_the_path(tmp_path):
    """Debian's postgresql package puts neither pg_ctl nor pg_config on the PATH."""
    found = subprocess.run(
        [sys.executable, "-c", "from chatdb.local.server import bindir; print(bindir())"],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found) == bindir()


def test_root_runs_the_server_as_an_unprivileged_user():
    if os.geteuid() == 0:
        assert server_user() not in (None, "root")
        assert as_server_user(["pg_ctl"])[:2] == ["runuser", "-u"]
    else:
        assert server_user() is None
        assert as_server_user(["pg_ctl"]) == ["pg_ctl"]
