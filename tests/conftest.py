"""Fixtures: real PostgreSQL servers started by the test run, template databases.

Two throwaway clusters are started with the installed server binaries (as an
unprivileged user when the run is root, see chatdb.local.server):
- ``server``: plain PostgreSQL, where revision 000 provides 004's prerequisites;
- ``supabase_server``: a cluster prepared like a Supabase project
  (tests/sql/supabase_like.sql), so that roles, which are cluster-wide, exist
  before any migration runs, as they do on Supabase.

Every database fixture is a fresh clone of a template that pytest-postgresql fills
once per session (its ``load=`` callables), so each test starts from a migrated
database without re-running every migration.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_postgresql import factories

from chatdb.local.server import Cluster
from tests.fixtures import (  # noqa: F401  (fixtures: pytest finds them through this import)
    _at_008,
    _shape_a,
    _shape_b,
    _shape_c,
    _shape_d,
    _supabase_at_008,
    any_shape_db,
    at_008_db,
    local_copy,
    project_copy,
    project_with_a_revision,
    shape_a_db,
    shape_b_db,
    shape_c_db,
    shape_d_db,
    shape_template,
    supabase_at_008_db,
)
from tests.pg import Database, Server, database_of, loader, migrate, run_sql_file


def _start_cluster(name: str) -> Iterator[Server]:
    cluster = Cluster.in_new_folder(f"chatdb-test-{name}-")
    cluster.start(fsync=False)
    try:
        yield Server(host=cluster.host, port=cluster.port)
    finally:
        cluster.discard()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    yield from _start_cluster("plain")


@pytest.fixture(scope="session")
def supabase_server() -> Iterator[Server]:
    yield from _start_cluster("supabase")


def prepare_like_supabase(url: str) -> None:
    run_sql_file(url, "supabase_like.sql")


def adopt_hand_run_004(url: str) -> None:
    """The hand-run SQL of 004, as production ran it, before Alembic ever saw the db."""
    run_sql_file(url, "original_004_chat_system.sql")


def to_head(url: str) -> None:
    migrate(url, "head")


def to_004(url: str) -> None:
    migrate(url, "004")


# Templates, filled once per session.
empty_proc = factories.postgresql_noproc(dbname="t_empty", depends_on="server")
head_proc = factories.postgresql_noproc(
    dbname="t_head", depends_on="server", load=[loader(to_head)]
)
at_004_proc = factories.postgresql_noproc(
    dbname="t_004", depends_on="server", load=[loader(to_004)]
)
supabase_proc = factories.postgresql_noproc(
    dbname="t_supabase", depends_on="supabase_server", load=[loader(prepare_like_supabase)]
)
supabase_head_proc = factories.postgresql_noproc(
    dbname="t_supabase_head",
    depends_on="supabase_server",
    load=[loader(prepare_like_supabase, to_head)],
)
hand_run_proc = factories.postgresql_noproc(
    dbname="t_hand_run",
    depends_on="supabase_server",
    load=[loader(prepare_like_supabase, adopt_hand_run_004)],
)
at_008_proc = factories.postgresql_noproc(
    dbname="t_008", depends_on="server", load=[loader(lambda url: migrate(url, "008"))]
)
supabase_at_008_proc = factories.postgresql_noproc(
    dbname="t_supabase_008",
    depends_on="supabase_server",
    load=[loader(prepare_like_supabase, lambda url: migrate(url, "008"))],
)
# The four shapes of a database to take over; their fixtures are in tests/fixtures.py.
shape_a_proc = shape_template("a")
shape_b_proc = shape_template("b")
shape_c_proc = shape_template("c")
shape_d_proc = shape_template("d")

# One fresh clone per test.
_empty = factories.postgresql("empty_proc")
_head = factories.postgresql("head_proc")
_at_004 = factories.postgresql("at_004_proc")
_supabase = factories.postgresql("supabase_proc")
_supabase_head = factories.postgresql("supabase_head_proc")
_hand_run = factories.postgresql("hand_run_proc")


@pytest.fixture
def empty_db(_empty) -> Database:
    """A plain PostgreSQL database with nothing in it."""
    return database_of(_empty)


@pytest.fixture
def head_db(_head) -> Database:
    """Plain PostgreSQL migrated to head."""
    return database_of(_head)


@pytest.fixture
def db_at_004(_at_004) -> Database:
    """Plain PostgreSQL migrated to 004 (before the customer_id repair)."""
    return database_of(_at_004)


@pytest.fixture
def supabase_db(_supabase) -> Database:
    """Prepared like a Supabase project, not migrated."""
    return database_of(_supabase)


@pytest.fixture
def supabase_head_db(_supabase_head) -> Database:
    """Prepared like a Supabase project, migrated to head."""
    return database_of(_supabase_head)


@pytest.fixture
def hand_run_db(_hand_run) -> Database:
    """Prepared like a Supabase project where 004's SQL was run by hand (no Alembic)."""
    return database_of(_hand_run)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is a failure of ours: turn a green run with skips red."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"FAILED: {len(skipped)} test(s) skipped; skips are not allowed here")
        session.exitstatus = 1
