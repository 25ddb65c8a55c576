"""``chatdb plan``: what ``alembic upgrade head`` would do to DATABASE_URL, without doing it.

The plan is a real run of the pending revisions (the same env.py, the same migration
lock, the same ``-x`` options, lock_timeout and statement_timeout, the same guards)
whose transaction always rolls back. :class:`Plan` is handed to the run
(``config.attributes["plan"]``, read by chatdb.deploy.runtime) and called at three
points (chatdb.deploy.run.Run):

- ``before(run, steps)``: before the run's transaction, after pass 1 collected the
  online steps of large tables (and ran none of them): the catalog and the access
  matrix as they are;
- ``after(run)``: inside the transaction, after every revision ran, before the guards:
  the catalog and the access matrix as the run leaves them, the locks the run's own
  session holds (``pg_locks``), the rows it wrote (``pg_stat_xact_user_tables``), the
  values its backfills change (chatdb.deploy.rewrites) and those it would drop (the
  data-loss recorder), and the backend's calls after it (chatdb.deploy.calls_guard);
- ``succeeded(run)``: the guards passed; it raises :class:`PlanFinished`, so that the
  transaction rolls back (and the reload NOTIFY, the statement after it, is never sent).

A run that fails (a refusal, a statement error, a guard) raises its usual failure,
whose sentence ``chatdb plan`` prints as the deploy would: ``FAILED: ...``, and exits 1
(a finding: the deploy would fail). A plan that cannot be made (no DATABASE_URL, a
mistyped option, a server that cannot be reached) fails as any command does, with its
kind's exit code (chatdb.failures).

Everything the report says comes from what the database did inside that transaction,
compared with what it was before (chatdb.inspect.catalog), never from reading the
revisions' code; the online steps, which a plan does not run, are said in the words of
the steps themselves (chatdb.deploy.online.steps).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from chatdb import database, failures
from chatdb import markdown as md
from chatdb.deploy import calls_guard, data_loss, rewrites, widening
from chatdb.deploy.online.ops import PLAN_OLD
from chatdb.deploy.online.steps import (
    AddColumn,
    Backfill,
    BackfillGroup,
    ConvertType,
    NotNull,
    Step,
)
from chatdb.inspect import access, catalog
from chatdb.inspect.access import PUBLIC, Cell, format_through
from chatdb.project import alembic_config

ROLES = ("anon", "authenticated", PUBLIC)

# PostgreSQL's table lock modes, weakest first, and what waits while one is held.
LOCKS = {
    "AccessShareLock": ("ACCESS SHARE", "reads and writes go on"),
    "RowShareLock": ("ROW SHARE", "reads and writes go on"),
    "RowExclusiveLock": ("ROW EXCLUSIVE", "reads and writes go on; schema changes wait"),
    "ShareUpdateExclusiveLock": (
        "SHARE UPDATE EXCLUSIVE",
        "reads and writes go on; schema changes and VACUUM wait",
    ),
    "ShareLock": ("SHARE", "writes wait, reads go on"),
    "ShareRowExclusiveLock": ("SHARE ROW EXCLUSIVE", "writes wait, reads go on"),
    "ExclusiveLock": ("EXCLUSIVE", "writes wait, reads go on"),
    "AccessExclusiveLock": ("ACCESS EXCLUSIVE", "reads and writes wait"),
}
LOCK_ORDER = tuple(LOCKS)


class PlanFinished(Exception):
    """The planned run would succeed: raised inside its transaction, which rolls back."""


@dataclass
class Plan:
    """What one planned run saw; ``report()`` says it in words."""

    steps: list[Step] = field(default_factory=list)
    paths: dict[str, bool] = field(default_factory=dict)
    catalog_before: catalog.Snapshot | None = None
    catalog_after: catalog.Snapshot | None = None
    access_before: list[Cell] | None = None
    access_after: list[Cell] | None = None
    version_before: str | None = None
    version_after: str | None = None
    locks: dict[str, str] = field(default_factory=dict)  # table: PostgreSQL lock mode
    written: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # ins, upd, del
    dropped: list = field(default_factory=list)
    widened: list = field(default_factory=list)
    rewrites: list[rewrites.Rewrite] = field(default_factory=list)
    estimates: dict[str, float] = field(default_factory=dict)  # the run's, as it logs them
    calls: calls_guard.Comparison | None = None
    calls_source: str = ""  # the calls file as the operator names it
    finished: bool = False

    # ------------------------------------------------------------------ the run's hooks

    def before(self, run: Any, steps: list[Step]) -> None:
        """Before the run's transaction (the connection is in autocommit)."""
        fresh = Plan()
        self.__dict__.update(fresh.__dict__)  # a retried attempt starts again
        connection = run.connection
        self.steps = list(steps)
        self.calls_source = run.calls.source
        self.paths = run.online.paths
        self.estimates = dict(run.online.estimates)
        self.rewrites = [
            found
            for fill in _backfills(steps)
            if (found := rewrites.count_online(connection, *fill)) is not None
        ]
        self.version_before = _version(connection)
        self.catalog_before = catalog.snapshot(connection)
        self.access_before = _matrix(connection, list(self.catalog_before.tables))

    def after(self, run: Any) -> None:
        """Inside the transaction, after the last revision: what the run did."""
        connection = run.connection
        self.locks = _locks(connection)  # first: the reads below take locks of their own
        self.written = _written(connection)
        self.paths = run.online.paths
        self.version_after = _version(connection)
        self.catalog_after = without_stand_ins(catalog.snapshot(connection))
        self.access_after = _matrix(connection, list(self.catalog_after.tables))
        self.dropped = list(run.data_loss.dropped)
        self.rewrites = [*self.rewrites, *(self._existing(r) for r in run.rewrites.found)]
        self.widened = run.access.widened(connection)
        self.calls = run.calls.compare(connection, always=True, changed=run.applied)

    def _existing(self, rewrite: rewrites.Rewrite) -> rewrites.Rewrite:
        """The rewrite's columns that held values before the run."""
        table = self.catalog_before.tables.get(rewrite.table) if self.catalog_before else None
        return rewrite.of_columns(set(table.columns) if table is not None else set())

    def succeeded(self, run: Any) -> None:
        self.finished = True
        raise PlanFinished()

    # ------------------------------------------------------------------ the report

    def revisions(self) -> list[str]:
        """The revisions the deploy would apply, oldest first."""
        if self.version_after is None or self.version_after == self.version_before:
            return []
        scripts = ScriptDirectory.from_config(alembic_config())
        found = scripts.iterate_revisions(self.version_after, self.version_before or "base")
        return [script.revision for script in reversed(list(found))]

    def facts(self, where: str) -> Report:
        """Everything the report says, once: :func:`as_text` and :func:`as_markdown` render it."""
        if self.catalog_before is None:
            return Report(where=where, stopped_early=True)
        at = self.version_before or "no revision (no alembic_version table)"
        return Report(
            where=where,
            at=at,
            revisions=self.revisions() if self.catalog_after is not None else None,
            tables=self._changes(),
            access=self._access(),
            calls=self._calls(),
            hazards=self._hazards(),
        )

    def report(self, where: str, fmt: str = "text") -> str:
        """The report as ``chatdb plan`` prints it, in ``fmt`` (text or markdown)."""
        facts = self.facts(where)
        return as_markdown(facts) if fmt == "markdown" else as_text(facts)

    def _changes(self) -> list[TableChanges]:
        changed = (
            catalog.differences(self.catalog_before, self.catalog_after)
            if self.catalog_after is not None
            else {}
        )
        online: dict[str, list[Step]] = {}
        for step in self.steps:
            online.setdefault(step.table, []).append(step)
        tables = sorted(set(changed) | set(online), key=lambda t: (t == "functions", t))
        out = []
        for table in tables:
            steps = online.get(table, [])
            sentences = [f"online, before the run's transaction: {_words(step)}" for step in steps]
            sentences += [
                sentence
                for sentence in changed.get(table, [])
                if not any(sentence.startswith(said) for said in _said_by(steps))
            ]
            out.append(TableChanges(table, self._path(table), sentences))
        return out

    def _path(self, table: str) -> str:
        before = self.catalog_before.tables.get(table) if self.catalog_before else None
        if table == "functions":
            return ""
        if before is None:
            return "created by the run"
        if table in self.estimates:  # what the run decided its path with, and logs
            rows = f"about {self.estimates[table]:,.0f} rows"
        elif before.estimated_rows < 0:
            rows = "no row estimate yet: never vacuumed or analyzed"
        else:
            rows = f"about {before.estimated_rows:,.0f} rows"
        if table not in self.paths:
            return rows
        if self.paths[table]:
            return f"{rows}; online path: the slow work before the transaction"
        return f"{rows}; transactional path: all in the run's one transaction"

    def _access(self) -> AccessChanges | None:
        if self.access_after is None:
            return None
        before = {(c.role, c.table, c.command): c for c in self.access_before or []}
        wider = {(w.after.role, w.after.table, w.after.command) for w in self.widened}
        cells, same_rows = [], 0
        for cell in self.access_after:
            key = (cell.role, cell.table, cell.command)
            old = before.get(key)
            if old is not None and old.rows == cell.rows and key not in wider:
                if old.through != cell.through:
                    same_rows += 1
                continue
            cells.append(
                AccessChange(
                    wider=key in wider,
                    role=cell.role,
                    table=cell.table,
                    command=cell.command,
                    was=None if old is None else old.rows,
                    rows=cell.rows,
                    through=format_through(cell.through),
                    was_through=None if old is None else format_through(old.through),
                )
            )
        roles_created = bool(not before and self.catalog_before and self.catalog_before.tables)
        return AccessChanges(roles_created, cells, same_rows, bool(wider))

    def _calls(self) -> Calls:
        return Calls(self.catalog_after is not None, self.calls, self.calls_source)

    def _hazards(self) -> Hazards:
        known = self.catalog_after is not None
        locks = []
        for table, mode in sorted(self.locks.items()):
            name, waits = LOCKS.get(mode, (mode, ""))
            schema, _, bare = table.partition(".")
            created = (
                schema == catalog.SCHEMA
                and bare not in self.catalog_before.tables
                and bare in self.catalog_after.tables
            )
            locks.append(Lock(table, name, waits, created))
        rewritten = []
        if known:
            rewritten = [
                table
                for table, old in self.catalog_before.tables.items()
                if table in self.catalog_after.tables
                and self.catalog_after.tables[table].relfilenode != old.relfilenode
            ]
        written = [
            Written(table, inserted, updated, deleted)
            for table, (inserted, updated, deleted) in sorted(self.written.items())
        ]
        backfills = [
            f"{s.table}: {s.describe()}"
            for s in self.steps
            if "fill" in s.describe() or "convert" in s.describe()
        ]
        changed = [sentence for found in self.rewrites for sentence in found.sentences()]
        return Hazards(known, locks, rewritten, written, backfills, changed, list(self.dropped))


# --------------------------------------------------------------------------- the facts


@dataclass(frozen=True)
class TableChanges:
    """What the run changes on one table (or "functions"): ``path`` is its row estimate
    and path ("created by the run", "" for functions); ``changes`` its sentences, the
    online steps first."""

    table: str
    path: str
    changes: list[str]


@dataclass(frozen=True)
class AccessChange:
    """An access cell of anon, authenticated or PUBLIC that the run changes; ``was`` and
    ``was_through`` are None on a table the run creates."""

    wider: bool
    role: str
    table: str
    command: str
    was: str | None
    rows: str
    through: str
    was_through: str | None


@dataclass(frozen=True)
class AccessChanges:
    roles_created: bool  # before the run the API roles do not exist (revision 000 makes them)
    cells: list[AccessChange]
    same_rows: int  # cells that keep their rows through other policies or reasons
    wider: bool


@dataclass(frozen=True)
class Lock:
    table: str
    mode: str  # "ACCESS EXCLUSIVE"
    waits: str  # what waits while it is held
    created: bool  # a table the run creates


@dataclass(frozen=True)
class Written:
    table: str
    inserted: int
    updated: int
    deleted: int


@dataclass(frozen=True)
class Hazards:
    known: bool  # False: the run failed before its end
    locks: list[Lock]
    rewritten: list[str]
    written: list[Written]
    backfills: list[str]  # the online steps' rows, "table: step"
    changed: list[str]  # values the backfills fill or replace, a sentence per column
    dropped: list  # chatdb.deploy.data_loss.Dropped

    @property
    def losses(self) -> bool:
        return any(drop.held for drop in self.dropped)


@dataclass(frozen=True)
class Calls:
    """The backend's calls after the run (chatdb.deploy.calls_guard): ``comparison`` is
    None without a calls file, or when the run failed before its end (``known``)."""

    known: bool
    comparison: calls_guard.Comparison | None
    source: str = ""  # the calls file, as the operator names it ("" without one)

    @property
    def title(self) -> str:
        where = f"{self.source}, " if self.source else ""
        return f"Backend calls ({where}run as PostgREST runs them)"

    def lines(self) -> list[str]:
        """The summary, then one line per broken call, then one per fixed call."""
        if self.comparison is None:
            return []
        c = self.comparison
        return [
            c.summary(),
            *(f"BROKEN {broken}" for broken in c.broken),
            *(f"fixed  {o.call.title}" for o in c.fixed),
        ]


@dataclass(frozen=True)
class Report:
    """What ``chatdb plan`` says, before any wording: ``revisions`` is None when the run
    failed before its last revision; everything but ``where`` is unknown when the run
    stopped before it changed anything (``stopped_early``)."""

    where: str
    stopped_early: bool = False
    at: str = ""
    revisions: list[str] | None = None
    tables: list[TableChanges] = field(default_factory=list)
    access: AccessChanges | None = None
    calls: Calls | None = None
    hazards: Hazards | None = None


# --------------------------------------------------------------------------- text

TITLE = "Plan of `alembic upgrade head` for {where}"
STOPPED_EARLY = "the run stopped before it changed anything; see below"
ROLLED_BACK = (
    "Run in a transaction that was rolled back: nothing was changed, and no online step was run."
)
ACCESS_TITLE = "Access that would change (anon, authenticated, PUBLIC)"
ROLES_CREATED = "before the run the API roles do not exist: revision 000 creates them"
NOT_KNOWN = "not known: the run failed before its end"
LOCKS_TITLE = "Locks the run would hold until it commits (its own session's pg_locks)"
REWRITTEN = "Tables rewritten in the transaction (every row copied under ACCESS EXCLUSIVE)"
WRITTEN_TITLE = "Rows the run would write (pg_stat_xact_user_tables)"
CHANGED_TITLE = "Values the run would change (the revisions' backfills, column by column)"
NO_CALLS_FILE = "no calls file"
BROKEN_NOTE = (
    "BROKEN: the run refuses to break a call the backend makes unless "
    f"-x {calls_guard.OVERRIDE}=true"
)
DROPPED_TITLE = "Values the run would drop (tables and columns holding values)"
CREATED_NOTE = "a table the run creates: no client uses it yet"
LOSSES = f"the run refuses to drop values unless -x {data_loss.OVERRIDE}=true (back them up first)"


def _database_line(report: Report) -> str:
    if report.revisions is None:
        return f"Database at {report.at}; the run failed before its last revision"
    applied = ", ".join(report.revisions) or "none: the database is at head"
    return f"Database at {report.at}; revisions to apply: {applied}"


def _same_rows(count: int, command: str) -> str:
    return (
        f"{count} other cell(s) keep their rows, through other policies or reasons: "
        f"{command} after the deploy shows them"
    )


def _wider_note() -> str:
    return (
        "WIDER: the run refuses to widen what these roles can do on tables that existed "
        f"before it, unless -x {widening.OVERRIDE}=true"
    )


def as_text(report: Report) -> str:
    """The plain report (the default of ``chatdb plan``)."""
    lines = [TITLE.format(where=report.where)]
    if report.stopped_early:
        lines.append(f"({STOPPED_EARLY})")
        return "\n".join(lines)
    lines += [_database_line(report), ROLLED_BACK, "", "Changes, by table:"]
    for table in report.tables:
        lines.append(f"  {table.table}" + (f"  ({table.path})" if table.path else ""))
        lines += [f"    - {sentence}" for sentence in table.changes]
    if not report.tables:
        lines.append("  (none)")
    lines += ["", f"{ACCESS_TITLE}:"]
    lines += _access_text(report.access)
    lines += ["", f"{report.calls.title}:"]
    lines += _calls_text(report.calls)
    lines += ["", "Hazards:"]
    lines += _hazards_text(report.hazards)
    return "\n".join(lines)


def _access_text(access: AccessChanges | None) -> list[str]:
    if access is None:
        return [f"  ({NOT_KNOWN})"]
    out = [f"  ({ROLES_CREATED})"] if access.roles_created else []
    for cell in access.cells:
        mark = "WIDER " if cell.wider else "      "
        was = "(new table)" if cell.was is None else cell.was
        out.append(
            f"  {mark}{cell.role:<13} {cell.table:<19} {cell.command:<6} "
            f"{was} -> {cell.rows}  through {cell.through}"
            + ("" if cell.was_through is None else f"  (was {cell.was_through})")
        )
    if not out:
        out.append("  (none)")
    if access.same_rows:
        out.append(f"  ({_same_rows(access.same_rows, '`chatdb access`')})")
    if access.wider:
        out.append(f"  {_wider_note()}")
    return out


def _calls_text(calls: Calls) -> list[str]:
    if calls.comparison is None:
        return [f"  ({NO_CALLS_FILE})" if calls.known else f"  ({NOT_KNOWN})"]
    out = [f"  {line}" for line in calls.lines()]
    if calls.comparison.broken:
        out.append(f"  {BROKEN_NOTE}")
    return out


def _hazards_text(hazards: Hazards) -> list[str]:
    out = [f"  {LOCKS_TITLE}:"]
    if not hazards.known:
        out.append(f"    ({NOT_KNOWN})")
    elif not hazards.locks:
        out.append("    (none)")
    for lock in hazards.locks:
        note = f" ({CREATED_NOTE})" if lock.created else ""
        out.append(f"    {lock.table:<30} {lock.mode}: {lock.waits}{note}")
    if hazards.rewritten:
        out.append(f"  {REWRITTEN}: " + ", ".join(hazards.rewritten))
    out.append(f"  {WRITTEN_TITLE}:")
    if not hazards.written:
        out.append("    (none)" if hazards.known else "    (not known)")
    for row in hazards.written:
        out.append(
            f"    {row.table}: {row.updated} updated, {row.deleted} deleted, "
            f"{row.inserted} inserted"
        )
    if hazards.backfills:
        out.append("    (plus, online, the rows of: " + "; ".join(hazards.backfills) + ")")
    out.append(f"  {CHANGED_TITLE}:")
    if not hazards.changed:
        out.append("    (none)" if hazards.known else "    (not known)")
    out += [f"    {sentence}" for sentence in hazards.changed]
    out.append(f"  {DROPPED_TITLE}:")
    if not hazards.dropped:
        out.append("    (none)" if hazards.known else "    (not known)")
    for drop in hazards.dropped:
        out.append(f"    {drop}" + ("" if drop.held else " (empty: nothing lost)"))
    if hazards.losses:
        out.append(f"    {LOSSES}")
    return out


# --------------------------------------------------------------------------- markdown


def as_markdown(report: Report) -> str:
    """The report as Markdown (``chatdb plan --format markdown``): headings and tables for
    a job summary or a pull request comment; the same facts as :func:`as_text`."""
    lines = [
        md.heading(2, f"Plan of {md.code('alembic upgrade head')} for {md.escape(report.where)}")
    ]
    if report.stopped_early:
        return "\n".join([*lines, "", f"_{md.escape(STOPPED_EARLY.capitalize())}._"])
    lines += ["", md.escape(_database_line(report)) + ".", "", md.escape(ROLLED_BACK)]
    lines += ["", md.heading(3, "Changes, by table")]
    if not report.tables:
        lines += ["", "None."]
    for table in report.tables:
        title = md.code(table.table) if table.table != "functions" else "Functions"
        lines += ["", f"**{title}**" + (f" ({md.escape(table.path)})" if table.path else "")]
        lines += ["", *md.bullets(md.escape(sentence) for sentence in table.changes)]
    lines += ["", md.heading(3, md.escape(ACCESS_TITLE)), ""]
    lines += _access_markdown(report.access)
    lines += ["", md.heading(3, md.escape(report.calls.title)), ""]
    lines += _calls_markdown(report.calls)
    lines += ["", md.heading(3, "Hazards"), ""]
    lines += _hazards_markdown(report.hazards)
    return "\n".join(lines)


def _access_markdown(access: AccessChanges | None) -> list[str]:
    if access is None:
        return [f"{md.escape(NOT_KNOWN.capitalize())}."]
    out = [f"{md.escape(ROLES_CREATED.capitalize())}.", ""] if access.roles_created else []
    if access.cells:
        out += md.table(
            ("", "role", "table", "command", "before", "after", "through", "was through"),
            (
                (
                    "**WIDER**" if cell.wider else "",
                    md.code(cell.role),
                    md.code(cell.table),
                    cell.command,
                    "(new table)" if cell.was is None else cell.was,
                    cell.rows,
                    md.escape(cell.through),
                    "" if cell.was_through is None else md.escape(cell.was_through),
                )
                for cell in access.cells
            ),
        )
    elif not access.roles_created:
        out.append("None.")
    if access.same_rows:
        out += ["", _same_rows(access.same_rows, md.code("chatdb access")) + "."]
    if access.wider:
        out += ["", f"**WIDER**: {md.escape(_wider_note().removeprefix('WIDER: '))}."]
    return out


def _calls_markdown(calls: Calls) -> list[str]:
    if calls.comparison is None:
        return [f"{md.escape((NO_CALLS_FILE if calls.known else NOT_KNOWN).capitalize())}."]
    summary, *rest = calls.lines()
    out = [f"**{md.escape(summary.capitalize())}**."]
    if rest:
        out += ["", *md.bullets(md.escape(line) for line in rest)]
    if calls.comparison.broken:
        out += ["", f"**BROKEN**: {md.escape(BROKEN_NOTE.removeprefix('BROKEN: '))}."]
    return out


def _hazards_markdown(hazards: Hazards) -> list[str]:
    out = [f"**{md.escape(LOCKS_TITLE)}**", ""]
    if not hazards.known:
        out.append(f"{md.escape(NOT_KNOWN.capitalize())}.")
    elif not hazards.locks:
        out.append("None.")
    else:
        out += md.table(
            ("table", "lock", "while it is held"),
            (
                (
                    md.code(lock.table),
                    lock.mode,
                    md.escape(lock.waits)
                    + (f" ({md.escape(CREATED_NOTE)})" if lock.created else ""),
                )
                for lock in hazards.locks
            ),
        )
    if hazards.rewritten:
        rewritten = ", ".join(md.code(table) for table in hazards.rewritten)
        out += ["", f"**{md.escape(REWRITTEN)}**: {rewritten}"]
    out += ["", f"**{md.escape(WRITTEN_TITLE)}**", ""]
    if hazards.written:
        out += md.table(
            ("table", "updated", "deleted", "inserted"),
            (
                (md.code(row.table), str(row.updated), str(row.deleted), str(row.inserted))
                for row in hazards.written
            ),
        )
    else:
        out.append("None." if hazards.known else "Not known.")
    if hazards.backfills:
        out += ["", "Plus, online, the rows of:", ""]
        out += md.bullets(md.escape(step) for step in hazards.backfills)
    out += ["", f"**{md.escape(CHANGED_TITLE)}**", ""]
    if hazards.changed:
        out += md.bullets(md.escape(sentence) for sentence in hazards.changed)
    else:
        out.append("None." if hazards.known else "Not known.")
    out += ["", f"**{md.escape(DROPPED_TITLE)}**", ""]
    if hazards.dropped:
        out += md.bullets(
            md.escape(str(drop)) + ("" if drop.held else " (empty: nothing lost)")
            for drop in hazards.dropped
        )
    else:
        out.append("None." if hazards.known else "Not known.")
    if hazards.losses:
        out += ["", f"**{md.escape(LOSSES.capitalize())}**."]
    return out


def _backfills(steps: list[Step]) -> list[tuple[str, str, str, str]]:
    """(table, column, expression, condition) of every backfill among the online steps."""
    fills: list[Backfill] = []
    for step in steps:
        if isinstance(step, BackfillGroup):
            fills += step.backfills
        elif isinstance(step, Backfill):
            fills.append(step)
    return [(f.table, f.column, f.expression, f.condition) for f in fills]


def _words(step: Step) -> str:
    if isinstance(step, NotNull):
        return step.describe() + ", then SET NOT NULL in the run's transaction (no scan)"
    return step.describe()


def _said_by(steps: list[Step]) -> list[str]:
    """The beginnings of the catalog sentences that repeat what an online step says (the
    plan's transaction adds such a column too, or stands in for the conversion)."""
    said = []
    for step in steps:
        if isinstance(step, AddColumn):
            said.append(f"column {step.column} added: ")
        elif isinstance(step, ConvertType):
            said.append(f"column {step.column}: type ")
    return said


# --------------------------------------------------------------------------- reading


def _version(connection: Connection) -> str | None:
    if connection.execute(text("SELECT to_regclass('public.alembic_version')")).scalar() is None:
        return None
    return connection.execute(text("SELECT max(version_num) FROM public.alembic_version")).scalar()


def _matrix(connection: Connection, tables: list[str]) -> list[Cell]:
    if not tables:
        return []
    roles = connection.execute(
        text("SELECT count(*) FROM pg_roles WHERE rolname IN ('anon', 'authenticated')")
    ).scalar()
    if roles != 2:
        return []
    return access.matrix(connection, tables, ROLES)


def _locks(connection: Connection) -> dict[str, str]:
    """The strongest lock this session holds on each table (an index's lock counts for
    its table), outside PostgreSQL's own schemas and Alembic's version table."""
    rows = connection.execute(
        text(
            "SELECT format('%I.%I', n.nspname, coalesce(t.relname, c.relname)), l.mode "
            "FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_index i ON i.indexrelid = c.oid "
            "LEFT JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "AND n.oid <> pg_my_temp_schema() AND n.nspname NOT LIKE 'pg_toast_temp%' "
            "AND coalesce(t.relname, c.relname) <> 'alembic_version'"
        )
    ).all()
    strongest: dict[str, str] = {}
    for table, mode in rows:
        if table not in strongest or _rank(mode) > _rank(strongest[table]):
            strongest[table] = mode
    return strongest


def _rank(mode: str) -> int:
    return LOCK_ORDER.index(mode) if mode in LOCK_ORDER else -1


def _written(connection: Connection) -> dict[str, tuple[int, int, int]]:
    rows = connection.execute(
        text(
            "SELECT format('%I.%I', schemaname, relname), n_tup_ins, n_tup_upd, n_tup_del "
            "FROM pg_stat_xact_user_tables WHERE relname <> 'alembic_version' "
            "AND relid NOT IN (SELECT oid FROM pg_class WHERE relpersistence = 't') "
            "AND n_tup_ins + n_tup_upd + n_tup_del > 0"
        )
    ).all()
    return {table: (int(i), int(u), int(d)) for table, i, u, d in rows}


def without_stand_ins(shot: catalog.Snapshot) -> catalog.Snapshot:
    """The catalog as the deploy leaves it where the plan stood in for an online type
    conversion (chatdb.deploy.online.ops._stand_in): the old column, renamed with the
    suffix PLAN_OLD, is what the deploy's swap drops; its indexes are the deploy's."""
    for table in shot.tables.values():
        for name in [n for n in table.columns if n.endswith(PLAN_OLD)]:
            del table.columns[name]
            original = name.removesuffix(PLAN_OLD)
            for group in (table.indexes, table.constraints):
                for key, definition in group.items():
                    group[key] = definition.replace(name, original)
    return shot


# --------------------------------------------------------------------------- command

HELP = """\
Show what `alembic upgrade head` would do to the database at DATABASE_URL (else the
running local cluster of `./dev up`), without doing it: the pending revisions run in a
transaction that is always rolled back (nothing is committed, no online step is run, no
PostgREST reload is sent), and the report says,
table by table, what they change, which access cells of anon, authenticated and PUBLIC
change, the lock each table would be held in until commit, the rows written and the
values dropped. It takes the same locks as a deploy, under the same lock_timeout (-x
lock_timeout, 5s by default), for as long as the revisions take to run: run it when a
deploy would be acceptable. Exit status 0 when the deploy would succeed, 1 when it
would fail (with the same FAILED line as the deploy); when the plan cannot be made
(no database named, a server that cannot be reached, ...), the FAILED line and the exit
code of its kind, as for every command (docs/failures.md)."""


# What a failed plan means: these say the deploy would fail (a finding, exit 1, after
# the report); any other failure means the plan itself could not be made.
DEPLOY_WOULD_FAIL = (failures.Refused, failures.RolledBack)


def cmd_plan(args: argparse.Namespace) -> int:
    target = database.for_inspection()  # it only looks: the local cluster when no URL
    where = target.shown
    plan = Plan()
    config = alembic_config(x_args=args.x)
    config.attributes["plan"] = plan
    config.attributes["target"] = target
    fmt = getattr(args, "format", "text")
    try:
        command.upgrade(config, "head")
    except PlanFinished:
        revisions = plan.revisions()
        if revisions:
            verdict = f"The deploy would succeed: it applies {', '.join(revisions)}."
        else:
            verdict = "The deploy would succeed: nothing to apply, the database is at head."
        print(plan.report(where, fmt))
        print()
        print(verdict if fmt == "text" else _verdict_markdown(f"**{md.escape(verdict)}**"))
        return 0
    except DEPLOY_WOULD_FAIL as exc:
        print(plan.report(where, fmt))
        print()
        failed = f"FAILED: {exc}"
        print(failed if fmt == "text" else _verdict_markdown(md.escape(failed)))
        return failures.Finding.exit_code
    raise RuntimeError("chatdb plan: the run ended without reaching its checks (a bug)")


def _verdict_markdown(sentence: str) -> str:
    """The last part of the Markdown report: the deploy's outcome, its FAILED line kept at
    the start of a line (as in the text) for whoever looks for it."""
    return f"{md.heading(3, 'Verdict')}\n\n{sentence}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``chatdb plan``: registered by chatdb.cli.build_parser."""
    parser = sub.add_parser(
        "plan",
        help="show what `alembic upgrade head` would do (runs it and rolls back)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-x", action="append", default=[], help="passed to Alembic as -x (as for the deploy)"
    )
    md.add_format_option(parser)
    parser.set_defaults(func=cmd_plan)
