"""Row level security policies as the revisions write them: each one's CREATE and DROP.

004 creates its policies here; 049 and c003 create their service-role policies here
and, on downgrade, create 004's again from the same (table, name, command, USING,
WITH CHECK) tuples, so a policy a downgrade puts back is written exactly as 004 wrote
it. Both end with a check that no policy a role must not have is left:
:func:`refuse_if_any_sql` is that check's DO block.
"""

from __future__ import annotations

# The condition of the service-role policies (049's, c003's).
SERVICE_ROLE_ONLY = "auth.role() = 'service_role'"


def create_sql(
    table: str,
    name: str,
    command: str,
    using: str | None,
    check: str | None,
    to: str | None = None,
) -> str:
    """CREATE POLICY on ``public.<table>``; no TO clause (PUBLIC) unless ``to``."""
    sql = f'CREATE POLICY "{name}" ON public.{table} FOR {command}'
    if to is not None:
        sql += f" TO {to}"
    if using is not None:
        sql += f" USING ({using})"
    if check is not None:
        sql += f" WITH CHECK ({check})"
    return sql


def drop_sql(table: str, name: str) -> str:
    return f'DROP POLICY IF EXISTS "{name}" ON public.{table}'


def replace_sql(
    table: str,
    name: str,
    command: str,
    using: str | None,
    check: str | None,
    to: str | None = None,
) -> list[str]:
    """Drop, then create: PostgreSQL has no CREATE OR REPLACE POLICY, and a revision
    adopting a hand-run database must leave the policy as it defines it."""
    return [drop_sql(table, name), create_sql(table, name, command, using, check, to)]


def service_role_only_sql(table: str, name: str) -> list[str]:
    """The policy 049 made for its two tables (and c003 for chat_participants):
    FOR ALL TO service_role, USING and WITH CHECK ``auth.role() = 'service_role'``."""
    return replace_sql(table, name, "ALL", SERVICE_ROLE_ONLY, SERVICE_ROLE_ONLY, "service_role")


def refuse_if_any_sql(query: str, message: str) -> str:
    """A DO block that fails the run when ``query`` (one text value: what it found, or
    NULL) finds something; ``message``'s ``%`` is replaced by what it found."""
    quoted = message.replace("'", "''")
    return f"""
        DO $$
        DECLARE
          offending text;
        BEGIN
          {query.strip()}
          INTO offending;
          IF offending IS NOT NULL THEN
            RAISE EXCEPTION '{quoted}', offending;
          END IF;
        END $$"""
