"""Tools that embed Alembic hand env.py their database in ``config.attributes["connection"]``:
Alembic's cookbook passes a Connection, pytest-alembic passes an Engine. Both work.

With an Engine the run is a deploy like any other (it connects itself: migration lock,
timeouts, the reload NOTIFY at commit), so a team that tests with pytest-alembic tests
the deploy it runs. Before this, an Engine failed with "'connection' argument to
configure() is expected to be a sqlalchemy.engine.Connection instance, got Engine".
"""

from __future__ import annotations

import psycopg
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from chatdb.project import alembic_config


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def engine_of(url: str, driver: str = "psycopg2"):
    return create_engine(url.replace("postgresql://", f"postgresql+{driver}://"),
                         poolclass=pool.NullPool)  # fmt: skip


def test_an_engine_in_the_attributes_is_migrated_as_a_deploy(empty_db):
    """pytest-alembic's convention: an Engine. The upgrade reaches head, and it ran as a
    deploy: PostgREST's reload NOTIFY arrives once, at commit (a listener sees it)."""
    engine = engine_of(empty_db.url, driver="psycopg")  # pytest-alembic's own driver, say
    listener = psycopg.connect(empty_db.url, autocommit=True)
    listener.execute("LISTEN pgrst")
    config = alembic_config(x_args=["allow_breaking_calls=true"])  # the downgrade: rider_id
    config.attributes["connection"] = engine
    try:
        command.upgrade(config, "head")
        command.downgrade(config, "-1")
    finally:
        engine.dispose()
    notified = [n.payload for n in listener.notifies(timeout=1, stop_after=2)]
    listener.close()
    assert notified == ["reload schema", "reload schema"], (
        "an upgrade and a downgrade through an Engine each send one reload NOTIFY"
    )
    previous = ScriptDirectory.from_config(alembic_config()).get_revision(head()).down_revision
    assert empty_db.scalar("SELECT version_num FROM alembic_version") == previous


def test_a_connection_in_the_attributes_is_used_as_it_is(empty_db):
    """Alembic's cookbook: a Connection. The run uses that very session (no connection of
    its own, so a caller's session settings apply) and commits its work."""
    engine = engine_of(empty_db.url)
    config = alembic_config()
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET application_name = 'embedding caller'")
            connection.commit()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            sessions = empty_db.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'chatdb%'"
            )
    finally:
        engine.dispose()
    assert sessions == 0, "with a Connection, the run opens no session of its own"
    assert empty_db.scalar("SELECT version_num FROM alembic_version") == head()
