"""The chat backend's contract: the calls of calls/backend.calls (read from BinaApp's
code by ``chatdb calls scan``), run as PostgREST runs them for the service-role key
(``chatdb.calls.check.run_calls``), with values made from each column's type.

At head every call does what the models say (tests.contract: all succeed but the two
updates of ``rider_id``, a column of the hand-run 005 that no revision creates, and the
first messages select drops ``message`` through its retry), and every write reads back
what it sent; at 008 exactly the calls that docs/spec/after-008.md section 1 says fail
do fail, derived from the spec's tables (PGRST204 for ``website_name`` and
``message_text``, 23502 for the delivery path's conversation without customer_id,
``message_text`` dropped by the messages select's retry or 42703 without one). The file
covers every call of section 1 (its rows are data below). ``pytest -s -k print`` prints
the before/after table of docs/backend-contract.md, which a test keeps in step.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chatdb.calls.model import WRITING, Call
from tests.contract import (
    CALLS_FILE,
    calls,
    calls_file,
    expected_at_008,
    expected_at_head,
    markdown_table,
    mismatches,
    observe,
    read_back_problems,
    shown,
    writes,
)
from tests.pg import ROOT

CONTRACT_DOC = ROOT / "docs" / "backend-contract.md"
TABLE_START = "<!-- the table: tests/test_backend_contract.py -k print -->"
TABLE_END = "<!-- end of the table -->"


@pytest.fixture(params=["head_db", "supabase_head_db"])
def any_head_db(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["at_008_db", "supabase_at_008_db"])
def any_008_db(request):
    return request.getfixturevalue(request.param)


def listed(problems: list[str]) -> str:
    return "\n" + "\n".join(problems)


# --------------------------------------------------------------------------- at head


def test_every_call_does_at_head_what_the_models_say(any_head_db):
    outcomes = observe(any_head_db.url)
    found = mismatches(outcomes, expected_at_head(calls()))
    assert found == [], listed(found)
    dropped = {o.call.where: o.dropped for o in outcomes if o.dropped}
    assert dropped == {"backend/app/api/v1/endpoints/chat.py:311": ("message",)}, dropped


def test_every_call_that_succeeds_at_head_meets_a_row(head_db):
    """The made row is what the filters find: an update, a delete or a select that
    touched nothing would prove little."""
    outcomes = observe(head_db.url)
    missed = [f"{o.call.render()}: {o.rows} rows" for o in outcomes if o.ok and not o.rows]
    assert missed == [], listed(missed)


def test_every_write_reads_back_what_it_sent_at_head(any_head_db):
    wanted = expected_at_head(writes())
    succeeding = [call for call, w in zip(writes(), wanted, strict=True) if w.ok]
    assert succeeding
    problems = read_back_problems(any_head_db.url, succeeding)
    assert problems == [], listed(problems)


# --------------------------------------------------------------------------- at 008


def test_at_008_exactly_the_calls_the_spec_says_fail_fail(any_008_db):
    """Pins the SQL history: the spec of 004 and 008 (chat-schema.md) decides."""
    outcomes = observe(any_008_db.url)
    found = mismatches(outcomes, expected_at_008(calls()))
    assert found == [], listed(found)
    failing = {shown(o) for o in outcomes if not o.ok}
    assert failing == {
        "PGRST204 website_name",  # the widget's and the delivery path's conversations
        "PGRST204 message_text",  # every message the backend sends, but the AI responder's
        "23502 customer_id",  # the delivery path's conversation, sent again without website_name
        "42703 message_text",  # main.py's messages select, which has no retry
        "PGRST204 rider_id",  # 005's column, at 008 as at head
    }, failing
    retried = {o.call.where: o.dropped for o in outcomes if o.ok and o.dropped}
    assert retried == {"backend/app/api/v1/endpoints/chat.py:311": ("message_text", "message")}, (
        retried
    )


def test_at_008_the_writes_that_succeed_read_back_what_they_sent(at_008_db):
    """Pins the SQL history (the 008 schema)."""
    wanted = expected_at_008(writes())
    succeeding = [call for call, w in zip(writes(), wanted, strict=True) if w.ok]
    assert succeeding, "at 008 the participants and the AI responder's message succeed"
    problems = read_back_problems(at_008_db.url, succeeding, at_head=False)
    assert problems == [], listed(problems)


# --------------------------------------------------------------------------- the file and the spec


@dataclass(frozen=True)
class SpecCall:
    """A row of after-008.md section 1 (and section 4's raw HTTP and helper calls): a
    call of the file must make it, with at least these columns and filters."""

    what: str
    file: str
    table: str
    operation: str
    writes: frozenset[str] = frozenset()
    selects: frozenset[str] = frozenset()
    filters: frozenset[str] = frozenset()
    orders: frozenset[str] = frozenset()
    not_written: frozenset[str] = frozenset()
    via: str = ""

    def matches(self, call: Call) -> bool:
        return (
            call.path.endswith("/" + self.file)
            and call.table == self.table
            and call.operation == self.operation
            and self.writes <= set(call.writes)
            and self.selects <= set(call.selects)
            and self.filters <= {str(f) for f in call.filters}
            and self.orders <= {str(o) for o in call.orders}
            and not self.not_written & set(call.writes)
            and self.via in call.via
        )


def _spec(what, file, table, operation, *, writes="", selects="", filters="", orders="", **more):
    words = lambda text: frozenset(text.split())
    more = {key: words(value) if key == "not_written" else value for key, value in more.items()}
    return SpecCall(
        what,
        file,
        table,
        operation,
        words(writes),
        words(selects),
        words(filters),
        words(orders),
        **more,
    )


CONV, MSG, PART = "chat_conversations", "chat_messages", "chat_participants"
CHAT, DELIVERY, AI = "chat.py", "delivery.py", "ai_chat_responder.py"
SYSTEM_MESSAGE = "id conversation_id sender_type message_text message_type is_read created_at"
SPEC_SECTION_1 = (
    _spec("conversation: create from the widget (chat.py:414-428)", CHAT, CONV, "insert",
          writes="id order_id website_id website_name customer_id customer_name "
          "customer_phone status created_at updated_at"),
    _spec("conversation: create, second endpoint (chat.py:1292-1302)", CHAT, CONV, "insert",
          writes="id website_id customer_name customer_phone customer_id status created_at"),
    _spec("conversation: create for a delivery order (delivery.py:329-345)", DELIVERY, CONV,
          "insert", writes="id order_id website_id website_name customer_name customer_phone "
          "status", not_written="customer_id"),
    _spec("conversation: update updated_at", CHAT, CONV, "update", writes="updated_at"),
    _spec("conversation: unread_owner = 0", CHAT, CONV, "update", writes="unread_owner"),
    _spec("conversation: unread_customer = 0", CHAT, CONV, "update", writes="unread_customer"),
    _spec("conversation: unread_rider = 0", CHAT, CONV, "update", writes="unread_rider"),
    _spec("conversation: status = 'closed'", CHAT, CONV, "update", writes="status"),
    _spec("message: send from the widget (chat.py:711-728)", CHAT, MSG, "insert",
          writes="id conversation_id sender_type sender_id message_type message_text is_read "
          "created_at media_url metadata"),
    _spec("message: system", CHAT, MSG, "insert", writes=SYSTEM_MESSAGE),
    _spec("message: system with sender_name and metadata (chat.py:1050-1062)", CHAT, MSG,
          "insert", writes=SYSTEM_MESSAGE + " sender_name metadata"),
    _spec("message: system from the delivery path, with content (delivery.py:365-372)",
          DELIVERY, MSG, "insert",
          writes="id conversation_id sender_type message_text content is_read"),
    _spec("message: the AI responder's (ai_chat_responder.py:295-307)", AI, MSG, "insert",
          writes="conversation_id sender_type sender_name message_type content metadata",
          via="httpx"),
    _spec("messages: read, filtered by conversation_id and sender_type <>", CHAT, MSG, "update",
          writes="is_read read_at", filters="conversation_id.eq sender_type.neq"),
    _spec("message: metadata", CHAT, MSG, "update", writes="metadata"),
    _spec("participant: customer, owner or rider (chat.py:436-456, 1208-1215)", CHAT, PART,
          "insert", writes="conversation_id user_type user_id user_name is_online created_at"),
    _spec("conversations by id", CHAT, CONV, "select", filters="id.eq"),
    _spec("conversations by website_id (eq)", CHAT, CONV, "select", filters="website_id.eq"),
    _spec("conversations by website_id (in), ordered by updated_at desc", CHAT, CONV, "select",
          filters="website_id.in status.eq", orders="updated_at.desc"),
    _spec("conversations by customer_phone", CHAT, CONV, "select",
          filters="customer_phone.eq status.eq"),
    _spec("conversations by order_id", CHAT, CONV, "select", filters="order_id.eq"),
    _spec("messages by conversation_id, ordered by created_at", CHAT, MSG, "select",
          selects="id conversation_id message_text content sender_type message_type media_url "
          "metadata is_read created_at", filters="conversation_id.eq", orders="created_at.asc"),
    # section 4: raw PostgREST over HTTP, and helpers that take the table name
    _spec("the AI responder's conversations of a website (section 4)", AI, CONV, "select",
          selects="id", filters="website_id.eq", via="httpx"),
    _spec("the AI responder's last message (section 4)", AI, MSG, "select",
          selects="id sender_type content created_at", filters="conversation_id.eq",
          orders="created_at.desc", via="httpx"),
    _spec("analytics: conversations of a website (section 4)", "analytics.py", CONV, "select",
          filters="website_id.eq created_at.gte", via="_db_query"),
    _spec("analytics: messages of conversations (section 4)", "analytics.py", MSG, "select",
          filters="conversation_id.in", via="_db_count"),
    _spec("supabase_client: delete_by_ids (section 4)", "supabase_client.py", MSG, "delete",
          filters="conversation_id.in", via="delete_by_ids"),
    _spec("supabase_client: delete_from_table (section 4)", "supabase_client.py", CONV,
          "delete", filters="website_id.eq", via="delete_from_table"),
)  # fmt: skip


def test_the_calls_file_covers_every_call_of_after_008_section_1():
    missing = [spec.what for spec in SPEC_SECTION_1 if not any(map(spec.matches, calls()))]
    assert missing == [], listed(missing)


def test_the_calls_file_is_one_line_per_call_on_the_chat_tables():
    rendered = [call.render() for call in calls()]
    assert len(rendered) == len(set(rendered))
    assert {call.table for call in calls()} == {CONV, MSG, PART}
    assert all(call.path.startswith("backend/app/") for call in calls())
    assert all(bool(call.writes) == (call.operation in WRITING) for call in calls())
    header = " ".join(calls_file().header)
    assert "backend/app" in header and "backend/tests" in header, header
    assert CALLS_FILE.read_text() == calls_file().render()  # as the scan writes it


# --------------------------------------------------------------------------- the table of the docs


def test_print_the_contract_before_and_after(at_008_db, head_db):
    """pytest -s: the table, as observed; docs/backend-contract.md holds the same."""
    before, after = observe(at_008_db.url), observe(head_db.url)
    table = markdown_table(before, after)
    print()
    print(table)
    text = CONTRACT_DOC.read_text()
    assert TABLE_START in text and TABLE_END in text
    documented = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert documented == table, (
        "docs/backend-contract.md's table is not the observed one: paste the printed table "
        f"between its markers{listed([table])}"
    )
