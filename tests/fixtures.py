"""Database fixtures beyond conftest.py's own: the four shapes, and revision 008.

The templates are registered in conftest.py, beside the others: ``shape_a_proc`` ...
``shape_d_proc`` (``shape_template``: on the Supabase-like cluster, built by
tests.shapes.template), ``at_008_proc`` (the plain cluster, migrated to 008) and
``supabase_at_008_proc`` (the Supabase-like cluster, migrated to 008). conftest.py imports
this module's fixtures, so every test can ask for them by name. Each fixture is a fresh
clone of its template.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import pytest
from pytest_postgresql import factories

from tests import shapes
from tests.convergence import chatdb_run
from tests.pg import Database, copy_project, database_of
from tests.shapes import SHAPES


def shape_template(shape: str):
    """The pytest-postgresql template of one shape, on the Supabase-like cluster."""
    return factories.postgresql_noproc(
        dbname=f"t_shape_{shape}", depends_on="supabase_server", load=[shapes.template(shape)]
    )


_shape_a = factories.postgresql("shape_a_proc")
_shape_b = factories.postgresql("shape_b_proc")
_shape_c = factories.postgresql("shape_c_proc")
_shape_d = factories.postgresql("shape_d_proc")
_at_008 = factories.postgresql("at_008_proc")
_supabase_at_008 = factories.postgresql("supabase_at_008_proc")


@dataclass
class ShapeDatabase(Database):
    """A database in one of the shapes of tests.shapes: ``shape`` is "a", "b", "c" or "d"."""

    shape: str = ""


def _shaped(shape: str, conn: psycopg.Connection) -> ShapeDatabase:
    db = database_of(conn)
    return ShapeDatabase(url=db.url, conn=db.conn, shape=shape)


@pytest.fixture
def shape_a_db(_shape_a) -> ShapeDatabase:
    """Prepared like Supabase, 004 and 008 run by hand, with rows."""
    return _shaped("a", _shape_a)


@pytest.fixture
def shape_b_db(_shape_b) -> ShapeDatabase:
    """Prepared like Supabase, the older script's tables, with rows."""
    return _shaped("b", _shape_b)


@pytest.fixture
def shape_c_db(_shape_c) -> ShapeDatabase:
    """Prepared like Supabase, (a) then 009, 010, 012, 013 and 049's chat part, with rows."""
    return _shaped("c", _shape_c)


@pytest.fixture
def shape_d_db(_shape_d) -> ShapeDatabase:
    """Prepared like Supabase, 014's FIX A then 049's chat part, with rows."""
    return _shaped("d", _shape_d)


@pytest.fixture(params=SHAPES, ids=[f"shape_{shape}" for shape in SHAPES])
def any_shape_db(request) -> ShapeDatabase:
    """Each of the four shapes in turn."""
    return request.getfixturevalue(f"shape_{request.param}_db")


@pytest.fixture
def at_008_db(_at_008) -> Database:
    """Plain PostgreSQL migrated to revision 008 (the head before the revisions after 008)."""
    return database_of(_at_008)


@pytest.fixture
def supabase_at_008_db(_supabase_at_008) -> Database:
    """Prepared like a Supabase project, migrated to revision 008 (004's policies, as
    production had them before 049)."""
    return database_of(_supabase_at_008)


@pytest.fixture
def project_with_a_revision(tmp_path):
    """A copy of the project's Alembic files, models and calls file, to add a revision
    to (tests.deploying.add_revision)."""
    return copy_project(tmp_path, "pyproject.toml", "calls")


@pytest.fixture
def project_copy(tmp_path):
    """The project's migration files in a folder of their own, so that `chatdb up` puts
    its local cluster (.chatdb/) there; the cluster is deleted afterwards."""
    yield copy_project(tmp_path)
    chatdb_run("down", "--delete", url=None, cwd=tmp_path)


@pytest.fixture
def local_copy(server):
    """A fresh, empty database on the plain cluster, standing in for another server (the
    local cluster of ./dev up in the takeover walkthrough, the pull request job's service
    container): the URL; the database is dropped afterwards."""
    name = f"takeover_{uuid.uuid4().hex[:8]}"
    maintenance = server.url("postgres")
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield server.url(name)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
