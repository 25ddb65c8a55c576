"""Autogenerate: empty at head, exact operations for a change, and nothing outside the chat system.

Issue 2 (7g) and issue 5 (1-4, 6, 7). Changes are made to copies, never to the models
on disk: a MetaData copy / an edited ``models.DECLARED`` compared in-process through
``chatdb.schema.autogen.configure_options`` (exactly what env.py passes), or a copy of the
project in a temporary folder driven by the real ``alembic`` command line (the
walkthrough in README.md, "Changing the schema").
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    pool,
)
from sqlalchemy.dialects.postgresql import UUID

import models
from chatdb.project import alembic_config
from chatdb.schema import autogen
from models.entities import Declared
from tests.pg import ALEMBIC, ROOT, alembic_cli

BIN = Path(sys.executable).parent
# A policy of head to edit (chat_participants keeps 004's, which 049 left alone).
VIEW_PARTICIPANTS = "Anyone can view participants"
NOT_RIDER = "(user_type <> 'rider'::text)"


def revision_ids() -> list[str]:
    """The ids of the project's revisions, base first."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(scripts.walk_revisions()))]


def next_id(*also: str) -> str:
    """The id a new revision gets now (after ``also``, revisions written by the test)."""
    return autogen.next_revision_id([*revision_ids(), *also])


# --------------------------------------------------------------------------- helpers


def engine_for(url: str):
    return create_engine(
        url.replace("postgresql://", "postgresql+psycopg2://", 1), poolclass=pool.NullPool
    )


def models_copy() -> MetaData:
    """A copy of the models' MetaData (same naming convention) to edit in a test."""
    metadata = MetaData(naming_convention=models.Base.metadata.naming_convention)
    for table in models.Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    return metadata


def autogenerate(
    url: str,
    metadata: MetaData | None = None,
    declared: Declared | None = None,
    *,
    search_path: str | None = None,
):
    """What ``alembic revision --autogenerate`` would write, as a MigrationScript."""
    metadata = models.Base.metadata if metadata is None else metadata
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            if search_path is not None:
                connection.exec_driver_sql(f"SET search_path = {search_path}")
            context = MigrationContext.configure(
                connection,
                opts={"target_metadata": metadata, **autogen.configure_options(declared)},
            )
            script = produce_migrations(context, metadata)
            connection.rollback()
            return script
    finally:
        engine.dispose()


def diffs(script) -> list[tuple]:
    return script.upgrade_ops.as_diffs()


def object_ops(script) -> list[autogen.ObjectOp]:
    return [op for op in script.upgrade_ops.ops if isinstance(op, autogen.ObjectOp)]


def run_sql(db, statements: list[str]) -> None:
    for statement in statements:
        db.conn.execute(statement)


def apply(db, script) -> None:
    """Run the generated operations' SQL, as the revision would."""
    run_sql(db, [sql for op in object_ops(script) for sql in op.sql])


def undo(db, script) -> None:
    """Run the downgrade's SQL."""
    run_sql(db, [sql for op in script.downgrade_ops.ops for sql in op.sql])


def edited(declared: Declared = models.DECLARED, **changes) -> Declared:
    return dataclasses.replace(declared, **changes)


# --------------------------------------------------------------------------- at head


@pytest.fixture(params=["head_db", "supabase_head_db"])
def any_head_db(request):
    """At head on plain PostgreSQL, and on a database prepared like Supabase."""
    return request.getfixturevalue(request.param)


def test_autogenerate_at_head_yields_no_operation(any_head_db):
    script = autogenerate(any_head_db.url)
    assert diffs(script) == []
    assert script.upgrade_ops.is_empty()


def test_alembic_check_passes_at_head(any_head_db):
    result = alembic_cli("check", url=any_head_db.url)
    assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected." in result.stdout


def test_alembic_check_fails_when_the_database_drifted(head_db):
    head_db.conn.execute(f'ALTER POLICY "{VIEW_PARTICIPANTS}" ON chat_participants USING (false)')
    result = alembic_cli("check", url=head_db.url)
    assert result.returncode != 0
    assert result.stdout.startswith("FAILED: New upgrade operations detected")
    assert "('drop_policy', 'chat_participants', 'Anyone can view participants')" in result.stdout


def test_alembic_check_fails_when_an_index_differs_only_in_method_or_predicate(head_db):
    """Alembic compares an index's columns only; chatdb.schema.autogen compares the rest."""
    head_db.conn.execute(
        "DROP INDEX idx_chat_messages_metadata; DROP INDEX idx_chat_messages_media_url; "
        "CREATE INDEX idx_chat_messages_metadata ON chat_messages (metadata) "
        "WHERE metadata IS NOT NULL; "
        "CREATE INDEX idx_chat_messages_media_url ON chat_messages USING btree (media_url)"
    )
    script = autogenerate(head_db.url)
    assert [(d[0], d[1].name) for d in diffs(script)] == [
        ("remove_index", "idx_chat_messages_media_url"),
        ("add_index", "idx_chat_messages_media_url"),
        ("remove_index", "idx_chat_messages_metadata"),
        ("add_index", "idx_chat_messages_metadata"),
    ]
    code = render_python_code(script.upgrade_ops)
    assert "postgresql_using='gin'" in code
    assert "postgresql_where=sa.text('(metadata IS NOT NULL)')" in code
    assert "postgresql_where=sa.text('(media_url IS NOT NULL)')" in code
    result = alembic_cli("check", url=head_db.url)
    assert result.returncode != 0


def test_supabase_default_in_extensions_schema_is_the_models_default(supabase_head_db):
    """Without ``extensions`` on the search_path, uuid defaults read back qualified."""
    engine = engine_for(supabase_head_db.url)
    with engine.connect() as connection:
        connection.exec_driver_sql("SET search_path = public")
        shown = connection.exec_driver_sql(
            "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef "
            "WHERE adrelid = 'public.chat_messages'::regclass AND adnum = 1"
        ).scalar()
    engine.dispose()
    assert shown == "extensions.uuid_generate_v4()"
    assert diffs(autogenerate(supabase_head_db.url, search_path="public")) == []


# --------------------------------------------------------------------------- changes


def test_adding_a_column_autogenerates_exactly_that_add_column(head_db):
    metadata = models_copy()
    metadata.tables["chat_messages"].append_column(Column("edited_at", DateTime(timezone=True)))
    script = autogenerate(head_db.url, metadata)
    [(kind, schema, table, column)] = diffs(script)
    assert (kind, schema, table, column.name) == ("add_column", None, "chat_messages", "edited_at")
    code = render_python_code(script.upgrade_ops)
    assert "op.add_column('chat_messages', sa.Column('edited_at', " in code


def test_changing_a_policy_expression_autogenerates_its_replacement(head_db):
    policies = tuple(
        dataclasses.replace(p, using=NOT_RIDER) if p.name == VIEW_PARTICIPANTS else p
        for p in models.DECLARED.policies
    )
    declared = edited(policies=policies)
    script = autogenerate(head_db.url, declared=declared)
    assert diffs(script) == [
        ("drop_policy", "chat_participants", VIEW_PARTICIPANTS),
        ("add_policy", "chat_participants", VIEW_PARTICIPANTS),
    ]
    code = render_python_code(script.upgrade_ops)
    assert f'DROP POLICY "{VIEW_PARTICIPANTS}" ON public.chat_participants' in code
    assert (
        f'op.execute("""CREATE POLICY "{VIEW_PARTICIPANTS}" ON public.chat_participants '
        f'AS PERMISSIVE FOR SELECT TO public USING ({NOT_RIDER})""")'
    ) in code

    # The name with spaces round-trips: after the revision's SQL, nothing is left to do ...
    apply(head_db, script)
    assert (
        head_db.scalar("SELECT qual FROM pg_policies WHERE policyname = %s", (VIEW_PARTICIPANTS,))
        == NOT_RIDER
    )
    assert diffs(autogenerate(head_db.url, declared=declared)) == []
    # ... and the downgrade's SQL puts the original back.
    undo(head_db, script)
    assert diffs(autogenerate(head_db.url)) == []


def _without(objects, **match):
    kept = tuple(o for o in objects if not all(getattr(o, k) == v for k, v in match.items()))
    assert len(kept) == len(objects) - 1
    return kept


DELETIONS = {
    "policy": (
        lambda d: edited(d, policies=_without(d.policies, name=VIEW_PARTICIPANTS)),
        [("drop_policy", "chat_participants", VIEW_PARTICIPANTS)],
        ['DROP POLICY "Anyone can view participants" ON public.chat_participants'],
    ),
    "trigger": (
        lambda d: edited(
            d, triggers=_without(d.triggers, name="update_chat_conversations_updated_at")
        ),
        [("drop_trigger", "chat_conversations", "update_chat_conversations_updated_at")],
        ["DROP TRIGGER update_chat_conversations_updated_at ON public.chat_conversations"],
    ),
    "function and its trigger": (
        lambda d: edited(
            d,
            functions=_without(d.functions, name="update_conversation_on_message"),
            triggers=_without(d.triggers, name="update_conversation_on_message_trigger"),
        ),
        [
            ("drop_trigger", "chat_messages", "update_conversation_on_message_trigger"),
            ("drop_function", None, "update_conversation_on_message()"),
        ],
        [
            "DROP TRIGGER update_conversation_on_message_trigger ON public.chat_messages",
            "DROP FUNCTION public.update_conversation_on_message()",
        ],
    ),
    "grant": (
        lambda d: edited(d, grants=_without(d.grants, table="chat_messages", role="anon")),
        [("alter_grant", "chat_messages", "anon")],
        [
            (
                "REVOKE SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER "
                "ON public.chat_messages FROM anon"
            )
        ],
    ),
    "publication membership": (
        lambda d: edited(d, publication_tables=d.publication_tables - {"chat_participants"}),
        [("drop_publication", "chat_participants", "supabase_realtime")],
        ["ALTER PUBLICATION supabase_realtime DROP TABLE public.chat_participants"],
    ),
    "row level security": (
        lambda d: edited(d, row_level_security=d.row_level_security - {"chat_messages"}),
        [("alter_row_level_security", "chat_messages", "")],
        ["ALTER TABLE public.chat_messages DISABLE ROW LEVEL SECURITY"],
    ),
}


@pytest.mark.parametrize("what", DELETIONS)
def test_deleting_a_declared_object_autogenerates_its_drop(head_db, what):
    edit, expected_diffs, expected_sql = DELETIONS[what]
    declared = edit(models.DECLARED)
    script = autogenerate(head_db.url, declared=declared)
    assert diffs(script) == expected_diffs
    assert [sql for op in object_ops(script) for sql in op.sql] == expected_sql
    apply(head_db, script)
    assert diffs(autogenerate(head_db.url, declared=declared)) == []
    undo(head_db, script)
    assert diffs(autogenerate(head_db.url)) == []


def test_a_new_table_with_its_objects_is_created_in_dependency_order(head_db):
    """Table first, then row level security, policy, grants, publication; downgrade reverses."""
    metadata = models_copy()
    Table(
        "chat_reactions",
        metadata,
        Column("id", UUID, primary_key=True),
        Column("message_id", UUID, ForeignKey("chat_messages.id", ondelete="CASCADE")),
        Column("emoji", Text, nullable=False),
    )
    d = models.DECLARED
    declared = edited(
        d,
        policies=d.policies
        + (
            models.entities.Policy(
                "chat_reactions", "Anyone can react", "INSERT", with_check="true"
            ),
        ),
        grants=d.grants + (models.entities.Grant("chat_reactions", "anon", ("SELECT", "INSERT")),),
        row_level_security=d.row_level_security | {"chat_reactions"},
        publication_tables=d.publication_tables | {"chat_reactions"},
    )
    script = autogenerate(head_db.url, metadata, declared)
    assert [diff[0] for diff in diffs(script)] == [
        "add_table",
        "alter_row_level_security",
        "add_policy",
        "alter_grant",
        "alter_grant",
        "alter_grant",
        "add_publication",
    ]
    # Run it as a revision would (Alembic's create_table, then the objects' SQL).
    engine = engine_for(head_db.url)
    with engine.begin() as connection:
        metadata.tables["chat_reactions"].create(connection)
    engine.dispose()
    apply(head_db, script)
    assert diffs(autogenerate(head_db.url, metadata, declared)) == []
    grants = dict(
        head_db.rows(
            "SELECT grantee::regrole::text, array_agg(privilege_type ORDER BY privilege_type) "
            "FROM aclexplode((SELECT relacl FROM pg_class WHERE relname = 'chat_reactions')) "
            "GROUP BY 1"
        )
    )
    assert grants["anon"] == ["INSERT", "SELECT"]
    assert "authenticated" not in grants and "service_role" not in grants
    # Removing the model again drops the table; its objects are dropped before it.
    script = autogenerate(head_db.url, models_copy(), models.DECLARED)
    kinds = [diff[0] for diff in diffs(script)]
    assert kinds[-1] == "remove_table" and "remove_table" not in kinds[:-1]
    assert set(kinds[:-1]) == {
        "drop_policy",
        "drop_publication",
        "alter_grant",
        "alter_row_level_security",
    }


# --------------------------------------------------------------------------- what stays out


def test_supabase_schemas_and_other_migrations_never_appear(supabase_head_db):
    run_sql(
        supabase_head_db,
        [
            # Schemas Supabase manages, with tables, policies, triggers and functions.
            "CREATE SCHEMA storage",
            "CREATE TABLE storage.objects (id uuid PRIMARY KEY, name text)",
            "ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY",
            'CREATE POLICY "Public read" ON storage.objects FOR SELECT USING (true)',
            "CREATE TABLE auth.users (id uuid PRIMARY KEY, email text)",
            (
                "CREATE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RETURN NEW; END $$"
            ),
            (
                "CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users "
                "FOR EACH ROW EXECUTE FUNCTION public.handle_new_user()"
            ),
            "CREATE SCHEMA realtime",
            "CREATE TABLE realtime.messages (id bigint PRIMARY KEY)",
            "CREATE SCHEMA graphql_public",
            "CREATE FUNCTION graphql_public.graphql() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE SCHEMA vault",
            "CREATE TABLE vault.secrets (id uuid PRIMARY KEY)",
            "CREATE SCHEMA supabase_functions",
            "CREATE TABLE supabase_functions.hooks (id bigint PRIMARY KEY)",
            "CREATE FUNCTION extensions.helper() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            # Tables of other migrations: an extra column, index, policy; another table.
            "ALTER TABLE websites ADD COLUMN domain text NOT NULL DEFAULT 'x'",
            "CREATE INDEX websites_domain_idx ON websites (domain)",
            "ALTER TABLE websites ENABLE ROW LEVEL SECURITY",
            'CREATE POLICY "Owners see their websites" ON websites USING (user_id = auth.uid())',
            "ALTER TABLE delivery_orders ADD COLUMN total numeric",
            "CREATE TABLE public.products (id uuid PRIMARY KEY, name text)",
            (
                "CREATE TRIGGER products_updated BEFORE UPDATE ON public.products "
                "FOR EACH ROW EXECUTE FUNCTION update_updated_at_column()"
            ),
            "ALTER PUBLICATION supabase_realtime ADD TABLE public.products",
            "CREATE FUNCTION public.get_menu() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        ],
    )
    assert diffs(autogenerate(supabase_head_db.url)) == []
    result = alembic_cli("check", url=supabase_head_db.url)
    assert result.returncode == 0, result.stderr


def test_a_chat_table_without_a_model_is_proposed_for_drop(head_db):
    """The chat_ prefix marks the chat system's tables: deleting a model drops its table.
    The API roles' privileges (given by the default privileges) are revoked first, so
    that the downgrade, which re-creates the table, gives them back exactly."""
    head_db.conn.execute("CREATE TABLE public.chat_typing (id uuid PRIMARY KEY)")
    found = diffs(autogenerate(head_db.url))
    assert [d[:3] for d in found[:-1]] == [
        ("alter_grant", "chat_typing", role) for role in ("anon", "authenticated", "service_role")
    ]
    assert (found[-1][0], found[-1][1].name) == ("remove_table", "chat_typing")


# --------------------------------------------------------------------------- naming


def test_naming_convention_gives_postgresql_default_names(head_db):
    """New constraints and unnamed indexes get the names PostgreSQL itself would pick,
    and 004's existing keys already carry the convention's names (nothing is renamed)."""
    for table in models.Base.metadata.sorted_tables:
        if table.name not in models.EXTERNAL_TABLES:
            existing = {
                name
                for (name,) in head_db.rows(
                    "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass "
                    "AND contype IN ('p', 'f', 'u', 'c', 'x')",
                    (table.name,),
                )
            }
            assert {c.name for c in table.constraints} == existing

    metadata = models_copy()
    messages = metadata.tables["chat_messages"]
    messages.append_column(Column("order_id", UUID, ForeignKey("delivery_orders.id")))
    messages.append_constraint(UniqueConstraint("sender_id", "created_at"))
    Index(None, messages.c.order_id)
    named = {c.name for c in (*messages.constraints, *messages.indexes)}
    assert {
        "chat_messages_order_id_fkey",
        "chat_messages_sender_id_created_at_key",
        "chat_messages_order_id_idx",
    } <= named
    head_db.conn.execute(
        "ALTER TABLE chat_messages ADD COLUMN order_id uuid REFERENCES delivery_orders (id), "
        "ADD UNIQUE (sender_id, created_at)"
    )
    head_db.conn.execute("CREATE INDEX ON chat_messages (order_id)")
    picked = {
        name
        for (name,) in head_db.rows(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'chat_messages'::regclass "
            "UNION SELECT relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
            "WHERE i.indrelid = 'chat_messages'::regclass"
        )
    }
    assert named <= picked
    assert diffs(autogenerate(head_db.url, metadata)) == []


# --------------------------------------------------------------------------- the CLI in a copy


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the project's Alembic files and models, to edit like a developer would."""
    for name in ("alembic.ini", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("alembic", "models"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def cli(project: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    """A command run in ``project`` with the venv's tools but without the venv on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    if url is not None:
        env["DATABASE_URL"] = url
    return subprocess.run(
        list(args), cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def new_revision_file(project: Path, before: set[str]) -> Path:
    [name] = {p.name for p in (project / "alembic" / "versions").glob("*.py")} - before
    return project / "alembic" / "versions" / name


def versions(project: Path) -> set[str]:
    return {p.name for p in (project / "alembic" / "versions").glob("*.py")}


def upgrade_body(source: str) -> str:
    return source.split("def upgrade() -> None:", 1)[1].split("def downgrade() -> None:", 1)[0]


def test_next_revision_id_is_the_next_c_id():
    """Replicas of the SQL files have the file's number; every other revision is c + 3
    digits, one past the highest (so none takes the number of a later SQL file)."""
    assert autogen.next_revision_id(["000", "004", "008"]) == "c001"
    assert autogen.next_revision_id(["000", "c001", "004", "008", "049", "c002"]) == "c003"
    assert autogen.next_revision_id(["c009", "054"]) == "c010"
    assert autogen.next_revision_id([]) == "c001"
    assert re.fullmatch(r"c\d{3}", next_id())


def test_at_head_autogenerate_writes_an_empty_revision_with_the_next_id(project, head_db):
    before = versions(project)
    result = cli(
        project, ALEMBIC, "revision", "--autogenerate", "-m", "Nothing to do", url=head_db.url
    )
    assert result.returncode == 0, result.stderr
    path = new_revision_file(project, before)
    assert path.name == f"{next_id()}_nothing_to_do.py"
    body = [line.strip() for line in upgrade_body(path.read_text()).splitlines()]
    assert [line for line in body if line and not line.startswith("#")] == ["pass"]


def test_revision_ids_are_sequential_unless_given(project, head_db):
    written: list[str] = []
    for message in ("first", "second"):
        expected = f"{next_id(*written)}_{message}.py"
        before = versions(project)
        result = cli(project, ALEMBIC, "revision", "-m", message, url=head_db.url)
        assert result.returncode == 0, result.stderr
        assert new_revision_file(project, before).name == expected
        written.append(expected.split("_")[0])
    before = versions(project)
    result = cli(project, ALEMBIC, "revision", "-m", "chosen", "--rev-id", "042", url=head_db.url)
    assert result.returncode == 0, result.stderr
    assert new_revision_file(project, before).name == "042_chosen.py"


def test_new_revisions_are_formatted_by_ruff_without_the_venv_on_path(project, head_db):
    assert shutil.which("ruff", path="/usr/bin:/bin") is None  # only the venv has ruff
    before = versions(project)
    result = cli(project, ALEMBIC, "revision", "-m", "formatted", url=head_db.url)
    assert result.returncode == 0, result.stderr
    assert "Running post write hook 'ruff_format'" in result.stdout
    path = new_revision_file(project, before)
    check = cli(project, str(BIN / "ruff"), "format", "--check", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    # The template alone is not what ruff would write: the hook did change the file.
    assert f"revision: str = '{next_id()}'" not in path.read_text()


# --------------------------------------------------------------------------- the walkthrough


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {path}"
    path.write_text(text.replace(old, new))


def test_walkthrough_of_changing_the_schema(project, head_db):
    """The steps of README.md's "Changing the schema", on a copy of the project."""
    url = head_db.url

    def alembic(*args: str) -> subprocess.CompletedProcess:
        return cli(project, ALEMBIC, *args, url=url)

    # 1. Add a column to a model and autogenerate the revision.
    replace_once(
        project / "models" / "chat.py",
        "    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))\n",
        "    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))\n"
        "    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))\n",
    )
    head, first = revision_ids()[-1], next_id()
    before = versions(project)
    result = alembic("revision", "--autogenerate", "-m", "Add edited_at to chat_messages")
    assert result.returncode == 0, result.stderr
    path = new_revision_file(project, before)
    assert path.name == f"{first}_add_edited_at_to_chat_messages.py"
    source = path.read_text()
    assert re.findall(r"op\.\w+", upgrade_body(source)) == ["op.add_column"]
    assert (
        'op.add_column("chat_messages",sa.Column("edited_at",sa.DateTime(timezone=True),'
        "nullable=True))"
    ) in re.sub(r"\s+", "", source)
    assert 'op.drop_column("chat_messages", "edited_at")' in source
    assert cli(project, str(BIN / "ruff"), "format", "--check", str(path)).returncode == 0

    # 2. Apply it, and check that models and database agree.
    assert alembic("upgrade", "head").returncode == 0
    assert (
        head_db.scalar(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'chat_messages'::regclass AND attname = 'edited_at'"
        )
        == "timestamp with time zone"
    )
    result = alembic("check")
    assert result.returncode == 0, result.stdout + result.stderr

    # 3. Change a policy's expression; autogenerate replaces it.
    replace_once(
        project / "models" / "policies.py",
        'Policy(PARTICIPANTS, "Anyone can view participants", "SELECT", "true"),',
        f'Policy(PARTICIPANTS, "Anyone can view participants", "SELECT", "{NOT_RIDER}"),',
    )
    before = versions(project)
    result = alembic("revision", "--autogenerate", "-m", "Hide riders from participants")
    assert result.returncode == 0, result.stderr
    path = new_revision_file(project, before)
    assert path.name == f"{next_id(first)}_hide_riders_from_participants.py"
    body = upgrade_body(path.read_text())
    assert body.index('DROP POLICY "Anyone can view participants"') < body.index(
        'CREATE POLICY "Anyone can view participants"'
    )
    assert alembic("upgrade", "head").returncode == 0
    assert alembic("check").returncode == 0
    drift = cli(project, str(BIN / "chatdb"), "drift", url=url)
    assert drift.returncode == 0, drift.stdout + drift.stderr
    assert drift.stdout.startswith("No drift:")

    # 4. Both revisions go back down.
    assert alembic("downgrade", head).returncode == 0
    assert (
        head_db.scalar("SELECT qual FROM pg_policies WHERE policyname = %s", (VIEW_PARTICIPANTS,))
        == "true"
    )
    assert (
        head_db.scalar(
            "SELECT count(*) FROM pg_attribute WHERE attname = 'edited_at' "
            "AND attrelid = 'chat_messages'::regclass"
        )
        == 0
    )


def test_history_and_a_hand_written_revision_need_no_database(project):
    """revision_environment runs env.py for them; without DATABASE_URL it must not connect."""
    history = cli(project, ALEMBIC, "history")
    assert history.returncode == 0, history.stdout + history.stderr
    assert history.stdout.splitlines() == [
        line for line in history.stdout.splitlines() if " -> " in line
    ]
    ids = revision_ids()
    steps = [f"{down or '<base>'} -> {rev}" for down, rev in zip([None, *ids], ids)]
    steps[-1] += " (head)"
    assert [line.split(",")[0] for line in history.stdout.splitlines()] == steps[::-1]
    revision = cli(project, ALEMBIC, "revision", "-m", "Add a note")
    assert revision.returncode == 0, revision.stdout + revision.stderr
    assert (project / "alembic" / "versions" / f"{next_id()}_add_a_note.py").is_file()
