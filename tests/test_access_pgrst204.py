"""Issue 6 (4): the failure this project exists for, reproduced at the database level.

Production's chat_conversations had drifted (no customer_id). The backend inserts
customer_id; PostgREST answered PGRST204 ("Could not find the 'customer_id' column of
'chat_conversations' in the schema cache") because its schema cache, read at start,
has no such column, and even once the column exists it keeps answering so until it
reloads the cache. Here a LISTENing connection on channel ``pgrst`` stands in for
PostgREST: it reads the table's columns as its cache, and re-reads them when the
reload notification arrives.
"""

from __future__ import annotations

import psycopg

from tests.pg import alembic_cli
from tests.postgrest import postgrest_request

CHANNEL = "pgrst"
# What the backend sends to create a conversation (phone 0123456789).
BACKEND_INSERT = {
    "customer_id": "customer_0123456789",
    "customer_name": "Ada",
    "customer_phone": "0123456789",
    "status": "active",
}


class PostgrestStandIn:
    """A LISTEN connection with PostgREST's view of chat_conversations' columns."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")
        self.columns = self.read_columns()

    def read_columns(self) -> set[str]:
        return {
            name
            for (name,) in self.conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = 'chat_conversations'"
            )
        }

    def pgrst204(self, payload: dict) -> list[str]:
        """PostgREST's answer to an insert of ``payload``: one error per unknown column."""
        return [
            f"PGRST204: Could not find the '{column}' column of 'chat_conversations' "
            "in the schema cache"
            for column in sorted(payload)
            if column not in self.columns
        ]

    def receive(self) -> list[tuple[str, str]]:
        """Notifications delivered so far (waits a moment for a second one that must not come)."""
        received = [(n.channel, n.payload) for n in self.conn.notifies(timeout=1, stop_after=2)]
        if ("pgrst", "reload schema") in received:
            self.columns = self.read_columns()
        return received

    def close(self) -> None:
        self.conn.close()


def drifted(db) -> None:
    """004's table as an older script made it: no customer_id, with rows in it."""
    db.conn.execute("ALTER TABLE chat_conversations DROP COLUMN customer_id")
    website = db.scalar("INSERT INTO websites DEFAULT VALUES RETURNING id")
    for phone in ("0100000001", "0100000002", None):
        db.conn.execute(
            "INSERT INTO chat_conversations (website_id, customer_name, customer_phone) "
            "VALUES (%s, 'Old', %s)",
            (website, phone),
        )


def backend_insert(db) -> tuple:
    """The backend's insert, as service_role through PostgREST, committed."""
    website = db.scalar("SELECT id FROM websites LIMIT 1")
    columns = ["website_id", *BACKEND_INSERT]
    with postgrest_request(db.conn, "service_role", commit=True) as conn:
        return conn.execute(
            f"INSERT INTO chat_conversations ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) RETURNING customer_id, status",
            (website, *BACKEND_INSERT.values()),
        ).fetchone()


def test_pgrst204_until_008_and_the_reload_then_the_backend_insert_succeeds(db_at_004):
    db = db_at_004
    drifted(db)
    postgrest = PostgrestStandIn(db.url)
    try:
        assert postgrest.pgrst204(BACKEND_INSERT) == [
            (
                "PGRST204: Could not find the 'customer_id' column of 'chat_conversations' "
                "in the schema cache"
            )
        ]
        result = alembic_cli("upgrade", "head", url=db.url)
        assert result.returncode == 0, result.stderr
        assert postgrest.receive() == [("pgrst", "reload schema")]
        assert postgrest.pgrst204(BACKEND_INSERT) == []
    finally:
        postgrest.close()
    assert backend_insert(db) == ("customer_0123456789", "active")
    assert db.scalar("SELECT count(*) FROM chat_conversations WHERE customer_id IS NULL") == 0
    assert db.scalar("SELECT count(*) FROM chat_conversations") == 4


def test_the_same_insert_fails_in_the_database_before_008(db_at_004):
    drifted(db_at_004)
    try:
        backend_insert(db_at_004)
    except psycopg.errors.UndefinedColumn as exc:
        assert exc.diag.message_primary == (
            'column "customer_id" of relation "chat_conversations" does not exist'
        )
    else:
        raise AssertionError("the insert with customer_id succeeded on the drifted table")
    assert db_at_004.scalar("SELECT count(*) FROM chat_conversations") == 3


def test_without_the_reload_postgrest_keeps_answering_pgrst204(db_at_004):
    """The column is there, but a PostgREST that is not told keeps its stale cache."""
    db = db_at_004
    drifted(db)
    postgrest = PostgrestStandIn(db.url)
    try:
        result = alembic_cli("-x", "pgrst_reload=false", "upgrade", "head", url=db.url)
        assert result.returncode == 0, result.stderr
        assert postgrest.receive() == []
        assert len(postgrest.pgrst204(BACKEND_INSERT)) == 1
    finally:
        postgrest.close()
    assert backend_insert(db) == ("customer_0123456789", "active")  # the database would accept it
