"""Issue 6 (2, 3), issue 9 (5), issue 18 (2): role x table x command, as PostgREST requests
exercise it and as `chatdb access` prints it, at head and at revision 008; the weak spots
of 004's policies, each pinned by name: open at 008, closed at head (by 049, and by c003
for chat_participants and the owner policies). At head every anon and authenticated
cell is "none" and nothing is flagged; real requests, as anon and as a signed-in owner
of the website, reach no row.

Every cell is observed with a real statement in a real request (tests.postgrest):
SELECT/UPDATE/DELETE filtered by id, as PostgREST sends them, over rows of two
websites (OWNER's and STRANGER's), and INSERT of a row into the website the caller
does not own, then into its own. The observation is one of the outcomes of
chatdb.inspect.access: all, filtered, none, refused.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from chatdb.inspect.access import ALL, COMMANDS, FILTERED, NONE, REFUSED, ROLES, TABLES
from tests import catalog
from tests.convergence import chatdb_run
from tests.pg import ROOT
from tests.postgrest import (
    CALLERS,
    HARDENING_SKETCH,
    SPEC_ANON_WRITES,
    SPEC_ANON_WRITES_AT_008,
    SPEC_MATRIX,
    SPEC_MATRIX_AT_008,
    Seed,
    live_matrix,
    postgrest_request,
    refusal,
    seed,
)

CHATDB = str(Path(sys.executable).with_name("chatdb"))
# The caller each role stands for in the matrix: authenticated is OWNER, signed in.
MATRIX_CALLERS = {role: CALLERS["owner" if role == "authenticated" else role] for role in ROLES}
UPDATES = {
    "chat_conversations": "status = 'closed'",
    "chat_messages": "is_read = true",
    "chat_participants": "is_online = true",
}


@pytest.fixture(params=["supabase_head_db", "head_db"])
def at_head(request):
    """Head on a Supabase-like database, and on plain PostgreSQL (where revision 000
    made the roles, auth.uid(), auth.role() and default privileges): the matrix must be
    the same."""
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["supabase_at_008_db", "at_008_db"])
def at_008(request):
    """Revision 008 (004's policies, as production ran them before 049), Supabase-like
    and plain."""
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------- observing


def observe(conn: psycopg.Connection, rows: Seed, role: str, table: str, command: str) -> str:
    """The outcome of one real request by ``role`` (MATRIX_CALLERS) on ``table``."""
    if command == "INSERT":
        into_other = try_insert(conn, rows, role, table, own=False)
        if into_other != NONE:
            return into_other
        return FILTERED if try_insert(conn, rows, role, table, own=True) == ALL else NONE
    statement = {
        "SELECT": "SELECT id FROM {} WHERE id = ANY(%s)",
        "UPDATE": "UPDATE {} SET " + UPDATES[table] + " WHERE id = ANY(%s)",
        "DELETE": "DELETE FROM {} WHERE id = ANY(%s)",
    }[command]
    ids = rows.ids[table]
    try:
        with postgrest_request(conn, *MATRIX_CALLERS[role]):
            cursor = conn.execute(sql.SQL(statement).format(sql.Identifier(table)), (ids,))
            touched = cursor.rowcount
    except psycopg.errors.InsufficientPrivilege as exc:
        return refusal(exc)
    return ALL if touched == len(ids) else NONE if touched == 0 else FILTERED


def try_insert(conn: psycopg.Connection, rows: Seed, role: str, table: str, *, own: bool) -> str:
    website = rows.own_website if own else rows.other_website
    conversation = rows.own_conversation if own else rows.other_conversation
    statement, params = {
        "chat_conversations": (
            "INSERT INTO chat_conversations (website_id, customer_id) VALUES (%s, 'customer_x')",
            (website,),
        ),
        "chat_messages": (
            "INSERT INTO chat_messages (conversation_id, sender_type) VALUES (%s, 'customer')",
            (conversation,),
        ),
        "chat_participants": (
            (
                "INSERT INTO chat_participants (conversation_id, user_type, user_id) "
                "VALUES (%s, 'rider', 'rider_x')"
            ),
            (conversation,),
        ),
    }[table]
    try:
        with postgrest_request(conn, *MATRIX_CALLERS[role]):
            conn.execute(statement, params)
    except psycopg.errors.InsufficientPrivilege as exc:
        return refusal(exc)
    return ALL


def observed_matrix(db) -> dict[tuple[str, str, str], str]:
    rows = seed(db.conn)
    return {
        (role, table, command): observe(db.conn, rows, role, table, command)
        for role in ROLES
        for table in TABLES
        for command in COMMANDS
    }


def observable(role: str, rows: str) -> str:
    """What a request can see of a cell: anon owns no row, so "filtered" (by ownership,
    the only condition the chat policies use) leaves it nothing."""
    return NONE if rows == FILTERED and MATRIX_CALLERS[role][1] is None else rows


# --------------------------------------------------------------------------- chatdb access


def chatdb_access(
    url: str | None, cwd: Path = ROOT, **extra_env: str
) -> subprocess.CompletedProcess:
    return chatdb_run("access", url=url, cwd=cwd, timeout=120, **extra_env)


def parse_access_output(stdout: str) -> dict[tuple[str, str, str], tuple[str, tuple, bool]]:
    """The printed table back as {(role, table, command): (rows, through, flagged)}."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line[2:].split()[:2] == ["role", "table"])
    cells = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        role, table, command, rows, through = re.split(r"\s{2,}", line[2:].strip(), maxsplit=4)
        if through.startswith('"'):
            names = tuple(n.replace('""', '"') for n in re.findall(r'"((?:[^"]|"")*)"', through))
        else:
            names = (through,)
        cells[(role, table, command)] = (rows, names, line[0] == "!")
    return cells


def printed(matrix, anon_writes) -> dict[tuple[str, str, str], tuple[str, tuple, bool]]:
    return {key: (rows, through, key in anon_writes) for key, (rows, through) in matrix.items()}


def printed_spec() -> dict[tuple[str, str, str], tuple[str, tuple, bool]]:
    return printed(SPEC_MATRIX, SPEC_ANON_WRITES)


def observable_matrix(matrix) -> dict[tuple[str, str, str], str]:
    return {key: observable(key[0], rows) for key, (rows, _) in matrix.items()}


# --------------------------------------------------------------------------- the matrix


def test_requests_at_head_behave_as_the_spec_implies(at_head):
    assert observed_matrix(at_head) == observable_matrix(SPEC_MATRIX)


def test_chatdb_access_computes_the_spec_matrix(at_head):
    assert live_matrix(at_head.url) == SPEC_MATRIX


def test_chatdb_access_prints_the_spec_matrix_and_flags_anon_writes(at_head):
    result = chatdb_access(at_head.url)
    assert result.returncode == 0, result.stderr
    assert parse_access_output(result.stdout) == printed_spec()
    assert (
        f"can change or remove rows it does not own: {len(SPEC_ANON_WRITES)} cell(s)"
        in result.stdout
    )


def test_requests_at_008_behave_as_the_spec_of_004_implies(at_008):
    """Pins the SQL history: the access 004's policies give, at revision 008."""
    assert observed_matrix(at_008) == observable_matrix(SPEC_MATRIX_AT_008)


def test_chatdb_access_at_008_prints_004s_matrix_and_flags_six_cells(at_008):
    """Pins the SQL history: what `chatdb access` printed before 049, at revision 008."""
    assert live_matrix(at_008.url) == SPEC_MATRIX_AT_008
    result = chatdb_access(at_008.url)
    assert result.returncode == 0, result.stderr
    assert parse_access_output(result.stdout) == printed(
        SPEC_MATRIX_AT_008, SPEC_ANON_WRITES_AT_008
    )
    assert "can change or remove rows it does not own: 6 cell(s)" in result.stdout


def test_plain_postgresql_prints_the_same_table_as_supabase(head_db, supabase_head_db):
    plain, supabase = chatdb_access(head_db.url), chatdb_access(supabase_head_db.url)
    assert plain.returncode == supabase.returncode == 0
    assert plain.stdout.splitlines()[1:] == supabase.stdout.splitlines()[1:]


def test_requests_and_chatdb_access_agree_on_a_hardened_database(supabase_at_008_db):
    """Pins the SQL history: HARDENING_SKETCH scopes 004's policies, so it runs at 008."""
    db = supabase_at_008_db
    db.conn.execute(HARDENING_SKETCH)
    computed = live_matrix(db.url)
    assert observed_matrix(db) == {
        (role, table, command): observable(role, rows)
        for (role, table, command), (rows, _) in computed.items()
    }
    # Not uniformly "all" any more: each outcome occurs, for the reason named.
    assert computed[("anon", "chat_messages", "DELETE")] == (REFUSED, ("no DELETE privilege",))
    assert computed[("authenticated", "chat_conversations", "UPDATE")] == (
        FILTERED,
        ("Owners can manage own conversations",),
    )
    assert computed[("authenticated", "chat_messages", "DELETE")] == (NONE, ("no policy",))
    assert computed[("service_role", "chat_messages", "DELETE")] == (ALL, ("BYPASSRLS",))
    result = chatdb_access(db.url)
    assert result.returncode == 0, result.stderr
    assert not [
        key for key, (_, _, flagged) in parse_access_output(result.stdout).items() if flagged
    ]


# --------------------------------------------------------------------------- weak spots
# 004's policies as production ran them, until 049. Each hole is pinned twice: open at
# 008 (the history: what production had, what 049 closed) and closed at head; the one
# 049 left, chat_participants, is pinned open and flagged at head too. When access
# changes again, one of these fails and must be changed on purpose.


def anon_request(db):
    return postgrest_request(db.conn, *CALLERS["anon"], commit=True)


def flagged_cells(url: str) -> set[tuple[str, str, str]]:
    return {
        key
        for key, (_, _, flagged) in parse_access_output(chatdb_access(url).stdout).items()
        if flagged
    }


def anon_reads_conversations(db) -> tuple[set, set]:
    """(the conversations anon's SELECT returns, every seeded conversation)."""
    rows = seed(db.conn)
    with postgrest_request(db.conn, *CALLERS["anon"]) as conn:
        visible = {r[0] for r in conn.execute("SELECT id FROM chat_conversations")}
    return visible, set(rows.ids["chat_conversations"])


def anon_rewrites_messages(db) -> int:
    """How many of the seeded messages anon's UPDATE rewrote (committed)."""
    rows = seed(db.conn)
    with anon_request(db) as conn:
        return conn.execute(
            "UPDATE chat_messages SET content = 'rewritten by anon' WHERE id = ANY(%s)",
            (rows.ids["chat_messages"],),
        ).rowcount


def anon_deletes(db, table: str) -> tuple[int, int]:
    """(rows anon's DELETE removed, rows seeded) of ``table`` (committed)."""
    rows = seed(db.conn)
    with anon_request(db) as conn:
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(sql.Identifier(table)),
            (rows.ids[table],),
        ).rowcount
    return deleted, len(rows.ids[table])


def test_weak_spot_anon_reads_every_conversation(supabase_at_008_db):
    """Pins the SQL history: at 008, 004's "Customers can view own conversations" (USING
    (true)) shows anon every shop's customers; 049 closes it."""
    db = supabase_at_008_db
    visible, seeded = anon_reads_conversations(db)
    assert visible == seeded  # both owners' customers
    assert live_matrix(db.url)[("anon", "chat_conversations", "SELECT")][0] == ALL


def test_weak_spot_anon_updates_any_message(supabase_at_008_db):
    """Pins the SQL history: at 008, "Anyone can update messages" lets anon rewrite them."""
    db = supabase_at_008_db
    assert anon_rewrites_messages(db) == 2
    assert db.rows("SELECT DISTINCT content FROM chat_messages") == [("rewritten by anon",)]
    assert ("anon", "chat_messages", "UPDATE") in flagged_cells(db.url)


@pytest.mark.parametrize("table", TABLES)
def test_weak_spot_anon_deletes_any_row(supabase_at_008_db, table):
    """Pins the SQL history: at 008, the "Service role full access to ..." policies (no TO
    clause) and the default privileges let anon delete every row of the three tables."""
    db = supabase_at_008_db
    assert anon_deletes(db, table) == (2, 2)
    assert db.scalar(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))) == 0
    assert ("anon", table, "DELETE") in flagged_cells(db.url)


def test_closed_at_head_anon_reads_no_conversation(supabase_head_db):
    db = supabase_head_db
    visible, seeded = anon_reads_conversations(db)
    assert visible == set() and len(seeded) == 2
    assert live_matrix(db.url)[("anon", "chat_conversations", "SELECT")] == (NONE, ("no policy",))


def test_closed_at_head_anon_updates_no_message(supabase_head_db):
    db = supabase_head_db
    assert anon_rewrites_messages(db) == 0
    assert db.rows("SELECT DISTINCT content FROM chat_messages") == [("seeded",)]
    assert live_matrix(db.url)[("anon", "chat_messages", "UPDATE")] == (NONE, ("no policy",))


@pytest.mark.parametrize("table", ["chat_conversations", "chat_messages"])
def test_closed_at_head_anon_deletes_no_conversation_or_message(supabase_head_db, table):
    db = supabase_head_db
    assert anon_deletes(db, table) == (0, 2)
    assert db.scalar(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))) == 2
    assert not {key for key in flagged_cells(db.url) if key[1] == table}


@pytest.mark.parametrize("table", TABLES)
def test_closed_at_head_anon_reaches_no_row_of_any_table(supabase_head_db, table):
    """c003: 004's "Anyone can manage participants" let the anon key read, add, change and
    delete every participant after 049; at head anon's SELECT, UPDATE and DELETE reach no
    row of any chat table (committed requests), its INSERT is refused by row level
    security, and `chatdb access` flags nothing."""
    db = supabase_head_db
    rows = seed(db.conn)
    ids = rows.ids[table]
    touched = {}
    for command, statement in (
        ("SELECT", "SELECT id FROM {} WHERE id = ANY(%s)"),
        ("UPDATE", "UPDATE {} SET " + UPDATES[table] + " WHERE id = ANY(%s)"),
        ("DELETE", "DELETE FROM {} WHERE id = ANY(%s)"),
    ):
        with anon_request(db) as conn:
            touched[command] = conn.execute(
                sql.SQL(statement).format(sql.Identifier(table)), (ids,)
            ).rowcount
    assert touched == {"SELECT": 0, "UPDATE": 0, "DELETE": 0}
    assert try_insert(db.conn, rows, "anon", table, own=True) == NONE
    assert db.scalar(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))) == 2
    assert flagged_cells(db.url) == set()


@pytest.mark.parametrize("table", TABLES)
def test_closed_at_head_to_the_owner_of_the_website(supabase_head_db, table):
    """c003 dropped 004's owner policies: a signed-in owner (authenticated, with claims
    whose sub owns the website) selects, inserts, updates and deletes no row of their
    own website's chat either; the backend (service_role) still reaches every row."""
    db = supabase_head_db
    rows = seed(db.conn)
    owner_role, owner = CALLERS["owner"]
    own = {
        "chat_conversations": [rows.own_conversation],
        "chat_messages": [rows.ids["chat_messages"][0]],
        "chat_participants": [rows.ids["chat_participants"][0]],
    }[table]
    outcomes = {}
    for command, statement in (
        ("SELECT", "SELECT id FROM {} WHERE id = ANY(%s)"),
        ("UPDATE", "UPDATE {} SET " + UPDATES[table] + " WHERE id = ANY(%s)"),
        ("DELETE", "DELETE FROM {} WHERE id = ANY(%s)"),
    ):
        with postgrest_request(db.conn, owner_role, owner) as conn:
            outcomes[command] = conn.execute(
                sql.SQL(statement).format(sql.Identifier(table)), (own,)
            ).rowcount
    outcomes["INSERT"] = try_insert(db.conn, rows, "authenticated", table, own=True)
    assert outcomes == {"SELECT": 0, "UPDATE": 0, "DELETE": 0, "INSERT": NONE}
    with postgrest_request(db.conn, *CALLERS["service_role"]) as conn:
        assert conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE id = ANY(%s)").format(sql.Identifier(table)),
            (own,),
        ).fetchone()[0] == len(own)


# --------------------------------------------------------------------------- the command


def test_chatdb_access_never_writes_and_works_on_a_read_only_session(supabase_head_db):
    before = catalog.snapshot(supabase_head_db.conn)
    read_only = supabase_head_db.url + "?options=-c%20default_transaction_read_only%3Don"
    result = chatdb_access(read_only)
    assert result.returncode == 0, result.stderr
    assert parse_access_output(result.stdout) == printed_spec()
    assert catalog.snapshot(supabase_head_db.conn) == before


def test_chatdb_access_without_database_url_says_so(tmp_path):
    """Without DATABASE_URL it reads the local cluster of the project it runs in: here a
    folder with none (the repository may have one running)."""
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    result = chatdb_access(None, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout.startswith(
        "FAILED: DATABASE_URL is not set and no local cluster is recorded in .chatdb/: "
    )
    assert len(result.stdout.splitlines()) == 1


def test_chatdb_access_on_an_unmigrated_database_names_what_is_missing(empty_db):
    result = chatdb_access(empty_db.url)
    assert result.returncode == 4
    assert result.stdout.splitlines() == [
        (
            f"FAILED: Cannot read the access matrix at {empty_db.url} (from DATABASE_URL): "
            "table(s) chat_conversations, chat_messages, chat_participants do not exist in "
            "schema public: migrate the database first (alembic upgrade head)."
        )
    ]
