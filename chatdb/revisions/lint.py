"""Justifications for the migration lint (squawk), kept beside the statement they excuse.

tests/test_migration_lint.py runs squawk on each revision's ``--sql`` script; a finding
that is right for this project is excused there with ``-- squawk-ignore <rule> --
<reason>`` on the line before the statement. The revisions' statements carry it in
``--sql`` scripts only (:func:`justified`), so that a failure message of an online run
shows the statement as written; the online path of 008 (chatdb.deploy.online), which has no
``--sql`` form and is linted as it runs, carries it always (:func:`ignore`).
"""

from __future__ import annotations

from alembic import context


def ignore(rule: str, reason: str) -> str:
    """The comment line that excuses ``rule`` on the statement after it."""
    return f"-- squawk-ignore {rule} -- {reason}\n"


def justified(sql: str, rule: str, reason: str) -> str:
    """``sql``, preceded in ``--sql`` scripts by the squawk-ignore comment for ``rule``."""
    return ignore(rule, reason) + sql if context.is_offline_mode() else sql
