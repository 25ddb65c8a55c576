"""Compare policy expressions and trigger definitions as PostgreSQL understands them.

The catalog prints an expression its own way (``pg_policies``, ``pg_get_triggerdef``):
``customer_id = auth.uid()::text`` comes back as ``(customer_id = (auth.uid())::text)``,
``x IN ('a', 'b')`` as ``(x = ANY (ARRAY['a'::text, 'b'::text]))``, columns of a
subquery qualified. Comparing the code's text with that print would report a policy
written naturally as different for ever. So, where the texts differ (whitespace and
the spacing inside parentheses aside), the server is asked how it understands each:

    EXPLAIN (VERBOSE, COSTS OFF) SELECT 1 FROM public.<table> WHERE (<expression>)

under ``search_path = pg_catalog, public`` (the path the catalog is read with,
:func:`chatdb.inspect.live.deparse_search_path`). EXPLAIN without ANALYZE parses,
analyses and plans the query and executes nothing; the VERBOSE plan prints every
expression PostgreSQL would evaluate, fully resolved (columns qualified, casts and
operators explicit, ``IN`` lists as ``= ANY``). The same parse gives the same plan, so
two forms whose plans are equal are the same expression to PostgreSQL. What counts as
the same, precisely:

- Equal: any spelling the parser reduces to the same tree: parentheses, keyword case,
  ``::`` or ``CAST``, ``IN (...)`` or ``= ANY (ARRAY[...])``, qualified or not,
  ``auth.uid()`` or ``(auth.uid())``; and what the planner folds away as it would
  before running the query (``1 = 1`` is ``true``; a SQL function it inlines is its
  body; ``x IN (SELECT ...)`` at the top of the condition is the join it becomes).
- Different: anything PostgreSQL would evaluate differently, and also forms it keeps
  apart although they mean the same (``'a' = x`` against ``x = 'a'``): copy the
  database's form then, or write it that way in the first place.
- An expression that does not parse (a missing column, a typo) is a difference, and
  the sentence says why. When neither form can be planned (``1/0`` is folded at plan
  time and fails), they are compared as text.
- Before PostgreSQL 17, EXPLAIN prints a subquery that stays a subplan (``NOT IN
  (SELECT ...)``, ``IN (SELECT ...)`` under ``OR``) as ``(SubPlan 1)``, hiding what is
  compared with it; such expressions are compared as text there, never guessed equal.

Nothing is written: every EXPLAIN runs in a savepoint that is made read-only
(``transaction_read_only``) and rolled back (on a connection in autocommit, the
EXPLAIN is its own transaction), so its locks go with it, an error leaves the caller's
transaction usable, and it works where every transaction is READ ONLY
(``chatdb drift``, a read replica). A text that could end the statement (a ``;``
outside quotes, unbalanced parentheses) is refused before it is sent. Plans are cached
per :class:`Normalizer`, one per comparison run.

Triggers are compared part by part (:func:`parse_trigger`): timing, events (``UPDATE
OF`` columns as a set), the table without its schema, ``FOR EACH ROW/STATEMENT``
(STATEMENT when omitted), the WHEN condition (through the server as above, ``NEW`` and
``OLD`` standing for the table), the function without ``public.``, and its arguments
as the strings PostgreSQL passes. ``EXECUTE PROCEDURE`` is ``EXECUTE FUNCTION``;
keywords are case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Self

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from chatdb.failures import first_line
from chatdb.inspect.live import deparse_search_path
from models.entities import SCHEMA, normalise_sql, qualified, quote_ident

# Before this server version EXPLAIN hides the comparison of a subplan (see above).
SUBPLAN_TESTS_SHOWN_FROM = 170000
_SUBPLAN = re.compile(r"\bSubPlan \d+")
# SQLSTATE classes of an expression PostgreSQL cannot read: syntax or access rule
# violation (42: unknown column, function, operator...), data exception (22: a bad
# literal), feature not supported (0A). Anything else (a lock or statement timeout, a
# lost connection) is not about the expression and is raised.
_UNREADABLE_CLASSES = ("42", "22", "0A")


@dataclass(frozen=True)
class Verdict:
    """Whether two forms are the same to PostgreSQL; ``note`` says why a difference may
    not be what it seems (a form that does not parse, a comparison made as text)."""

    same: bool
    note: str | None = None

    def __bool__(self) -> bool:
        return self.same


@dataclass(frozen=True)
class _Unreadable:
    """An expression the server refused, and its first line of error."""

    error: str


class Normalizer:
    """Compares expressions on one connection, through the server, read-only.

    Use as a context manager: the session's search_path is ``pg_catalog, public``
    inside and is restored on exit. Plans are cached for the Normalizer's life.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._plans: dict[tuple[str, str, bool], str | _Unreadable] = {}
        self._path: Any = None
        self._version: int | None = None
        self.explained = 0  # EXPLAINs sent so far (the cache's effect, for tests)

    def __enter__(self) -> Self:
        self._path = deparse_search_path(self.connection)
        self._path.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._path.__exit__(*exc)

    @property
    def server_version(self) -> int:
        if self._version is None:
            self._version = int(
                self.connection.scalar(text("SELECT current_setting('server_version_num')"))
            )
        return self._version

    # ------------------------------------------------------------------ expressions

    def same_expression(
        self, table: str, want: str | None, have: str | None, *, trigger: bool = False
    ) -> Verdict:
        """Whether the code's ``want`` and the database's ``have`` are the same condition
        on ``table`` (None: no expression). ``trigger``: a trigger's WHEN, where ``NEW``
        and ``OLD`` are rows of the table."""
        if want is None or have is None:
            return Verdict(want is None and have is None)
        if normalise_sql(want) == normalise_sql(have):
            return Verdict(True)
        want_plan = self._plan(table, want, trigger)
        have_plan = self._plan(table, have, trigger)
        if isinstance(want_plan, _Unreadable) and isinstance(have_plan, _Unreadable):
            return Verdict(
                False,
                f"PostgreSQL cannot plan either form ({have_plan.error}), so they were "
                "compared as text",
            )
        if isinstance(want_plan, _Unreadable):
            return Verdict(False, f"the code's form does not parse here: {want_plan.error}")
        if isinstance(have_plan, _Unreadable):
            return Verdict(False, f"the database's form does not parse here: {have_plan.error}")
        if want_plan != have_plan:
            # Planned again, both, once: statistics that changed between the two plans
            # (a table that grew) could have changed a scan, not the expression.
            want_plan = self._plan(table, want, trigger, fresh=True)
            have_plan = self._plan(table, have, trigger, fresh=True)
            if want_plan != have_plan:
                return Verdict(False)
        if self.server_version < SUBPLAN_TESTS_SHOWN_FROM and _SUBPLAN.search(str(want_plan)):
            return Verdict(
                False,
                f"PostgreSQL {self.server_version // 10000}'s EXPLAIN does not show what a "
                "subquery that stays a subplan is compared with, so this expression is "
                "compared as text: write it as the database prints it",
            )
        return Verdict(True)

    def is_true(self, table: str, expression: str | None) -> bool:
        """Whether ``expression`` is the constant ``true`` to PostgreSQL (``TRUE``,
        ``(true)``, ``1 = 1``): a policy that lets every row through."""
        if expression is None:
            return False
        if expression.strip().lower() == "true":
            return True
        plan = self._plan(table, expression, False)
        return not isinstance(plan, _Unreadable) and plan == self._plan(table, "true", False)

    def is_false(self, table: str, expression: str) -> bool:
        """Whether PostgreSQL's planner proves ``expression`` false on ``table`` (its plan
        is the constant ``false``'s: ``x = NULL``, ``x IN (SELECT ... WHERE y = NULL)``):
        a condition that lets no row through."""
        plan = self._plan(table, expression, False)
        return not isinstance(plan, _Unreadable) and plan == self._plan(table, "false", False)

    def _plan(
        self, table: str, expression: str, trigger: bool, *, fresh: bool = False
    ) -> str | _Unreadable:
        key = (table, normalise_sql(expression) or "", trigger)
        if not fresh and key in self._plans:
            return self._plans[key]
        self._plans[key] = plan = self._explain(table, expression, trigger)
        return plan

    def _explain(self, table: str, expression: str, trigger: bool) -> str | _Unreadable:
        problem = statement_breaker(expression)
        if problem:
            return _Unreadable(problem)
        relation = qualified(table)
        source = f"{relation} AS new, {relation} AS old" if trigger else relation
        # The closing parenthesis on a line of its own: a -- comment ending the
        # expression cannot swallow it.
        sql = f"EXPLAIN (VERBOSE, COSTS OFF) SELECT 1 FROM {source} WHERE ({expression}\n)"
        self.explained += 1
        # In the caller's transaction, a read-only savepoint; on a connection in
        # autocommit (a deploy reading access before its transaction), the EXPLAIN is a
        # transaction of its own, which ends with it (EXPLAIN executes nothing).
        autocommit = bool(
            getattr(self.connection.connection.driver_connection, "autocommit", False)
        )
        savepoint = None if autocommit else self.connection.begin_nested()
        try:
            if savepoint is not None:
                self.connection.execute(
                    text("SELECT set_config('transaction_read_only', 'on', true)")
                )
            # Sent without a parameter collection, so that a % in the expression (LIKE
            # 'a%') is not taken for a placeholder.
            rows = self.connection.exec_driver_sql(
                sql, execution_options={"no_parameters": True}
            ).scalars()
            return "\n".join(rows)
        except DBAPIError as exc:
            orig = exc.orig
            sqlstate = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None) or ""
            if not sqlstate.startswith(_UNREADABLE_CLASSES):
                raise
            return _Unreadable(first_line(exc))
        finally:
            # Rolled back even on success: the read-only setting and the locks the
            # planner took go with the savepoint.
            if savepoint is not None:
                savepoint.rollback()

    # ------------------------------------------------------------------ triggers

    def trigger_differences(self, table: str, want: str, have: str) -> list[str]:
        """What differs between the code's trigger definition ``want`` and the
        database's ``have`` (what follows ``CREATE TRIGGER <name>``), in words; empty
        when they are the same trigger."""
        if normalise_sql(want) == normalise_sql(have):
            return []
        try:
            code = parse_trigger(want)
        except TriggerSyntaxError as exc:
            return [
                (
                    f"it is {_show(have)}, the code says {_show(want)} "
                    f"(the code's definition cannot be read: {exc})"
                )
            ]
        try:
            live = parse_trigger(have)
        except TriggerSyntaxError:  # not a form pg_get_triggerdef prints: compare as text
            return [f"it is {_show(have)}, the code says {_show(want)}"]
        out = []
        if code.timing != live.timing:
            out.append(f"it fires {live.timing} in the database, the code says {code.timing}")
        if code.events != live.events or code.update_columns != live.update_columns:
            out.append(
                f"its events are {live.events_text} in the database, "
                f"the code says {code.events_text}"
            )
        if code.table != live.table:
            out.append(f"it is on {live.table} in the database, the code says {code.table}")
        if code.level != live.level:
            out.append(
                f"it is FOR EACH {live.level} in the database, the code says FOR EACH {code.level}"
            )
        if code.clauses != live.clauses:
            out.append(
                f"its clauses are {live.clauses_text} in the database, "
                f"the code says {code.clauses_text}"
            )
        verdict = self.same_expression(table, code.when, live.when, trigger=True)
        if not verdict:
            note = f" ({verdict.note})" if verdict.note else ""
            out.append(
                f"WHEN is {_show(live.when)} in the database, the code says {_show(code.when)}"
                + note
            )
        if (code.function, code.arguments) != (live.function, live.arguments):
            out.append(
                f"it executes {live.call_text} in the database, the code says {code.call_text}"
            )
        return out


def _show(value: str | None) -> str:
    return "(none)" if value is None else " ".join(value.split())


# --------------------------------------------------------------------------- safety


def statement_breaker(expression: str) -> str | None:
    """Why ``expression`` cannot be put inside ``WHERE (...)`` safely: a ``;`` outside
    quotes or comments, or parentheses that close more than they open (either could end
    the EXPLAIN and start another statement); None when it can."""
    depth = 0
    for token in _tokens(expression, keep_comments=False):
        if token.kind == "punct" and token.text == ";":
            return "it contains a ';' outside quotes"
        if token.kind == "punct" and token.text == "(":
            depth += 1
        elif token.kind == "punct" and token.text == ")":
            depth -= 1
            if depth < 0:
                return "it closes a parenthesis it did not open"
        elif token.kind == "unterminated":
            return "it has an unterminated quote or comment"
    return "its parentheses are not balanced" if depth else None


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    kind: str  # word, quoted, string, number, punct, op, param, unterminated
    text: str
    start: int
    end: int


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>[Ee]'(?:[^'\\]|\\.|'')*'|(?:[BbXxNn]|[Uu]&)?'(?:[^']|'')*')
  | (?P<quoted>(?:[Uu]&)?"(?:[^"]|"")*")
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$.*?\$(?P=tag)?\$)
  | (?P<param>\$\d+)
  | (?P<word>[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<punct>[(),;.\[\]])
  | (?P<op>[-+*/<>=~!@\#%^&|`?:]+)
  | (?P<unterminated>['"]|/\*|\$[A-Za-z_]*\$)
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokens(sql: str, *, keep_comments: bool = True) -> Iterator[Token]:
    position = 0
    while position < len(sql):
        match = _TOKEN.match(sql, position)
        if match is None:  # a character no rule knows: one token of its own
            yield Token("op", sql[position], position, position + 1)
            position += 1
            continue
        kind = match.lastgroup or "op"
        if kind == "tag":  # the dollar quote's inner group
            kind = "dollar"
        if kind == "unterminated":
            yield Token(kind, match.group(), match.start(), len(sql))
            return
        if kind != "space" and (kind != "comment" or keep_comments):
            yield Token("string" if kind == "dollar" else kind, match.group(), *match.span())
        position = match.end()


def _identifier(token: Token) -> str:
    """An identifier's name as PostgreSQL stores it: folded to lower case unless quoted."""
    if token.kind == "quoted":
        return token.text[1:-1].replace('""', '"')
    return token.text.lower()


def _string_value(token: Token) -> str:
    body = token.text
    if body[0] in "Ee":
        return re.sub(r"\\(.)", r"\1", body[2:-1]).replace("''", "'")
    if body.startswith("$"):
        return body[body.index("$", 1) + 1 : body.rindex("$", 0, len(body) - 1)]
    return body[1:-1].replace("''", "'")


# --------------------------------------------------------------------------- triggers


class TriggerSyntaxError(ValueError):
    """A trigger definition this module cannot read."""


@dataclass(frozen=True)
class TriggerShape:
    """A trigger definition, part by part, as PostgreSQL understands it."""

    timing: str  # BEFORE, AFTER, INSTEAD OF
    events: frozenset[str]  # INSERT, UPDATE, DELETE, TRUNCATE
    update_columns: frozenset[str]
    table: str  # without the schema when it is public
    level: str  # ROW or STATEMENT
    when: str | None  # the condition inside WHEN ( ... ), as written
    function: str  # without public.
    arguments: tuple[str, ...]
    # FROM, DEFERRABLE / INITIALLY, REFERENCING (constraint triggers, transition tables).
    clauses: frozenset[str] = field(default_factory=frozenset)

    @property
    def events_text(self) -> str:
        order = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
        words = []
        for event in sorted(self.events, key=order.index):
            if event == "UPDATE" and self.update_columns:
                event += " OF " + ", ".join(quote_ident(c) for c in sorted(self.update_columns))
            words.append(event)
        return " OR ".join(words)

    @property
    def call_text(self) -> str:
        arguments = ", ".join("'" + a.replace("'", "''") + "'" for a in self.arguments)
        return f"{self.function}({arguments})"

    @property
    def clauses_text(self) -> str:
        return ", ".join(sorted(self.clauses)) or "(none)"


_TIMINGS = ("BEFORE", "AFTER", "INSTEAD")
_EVENTS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")


class _Reader:
    """A cursor over the tokens of a trigger definition."""

    def __init__(self, definition: str) -> None:
        self.definition = definition
        self.tokens = list(_tokens(definition, keep_comments=False))
        for token in self.tokens:
            if token.kind == "unterminated":
                raise TriggerSyntaxError("an unterminated quote or comment")
        self.at = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def keyword(self, *words: str) -> str | None:
        """The next token's upper-case word when it is one of ``words`` (and consume it)."""
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.upper() in words:
            self.at += 1
            return token.text.upper()
        return None

    def expect(self, *words: str) -> str:
        found = self.keyword(*words)
        if found is None:
            raise TriggerSyntaxError(f"expected {' or '.join(words)} {self.where()}")
        return found

    def punct(self, char: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == char:
            self.at += 1
            return True
        return False

    def identifier(self) -> str:
        token = self.peek()
        if token is None or token.kind not in ("word", "quoted"):
            raise TriggerSyntaxError(f"expected a name {self.where()}")
        self.at += 1
        return _identifier(token)

    def qualified_name(self) -> str:
        """``[schema.]name``, without the schema when it is public."""
        parts = [self.identifier()]
        while self.punct("."):
            parts.append(self.identifier())
        if len(parts) == 2 and parts[0] == SCHEMA:
            parts = parts[1:]
        return ".".join(quote_ident(p) for p in parts)

    def parenthesised(self) -> str:
        """The text inside the next balanced ``( ... )``, as written."""
        opening = self.peek()
        if opening is None or opening.text != "(":
            raise TriggerSyntaxError(f"expected ( {self.where()}")
        depth = 0
        while (token := self.peek()) is not None:
            self.at += 1
            if token.kind == "punct" and token.text in "([":
                depth += 1
            elif token.kind == "punct" and token.text in ")]":
                depth -= 1
                if depth == 0:
                    return self.definition[opening.end : token.start].strip()
        raise TriggerSyntaxError("a parenthesis is not closed")

    def where(self) -> str:
        token = self.peek()
        return "at the end" if token is None else f"at {token.text!r}"


def parse_trigger(definition: str) -> TriggerShape:
    """Read what follows ``CREATE TRIGGER <name>``, in any spelling PostgreSQL accepts
    (its own ``pg_get_triggerdef`` print included)."""
    reader = _Reader(definition)
    timing = reader.expect(*_TIMINGS)
    if timing == "INSTEAD":
        reader.expect("OF")
        timing = "INSTEAD OF"
    events: set[str] = set()
    columns: set[str] = set()
    while True:
        event = reader.expect(*_EVENTS)
        events.add(event)
        if event == "UPDATE" and reader.keyword("OF"):
            columns.add(reader.identifier())
            while reader.punct(","):
                columns.add(reader.identifier())
        if not reader.keyword("OR"):
            break
    reader.expect("ON")
    table = reader.qualified_name()
    clauses: set[str] = set()
    level, when = "STATEMENT", None
    while True:
        if reader.keyword("FROM"):
            clauses.add(f"FROM {reader.qualified_name()}")
        elif reader.keyword("NOT"):
            reader.expect("DEFERRABLE")  # the default: not a clause of its own
        elif reader.keyword("DEFERRABLE"):
            clauses.add("DEFERRABLE")
        elif reader.keyword("INITIALLY"):
            if reader.expect("IMMEDIATE", "DEFERRED") == "DEFERRED":
                clauses.add("INITIALLY DEFERRED")
        elif reader.keyword("REFERENCING"):
            while kind := reader.keyword("OLD", "NEW"):
                reader.expect("TABLE")
                reader.keyword("AS")
                clauses.add(f"REFERENCING {kind} TABLE AS {quote_ident(reader.identifier())}")
        elif reader.keyword("FOR"):
            reader.keyword("EACH")
            level = reader.expect("ROW", "STATEMENT")
        elif reader.keyword("WHEN"):
            when = reader.parenthesised()
        else:
            break
    reader.expect("EXECUTE")
    reader.expect("FUNCTION", "PROCEDURE")
    function = reader.qualified_name()
    if not reader.punct("("):
        raise TriggerSyntaxError(f"expected ( {reader.where()}")
    arguments: list[str] = []
    if not reader.punct(")"):
        while True:
            arguments.append(_argument(reader))
            if reader.punct(")"):
                break
            if not reader.punct(","):
                raise TriggerSyntaxError(f"expected , or ) {reader.where()}")
    if reader.peek() is not None and not (reader.punct(";") and reader.peek() is None):
        raise TriggerSyntaxError(f"unexpected text {reader.where()}")
    return TriggerShape(
        timing=timing,
        events=frozenset(events),
        update_columns=frozenset(columns),
        table=table,
        level=level,
        when=when,
        function=function,
        arguments=tuple(arguments),
        clauses=frozenset(clauses),
    )


def _argument(reader: _Reader) -> str:
    """A trigger argument as the string PostgreSQL passes to the function: a string
    literal's value, a name folded to lower case, an integer without leading zeros."""
    token = reader.peek()
    if token is None:
        raise TriggerSyntaxError("an argument is missing at the end")
    reader.at += 1
    sign = ""
    if token.kind == "op" and token.text == "-":
        sign, token = "-", reader.peek()
        if token is None or token.kind != "number":
            raise TriggerSyntaxError("expected a number after -")
        reader.at += 1
    if token.kind == "string":
        return _string_value(token)
    if token.kind in ("word", "quoted"):
        return _identifier(token)
    if token.kind == "number":
        return sign + (str(int(token.text)) if token.text.isdigit() else token.text)
    raise TriggerSyntaxError(f"unexpected {token.text!r} in the arguments")
