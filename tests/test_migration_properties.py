"""The standard migration properties (those pytest-alembic checks), on plain PostgreSQL and
on a database prepared like Supabase: a single head, upgrade from an empty database, up
and down one revision at a time through the whole history, and models that match what
the migrations build.

Written with Alembic's own API rather than pytest-alembic: pytest-alembic 0.13.1 breaks
the collection of the whole suite under pytest 9 (its collector sets a node id attribute
pytest 9 no longer has, even without --test-alembic). Its runner hands env.py an Engine,
which env.py accepts (tests/test_embedding.py), so a team on a pytest it supports can
point pytest-alembic at this project.
"""

from __future__ import annotations

import io

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from chatdb.project import alembic_config
from chatdb.schema import autogen
from tests import catalog
from tests.pg import BREAKS_THE_DELIVERY_INSERT, database_url, migrate


def history() -> list[str]:
    """Revision ids from the first to the head."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(scripts.walk_revisions()))]


def test_single_head_and_a_linear_numbered_history():
    """One base, one head, no branch or merge. Ids: a replica of a hand-run SQL file has
    the file's number (3 digits), in the files' order; any other revision is ``c`` + 3
    digits, in its own order (autogen.next_revision_id)."""
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1
    assert len(scripts.get_bases()) == 1
    for rev in scripts.walk_revisions():
        assert not rev.is_merge_point and not rev.is_branch_point, rev.revision
    ids = history()
    kinds = (autogen.REPLICA_ID, autogen.OWN_ID)
    assert all(any(kind.fullmatch(rev) for kind in kinds) for rev in ids), ids
    for kind in kinds:
        numbers = [int(rev[-3:]) for rev in ids if kind.fullmatch(rev)]
        assert numbers == sorted(set(numbers)), ids
    assert scripts.get_heads() == [ids[-1]]


@pytest.fixture(params=["empty_db", "supabase_db"])
def fresh_db(request):
    """An unmigrated database: plain PostgreSQL, and one prepared like Supabase."""
    return request.getfixturevalue(request.param)


def current(db) -> str | None:
    if db.scalar("SELECT to_regclass('public.alembic_version')") is None:
        return None
    return db.scalar("SELECT version_num FROM alembic_version")


def test_upgrade_from_empty_to_head(fresh_db):
    assert current(fresh_db) is None
    migrate(fresh_db.url, "head")
    assert current(fresh_db) == history()[-1]  # what it built: see the models test below


def test_upgrade_from_empty_to_008_is_the_spec(fresh_db):
    """Pins the SQL history: 000, 004 and 008 build docs/spec/chat-schema.md exactly."""
    migrate(fresh_db.url, "008")
    assert catalog.spec_differences(catalog.snapshot(fresh_db.conn)) == []


def state(db) -> dict:
    """The chat catalog, without the roles: they are cluster-wide, and whether 000's
    downgrade drops them depends on the other databases of the server (see 000)."""
    snapshot = catalog.snapshot(db.conn)
    del snapshot["roles"]
    return snapshot


def test_up_and_down_through_every_revision(fresh_db):
    """Each step lands on its revision, and a downgrade gives back exactly the catalog
    the revision below had built; after base, head comes back identical."""
    ids = history()
    states = {None: state(fresh_db)}
    for rev in ids:
        # A revision may widen access on purpose (a new policy, a grant), or break a call
        # of the backend as the SQL it replicates did (008: the delivery insert, until
        # c002): its operator accepts it with the option. Landing on each revision is what
        # this test is about.
        migrate(fresh_db.url, rev, x=["allow_wider_access=true", BREAKS_THE_DELIVERY_INSERT])
        assert current(fresh_db) == rev
        states[rev] = state(fresh_db)
    for below, rev in reversed(list(zip([None, *ids[:-1]], ids, strict=True))):
        # 049's downgrade puts 004's public policies back: wider access, on purpose; and a
        # downgrade takes away what the backend's calls use.
        migrate(
            fresh_db.url,
            below or "base",
            down=True,
            x=["allow_wider_access=true", "allow_breaking_calls=true"],
        )
        assert current(fresh_db) == below, f"downgrade of {rev}"
        assert state(fresh_db) == states[below], f"downgrade of {rev}"
    migrate(fresh_db.url, "head")
    assert state(fresh_db) == states[ids[-1]]


def test_models_match_what_the_migrations_build(fresh_db):
    migrate(fresh_db.url, "head")
    assert_models_match(fresh_db)


def assert_models_match(db) -> None:
    """``alembic check`` at the database: the models and declared objects are what it has."""
    config = alembic_config()
    config.attributes["configure_logger"] = False
    config.stdout = io.StringIO()
    with database_url(db.url):
        command.check(config)  # raises AutogenerateDiffsDetected on any difference
    assert "No new upgrade operations detected." in config.stdout.getvalue()
