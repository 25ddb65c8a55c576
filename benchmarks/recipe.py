"""The hand-written online recipe a careful operator would run instead of a hand-run file.

For 008 and the work of 009, 012 and 013 on chat_messages (from base), or for the
latter alone (from 008), the textbook online way, each statement in its own
transaction on an autocommit connection:

- the column added (a catalog change, under a short lock_timeout, retried), and
  PostgREST told to reload at once, so that the backend's calls send it from then on;
- the backfill in keyset batches of :data:`BATCH` rows by primary key, each its own
  transaction; then one sweep for the rows written meanwhile behind the walk;
- NOT NULL through a CHECK ... NOT VALID, validated (it blocks no write), then SET NOT
  NULL (no scan with the valid check) and the check dropped;
- every index built CONCURRENTLY;
- a last NOTIFY for PostgREST.

One file's effect after the other, as an operator works through the files: 009's
backfill and 012's are two walks over chat_messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

BATCH = 5_000
LOCK_TIMEOUT = "100ms"
ATTEMPTS = 100
ZERO_UUID = "00000000-0000-0000-0000-000000000000"

CATALOG, LONG, BATCHES = "catalog", "long", "batches"


@dataclass(frozen=True)
class Step:
    label: str
    kind: str  # CATALOG (short lock_timeout, retried), LONG (no timeout), BATCHES
    sql: str  # BATCHES: takes %(last)s and %(size)s, answers the batch's last id


def keyset(table: str, assignment: str, condition: str) -> str:
    """(The table is ``t`` in ``assignment`` and ``condition``.) One keyset batch: the next BATCH ids after %(last)s, the rows of them that need it
    updated; answers the last id of the batch (NULL: the walk is done) and the rows it
    updated."""
    return (
        f"WITH batch AS (SELECT id FROM public.{table} WHERE id > %(last)s::uuid "
        f"ORDER BY id LIMIT %(size)s), "
        f"done AS (UPDATE public.{table} t SET {assignment} FROM batch "
        f"WHERE t.id = batch.id AND ({condition}) RETURNING 1) "
        "SELECT (SELECT id FROM batch ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM done)"
    )


def not_null(table: str, column: str) -> list[Step]:
    check = f"{table}_{column}_recipe_not_null"
    return [
        Step(
            f"{column}: CHECK NOT VALID",
            CATALOG,
            f"ALTER TABLE public.{table} ADD CONSTRAINT {check} "
            f"CHECK ({column} IS NOT NULL) NOT VALID",
        ),
        Step(
            f"{column}: VALIDATE CONSTRAINT",
            LONG,
            f"ALTER TABLE public.{table} VALIDATE CONSTRAINT {check}",
        ),
        Step(
            f"{column}: SET NOT NULL, drop the check",
            CATALOG,
            f"ALTER TABLE public.{table} ALTER COLUMN {column} SET NOT NULL; "
            f"ALTER TABLE public.{table} DROP CONSTRAINT {check}",
        ),
    ]


def backfill(table: str, column: str, expression: str, condition: str) -> list[Step]:
    assignment = f"{column} = {expression}"
    return [
        Step(f"fill {column}: keyset batches", BATCHES, keyset(table, assignment, condition)),
        Step(
            f"fill {column}: sweep",
            LONG,
            f"UPDATE public.{table} t SET {assignment} WHERE {condition}",
        ),
    ]


def index(name: str, definition: str) -> Step:
    return Step(
        f"CREATE INDEX CONCURRENTLY {name}",
        LONG,
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}",
    )


RELOAD = "NOTIFY pgrst, 'reload schema'"
CUSTOMER_ID = (
    "COALESCE(t.customer_id, 'customer_' || t.customer_phone, 'customer_unknown_' || t.id::text)"
)

FOR_008 = [
    Step(
        "add customer_id, reload PostgREST",
        CATALOG,
        "ALTER TABLE public.chat_conversations ADD COLUMN IF NOT EXISTS customer_id text; "
        f"{RELOAD}",
    ),
    *backfill("chat_conversations", "customer_id", CUSTOMER_ID, "t.customer_id IS NULL"),
    *not_null("chat_conversations", "customer_id"),
    index("idx_chat_conversations_customer", "public.chat_conversations (customer_id)"),
]
FOR_009_012_013 = [
    Step(
        "add message_text DEFAULT '', reload PostgREST",
        CATALOG,
        "ALTER TABLE public.chat_messages ADD COLUMN IF NOT EXISTS message_text text; "
        "ALTER TABLE public.chat_messages ALTER COLUMN message_text SET DEFAULT ''; "
        f"{RELOAD}",
    ),
    *backfill(
        "chat_messages",
        "message_text",
        "COALESCE(NULLIF(t.content, ''), '')",
        "t.message_text IS NULL",
    ),
    *not_null("chat_messages", "message_text"),
    index("idx_chat_conversations_phone", "public.chat_conversations (customer_phone)"),
    index(
        "idx_chat_conversations_website_phone",
        "public.chat_conversations (website_id, customer_phone)",
    ),
    *backfill(
        "chat_messages", "message_type", "'text'", "t.message_type IS NULL OR t.message_type = ''"
    ),
    index("idx_chat_messages_type", "public.chat_messages (message_type)"),
    index(
        "idx_chat_messages_media_url",
        "public.chat_messages (media_url) WHERE media_url IS NOT NULL",
    ),
    index(
        "idx_chat_messages_metadata",
        "public.chat_messages USING gin (metadata) WHERE metadata IS NOT NULL",
    ),
]
# From base: 008's repair, then the data work of 009, 012 and 013 (not 004's file, which
# fails on the older script's tables, nor its indexes, which the project builds too);
# from 008: 009, 012 and 013.
RECIPES: dict[str, list[Step]] = {
    "base": [*FOR_008, *FOR_009_012_013, Step("reload PostgREST", CATALOG, RELOAD)],
    "008": [*FOR_009_012_013, Step("reload PostgREST", CATALOG, RELOAD)],
}
APPLIES = {"base": "008, 009, 012, 013", "008": "009, 012, 013"}


@dataclass
class Timed:
    label: str
    start: float  # time.perf_counter()
    end: float
    detail: str = ""
    rows: int | None = None  # a backfill's rows updated

    @property
    def seconds(self) -> float:
        return self.end - self.start


def run(conn: psycopg.Connection, steps: list[Step]) -> list[Timed]:
    """Run the recipe on ``conn`` (autocommit); the steps with their times."""
    done = []
    for step in steps:
        start = time.perf_counter()
        detail, rows = "", None
        if step.kind == BATCHES:
            detail, rows = _batches(conn, step)
        elif step.kind == CATALOG:
            detail = _catalog(conn, step)
        else:
            conn.execute("SET lock_timeout = 0")
            cursor = conn.execute(step.sql)
            if step.sql.startswith("UPDATE"):
                rows = cursor.rowcount
                detail = f"{rows:,} rows"
        done.append(Timed(step.label, start, time.perf_counter(), detail, rows))
    return done


def _catalog(conn: psycopg.Connection, step: Step) -> str:
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            conn.execute(step.sql)
            return f"{attempt} attempt(s)" if attempt > 1 else ""
        except psycopg.errors.LockNotAvailable:
            time.sleep(min(1.0, 0.05 * attempt))
    raise RuntimeError(f"recipe step {step.label!r}: no lock after {ATTEMPTS} attempts")


def _batches(conn: psycopg.Connection, step: Step) -> tuple[str, int]:
    conn.execute("SET lock_timeout = 0")
    last, batches, rows, slowest = ZERO_UUID, 0, 0, 0.0
    while True:
        started = time.perf_counter()
        end, updated = conn.execute(step.sql, {"last": last, "size": BATCH}).fetchone()
        slowest = max(slowest, time.perf_counter() - started)
        rows += updated
        if end is None:
            break
        last, batches = str(end), batches + 1
    return (
        f"{rows:,} rows in {batches} batches of {BATCH:,} ids, slowest {slowest * 1000:.0f} ms",
        rows,
    )
