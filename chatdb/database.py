"""Which database a command works on, and connecting to it: shared by every command.

A :class:`Target` is a URL and where it came from (DATABASE_URL, or the project's
local cluster in .chatdb/), so that every line naming a database says which one it
is and why. A command that cannot reach the server fails after 10 s instead of
hanging, names itself in pg_stat_activity, and turns a failure to connect into one
sentence (:mod:`chatdb.failures`, exit code 3) with the password masked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import OperationalError

from chatdb.failures import BadInput, CannotConnect, connection_failure
from chatdb.local import throwaway as local
from chatdb.local.server import Cluster
from chatdb.urls import ENV_VAR, database_url_from_env, mask_url, parse_database_url

APPLICATION_NAME = "chatdb migrate"
FROM_ENV = "from DATABASE_URL"
LOCAL = "the local cluster in .chatdb/"
EXPORT_HINT = f"export {ENV_VAR}=postgresql://user:password@host:5432/postgres"


@dataclass(frozen=True)
class Target:
    """The database a command works on: its URL, where that came from, and the local
    cluster when the URL is the one recorded in .chatdb/."""

    url: URL
    source: str
    cluster: Cluster | None = None

    @property
    def shown(self) -> str:
        """The URL as the user writes it, password masked, and where it came from."""
        return f"{mask_url(self.url.set(drivername='postgresql'))} ({self.source})"


def is_the_local_cluster(url: URL, cluster: Cluster | None) -> bool:
    """True when ``url`` names the recorded local cluster's database."""
    if cluster is None:
        return False
    mine = parse_database_url(cluster.url(local.DBNAME))
    return (url.host, url.port, url.username, url.database) == (
        mine.host,
        mine.port,
        mine.username,
        mine.database,
    )


def recorded_cluster() -> Cluster | None:
    """The local cluster recorded in .chatdb/, if its data is there."""
    cluster = local.load()
    return cluster if cluster is not None and cluster.exists() else None


def from_env(environ: Mapping[str, str] | None = None) -> Target:
    """DATABASE_URL (a BadInput when it is missing or malformed); when it names the
    recorded local cluster, the target says so and knows the cluster."""
    url = database_url_from_env(environ)
    cluster = recorded_cluster()
    if is_the_local_cluster(url, cluster):
        return Target(url, f"{FROM_ENV}: {LOCAL}", cluster)
    return Target(url, FROM_ENV)


def engine_target(engine: Engine) -> Target:
    """The database of an Engine an embedding tool passes (pytest-alembic)."""
    url = engine.url.set(drivername="postgresql+psycopg2")  # the driver the runtime reads
    return Target(url, "from the Engine in config.attributes['connection']")


def local_target(cluster: Cluster) -> Target:
    return Target(parse_database_url(cluster.url(local.DBNAME)), LOCAL, cluster)


def for_inspection(environ: Mapping[str, str] | None = None) -> Target:
    """For the commands that only look (drift, access, plan, calls check): DATABASE_URL if
    set, else the running local cluster; a BadInput saying how to get one otherwise."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, "").strip():
        return from_env(environ)
    cluster = recorded_cluster()
    if cluster is None:
        raise BadInput(
            f"{ENV_VAR} is not set and no local cluster is recorded in .chatdb/: {EXPORT_HINT} "
            "for a real database, or run `./dev up` to make the local one."
        )
    if not cluster.is_running():
        raise BadInput(
            f"{ENV_VAR} is not set and {LOCAL} is stopped: `./dev up` starts it "
            f"(or {EXPORT_HINT} for a real database)."
        )
    return local_target(cluster)


def connect_args(url: URL, application_name: str = APPLICATION_NAME) -> dict[str, Any]:
    """psycopg2 options unless DATABASE_URL sets them: a command that cannot reach the
    server fails after 10 s instead of hanging, and names itself in pg_stat_activity."""
    defaults = {"connect_timeout": 10, "application_name": application_name}
    return {key: value for key, value in defaults.items() if key not in url.query}


@contextmanager
def connected(target: Target, application_name: str = APPLICATION_NAME) -> Iterator[Connection]:
    """A connection to ``target``; a failure to connect is a CannotConnect of one sentence."""
    url = target.url
    engine = create_engine(
        url, poolclass=pool.NullPool, connect_args=connect_args(url, application_name)
    )
    try:
        try:
            connection = engine.connect()
        except OperationalError as exc:
            sentence = connection_failure(target.shown, exc, local=target.cluster is not None)
            raise CannotConnect(sentence) from None
        with connection:
            yield connection
    finally:
        engine.dispose()


@contextmanager
def read_only(application_name: str) -> Iterator[tuple[Connection, str]]:
    """For the commands that only look (chatdb access, chatdb drift): a connection to
    :func:`for_inspection`'s database whose every transaction is READ ONLY, so
    PostgreSQL itself refuses any write, rolled back at the end; with the database as
    printable (password masked, and where it came from)."""
    target = for_inspection()
    with connected(target, application_name) as connection:
        readonly = connection.execution_options(postgresql_readonly=True)
        try:
            yield readonly, target.shown
        finally:
            readonly.rollback()
