"""Converge older chat tables to 004's shape, keeping every row and every value.

Revision ID: c001
Revises: 000
Create Date: 2026-11-25

Why: production's chat tables were made and changed by hand-run SQL, none of it
recorded (docs/spec/after-008.md, section 3): the older script's tables (text ids, NOT
NULL name and phone, ``message text NOT NULL``, no unread counters), 014's FIX A rebuild
(gen_random_uuid() ids, no sender_name or read_by, idx_chat_conversations_customer built
on customer_phone), or 004 as it ran. 004 creates its tables with ``IF NOT EXISTS``, so
on an older table it changes nothing, and then fails (its index on sender_id, its
policies comparing a text website_id with uuids) or leaves the table unlike the code.
This revision, placed just before 004, brings an existing table to exactly 004's
columns, defaults, foreign keys and index names, so that 004 and every revision after it
meet the table they were written for. It replicates no SQL file (hence its id: c + 3
digits). Where the chat tables do not exist, or are already 004's, it does nothing.

What it does, table by table (chat_conversations, chat_messages, chat_participants), and
only where the table exists:

1. A column 004 declares uuid that is text (or varchar): converted with
   ``op.convert_column(..., "<column>::uuid")``, every value kept (a text id in upper
   case or without hyphens is the same uuid). On a large table this is online (a new
   column filled in batches, then swapped: chatdb.deploy.online.steps.ConvertType).
   Any other type that differs from 004's is refused: no conversion is guessed.
2. A column 004 declares nullable that is NOT NULL (the older script's customer_name,
   customer_phone, status): ``DROP NOT NULL``, a catalog change. The backend creates
   conversations without a name or phone (the delivery path, the AI responder).
3. A column 004 does not know, NOT NULL without a default (the older script's
   ``message text NOT NULL``): ``DROP NOT NULL``, the column and its values kept. The
   backend never sends it, so every insert of today's backend would fail on it (23502).
   Such a column with a default, or nullable, is left alone.
4. A column 004 declares NOT NULL that is nullable: ``SET NOT NULL`` (online on a large
   table: a NOT VALID check validated without blocking writes). customer_id is left to
   008, which fills it first.
5. A column of 004 that is missing: added with 004's type and default (the older
   script's unread counters get 0, FIX A's messages get read_by '[]' and sender_name
   NULL). A missing NOT NULL column without a default (website_id, sender_type, ...)
   cannot be given values: refused, unless the table is empty. customer_id is 008's.
6. A default that differs from 004's (FIX A's gen_random_uuid() ids): set to 004's
   (``uuid_generate_v4()``; Supabase's ``extensions.uuid_generate_v4()`` is the same).
   A default 004 does not have is dropped. Catalog changes; no row changes.
7. A foreign key of 004 that is missing (the older script has none on website_id and
   order_id): added with 004's name and ON DELETE (``op.create_foreign_key``: on a
   large table NOT VALID, then VALIDATE without blocking writes).
8. An index under a name of 004 built on other columns (FIX A's
   idx_chat_conversations_customer on customer_phone): renamed to the name the later
   SQL gave that definition (idx_chat_conversations_phone, 009's), or to PostgreSQL's
   default name when it has none; dropped where an index of that name with that
   definition already exists (it duplicates it). 004 and 008 then build theirs.

Before any change it checks what would make one of these fail, and refuses, naming
each problem, the number of rows and a few of their ids: text ids that do not cast to
uuid; rows a missing foreign key would reject (orphans); NULLs in a column to make NOT
NULL; a missing NOT NULL column on a table with rows; a type it does not convert; a
table without its primary key on id. The checks run in pass 1 too (the run's
collection of online steps, chatdb.deploy.online.prepare), before anything executes,
so a refusal leaves the database exactly as it was, online steps included.

Row level security, policies, grants, triggers and publication membership are 004's
job (it replaces them by name); columns, indexes and policies that 004 does not know are
kept (``chatdb drift`` lists them). A missing unique constraint of chat_participants is
left to the operator (drift lists it).

With ``--sql`` nothing can be read: the script carries a DO block that raises when the
chat tables exist and are not in 004's shape, naming this revision.

Downgrade is a no-op, like 008's: it repairs tables to the state 004 defines; undoing
the repair would re-create the drift, not a state of the history.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from chatdb import failures

revision: str = "c001"
down_revision: str | Sequence[str] | None = "000"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPTZ = "timestamp with time zone"
UUID_DEFAULT = "uuid_generate_v4()"
# PostgreSQL's uuid input: 32 hex digits, a hyphen allowed after any group of four,
# optionally in braces, either case (tests/test_c001.py checks it against the cast).
UUID_TEXT = r"^(\{[0-9A-Fa-f]{4}(-?[0-9A-Fa-f]{4}){7}\}|[0-9A-Fa-f]{4}(-?[0-9A-Fa-f]{4}){7})$"
TEXT_TYPES = ("text", "character varying")
SHOWN = 5  # ids named in a refusal, per problem
LEFT_TO_008 = "customer_id"  # 008 adds, fills and sets it NOT NULL


@dataclass(frozen=True)
class Col:
    """A column as 004 declares it; type and default as PostgreSQL prints them."""

    name: str
    type: str
    not_null: bool = False
    default: str | None = None

    def sa_column(self) -> sa.Column:
        types = {
            "uuid": sa.Uuid(),
            "text": sa.Text(),
            "integer": sa.Integer(),
            "boolean": sa.Boolean(),
            "jsonb": postgresql.JSONB(),
            TIMESTAMPTZ: sa.DateTime(timezone=True),
        }
        default = None if self.default is None else sa.text(self.default)
        return sa.Column(self.name, types[self.type], nullable=not self.not_null,
                         server_default=default)  # fmt: skip


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str
    column: str
    parent: str
    on_delete: str


COLUMNS: dict[str, tuple[Col, ...]] = {
    "chat_conversations": (
        Col("id", "uuid", True, UUID_DEFAULT),
        Col("order_id", "uuid"),
        Col("website_id", "uuid", True),
        Col("customer_id", "text", True),
        Col("customer_name", "text"),
        Col("customer_phone", "text"),
        Col("status", "text", False, "'active'::text"),
        Col("unread_owner", "integer", False, "0"),
        Col("unread_customer", "integer", False, "0"),
        Col("unread_rider", "integer", False, "0"),
        Col("created_at", TIMESTAMPTZ, False, "now()"),
        Col("updated_at", TIMESTAMPTZ, False, "now()"),
    ),
    "chat_messages": (
        Col("id", "uuid", True, UUID_DEFAULT),
        Col("conversation_id", "uuid", True),
        Col("sender_type", "text", True),
        Col("sender_id", "text"),
        Col("sender_name", "text"),
        Col("message_type", "text", False, "'text'::text"),
        Col("content", "text"),
        Col("media_url", "text"),
        Col("metadata", "jsonb"),
        Col("is_read", "boolean", False, "false"),
        Col("read_at", TIMESTAMPTZ),
        Col("read_by", "jsonb", False, "'[]'::jsonb"),
        Col("created_at", TIMESTAMPTZ, False, "now()"),
    ),
    "chat_participants": (
        Col("id", "uuid", True, UUID_DEFAULT),
        Col("conversation_id", "uuid", True),
        Col("user_type", "text", True),
        Col("user_id", "text"),
        Col("user_name", "text"),
        Col("is_online", "boolean", False, "false"),
        Col("last_seen", TIMESTAMPTZ),
        Col("created_at", TIMESTAMPTZ, False, "now()"),
    ),
}

FOREIGN_KEYS = (
    ForeignKey(
        "chat_conversations_order_id_fkey",
        "chat_conversations",
        "order_id",
        "delivery_orders",
        "SET NULL",
    ),
    ForeignKey(
        "chat_conversations_website_id_fkey", "chat_conversations", "website_id", "websites",
        "CASCADE",
    ),
    ForeignKey(
        "chat_messages_conversation_id_fkey", "chat_messages", "conversation_id",
        "chat_conversations", "CASCADE",
    ),
    ForeignKey(
        "chat_participants_conversation_id_fkey", "chat_participants", "conversation_id",
        "chat_conversations", "CASCADE",
    ),
)  # fmt: skip

# Index names of 004 (and 008's idx_chat_conversations_customer), and the names the later
# hand-run SQL gave other definitions (009, 012, 013): (table, what follows USING).
INDEXES_004 = {
    "idx_chat_conversations_order": ("chat_conversations", "btree (order_id)"),
    "idx_chat_conversations_website": ("chat_conversations", "btree (website_id)"),
    "idx_chat_conversations_customer": ("chat_conversations", "btree (customer_id)"),
    "idx_chat_conversations_status": ("chat_conversations", "btree (status)"),
    "idx_chat_conversations_updated": ("chat_conversations", "btree (updated_at DESC)"),
    "idx_chat_messages_conversation": ("chat_messages", "btree (conversation_id)"),
    "idx_chat_messages_created": ("chat_messages", "btree (created_at DESC)"),
    "idx_chat_messages_sender": ("chat_messages", "btree (sender_type, sender_id)"),
    "idx_chat_participants_conversation": ("chat_participants", "btree (conversation_id)"),
    "idx_chat_participants_user": ("chat_participants", "btree (user_type, user_id)"),
}
LATER_INDEXES = {
    "idx_chat_conversations_phone": ("chat_conversations", "btree (customer_phone)"),
    "idx_chat_conversations_website_phone": (
        "chat_conversations",
        "btree (website_id, customer_phone)",
    ),
    "idx_chat_messages_type": ("chat_messages", "btree (message_type)"),
    "idx_chat_messages_media_url": (
        "chat_messages",
        "btree (media_url) WHERE (media_url IS NOT NULL)",
    ),
    "idx_chat_messages_metadata": ("chat_messages", "gin (metadata) WHERE (metadata IS NOT NULL)"),
}


class Refused(failures.Refused):
    """c001 found what it cannot converge without losing or inventing values (refused
    before any change: exit code 4, docs/failures.md)."""


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class LiveColumn:
    name: str
    type: str
    not_null: bool
    default: str | None
    in_primary_key: bool
    referenced: bool  # another table's foreign key references it


def _rows(sql: str, **params) -> list:
    return list(op.get_bind().execute(sa.text(sql), params))


def _scalar(sql: str, **params):
    return op.get_bind().execute(sa.text(sql), params).scalar()


def exists(table: str) -> bool:
    return _scalar("SELECT to_regclass(:t) IS NOT NULL", t=f"public.{table}")


def live_columns(table: str) -> dict[str, LiveColumn]:
    rows = _rows(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid),
               EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = a.attrelid
                       AND k.contype = 'p' AND a.attnum = ANY(k.conkey)),
               EXISTS (SELECT 1 FROM pg_constraint k WHERE k.confrelid = a.attrelid
                       AND k.contype = 'f' AND a.attnum = ANY(k.confkey))
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attidentity = '' AND a.attgenerated = ''
        ORDER BY a.attnum
        """,
        t=f"public.{table}",
    )
    return {row[0]: LiveColumn(*row) for row in rows}


def same_default(live: str | None, declared: str | None) -> bool:
    """Defaults as PostgreSQL prints them; Supabase's extensions.uuid_generate_v4() (the
    extension's schema on the search_path) is 004's uuid_generate_v4()."""
    if live is not None:
        live = re.sub(r"^(extensions|public)\.(uuid_generate_v4\(\))$", r"\2", live)
    return live == declared


def textual(type_: str) -> bool:
    return type_ == "text" or type_.startswith("character varying")


def sample(sql: str, **params) -> tuple[int, str]:
    """``sql`` selects (id, value) of offending rows: their count, and a few of them."""
    rows = _rows(
        f"SELECT count(*) OVER (), id::text, shown FROM ({sql}) o ORDER BY id LIMIT {SHOWN}",
        **params,
    )
    if not rows:
        return 0, ""
    shown = ", ".join(f"{id_} ({value})" if value is not None else id_ for _, id_, value in rows)
    more = f", ... ({rows[0][0] - SHOWN} more)" if rows[0][0] > SHOWN else ""
    return int(rows[0][0]), shown + more


def castable(column: str) -> str:
    return f"({column} ~ '{UUID_TEXT}')"


def as_uuid(column: str, type_: str) -> str:
    """The column's value as uuid, NULL where it does not cast (never an error)."""
    if not textual(type_):
        return column
    return f"(CASE WHEN {castable(column)} THEN {column}::uuid END)"


def has_rows(table: str) -> bool:
    return bool(_scalar(f"SELECT EXISTS (SELECT 1 FROM public.{table})"))


def foreign_key_present(fk: ForeignKey) -> bool:
    """Any foreign key from ``fk.table (fk.column)`` to ``fk.parent``, under any name."""
    return bool(
        _scalar(
            """
            SELECT EXISTS (
              SELECT 1 FROM pg_constraint k JOIN pg_attribute a
                ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
              WHERE k.contype = 'f' AND k.conrelid = to_regclass(:t)
                AND k.confrelid = to_regclass(:p) AND array_length(k.conkey, 1) = 1
                AND a.attname = :c)
            """,
            t=f"public.{fk.table}",
            p=f"public.{fk.parent}",
            c=fk.column,
        )
    )


def index_definition(name: str) -> tuple[str, str] | None:
    """(table, what follows USING) of the index ``name`` in schema public."""
    rows = _rows(
        "SELECT t.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE i.indexrelid = to_regclass(:i)",
        i=f"public.{name}",
    )
    if not rows:
        return None
    return rows[0][0], rows[0][1].split(" USING ", 1)[1]


def default_index_name(name: str) -> str:
    """The name PostgreSQL gives an unnamed index like ``name``: <table>_<columns>_idx,
    with a number when taken."""
    [(table, columns)] = _rows(
        "SELECT t.relname, string_agg(coalesce(a.attname, 'expr'), '_' ORDER BY k.ord) "
        "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indexrelid = to_regclass(:i) GROUP BY t.relname",
        i=f"public.{name}",
    )
    base = f"{table}_{columns}"[:59] + "_idx"
    candidate, n = base, 0
    while index_definition(candidate) is not None:
        n += 1
        candidate = f"{base}{n}"
    return candidate


# --------------------------------------------------------------------------- the survey


@dataclass
class Survey:
    """What c001 will change, and what it refuses: read before any change."""

    actions: list = None  # (callable, description) in the order they run
    problems: list = None

    def __post_init__(self) -> None:
        self.actions, self.problems = [], []

    def do(self, what: str, action) -> None:
        self.actions.append((what, action))

    def refuse(self, problem: str) -> None:
        self.problems.append(problem)


def survey() -> Survey:
    found = Survey()
    tables = [table for table in COLUMNS if exists(table)]
    for table in tables:
        survey_columns(found, table)
    for fk in FOREIGN_KEYS:
        if fk.table in tables and exists(fk.parent) and not foreign_key_present(fk):
            survey_foreign_key(found, fk)
    for name, (table, definition) in INDEXES_004.items():
        if table in tables:
            survey_index(found, name, table, definition)
    return found


def survey_columns(found: Survey, table: str) -> None:
    live = live_columns(table)
    declared = {col.name: col for col in COLUMNS[table]}
    if "id" not in live or not live["id"].in_primary_key:
        found.refuse(f"{table} has no primary key on id (004's tables do): add it by hand")
        return
    empty = not has_rows(table)
    for col in COLUMNS[table]:
        have = live.get(col.name)
        if col.name == LEFT_TO_008:
            continue
        if have is None:
            if col.not_null and col.default is None and not empty:
                found.refuse(
                    f"{table} has rows and no column {col.name}, which 004 declares "
                    f"{col.type} NOT NULL without a default: c001 cannot invent its values"
                )
            else:
                found.do(
                    f"add column {table}.{col.name}",
                    lambda t=table, c=col: op.add_column(t, c.sa_column(), schema="public"),
                )
            continue
        if have.type != col.type:
            survey_type(found, table, col, have)
        if have.not_null and not col.not_null:
            found.do(
                f"drop NOT NULL of {table}.{col.name}",
                lambda t=table, c=col.name: op.alter_column(t, c, nullable=True, schema="public"),
            )
        elif col.not_null and not have.not_null:
            count, shown = sample(
                f"SELECT id, NULL AS shown FROM public.{table} WHERE {col.name} IS NULL"
            )
            if count:
                found.refuse(
                    f"{table}.{col.name} is NULL in {count} row(s) (ids {shown}); 004 declares "
                    "it NOT NULL: give those rows a value or delete them"
                )
            else:
                found.do(
                    f"set NOT NULL on {table}.{col.name}",
                    lambda t=table, c=col.name: op.alter_column(
                        t, c, nullable=False, schema="public"
                    ),
                )
        if not same_default(have.default, col.default):
            default = None if col.default is None else sa.text(col.default)
            found.do(
                f"set the default of {table}.{col.name} to {col.default}",
                lambda t=table, c=col.name, d=default: op.alter_column(
                    t, c, server_default=d, schema="public"
                ),
            )
    for have in live.values():
        if have.name not in declared and have.not_null and have.default is None:
            found.do(
                f"drop NOT NULL of {table}.{have.name} (a column 004 does not know)",
                lambda t=table, c=have.name: op.alter_column(t, c, nullable=True, schema="public"),
            )


def survey_type(found: Survey, table: str, col: Col, have: LiveColumn) -> None:
    where = f"{table}.{col.name}"
    if col.type != "uuid" or not textual(have.type):
        found.refuse(
            f"{where} is {have.type}, 004 declares {col.type}: c001 converts only text ids "
            "to uuid; convert it by hand"
        )
        return
    if have.in_primary_key or have.referenced:
        found.refuse(
            f"{where} is {have.type}, 004 declares uuid, and it is a key other rows rely on: "
            "convert it by hand"
        )
        return
    count, shown = sample(
        f"SELECT id, quote_literal({col.name}) AS shown FROM public.{table} "
        f"WHERE {col.name} IS NOT NULL AND NOT {castable(col.name)}"
    )
    if count:
        found.refuse(
            f"{where} holds {count} value(s) that are not uuids (ids {shown}): correct them "
            "or set them to NULL where 004 allows it"
        )
        return
    found.do(
        f"convert {where} from {have.type} to uuid",
        lambda: op.convert_column(table, col.name, "uuid", f"{col.name}::uuid"),
    )


def survey_foreign_key(found: Survey, fk: ForeignKey) -> None:
    have = live_columns(fk.table).get(fk.column)
    if have is None:
        return  # added by this revision: no row holds a value yet
    value = as_uuid(f"c.{fk.column}", have.type)
    count, shown = sample(
        f"SELECT c.id, quote_literal(c.{fk.column}) AS shown FROM public.{fk.table} c "
        f"WHERE {value} IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM public.{fk.parent} p WHERE p.id = {value})"
    )
    if count:
        found.refuse(
            f"{fk.table}.{fk.column} names a {fk.parent} row that does not exist in "
            f"{count} row(s) (ids {shown}), so foreign key {fk.name} cannot be added: "
            f"add the missing {fk.parent} rows, or correct or delete these rows"
        )
        return
    found.do(
        f"add foreign key {fk.name}",
        lambda: op.create_foreign_key(
            fk.name,
            fk.table,
            fk.parent,
            [fk.column],
            ["id"],
            ondelete=fk.on_delete,
            source_schema="public",
            referent_schema="public",
        ),
    )


def survey_index(found: Survey, name: str, table: str, definition: str) -> None:
    have = index_definition(name)
    if have is None or have == (table, definition):
        return
    known = {**INDEXES_004, **LATER_INDEXES}
    target = next((n for n, d in known.items() if d == have and n != name), None)
    if target is not None and index_definition(target) == have:
        found.do(
            f"drop index {name} ({have[1]}), a duplicate of {target}",
            lambda: op.drop_index(name, table_name=have[0], schema="public"),
        )
        return
    if target is None or index_definition(target) is not None:
        target = default_index_name(name)
    found.do(
        f"rename index {name} ({have[1]}) to {target}",
        lambda: op.rename_index(have[0], name, target),
    )


# --------------------------------------------------------------------------- upgrade


def upgrade() -> None:
    if context.is_offline_mode():
        op.execute(offline_guard())
        return
    found = survey()
    if found.problems:
        raise Refused(
            f"Revision c001 cannot bring the chat tables to 004's shape without losing or "
            f"inventing values, in {len(found.problems)} place(s): "
            + "; ".join(found.problems)
            + ". Nothing was changed (these checks run before any change): fix them and "
            "re-run (docs/taking-over-production.md, 'When a step refuses')."
        )
    for _, action in found.actions:
        action()


def downgrade() -> None:
    """No-op: see the module docstring."""


def offline_guard() -> str:
    """``--sql``: raise where the chat tables exist and are not 004's (the script cannot
    read the rows to convert them)."""
    expected = ", ".join(
        f"('{table}', '{col.name}', '{col.type}', {str(col.not_null).lower()}, "
        + ("NULL" if col.default is None else "'" + col.default.replace("'", "''") + "'")
        + ")"
        for table, cols in COLUMNS.items()
        for col in cols
        if col.name != LEFT_TO_008
    )
    tables = ", ".join(f"'{table}'" for table in COLUMNS)
    indexes = " OR ".join(
        f"(to_regclass('public.{name}') IS NOT NULL AND split_part(pg_get_indexdef("
        f"to_regclass('public.{name}')), ' USING ', 2) <> '{definition}')"
        for name, (_, definition) in INDEXES_004.items()
    )
    return f"""
        DO $$
        BEGIN
          IF EXISTS (
            WITH expected(tbl, col, typ, not_null, dflt) AS (VALUES {expected}),
            live AS (
              SELECT c.relname AS tbl, a.attname AS col,
                     format_type(a.atttypid, a.atttypmod) AS typ, a.attnotnull AS not_null,
                     regexp_replace(pg_get_expr(d.adbin, d.adrelid),
                                    '^(extensions|public)\\.uuid_generate_v4', 'uuid_generate_v4')
                       AS dflt
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ({tables})
                AND a.attnum > 0 AND NOT a.attisdropped)
            SELECT 1 FROM expected e
            WHERE to_regclass('public.' || e.tbl) IS NOT NULL AND NOT EXISTS (
              SELECT 1 FROM live l WHERE l.tbl = e.tbl AND l.col = e.col AND l.typ = e.typ
                AND l.not_null = e.not_null AND l.dflt IS NOT DISTINCT FROM e.dflt)
            UNION ALL
            SELECT 1 FROM live l WHERE l.not_null AND l.dflt IS NULL AND NOT EXISTS (
              SELECT 1 FROM expected e WHERE e.tbl = l.tbl AND e.col = l.col)
              AND l.col <> '{LEFT_TO_008}')
          OR {indexes} THEN
            RAISE EXCEPTION 'Revision c001: the chat tables exist and are not in the shape of '
              '004; a --sql script cannot convert them (it cannot read their rows): run '
              '`alembic upgrade head` against the database (`chatdb plan` shows what it does)';
          END IF;
        END $$"""
