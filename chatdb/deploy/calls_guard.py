"""No run breaks a call the backend makes, unless the operator says so with
``-x allow_breaking_calls=true``.

PGRST204 is what users see when the backend sends a column the schema lacks. The
backend's calls are facts in the project's calls file (calls/backend.calls, written by
``chatdb calls scan`` from its code). Before a run changes anything,
:meth:`Guard.snapshot` runs every call as PostgREST runs it for the backend
(:func:`chatdb.calls.check.run_calls`, in a transaction of its own, rolled back); before
the run commits, :meth:`Guard.compare` runs them again inside the run's transaction
(each in a subtransaction, rolled back), and :meth:`Guard.check` refuses the run
(rolled back whole) if a call that succeeded before would now fail, or would succeed
only by dropping a column it got before (the backend's retry on 42703), naming each by
``path:line``, table and column. Calls that failed before and succeed after are
reported as fixed. ``chatdb plan`` prints the same comparison.

Where no call succeeded before (a new database; one where service_role does not exist
yet), nothing can break and a deploy does not run the calls again (a plan does, to
count what the deploy fixes). Without a calls file the guard has nothing to check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from chatdb.calls.check import CallsCannotRun, Outcome, run_calls
from chatdb.calls.model import Call
from chatdb.deploy.run_options import ALLOW_BREAKING_CALLS, RunOptions
from chatdb.failures import Refused

log = logging.getLogger("chatdb.deploy.calls_guard")

OVERRIDE = ALLOW_BREAKING_CALLS
# The calls run under a statement_timeout of their own: the run's (-x statement_timeout,
# meant for its DDL) may be set short, and a check cut off would fail the run for nothing.
OWN_TIMEOUT = "SELECT set_config('statement_timeout', '30s', true)"
FLUSH_STATISTICS = (
    "DO $$ BEGIN PERFORM pg_stat_force_next_flush(); "
    "EXCEPTION WHEN undefined_function THEN NULL; END $$"
)


@dataclass(frozen=True)
class Broken:
    """A call that worked before the run and would not after it."""

    before: Outcome
    after: Outcome

    def __str__(self) -> str:
        after = self.after
        where = after.call.title
        if not after.ok:
            return f"{where}: {after.failure}"
        lost = [c for c in after.dropped if c not in self.before.dropped]
        return f"{where}: loses {', '.join(lost)} (the backend's retry drops it: 42703)"


@dataclass(frozen=True)
class Comparison:
    """The calls before and after the run."""

    total: int
    succeed: int  # after the run
    fixed: list[Outcome]  # failed before, succeed after
    broken: list[Broken]

    def summary(self) -> str:
        # A broken call may still answer (its retry dropped a column it read): say so,
        # or "39 of 49 succeed (11 broken)" reads as a miscount.
        answering = sum(b.after.ok for b in self.broken)
        still = f", {answering} of them still answering without a column" if answering else ""
        return (
            f"backend calls after this deploy: {self.succeed} of {self.total} succeed "
            f"({len(self.fixed)} fixed, {len(self.broken)} broken{still})"
        )


def broken(before: Outcome, after: Outcome) -> bool:
    """Worked before, and fails after, or succeeds only without a column it had."""
    if not before.ok:
        return False
    return not after.ok or not set(after.dropped) <= set(before.dropped)


class Guard:
    """The calls check of one run (one attempt)."""

    def __init__(self, calls: list[Call], allowed: bool, source: str = "") -> None:
        self.calls, self.allowed, self.source = calls, allowed, source
        self.before: list[Outcome] | None = None
        self.comparison: Comparison | None = None

    @classmethod
    def of(cls, options: RunOptions) -> Guard:
        """The run's calls (RunOptions read the calls file: none without one)."""
        return cls(list(options.calls), options.allow_breaking_calls, options.calls_source)

    @property
    def baseline(self) -> bool:
        """Some call succeeded before the run: there is something to break."""
        return bool(self.before) and any(outcome.ok for outcome in self.before)

    def snapshot(self, connection: Connection) -> None:
        """Run the calls before the run changes anything, in a transaction (or, on a
        connection already in one, a savepoint) that is rolled back."""
        if not self.calls:
            return
        scope = connection.begin_nested() if connection.in_transaction() else connection.begin()
        try:
            connection.exec_driver_sql(OWN_TIMEOUT)
            self.before = run_calls(connection, self.calls)
        except CallsCannotRun:
            self.before = None  # no service_role yet (before revision 000): no baseline
        finally:
            # The calls' row counts are pending statistics of this session until it
            # flushes them: flush them now, or the run's pg_stat_xact_user_tables (what
            # chatdb plan reports as written) would count them too (PostgreSQL 15+).
            connection.exec_driver_sql(FLUSH_STATISTICS)
            scope.rollback()

    def compare(
        self, connection: Connection, *, always: bool = False, changed: bool = True
    ) -> Comparison | None:
        """Inside the run's transaction: the calls again, compared with the snapshot.
        Without a baseline, only when ``always`` (chatdb plan counts what it fixes). A run
        that applied no revision (``changed`` False) changed nothing the calls meet: the
        snapshot is the answer."""
        if self.comparison is not None:
            return self.comparison
        if not self.calls or (not self.baseline and not always):
            return None
        if not changed and self.before is not None:
            return self._compared(self.before, self.before)
        run_timeout = connection.exec_driver_sql("SHOW statement_timeout").scalar()
        connection.exec_driver_sql(OWN_TIMEOUT)
        try:
            after = run_calls(connection, self.calls)
        except CallsCannotRun:
            after = None
        # The run's own statement_timeout again, for what follows (an error above has
        # aborted the run's transaction: there is nothing left to follow).
        connection.exec_driver_sql(
            "SELECT set_config('statement_timeout', %(value)s, true)", {"value": run_timeout}
        )
        if after is None:
            return None
        before = self.before or [Outcome(call, False, "not run") for call in self.calls]
        return self._compared(before, after)

    def _compared(self, before: list[Outcome], after: list[Outcome]) -> Comparison:
        self.comparison = Comparison(
            total=len(after),
            succeed=sum(outcome.ok for outcome in after),
            fixed=[a for b, a in zip(before, after, strict=True) if not b.ok and a.ok],
            broken=[Broken(b, a) for b, a in zip(before, after, strict=True) if broken(b, a)],
        )
        return self.comparison

    def check(self, connection: Connection, *, changed: bool = True) -> None:
        """Refuse the run (Refused: its transaction rolls back) if it breaks a call the
        backend makes, unless allowed; log what it fixes and the summary."""
        comparison = self.compare(connection, changed=changed)
        if comparison is None:
            return
        for fixed in comparison.fixed:
            log.info("backend call fixed: %s", fixed.call.title)
        log.info("%s (%s)", comparison.summary(), self.source)
        if not comparison.broken:
            return
        if self.allowed:
            for call in comparison.broken:
                log.warning("-x %s=true: backend call broken: %s", OVERRIDE, call)
            return
        raise Refused(refusal(comparison.broken, self.source))


def refusal(found: list[Broken], source: str) -> str:
    return (
        f"The run would break {len(found)} call(s) the backend makes that work now "
        f"({source}): " + "; ".join(map(str, found)) + "; the run was rolled back and the "
        "database is as it was: keep what the backend uses (or change the backend first and "
        f"rescan with `chatdb calls scan`), or re-run with -x {OVERRIDE}=true to accept it."
    )
