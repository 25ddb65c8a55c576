"""Issue 3 (4, 5): each way a deploy can fail to reach or use the database, provoked for
real, prints one sentence (FAILED: ...), no traceback, exits with the code of its
kind (docs/failures.md) and changes nothing.

Password and SSL failures need a server that asks for them: this module starts its own
cluster (the shared ones trust every local connection), with a self-signed certificate,
``ssl = on`` and a pg_hba.conf of one line: SSL only, scram-sha-256 passwords. The
passwords are random, made in memory, never written to a file.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from chatdb.database import connect_args
from chatdb.local.server import Cluster, free_port, give_to_server_user
from tests.deploying import dump
from tests.pg import alembic_cli
from tests.test_bad_input import failure_line

DBNAME = "chat"
HBA = "hostssl all all 127.0.0.1/32 scram-sha-256\n"


@dataclass(frozen=True)
class LockedDown:
    """The module's cluster: SSL required, passwords required."""

    host: str
    port: int
    password: str
    deployer_password: str

    def url(
        self,
        user: str = "postgres",
        password: str | None = None,
        *,
        dbname: str = DBNAME,
        sslmode: str = "require",
    ) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}?sslmode={sslmode}"

    @property
    def admin_url(self) -> str:
        return self.url(password=self.password)


def _self_signed_certificate(datadir: Path) -> None:
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(datadir / "server.key"),
            "-out",
            str(datadir / "server.crt"),
        ],
        check=True,
        capture_output=True,
    )
    (datadir / "server.key").chmod(0o600)
    for name in ("server.key", "server.crt"):
        give_to_server_user(datadir / name)


@pytest.fixture(scope="module")
def locked_down() -> Iterator[LockedDown]:
    cluster = Cluster.in_new_folder("chatdb-test-locked-")
    _self_signed_certificate(cluster.datadir)
    cluster.start(fsync=False)
    server = LockedDown(
        cluster.host, cluster.port, secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    )
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:  # trust, for now
            conn.execute(f"ALTER ROLE postgres PASSWORD '{server.password}'")
            conn.execute(f"CREATE ROLE deployer LOGIN PASSWORD '{server.deployer_password}'")
            conn.execute(f"CREATE DATABASE {DBNAME}")
            conn.execute("ALTER SYSTEM SET ssl = on")
            (cluster.datadir / "pg_hba.conf").write_text(HBA)
            conn.execute("SELECT pg_reload_conf()")
        with psycopg.connect(server.admin_url) as conn:  # the new rules are in force
            assert conn.execute(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone() == (True,)
        yield server
    finally:
        cluster.discard()


def refused(*args: str, url: str) -> str:
    """Run ``alembic upgrade head``; return its one FAILED line."""
    return failure_line(alembic_cli(*args, "upgrade", "head", url=url, timeout=60))


def test_connection_refused():
    port = free_port()
    assert refused(url=f"postgresql://postgres@127.0.0.1:{port}/postgres") == (
        f"FAILED: Cannot connect to postgresql://postgres@127.0.0.1:{port}/postgres "
        "(from DATABASE_URL): nothing listens there; check host and port, or start the server (connection to server "
        f'at "127.0.0.1", port {port} failed: Connection refused); nothing was changed.'
    )


def test_unknown_host():
    line = refused(url="postgresql://postgres@chatdb-nowhere.invalid:5432/postgres")
    assert line.startswith(
        "FAILED: Cannot connect to postgresql://postgres@chatdb-nowhere.invalid:5432/"
        "postgres (from DATABASE_URL): the host name is unknown; check the host in DATABASE_URL (could not "
        'translate host name "chatdb-nowhere.invalid" to address:'
    )


def test_wrong_password(locked_down):
    line = refused(url=locked_down.url("postgres", "not-the-password"))
    assert line == (
        f"FAILED: Cannot connect to postgresql://postgres:***@127.0.0.1:"
        f"{locked_down.port}/chat?sslmode=require (from DATABASE_URL): the password was refused; check the "
        f'credentials (connection to server at "127.0.0.1", port {locked_down.port} failed: '
        'FATAL:  password authentication failed for user "postgres"); nothing was changed.'
    )


def test_no_password(locked_down):
    line = refused(url=locked_down.url("postgres"))
    assert "the server wants a password; put it in DATABASE_URL (" in line


def test_missing_database(server):
    url = f"postgresql://postgres@{server.host}:{server.port}/chatdb_no_such_db"
    assert refused(url=url) == (
        f"FAILED: Cannot connect to postgresql://postgres@{server.host}:{server.port}/"
        "chatdb_no_such_db (from DATABASE_URL): the database does not exist; check its name at the end of "
        f'DATABASE_URL (Supabase\'s is postgres) (connection to server at "{server.host}", '
        f'port {server.port} failed: FATAL:  database "chatdb_no_such_db" does not exist); '
        "nothing was changed."
    )


def test_unknown_role(server):
    line = refused(url=f"postgresql://chatdb_no_such_role@{server.host}:{server.port}/postgres")
    assert "the role does not exist; check the user name in DATABASE_URL (" in line


def test_server_requiring_ssl(locked_down):
    line = refused(url=locked_down.url("postgres", locked_down.password, sslmode="disable"))
    assert line.startswith(
        f"FAILED: Cannot connect to postgresql://postgres:***@127.0.0.1:"
        f"{locked_down.port}/chat?sslmode=disable (from DATABASE_URL): the server accepts only SSL connections; "
        "remove sslmode=disable from DATABASE_URL (or set sslmode=require) ("
    )
    assert line.endswith('database "chat", no encryption); nothing was changed.')
    assert locked_down.password not in line


def test_ssl_required_by_the_url_but_not_offered(server):
    url = f"postgresql://postgres@{server.host}:{server.port}/postgres?sslmode=require"
    line = refused(url=url)
    assert "DATABASE_URL requires SSL (sslmode=require) but the server does not offer it" in line


def test_insufficient_privilege(locked_down):
    """deployer may log in but not create in schema public (PostgreSQL 15's default)."""
    url = locked_down.url("deployer", locked_down.deployer_password)
    before = dump(locked_down.admin_url)
    line = refused(url=url)
    assert line.startswith(
        "FAILED: The migration run failed: permission denied for schema public (statement: "
        "CREATE TABLE alembic_version ("
    )
    assert line.endswith(
        "the run was rolled back and the database is as it was: connect as a role that may "
        "create in schema public and owns the chat tables (postgres on Supabase), or grant "
        "the missing privilege."
    )
    assert dump(locked_down.admin_url) == before


def test_a_server_that_never_answers_times_out():
    """A listening socket that accepts and stays silent: without connect_timeout the
    deploy would hang for ever (the subprocess timeout would fail the test). The test
    sets connect_timeout=1 in DATABASE_URL, which the run keeps, instead of waiting out
    the default of 10 s (next test)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres?connect_timeout=1"
        line = refused(url=url)
    assert line.startswith(
        f"FAILED: Cannot connect to {url} "
        "(from DATABASE_URL): the server did not answer in time; check the address and firewall ("
    )


def test_connect_timeout_is_10_seconds_unless_database_url_sets_it():
    assert connect_args(make_url("postgresql://u@h/db"))["connect_timeout"] == 10
    assert "connect_timeout" not in connect_args(make_url("postgresql://u@h/db?connect_timeout=3"))


def test_transaction_pooler_port_is_refused_before_connecting():
    line = refused(url="postgresql://postgres.ref:secret@127.0.0.1:6543/postgres")
    assert line == (
        "FAILED: DATABASE_URL (postgresql://postgres.ref:***@127.0.0.1:6543/postgres) uses port "
        "6543, Supabase's transaction-mode pooler, where the migration lock, SET "
        "lock_timeout/statement_timeout and LISTEN/NOTIFY do not survive from one transaction "
        "to the next; nothing was changed: use the direct connection "
        "(db.<project>.supabase.co:5432) or the session pooler (port 5432), or pass "
        "-x allow_transaction_pooler=true if port 6543 is not a transaction pooler."
    )


def test_transaction_pooler_override_lets_the_run_connect():
    """With the override the run goes on to connect (whatever answers on 6543 here)."""
    line = refused(
        "-x",
        "allow_transaction_pooler=true",
        url="postgresql://postgres@127.0.0.1:6543/chatdb_no_such_db",
    )
    assert line.startswith("FAILED: Cannot connect to postgresql://postgres@127.0.0.1:6543")


def test_no_traceback_unless_raiseerr():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    verbose = alembic_cli("--raiseerr", "upgrade", "head", url=url)
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "chatdb.failures.CannotConnect: Cannot connect to" in verbose.stderr


def test_a_bad_option_stops_the_run_before_it_connects(head_db):
    before = dump(head_db.url)
    assert refused("-x", "lock_timeout=5", url=head_db.url) == (
        "FAILED: -x lock_timeout='5' is not a duration: write it with a unit, e.g. 5s, 500ms "
        "or 2min (0 means no limit)."
    )
    assert refused("-x", "lock_retries=many", url=head_db.url) == (
        "FAILED: -x lock_retries='many' is not a whole number (0 or more)."
    )
    assert dump(head_db.url) == before
