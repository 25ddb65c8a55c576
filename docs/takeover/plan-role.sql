-- Run against PRODUCTION once, as the role that owns the chat tables (postgres on
-- Supabase), in psql or in the dashboard's SQL editor:
--
--   psql "$PRODUCTION_URL" -X -q -v ON_ERROR_STOP=1 -f docs/takeover/plan-role.sql
--
-- It creates chatdb_plan, the login of the pull request job (docs/deploying.md, "The
-- GitHub workflow"), which exports the chat schema as docs/taking-over-production.md
-- step 1 does (pg_dump --schema-only of the five tables, platform.sql, access.sql) and
-- does nothing else. Run again, it changes nothing, or grants what a new table needs.
--
-- - LOGIN, without a password: give it one in psql with \password chatdb_plan (psql
--   sends only its SCRAM hash, so the password is in no file, history or server log).
-- - Read-only by default (default_transaction_read_only); statement_timeout 1min and
--   lock_timeout 5s, so that its queries never wait long behind a deploy's locks (the
--   job's pg_dump sets its own: --lock-wait-timeout=5s).
-- - CONNECT on the database, USAGE on schema public: to reach the tables.
-- - SELECT on the five tables that exist: pg_dump locks every table it dumps in ACCESS
--   SHARE mode, which PostgreSQL allows only with SELECT; --schema-only reads no row.
--   It is not the tables' owner and has no BYPASSRLS, so row level security applies to
--   it: a query of its own sees only the rows that a policy opens to every role
--   (PUBLIC); the policies for anon, authenticated and service_role do not apply to it.
-- Nothing more: the catalogs that pg_dump and the two queries read (pg_class,
-- pg_policy, pg_trigger, pg_proc, pg_default_acl, pg_publication_rel, ...) are readable
-- by every role, and pg_get_functiondef needs no privilege.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'chatdb_plan') THEN
    CREATE ROLE chatdb_plan LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
      NOREPLICATION NOBYPASSRLS;
  END IF;
END $$;
ALTER ROLE chatdb_plan SET default_transaction_read_only = on;
ALTER ROLE chatdb_plan SET statement_timeout = '1min';
ALTER ROLE chatdb_plan SET lock_timeout = '5s';
DO $$
DECLARE
  t text;
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO chatdb_plan', current_database());
  GRANT USAGE ON SCHEMA public TO chatdb_plan;
  FOR t IN
    SELECT c.relname FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
      AND c.relname IN ('websites', 'delivery_orders', 'chat_conversations',
                        'chat_messages', 'chat_participants')
  LOOP
    EXECUTE format('GRANT SELECT ON public.%I TO chatdb_plan', t);
  END LOOP;
END $$;
