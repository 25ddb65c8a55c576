"""The benchmark's client load: the backend's own calls, in a chat's proportions.

The calls come from the backend's calls file (``calls/backend.calls``, read from its
code by ``chatdb calls scan``, read here with chatdb.calls.model.CallsFile), or another
calls file given. They are picked by their facts, not by name:

- a message send: an insert into chat_messages that writes message_text;
- a read of a conversation's messages: a select of chat_messages filtered by
  conversation_id.eq and ordered by created_at;
- a mark-read: an update of chat_messages that writes is_read, filtered by
  conversation_id.eq (chat.py's mark-read endpoint, before its unread reset);
- an unread reset: an update of chat_conversations that writes an unread_* column;
- a new conversation: an insert into chat_conversations.

Each runs as PostgREST runs a request of the service-role key (one transaction: SET
LOCAL ROLE service_role, request.jwt.claims, one statement over json_populate_record;
:func:`postgrest_call`). A call is sent with the columns of PostgREST's schema cache
only, as the backend settles on them (its column fallbacks drop what the database
lacks); the cache is read at the start and again on every ``NOTIFY pgrst``, as
PostgREST reloads it, so a deploy's new columns are sent once it has reloaded.

Traffic is a chat's: :data:`WEIGHTS` of the requests by kind, and :data:`HOT_SHARE` of
them on the :data:`HOT_FRACTION` of conversations that are active (every 50th, spread
over the whole table: each batch of a backfill meets some).
"""

from __future__ import annotations

import datetime
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from chatdb.calls.model import CallsFile
from chatdb.calls.postgrest import Cache
from tests.drifted_table import WEBSITES, conversation_id
from tests.postgrest import rest_insert, rest_select, rest_update, schema_cache

CLIENT_APP = "bench client"
CALLS_FILE = Path(__file__).resolve().parents[1] / "calls" / "backend.calls"
TABLES = ("chat_conversations", "chat_messages")

# Shares of the requests, by kind: reads of a conversation's messages (the widget and
# the dashboard poll them) and message sends dominate; a read is often followed by a
# mark-read and an unread reset; a new conversation is rare.
WEIGHTS = {"read": 40, "send": 30, "reset": 15, "mark_read": 10, "create": 5}
KINDS = tuple(WEIGHTS)
HOT_SHARE = 0.9  # of the requests on a conversation ...
HOT_EVERY = 50  # ... go to every 50th conversation: 2 % of them
HOT_FRACTION = 1 / HOT_EVERY


@dataclass(frozen=True)
class LoadCall:
    """One of the backend's calls, reduced to what the load needs to run it."""

    kind: str
    table: str
    operation: str  # insert, update, select
    writes: tuple[str, ...] = ()
    selects: tuple[str, ...] = ()
    filters: tuple[tuple[str, str], ...] = ()  # (column, operator)
    orders: tuple[str, ...] = ()  # PostgREST's column.asc / column.desc
    limit: int | None = None
    source: str = ""  # where the call is, as its source says it

    def describe(self) -> str:
        what = ", ".join(self.writes or self.selects)
        filters = ", ".join(f"{c}.{o}" for c, o in self.filters)
        return f"{self.kind}: {self.table} {self.operation} ({what}) [{filters}] from {self.source}"

    def on(self, columns: dict[str, str]) -> LoadCall | None:
        """The call with the columns ``columns`` (a schema cache's table) has, as the
        backend settles on it; None when a filter or an order names a missing column, or
        nothing is left to write."""
        named = [c for c, _ in self.filters] + [o.split(".")[0] for o in self.orders]
        if any(c not in columns for c in named):
            return None
        writes = tuple(c for c in self.writes if c in columns)
        selects = tuple(c for c in self.selects if c == "*" or c in columns)
        if self.operation != "select" and not writes:
            return None
        return LoadCall(
            self.kind,
            self.table,
            self.operation,
            writes,
            selects,
            self.filters,
            self.orders,
            self.limit,
            self.source,
        )


# ------------------------------------------------------------------ picking the calls


def _is(kind: str, call: LoadCall) -> bool:
    filtered = {c for c, o in call.filters if o == "eq"}
    if kind == "send":
        return (call.table, call.operation) == ("chat_messages", "insert") and (
            "message_text" in call.writes
        )
    if kind == "read":
        return (
            (call.table, call.operation) == ("chat_messages", "select")
            and "conversation_id" in filtered
            and any(o.split(".")[0] == "created_at" for o in call.orders)
        )
    if kind == "mark_read":
        return (
            (call.table, call.operation) == ("chat_messages", "update")
            and "is_read" in call.writes
            and "conversation_id" in filtered
        )
    if kind == "reset":
        return (call.table, call.operation) == ("chat_conversations", "update") and any(
            c.startswith("unread_") for c in call.writes
        )
    if kind == "create":
        return (call.table, call.operation) == ("chat_conversations", "insert")
    raise ValueError(kind)


def pick(calls: Iterable[LoadCall]) -> dict[str, LoadCall]:
    """The first call of each kind, in the source's order; a kind no call has is left
    out (the load says so)."""
    calls = list(calls)
    picked = {}
    for kind in KINDS:
        match = next((call for call in calls if _is(kind, call)), None)
        if match is not None:
            picked[kind] = LoadCall(**{**match.__dict__, "kind": kind})
    return picked


def from_calls_file(path: Path) -> list[LoadCall]:
    """The calls of a calls file (chatdb.calls.model), as LoadCalls."""
    calls = CallsFile.read(path).on_tables(TABLES)
    return [
        LoadCall(
            "",
            call.table,
            call.operation,
            call.writes,
            call.selects,
            tuple((f.column, f.operator) for f in call.filters),
            tuple(str(order) for order in call.orders),
            call.limit,
            f"{path.name}: {call.where}",
        )
        for call in calls
    ]


def backend_calls(path: Path | None = None) -> tuple[dict[str, LoadCall], str]:
    """The calls of each kind, and where they came from: ``path`` (a calls file), else
    the project's calls/backend.calls."""
    path = path or CALLS_FILE
    return pick(from_calls_file(path)), str(path)


# ------------------------------------------------------------------ values


def now_iso() -> str:
    """A time as the backend sends it: datetime.utcnow().isoformat(), no time zone."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None).isoformat()


# A value for each column a call may write, as the backend's payloads have them.
EXAMPLES: dict[str, object] = {
    "order_id": None,
    "website_name": "Kedai Contoh",
    "customer_name": "Aminah",
    "status": "active",
    "sender_type": "customer",
    "sender_name": "Aminah",
    "message_type": "text",
    "message_text": "Boleh hantar ke pejabat?",
    "content": "Boleh hantar ke pejabat?",
    "media_url": None,
    "metadata": None,
    "is_read": False,
    "read_by": [],
}


def website_id(n: int) -> str:
    """The id of website ``n`` (1-based), as tests.drifted_table makes them."""
    import hashlib

    return str(uuid.UUID(hashlib.md5(f"website{n}".encode()).hexdigest()))


def phone(n: int) -> str:
    return f"{n:010d}"


def payload(call: LoadCall, target: int, rng: random.Random) -> dict[str, object]:
    """The values the backend would send for ``call`` on conversation ``target``."""
    values: dict[str, object] = {}
    for column in call.writes:
        if column == "id":
            values[column] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        elif column == "conversation_id":
            values[column] = str(conversation_id(target))
        elif column == "website_id":
            values[column] = website_id(target % WEBSITES + 1)
        elif column in ("created_at", "updated_at", "read_at", "last_seen"):
            values[column] = now_iso()
        elif column.startswith("unread_"):
            values[column] = 0
        elif column == "customer_phone":
            values[column] = phone(target)
        elif column in ("customer_id", "sender_id"):
            values[column] = f"customer_{phone(target)}"
        elif column == "is_read":
            values[column] = call.kind == "mark_read"
        else:
            values[column] = EXAMPLES.get(column)
    return values


def filters(call: LoadCall, target: int) -> list[tuple[str, str, object]]:
    """The call's filters with the values for conversation ``target``."""
    out: list[tuple[str, str, object]] = []
    for column, operator in call.filters:
        if column in ("conversation_id",) or (
            column == "id" and call.table == "chat_conversations"
        ):
            value: object = str(conversation_id(target))
        elif column == "sender_type":
            value = "owner"  # the owner marks the customer's messages read
        elif column == "website_id":
            value = website_id(target % WEBSITES + 1)
        elif column == "status":
            value = "active"
        elif column == "customer_phone":
            value = phone(target)
        else:
            value = None
        out.append((column, operator, [value] if operator == "in" else value))
    return out


# ------------------------------------------------------------------ one request


def postgrest_call(
    conn: psycopg.Connection,
    call: LoadCall,
    target: int,
    rng: random.Random,
    cache: dict[str, dict[str, str]],
) -> None:
    """``call`` on conversation ``target`` as PostgREST runs it for the service-role key:
    one transaction, SET LOCAL ROLE service_role, request.jwt.claims, the statement over
    json_populate_record(set) (tests/postgrest.py; the one place to swap for
    chatdb/calls/postgrest.py)."""
    where = filters(call, target)
    if call.operation == "insert":
        rest_insert(conn, call.table, payload(call, target, rng), cache=cache)
    elif call.operation == "update":
        rest_update(conn, call.table, payload(call, target, rng), where, cache=cache)
    else:
        rest_select(
            conn, call.table, call.selects, where, call.orders, limit=call.limit, cache=cache
        )


# ------------------------------------------------------------------ the clients


@dataclass
class Op:
    kind: str
    start: float  # time.perf_counter()
    end: float
    error: str | None = None
    pid: int = 0  # the client's backend

    @property
    def latency_ms(self) -> float:
        return (self.end - self.start) * 1000


def message(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


class SchemaCache(threading.Thread):
    """PostgREST's schema cache: read at the start, read again on every NOTIFY pgrst."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stopping = threading.Event()
        with psycopg.connect(url, autocommit=True) as conn:
            self.cache = schema_cache(conn)

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name="bench cache") as conn:
            conn.execute("LISTEN pgrst")
            while not self.stopping.is_set():
                if any(True for _ in conn.notifies(timeout=0.2)):
                    self.cache = schema_cache(conn)

    def stop(self) -> None:
        self.stopping.set()
        self.join()


@dataclass
class ClientLoad:
    """Client threads sending the backend's calls until stopped: a kind by WEIGHTS, a
    conversation of the hot set with probability HOT_SHARE, else any."""

    url: str
    conversations: int
    clients: int
    think_s: float
    calls: dict[str, LoadCall]
    ops: list[Op] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    cache: SchemaCache | None = None

    def start(self) -> None:
        self.cache = SchemaCache(self.url)
        self.cache.start()
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> list[Op]:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        if self.cache is not None:
            self.cache.stop()
        return self.ops

    def target(self, rng: random.Random) -> int:
        if rng.random() < HOT_SHARE:
            return HOT_EVERY * rng.randint(1, max(1, self.conversations // HOT_EVERY))
        return rng.randint(1, self.conversations)

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True, application_name=CLIENT_APP)
        conn.execute("SET statement_timeout = '10min'")  # a stuck run cannot hang it
        return conn

    def _client(self, n: int) -> None:
        rng = random.Random(n)
        kinds = [kind for kind in KINDS if kind in self.calls]
        weights = [WEIGHTS[kind] for kind in kinds]
        mine: list[Op] = []
        conn: psycopg.Connection | None = None
        # Each kind's call shaped for the cache it was shaped for (a reload starts again;
        # the cache is held, so it cannot be freed and another take its place).
        shaped: dict[str, LoadCall | None] = {}
        shaped_for: Cache | None = None
        while not self.stop.is_set():
            if conn is None or conn.closed:
                start = time.perf_counter()
                try:
                    conn = self._connect()
                except psycopg.Error as exc:
                    mine.append(Op("connect", start, time.perf_counter(), message(exc)))
                    time.sleep(0.1)
                    continue
            kind = rng.choices(kinds, weights)[0]
            cache = self.cache.cache
            if cache is not shaped_for:
                shaped, shaped_for = {}, cache
            if kind not in shaped:
                shaped[kind] = self.calls[kind].on(cache.get(self.calls[kind].table, {}))
            call = shaped[kind]
            if call is None:
                continue
            start = time.perf_counter()
            error = None
            try:
                postgrest_call(conn, call, self.target(rng), rng, cache)
            except psycopg.Error as exc:
                error = message(exc)
            pid = 0 if conn.closed else conn.info.backend_pid
            mine.append(Op(kind, start, time.perf_counter(), error, pid))
            if self.think_s:
                time.sleep(self.think_s)
        if conn is not None:
            conn.close()
        self.ops.extend(mine)  # list.extend is atomic under the GIL


def describe_calls(calls: dict[str, LoadCall], cache: dict[str, dict[str, str]]) -> list[str]:
    """One line per kind: the call, and the columns the schema cache leaves it."""
    lines = []
    for kind in KINDS:
        call = calls.get(kind)
        if call is None:
            lines.append(f"{kind}: no call of the backend is of this kind: left out")
            continue
        shaped = call.on(cache.get(call.table, {}))
        dropped = (
            sorted(set(call.writes + call.selects) - set(shaped.writes + shaped.selects))
            if shaped
            else []
        )
        lines.append(
            f"{call.describe()}"
            + (f"; sent without {', '.join(dropped)} until PostgREST reloads" if dropped else "")
            + ("; not possible on this schema" if shaped is None else "")
        )
    return lines


def fill_messages(conn: psycopg.Connection, conversations: int, per_conversation: int) -> None:
    """``per_conversation`` messages per conversation, interleaved as a chat writes them
    (message g is in conversation (g - 1) % conversations + 1), of both senders; one in
    ten with a NULL message_type and one in fifty with an empty one (older writers: 012
    fills them), one in twenty-five with an empty or NULL content, one in twenty an
    image with media_url and metadata. Deterministic, like the conversations."""
    total = conversations * per_conversation
    conn.execute(
        "INSERT INTO chat_messages (id, conversation_id, sender_type, sender_id, "
        "message_type, content, media_url, metadata, is_read, created_at) "
        "SELECT md5('msg' || g)::uuid, md5('conv' || ((g - 1) %% %(n)s + 1))::uuid, "
        "CASE WHEN g %% 2 = 0 THEN 'owner' ELSE 'customer' END, "
        "'customer_' || lpad(((g - 1) %% %(n)s + 1)::text, 10, '0'), "
        "CASE WHEN g %% 10 = 0 THEN NULL WHEN g %% 50 = 1 THEN '' "
        "WHEN g %% 20 = 3 THEN 'image' ELSE 'text' END, "
        "CASE WHEN g %% 25 = 0 THEN NULL WHEN g %% 25 = 1 THEN '' "
        "ELSE 'Message number ' || g END, "
        "CASE WHEN g %% 20 = 3 THEN 'https://cdn.example.test/chat/' || g || '.jpg' END, "
        'CASE WHEN g %% 20 = 3 THEN \'{"width": 640, "height": 480}\'::jsonb END, '
        "g <= %(total)s - %(n)s, "
        "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' "
        "FROM generate_series(1, %(total)s) g",
        {"n": conversations, "total": total},
    )


def kinds_line(ops: list[Op], worst: Callable[[list[Op]], float]) -> str:
    return ", ".join(
        f"{kind} {sum(1 for op in ops if op.kind == kind)} (worst "
        f"{worst([op for op in ops if op.kind == kind]):.1f} ms)"
        for kind in KINDS
    )
