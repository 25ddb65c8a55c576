"""Test-side helpers: URLs of test databases, running Alembic in-process or as the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from alembic import command

from chatdb.project import alembic_config
from tests import warm

ROOT = Path(__file__).resolve().parents[1]
SQL_DIR = Path(__file__).resolve().parent / "sql"
ALEMBIC = str(Path(sys.executable).with_name("alembic"))
# 008 makes customer_id NOT NULL, which the backend's delivery path never sends: a run to
# 008 from a table without customer_id (or with NULLs the run fills) breaks that insert
# (23502), as the hand-run 008 did in production, until c002. The calls guard refuses
# a run that breaks a call unless told (chatdb.deploy.calls_guard); the tests that
# replicate 008 on such tables say so with this option.
BREAKS_THE_DELIVERY_INSERT = "allow_breaking_calls=true"


@dataclass(frozen=True)
class Server:
    """What pytest-postgresql's noproc factory reads from the fixture it depends on."""

    host: str
    port: int
    user: str = "postgres"
    password: str | None = None
    options: str = ""
    maintenance_dbname: str = "postgres"
    template_dbname: None = None

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"


@dataclass
class Database:
    """A test database: its URL and an autocommit psycopg connection to it."""

    url: str
    conn: psycopg.Connection

    def scalar(self, sql: str, params: tuple | None = None):
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def rows(self, sql: str, params: tuple | None = None) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()


def database_of(conn: psycopg.Connection) -> Database:
    """Wrap pytest-postgresql's connection: autocommit, so a test never holds locks."""
    conn.autocommit = True
    info = conn.info
    return Database(
        url=f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}", conn=conn
    )


def run_sql_file(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((SQL_DIR / name).read_text())


@contextmanager
def database_url(url: str) -> Iterator[None]:
    """Set DATABASE_URL for an in-process Alembic command, then put it back."""
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        yield
    finally:
        if previous is None:
            del os.environ["DATABASE_URL"]
        else:
            os.environ["DATABASE_URL"] = previous


def revision_ids() -> list[str]:
    """The project's revision ids, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(scripts.walk_revisions()))]


def migrate(url: str, target: str = "head", *, x: list[str] | None = None, down: bool = False):
    """Run ``alembic upgrade/downgrade`` in-process; returns the Alembic Config used."""
    config = alembic_config(x_args=x)
    config.attributes["configure_logger"] = False
    with database_url(url):
        (command.downgrade if down else command.upgrade)(config, target)
    return config


def alembic_cli(
    *args: str, url: str | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the real ``alembic`` command line in the project root, as a deploy would."""
    return warm.run(
        [ALEMBIC, *args], cwd=ROOT, env=command_env(url, **(env or {})), timeout=timeout
    )


def command_env(url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a project command a test runs: this process's, without its
    DATABASE_URL and PGRST_DB_CHANNEL; then ``url`` as DATABASE_URL, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PGRST_DB_CHANNEL")}
    if url is not None:
        env["DATABASE_URL"] = url
    env.update(extra)
    return env


def copy_project(folder: Path, *more: str) -> Path:
    """The project's Alembic files and models (and ``more`` of its files or folders,
    paths relative to the root) copied into ``folder``, for a test that edits them or
    keeps state beside them."""
    for name in ("alembic.ini", "alembic", "models", *more):
        source, target = ROOT / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(
                source,
                target,
                ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".ruff_cache"),
                dirs_exist_ok=True,
            )
        else:
            shutil.copy(source, target)
    return folder


def loader(*steps):
    """A pytest-postgresql ``load`` callable that runs ``steps(url)`` on the template."""

    def load(host: str, port: int, user: str, dbname: str, password: str | None = None, **_):
        url = f"postgresql://{user}@{host}:{port}/{dbname}"
        for step in steps:
            step(url)

    return load


class Listener:
    """A connection LISTENing on a channel, standing in for PostgREST."""

    def __init__(self, url: str, channel: str = "pgrst") -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f'LISTEN "{channel}"')

    def received(self, wait: float = 0.5) -> list[tuple[str, str]]:
        """Every (channel, payload) delivered so far, waiting ``wait`` seconds for more."""
        return [(n.channel, n.payload) for n in self.conn.notifies(timeout=wait)]

    def close(self) -> None:
        self.conn.close()


@contextmanager
def listening(url: str, channel: str = "pgrst") -> Iterator[Listener]:
    listener = Listener(url, channel)
    try:
        yield listener
    finally:
        listener.close()
