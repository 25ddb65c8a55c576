"""Run the backend's calls against a database as PostgREST runs them, and say which fail.

:func:`run_calls` runs each :class:`~chatdb.calls.model.Call` the way PostgREST runs it
for the backend's service-role key (chatdb.calls.postgrest): the written columns
checked against the schema cache first (PGRST204, nothing run), then the statement as
``service_role`` with ``request.jwt.claims`` = ``{"role": "service_role"}``. Values are
made from each column's type; the rows the call needs are made first, as the
connection's own role: the parents its foreign keys need (a website and an order for a
conversation, a conversation for a message), and, for an update, a delete or a select, a
row of its own table whose values the filters then take (eq: its value, neq: another,
in: a list holding it, is: null, gt/lt: bounds around it). A call whose ``retry`` names
the error's code runs again without the column the error names, as the backend does,
and its outcome says which columns it lost (``dropped``).

Everything happens inside the caller's open transaction and nothing is kept: each call
runs in a subtransaction of its own that is rolled back, and all of them go to the
server as one ``DO`` block (one round trip, plus one to read the catalog and one per
round of retries), so that a deploy can run it inside its own transaction.

``chatdb calls check [FILE]`` runs a calls file (by default the project's
``calls/backend.calls``) against DATABASE_URL, else the running local cluster, in one
transaction that is always rolled back, and prints one line per call.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from chatdb import database
from chatdb.calls import postgrest
from chatdb.calls.model import WRITING, Call, CallsFile, CallsFileError
from chatdb.failures import BadInput, Finding, Refused, RolledBack, first_line
from chatdb.project import root
from chatdb.sqltext import identifier, literal, send

APPLICATION_NAME = "chatdb calls check"
CALLS_FILE = Path("calls") / "backend.calls"
LOCK_TIMEOUT = "2s"
UNDO = "CKUND"  # the SQLSTATE a call's subtransaction raises to roll itself back
RESULT_SETTING = "chatdb.calls"
MAX_DEPTH = 4  # parents of parents made, at most
_UNKNOWN_COLUMN = re.compile(
    r'column (?:"?\w+"?\.)?"?(?P<column>\w+)"? (?:of relation "\w+" )?does not exist'
)


@dataclass(frozen=True)
class Outcome:
    """What happened to a call: ``ok``, or the failure's code (``PGRST204``, ``PGRST205``
    or the SQLSTATE), the column it names, and its first line; ``dropped``: the columns
    the call's retry dropped before it succeeded or failed; ``rows``: how many rows the
    request answered (the made row its filters meet: 1 for an update, a delete or a
    select of the kind the backend makes)."""

    call: Call
    ok: bool
    code: str | None = None
    column: str | None = None
    message: str = ""
    dropped: tuple[str, ...] = ()
    rows: int | None = None  # the rows the request answered (it ran and succeeded)

    @property
    def failure(self) -> str:
        """The failure's code and the column it names (``PGRST204 message_text``)."""
        return f"{self.code} {self.column}" if self.column else f"{self.code}"

    def render(self) -> str:
        lost = f" (its retry dropped {', '.join(self.dropped)})" if self.dropped else ""
        if self.ok:
            return f"ok        {self.call.title}{lost}"
        return f"FAILED    {self.failure}  {self.call.title}{lost}: {self.message}"


class CallsCannotRun(Refused):
    """The calls cannot be run as the service role at all (no such role, or the
    connection's role may not switch to it)."""


# --------------------------------------------------------------------------- the catalog


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as format_type() says it
    base: str  # the base type's name (a domain's base), e.g. uuid, text, int4, jsonb, _text
    category: str  # pg_type.typcategory: S string, N numeric, B boolean, D date/time, A array, ...
    not_null: bool
    has_default: bool  # a default, an identity or a generated column
    length: int | None = None  # varchar(n), char(n)
    labels: tuple[str, ...] = ()  # an enum's labels


@dataclass
class Table:
    schema: str
    name: str
    kind: str
    columns: dict[str, Column] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    keys: list[tuple[str, ...]] = field(default_factory=list)  # primary and unique
    foreign_keys: list[tuple[tuple[str, ...], tuple[str, str], tuple[str, ...]]] = field(
        default_factory=list
    )  # (columns, (schema, table), referenced columns)

    def is_key(self, column: str) -> bool:
        return any(column in key for key in self.keys)


@dataclass
class Catalog:
    """The tables of schema public and every table their foreign keys reach."""

    tables: dict[tuple[str, str], Table]
    role: str  # "ok", "missing" (no service_role) or "not a member"
    user: str

    def public(self, name: str) -> Table | None:
        return self.tables.get((postgrest.SCHEMA, name))

    def cache(self) -> postgrest.Cache:
        return {
            name: {c.name: c.type for c in table.columns.values()}
            for (schema, name), table in self.tables.items()
            if schema == postgrest.SCHEMA
        }


CATALOG_SQL = """
WITH RECURSIVE wanted(oid) AS (
    SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    UNION
    SELECT k.confrelid FROM pg_constraint k JOIN wanted w ON w.oid = k.conrelid
    WHERE k.contype = 'f'
)
SELECT json_build_object(
  'columns', (SELECT coalesce(json_agg(json_build_array(
        n.nspname, c.relname, c.relkind::text, a.attname, format_type(a.atttypid, a.atttypmod),
        bt.typname, bt.typcategory::text, a.attnotnull,
        a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
        CASE WHEN bt.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4
             THEN a.atttypmod - 4 END,
        (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
         WHERE e.enumtypid = bt.oid)
      ) ORDER BY n.nspname, c.relname, a.attnum), '[]'::json)
    FROM wanted w JOIN pg_class c ON c.oid = w.oid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_type t ON t.oid = a.atttypid
    JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END),
  'constraints', (SELECT coalesce(json_agg(json_build_array(
        k.contype::text, n.nspname, c.relname,
        (SELECT json_agg(a.attname ORDER BY u.i) FROM unnest(k.conkey) WITH ORDINALITY u(num, i)
         JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.num),
        fn.nspname, f.relname,
        (SELECT json_agg(a.attname ORDER BY u.i) FROM unnest(k.confkey) WITH ORDINALITY u(num, i)
         JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.num)
      )), '[]'::json)
    FROM pg_constraint k JOIN wanted w ON w.oid = k.conrelid
    JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_class f ON f.oid = k.confrelid LEFT JOIN pg_namespace fn ON fn.oid = f.relnamespace
    WHERE k.contype IN ('p', 'u', 'f')),
  'role', CASE WHEN to_regrole('service_role') IS NULL THEN 'missing'
               WHEN pg_has_role(current_user, 'service_role', 'MEMBER') THEN 'ok'
               ELSE 'not a member' END,
  'user', current_user
)
"""


def read_catalog(connection: Connection) -> Catalog:
    """One round trip: the columns and keys of public's tables and of their parents."""
    found = send(connection, CATALOG_SQL).scalar_one()
    tables: dict[tuple[str, str], Table] = {}
    for (
        schema,
        name,
        kind,
        column,
        type_,
        base,
        category,
        not_null,
        default,
        length,
        labels,
    ) in found["columns"]:
        table = tables.setdefault((schema, name), Table(schema, name, kind))
        table.columns[column] = Column(
            column, type_, base, category, not_null, default, length, tuple(labels or ())
        )
    for kind, schema, name, columns, parent_schema, parent, references in found["constraints"]:
        table = tables.get((schema, name))
        if table is None:
            continue
        if kind == "f":
            table.foreign_keys.append((tuple(columns), (parent_schema, parent), tuple(references)))
        else:
            table.keys.append(tuple(columns))
            if kind == "p":
                table.primary_key = tuple(columns)
    return Catalog(tables, found["role"], found["user"])


# --------------------------------------------------------------------------- made values

_TIMES = {
    "D": ("2026-01-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
}
_DATES = {
    "date": ("2026-01-01", "2025-01-01", "2027-01-01"),
    "time": ("12:00:00", "11:00:00", "13:00:00"),
    "timetz": ("12:00:00+00", "11:00:00+00", "13:00:00+00"),
    "interval": ("1 hour", "1 minute", "1 day"),
    "timestamp": ("2026-01-01T00:00:00", "2025-01-01T00:00:00", "2027-01-01T00:00:00"),
}
_OTHER = {
    "bool": True,
    "json": {"chatdb": "check"},
    "jsonb": {"chatdb": "check"},
    "inet": "192.0.2.1",
    "cidr": "192.0.2.0/24",
    "macaddr": "08:00:2b:01:02:03",
    "bytea": "\\x00",
    "point": "(0,0)",
    "xml": "<chatdb/>",
    "tsvector": "chatdb",
    "bit": "1",
    "varbit": "1",
}


class Values:
    """Values made from a column's type, each call's different from the others'."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> int:
        self.count += 1
        return self.count

    def make(self, column: Column, *, key: bool = False) -> Any:
        n = self.next()
        base, category = column.base, column.category
        if category == "A":
            return []
        if category == "E":
            return column.labels[0] if column.labels else None
        if base == "uuid":
            return f"c4a7db00-0000-4000-8000-{n:012x}"
        if base in ("int2", "int4", "int8"):
            return (30_000 if base == "int2" else 2_000_000_000) + n if key else n
        if category == "N":
            return n
        if base in _DATES:
            return _DATES[base][0]
        if category == "D":
            return _TIMES["D"][0]
        if base in _OTHER:
            return _OTHER[base]
        text = f"chatdb-{n}"
        return text[-column.length :] if column.length else text

    def other(self, column: Column, value: Any) -> Any:
        """A value of the column's type that is not ``value``."""
        if isinstance(value, bool):
            return not value
        made = self.make(column)
        return made if made != value else f"{made}x" if isinstance(made, str) else made + 1

    def bound(self, column: Column, value: Any, *, below: bool) -> Any:
        """A value before (``below``) or after ``value`` in the column's order."""
        index = 1 if below else 2
        if column.base in _DATES:
            return _DATES[column.base][index]
        if column.category == "D":
            return _TIMES["D"][index]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return value
        if isinstance(value, (int, float)):
            return value - 1 if below else value + 1
        if column.base == "uuid":
            return (
                "00000000-0000-0000-0000-000000000000"
                if below
                else "ffffffff-ffff-ffff-ffff-ffffffffffff"
            )
        return "" if below else value + "~"


# --------------------------------------------------------------------------- one call's SQL


@dataclass(frozen=True)
class Row:
    """A row made for the calls, as the connection's own role: its statement, its
    values, and the rows it needs first (its parents, and theirs)."""

    index: int
    statement: str
    values: dict[str, Any]
    needs: tuple[int, ...]


@dataclass
class Prepared:
    """A call ready to run: the made rows it needs and its own request's statement; or
    the outcome PostgREST gives without running anything."""

    call: Call
    dropped: tuple[str, ...] = ()
    needs: tuple[int, ...] = ()  # indexes of Preparer.rows, parents first
    statement: str = ""
    payload: dict[str, Any] = field(default_factory=dict)  # what a write sends
    answered: Outcome | None = None


class Preparer:
    """Prepares calls against one catalog. The rows they need are shared: one row of a
    table for every set of columns wanted in it (a conversation for every message
    insert, a website for every conversation), made once before the calls that need
    it; each call runs in a subtransaction of its own, so none sees what another did."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.cache = catalog.cache()
        self.values = Values()
        self.rows: list[Row] = []
        self._rows: dict[tuple, Row] = {}

    def setup(self, prepared: Prepared) -> list[str]:
        """The statements that make the rows ``prepared`` needs, parents first."""
        return [self.rows[index].statement for index in prepared.needs]

    def prepare(self, call: Call, dropped: tuple[str, ...] = ()) -> Prepared:
        prepared = Prepared(call, dropped)
        try:
            if call.operation in WRITING:
                postgrest.check_payload(call.table, call.writes, self.cache)
            else:
                postgrest.check_table(call.table, self.cache)
            # The checks above found it in the cache, which is the catalog's public tables.
            table = self.catalog.tables[(postgrest.SCHEMA, call.table)]
            needs: set[int] = set()
            prepared.statement = self.statement(call, table, prepared, needs)
            prepared.needs = tuple(sorted(needs))
        except postgrest.PostgrestError as error:
            prepared.answered = Outcome(
                call, False, error.code, error.column, error.message, dropped
            )
        return prepared

    def statement(self, call: Call, table: Table, prepared: Prepared, needs: set[int]) -> str:
        types = self.cache[call.table]
        if call.operation in ("insert", "upsert"):
            payload = prepared.payload = self.payload(table, call.writes, needs)
            conflict: tuple[str, ...] = ()
            if call.operation == "upsert":
                conflict = table.primary_key
                if conflict and all(c in payload for c in conflict):
                    existing = self.row(table, set(conflict), needs)
                    payload.update({c: existing[c] for c in conflict})
            return postgrest.insert_sql(call.table, payload, on_conflict=conflict)
        target = (
            self.row(table, self.filtered_columns(call, table), needs)
            if table.kind in ("r", "p")
            else {}
        )
        filters = [
            (f.column, f.operator, self.filter_value(table, f.column, f.operator, target))
            for f in call.filters
        ]
        if call.operation == "update":
            payload = prepared.payload = self.payload(table, call.writes, needs)
            return postgrest.update_sql(call.table, payload, filters, types)
        if call.operation == "delete":
            return postgrest.delete_sql(call.table, filters, types)
        order = [str(o) for o in call.orders]
        return postgrest.select_sql(call.table, call.selects, filters, order, types, call.limit)

    def filtered_columns(self, call: Call, table: Table) -> set[str]:
        """The columns the made row gets a value in: what the filters compare (but
        ``is``, which looks for NULL)."""
        return {
            f.column
            for f in call.filters
            if f.column in table.columns and f.operator not in ("is", "not.is")
        }

    def payload(self, table: Table, writes: Sequence[str], needs: set[int]) -> dict[str, Any]:
        """Made values for the written columns; a foreign key's columns take a parent
        row's key, the parent made first."""
        values: dict[str, Any] = {}
        for columns, parent, references in table.foreign_keys:
            if any(c in writes for c in columns):
                row = self.parent(parent, references, needs)
                if row is not None:
                    values.update(
                        {c: row[r] for c, r in zip(columns, references, strict=True) if c in writes}
                    )
        for name in writes:
            if name not in values:
                values[name] = self.values.make(table.columns[name], key=table.is_key(name))
        return {name: values[name] for name in writes}

    def parent(
        self, where: tuple[str, str], references: Sequence[str], needs: set[int], depth: int = 0
    ) -> dict[str, Any] | None:
        table = self.catalog.tables.get(where)
        if table is None or depth > MAX_DEPTH:
            return None
        return self.row(table, set(references), needs, depth + 1)

    def row(
        self, table: Table, wanted: set[str], needs: set[int], depth: int = 0
    ) -> dict[str, Any]:
        """A row of ``table`` with values in its NOT NULL columns without a default and in
        ``wanted``, its parents made first: made once, then shared."""
        key = (table.schema, table.name, frozenset(wanted))
        found = self._rows.get(key)
        if found is None:
            found = self._make_row(table, wanted, depth)
            self._rows[key] = found
        needs.update(found.needs)
        needs.add(found.index)
        return found.values

    def _make_row(self, table: Table, wanted: set[str], depth: int) -> Row:
        needed = {
            name
            for name, column in table.columns.items()
            if column.not_null and not column.has_default
        } | wanted
        values: dict[str, Any] = {}
        parents: set[int] = set()
        for columns, parent, references in table.foreign_keys:
            if parent == (table.schema, table.name) or not any(c in needed for c in columns):
                continue
            row = self.parent(parent, references, parents, depth)
            if row is not None:
                values.update(dict(zip(columns, (row[r] for r in references), strict=True)))
        for name in table.columns:
            if name in needed and name not in values:
                values[name] = self.values.make(table.columns[name], key=table.is_key(name))
        if values:
            statement = postgrest.insert_sql(
                table.name, values, overriding=True, schema=table.schema
            )
        else:
            statement = (
                f"INSERT INTO {postgrest.qualified(table.name, table.schema)} DEFAULT VALUES"
            )
        row = Row(len(self.rows), statement, values, tuple(sorted(parents)))
        self.rows.append(row)
        return row

    def filter_value(self, table: Table, name: str, operator: str, row: dict[str, Any]) -> Any:
        """A value the made row meets: eq its value, neq another, in a list with it, is
        null, gt/gte and lt/lte bounds around it (``not.`` flips eq, in and is)."""
        column = table.columns.get(name)
        if column is None:  # PostgreSQL names it (42703)
            return "chatdb"
        value = row.get(name)
        if value is None and operator not in ("is", "not.is"):
            value = self.values.make(column, key=table.is_key(name))
        base = operator.removeprefix("not.")
        negated = operator != base
        if base == "is":
            return None
        if base == "eq":
            return self.values.other(column, value) if negated else value
        if base == "neq":
            return value if negated else self.values.other(column, value)
        if base == "in":
            return [self.values.other(column, value)] if negated else [value]
        if base in ("gt", "gte"):
            return value if base == "gte" else self.values.bound(column, value, below=True)
        if base in ("lt", "lte"):
            return value if base == "lte" else self.values.bound(column, value, below=False)
        if base in ("fts", "plfts", "phfts", "wfts"):
            return "chatdb"
        return value


# --------------------------------------------------------------------------- running


def _diagnostics(indent: str) -> list[str]:
    return [
        f"{indent}GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, col = COLUMN_NAME,",
        f"{indent}  msg = MESSAGE_TEXT;",
    ]


def do_block(prepared: Sequence[Prepared], rows: Sequence[Row]) -> str:
    """One DO block: the rows the calls need, made as the connection's role (each in a
    subtransaction, its failure kept); then PostgREST's settings for a request of the
    service-role key (the role, the claims); then every call in a subtransaction of its
    own, its outcome kept in a variable, rolled back (RAISE SQLSTATE UNDO). At the end
    everything is rolled back, the role and settings with it, and the outcomes are left
    in the transaction-local setting ``chatdb.calls``, as JSON."""
    lines = [
        "DECLARE",
        "  outcomes jsonb := '[]';",
        "  failed jsonb := '{}';",
        "  body json; state text; col text; msg text;",
        "BEGIN",
        "  BEGIN",
    ]
    needed = sorted({index for item in prepared for index in item.needs})
    for index in needed:
        lines += [
            f"    BEGIN EXECUTE {literal(rows[index].statement)};",
            "    EXCEPTION WHEN OTHERS THEN",
            *_diagnostics("      "),
            f"      failed := failed || jsonb_build_object('{index}', jsonb_build_object(",
            "        'code', state, 'column', col, 'message', msg));",
            "    END;",
        ]
    lines.append(f"    EXECUTE {literal(postgrest.request_sql())};")  # from here: service_role
    for number, item in enumerate(prepared):
        keys = "ARRAY[" + ", ".join(f"'{index}'" for index in item.needs) + "]::text[]"
        lines += [
            f"    IF failed ?| {keys} THEN",
            f"      outcomes := outcomes || jsonb_build_array(jsonb_build_object('i', {number},",
            "        'setup', true) || (SELECT failed -> k",
            f"        FROM unnest({keys}) k WHERE failed ? k LIMIT 1));",
            "    ELSE",
            "      BEGIN",
            f"        EXECUTE {literal(item.statement)} INTO body;",
            "        outcomes := outcomes || jsonb_build_array(jsonb_build_object(",
            f"          'i', {number}, 'rows', json_array_length(body)));",
            f"        RAISE SQLSTATE '{UNDO}';",
            f"      EXCEPTION WHEN SQLSTATE '{UNDO}' THEN NULL;",
            "        WHEN OTHERS THEN",
            *_diagnostics("          "),
            "          outcomes := outcomes || jsonb_build_array(jsonb_build_object(",
            f"            'i', {number}, 'code', state, 'column', col, 'message', msg));",
            "      END;",
            "    END IF;",
        ]
    lines += [
        f"    RAISE SQLSTATE '{UNDO}';",
        f"  EXCEPTION WHEN SQLSTATE '{UNDO}' THEN NULL;",
        "  END;",
        f"  PERFORM set_config({literal(RESULT_SETTING)}, outcomes::text, true);",
        "END",
    ]
    body = "\n".join(lines)
    tag = "$chatdb_calls$"
    while tag in body:
        tag = tag[:-1] + "_$"
    return f"DO {tag}\n{body}\n{tag}"


SAVEPOINT = identifier("chatdb_calls")


def _run(
    connection: Connection, prepared: Sequence[Prepared], rows: Sequence[Row]
) -> list[dict[str, Any]]:
    """One round trip: the DO block inside a savepoint, and its outcomes read back."""
    batch = (
        f"SAVEPOINT {SAVEPOINT};\n{do_block(prepared, rows)};\nRELEASE SAVEPOINT {SAVEPOINT};\n"
        f"SELECT current_setting({literal(RESULT_SETTING)}), "
        f"set_config({literal(RESULT_SETTING)}, '', true)"
    )
    try:
        text = send(connection, batch).fetchone()[0]
    except DBAPIError as error:  # a statement_timeout, a lost server: not a call's outcome
        try:
            send(connection, f"ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}")
        except DBAPIError:
            raise error from None  # the first error is the one worth reporting
        raise
    found = {item["i"]: item for item in json.loads(text)}
    return [found[index] for index in range(len(prepared))]


def column_named(column: str | None, message: str) -> str | None:
    """The column an error names: its column field, else the one in "column ... does
    not exist"."""
    if column:
        return column
    match = _UNKNOWN_COLUMN.search(message or "")
    return match["column"] if match else None


def run_calls(connection: Connection, calls: Sequence[Call]) -> list[Outcome]:
    """Each call as PostgREST runs it for the backend: inside the caller's open
    transaction, each call in a savepoint of its own, rolled back to it afterwards
    (nothing is kept, the caller's transaction stays usable)."""
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        raise ValueError("run_calls needs a connection in a transaction, not in autocommit")
    catalog = read_catalog(connection)
    if catalog.role == "missing":
        raise CallsCannotRun(
            "the role service_role does not exist, so no call can run as the backend's "
            "key: migrate the database first (revision 000 creates it where Supabase does not)"
        )
    if catalog.role != "ok":
        raise CallsCannotRun(
            f"the role {catalog.user} may not SET ROLE service_role: connect as the database "
            f"owner (postgres on Supabase) or GRANT service_role TO {identifier(catalog.user)}"
        )
    preparer = Preparer(catalog)
    outcomes: dict[int, Outcome] = {}
    pending = [(index, preparer.prepare(call)) for index, call in enumerate(calls)]
    while pending:
        runnable = [(index, item) for index, item in pending if item.answered is None]
        results = (
            _run(connection, [item for _, item in runnable], preparer.rows) if runnable else []
        )
        ran = dict(zip((index for index, _ in runnable), results, strict=True))
        again = []
        for index, item in pending:
            outcome = item.answered or _outcome(item, ran[index])
            retry = _retried(outcome, preparer)
            if retry is None:
                outcomes[index] = outcome
            else:
                again.append((index, retry))
        pending = again
    return [outcomes[index] for index in range(len(calls))]


def _outcome(item: Prepared, result: dict[str, Any]) -> Outcome:
    code = result.get("code")
    if code is None:
        return Outcome(item.call, True, dropped=item.dropped, rows=result.get("rows"))
    message = (result.get("message") or "").splitlines()[0] if result.get("message") else ""
    if result.get("setup"):
        message = f"making the rows the call needs failed: {message}"
    column = column_named(result.get("column"), message)
    return Outcome(item.call, False, code, column, message, item.dropped)


def _retried(outcome: Outcome, preparer: Preparer) -> Prepared | None:
    """The call again without the column its error named, when its retry covers the
    error (as the backend's fallbacks do); None when it does not."""
    call = outcome.call
    if outcome.ok or outcome.code not in call.retry or not outcome.column:
        return None
    column = outcome.column
    if column in call.writes:
        reduced = replace(call, writes=tuple(c for c in call.writes if c != column))
    elif column in call.selects:
        reduced = replace(call, selects=tuple(c for c in call.selects if c != column))
    else:
        return None
    if (
        call.operation in WRITING
        and not reduced.writes
        or call.operation == "select"
        and not reduced.selects
    ):
        return None
    return preparer.prepare(reduced, (*outcome.dropped, column))


# --------------------------------------------------------------------------- the command


def default_file() -> Path:
    return root() / CALLS_FILE


def read_calls_file(path: Path) -> CallsFile:
    if not path.is_file():
        raise BadInput(
            f"The calls file {path} does not exist: give a file written by "
            "`chatdb calls scan DIR --write FILE` (the project's is calls/backend.calls)."
        )
    try:
        return CallsFile.read(path)
    except CallsFileError as exc:
        raise BadInput(
            f"The calls file {exc}: fix the line or write the file again with `chatdb calls scan`."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"Cannot read the calls file {path}: {exc}.") from None


@dataclass
class Report:
    outcomes: list[Outcome]
    seconds: float
    where: str


def check_file(path: Path) -> tuple[CallsFile, Report]:
    """Run the file's calls against DATABASE_URL, else the running local cluster, in one
    transaction with a short lock_timeout that is always rolled back."""
    calls_file = read_calls_file(path)
    target = database.for_inspection()
    with database.connected(target, APPLICATION_NAME) as connection:
        transaction = connection.begin()
        try:
            send(connection, f"SET LOCAL lock_timeout = {literal(LOCK_TIMEOUT)}")
            started = time.perf_counter()
            outcomes = run_calls(connection, calls_file.calls)
            seconds = time.perf_counter() - started
        except CallsCannotRun as exc:
            raise CallsCannotRun(f"Cannot run the calls at {target.shown}: {exc}.") from None
        except DBAPIError as exc:
            raise RolledBack(
                f"Running the calls at {target.shown} failed: {first_line(exc)}; "
                "nothing was changed."
            ) from None
        finally:
            transaction.rollback()
    return calls_file, Report(outcomes, seconds, target.shown)


def lines(calls_file: CallsFile, report: Report, name: str) -> Iterator[str]:
    yield (
        f"The calls of {name} against {report.where}, as PostgREST runs them for the "
        "service-role key (rolled back):"
    )
    for outcome in report.outcomes:
        yield outcome.render()
    for unresolved in calls_file.unresolved:
        yield f"not run   {unresolved.render()}"
    succeeded = sum(outcome.ok for outcome in report.outcomes)
    total = len(report.outcomes)
    tail = f"; {len(calls_file.unresolved)} unresolved, not run" if calls_file.unresolved else ""
    yield f"{succeeded} of {total} calls succeed{tail} ({report.seconds * 1000:.0f} ms)."


def main(file: str | None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    path = Path(file) if file else default_file()
    calls_file, report = check_file(path)
    for line in lines(calls_file, report, file or str(CALLS_FILE)):
        print(line, file=out)
    return 0 if all(outcome.ok for outcome in report.outcomes) else Finding.exit_code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help=f"a calls file (default: the project's {CALLS_FILE})",
    )
    parser.set_defaults(func=lambda args: main(args.file))
