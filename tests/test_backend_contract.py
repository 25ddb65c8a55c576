"""The chat backend's contract (tests/contract.py, docs/spec/after-008.md section 1), run
the way PostgREST runs it for the service-role key (tests.postgrest.rest_*).

At head every call does what the contract's ``at_head`` says (all succeed, but the
backend's first select of messages, which names ``message`` and relies on its fallback)
and every write reads back what it sent, plus what the database fills in
(``reads_back``: 008's customer_id formula for the delivery path, '' for a message
without message_text). At 008 exactly the calls whose ``at_008`` names a failure fail,
with that error and column. ``pytest -s`` prints the contract before and after as a
table docs/backend-contract.md shows.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from tests.contract import (
    CONTRACT,
    CONVERSATION,
    WEBSITE,
    Call,
    Fails,
    markdown_table,
    outcome,
    run,
    seed,
    show,
)
from tests.postgrest import Pgrst204, rest_insert, rest_select, rest_update, schema_cache

WRITES = [call for call in CONTRACT if call.operation != "SELECT"]
READS = [call for call in CONTRACT if call.operation == "SELECT"]


@pytest.fixture(params=["head_db", "supabase_head_db"])
def any_head_db(request):
    return request.getfixturevalue(request.param)


def observe(db) -> dict[str, Fails | None]:
    """Every call's outcome on ``db`` (seeded here), none of them kept."""
    seed(db.conn)
    return {call.name: outcome(db.conn, call) for call in CONTRACT}


def describe(error: Exception) -> str:
    if isinstance(error, psycopg.Error):
        return f"{error.sqlstate}: {error.diag.message_primary}"
    return str(error)


def listed(problems: list[str]) -> str:
    return "\n" + "\n".join(problems)


def mismatches(observed: dict, expected: dict) -> list[str]:
    return [
        f"{name}: {show(observed[name])}, the contract says {show(expected[name])}"
        for name in expected
        if observed[name] != expected[name]
    ]


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # the session is UTC


def _same(type_: str, sent, got) -> bool:
    if sent is None or got is None:
        return sent is None and got is None
    if type_ == "timestamp with time zone":
        return _instant(sent) == _instant(got)
    if type_ == "uuid":
        return str(sent).lower() == str(got).lower()
    return sent == got


def read_back_problems(db, call: Call, *, at_head: bool = True) -> list[str]:
    """Run a write, then read its rows back with a select: every value that differs from
    what it sent (and, at head, from the contract's ``reads_back``)."""
    types = schema_cache(db.conn)[call.table]
    expected = {**call.payload, **(call.reads_back if at_head else {})}
    problems = []
    with db.conn.transaction(force_rollback=True):
        written = run(db.conn, call)
        if not written:
            return [f"{call.name}: no row"]
        for row in written:
            (back,) = rest_select(db.conn, call.table, list(expected), [("id", "eq", row["id"])])
            problems += [
                f"{call.name}: {column} sent {value!r}, read back {back[column]!r}"
                for column, value in expected.items()
                if column not in call.trigger_sets and not _same(types[column], value, back[column])
            ]
            problems += [
                f"{call.name}: {column} read back NULL, a trigger should have set it"
                for column in call.trigger_sets
                if back[column] is None
            ]
    return problems


# --------------------------------------------------------------------------- at head


def test_every_call_does_at_head_what_the_contract_says(any_head_db):
    found = mismatches(observe(any_head_db), {call.name: call.at_head for call in CONTRACT})
    assert found == [], listed(found)


def test_every_write_reads_back_what_it_sent_at_head(any_head_db):
    seed(any_head_db.conn)
    problems = []
    for call in WRITES:
        try:
            problems += read_back_problems(any_head_db, call)
        except (Pgrst204, psycopg.Error) as error:
            problems.append(f"{call.name}: {describe(error)}")
    assert problems == [], listed(problems)


def test_every_read_answers_the_columns_it_asks_for_at_head(any_head_db):
    seed(any_head_db.conn)
    cache = schema_cache(any_head_db.conn)
    problems = []
    for call in (c for c in READS if c.at_head is None):
        try:
            rows = run(any_head_db.conn, call)
        except (Pgrst204, psycopg.Error) as error:
            problems.append(f"{call.name}: {describe(error)}")
            continue
        columns = list(cache[call.table]) if call.select == ("*",) else list(call.select)
        if not rows or any(list(row) != columns for row in rows):
            problems.append(f"{call.name}: {rows!r}")
    assert problems == [], listed(problems)


# --------------------------------------------------------------------------- at 008


def test_at_008_exactly_the_calls_the_contract_names_fail(at_008_db):
    observed = observe(at_008_db)
    found = mismatches(observed, {call.name: call.at_008 for call in CONTRACT})
    assert found == [], listed(found)
    failing = {show(outcome) for outcome in observed.values() if outcome is not None}
    assert failing == {
        "PGRST204 website_name",  # the widget's and the delivery path's conversations
        "PGRST204 message_text",  # every message but the AI responder's
        "23502 customer_id",  # the delivery path's retry without website_name
        "42703 message_text",  # the messages select, until its fallback drops it
    }


def test_at_008_the_writes_that_succeed_read_back_what_they_sent(at_008_db):
    seed(at_008_db.conn)
    problems = []
    for call in (c for c in WRITES if c.at_008 is None):
        problems += read_back_problems(at_008_db, call, at_head=False)
    assert problems == [], listed(problems)


def test_print_the_contract_before_and_after(at_008_db, head_db):
    """pytest -s: the table, as observed (docs/backend-contract.md shows it)."""
    before, after = observe(at_008_db), observe(head_db)
    print()
    print(markdown_table(before, after))
    found = mismatches(before, {call.name: call.at_008 for call in CONTRACT}) + mismatches(
        after, {call.name: call.at_head for call in CONTRACT}
    )
    assert found == [], listed(found)


def test_the_contract_is_one_entry_per_call():
    names = [call.name for call in CONTRACT]
    assert len(names) == len(set(names))
    for call in CONTRACT:
        assert call.operation in ("INSERT", "UPDATE", "SELECT")
        assert bool(call.payload) == (call.operation != "SELECT")
        assert bool(call.select) == (call.operation == "SELECT")
        assert (call.operation == "INSERT") or call.filters
        assert call.source.split(":")[0].endswith(".py")


# --------------------------------------------------------------------------- the executor


def test_pgrst204_names_the_first_unknown_column_and_runs_nothing(at_008_db):
    seed(at_008_db.conn)
    count = "SELECT count(*) FROM chat_conversations"
    before = at_008_db.scalar(count)
    payload = {"website_id": WEBSITE, "website_name": "Kedai", "owner_id": "x", "status": "active"}
    with pytest.raises(Pgrst204) as error:  # the missing customer_id never reaches the db
        rest_insert(at_008_db.conn, "chat_conversations", payload)
    assert error.value.message == (
        "Could not find the 'website_name' column of 'chat_conversations' in the schema cache"
    )
    assert (error.value.code, error.value.column) == ("PGRST204", "website_name")
    with pytest.raises(Pgrst204):
        rest_update(
            at_008_db.conn, "chat_messages", {"message_text": "x"}, [("id", "eq", CONVERSATION)]
        )
    assert at_008_db.scalar(count) == before


def test_a_stale_schema_cache_answers_pgrst204_until_it_is_read_again(at_008_db):
    seed(at_008_db.conn)
    stale = schema_cache(at_008_db.conn)
    at_008_db.conn.execute("ALTER TABLE chat_conversations ADD COLUMN website_name text")
    update = ({"website_name": "Kedai"}, [("id", "eq", CONVERSATION)])
    with pytest.raises(Pgrst204):
        rest_update(at_008_db.conn, "chat_conversations", *update, cache=stale)
    (row,) = rest_update(at_008_db.conn, "chat_conversations", *update)
    assert row["website_name"] == "Kedai"


def test_an_unknown_selected_column_is_postgresqls_42703(at_008_db):
    """PostgREST does not check select= against its cache: PostgreSQL answers, in the words
    the backend's fallback looks for ("column ... does not exist")."""
    with pytest.raises(psycopg.errors.UndefinedColumn) as error:
        rest_select(at_008_db.conn, "chat_messages", ["id", "message"])
    assert error.value.diag.message_primary == "column chat_messages.message does not exist"


def test_payload_values_become_their_columns_types(at_008_db):
    seed(at_008_db.conn)
    common = {"conversation_id": CONVERSATION, "sender_type": "customer"}
    (obj,) = rest_insert(
        at_008_db.conn,
        "chat_messages",
        {**common, "metadata": {"a": [1, 2]}, "created_at": "2026-07-04T10:15:30"},
    )
    (text,) = rest_insert(at_008_db.conn, "chat_messages", {**common, "metadata": '{"a": 1}'})
    assert obj["metadata"] == {"a": [1, 2]}  # a JSON object stays an object
    assert text["metadata"] == '{"a": 1}'  # json.dumps(...) is stored as a JSON string
    assert obj["created_at"] == "2026-07-04T10:15:30+00:00"  # read in UTC
    assert obj["read_by"] == [] and obj["is_read"] is False  # defaults for what is not sent
    kind = "SELECT jsonb_typeof(metadata) FROM chat_messages WHERE id = %s"
    assert at_008_db.scalar(kind, (text["id"],)) == "string"


def test_filters_eq_neq_in_and_order(at_008_db):
    seed(at_008_db.conn)
    conn = at_008_db.conn
    owner_message = {"conversation_id": CONVERSATION, "sender_type": "owner", "content": "Ya"}
    rest_insert(conn, "chat_messages", owner_message)
    read = rest_update(
        conn,
        "chat_messages",
        {"is_read": True},
        [("conversation_id", "eq", CONVERSATION), ("sender_type", "neq", "owner")],
    )
    assert {row["sender_type"] for row in read} == {"customer"} and len(read) == 2
    rows = rest_select(
        conn, "chat_conversations", ["id"], [("website_id", "in", [WEBSITE, CONVERSATION])]
    )
    assert rows == [{"id": CONVERSATION}]
    ordered = rest_select(
        conn,
        "chat_messages",
        ["sender_type"],
        [("conversation_id", "eq", CONVERSATION)],
        ["created_at.desc"],
        limit=1,
    )
    assert ordered == [{"sender_type": "owner"}]
