"""``run_calls`` and ``chatdb calls check``: calls run as PostgREST runs them for the
service-role key, inside the caller's transaction, nothing kept.

The outcomes: ok at head (and meeting the made row), a column dropped by a retry, an
unknown written column (PGRST204, nothing run), an unknown selected one (42703), a NOT
NULL violation (23502), a table PostgREST does not know (PGRST205); parents made from
the catalog's foreign keys; the caller's transaction untouched and usable; the cost in
round trips. Then the command: its lines, its summary, its exit codes and sentences.
"""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import event

from chatdb.calls.check import CallsCannotRun, Outcome, run_calls
from chatdb.calls.model import Call, CallsFile, Filter, Order
from tests.contract import calls, connection_to, observe
from tests.convergence import chatdb_run

W = "backend/app/x.py"


def call(line: int, table: str, operation: str, **words) -> Call:
    return Call(W, line, table, operation, **words)


def summary(outcome: Outcome) -> tuple:
    return (outcome.ok, outcome.code, outcome.column, outcome.dropped)


def run(url: str, *every: Call) -> list[Outcome]:
    return observe(url, every)


class RoundTrips:
    """The statements a connection sends (each a round trip)."""

    def __init__(self, connection) -> None:
        self.sent: list[str] = []
        event.listen(connection, "before_cursor_execute", self.count)

    def count(self, conn, cursor, statement, *_):
        self.sent.append(statement)


# --------------------------------------------------------------------------- outcomes


def test_every_operation_succeeds_at_head_and_meets_its_row(head_db):
    outcomes = run(
        head_db.url,
        call(1, "chat_conversations", "insert", writes=("website_id", "customer_phone")),
        call(2, "chat_messages", "insert", writes=("conversation_id", "sender_type", "metadata")),
        call(3, "chat_participants", "upsert", writes=("id", "conversation_id", "user_type")),
        call(4, "chat_messages", "update", writes=("is_read", "read_at"),
             filters=(Filter("conversation_id", "eq"), Filter("sender_type", "neq"))),
        call(5, "chat_conversations", "delete", filters=(Filter("website_id", "in"),)),
        call(6, "chat_conversations", "select", selects=("*",),
             filters=(Filter("status", "eq"), Filter("order_id", "is"),
                      Filter("created_at", "gte"), Filter("created_at", "lt"),
                      Filter("unread_owner", "gt"), Filter("unread_rider", "lte"),
                      Filter("customer_phone", "like"), Filter("customer_name", "ilike"),
                      Filter("status", "not.eq")),
             orders=(Order("updated_at", True),), limit=1),
    )  # fmt: skip
    assert [summary(o) for o in outcomes] == [(True, None, None, ())] * 6, [
        o.render() for o in outcomes
    ]
    assert all(o.rows >= 1 for o in outcomes), [(o.call.line, o.rows) for o in outcomes]


def test_a_selected_column_that_does_not_exist_is_dropped_by_the_retry(head_db):
    """chat.py's messages select: 42703 names the column, the call runs again without it."""
    selects = ("id", "message", "content", "nope")
    retried, plain = run(
        head_db.url,
        call(1, "chat_messages", "select", selects=selects, retry=("42703",)),
        call(2, "chat_messages", "select", selects=selects),
    )
    assert summary(retried) == (True, None, None, ("message", "nope"))
    assert summary(plain) == (False, "42703", "message", ())
    assert plain.message == "column chat_messages.message does not exist"


def test_an_unknown_written_column_is_pgrst204_and_nothing_reaches_the_database(head_db):
    with connection_to(head_db.url) as connection:
        trips = RoundTrips(connection)
        (outcome,) = run_calls(
            connection,
            [call(1, "chat_conversations", "update", writes=("status", "owner_id", "x"))],
        )
    assert summary(outcome) == (False, "PGRST204", "owner_id", ())
    assert outcome.message == (
        "Could not find the 'owner_id' column of 'chat_conversations' in the schema cache"
    )
    assert len(trips.sent) == 1, trips.sent  # the catalog, and no call


def test_a_filtered_column_that_does_not_exist_is_42703(head_db):
    (outcome,) = run(
        head_db.url,
        call(1, "chat_conversations", "update", writes=("status",),
             filters=(Filter("owner_id", "eq"),)),
    )  # fmt: skip
    assert summary(outcome) == (False, "42703", "owner_id", ())


def test_a_not_null_violation_is_23502_with_its_column(at_008_db):
    """Pins the SQL history: at 008 customer_id is NOT NULL and nothing gives it a value."""
    (outcome,) = run(
        at_008_db.url,
        call(1, "chat_conversations", "insert", writes=("website_id", "customer_phone")),
    )
    assert summary(outcome) == (False, "23502", "customer_id", ())
    assert outcome.message.startswith('null value in column "customer_id"')


def test_a_table_postgrest_does_not_know_is_pgrst205(head_db):
    (outcome,) = run(head_db.url, call(1, "chat_reactions", "select", selects=("*",)))
    assert summary(outcome) == (False, "PGRST205", None, ())


def test_parents_are_made_from_the_catalogs_foreign_keys(head_db):
    """A table the code does not know, whose parent has NOT NULL columns of several
    types, an identity key and an enum: the parent is made first, as the connection's
    own role (service_role may not write it)."""
    head_db.conn.execute(
        """
        CREATE TYPE public.shade AS ENUM ('red', 'blue');
        CREATE TABLE public.shops (
            id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, code varchar(3) NOT NULL UNIQUE,
            opened date NOT NULL, colour public.shade NOT NULL, tags text[] NOT NULL,
            settings jsonb NOT NULL, open boolean NOT NULL, rating numeric NOT NULL);
        CREATE TABLE public.shop_notes (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            shop_id int NOT NULL REFERENCES public.shops, note text);
        REVOKE ALL ON public.shops FROM service_role;
        GRANT ALL ON public.shop_notes TO service_role;
        """
    )
    outcomes = run(
        head_db.url,
        call(1, "shop_notes", "insert", writes=("shop_id", "note")),
        call(2, "shop_notes", "update", writes=("note",), filters=(Filter("shop_id", "eq"),)),
    )
    assert [summary(o) for o in outcomes] == [(True, None, None, ())] * 2, [
        o.render() for o in outcomes
    ]
    assert [o.rows for o in outcomes] == [1, 1]
    assert head_db.scalar("SELECT count(*) FROM public.shops") == 0


# --------------------------------------------------------------------------- nothing kept


def test_nothing_is_kept_and_the_callers_transaction_stays_usable(head_db):
    counts = (
        "SELECT (SELECT count(*) FROM websites), (SELECT count(*) FROM delivery_orders), "
        "(SELECT count(*) FROM chat_conversations), (SELECT count(*) FROM chat_messages), "
        "(SELECT count(*) FROM chat_participants)"
    )
    state = (  # a setting a rolled-back SET defined reads '' afterwards, not NULL
        "SELECT current_user, coalesce(current_setting('request.jwt.claims', true), ''), "
        "current_setting('TimeZone'), coalesce(current_setting('chatdb.calls', true), '')"
    )
    with connection_to(head_db.url) as connection:
        connection.exec_driver_sql("SET LOCAL TimeZone = 'Asia/Kuala_Lumpur'")
        connection.exec_driver_sql("INSERT INTO websites (user_id) VALUES (NULL)")  # the caller's
        before = connection.exec_driver_sql(counts).one()
        who = connection.exec_driver_sql(state).one()
        outcomes = run_calls(
            connection,
            [
                *calls(),
                call(1, "chat_conversations", "update", writes=("nope",)),
                call(2, "chat_messages", "select", selects=("nope",)),
                call(3, "chat_conversations", "insert", writes=("website_id",),
                     filters=(Filter("x", "bogus"),)),
            ],
        )  # fmt: skip
        assert not all(o.ok for o in outcomes)
        assert connection.exec_driver_sql(counts).one() == before
        assert connection.exec_driver_sql(state).one() == who
        assert who[0] == "postgres" and who[2] == "Asia/Kuala_Lumpur" and not who[3]
        connection.exec_driver_sql("INSERT INTO delivery_orders DEFAULT VALUES")  # still usable
        assert connection.exec_driver_sql(counts).one()[:2] == (before[0], before[1] + 1)
    assert head_db.rows(counts) == [(0, 0, 0, 0, 0)]  # and all of it rolled back by the caller


@pytest.fixture
def outsider(head_db):
    """The URL of head_db for a role that may log in but is no member of service_role."""
    role = f"chatdb_outsider_{head_db.url.rsplit('/', 1)[1]}"
    head_db.conn.execute(f'CREATE ROLE "{role}" LOGIN')
    yield head_db.url.replace("://postgres@", f"://{role}@", 1)
    head_db.conn.execute(f'DROP ROLE "{role}"')


def test_run_calls_refuses_a_role_that_may_not_become_service_role(outsider):
    with pytest.raises(CallsCannotRun) as error, connection_to(outsider) as connection:
        run_calls(connection, calls())
    assert "may not SET ROLE service_role" in str(error.value), error.value


def test_a_database_without_the_chat_tables_fails_every_call_with_pgrst205(empty_db):
    outcomes = run(empty_db.url, *calls())
    assert {summary(o)[:2] for o in outcomes} == {(False, "PGRST205")}


# --------------------------------------------------------------------------- the cost


def test_the_file_costs_three_round_trips_at_head(head_db):
    """The deploy guard runs the file twice per deploy: the catalog, one DO block with
    every call, one more for the messages select's retry."""
    with connection_to(head_db.url) as connection:
        trips = RoundTrips(connection)
        started = time.perf_counter()
        outcomes = run_calls(connection, calls())
        elapsed = time.perf_counter() - started
    assert len(outcomes) == len(calls())
    assert len(trips.sent) == 3, [s[:60] for s in trips.sent]
    print(
        f"\n{len(outcomes)} calls at head: {elapsed * 1000:.0f} ms, {len(trips.sent)} round trips"
    )


# --------------------------------------------------------------------------- the command


def write(tmp_path, *lines: str) -> str:
    path = tmp_path / "test.calls"
    path.write_text("\n".join(["# a calls file of the tests", *lines]) + "\n")
    return str(path)


SUMMARY = re.compile(r"^(\d+) of (\d+) calls succeed(; (\d+) unresolved, not run)? \(\d+ ms\)\.$")


def test_check_prints_a_line_per_call_and_the_summary(tmp_path, head_db):
    path = write(
        tmp_path,
        f"{W}:1 chat_conversations select selects=* filters=id.eq",
        f"{W}:2 chat_messages insert writes=conversation_id,sender_type,message_text",
        f"{W}:3 chat_messages select selects=id,message filters=conversation_id.eq retry=42703",
        f"unresolved {W}:4 the table name is t(): t() (the value a call returns)",
    )
    result = chatdb_run("calls", "check", path, url=head_db.url)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"The calls of {path} against postgresql://")
    assert lines[1:5] == [
        f"ok        {W}:1 chat_conversations select",
        f"ok        {W}:2 chat_messages insert",
        f"ok        {W}:3 chat_messages select (its retry dropped message)",
        f"not run   unresolved {W}:4 the table name is t(): t() (the value a call returns)",
    ]
    assert SUMMARY.match(lines[5]).group(1, 2, 4) == ("3", "3", "1"), lines[5]
    assert head_db.scalar("SELECT count(*) FROM chat_messages") == 0


def test_check_is_a_finding_when_a_call_fails(at_008_db):
    """Pins the SQL history: the project's file at 008 (its default FILE)."""
    result = chatdb_run("calls", "check", url=at_008_db.url)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAILED    ")]
    assert (
        "FAILED    PGRST204 website_name  backend/app/api/v1/endpoints/chat.py:428 "
        "chat_conversations insert: Could not find the 'website_name' column of "
        "'chat_conversations' in the schema cache"
    ) in failed
    assert any(
        line.startswith(
            "FAILED    23502 customer_id  backend/app/api/v1/endpoints/delivery.py:345 "
            "chat_conversations insert: null value"
        )
        for line in failed
    ), failed
    succeeded, total, _ = SUMMARY.match(lines[-1]).group(1, 2, 4)
    assert int(total) == len(calls()) and int(succeeded) == int(total) - len(failed)


def test_check_bad_input_and_no_database(tmp_path, head_db):
    absent = str(tmp_path / "absent.calls")
    result = chatdb_run("calls", "check", absent, url=head_db.url)
    assert result.returncode == 2, result.stdout
    assert result.stdout.splitlines()[0] == (
        f"FAILED: The calls file {absent} does not exist: give a file written by "
        "`chatdb calls scan DIR --write FILE` (the project's is calls/backend.calls)."
    )
    malformed = write(tmp_path, f"{W}:1 chat_messages select", f"{W}:2 chat_messages upsrt")
    result = chatdb_run("calls", "check", malformed, url=head_db.url)
    assert result.returncode == 2, result.stdout
    assert result.stdout.startswith(
        f"FAILED: The calls file {malformed}, line 3: 'upsrt' is not one of select, insert,"
    ), result.stdout
    ok = write(tmp_path, f"{W}:1 chat_messages select")
    result = chatdb_run(
        "calls", "check", ok, url="postgresql://postgres@127.0.0.1:9/chatdb?connect_timeout=1"
    )
    assert result.returncode == 3, result.stdout
    assert result.stdout.startswith(
        "FAILED: Cannot connect to postgresql://postgres@127.0.0.1:9/chatdb?connect_timeout=1 "
        "(from DATABASE_URL): nothing listens there"
    ), result.stdout


def test_check_refuses_a_role_that_may_not_become_service_role(tmp_path, outsider):
    path = write(tmp_path, f"{W}:1 chat_messages select")
    result = chatdb_run("calls", "check", path, url=outsider)
    assert result.returncode == 4, result.stdout + result.stderr
    assert result.stdout.startswith("FAILED: Cannot run the calls at postgresql://"), result.stdout
    assert "may not SET ROLE service_role: connect as the database owner" in result.stdout


def test_the_calls_file_parses_as_the_model_writes_it(tmp_path):
    text = "# header\n" + "\n".join(c.render() for c in calls()) + "\n"
    assert CallsFile.parse(text).render() == text
