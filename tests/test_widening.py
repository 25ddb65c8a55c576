"""Issue 12, item 1: a run never widens what anon, authenticated or PUBLIC can do on a
table that existed before it, unless ``-x allow_wider_access=true``
(chatdb.deploy.widening, checked by chatdb.deploy.run.Run before every commit).

A revision that widens access is written into a copy of the project, after head, and
deployed with the real command line: refused in one FAILED line naming every cell and
the policies or privileges responsible, the database unchanged (pg_dump before and
after); accepted with the option, each widened cell logged. On shapes (c) and (d),
004 creates its policies again inside the run's transaction and 049 and c003 drop them
before anything is committed: the run widens nothing, and needs no option (issue 18:
the first production deploy must need none).
"""

from __future__ import annotations

import logging
import subprocess

import psycopg
import pytest
from alembic import op
from sqlalchemy import text

from tests.deploying import add_revision, deploy, dump, failed_line
from tests.pg import alembic_cli, migrate

WIDENED = "-x allow_wider_access=true: access widened: "


@pytest.fixture
def project(project_with_a_revision):
    return project_with_a_revision


REFUSAL = (
    "FAILED: The run would widen what anon, authenticated or PUBLIC can do on tables that "
    "existed before it (before it commits), in {n} cell(s): {cells}; the run was rolled "
    "back and the database is as it was: review the change (`chatdb plan` shows it), then "
    "re-run with -x allow_wider_access=true to accept it."
)
OWNER_EXPR = "website_id IN (SELECT id FROM websites WHERE user_id = auth.uid())"


def widened_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line.split(WIDENED, 1)[1] for line in result.stderr.splitlines() if WIDENED in line]


# --------------------------------------------------------------------------- a revision


def test_a_revision_that_widens_access_is_refused_then_accepted_with_the_option(
    project, supabase_head_db
):
    db = supabase_head_db
    add_revision(
        project,
        "COMMENT ON TABLE public.chat_messages IS 'read by everyone'",
        'CREATE POLICY "Debug: anyone can read messages" ON public.chat_messages '
        "FOR SELECT USING (true)",
        "GRANT SELECT ON public.chat_messages TO PUBLIC",
    )
    debug = '"Debug: anyone can read messages"'
    cells = [
        f"anon chat_messages SELECT: none -> all through {debug}",
        f"authenticated chat_messages SELECT: none -> all through {debug}",
        f"PUBLIC chat_messages SELECT: refused -> all now granted SELECT, rows through {debug}",
    ]
    before = dump(db.url)
    refused = deploy(project, db.url)
    assert failed_line(refused) == REFUSAL.format(n=3, cells="; ".join(cells))
    assert dump(db.url) == before

    accepted = deploy(project, db.url, "allow_wider_access=true")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert widened_lines(accepted) == cells
    assert db.scalar("SELECT version_num FROM alembic_version") == "t01"
    assert db.scalar(
        "SELECT count(*) FROM pg_policies WHERE policyname = 'Debug: anyone can read messages'"
    )


def test_a_grant_is_named_by_the_privilege_a_cell_lacked(project, supabase_head_db):
    """An UPDATE also needs SELECT: granting SELECT widens it, and the sentence says so."""
    db = supabase_head_db
    db.conn.execute(
        'CREATE POLICY "Anyone can manage participants" ON chat_participants FOR ALL '
        "USING (true) WITH CHECK (true); REVOKE SELECT ON chat_participants FROM anon"
    )
    add_revision(project, "GRANT SELECT ON public.chat_participants TO anon")
    line = failed_line(deploy(project, db.url))
    through = '"Anyone can manage participants"'
    assert (
        f"anon chat_participants UPDATE: refused -> all now granted SELECT, rows through {through}"
    ) in line
    assert "anon chat_participants DELETE: refused -> all now granted SELECT" in line


def test_a_wider_with_check_alone_is_a_widening(project, supabase_head_db):
    """An owner's UPDATE (004's owner policy, put back for the test) stays filtered by the
    same rows, but may now give a conversation to any website: WITH CHECK (true)."""
    db = supabase_head_db
    db.conn.execute(
        'CREATE POLICY "Owners can manage own conversations" ON chat_conversations FOR ALL '
        f"USING ({OWNER_EXPR})"
    )
    add_revision(
        project,
        'CREATE POLICY "Owners can move conversations" ON public.chat_conversations '
        f"FOR UPDATE TO authenticated USING ({OWNER_EXPR}) WITH CHECK (true)",
    )
    line = failed_line(deploy(project, db.url))
    assert line.startswith(
        REFUSAL.format(n=1, cells="authenticated chat_conversations UPDATE: filtered -> "
                       "filtered")[:150]
    )  # fmt: skip
    assert "(new condition: WITH CHECK true)" in line


# --------------------------------------------------------------------------- shape (c)


class BeforeRevision(logging.Handler):
    """When Alembic announces revision ``target``, look at 004's public policies from the
    run's own connection (inside its transaction) and from another one."""

    def __init__(self, url: str, target: str) -> None:
        super().__init__()
        self.url, self.target, self.seen = url, target, None

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg != "Running %s" or f"-> {self.target}," not in str(record.args[0]):
            return
        query = (
            "SELECT policyname FROM pg_policies WHERE schemaname = 'public' "
            "AND policyname IN ('Anyone can view messages', 'Anyone can create conversations', "
            "'Service role full access to messages') ORDER BY policyname"
        )
        inside = [row[0] for row in op.get_bind().execute(text(query))]
        with psycopg.connect(self.url) as other:
            outside = [row[0] for row in other.execute(query)]
        self.seen = (inside, outside)


def test_on_shape_c_004s_public_policies_are_never_committed(shape_c_db):
    db = shape_c_db
    watcher = BeforeRevision(db.url, "049")
    logger = logging.getLogger("alembic.runtime.migration")
    logger.addHandler(watcher)
    logger.setLevel(logging.INFO)
    try:
        migrate(db.url, "head")  # no -x allow_wider_access: the guard finds nothing wider
    finally:
        logger.removeHandler(watcher)
    inside, outside = watcher.seen
    assert inside == [  # 004 created them again in the run's transaction ...
        "Anyone can create conversations",
        "Anyone can view messages",
        "Service role full access to messages",
    ]
    assert outside == []  # ... and nobody else could see them before 049 dropped them
    public = db.rows(
        "SELECT tablename, policyname FROM pg_policies WHERE 'public' = ANY(roles) ORDER BY 1, 2"
    )
    assert public == []  # 049 dropped 004's on messages and conversations, c003 the rest


def test_on_shape_c_the_deploy_widens_nothing(shape_c_db):
    result = alembic_cli("upgrade", "head", url=shape_c_db.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert WIDENED not in result.stderr


# --------------------------------------------------------------------------- shape (d)


def test_on_shape_d_the_deploy_widens_nothing_and_needs_no_option(shape_d_db):
    """Production's likeliest shape (FIX A, then 049): 004 puts its owner and participant
    policies back inside the run's transaction, c003 drops them before the commit, so
    no cell of anon or authenticated is wider: the first deploy needs no -x option
    (before c003 it was refused unless -x allow_wider_access=true)."""
    db = shape_d_db
    result = alembic_cli("upgrade", "head", url=db.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert WIDENED not in result.stderr
    public = db.rows("SELECT policyname FROM pg_policies WHERE 'public' = ANY(roles)")
    assert public == [], "FIX A's \"Allow all chat_participants\" and 004's are gone"
