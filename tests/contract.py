"""The chat backend's contract with the database, as data: docs/spec/after-008.md, section 1.

The backend (BinaApp at commit 7938e1d: backend/app/api/v1/endpoints/chat.py and
delivery.py, backend/app/services/ai_chat_responder.py) reaches the chat tables only
through PostgREST with the service-role key. ``CONTRACT`` lists every write and read it
makes there, one ``Call`` each: the table, the operation, exactly the columns it sends
(a payload, as the code builds it) or selects, its filters, the source lines, and what
happens at revision 008 and at head. A change to the backend is a change to one entry.

Payloads are JSON, as supabase-py sends them: ids are uuid strings, times are
``datetime.utcnow().isoformat()`` strings (no time zone: PostgreSQL reads them in the
session's, UTC on Supabase), metadata is a JSON object, except where chat.py:726 sends
``json.dumps(metadata)``, a JSON string. Every call needs the rows ``seed`` writes (a
website of tests.postgrest.OWNER, an order, a conversation, a customer message, a
payment message and the owner's participant), and runs through tests.postgrest's
``rest_insert`` / ``rest_update`` / ``rest_select``.

Outcomes: ``None`` is success; ``Fails(code, column)`` is an error, ``PGRST204`` from
PostgREST's schema cache (the column is unknown) or a SQLSTATE from PostgreSQL
(``23502`` not_null_violation, ``42703`` undefined_column), with the column it names.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import psycopg

from tests.postgrest import (
    OWNER,
    Filter,
    Pgrst204,
    rest_insert,
    rest_select,
    rest_update,
)


@dataclass(frozen=True)
class Fails:
    code: str  # "PGRST204" or a SQLSTATE
    column: str  # the column the error names

    def __str__(self) -> str:
        return f"{self.code} {self.column}"


def show(outcome: Fails | None) -> str:
    return "ok" if outcome is None else str(outcome)


@dataclass(frozen=True)
class Call:
    name: str
    table: str
    operation: str  # INSERT, UPDATE or SELECT
    source: str  # file:lines in BinaApp at 7938e1d
    payload: dict = field(default_factory=dict)  # INSERT, UPDATE: exactly what is sent
    select: tuple[str, ...] = ()  # SELECT: the columns asked for ("*": all)
    filters: tuple[Filter, ...] = ()  # UPDATE, SELECT
    order: tuple[str, ...] = ()  # SELECT: PostgREST's column.desc / column.asc
    limit: int | None = None
    at_008: Fails | None = None
    at_head: Fails | None = None
    reads_back: dict = field(default_factory=dict)  # at head, values of columns not sent
    trigger_sets: tuple[str, ...] = ()  # sent columns whose value a trigger replaces
    note: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns sent (INSERT, UPDATE) or selected (SELECT)."""
        return self.select if self.operation == "SELECT" else tuple(self.payload)

    @property
    def filter_columns(self) -> tuple[str, ...]:
        return tuple(column for column, _, _ in self.filters)


# --------------------------------------------------------------------------- the seed


def _id(n: int) -> str:
    return str(uuid.UUID(f"5eed0000-0000-4000-8000-{n:012d}"))


WEBSITE = _id(1)  # owned by tests.postgrest.OWNER
ORDER = _id(2)
CONVERSATION = _id(3)
CUSTOMER_MESSAGE = _id(4)
PAYMENT_MESSAGE = _id(5)
PHONE = "0123456789"
DELIVERY_PHONE = "0177777777"
NOW = "2026-07-04T10:15:30.123456"  # datetime.utcnow().isoformat()
# Ids the backend generates (uuid.uuid4()) for what it creates.
NEW_CONVERSATION = _id(11)
NEW_PHONE_CONVERSATION = _id(12)
NEW_ORDER_CONVERSATION = _id(13)  # the delivery path's retry sends the same id again
NEW_MESSAGES = {
    name: _id(20 + n)
    for n, name in enumerate(
        ("send", "send_media", "welcome", "verified", "closed", "rider", "phone", "delivery")
    )
}


def seed(conn: psycopg.Connection) -> None:
    """The rows every call needs, written as the superuser with columns 008 and head share."""
    conn.execute("INSERT INTO websites (id, user_id) VALUES (%s, %s)", (WEBSITE, OWNER))
    conn.execute("INSERT INTO delivery_orders (id) VALUES (%s)", (ORDER,))
    conn.execute(
        "INSERT INTO chat_conversations (id, order_id, website_id, customer_id, customer_name, "
        "customer_phone, status) VALUES (%s, %s, %s, %s, 'Aminah', %s, 'active')",
        (CONVERSATION, ORDER, WEBSITE, f"customer_{PHONE}", PHONE),
    )
    conn.execute(
        "INSERT INTO chat_messages (id, conversation_id, sender_type, sender_id, content) "
        "VALUES (%s, %s, 'customer', %s, 'Ada nasi lemak?')",
        (CUSTOMER_MESSAGE, CONVERSATION, f"customer_{PHONE}"),
    )
    conn.execute(
        "INSERT INTO chat_messages (id, conversation_id, sender_type, sender_id, message_type, "
        "media_url, metadata) VALUES (%s, %s, 'customer', %s, 'payment', %s, %s::jsonb)",
        (
            PAYMENT_MESSAGE,
            CONVERSATION,
            f"customer_{PHONE}",
            "https://cdn.example.test/chat/receipt.png",
            '{"amount": 25.5, "status": "pending"}',
        ),
    )
    # the owner (user_id NULL, so the calls' participants do not collide with it)
    conn.execute(
        "INSERT INTO chat_participants (conversation_id, user_type, user_name) "
        "VALUES (%s, 'owner', 'Pemilik Kedai')",
        (CONVERSATION,),
    )


# --------------------------------------------------------------------------- the contract

CONV, MSG, PART = "chat_conversations", "chat_messages", "chat_participants"
NO_WEBSITE_NAME = Fails("PGRST204", "website_name")
NO_MESSAGE_TEXT = Fails("PGRST204", "message_text")
BY_ID = (("id", "eq", CONVERSATION),)
# chat.py:259-271: what _fetch_chat_messages selects first; it drops a column each time
# PostgreSQL answers "column ... does not exist" (chat.py:317-325) and tries again.
MESSAGE_COLUMNS = (
    "id",
    "conversation_id",
    "message_text",
    "content",
    "message",
    "sender_type",
    "message_type",
    "media_url",
    "metadata",
    "is_read",
    "created_at",
)
WITHOUT_MESSAGE = tuple(c for c in MESSAGE_COLUMNS if c != "message")
WITHOUT_BOTH = tuple(c for c in WITHOUT_MESSAGE if c != "message_text")
MESSAGES_OF = (("conversation_id", "eq", CONVERSATION),)

CONTRACT: tuple[Call, ...] = (
    # ------------------------------------------------ chat_conversations: writes
    Call("conversation: create from the widget", CONV, "INSERT", "chat.py:414-428",
         {"id": NEW_CONVERSATION, "order_id": None, "website_id": WEBSITE,
          "website_name": "Kedai Contoh", "customer_id": f"customer_{PHONE}",
          "customer_name": "Aminah", "customer_phone": PHONE, "status": "active",
          "created_at": NOW, "updated_at": NOW},
         at_008=NO_WEBSITE_NAME,
         note="its fallback (chat.py:209-256) only knows 'column ... does not exist'"),
    Call("conversation: create (phone endpoint)", CONV, "INSERT", "chat.py:1292-1302",
         {"id": NEW_PHONE_CONVERSATION, "website_id": WEBSITE, "customer_name": "Aminah",
          "customer_phone": PHONE, "customer_id": f"customer_{PHONE}", "status": "active",
          "created_at": NOW}),
    Call("conversation: create for a delivery order", CONV, "INSERT", "delivery.py:329-339",
         {"id": NEW_ORDER_CONVERSATION, "order_id": ORDER, "website_id": WEBSITE,
          "website_name": "Kedai Contoh", "customer_name": "Siti",
          "customer_phone": DELIVERY_PHONE, "status": "active"},
         at_008=NO_WEBSITE_NAME, reads_back={"customer_id": f"customer_{DELIVERY_PHONE}"},
         note="no customer_id: the comment says the column was removed"),
    Call("conversation: delivery retry without website_name", CONV, "INSERT",
         "delivery.py:341-345",
         {"id": NEW_ORDER_CONVERSATION, "order_id": ORDER, "website_id": WEBSITE,
          "customer_name": "Siti", "customer_phone": DELIVERY_PHONE, "status": "active"},
         at_008=Fails("23502", "customer_id"),
         reads_back={"customer_id": f"customer_{DELIVERY_PHONE}"},
         note="after an error result it pops website_name and inserts again, then logs the "
              "error: the order gets no conversation. supabase-py 2 raises APIError "
              "instead of returning an error result, so the retry is never reached"),
    Call("conversation: bump updated_at", CONV, "UPDATE", "chat.py:735-737",
         {"updated_at": NOW}, filters=BY_ID, trigger_sets=("updated_at",),
         note="004's update_chat_conversations_updated_at sets it to now() instead"),
    Call("conversation: customer read, reset unread", CONV, "UPDATE", "chat.py:949-961",
         {"unread_customer": 0}, filters=BY_ID),
    Call("conversation: owner read, reset unread", CONV, "UPDATE", "chat.py:951-961",
         {"unread_owner": 0}, filters=BY_ID),
    Call("conversation: rider read, reset unread", CONV, "UPDATE", "chat.py:953-961",
         {"unread_rider": 0}, filters=BY_ID),
    Call("conversation: close", CONV, "UPDATE", "chat.py:1166-1168",
         {"status": "closed"}, filters=BY_ID),
    # ------------------------------------------------ chat_messages: writes
    Call("message: send (widget)", MSG, "INSERT", "chat.py:711-728",
         {"id": NEW_MESSAGES["send"], "conversation_id": CONVERSATION, "sender_type": "customer",
          "sender_id": f"customer_{PHONE}", "message_type": "text",
          "message_text": "Boleh hantar ke pejabat?", "is_read": False, "created_at": NOW},
         at_008=NO_MESSAGE_TEXT),
    Call("message: send with media_url and metadata", MSG, "INSERT", "chat.py:711-728",
         {"id": NEW_MESSAGES["send_media"], "conversation_id": CONVERSATION,
          "sender_type": "customer", "sender_id": f"customer_{PHONE}", "message_type": "image",
          "message_text": "Gambar", "is_read": False, "created_at": NOW,
          "media_url": "https://cdn.example.test/chat/photo.jpg",
          "metadata": '{"width": 640, "height": 480}'},
         at_008=NO_MESSAGE_TEXT,
         note="metadata is json.dumps(dict) (chat.py:726): stored as a JSON string"),
    Call("message: welcome (system)", MSG, "INSERT", "chat.py:464-472",
         {"id": NEW_MESSAGES["welcome"], "conversation_id": CONVERSATION,
          "sender_type": "system", "message_text": "Perbualan dimulakan.",
          "message_type": "text", "is_read": False, "created_at": NOW},
         at_008=NO_MESSAGE_TEXT),
    Call("message: payment verified (system)", MSG, "INSERT", "chat.py:1050-1062",
         {"id": NEW_MESSAGES["verified"], "conversation_id": CONVERSATION,
          "sender_type": "system", "sender_name": "Sistem", "message_type": "system",
          "message_text": "Pembayaran disahkan oleh pemilik",
          "metadata": {"verified_message_id": PAYMENT_MESSAGE}, "is_read": False,
          "created_at": NOW},
         at_008=NO_MESSAGE_TEXT),
    Call("message: conversation closed (system)", MSG, "INSERT", "chat.py:1173-1181",
         {"id": NEW_MESSAGES["closed"], "conversation_id": CONVERSATION,
          "sender_type": "system", "message_text": "Perbualan telah ditutup.",
          "message_type": "text", "is_read": False, "created_at": NOW},
         at_008=NO_MESSAGE_TEXT),
    Call("message: rider assigned (system)", MSG, "INSERT", "chat.py:1220-1228",
         {"id": NEW_MESSAGES["rider"], "conversation_id": CONVERSATION,
          "sender_type": "system", "message_text": "Rider Ali telah ditugaskan.",
          "message_type": "text", "is_read": False, "created_at": NOW},
         at_008=NO_MESSAGE_TEXT),
    Call("message: send (phone endpoint)", MSG, "INSERT", "chat.py:1340-1350",
         {"id": NEW_MESSAGES["phone"], "conversation_id": CONVERSATION,
          "sender_type": "customer", "message_text": "Terima kasih", "message_type": "text",
          "is_read": False, "created_at": NOW},
         at_008=NO_MESSAGE_TEXT),
    Call("message: delivery status (system)", MSG, "INSERT", "delivery.py:365-372",
         {"id": NEW_MESSAGES["delivery"], "conversation_id": CONVERSATION,
          "sender_type": "system", "message_text": "Rider ditugaskan: Ali",
          "content": "Rider ditugaskan: Ali", "is_read": False},
         at_008=NO_MESSAGE_TEXT),
    Call("message: AI responder reply", MSG, "INSERT", "ai_chat_responder.py:295-307",
         {"conversation_id": CONVERSATION, "sender_type": "system", "sender_name": "BinaBot",
          "message_type": "text", "content": "Terima kasih atas mesej anda!",
          "metadata": {"ai_generated": True, "model": "deepseek-chat"}},
         reads_back={"message_text": ""}, note="no id, no message_text"),
    Call("messages: mark read", MSG, "UPDATE", "chat.py:934-939",
         {"is_read": True, "read_at": NOW},
         filters=(("conversation_id", "eq", CONVERSATION), ("sender_type", "neq", "owner"))),
    Call("message: payment verified, metadata", MSG, "UPDATE", "chat.py:1040-1042",
         {"metadata": {"amount": 25.5, "status": "verified", "verified_at": NOW,
                       "verified_by": str(OWNER)}},
         filters=(("id", "eq", PAYMENT_MESSAGE),)),
    # ------------------------------------------------ chat_participants: writes
    Call("participant: customer", PART, "INSERT", "chat.py:436-443",
         {"conversation_id": CONVERSATION, "user_type": "customer",
          "user_id": f"customer_{PHONE}", "user_name": "Aminah", "is_online": True,
          "created_at": NOW}),
    Call("participant: owner", PART, "INSERT", "chat.py:449-456",
         {"conversation_id": CONVERSATION, "user_type": "owner", "user_id": None,
          "user_name": "Pemilik Kedai", "is_online": False, "created_at": NOW}),
    Call("participant: rider", PART, "INSERT", "chat.py:1208-1215",
         {"conversation_id": CONVERSATION, "user_type": "rider", "user_id": "rider-7",
          "user_name": "Ali", "is_online": True, "created_at": NOW}),
    # ------------------------------------------------ reads
    Call("conversation by id", CONV, "SELECT", "chat.py:496", select=("*",), filters=BY_ID),
    Call("conversations of the owner's websites", CONV, "SELECT", "chat.py:565-586",
         select=("*",), filters=(("website_id", "in", [WEBSITE]), ("status", "eq", "active")),
         order=("updated_at.desc",)),
    Call("conversations of one website", CONV, "SELECT", "chat.py:639-644", select=("*",),
         filters=(("website_id", "eq", WEBSITE), ("status", "eq", "active")),
         order=("updated_at.desc",)),
    Call("active conversation of a phone", CONV, "SELECT", "chat.py:1270-1275",
         select=("*",),
         filters=(("website_id", "eq", WEBSITE), ("customer_phone", "eq", PHONE),
                  ("status", "eq", "active"))),
    Call("conversation of an order", CONV, "SELECT", "chat.py:679", select=("*",),
         filters=(("order_id", "eq", ORDER),)),
    Call("conversation id of an order", CONV, "SELECT", "chat.py:1115, delivery.py:2853",
         select=("id",), filters=(("order_id", "eq", ORDER),)),
    Call("conversation's website and order", CONV, "SELECT", "chat.py:1018-1020",
         select=("website_id", "order_id"), filters=BY_ID),
    Call("conversation ids of a website (AI responder)", CONV, "SELECT",
         "ai_chat_responder.py:230-237", select=("id",),
         filters=(("website_id", "eq", WEBSITE),)),
    Call("messages, first try", MSG, "SELECT", "chat.py:259-271, 311-313",
         select=MESSAGE_COLUMNS, filters=MESSAGES_OF, order=("created_at.asc",),
         at_008=Fails("42703", "message_text"), at_head=Fails("42703", "message"),
         note="the fallback drops the column it names and selects again"),
    Call("messages, without message", MSG, "SELECT", "chat.py:311-325",
         select=WITHOUT_MESSAGE, filters=MESSAGES_OF, order=("created_at.asc",),
         at_008=Fails("42703", "message_text"),
         note="at head, what the backend settles on (after-008.md's list)"),
    Call("messages, without message and message_text", MSG, "SELECT", "chat.py:311-325",
         select=WITHOUT_BOTH, filters=MESSAGES_OF, order=("created_at.asc",),
         note="at 008, what the backend settles on: it shows content (chat.py:277)"),
    Call("message by id", MSG, "SELECT", "chat.py:1009", select=("*",),
         filters=(("id", "eq", PAYMENT_MESSAGE),)),
    Call("last message (AI responder)", MSG, "SELECT", "ai_chat_responder.py:247-256",
         select=("id", "sender_type", "content", "created_at"), filters=MESSAGES_OF,
         order=("created_at.desc",), limit=1),
    Call("participants of a conversation", PART, "SELECT", "chat.py:506-508", select=("*",),
         filters=MESSAGES_OF),
)  # fmt: skip


# --------------------------------------------------------------------------- running a call


def run(conn: psycopg.Connection, call: Call, *, commit: bool = True) -> list[dict]:
    """The call as PostgREST runs it for the service-role key; the rows it answers."""
    if call.operation == "INSERT":
        return rest_insert(conn, call.table, call.payload, commit=commit)
    if call.operation == "UPDATE":
        return rest_update(conn, call.table, call.payload, call.filters, commit=commit)
    return rest_select(conn, call.table, call.select, call.filters, call.order, limit=call.limit)


_UNKNOWN_COLUMN = re.compile(r'column (?:\w+\.)?"?(\w+)"? (?:of relation "\w+" )?does not exist')


def failure(error: Exception) -> Fails:
    """The outcome of an error: PostgREST's PGRST204 or PostgreSQL's SQLSTATE and column."""
    if isinstance(error, Pgrst204):
        return Fails(error.code, error.column)
    if isinstance(error, psycopg.Error) and error.sqlstate:
        column = error.diag.column_name
        if column is None:
            match = _UNKNOWN_COLUMN.search(error.diag.message_primary or "")
            column = match.group(1) if match else ""
        return Fails(error.sqlstate, column)
    raise error


def outcome(conn: psycopg.Connection, call: Call) -> Fails | None:
    """What happens to the call on this database; nothing it does is kept."""
    with conn.transaction(force_rollback=True):
        try:
            run(conn, call)
        except (Pgrst204, psycopg.Error) as error:
            return failure(error)
    return None


def markdown_table(at_008: dict[str, Fails | None], at_head: dict[str, Fails | None]) -> str:
    """The contract before (008) and after (head), one row per call, for docs/backend-contract.md."""
    header = (
        "call | table | operation | columns sent or selected | filters | source | at 008 | at head"
    )
    lines = [f"| {header} |", "|---" * 8 + "|"]
    for call in CONTRACT:
        lines.append(
            f"| {call.name} | {call.table} | {call.operation} | {', '.join(call.columns)} "
            f"| {', '.join(call.filter_columns)} | {call.source} "
            f"| {show(at_008[call.name])} | {show(at_head[call.name])} |"
        )
    return "\n".join(lines)
