"""A local, throwaway PostgreSQL cluster run with the installed server binaries.

Used by ``chatdb up``/``chatdb down`` and by the test suite. PostgreSQL refuses to
run as root: when this process is root, the server runs as an unprivileged user
(``postgres`` if it exists, else ``nobody``; override with CHATDB_PG_USER) through
``runuser``, and its data directory is owned by that user. Authentication is
``trust`` on 127.0.0.1 only; no password is ever written anywhere.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chatdb.failures import CannotConnect

SERVER_USER_ENV = "CHATDB_PG_USER"
SUPERUSER = "postgres"


class LocalPgError(CannotConnect, RuntimeError):
    """The local cluster could not be created, started or stopped: no database to
    work on (exit code 3, like a server that cannot be reached)."""


def bindir() -> Path:
    """Folder of the server binaries: ``pg_config --bindir``, else where ``pg_ctl`` is on
    the PATH, else Debian's /usr/lib/postgresql/<newest>/bin (its postgresql package
    puts no pg_ctl on the PATH)."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if out.returncode == 0 and (candidate / "pg_ctl").exists():
            return candidate
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).resolve().parent
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    raise LocalPgError("PostgreSQL server binaries not found: install postgresql (pg_ctl)")


def server_user() -> str | None:
    """The user the server runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get(SERVER_USER_ENV), "postgres", "nobody"):
        if not name:
            continue
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise LocalPgError("running as root and no unprivileged user (postgres, nobody) exists")


def as_server_user(argv: list[str]) -> list[str]:
    """Prefix ``argv`` with ``runuser`` when the server must not run as us (root)."""
    user = server_user()
    return ["runuser", "-u", user, "--", *argv] if user else argv


def server_user_can_enter(path: Path) -> bool:
    """True when the server's user can traverse every folder down to ``path``."""
    user = server_user()
    if user is None:
        return True
    probe = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)], check=False)
    return probe.returncode == 0


def give_to_server_user(path: Path) -> None:
    """Make ``path`` (a folder we created) belong to the server's user."""
    user = server_user()
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise LocalPgError(f"{what} failed: {detail[-1] if detail else result.returncode}")
    return result.stdout


@dataclass
class Cluster:
    """One PostgreSQL cluster: a data directory and the port it listens on."""

    datadir: Path
    port: int
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    @property
    def logfile(self) -> Path:
        return self.datadir / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def exists(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb with trust authentication for local connections and superuser ``postgres``."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.datadir.chmod(0o700)
        give_to_server_user(self.datadir)
        _run(
            as_server_user(
                [
                    str(bindir() / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            ),
            "initdb",
        )

    def is_running(self) -> bool:
        status = subprocess.run(
            as_server_user([str(bindir() / "pg_ctl"), "status", "-D", str(self.datadir)]),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def start(self, *, fsync: bool = True) -> None:
        """Start the server on 127.0.0.1:port (no Unix socket) and wait until it accepts."""
        options = (
            f"-p {self.port} -c listen_addresses={self.host} -c unix_socket_directories=''"
            f" -c max_connections=200"
        )
        if not fsync:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run(
            as_server_user(
                [
                    str(bindir() / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.logfile),
                    "-o",
                    options,
                ]
            ),
            f"starting PostgreSQL (log: {self.logfile})",
        )

    def stop(self) -> None:
        if self.exists() and self.is_running():
            _run(
                as_server_user(
                    [str(bindir() / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.datadir)]
                ),
                "stopping PostgreSQL",
            )

    @classmethod
    def in_new_folder(cls, prefix: str) -> Cluster:
        """An initialised cluster (not started) in a new folder under the system temp
        directory that the server's user can enter: for the tests and the benchmark,
        which throw it away with :meth:`discard`."""
        base = Path(tempfile.mkdtemp(prefix=prefix))
        base.chmod(0o755)
        give_to_server_user(base)
        cluster = cls(datadir=base / "data", port=free_port())
        cluster.init()
        return cluster

    def discard(self) -> None:
        """Stop the server and delete the folder :meth:`in_new_folder` made."""
        self.stop()
        shutil.rmtree(self.datadir.parent, ignore_errors=True)

    def create_database(self, dbname: str) -> None:
        """CREATE DATABASE unless it exists (through psql-free psycopg2, autocommit)."""
        import psycopg2

        conn = psycopg2.connect(self.url("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            conn.close()
