"""Provide what migration 004 depends on, each object only where it is absent.

Revision ID: 000
Revises:
Create Date: 2026-11-25

Why: 004 was written for a Supabase project, where the platform (and migrations
001-003) already made the extension uuid-ossp, the roles anon / authenticated /
service_role, auth.uid() and auth.role(), the publication supabase_realtime, the
default privileges of the migration role in schema public, update_updated_at_column(),
and the tables websites and delivery_orders. On a plain PostgreSQL (local, CI) none of
it exists. (004 needs all but auth.role(), which 049's policies call.)

Behaviour:
- On a Supabase project (or any database where the hand-run SQL already ran) every
  object exists, so this revision changes nothing.
- On a plain PostgreSQL it creates each absent object, so the database behaves like
  production: same effective privileges, same RLS outcomes. auth.uid() reads the
  JWT's ``sub`` as PostgREST sets it (request.jwt.claim.sub or request.jwt.claims),
  auth.role() its ``role`` claim the same way (chatdb.revisions.prerequisites, shared
  with 049, which creates it on a database that was past 000 before 000 provided it).
- A table that exists without what 004 needs (websites without user_id, say) cannot
  be repaired here: the run stops before any change and lists every missing item.
- Every object it creates carries the comment MARKER; the downgrade removes exactly
  those objects. Roles are cluster-wide: they are dropped only when no other
  database still uses them.
"""

from collections.abc import Sequence

from alembic import context, op

from chatdb.deploy import data_loss
from chatdb.revisions import prerequisites

revision: str = "000"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARKER = "created by chatdb revision 000 (absent before); its downgrade removes it"
API_ROLES = ("anon", "authenticated", "service_role")
DEFAULT_PRIVILEGE_KINDS = (("r", "TABLES"), ("S", "SEQUENCES"), ("f", "FUNCTIONS"))


def upgrade() -> None:
    if not context.is_offline_mode():
        prerequisites.require(prerequisites.unrepairable(op.get_bind()))
    op.execute(f"""
        DO $$
        BEGIN
          IF to_regprocedure('uuid_generate_v4()') IS NULL
             AND NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'uuid-ossp') THEN
            CREATE EXTENSION "uuid-ossp" WITH SCHEMA public;
            COMMENT ON EXTENSION "uuid-ossp" IS '{MARKER}';
          END IF;
        END $$""")
    for role in API_ROLES:
        bypass = " BYPASSRLS" if role == "service_role" else ""
        op.execute(f"""
            DO $$
            BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} NOLOGIN NOINHERIT{bypass};
                COMMENT ON ROLE {role} IS '{MARKER}';
              END IF;
            END $$""")
    op.execute(f"""
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth') THEN
            CREATE SCHEMA auth;
            COMMENT ON SCHEMA auth IS '{MARKER}';
            GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
          END IF;
          IF to_regprocedure('auth.uid()') IS NULL THEN
            CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $f$
              SELECT coalesce(
                nullif(current_setting('request.jwt.claim.sub', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
              )::uuid
            $f$;
            COMMENT ON FUNCTION auth.uid() IS '{MARKER}';
            GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;
          END IF;
        END $$""")
    op.execute(prerequisites.create_auth_role_sql(MARKER))
    op.execute(f"""
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
            CREATE PUBLICATION supabase_realtime;
            COMMENT ON PUBLICATION supabase_realtime IS '{MARKER}';
          END IF;
        END $$""")
    for objtype, kind in DEFAULT_PRIVILEGE_KINDS:
        for role in API_ROLES:
            op.execute(f"""
                DO $$
                BEGIN
                  IF NOT EXISTS (
                    SELECT 1 FROM pg_default_acl d, aclexplode(d.defaclacl) a
                    WHERE d.defaclrole = current_user::regrole
                      AND d.defaclnamespace = 'public'::regnamespace
                      AND d.defaclobjtype = '{objtype}' AND a.grantee = '{role}'::regrole
                  ) THEN
                    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON {kind} TO {role};
                  END IF;
                END $$""")
    op.execute(f"""
        DO $$
        BEGIN
          IF to_regprocedure('public.update_updated_at_column()') IS NULL THEN
            CREATE FUNCTION public.update_updated_at_column() RETURNS trigger
            LANGUAGE plpgsql AS $f$
            BEGIN
              NEW.updated_at := now();
              RETURN NEW;
            END;
            $f$;
            COMMENT ON FUNCTION public.update_updated_at_column() IS '{MARKER}';
          END IF;
        END $$""")
    for table, columns in (
        ("websites", "id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), user_id uuid"),
        ("delivery_orders", "id uuid PRIMARY KEY DEFAULT uuid_generate_v4()"),
    ):
        op.execute(f"""
            DO $$
            BEGIN
              IF to_regclass('public.{table}') IS NULL THEN
                CREATE TABLE public.{table} ({columns});
                COMMENT ON TABLE public.{table} IS '{MARKER}';
              END IF;
            END $$""")


def downgrade() -> None:
    data_loss.before_dropping_tables(
        op.get_context(), ("websites", "delivery_orders"), marker=MARKER
    )
    for table in ("delivery_orders", "websites"):
        op.execute(f"""
            DO $$
            BEGIN
              IF obj_description(to_regclass('public.{table}'), 'pg_class') = '{MARKER}' THEN
                DROP TABLE public.{table};
              END IF;
            END $$""")
    op.execute(prerequisites.drop_auth_role_sql(MARKER))
    op.execute(f"""
        DO $$
        BEGIN
          IF obj_description(to_regprocedure('public.update_updated_at_column()'), 'pg_proc')
             = '{MARKER}' THEN
            DROP FUNCTION public.update_updated_at_column();
          END IF;
          IF obj_description((SELECT oid FROM pg_publication
                              WHERE pubname = 'supabase_realtime'), 'pg_publication')
             = '{MARKER}' THEN
            DROP PUBLICATION supabase_realtime;
          END IF;
          IF obj_description(to_regprocedure('auth.uid()'), 'pg_proc') = '{MARKER}' THEN
            DROP FUNCTION auth.uid();
          END IF;
          IF obj_description((SELECT oid FROM pg_namespace WHERE nspname = 'auth'),
                             'pg_namespace') = '{MARKER}' THEN
            DROP SCHEMA auth;
          END IF;
        END $$""")
    for role in API_ROLES:
        revokes = "\n".join(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON {kind} FROM {role};"
            for _, kind in DEFAULT_PRIVILEGE_KINDS
        )
        op.execute(f"""
            DO $$
            BEGIN
              IF shobj_description((SELECT oid FROM pg_roles WHERE rolname = '{role}'),
                                   'pg_authid') = '{MARKER}' THEN
                {revokes}
                IF NOT EXISTS (SELECT 1 FROM pg_shdepend
                               WHERE refclassid = 'pg_authid'::regclass
                                 AND refobjid = '{role}'::regrole
                                 AND deptype <> 'p') THEN
                  DROP ROLE {role};
                ELSE
                  RAISE NOTICE 'role % kept: another database still uses it', '{role}';
                END IF;
              END IF;
            END $$""")
    op.execute(f"""
        DO $$
        BEGIN
          IF obj_description((SELECT oid FROM pg_extension WHERE extname = 'uuid-ossp'),
                             'pg_extension') = '{MARKER}' THEN
            DROP EXTENSION "uuid-ossp";
          END IF;
        END $$""")
