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
  values it would drop (the data-loss recorder);
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
from chatdb.deploy import calls_guard, rewrites, widening
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
    calls: calls_guard.Comparison | None = None
    estimates: dict[str, float] = field(default_factory=dict)  # the run's, as it logs them
    finished: bool = False

    # ------------------------------------------------------------------ the run's hooks

    def before(self, run: Any, steps: list[Step]) -> None:
        """Before the run's transaction (the connection is in autocommit)."""
        fresh = Plan()
        self.__dict__.update(fresh.__dict__)  # a retried attempt starts again
        connection = run.connection
        self.steps = list(steps)
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
        self.calls = run.calls.compare(connection, always=True)

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

    def report(self, where: str) -> str:
        lines = [f"Plan of `alembic upgrade head` for {where}"]
        if self.catalog_before is None:
            lines.append("(the run stopped before it changed anything; see below)")
            return "\n".join(lines)
        revisions = self.revisions()
        at = self.version_before or "no revision (no alembic_version table)"
        if self.catalog_after is not None:
            applied = ", ".join(revisions) if revisions else "none: the database is at head"
            lines.append(f"Database at {at}; revisions to apply: {applied}")
        else:
            lines.append(f"Database at {at}; the run failed before its last revision")
        lines.append(
            "Run in a transaction that was rolled back: nothing was changed, and no online "
            "step was run."
        )
        lines += ["", "Changes, by table:"]
        lines += self._changes()
        lines += ["", "Access that would change (anon, authenticated, PUBLIC):"]
        lines += self._access()
        lines += ["", "Backend calls (calls/backend.calls, run as PostgREST runs them):"]
        lines += self._calls()
        lines += ["", "Hazards:"]
        lines += self._hazards()
        return "\n".join(lines)

    def _calls(self) -> list[str]:
        if self.calls is None:
            known = self.catalog_after is not None
            return [
                "  (no calls file)" if known else "  (not known: the run failed before its end)"
            ]
        out = [f"  {self.calls.summary()}"]
        out += [f"  BROKEN {broken}" for broken in self.calls.broken]
        out += [
            f"  fixed  {o.call.where} {o.call.table} {o.call.operation}" for o in self.calls.fixed
        ]
        if self.calls.broken:
            out.append(
                "  BROKEN: the run refuses to break a call the backend makes unless "
                f"-x {calls_guard.OVERRIDE}=true"
            )
        return out

    def _changes(self) -> list[str]:
        changed = (
            catalog.differences(self.catalog_before, self.catalog_after)
            if self.catalog_after is not None
            else {}
        )
        online: dict[str, list[Step]] = {}
        for step in self.steps:
            online.setdefault(step.table, []).append(step)
        tables = sorted(set(changed) | set(online), key=lambda t: (t == "functions", t))
        if not tables:
            return ["  (none)"]
        out = []
        for table in tables:
            out.append(f"  {table}{self._path(table)}")
            steps = online.get(table, [])
            for step in steps:
                out.append(f"    - online, before the run's transaction: {_words(step)}")
            out += [
                f"    - {sentence}"
                for sentence in changed.get(table, [])
                if not any(sentence.startswith(said) for said in _said_by(steps))
            ]
        return out

    def _path(self, table: str) -> str:
        before = self.catalog_before.tables.get(table) if self.catalog_before else None
        if table == "functions":
            return ""
        if before is None:
            return "  (created by the run)"
        if table in self.estimates:  # what the run decided its path with, and logs
            rows = f"about {self.estimates[table]:,.0f} rows"
        elif before.estimated_rows < 0:
            rows = "no row estimate yet: never vacuumed or analyzed"
        else:
            rows = f"about {before.estimated_rows:,.0f} rows"
        if table not in self.paths:
            return f"  ({rows})"
        if self.paths[table]:
            return f"  ({rows}; online path: the slow work before the transaction)"
        return f"  ({rows}; transactional path: all in the run's one transaction)"

    def _access(self) -> list[str]:
        if self.access_after is None:
            return ["  (not known: the run failed before its end)"]
        before = {(c.role, c.table, c.command): c for c in self.access_before or []}
        wider = {(w.after.role, w.after.table, w.after.command) for w in self.widened}
        out, same_rows = [], 0
        if not before and self.catalog_before and self.catalog_before.tables:
            out.append("  (before the run the API roles do not exist: revision 000 creates them)")
        for cell in self.access_after:
            key = (cell.role, cell.table, cell.command)
            old = before.get(key)
            if old is not None and old.rows == cell.rows and key not in wider:
                if old.through != cell.through:
                    same_rows += 1
                continue
            was = "(new table)" if old is None else old.rows
            mark = "WIDER " if key in wider else "      "
            through = format_through(cell.through)
            out.append(
                f"  {mark}{cell.role:<13} {cell.table:<19} {cell.command:<6} "
                f"{was} -> {cell.rows}  through {through}"
                + ("" if old is None else f"  (was {format_through(old.through)})")
            )
        if not out:
            out.append("  (none)")
        if same_rows:
            out.append(
                f"  ({same_rows} other cell(s) keep their rows, through other policies or "
                "reasons: `chatdb access` after the deploy shows them)"
            )
        if wider:
            out.append(
                "  WIDER: the run refuses to widen what these roles can do on tables that "
                f"existed before it, unless -x {widening.OVERRIDE}=true"
            )
        return out

    def _hazards(self) -> list[str]:
        out = ["  Locks the run would hold until it commits (its own session's pg_locks):"]
        if self.catalog_after is None:
            out.append("    (not known: the run failed before its end)")
        elif not self.locks:
            out.append("    (none)")
        for table, mode in sorted(self.locks.items()):
            name, waits = LOCKS.get(mode, (mode, ""))
            schema, _, bare = table.partition(".")
            created = (
                schema == catalog.SCHEMA
                and bare not in self.catalog_before.tables
                and bare in self.catalog_after.tables
            )
            note = " (a table the run creates: no client uses it yet)" if created else ""
            out.append(f"    {table:<30} {name}: {waits}{note}")
        if self.catalog_after is not None:
            rewritten = [
                table
                for table, old in self.catalog_before.tables.items()
                if table in self.catalog_after.tables
                and self.catalog_after.tables[table].relfilenode != old.relfilenode
            ]
            if rewritten:
                out.append(
                    "  Tables rewritten in the transaction (every row copied under ACCESS "
                    "EXCLUSIVE): " + ", ".join(rewritten)
                )
        out.append("  Rows the run would write (pg_stat_xact_user_tables):")
        if not self.written:
            out.append("    (none)" if self.catalog_after is not None else "    (not known)")
        for table, (inserted, updated, deleted) in sorted(self.written.items()):
            out.append(f"    {table}: {updated} updated, {deleted} deleted, {inserted} inserted")
        backfills = [s for s in self.steps if "fill" in s.describe() or "convert" in s.describe()]
        if backfills:
            out.append(
                "    (plus, online, the rows of: "
                + "; ".join(f"{s.table}: {s.describe()}" for s in backfills)
                + ")"
            )
        out.append("  Values the run would change (the revisions' backfills, column by column):")
        changed = [sentence for found in self.rewrites for sentence in found.sentences()]
        if not changed:
            out.append("    (none)" if self.catalog_after is not None else "    (not known)")
        out += [f"    {sentence}" for sentence in changed]
        losses = [d for d in self.dropped if d.held]
        out.append("  Values the run would drop (tables and columns holding values):")
        if not self.dropped:
            out.append("    (none)" if self.catalog_after is not None else "    (not known)")
        for drop in self.dropped:
            out.append(f"    {drop}" + ("" if drop.held else " (empty: nothing lost)"))
        if losses:
            out.append(
                "    the run refuses to drop values unless -x allow_data_loss=true (back them "
                "up first)"
            )
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
Show what `alembic upgrade head` would do to the database at DATABASE_URL, without doing
it: the pending revisions run in a transaction that is always rolled back (nothing is
committed, no online step is run, no PostgREST reload is sent), and the report says,
table by table, what they change, which access cells of anon, authenticated and PUBLIC
change, the lock each table would be held in until commit, the rows written and the
values dropped. It takes the same locks as a deploy, under the same lock_timeout (-x
lock_timeout, 5s by default), for as long as the revisions take to run: run it when a
deploy would be acceptable. Exit status 0 when the deploy would succeed, 1 when it
would fail (with the same FAILED line as the deploy); when the plan cannot be made
(no DATABASE_URL, a server that cannot be reached, ...), the FAILED line and the exit
code of its kind, as for every command (docs/failures.md)."""


# What a failed plan means: these say the deploy would fail (a finding, exit 1, after
# the report); any other failure means the plan itself could not be made.
DEPLOY_WOULD_FAIL = (failures.Refused, failures.RolledBack)


def cmd_plan(args: argparse.Namespace) -> int:
    target = database.from_env()
    where = target.shown
    plan = Plan()
    config = alembic_config(x_args=args.x)
    config.attributes["plan"] = plan
    config.attributes["target"] = target
    try:
        command.upgrade(config, "head")
    except PlanFinished:
        print(plan.report(where))
        revisions = plan.revisions()
        print()
        if revisions:
            print(f"The deploy would succeed: it applies {', '.join(revisions)}.")
        else:
            print("The deploy would succeed: nothing to apply, the database is at head.")
        return 0
    except DEPLOY_WOULD_FAIL as exc:
        print(plan.report(where))
        print()
        print(f"FAILED: {exc}")
        return failures.Finding.exit_code
    raise RuntimeError("chatdb plan: the run ended without reaching its checks (a bug)")


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
    parser.set_defaults(func=cmd_plan)
