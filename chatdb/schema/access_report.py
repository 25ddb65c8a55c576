"""What a new revision does to access, said when autogenerate writes it.

A revision that changes policies, grants or row level security changes who can do what
through PostgREST, and that is easy to misread in a list of ``DROP POLICY`` /
``CREATE POLICY`` statements. When ``alembic revision --autogenerate`` writes such a
revision, the cells of ``chatdb access`` (role x table x command -> rows ``all``,
``filtered``, ``none`` or ``refused``, :mod:`chatdb.inspect.access`) that change for
anon and authenticated are

- logged (logger ``chatdb.schema.autogen``, INFO), and
- written as a comment block at the top of the revision's ``upgrade()``
  (:class:`AccessReportOp`, rendered as ``# ...`` lines).

"Before" is read from the database the revision is generated against
(:func:`chatdb.inspect.access.read_inputs` on the models' chat tables that exist).
"After" is the same inputs with the declared policies, grants and row level security
flags (``models.DECLARED``, what autogenerate compares) substituted, computed by the
same :func:`chatdb.inspect.access.compute`. A new chat table counts as having had no
access before. Effective privileges after the revision follow the table's ACL: the
declared roles' own grants replaced by the declaration, what PUBLIC and the roles they
inherit from hold kept.

A policy change that changes no cell at all (a new policy that another policy already
makes pointless, say) is a WARNING, logged and written as a comment, saying why.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from alembic.autogenerate import renderers
from alembic.operations.ops import MigrateOperation
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from chatdb.failures import first_line
from chatdb.inspect import access
from chatdb.inspect.normalize import Normalizer
from chatdb.schema.objects import ObjectOp, chat_tables_of
from models.entities import TABLE_PRIVILEGES, Declared, Policy, normalise_sql

# The logger of autogenerate, so that these lines read as part of it.
log = logging.getLogger("chatdb.schema.autogen")

REPORT_ROLES = ("anon", "authenticated")
ACCESS_KINDS = frozenset({"policy", "grant", "row_level_security"})
COMMENT_WIDTH = 92
NEW_TABLE = "(new table)"


class AccessReportOp(MigrateOperation):
    """Comment lines at the top of a generated upgrade(); no SQL, nothing to reverse.

    ``ops`` is empty so that Alembic, which lists a container's ``ops`` as its
    differences (``UpgradeOps.as_diffs``), counts it as no difference."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        self.ops: list[MigrateOperation] = []

    def reverse(self) -> AccessReportOp:
        return AccessReportOp([])


@renderers.dispatch_for(AccessReportOp)
def render_access_report(autogen_context: Any, op: AccessReportOp) -> list[str]:
    return [f"# {line}".rstrip() for line in op.lines]


@dataclasses.dataclass
class Report:
    """The changed cells (one line each) and the warnings, or why there is no report."""

    changed: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    not_computed: str | None = None

    def comment_lines(self) -> list[str]:
        roles = " and ".join(REPORT_ROLES)
        if self.not_computed is not None:
            return _wrapped(f"Access changes for {roles}: not computed ({self.not_computed})")
        if self.changed:
            lines = _wrapped(f"Access changes for {roles} (chatdb access cells, database -> code):")
            for line in self.changed:
                lines += _wrapped(line, indent="  ")
        else:
            lines = _wrapped(f"Access changes for {roles}: none (no chatdb access cell changes).")
        for warning in self.warnings:
            lines += _wrapped(f"WARNING: {warning}")
        return lines

    def log(self) -> None:
        roles = " and ".join(REPORT_ROLES)
        if self.not_computed is not None:
            log.warning("Access changes for %s: not computed (%s)", roles, self.not_computed)
            return
        if self.changed:
            log.info("Access changes for %s: %d cell(s)", roles, len(self.changed))
            for line in self.changed:
                log.info("  %s", line)
        else:
            log.info("Access changes for %s: none", roles)
        for warning in self.warnings:
            log.warning("%s", warning)


def _wrapped(sentence: str, indent: str = "") -> list[str]:
    """``sentence`` in lines of at most COMMENT_WIDTH characters, never breaking inside a
    quoted policy name; lines after the first indented two more spaces."""
    lines, line = [], indent
    for word in re.findall(r'(?:"(?:[^"]|"")*"|[^\s"])+', sentence):
        if line.strip() and len(line) + 1 + len(word) > COMMENT_WIDTH:
            lines.append(line)
            line = indent + "  "
        line += word if not line.strip() else " " + word
    return [*lines, line]


# --------------------------------------------------------------------------- the hook


def add_to_revision(context: Any, script: Any) -> None:
    """Called for a new revision (``process_revision_directives``): when it touches
    policies, grants or row level security, log the report and put it on top of
    upgrade()."""
    upgrade_ops = script.upgrade_ops
    changes = access_changes(upgrade_ops)
    if not changes:
        return
    declared = context.opts.get("chatdb_declared")
    if declared is None:
        from models import DECLARED as declared
    metadata = context.opts["target_metadata"]
    chat_tables = chat_tables_of(metadata.sorted_tables)
    connection = context.connection
    try:
        # In a savepoint: a statement that fails leaves the run's transaction usable.
        with connection.begin_nested():
            report = access_report(connection, declared, chat_tables, changes)
    except DBAPIError as exc:
        report = Report(not_computed=f"reading the database failed: {first_line(exc)}")
    report.log()
    upgrade_ops.ops.insert(0, AccessReportOp(report.comment_lines()))


def access_changes(upgrade_ops: Any) -> list[Any]:
    """The changes (:class:`chatdb.schema.objects.Change`) of policies, grants and row
    level security among ``upgrade_ops``, each once."""
    changes: list[Any] = []
    for op in upgrade_ops.ops:
        if (
            isinstance(op, ObjectOp)
            and op.change is not None
            and op.kind in ACCESS_KINDS
            and all(op.change is not seen for seen in changes)
        ):
            changes.append(op.change)
    return changes


# --------------------------------------------------------------------------- the report


def predict(
    connection: Connection, declared: Declared, chat_tables: Iterable[str]
) -> tuple[access.Inputs, access.Inputs]:
    """What decides access to the models' chat tables now (read from the database) and
    once the declared objects are in place; AccessError when the roles are missing."""
    chat_tables = set(chat_tables)
    with Normalizer(connection) as normalizer:
        kept = access.existing_tables(connection, sorted(chat_tables))
        new = tuple(sorted(chat_tables - set(kept)))
        before = access.read_inputs(connection, kept, REPORT_ROLES, normalizer)
        before = dataclasses.replace(
            before, policies=tuple(_settled(p, normalizer) for p in before.policies)
        )
        return before, _after(connection, normalizer, before, declared, new)


def access_report(
    connection: Connection, declared: Declared, chat_tables: Iterable[str], changes: Sequence[Any]
) -> Report:
    """The cells of anon and authenticated that the declared objects change on the
    models' chat tables, and a warning for each policy change that changes none.
    ``changes`` are the revision's :class:`chatdb.schema.objects.Change` objects."""
    try:
        before, after = predict(connection, declared, chat_tables)
    except access.AccessError as exc:
        return Report(not_computed=str(exc))
    before_cells = {_key(c): c for c in access.compute(before)}
    after_cells = access.compute(after)
    report = Report()
    for cell in after_cells:
        old = before_cells.get(_key(cell))
        if old is None:
            report.changed.append(f"{_where(cell)}: {NEW_TABLE} -> {_outcome(cell)}")
        elif _rows(old, before) != _rows(cell, after):
            if old.rows != cell.rows:
                report.changed.append(f"{_where(cell)}: {old.rows} -> {_outcome(cell)}")
            elif old.through != cell.through:
                report.changed.append(
                    f"{_where(cell)}: filtered -> filtered, through "
                    f"{access.format_through(cell.through)} "
                    f"(was {access.format_through(old.through)})"
                )
            else:
                report.changed.append(
                    f"{_where(cell)}: filtered -> filtered, by changed conditions of "
                    f"{access.format_through(cell.through)}"
                )
    after_by_key = {_key(c): c for c in after_cells}
    for change in changes:
        if change.kind == "policy" and change.table in after.tables:
            warning = _pointless(change, before, after, after_by_key)
            if warning:
                report.warnings.append(warning)
    return report


def _key(cell: access.Cell) -> tuple[str, str, str]:
    return (cell.role, cell.table, cell.command)


def _rows(cell: access.Cell, inputs: access.Inputs) -> tuple:
    """What a cell lets the role do: the rows, and for filtered rows the policies that
    decide which, with their conditions (other conditions are other rows)."""
    if cell.rows != access.FILTERED:
        return (cell.rows,)
    policies = {p.name: p for p in inputs.policies if p.table == cell.table}
    return (
        cell.rows,
        tuple(
            (name, dataclasses.astuple(policies[name]) if name in policies else None)
            for name in cell.through
        ),
    )


def _where(cell: access.Cell) -> str:
    return f"{cell.role} {cell.table} {cell.command}"


def _outcome(cell: access.Cell) -> str:
    return f"{cell.rows} ({access.format_through(cell.through)})"


def _settled(policy: Policy, normalizer: Normalizer) -> Policy:
    """The policy with an expression that PostgreSQL reads as ``true`` (``TRUE``,
    ``(true)``, ``1 = 1``) written ``true``, the one form access.compute takes for every
    row; its command in upper case."""

    def settle(expression: str | None) -> str | None:
        if expression is None:
            return None
        bare = normalise_sql(expression) or ""
        while bare.startswith("(") and bare.endswith(")"):
            bare = bare[1:-1].strip()
        if bare.lower() == "true" or normalizer.is_true(policy.table, expression):
            return "true"
        return expression

    return dataclasses.replace(
        policy,
        command=policy.command.upper(),
        using=settle(policy.using),
        with_check=settle(policy.with_check),
    )


def _after(
    connection: Connection,
    normalizer: Normalizer,
    before: access.Inputs,
    declared: Declared,
    new: tuple[str, ...],
) -> access.Inputs:
    """``before`` with the declared policies, grants and row level security substituted,
    and the models' new tables added."""
    tables = before.tables + new
    live = {p.key: p for p in before.policies}
    policies = []
    for policy in sorted(declared.policies, key=lambda p: p.key):
        if policy.table not in tables:
            continue
        if policy.table not in before.tables:
            # Only a table that exists can be planned against: settled by its text.
            policies.append(_settled(policy, _TextOnly()))
            continue
        policy = _settled(policy, normalizer)
        old = live.get(policy.key)
        if old is not None:
            # An expression the same to PostgreSQL as the live one is written as the
            # live one, so that comparing cells can compare texts.
            policy = dataclasses.replace(
                policy,
                using=_same_as(normalizer, policy.table, policy.using, old.using),
                with_check=_same_as(normalizer, policy.table, policy.with_check, old.with_check),
            )
        policies.append(policy)
    membership = dict(before.membership)
    membership.update(access.policy_role_membership(connection, policies, REPORT_ROLES))
    owner = connection.scalar(text("SELECT current_user"))
    table_flags = {
        table: (
            table in declared.row_level_security,
            before.table_flags.get(table, (False, False))[1],
        )
        for table in tables
    }
    owners = dict(before.owners)
    inherits = _inherits(connection, REPORT_ROLES, [owner])
    owners.update(
        {(role, table): inherits[(role, owner)] for role in REPORT_ROLES for table in new}
    )
    return dataclasses.replace(
        before,
        tables=tables,
        table_flags=table_flags,
        privileges=_privileges_after(connection, before, declared, new, owner),
        owners=owners,
        policies=tuple(policies),
        membership=membership,
        # The declared conditions, not the live ones: a new policy on auth.uid() reaches
        # no row for anon either (only a table that exists can be planned against).
        userless_false=access.false_without_user_id(
            connection, [p for p in policies if p.table in before.tables], normalizer
        ),
    )


def _same_as(normalizer: Normalizer, table: str, want: str | None, have: str | None) -> str | None:
    return have if normalizer.same_expression(table, want, have) else want


class _TextOnly:
    """Stands in for a Normalizer on a table that does not exist yet."""

    def is_true(self, table: str, expression: str | None) -> bool:
        return False


# --------------------------------------------------------------------------- privileges

PUBLIC = "PUBLIC"
Acl = dict[str, dict[str, frozenset[str]]]  # table -> grantee (or PUBLIC) -> privileges


def _acls(connection: Connection, tables: Sequence[str]) -> Acl:
    rows = connection.execute(
        text(
            "SELECT c.relname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE r.rolname END, "
            "a.privilege_type FROM pg_class c "
            "CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
            "LEFT JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relname = ANY(:tables) "
            "AND c.relkind IN ('r', 'p')"
        ),
        {"schema": access.SCHEMA, "tables": list(tables)},
    ).all()
    acl: dict[str, dict[str, set[str]]] = {table: {} for table in tables}
    for table, grantee, privilege in rows:
        acl[table].setdefault(grantee, set()).add(privilege)
    return {t: {g: frozenset(p) for g, p in grants.items()} for t, grants in acl.items()}


def _inherits(
    connection: Connection, roles: Sequence[str], grantees: Iterable[str]
) -> dict[tuple[str, str], bool]:
    """Whether each role holds each grantee's privileges (is it, or inherits it)."""
    found = access.role_membership(connection, roles, {g for g in grantees if g != PUBLIC})
    found.update({(r, PUBLIC): True for r in roles})
    return found


def _privileges_after(
    connection: Connection,
    before: access.Inputs,
    declared: Declared,
    new: tuple[str, ...],
    owner: str,
) -> dict[tuple[str, str, str], bool]:
    """Each role's effective privileges once the revision has run: the declared roles'
    own grants are the declaration; what PUBLIC, the owner and any other grantee hold
    stays. A cell whose modelled privilege the revision does not change keeps the
    value has_table_privilege gave."""
    old_acl = _acls(connection, before.tables)
    new_acl: Acl = {}
    for table in before.tables + new:
        grants = dict(old_acl.get(table, {}))
        if table in new:
            grants = {owner: frozenset(TABLE_PRIVILEGES)}
        for role in declared.granted_roles:
            grant = next((g for g in declared.grants if (g.table, g.role) == (table, role)), None)
            grants[role] = grant.expanded(TABLE_PRIVILEGES) if grant else frozenset()
        new_acl[table] = grants
    grantees = {g for acl in (old_acl, new_acl) for grants in acl.values() for g in grants}
    inherits = _inherits(connection, before.roles, grantees)

    def holds(acl: Acl, role: str, table: str, privilege: str) -> bool:
        return any(
            privilege in privileges and inherits.get((role, grantee), False)
            for grantee, privileges in acl.get(table, {}).items()
        )

    privileges = {}
    for role in before.roles:
        superuser = before.role_flags[role][0]
        for table in before.tables + new:
            for privilege in access.COMMANDS:
                key = (role, table, privilege)
                modelled = holds(new_acl, role, table, privilege)
                if superuser:
                    privileges[key] = True
                elif table in new or modelled != holds(old_acl, role, table, privilege):
                    privileges[key] = modelled
                else:
                    privileges[key] = before.privileges[key]
    return privileges


# --------------------------------------------------------------------------- warnings

_VERBS = {"SELECT": "read", "INSERT": "insert", "UPDATE": "update", "DELETE": "delete"}
_BYPASS = {"BYPASSRLS", "superuser", "table owner", "RLS disabled"}


def _pointless(
    change: Any,
    before: access.Inputs,
    after: access.Inputs,
    after_cells: dict[tuple[str, str, str], access.Cell],
) -> str | None:
    """A warning when the policy change ``change`` changes no cell: the matrix after the
    revision, and the same without this one change, are equal on its table."""
    table, name = change.table, change.name
    old = next((p for p in before.policies if (p.table, p.name) == (table, name)), None)
    new = next((p for p in after.policies if (p.table, p.name) == (table, name)), None)
    undone = tuple(p for p in after.policies if (p.table, p.name) != (table, name))
    if old is not None:
        undone += (old,)
    undone_inputs = dataclasses.replace(after, policies=undone)
    without = {_key(c): c for c in access.compute(undone_inputs)}
    on_table = [key for key in after_cells if key[1] == table]
    if any(
        _rows(after_cells[key], after) != _rows(without[key], undone_inputs) for key in on_table
    ):
        return None
    what = "new" if old is None else "dropped" if new is None else "changed"
    return (
        f'policy "{name}" on {table} ({what}) changes no access cell of '
        f"{' or '.join(REPORT_ROLES)}: {_why([p for p in (new, old) if p], after, after_cells)}."
    )


def _applies_to(policy: Policy, inputs: access.Inputs) -> list[str]:
    return [
        role
        for role in inputs.roles
        if any(r == "public" or inputs.membership.get((role, r), False) for r in policy.roles)
    ]


def _why(versions: list[Policy], after: access.Inputs, cells: dict) -> str:
    """Why a policy change changes nothing: what decides the cells its version covers
    (the new one, or the old one when the new one applies to none of the roles)."""
    policy = next((p for p in versions if _applies_to(p, after)), None)
    if policy is None:
        roles = ", ".join(versions[0].roles)
        return f"it applies to {roles}, not to {' or '.join(REPORT_ROLES)}"
    commands = access.COMMANDS if policy.command == "ALL" else (policy.command,)
    # Per role, the commands by what decides them; then roles told alike, merged.
    per_role: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for role in _applies_to(policy, after):
        for command in commands:
            cell = cells[(role, policy.table, command)]
            through = [t for t in cell.through if t != policy.name]
            kind = _kind(cell.rows, through)
            what, names = per_role.setdefault((role, kind), ([], []))
            what.append(command)
            names.extend(n for n in through if n not in names)
    merged: dict[tuple[str, tuple[str, ...]], tuple[list[str], list[str]]] = {}
    for (role, kind), (what, names) in per_role.items():
        who, all_names = merged.setdefault((kind, tuple(what)), ([], []))
        who.append(role)
        all_names.extend(n for n in names if n not in all_names)
    reasons = []
    for (kind, what), (who, names) in merged.items():
        subject = " and ".join(who)
        shown = access.format_through(names if kind == "refused" else sorted(names))
        if kind == "refused":
            reasons.append(f"{subject} may not {_verbs(what, joiner=' or ')} at all ({shown})")
        elif kind == "bypass":
            reasons.append(f"row level security does not apply to {subject} here ({shown})")
        elif kind == "open":
            lets = "other policies already let" if len(names) > 1 else "another policy already lets"
            reasons.append(f"{lets} {subject} {_verbs(what, every=True)}: {shown}")
        elif kind == "none":
            reasons.append(f"no permissive policy lets {subject} {_verbs(what)}")
        else:
            reasons.append(f"what {subject} may {_verbs(what)} stays decided by {shown}")
    return "; ".join(reasons)


def _kind(rows: str, through: list[str]) -> str:
    if rows == access.REFUSED:
        return "refused"
    if rows == access.ALL:
        return "bypass" if set(through) & _BYPASS else "open"
    return "none" if rows == access.NONE else "filtered"


def _verbs(commands: Sequence[str], *, every: bool = False, joiner: str = " and ") -> str:
    """ "read every row, update every row and insert any row"-like phrases."""
    words = []
    for command in commands:
        verb = _VERBS[command]
        if every:
            verb += " any new row" if command == "INSERT" else " every row"
        words.append(verb)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + joiner + words[-1]
