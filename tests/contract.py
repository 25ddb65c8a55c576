"""The chat backend's contract with the database, as facts: the calls of
``calls/backend.calls`` (read from BinaApp's code at 7938e1d by ``chatdb calls scan``),
run as PostgREST runs them for the service-role key (``chatdb.calls.check.run_calls``).

What each call should do is derived, never listed call by call:

- at head, from the models (``models.Base.metadata``): a written column no model
  declares is PGRST204 (PostgREST does not know it); a selected one is dropped by the
  call's retry (``retry=42703``), or 42703 without one; a filtered or ordered one is
  42703; every other call succeeds;
- at 008, the same from docs/spec/chat-schema.md's tables (``tests.catalog.EXPECTED``),
  and after-008.md section 1's 23502: an insert that leaves out a NOT NULL column
  without a default (the delivery path's conversation, without customer_id) fails.

A rescan that changes a call changes the file, and these derivations follow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import psycopg
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from chatdb.calls import check
from chatdb.calls.check import Outcome, Preparer, read_catalog, run_calls
from chatdb.calls.model import WRITING, Call, CallsFile
from chatdb.calls.postgrest import request_sql, select_sql
from chatdb.sqltext import send
from tests import catalog
from tests.pg import ROOT

CALLS_FILE = ROOT / check.CALLS_FILE
# chat-schema.md, "Triggers": update_chat_conversations_updated_at sets updated_at on
# every update of a conversation, whatever the update sends.
TRIGGER_SETS = {("chat_conversations", "update"): {"updated_at"}}


@cache
def calls_file() -> CallsFile:
    return CallsFile.read(CALLS_FILE)


def calls() -> list[Call]:
    return calls_file().calls


def writes() -> list[Call]:
    return [call for call in calls() if call.operation in WRITING]


# --------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Expected:
    ok: bool
    code: str | None = None
    column: str | None = None
    dropped: tuple[str, ...] = ()


def shown(outcome: Outcome | Expected) -> str:
    """``ok``, ``ok, drops message``, ``PGRST204 website_name``."""
    if outcome.ok:
        return "ok" + (f", drops {', '.join(outcome.dropped)}" if outcome.dropped else "")
    drops = f" (after dropping {', '.join(outcome.dropped)})" if outcome.dropped else ""
    return f"{outcome.code} {outcome.column or ''}".strip() + drops


def expected(
    call: Call, tables: dict[str, Sequence[str]], required: dict[str, Sequence[str]] | None = None
) -> Expected:
    """What ``call`` does where the tables have ``tables``' columns (``required``: the
    NOT NULL columns without a default an insert must send)."""
    known = tables.get(call.table)
    if known is None:
        return Expected(False, "PGRST205")
    if call.operation in WRITING:
        for column in call.writes:
            if column not in known:
                return Expected(False, "PGRST204", column)
    if required and call.operation in ("insert", "upsert"):
        for column in required.get(call.table, ()):
            if column not in call.writes:
                return Expected(False, "23502", column)
    dropped: list[str] = []
    for column in call.selects:
        if column != "*" and column not in known:
            if "42703" not in call.retry:
                return Expected(False, "42703", column, tuple(dropped))
            dropped.append(column)
    for column in [f.column for f in call.filters] + [o.column for o in call.orders]:
        if column not in known:
            return Expected(False, "42703", column, tuple(dropped))
    return Expected(True, dropped=tuple(dropped))


def head_tables() -> dict[str, list[str]]:
    """The columns the models declare, by table."""
    from models import Base

    return {table.name: list(table.columns.keys()) for table in Base.metadata.tables.values()}


def spec_tables_at_008() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """chat-schema.md's columns (004 and 008), and its NOT NULL columns without a default."""
    specs = catalog.EXPECTED["tables"]
    columns = {table: list(spec["columns"]) for table, spec in specs.items()}
    required = {
        table: [
            name
            for name, column in spec["columns"].items()
            if column["not_null"] and column["default"] is None
        ]
        for table, spec in specs.items()
    }
    return columns, required


def expected_at_head(every: Sequence[Call]) -> list[Expected]:
    tables = head_tables()
    return [expected(call, tables) for call in every]


def expected_at_008(every: Sequence[Call]) -> list[Expected]:
    tables, required = spec_tables_at_008()
    return [expected(call, tables, required) for call in every]


def observed(outcome: Outcome) -> Expected:
    return Expected(outcome.ok, outcome.code, outcome.column, outcome.dropped)


def mismatches(outcomes: Sequence[Outcome], wanted: Sequence[Expected]) -> list[str]:
    return [
        f"{outcome.call.render()}: {shown(outcome)}, expected {shown(expectation)}"
        f"{'' if outcome.ok else ' (' + outcome.message + ')'}"
        for outcome, expectation in zip(outcomes, wanted, strict=True)
        if observed(outcome) != expectation
    ]


# --------------------------------------------------------------------------- running


@contextmanager
def connection_to(url: str) -> Iterator[Connection]:
    """A SQLAlchemy connection (psycopg2, as chatdb runs) in a transaction that is
    rolled back at the end."""
    engine = create_engine(
        url.replace("postgresql://", "postgresql+psycopg2://", 1), poolclass=pool.NullPool
    )
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                yield connection
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def url_of(conn: psycopg.Connection) -> str:
    info = conn.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


def observe(url: str, every: Sequence[Call] | None = None) -> list[Outcome]:
    """Every call's outcome on the database at ``url``, nothing kept."""
    with connection_to(url) as connection:
        return run_calls(connection, calls() if every is None else every)


def contract_problems(conn: psycopg.Connection) -> list[str]:
    """At head: every call of the file does what the models say. A column the models do
    not declare but the database keeps (the older script's ``message``) is not dropped
    there, and that is no problem."""
    every = calls()
    outcomes = observe(url_of(conn), every)
    kept = {
        (table, column)
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        ).fetchall()
    }
    problems = []
    for outcome, wanted in zip(outcomes, expected_at_head(every), strict=True):
        table = outcome.call.table
        if outcome.ok and wanted.ok:
            missing = [c for c in wanted.dropped if c not in outcome.dropped]
            if all((table, c) in kept for c in missing):
                continue
        if observed(outcome) != wanted:
            problems.append(f"{outcome.call.render()}: {shown(outcome)}, expected {shown(wanted)}")
    return problems


# --------------------------------------------------------------------------- reading back


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # the request is UTC


def same(type_: str, sent, got) -> bool:
    if sent is None or got is None:
        return sent is None and got is None
    if type_.startswith("timestamp"):
        return _instant(sent) == _instant(got)
    if type_ == "uuid":
        return str(sent).lower() == str(got).lower()
    return sent == got


def filled_at_head(call: Call, payload: dict) -> dict:
    """What head fills in where a write sends nothing: c002 gives a conversation without
    customer_id 008's value; 009's DEFAULT '' gives a message without message_text ''."""
    if call.operation not in ("insert", "upsert"):
        return {}
    if call.table == "chat_conversations" and "customer_id" not in payload:
        phone = payload.get("customer_phone")
        return {"customer_id": f"customer_{phone}" if phone is not None else None}
    if call.table == "chat_messages" and "message_text" not in payload:
        return {"message_text": ""}
    return {}


def read_back_problems(url: str, every: Sequence[Call], *, at_head: bool = True) -> list[str]:
    """Run each write with made values, then read its rows back with a select as the
    service role: every value that differs from what it sent (and, at head, from what
    head fills in)."""
    problems: list[str] = []
    with connection_to(url) as connection:
        found = read_catalog(connection)
        cache = found.cache()
        preparer = Preparer(found)
        for call in every:
            prepared = preparer.prepare(call)
            if prepared.answered is not None:
                problems.append(f"{call.render()}: {prepared.answered.message}")
                continue
            savepoint = connection.begin_nested()
            try:
                setup = preparer.setup(prepared)
                if setup:
                    send(connection, ";\n".join(setup))
                send(connection, request_sql())  # as the service role, until the rollback
                written = send(connection, prepared.statement).scalar_one()
                if not written:
                    problems.append(f"{call.render()}: no row")
                    continue
                ids = [row["id"] for row in written]
                read = select_sql(call.table, ["*"], [("id", "in", ids)], (), cache[call.table])
                back = send(connection, read).scalar_one()
            finally:
                savepoint.rollback()
            types = cache[call.table]
            exempt = TRIGGER_SETS.get((call.table, call.operation), set())
            for row in back:
                wanted = dict(prepared.payload)
                if at_head:
                    wanted.update(filled_at_head(call, prepared.payload))
                problems += [
                    f"{call.render()}: {column} sent {value!r}, read back {row[column]!r}"
                    for column, value in wanted.items()
                    if column not in exempt and not same(types[column], value, row[column])
                ]
                problems += [
                    f"{call.render()}: {column} read back NULL, a trigger should have set it"
                    for column in exempt
                    if column in wanted and row[column] is None
                ]
    return problems


# --------------------------------------------------------------------------- the table


def markdown_table(at_008: Sequence[Outcome], at_head: Sequence[Outcome]) -> str:
    """The file's calls before (008) and after (head), for docs/backend-contract.md."""
    header = "call | table | operation | columns written or selected | filters | via, retry | at 008 | at head"
    lines = [f"| {header} |", "|---" * 8 + "|"]
    for before, after in zip(at_008, at_head, strict=True):
        call = before.call
        columns = call.writes if call.operation in WRITING else call.selects
        filters = [str(f) for f in call.filters] + [f"order {o}" for o in call.orders]
        how = ", ".join(
            part
            for part in (call.via, f"retry {','.join(call.retry)}" if call.retry else "")
            if part
        )
        lines.append(
            f"| `{call.where.removeprefix('backend/app/')}` | {call.table} | {call.operation} "
            f"| {', '.join(columns)} | {', '.join(filters)} | {how} "
            f"| {shown(before)} | {shown(after)} |"
        )
    return "\n".join(lines)
