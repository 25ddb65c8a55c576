"""``chatdb access``: what anon, authenticated and service_role can do to the chat tables.

PostgREST runs every request as one of these roles, with row level security applied.
What a browser holding the anon key (or a signed-in user, or the backend) can really
do is decided by two things that are easy to misread one at a time:

- the effective table privileges, which on Supabase are 004's GRANT lines *plus* the
  platform's default privileges (so anon holds DELETE although 004 never grants it);
- the policies, which are PERMISSIVE and apply to PUBLIC unless they name roles, so a
  policy called "Service role full access" opens every row to anon too.

This module reads both from the live catalog (``has_table_privilege`` and
``pg_policies``, plus the role and table flags that make PostgreSQL skip RLS) and
classifies every role x table x command cell as one of:

- ``all``: every row (INSERT: any new row);
- ``filtered``: only the rows that the named policies' conditions allow;
- ``none``: no row; RLS is on and no policy lets the role do it (INSERT fails with
  "new row violates row-level security policy", other commands touch 0 rows). For
  anon this includes the policies whose conditions reach no row without a user id:
  the anon key's JWT has no ``sub``, so ``auth.uid()`` is NULL, and a condition such
  as ``user_id = auth.uid()`` is never true (PostgreSQL's planner is asked, with
  ``auth.uid()`` replaced by NULL: only a condition it proves false counts);
- ``refused``: a privilege is missing; the statement fails with "permission denied"
  (SQLSTATE 42501, insufficient_privilege).

UPDATE and DELETE are classified as PostgREST sends them: with a filter (``WHERE``),
so PostgreSQL also needs the SELECT privilege and applies the SELECT policies.

It never writes: the catalog is read in a READ ONLY transaction that is rolled back.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from chatdb import markdown as md
from chatdb.database import read_only
from chatdb.failures import Refused, RolledBack, first_line

if TYPE_CHECKING:
    from chatdb.inspect.normalize import Normalizer
    from models.entities import Policy

ROLES = ("anon", "authenticated", "service_role")
TABLES = ("chat_conversations", "chat_messages", "chat_participants")
COMMANDS = ("SELECT", "INSERT", "UPDATE", "DELETE")
APPLICATION_NAME = "chatdb access"
SCHEMA = "public"

ALL, FILTERED, NONE, REFUSED = "all", "filtered", "none", "refused"
# Worse outcomes rank higher: a statement gets the worst of what it needs.
_RANK = {ALL: 0, FILTERED: 1, NONE: 2, REFUSED: 3}

LEGEND = """\
rows: all = every row (INSERT: any new row); filtered = only the rows the listed policies'
conditions allow; none = no row (RLS is on and no policy lets the role do it; for anon,
whose auth.uid() is NULL, a condition on auth.uid() that is never true lets nothing);
refused = a privilege is missing, the statement fails with "permission denied".
UPDATE and DELETE count as PostgREST sends them, filtered, so they also need SELECT."""

# Roles whose requests carry no user id: PostgREST runs a request without a JWT, or with
# the anon key (whose JWT has no "sub"), as anon, and auth.uid() is NULL there.
WITHOUT_USER_ID = ("anon",)
# The reason a cell names when the only policies that would let a role through compare
# with auth.uid() and the role has none.
NO_USER_ID = "auth.uid() is NULL"
_UID_CALL = re.compile(r"\bauth\s*\.\s*uid\s*\(\s*\)", re.IGNORECASE)


def compares_with_uid(expression: str | None) -> bool:
    return expression is not None and bool(_UID_CALL.search(expression))


def without_user_id(expression: str) -> str:
    """``expression`` as it reads for a request without a user id: auth.uid() is NULL."""
    return _UID_CALL.sub("(NULL::uuid)", expression)


@dataclass(frozen=True)
class Cell:
    """What ``role`` can do with ``command`` on ``table``, and what decides it.

    ``through`` names the policies that give the outcome (quoted policy names), or the
    reason when no policy is involved: ``BYPASSRLS``, ``superuser``, ``table owner``,
    ``RLS disabled``, ``no policy``, ``no <PRIVILEGE> privilege``.
    """

    role: str
    table: str
    command: str
    rows: str
    through: tuple[str, ...]
    # For "filtered": the conditions that let rows through, as the catalog prints them
    # (permissive ones bare, restrictive ones prefixed "AND "): a cell that stays
    # "filtered" widens when a permissive condition appears or a restrictive one goes.
    conditions: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def flagged(self) -> bool:
        """anon (anyone holding the anon key) can change or remove rows it does not own.

        anon has no user id, so it owns no row: every UPDATE or DELETE that reaches all
        rows is a row of somebody else's.
        """
        return self.role == "anon" and self.command in ("UPDATE", "DELETE") and self.rows == ALL


@dataclass(frozen=True)
class Reach:
    """How far a set of policy expressions reaches, and which policies decide it."""

    rows: str
    through: tuple[str, ...]
    conditions: frozenset[str] = frozenset()


def _unconditional(expression: str | None) -> bool:
    return expression is not None and expression.strip().lower() == "true"


Named = list[tuple[str, str | None]]  # (policy name, expression)


def _reach(permissive: Named, restrictive: Named, userless: Named = ()) -> Reach:
    """PostgreSQL's rule: a row passes if any permissive and every restrictive expression
    is true; with no permissive policy, no row passes. ``userless``: the permissive
    policies left out because their condition lets no row through without a user id."""
    granting = [(name, expr) for name, expr in permissive if expr is not None]
    if not granting and userless:
        return Reach(NONE, (*dict.fromkeys(name for name, _ in userless), NO_USER_ID))
    if not granting:
        return Reach(NONE, ("no policy",))
    open_ = [name for name, expr in granting if _unconditional(expr)]
    limiting = [name for name, expr in restrictive if not _unconditional(expr)]
    if open_ and not limiting:
        return Reach(ALL, tuple(open_))
    conditions = {" ".join(expr.split()) for _, expr in granting}
    conditions |= {"AND " + " ".join(expr.split()) for _, expr in restrictive if expr}
    return Reach(
        FILTERED, tuple(name for name, _ in granting) + tuple(limiting), frozenset(conditions)
    )


def _worst(*reaches: Reach) -> Reach:
    """The outcome of a statement that needs all of ``reaches``; names of the deciding ones."""
    rows = max((r.rows for r in reaches), key=_RANK.__getitem__)
    names: list[str] = []
    conditions: set[str] = set()
    for reach in reaches:
        if reach.rows == rows:
            names.extend(n for n in reach.through if n not in names)
            conditions |= reach.conditions
    return Reach(rows, tuple(names), frozenset(conditions))


NoRow = Callable[["Policy", str], bool]  # (policy, expression): lets no row through


def _expressions(
    policies: Iterable[Policy], command: str, part: str, no_row: NoRow | None = None
) -> tuple[list, list, list]:
    """(permissive, restrictive, userless) lists of (name, expression) that PostgreSQL
    applies to ``command``; ``part`` is "using" (rows read) or "check" (new rows).
    ``no_row``: for a role without a user id, which permissive expressions let no row
    through (they go to ``userless`` instead of ``permissive``)."""
    permissive, restrictive, userless = [], [], []
    for policy in policies:
        if policy.command not in (command, "ALL"):
            continue
        # Without WITH CHECK, the USING expression checks new rows too.
        expr = policy.using if part == "using" else (policy.with_check or policy.using)
        if not policy.permissive:
            restrictive.append((policy.name, expr))
        elif expr is not None and no_row is not None and no_row(policy, expr):
            userless.append((policy.name, expr))
        else:
            permissive.append((policy.name, expr))
    return permissive, restrictive, userless


def policy_reach(policies: Sequence[Policy], command: str, no_row: NoRow | None = None) -> Reach:
    """How far the policies that apply to a role let ``command`` reach. ``no_row``: for a
    role without a user id (anon), the expressions that let no row through."""
    select = _reach(*_expressions(policies, "SELECT", "using", no_row))
    if command == "SELECT":
        return select
    if command == "INSERT":
        return _reach(*_expressions(policies, "INSERT", "check", no_row))
    using = _reach(*_expressions(policies, command, "using", no_row))
    own, check = using, None
    if command == "UPDATE":
        check = _reach(*_expressions(policies, "UPDATE", "check", no_row))
        own = _worst(using, check)
    # A filtered UPDATE/DELETE touches only rows its SELECT policies show.
    reach = own if _RANK[own.rows] >= _RANK[select.rows] else select
    if reach.rows != FILTERED:
        return reach
    # Every part that decides the rows, for the run's access guard: the command's USING,
    # the SELECT policies (rows the statement can see), and WITH CHECK (what an updated
    # row may become), so that a part widening alone is seen (chatdb.deploy.widening).
    conditions = set(using.conditions if using.rows == FILTERED else _part("", using))
    conditions |= _part(SELECT_PART, select)
    if check is not None:
        conditions |= _part(CHECK_PART, check)
    return Reach(reach.rows, reach.through, frozenset(conditions))


SELECT_PART, CHECK_PART = "[select] ", "[check] "


def _part(prefix: str, reach: Reach) -> set[str]:
    """A part's conditions, prefixed: "true" where it lets every row through."""
    if reach.rows == ALL:
        return {prefix + "true"}
    return {prefix + condition for condition in reach.conditions}


def _needed_privileges(command: str) -> tuple[str, ...]:
    return (command,) if command in ("SELECT", "INSERT") else ("SELECT", command)


class AccessError(Refused):
    """The database cannot be described: a chat table or an API role is missing (what
    the command needs is not there: refused, exit code 4)."""


# The pseudo-role of privileges granted to PUBLIC and policies without a TO clause: what
# any role can do (another login role of the application, say). anon and authenticated
# inherit it; it is listed on its own by the run's access guard (chatdb.deploy.widening).
PUBLIC = "PUBLIC"


@dataclass(frozen=True)
class Inputs:
    """What decides access, read from the catalog: everything :func:`compute` needs."""

    roles: tuple[str, ...]
    tables: tuple[str, ...]
    role_flags: dict[str, tuple[bool, bool]]  # role: (superuser, bypassrls)
    table_flags: dict[str, tuple[bool, bool]]  # table: (rls enabled, rls forced)
    privileges: dict[tuple[str, str, str], bool]  # (role, table, privilege)
    owners: dict[tuple[str, str], bool]  # (role, table): the role is (or inherits) the owner
    policies: tuple[Policy, ...]
    membership: dict[tuple[str, str], bool]  # (role, policy role): role is (or inherits) it
    # (table, expression) of the policy conditions that let no row through when
    # auth.uid() is NULL (proved by PostgreSQL's planner; see WITHOUT_USER_ID).
    userless_false: frozenset[tuple[str, str]] = frozenset()


def matrix(
    connection: Connection, tables: Sequence[str] = TABLES, roles: Sequence[str] = ROLES
) -> list[Cell]:
    """Every role x table x command cell, from the live privileges and policies. A table
    or role that does not exist is an AccessError naming it."""
    return compute(read_inputs(connection, tables, roles))


def read_inputs(
    connection: Connection,
    tables: Sequence[str] = TABLES,
    roles: Sequence[str] = ROLES,
    normalizer: Normalizer | None = None,
) -> Inputs:
    """Read what decides access to ``tables`` for ``roles`` (PUBLIC included, if asked);
    ``normalizer``: one the caller has open, for the auth.uid() conditions."""
    tables, roles = tuple(tables), tuple(roles)
    real_roles = tuple(r for r in roles if r != PUBLIC)
    table_flags = _tables(connection, tables)
    role_flags = _roles(connection, real_roles)
    privileges = _privileges(connection, tables, real_roles)
    owners = _owner_members(connection, tables, real_roles)
    if PUBLIC in roles:
        role_flags[PUBLIC] = (False, False)
        privileges.update(_public_privileges(connection, tables))
        owners.update({(PUBLIC, table): False for table in tables})
    # Imported here, not at the top: chatdb.cli imports this module at start-up, and the
    # models must not be imported before env.py puts the project's folder on sys.path
    # (prepend_sys_path), or `chatdb drift` in a project copy would read the installed ones.
    from chatdb.inspect.live import read_policies

    policies = tuple(p for _, p in sorted(read_policies(connection, list(tables)).items()))
    membership = policy_role_membership(connection, policies, real_roles)
    userless_false = (
        false_without_user_id(connection, policies, normalizer)
        if any(role in WITHOUT_USER_ID for role in roles)
        else frozenset()
    )
    return Inputs(
        roles,
        tables,
        role_flags,
        table_flags,
        privileges,
        owners,
        policies,
        membership,
        userless_false,
    )


def false_without_user_id(
    connection: Connection, policies: Sequence[Policy], normalizer: Normalizer | None = None
) -> frozenset[tuple[str, str]]:
    """The (table, expression) pairs among the policies' conditions that compare with
    auth.uid() and that PostgreSQL's planner proves false when it is NULL: planned as
    ``SELECT 1 FROM <table> WHERE (<expression, auth.uid() replaced by NULL>)``, their
    plan is the constant ``false``'s. A condition it cannot prove false (``auth.uid() IS
    NULL OR ...``) is not in the set: it may let rows through, and is reported so. The
    tables must exist; no condition on auth.uid(), no round trip."""
    candidates = {
        (policy.table, expression)
        for policy in policies
        for expression in (policy.using, policy.with_check)
        if compares_with_uid(expression)
    }
    if not candidates:
        return frozenset()
    if normalizer is None:
        from chatdb.inspect.normalize import Normalizer  # models: see read_inputs

        with Normalizer(connection) as opened:
            return false_without_user_id(connection, policies, opened)
    return frozenset(
        (table, expression)
        for table, expression in candidates
        if normalizer.is_false(table, without_user_id(expression))
    )


def compute(inputs: Inputs) -> list[Cell]:
    """Every role x table x command cell of ``inputs``, in role, table, command order."""
    cells = []

    def no_row(policy: Policy, expression: str) -> bool:
        return (policy.table, expression) in inputs.userless_false

    for role in inputs.roles:
        superuser, bypassrls = inputs.role_flags[role]
        for table in inputs.tables:
            rls, forced = inputs.table_flags[table]
            applying = [
                p
                for p in inputs.policies
                if p.table == table
                and any(r == "public" or inputs.membership.get((role, r), False) for r in p.roles)
            ]
            for command in COMMANDS:
                needed = _needed_privileges(command)
                missing = [p for p in needed if not inputs.privileges[(role, table, p)]]
                if missing:
                    reach = Reach(REFUSED, (f"no {'/'.join(missing)} privilege",))
                elif superuser:
                    reach = Reach(ALL, ("superuser",))
                elif bypassrls:
                    reach = Reach(ALL, ("BYPASSRLS",))
                elif not rls:
                    reach = Reach(ALL, ("RLS disabled",))
                elif inputs.owners[(role, table)] and not forced:
                    reach = Reach(ALL, ("table owner",))
                else:
                    reach = policy_reach(
                        applying, command, no_row if role in WITHOUT_USER_ID else None
                    )
                cells.append(
                    Cell(role, table, command, reach.rows, reach.through, reach.conditions)
                )
    return cells


def _roles(connection: Connection, roles: Sequence[str]) -> dict[str, tuple[bool, bool]]:
    rows = connection.execute(
        text("SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ANY(:roles)"),
        {"roles": list(roles)},
    ).all()
    return _all_present(
        {name: (bool(su), bool(bypass)) for name, su, bypass in rows},
        roles,
        "role(s) {} do not exist: this database is not set up like a Supabase project "
        "(on plain PostgreSQL, `alembic upgrade head` creates them)",
    )


def _tables(connection: Connection, tables: Sequence[str]) -> dict[str, tuple[bool, bool]]:
    rows = connection.execute(
        text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = ANY(:tables) AND c.relkind IN ('r', 'p')"
        ),
        {"schema": SCHEMA, "tables": list(tables)},
    ).all()
    return _all_present(
        {name: (bool(rls), bool(forced)) for name, rls, forced in rows},
        tables,
        f"table(s) {{}} do not exist in schema {SCHEMA}: "
        "migrate the database first (alembic upgrade head)",
    )


def existing_tables(connection: Connection, tables: Sequence[str] = TABLES) -> tuple[str, ...]:
    """Those of ``tables`` that exist in schema public, in the given order."""
    found = set(
        connection.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relname = ANY(:tables) "
                "AND c.relkind IN ('r', 'p')"
            ),
            {"schema": SCHEMA, "tables": list(tables)},
        ).scalars()
    )
    return tuple(t for t in tables if t in found)


def _all_present(found: dict, names: Sequence[str], message: str) -> dict:
    """``found``, or AccessError with ``message`` naming every one of ``names`` absent."""
    absent = [name for name in names if name not in found]
    if absent:
        raise AccessError(message.format(", ".join(absent)))
    return found


def _privileges(
    connection: Connection, tables: Sequence[str], roles: Sequence[str]
) -> dict[tuple[str, str, str], bool]:
    rows = connection.execute(
        text(
            "SELECT r, t, p, has_table_privilege(r, format('%I.%I', :schema, t), p) "
            "FROM unnest(CAST(:roles AS text[])) r, unnest(CAST(:tables AS text[])) t, "
            "unnest(CAST(:commands AS text[])) p"
        ),
        {
            "schema": SCHEMA,
            "roles": list(roles),
            "tables": list(tables),
            "commands": list(COMMANDS),
        },
    ).all()
    return {(r, t, p): bool(has) for r, t, p, has in rows}


def _public_privileges(
    connection: Connection, tables: Sequence[str]
) -> dict[tuple[str, str, str], bool]:
    """Table privileges granted to PUBLIC (grantee 0 in the ACL): what any role holds."""
    rows = connection.execute(
        text(
            "SELECT c.relname, a.privilege_type FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
            "WHERE n.nspname = :schema AND c.relname = ANY(:tables) AND a.grantee = 0"
        ),
        {"schema": SCHEMA, "tables": list(tables)},
    ).all()
    granted = {(table, privilege) for table, privilege in rows}
    return {
        (PUBLIC, table, command): (table, command) in granted
        for table in tables
        for command in COMMANDS
    }


def _owner_members(
    connection: Connection, tables: Sequence[str], roles: Sequence[str]
) -> dict[tuple[str, str], bool]:
    """Whether each role is (or inherits) the owner of each table: owners skip RLS."""
    rows = connection.execute(
        text(
            "SELECT r, c.relname, pg_has_role(r, c.relowner, 'USAGE') "
            "FROM unnest(CAST(:roles AS text[])) r, pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = ANY(:tables)"
        ),
        {"schema": SCHEMA, "roles": list(roles), "tables": list(tables)},
    ).all()
    return {(r, t): bool(member) for r, t, member in rows}


def policy_role_membership(
    connection: Connection, policies: Sequence[Policy], roles: Sequence[str]
) -> dict[tuple[str, str], bool]:
    """Whether each role is (or inherits) each role a policy is TO."""
    return role_membership(
        connection, roles, {r for p in policies for r in p.roles if r != "public"}
    )


def role_membership(
    connection: Connection, roles: Sequence[str], names: Iterable[str]
) -> dict[tuple[str, str], bool]:
    """Whether each of ``roles`` is (or inherits) each of the roles ``names``."""
    named = sorted(set(names))
    if not named or not roles:
        return {}
    rows = connection.execute(
        text(
            "SELECT r, p, pg_has_role(r, p, 'USAGE') "
            "FROM unnest(CAST(:roles AS text[])) r, unnest(CAST(:named AS text[])) p"
        ),
        {"roles": list(roles), "named": named},
    ).all()
    return {(r, p): bool(member) for r, p, member in rows}


# --------------------------------------------------------------------------- output

HEADER = ("role", "table", "command", "rows", "through")


def format_through(through: Sequence[str]) -> str:
    """Policy names quoted as in SQL; reasons (BYPASSRLS, no DELETE privilege) bare."""
    reasons = {"BYPASSRLS", "superuser", "table owner", "RLS disabled", "no policy", NO_USER_ID}
    return ", ".join(
        t
        if t in reasons or (t.startswith("no ") and t.endswith(" privilege"))
        else '"' + t.replace('"', '""') + '"'
        for t in through
    )


TITLE = "Access to the chat tables at {where}, as PostgREST runs requests"
SOURCES = "privileges: has_table_privilege; row level security: pg_policies"


def _flagged_note(cells: Sequence[Cell]) -> str:
    count = sum(1 for c in cells if c.flagged)
    return (
        f"! = anon (anyone holding the anon key) can change or remove rows it does not own: "
        f"{count} cell(s)."
    )


def render(cells: Sequence[Cell], where: str) -> str:
    """The matrix as the text ``chatdb access`` prints: one line per cell, ``!`` first
    on every cell where anon can change or remove rows it does not own."""
    lines = [(c.role, c.table, c.command, c.rows, format_through(c.through)) for c in cells]
    widths = [max(len(row[i]) for row in [HEADER, *lines]) for i in range(4)]

    def line(flag: str, row: tuple[str, ...]) -> str:
        return flag + " " + "  ".join(v.ljust(w) for v, w in zip(row[:4], widths)) + "  " + row[4]

    out = [
        TITLE.format(where=where),
        f"({SOURCES})",
        "",
        line(" ", HEADER).rstrip(),
        *(line("!" if c.flagged else " ", row) for c, row in zip(cells, lines)),
        "",
        LEGEND,
        _flagged_note(cells),
    ]
    return "\n".join(out)


def render_markdown(cells: Sequence[Cell], where: str) -> str:
    """The same matrix as Markdown (``chatdb access --format markdown``): a table, the
    flagged cells marked ``!`` in its first column."""
    rows = (
        (
            "**!**" if c.flagged else "",
            md.code(c.role),
            md.code(c.table),
            c.command,
            c.rows,
            md.escape(format_through(c.through)),
        )
        for c in cells
    )
    out = [
        md.heading(2, md.escape(TITLE.format(where=where))),
        "",
        f"({md.escape(SOURCES)})",
        "",
        *md.table(("", *HEADER), rows),
        "",
        *(md.escape(line) + "  " for line in LEGEND.splitlines()),
        "",
        md.escape(_flagged_note(cells)),
    ]
    return "\n".join(out)


def not_listed(cells: Sequence[Cell]) -> str | None:
    """The sentence naming the chat tables the matrix leaves out (they do not exist)."""
    absent = [table for table in TABLES if table not in {cell.table for cell in cells}]
    if not absent:
        return None
    return (
        f"Not listed: {', '.join(absent)} (no such table in schema {SCHEMA}; "
        "`alembic upgrade head` creates it)."
    )


# --------------------------------------------------------------------------- command


def read_matrix_from_env(*, existing_only: bool = False) -> tuple[list[Cell], str]:
    """Connect to DATABASE_URL (else the running local cluster), read the matrix in a
    READ ONLY transaction, roll back. ``existing_only``: the chat tables that exist, when
    at least one does (a database before its takeover may lack chat_participants)."""
    with read_only(APPLICATION_NAME) as (connection, where):
        try:
            tables = existing_tables(connection) if existing_only else TABLES
            return matrix(connection, tables or TABLES), where
        except AccessError as exc:
            raise AccessError(f"Cannot read the access matrix at {where}: {exc}.") from None
        except DBAPIError as exc:
            raise RolledBack(
                f"Cannot read the access matrix at {where}: {first_line(exc)}."
            ) from None


def cmd_access(args: argparse.Namespace) -> int:
    cells, where = read_matrix_from_env(existing_only=True)
    markdown = getattr(args, "format", "text") == "markdown"
    print(render_markdown(cells, where) if markdown else render(cells, where))
    absent = not_listed(cells)
    if absent:
        print(f"\n{md.escape(absent)}" if markdown else absent)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``chatdb access``: registered by chatdb.cli.build_parser."""
    access = sub.add_parser(
        "access",
        help="print what anon, authenticated and service_role can do to the chat tables "
        "at DATABASE_URL, else the running local cluster (read-only)",
    )
    md.add_format_option(access)
    access.set_defaults(func=cmd_access)
