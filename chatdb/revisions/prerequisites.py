"""What migration 004 depends on, as checks a revision can run before it changes anything.

Each check is a name an operator understands and a SQL expression that is true when
the prerequisite is in place. :func:`missing` runs them all and returns every
failing name, so a run can refuse with one message that lists them all.

It also holds what more than one revision creates: ``auth.role()`` (Supabase's
function, which 049's policies call), made by 000 on plain PostgreSQL and by 049 on a
database that was past 000 before 000 provided it.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Check:
    """``sql`` is true when the prerequisite ``name`` is in place. ``part_of`` names the
    table a column or key check belongs to: revision 000 can create a whole missing
    table, but cannot repair a table that exists without the column."""

    name: str
    sql: str
    part_of: str | None = None


def _column(table: str, column: str, type_: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = 'public' AND c.relname = '{table}' AND a.attname = '{column}' "
        f"AND NOT a.attisdropped AND format_type(a.atttypid, a.atttypmod) = '{type_}')"
    )


def _unique_id(table: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a "
        "ON a.attrelid = c.oid AND a.attnum = k.conkey[1] "
        f"WHERE n.nspname = 'public' AND c.relname = '{table}' AND k.contype IN ('p', 'u') "
        "AND array_length(k.conkey, 1) = 1 AND a.attname = 'id')"
    )


def _role(name: str) -> str:
    return f"EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}')"


CHECKS: tuple[Check, ...] = (
    Check(
        "function uuid_generate_v4() (extension uuid-ossp) on the search_path",
        "to_regprocedure('uuid_generate_v4()') IS NOT NULL",
    ),
    Check("role anon", _role("anon")),
    Check("role authenticated", _role("authenticated")),
    Check("role service_role", _role("service_role")),
    Check(
        "function auth.uid() returning uuid",
        "EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'auth' AND p.proname = 'uid' AND p.pronargs = 0 "
        "AND p.prorettype = 'uuid'::regtype)",
    ),
    Check(
        "publication supabase_realtime",
        "EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime')",
    ),
    Check(
        "trigger function public.update_updated_at_column()",
        "to_regprocedure('public.update_updated_at_column()') IS NOT NULL",
    ),
    Check("table websites", "to_regclass('public.websites') IS NOT NULL"),
    Check("column websites.id uuid", _column("websites", "id", "uuid"), "websites"),
    Check("primary key or unique constraint on websites.id", _unique_id("websites"), "websites"),
    Check("column websites.user_id uuid", _column("websites", "user_id", "uuid"), "websites"),
    Check("table delivery_orders", "to_regclass('public.delivery_orders') IS NOT NULL"),
    Check(
        "column delivery_orders.id uuid",
        _column("delivery_orders", "id", "uuid"),
        "delivery_orders",
    ),
    Check(
        "primary key or unique constraint on delivery_orders.id",
        _unique_id("delivery_orders"),
        "delivery_orders",
    ),
)


def failing(connection: Connection, checks: tuple[Check, ...] = CHECKS) -> list[Check]:
    """Every check that is not satisfied, in a stable order."""
    select_list = ", ".join(f"({check.sql}) AS c{i}" for i, check in enumerate(checks))
    row = connection.execute(text(f"SELECT {select_list}")).one()
    return [check for check, ok in zip(checks, row, strict=True) if not ok]


def _absent_tables(failed: list[Check]) -> set[str]:
    return {check.name.removeprefix("table ") for check in failed if check.part_of is None}


def missing(connection: Connection) -> list[str]:
    """Names of every prerequisite that is not in place. A column or key of an absent
    table is not listed on its own: "table X" says it all."""
    failed = failing(connection)
    absent = _absent_tables(failed)
    return [check.name for check in failed if check.part_of not in absent]


CANNOT_ADD = "its table exists without it, so revision 000 cannot add it"


def unrepairable(connection: Connection) -> list[str]:
    """When an existing table lacks a column or key that 004 needs, revision 000 cannot
    create it: return every missing name then (so one message lists them all, those
    marked that need a hand), else []."""
    failed = failing(connection)
    absent = _absent_tables(failed)
    if not any(c.part_of is not None and c.part_of not in absent for c in failed):
        return []
    return [
        f"{check.name} ({CANNOT_ADD})" if check.part_of else check.name
        for check in failed
        if check.part_of not in absent
    ]


class MissingPrerequisites(CommandError):
    """Raised before 004 changes anything when something it depends on is absent."""

    def __init__(self, names: list[str]) -> None:
        if any(CANNOT_ADD in name for name in names):
            advice = "add what the existing tables lack (revision 000 creates the rest)"
        else:
            advice = "create them (revision 000 does on plain PostgreSQL; Supabase provides them)"
        super().__init__(
            "Migration 004 needs what an earlier migration (or Supabase) provides, and "
            f"this database lacks {len(names)} of it: "
            + "; ".join(names)
            + f". Nothing was changed: {advice}, and re-run."
        )
        self.names = names


def require(names: list[str]) -> None:
    """Raise :class:`MissingPrerequisites` listing ``names``; do nothing when it is empty."""
    if names:
        raise MissingPrerequisites(names)


def has_column(connection: Connection, table: str, column: str) -> bool:
    """True when ``public.<table>`` has ``column``: for revisions whose steps depend on
    what a drifted table has."""
    return bool(
        connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:t) "
                "AND attname = :c AND attnum > 0 AND NOT attisdropped)"
            ),
            {"t": f"public.{table}", "c": column},
        ).scalar()
    )


def collecting() -> bool:
    """True while the run's pass 1 reads the pending revisions to collect their online
    steps (chatdb.deploy.online.prepare): nothing is executed then, so a check that
    depends on what an earlier pending revision creates (004 on 000's objects) must
    wait for the run's transaction, where it runs again."""
    from alembic import op

    from chatdb.deploy.online.state import COLLECT

    state = op.get_context().opts.get("chatdb_online")
    return state is not None and state.phase == COLLECT


# --------------------------------------------------------------------------- auth.role()

# Supabase's auth.role(): the role claim of the request's JWT, as PostgREST sets it (one
# setting per claim before PostgREST v9, one JSON setting since). 049's policies call it.
AUTH_ROLE_BODY = """
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
  )::text
"""


def create_auth_role_sql(marker: str) -> str:
    """A DO block that creates ``auth.role()`` where it is absent (never on Supabase,
    which has it), executable by the API roles, commented ``marker`` so that the
    revision that created it (000 on plain PostgreSQL, 049 on a database made before 000
    provided it) removes exactly it on downgrade (:func:`drop_auth_role_sql`). Schema
    ``auth`` must exist (Supabase's, or revision 000's)."""
    return f"""
        DO $$
        BEGIN
          IF to_regprocedure('auth.role()') IS NULL THEN
            CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $f${AUTH_ROLE_BODY}$f$;
            COMMENT ON FUNCTION auth.role() IS '{marker}';
            GRANT EXECUTE ON FUNCTION auth.role() TO anon, authenticated, service_role;
          END IF;
        END $$"""


def drop_auth_role_sql(marker: str) -> str:
    """A DO block that drops ``auth.role()`` only if it carries ``marker``."""
    return f"""
        DO $$
        BEGIN
          IF obj_description(to_regprocedure('auth.role()'), 'pg_proc') = '{marker}' THEN
            DROP FUNCTION auth.role();
          END IF;
        END $$"""
