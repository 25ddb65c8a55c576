"""Requests as PostgREST runs them, on a database connection.

PostgREST runs every request in a transaction of its own, as a database role, with the
JWT's claims in transaction-local settings::

    BEGIN;
    SELECT set_config('role', 'service_role', true),      -- SET LOCAL ROLE service_role
           set_config('request.jwt.claims', '{"role": "service_role"}', true);
    <one statement>
    COMMIT;

(PostgREST before v9 set one setting per claim, ``request.jwt.claim.sub`` and so on;
``legacy`` does that.) The statement is built the way PostgREST builds it:

1. the payload's columns are looked up in its schema cache first: the first one it does
   not know is **PGRST204** ("Could not find the 'x' column of 't' in the schema
   cache", HTTP 400), and nothing reaches the database (a table it does not know is
   PGRST205);
2. an insert reads the payload with ``json_populate_recordset``, an update with
   ``json_populate_record``, so PostgreSQL converts each value to its column's type, and
   a column the payload does not name gets its default (insert) or is left alone
   (update); an upsert is the insert ``ON CONFLICT`` on the primary key;
3. filters compare a column with an untyped literal (PostgreSQL casts it to the column's
   type); selected, filtered and ordered columns are not checked against the cache: an
   unknown one is PostgreSQL's 42703 ("column chat_messages.message does not exist"),
   which PostgREST passes on;
4. the rows come back as one JSON array (``Prefer: return=representation``).

Statements are built as text with their values written in as literals
(:func:`literal`), so that one query string can hold several of them
(:mod:`chatdb.calls.check` runs a whole calls file in one round trip) and any driver can
send them: the calls check runs them on a SQLAlchemy connection, the tests on psycopg 3
(tests/postgrest.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from chatdb.sqltext import identifier, literal

SERVICE_ROLE = "service_role"
SCHEMA = "public"
# (column, operator, value): PostgREST's ``column=operator.value``; ``in`` takes a list.
Filter = tuple[str, str, Any]
Cache = dict[str, dict[str, str]]  # {table: {column: type}}


class PostgrestError(Exception):
    """An error PostgREST answers itself, before running anything."""

    code = ""

    def __init__(self, table: str, column: str | None, message: str) -> None:
        self.table = table
        self.column = column
        self.message = message
        super().__init__(f"{self.code}: {message}")


class Pgrst204(PostgrestError):
    """A payload column its schema cache does not have (HTTP 400)."""

    code = "PGRST204"

    def __init__(self, table: str, column: str) -> None:
        super().__init__(
            table, column, f"Could not find the '{column}' column of '{table}' in the schema cache"
        )


class Pgrst205(PostgrestError):
    """A table its schema cache does not have (HTTP 404)."""

    code = "PGRST205"

    def __init__(self, table: str) -> None:
        super().__init__(
            table, None, f"Could not find the table '{SCHEMA}.{table}' in the schema cache"
        )


class Pgrst100(PostgrestError):
    """A request PostgREST cannot parse (an unknown filter operator; HTTP 400)."""

    code = "PGRST100"


# --------------------------------------------------------------------------- SQL text


def qualified(table: str, schema: str = SCHEMA) -> str:
    return f"{identifier(schema)}.{identifier(table)}"


def claims(role: str, sub: Any = None) -> dict[str, str]:
    found = {"role": role}
    if sub is not None:
        found["sub"] = str(sub)
    return found


def request_sql(role: str = SERVICE_ROLE, sub: Any = None, *, legacy: bool = False) -> str:
    """What PostgREST sets at the start of a request's transaction, as it does it (one
    ``set_config`` each, local to the transaction): the role, the JWT's claims, and
    UTC (a Supabase database's time zone, so JSON times do not depend on the machine)."""
    settings = [("role", role)]
    if legacy:
        settings += [
            (f"request.jwt.claim.{name}", value) for name, value in claims(role, sub).items()
        ]
    else:
        settings.append(("request.jwt.claims", json.dumps(claims(role, sub))))
    settings.append(("TimeZone", "UTC"))
    return "SELECT " + ", ".join(
        f"set_config({literal(name)}, {literal(value)}, true)" for name, value in settings
    )


def schema_cache_sql(schema: str = SCHEMA) -> str:
    """The rows of PostgREST's schema cache of ``schema``: (table, column, type)."""
    return (
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {literal(schema)} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum"
    )


def schema_cache_of(rows: Sequence[Sequence[str]]) -> Cache:
    cache: Cache = {}
    for table, column, type_ in rows:
        cache.setdefault(table, {})[column] = type_
    return cache


def check_payload(table: str, names: Sequence[str], cache: Cache) -> None:
    """PostgREST's first look: Pgrst205 for an unknown table, Pgrst204 for the first
    payload column it does not know."""
    columns = cache.get(table)
    if columns is None:
        raise Pgrst205(table)
    for name in names:
        if name not in columns:
            raise Pgrst204(table, name)


def check_table(table: str, cache: Cache) -> None:
    if table not in cache:
        raise Pgrst205(table)


def _text(value: Any, type_: str | None = None) -> str:
    """A filter's value as PostgREST passes it: text, JSON for a json column's object."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        if type_ is not None and type_.endswith("[]") and isinstance(value, list):
            return "{" + ",".join(json.dumps(str(v)) for v in value) + "}"
        return json.dumps(value)
    return str(value)


def value_sql(value: Any, type_: str | None = None) -> str:
    return "NULL" if value is None else literal(_text(value, type_))


_COMPARISONS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "LIKE",
    "ilike": "ILIKE",
    "cs": "@>",
    "cd": "<@",
    "ov": "&&",
    "sl": "<<",
    "sr": ">>",
    "nxr": "&<",
    "nxl": "&>",
    "adj": "-|-",
}


def filter_sql(table: str, column: str, operator: str, value: Any, types: Mapping[str, str]) -> str:
    """One filter as PostgREST writes it (``not.`` prefixes negate); Pgrst100 for an
    operator it does not know."""
    if operator.startswith("not."):
        return f"NOT ({filter_sql(table, column, operator[4:], value, types)})"
    target = f"{qualified(table)}.{identifier(column)}"
    type_ = types.get(column)
    if operator == "is":
        word = "NULL" if value in (None, "null") else str(value).upper()
        if word not in ("NULL", "TRUE", "FALSE", "UNKNOWN"):
            raise Pgrst100(table, column, f"is.{value}: is takes null, true, false or unknown")
        return f"{target} IS {word}"
    if operator == "in":
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items:
            return "false"
        return f"{target} IN ({', '.join(value_sql(v, type_) for v in items)})"
    if operator in ("fts", "plfts", "phfts", "wfts"):
        function = {
            "fts": "to_tsquery",
            "plfts": "plainto_tsquery",
            "phfts": "phraseto_tsquery",
            "wfts": "websearch_to_tsquery",
        }[operator]
        return f"{target} @@ {function}({value_sql(value)})"
    if operator not in _COMPARISONS:
        raise Pgrst100(table, column, f"unknown operator {operator!r} on {column}")
    shown = value
    if operator in ("like", "ilike") and isinstance(value, str):
        shown = value.replace("*", "%")
    return f"{target} {_COMPARISONS[operator]} {value_sql(shown, type_)}"


def where_sql(table: str, filters: Sequence[Filter], types: Mapping[str, str]) -> str:
    parts = [filter_sql(table, column, op, value, types) for column, op, value in filters]
    return " WHERE " + " AND ".join(parts) if parts else ""


def as_json_body(statement: str) -> str:
    """The statement's rows as PostgREST's JSON body (one array)."""
    return (
        f"WITH pgrst_source AS ({statement}) "
        "SELECT coalesce(json_agg(pgrst_source), '[]'::json) FROM pgrst_source"
    )


def _names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(name for row in rows for name in row))


def insert_sql(
    table: str,
    payload: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    on_conflict: Sequence[str] = (),
    overriding: bool = False,
    schema: str = SCHEMA,
) -> str:
    """``POST /rest/v1/<table>`` (a JSON object or array); with ``on_conflict`` columns,
    ``Prefer: resolution=merge-duplicates`` (an upsert). ``overriding``: OVERRIDING
    SYSTEM VALUE, for rows made as the connection's own role."""
    rows = [payload] if isinstance(payload, Mapping) else list(payload)
    names = _names(rows)
    target = qualified(table, schema)
    columns = ", ".join(identifier(n) for n in names)
    override = " OVERRIDING SYSTEM VALUE" if overriding else ""
    statement = (
        f"INSERT INTO {target} ({columns}){override} SELECT {columns} "
        f"FROM json_populate_recordset(NULL::{target}, {literal(json.dumps(rows))}::json)"
    )
    if on_conflict:
        keys = ", ".join(identifier(n) for n in on_conflict)
        updates = ", ".join(
            f"{identifier(n)} = EXCLUDED.{identifier(n)}" for n in names if n not in on_conflict
        )
        statement += f" ON CONFLICT ({keys}) " + (
            f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        )
    return as_json_body(f"{statement} RETURNING {target}.*")


def update_sql(
    table: str, payload: Mapping[str, Any], filters: Sequence[Filter], types: Mapping[str, str]
) -> str:
    """``PATCH /rest/v1/<table>?<filters>`` with a JSON object."""
    target = qualified(table)
    assignments = ", ".join(f"{identifier(n)} = pgrst_body.{identifier(n)}" for n in payload)
    return as_json_body(
        f"UPDATE {target} SET {assignments} FROM (SELECT * FROM json_populate_record("
        f"NULL::{target}, {literal(json.dumps(dict(payload)))}::json)) pgrst_body"
        f"{where_sql(table, filters, types)} RETURNING {target}.*"
    )


def delete_sql(table: str, filters: Sequence[Filter], types: Mapping[str, str]) -> str:
    """``DELETE /rest/v1/<table>?<filters>``."""
    target = qualified(table)
    return as_json_body(
        f"DELETE FROM {target}{where_sql(table, filters, types)} RETURNING {target}.*"
    )


def select_sql(
    table: str,
    columns: Sequence[str],
    filters: Sequence[Filter] = (),
    order: Sequence[str] = (),
    types: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> str:
    """``GET /rest/v1/<table>?select=<columns>&<filters>&order=<order>&limit=<limit>``:
    ``columns`` may be ``["*"]``, ``order`` items ``column.desc`` / ``column.asc``."""
    target = qualified(table)
    if list(columns) in ([], ["*"]):
        selected = f"{target}.*"
    else:
        selected = ", ".join(
            f"{target}.*" if c == "*" else f"{target}.{identifier(c)}" for c in columns
        )
    statement = f"SELECT {selected} FROM {target}{where_sql(table, filters, types or {})}"
    ordering = []
    for item in order:
        name, _, direction = item.partition(".")
        ordering.append(f"{target}.{identifier(name)} {'DESC' if direction == 'desc' else 'ASC'}")
    if ordering:
        statement += " ORDER BY " + ", ".join(ordering)
    if limit is not None:
        statement += f" LIMIT {int(limit)}"
    return as_json_body(statement)
