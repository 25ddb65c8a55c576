"""The four shapes of a chat database that the project must take over, with rows in them.

docs/spec/after-008.md, section 3: production's chat tables were made and changed by
hand-run SQL, none of it recorded, so a database handed to ``alembic upgrade head`` can
be in any of these shapes (and more):

- (a) 004 and 008 run by hand (tests/sql/original_004_chat_system.sql,
  original_008_fix_customer_id.sql): today's adoption case;
- (b) the older script's tables (tests/sql/hand_run/older_script.sql): text website_id
  and order_id, NOT NULL name and phone, ``message text NOT NULL``, no sender_id, no
  unread counters, no chat_participants, no row level security;
- (c) (a), then 009 (as it had to be run there, without ``message``), 010, 012, 013 and
  the chat part of 049 (tests/sql/hand_run/);
- (d) 014's FIX A rebuild, then the chat part of 049.

Each builder takes the URL of a database prepared like Supabase
(tests/sql/supabase_like.sql), runs the shape's SQL files and fills every chat table
that exists, deterministically: conversations of two websites (owned by
tests.postgrest.OWNER and STRANGER), some without a phone or a customer_id where the
columns allow it; messages of each sender type, some with empty or no content, some
with media_url and metadata; participants where the table exists. Rows are written
with ``session_replication_role = replica``, so that 004's triggers do not stamp
``now()`` or change the counters: every value is fixed, run after run.

``all_rows(conn)`` reads every row and every column of every chat table as text, so a
test compares "every row and every value kept" before and after a migration with
``lost(before, after)``. ``template(shape)`` is the pytest-postgresql ``load`` callable
that conftest.py registers (fixtures ``shape_a_db`` ... ``shape_d_db``, ``any_shape_db``
in tests/fixtures.py).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.pg import loader, run_sql_file
from tests.postgrest import OWNER, STRANGER

SHAPES = ("a", "b", "c", "d")
CHAT_TABLES = ("chat_conversations", "chat_messages", "chat_participants")


def _uuid(prefix: str, n: int) -> uuid.UUID:
    return uuid.UUID(f"{prefix}-0000-4000-8000-{n:012d}")


def conversation_id(n: int) -> uuid.UUID:
    return _uuid("c0000000", n)


def message_id(n: int) -> uuid.UUID:
    return _uuid("ee000000", n)


def participant_id(n: int) -> uuid.UUID:
    return _uuid("fa000000", n)


WEBSITE_A = _uuid("ab000000", 1)  # OWNER's
WEBSITE_B = _uuid("ab000000", 2)  # STRANGER's
ORDER_1 = _uuid("0d000000", 1)  # website A's
ORDER_2 = _uuid("0d000000", 2)  # website B's
WEBSITES = ((WEBSITE_A, OWNER, "Kedai Aminah"), (WEBSITE_B, STRANGER, "Restoran Chong"))
ORDERS = ((ORDER_1, WEBSITE_A), (ORDER_2, WEBSITE_B))
T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
CUSTOMER_1 = "customer_0123456789"  # conversation 1's customer_id
CUSTOMER_3 = "customer_0198765432"  # what 008 gives conversation 3


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --------------------------------------------------------------------------- the rows


@dataclass(frozen=True)
class Conversation:
    n: int
    website: uuid.UUID
    order: uuid.UUID | None
    phone: str | None
    name: str | None
    customer_id: str | None  # None: the row has none (NULL where allowed, else 008's value)
    status: str
    unread: tuple[int, int, int]  # owner, customer, rider (where the counters exist)
    minutes: int  # created at at(minutes), updated 30 minutes later

    @property
    def id(self) -> uuid.UUID:
        return conversation_id(self.n)

    def customer_id_008(self) -> str:
        """The value 008's backfill gives: COALESCE(customer_id, 'customer_' || phone,
        'customer_unknown_' || id)."""
        if self.customer_id is not None:
            return self.customer_id
        if self.phone is not None:
            return f"customer_{self.phone}"
        return f"customer_unknown_{self.id}"


CONVERSATIONS = (
    Conversation(1, WEBSITE_A, ORDER_1, "0123456789", "Aminah", CUSTOMER_1, "active", (1, 2, 1), 0),
    Conversation(2, WEBSITE_A, None, None, "Pelanggan", None, "active", (1, 0, 0), 60),
    Conversation(3, WEBSITE_B, ORDER_2, "0198765432", "Chong", None, "closed", (0, 1, 0), 120),
    Conversation(4, WEBSITE_B, None, None, None, "customer_legacy_4", "archived", (0, 0, 0), 180),
)
UPPER_CASE_CONVERSATION = 4  # in (b), its text website_id is written in upper case


@dataclass(frozen=True)
class Message:
    n: int
    conversation: int
    sender_type: str
    sender_id: str | None
    sender_name: str | None
    message_type: str
    text: str | None  # what was said, in 004's content ('' and NULL included)
    is_read: bool
    minutes: int
    media_url: str | None = None
    metadata: dict | None = None

    @property
    def id(self) -> uuid.UUID:
        return message_id(self.n)


PHOTO = "https://cdn.example.test/chat/5.jpg"
RECEIPT = "https://cdn.example.test/chat/6-receipt.png"
LOCATION = {"lat": 3.139, "lng": 101.6869}
SIZE = {"width": 640, "height": 480}
PAYMENT = {"amount": 25.5, "status": "pending"}
MESSAGES = (
    Message(1, 1, "customer", CUSTOMER_1, None, "text", "Nak nasi lemak", True, 1),
    Message(2, 1, "owner", str(OWNER), "Kedai Aminah", "text", "Boleh, 15 minit", True, 2),
    Message(3, 1, "rider", "rider-7", "Ali", "location", "", False, 20, None, LOCATION),
    Message(4, 1, "system", None, "Sistem", "status", "Sedang dihantar", False, 21),
    Message(5, 2, "customer", None, None, "image", "", False, 61, PHOTO, SIZE),
    Message(6, 3, "customer", CUSTOMER_3, None, "payment", None, False, 121, RECEIPT, PAYMENT),
    Message(7, 3, "owner", str(STRANGER), None, "text", "Terima kasih", True, 125),
    Message(8, 4, "customer", None, None, "text", "Masih buka?", False, 181),
)
# (b) has `message text NOT NULL` beside content: (message, content) per message, so
# that 009's COALESCE(NULLIF(message, ''), NULLIF(content, ''), '') meets every case.
OLDER_TEXTS = {
    1: ("Nak nasi lemak", None),
    2: ("Boleh, 15 minit", "Boleh, 15 minit"),
    3: ("", ""),
    4: ("", "Sedang dihantar"),
    5: ("", None),
    6: ("Bukti bayaran", None),
    7: ("Terima kasih", "Terima kasih"),
    8: ("Masih buka?", "Masih buka? (disunting)"),
}
# (d) was written by the backend after FIX A: message_text always, content only where the
# backend also sends it (the delivery path's system messages, delivery.py:365-372).
FIX_A_CONTENT = {4: "Sedang dihantar"}
# (d) also holds messages an older writer stored without a type: a NULL and an empty one,
# which 012's backfill turns into 'text' (the type MESSAGES gives them).
FIX_A_TYPES = {7: None, 8: ""}
# (c): a message written after 049 by today's backend (chat.py:711-728): message_text only.
NEWER_MESSAGE = Message(9, 1, "customer", CUSTOMER_1, None, "text", "Dah sampai?", False, 240)


@dataclass(frozen=True)
class Participant:
    n: int
    conversation: int
    user_type: str
    user_id: str | None
    user_name: str | None
    is_online: bool
    last_seen: datetime | None
    minutes: int


PARTICIPANTS = (
    Participant(1, 1, "customer", CUSTOMER_1, "Aminah", True, None, 0),
    Participant(2, 1, "owner", None, "Pemilik Kedai", False, None, 0),
    Participant(3, 1, "rider", "rider-7", "Ali", False, at(25), 15),
    Participant(4, 3, "customer", CUSTOMER_3, "Chong", False, at(130), 120),
)

# bad_ids_variant of (b): text website_ids that do not cast to uuid.
BAD_WEBSITE_IDS = ("site-42", "undefined")
BAD_CONVERSATIONS = {91: "site-42", 92: "undefined"}  # conversation n -> website_id
BAD_MESSAGE = 91  # a message in conversation 91


# --------------------------------------------------------------------------- writing rows


def _insert(conn: psycopg.Connection, table: str, rows: list[dict]) -> None:
    for row in rows:
        values = [Jsonb(v) if isinstance(v, dict | list) else v for v in row.values()]
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier("public", table),
                sql.SQL(", ").join(sql.Identifier(name) for name in row),
                sql.SQL(", ").join(sql.Placeholder() * len(row)),
            ),
            values,
        )


def _fill(url: str, write) -> None:
    """Run ``write(conn)`` in one transaction with triggers off (fixed values)."""
    with psycopg.connect(url) as conn:
        conn.execute("SET LOCAL session_replication_role = replica")
        write(conn)


def _websites(conn: psycopg.Connection) -> None:
    _insert(conn, "websites", [{"id": i, "user_id": u, "name": n} for i, u, n in WEBSITES])
    _insert(conn, "delivery_orders", [{"id": i, "website_id": w} for i, w in ORDERS])


def _read_at(message: Message) -> datetime | None:
    return at(message.minutes + 5) if message.is_read else None


def _rows_004(conn: psycopg.Connection) -> None:
    """(a), and (c) before 009: 004's columns, customer_id as 008 left it."""
    _websites(conn)
    _insert(
        conn,
        "chat_conversations",
        [
            {
                "id": c.id,
                "order_id": c.order,
                "website_id": c.website,
                "customer_id": c.customer_id_008(),
                "customer_name": c.name,
                "customer_phone": c.phone,
                "status": c.status,
                "unread_owner": c.unread[0],
                "unread_customer": c.unread[1],
                "unread_rider": c.unread[2],
                "created_at": at(c.minutes),
                "updated_at": at(c.minutes + 30),
            }
            for c in CONVERSATIONS
        ],
    )
    _insert(
        conn,
        "chat_messages",
        [
            {
                "id": m.id,
                "conversation_id": conversation_id(m.conversation),
                "sender_type": m.sender_type,
                "sender_id": m.sender_id,
                "sender_name": m.sender_name,
                "message_type": m.message_type,
                "content": m.text,
                "media_url": m.media_url,
                "metadata": m.metadata,
                "is_read": m.is_read,
                "read_at": _read_at(m),
                "read_by": ["owner"] if m.is_read and m.sender_type == "customer" else [],
                "created_at": at(m.minutes),
            }
            for m in MESSAGES
        ],
    )
    _participants(conn)


def _participants(conn: psycopg.Connection) -> None:
    _insert(
        conn,
        "chat_participants",
        [
            {
                "id": participant_id(p.n),
                "conversation_id": conversation_id(p.conversation),
                "user_type": p.user_type,
                "user_id": p.user_id,
                "user_name": p.user_name,
                "is_online": p.is_online,
                "last_seen": p.last_seen,
                "created_at": at(p.minutes),
            }
            for p in PARTICIPANTS
        ],
    )


def _older_conversation(c: Conversation) -> dict:
    website = str(c.website)
    if c.n == UPPER_CASE_CONVERSATION:
        website = website.upper()
    return {
        "id": c.id,
        "website_id": website,
        "order_id": None if c.order is None else str(c.order),
        "customer_id": c.customer_id,  # nullable here: NULL stays NULL
        "customer_name": c.name if c.name is not None else "Customer",  # NOT NULL here
        "customer_phone": c.phone if c.phone is not None else "",  # NOT NULL here
        "status": c.status,
        "created_at": at(c.minutes),
        "updated_at": at(c.minutes + 30),
    }


def _older_message(m: Message, conversation: uuid.UUID, texts: tuple[str, str | None]) -> dict:
    return {
        "id": m.id,
        "conversation_id": conversation,
        "sender_type": m.sender_type,
        "message": texts[0],
        "content": texts[1],
        "message_type": m.message_type,
        "media_url": m.media_url,
        "metadata": m.metadata,
        "is_read": m.is_read,
        "created_at": at(m.minutes),
    }


def _rows_older(conn: psycopg.Connection) -> None:
    _websites(conn)
    _insert(conn, "chat_conversations", [_older_conversation(c) for c in CONVERSATIONS])
    _insert(
        conn,
        "chat_messages",
        [_older_message(m, conversation_id(m.conversation), OLDER_TEXTS[m.n]) for m in MESSAGES],
    )


def add_bad_website_ids(conn: psycopg.Connection) -> None:
    """(b)'s bad_ids_variant: conversations whose text website_id is no uuid, one with a
    message. Usable on a clone of shape (b) too (``add_bad_website_ids(shape_b_db.conn)``)."""
    _insert(
        conn,
        "chat_conversations",
        [
            {
                "id": conversation_id(n),
                "website_id": website,
                "order_id": None,
                "customer_id": None,
                "customer_name": "Legacy",
                "customer_phone": f"01100000{n}",
                "status": "active",
                "created_at": at(300 + n),
                "updated_at": at(300 + n),
            }
            for n, website in BAD_CONVERSATIONS.items()
        ],
    )
    message = Message(BAD_MESSAGE, 91, "customer", None, None, "text", None, False, 400)
    _insert(conn, "chat_messages", [_older_message(message, conversation_id(91), ("Helo?", None))])


def _rows_newer(conn: psycopg.Connection) -> None:
    """(c) after 049: one message as today's backend writes it (message_text only)."""
    m = NEWER_MESSAGE
    _insert(
        conn,
        "chat_messages",
        [
            {
                "id": m.id,
                "conversation_id": conversation_id(m.conversation),
                "sender_type": m.sender_type,
                "sender_id": m.sender_id,
                "message_type": m.message_type,
                "message_text": m.text,
                "is_read": False,
                "created_at": at(m.minutes),
            }
        ],
    )


def _rows_fix_a(conn: psycopg.Connection) -> None:
    _websites(conn)
    names = {website: name for website, _, name in WEBSITES}
    _insert(
        conn,
        "chat_conversations",
        [
            {
                "id": c.id,
                "order_id": c.order,
                "website_id": c.website,
                "customer_id": c.customer_id_008(),
                "customer_name": c.name,
                "customer_phone": c.phone,
                # the widget path sends website_name (chat.py:418), the phone path does not
                "website_name": names[c.website] if c.phone else None,
                "status": c.status,
                "unread_owner": c.unread[0],
                "unread_customer": c.unread[1],
                "unread_rider": c.unread[2],
                "created_at": at(c.minutes),
                "updated_at": at(c.minutes + 30),
            }
            for c in CONVERSATIONS
        ],
    )
    _insert(
        conn,
        "chat_messages",
        [
            {
                "id": m.id,
                "conversation_id": conversation_id(m.conversation),
                "sender_type": m.sender_type,
                "sender_id": m.sender_id,
                "message_type": FIX_A_TYPES.get(m.n, m.message_type),
                "message_text": m.text or "",
                "content": FIX_A_CONTENT.get(m.n),
                "media_url": m.media_url,
                "metadata": m.metadata,
                "is_read": m.is_read,
                "read_at": _read_at(m),
                "created_at": at(m.minutes),
            }
            for m in MESSAGES
        ],
    )
    _participants(conn)


# --------------------------------------------------------------------------- the builders


def prepare_like_supabase(url: str) -> None:
    run_sql_file(url, "supabase_like.sql")


def _run(url: str, *names: str) -> None:
    for name in names:
        run_sql_file(url, name)


def build_a(url: str) -> None:
    """(a): 004 and 008 as run by hand, then the rows."""
    _run(url, "original_004_chat_system.sql", "original_008_fix_customer_id.sql")
    _fill(url, _rows_004)


def build_b(url: str, *, bad_ids_variant: bool = False) -> None:
    """(b): the older script's tables and rows; ``bad_ids_variant`` adds conversations
    whose text website_id does not cast to uuid (BAD_WEBSITE_IDS)."""
    _run(url, "hand_run/older_script.sql")
    _fill(url, _rows_older)
    if bad_ids_variant:
        _fill(url, add_bad_website_ids)


def build_c(url: str) -> None:
    """(c): (a) with its rows, then 009 (without ``message``), 010, 012, 013 and 049's
    chat sections, which backfill those rows; then one message of today's backend."""
    build_a(url)
    _run(
        url,
        "hand_run/009_phone_based_chat_without_message_column.sql",
        "hand_run/010_enable_chat_realtime_and_rls.sql",
        "hand_run/012_fix_chat_message_type.sql",
        "hand_run/013_add_missing_chat_columns.sql",
        "hand_run/049_chat.sql",
    )
    _fill(url, _rows_newer)


def build_d(url: str) -> None:
    """(d): 014's FIX A, then 049's chat sections, then the rows."""
    _run(url, "hand_run/014_fix_a.sql", "hand_run/049_chat.sql")
    _fill(url, _rows_fix_a)


BUILDERS = {"a": build_a, "b": build_b, "c": build_c, "d": build_d}


def template(shape: str):
    """The pytest-postgresql ``load`` callable of a shape's template database."""
    return loader(prepare_like_supabase, BUILDERS[shape])


# --------------------------------------------------------------------------- reading rows

_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


_TEXT_OF = {"timestamp with time zone": "({} AT TIME ZONE 'UTC')::text"}


def _normal(value: str | None) -> str | None:
    if value is not None and _UUID_TEXT.fullmatch(value):
        return value.lower()
    return value


def all_rows(conn: psycopg.Connection) -> dict[str, list[dict[str, str | None]]]:
    """Every row of every chat table that exists, with every column, ordered by id.

    Values are text (``value::text``; timestamptz at UTC, so the session's TimeZone does
    not matter; uuid-shaped text lower-cased, so a text id and the uuid it casts to
    compare equal), so the result is JSON-comparable and ``==`` means "same values".
    """
    out: dict[str, list[dict[str, str | None]]] = {}
    for table in CHAT_TABLES:
        columns = conn.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum",
            (f"public.{table}",),
        ).fetchall()
        if not columns:
            continue
        expressions = [
            sql.SQL(_TEXT_OF.get(type_, "{}::text")).format(sql.Identifier(name))
            for name, type_ in columns
        ]
        rows = conn.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY lower(id::text)").format(
                sql.SQL(", ").join(expressions), sql.Identifier("public", table)
            )
        ).fetchall()
        names = [name for name, _ in columns]
        out[table] = [{n: _normal(v) for n, v in zip(names, row, strict=True)} for row in rows]
    return out


def lost(before: dict, after: dict) -> list[str]:
    """Every value of ``before`` (all_rows) that ``after`` does not keep, as sentences:
    a table, row or column gone, or a value changed. New tables, rows and columns in
    ``after`` are not losses."""
    out = []
    for table, rows in before.items():
        if table not in after:
            out.append(f"{table}: the table is gone ({len(rows)} rows)")
            continue
        remaining = {row["id"]: row for row in after[table]}
        for row in rows:
            kept = remaining.get(row["id"])
            if kept is None:
                out.append(f"{table} {row['id']}: the row is gone")
                continue
            for column, value in row.items():
                if column not in kept:
                    out.append(f"{table} {row['id']}: column {column} is gone (was {value!r})")
                elif kept[column] != value:
                    out.append(f"{table} {row['id']}: {column} was {value!r}, is {kept[column]!r}")
    return out
