"""What the online path knows during one run: which tables take it, what it collected
from the pending revisions, and what pass 1 has done.

A run that upgrades has two passes (chatdb.deploy.online.prepare):

1. ``collect``: every pending revision's upgrade() runs with its operations only
   recorded: an operation on a large existing table becomes an online step
   (chatdb.deploy.online.steps); everything else is left for pass 2. The steps then
   run, outside any transaction, each committed as it goes.
2. ``deploy``: the revisions run for real in the run's one transaction; an operation
   whose work pass 1 did finds it done (and only does its quick catalog part: SET NOT
   NULL with a valid check, dropping a helper). ``plan`` is pass 2 of ``chatdb plan``:
   pass 1 collected but ran nothing, so the operations it covers are skipped, and
   reported as what the deploy would do online.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection

from chatdb.deploy.online.settings import OnlineOptions
from chatdb.deploy.online.steps import AddColumn, Key, Step, qualified

log = logging.getLogger("chatdb.deploy.online")

COLLECT, DEPLOY, PLAN = "collect", "deploy", "plan"


@dataclass
class RunState:
    connection: Connection
    options: OnlineOptions
    plan_only: bool = False
    phase: str = COLLECT
    steps: dict[Key, Step] = field(default_factory=dict)
    executed: set[Key] = field(default_factory=set)
    _online: dict[str, bool] = field(default_factory=dict)
    estimates: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ decisions

    def online(self, table: str) -> bool:
        """True when ``table`` existed before the run and takes the online path: its
        estimated rows reach the threshold, or ``-x online=always``. Decided once per
        table, and again by :meth:`redecide` after pass 1 for a table that was small."""
        if table not in self._online:
            estimate = self.estimate(table)
            if estimate is None:  # created by this run: empty, nothing to do online
                self._online[table] = False
            else:
                self.estimates[table] = estimate
                self._online[table] = self.options.takes_online_path(estimate)
                self._say(table)
        return self._online[table]

    def estimate(self, table: str) -> float | None:
        """PostgreSQL's estimate of the table's rows (pg_class.reltuples, kept by VACUUM,
        ANALYZE and autovacuum); below the threshold, the rows counted up to it (a table
        never analysed has no estimate, and one that just filled up has an old one).
        None when the table does not exist."""
        estimate = self.connection.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"),
            {"t": qualified(table)},
        ).scalar()
        if estimate is None:
            return None
        estimate = max(float(estimate), 0.0)
        if estimate < self.options.threshold and self.options.mode == "auto":
            counted = self.connection.execute(
                text(f"SELECT count(*) FROM (SELECT 1 FROM {qualified(table)} LIMIT :n) s"),
                {"n": self.options.threshold},
            ).scalar()
            estimate = max(estimate, float(counted))
        return estimate

    def redecide(self) -> list[str]:
        """After pass 1 (which can take minutes on a large table), the tables that were
        small and have grown past the threshold meanwhile (live traffic writes on): they
        take the online path too, in another round of pass 1. Returns them."""
        grown = []
        for table, online in list(self._online.items()):
            if online or table not in self.estimates:
                continue
            estimate = self.estimate(table)
            if estimate is not None and self.options.takes_online_path(estimate):
                self.estimates[table] = estimate
                self._online[table] = True
                self._say(table, "has grown during the run: ")
                grown.append(table)
        return grown

    def _say(self, table: str, why: str = "") -> None:
        log.info(
            "%s: %s%s path (estimated rows %d, threshold %d, -x online=%s)",
            table,
            why,
            "online" if self._online[table] else "transactional",
            self.estimates[table],
            self.options.threshold,
            self.options.mode,
        )

    def has_column(self, table: str, column: str) -> bool:
        """The column exists before the run, or an online step collected so far adds it."""
        if ("column", table, column) in self.steps:
            return True
        return bool(
            self.connection.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
                    "to_regclass(:t) AND attname = :c AND attnum > 0 AND NOT attisdropped)"
                ),
                {"t": qualified(table), "c": column},
            ).scalar()
        )

    @property
    def paths(self) -> dict[str, bool]:
        """The tables decided so far: True for the online path (for chatdb plan)."""
        return dict(self._online)

    # ------------------------------------------------------------------ steps

    def collect(self, step: Step) -> None:
        self.steps.setdefault(step.key, step)
        if isinstance(step, AddColumn):
            log.debug("online: collected %s on %s", step.describe(), step.table)

    def covered(self, key: Key) -> bool:
        """Pass 1 took care of this operation's slow part (or, planning, would)."""
        return key in self.steps

    @property
    def collected(self) -> list[Step]:
        return list(self.steps.values())
