-- Run against PRODUCTION (read-only: SELECTs only), in psql's unaligned tuples-only mode:
--
--   psql "$PRODUCTION_URL" -X -At -f docs/takeover/platform.sql > platform.sql
--
-- Its output is SQL to run FIRST in an empty local database
-- (docs/taking-over-production.md, step 3): what the chat tables' dump refers to and
-- pg_dump -t does not carry, as production has it:
-- - the API roles (created where absent: roles are cluster-wide);
-- - schemas extensions and auth, extension uuid-ossp in its schema, the search_path of
--   the migration role (below) as the database's (Supabase sets it on the role and
--   resolves an unqualified uuid_generate_v4() through it);
-- - auth.uid() and auth.role() (the policies call them), copied from production;
-- - every function of schema public that a trigger of the five tables executes, and
--   update_updated_at_column() (004 uses it), copied from production;
-- - the publication supabase_realtime (its membership comes after the tables: access.sql);
-- - the default privileges the migration role has in schema public (for the tables a
--   revision creates), towards the API roles and PUBLIC; the migration role is the user
--   running this file, unless psql is given -v migration_role=<role> (the pull request
--   job of docs/deploying.md reads production as a read-only role, not as the deploy's);
-- - an empty stand-in (its key columns only) for every table outside the five that one
--   of their foreign keys references (auth.users, riders, ...), so that the dump loads.
\if :{?migration_role}
\else
\set migration_role :USER
\endif
SELECT 'SET check_function_bodies = off;';
SELECT format(
  'DO $do$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %L) THEN '
  'CREATE ROLE %I NOLOGIN NOINHERIT%s; END IF; END $do$;',
  rolname, rolname, CASE WHEN rolbypassrls THEN ' BYPASSRLS' ELSE '' END)
FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY rolname;
SELECT format('CREATE SCHEMA IF NOT EXISTS %I;', nspname)
FROM pg_namespace WHERE nspname IN ('extensions', 'auth') ORDER BY nspname;
SELECT format('CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA %I;', n.nspname)
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'uuid-ossp';
SELECT format(
  'DO $do$ BEGIN EXECUTE format(%L, current_database()); END $do$;',
  'ALTER DATABASE %I SET search_path = ' || coalesce(
    (SELECT substr(c, length('search_path=') + 1)
     FROM pg_db_role_setting s CROSS JOIN LATERAL unnest(s.setconfig) c
     WHERE c LIKE 'search_path=%'
       AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = :'migration_role'))
       AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
     ORDER BY s.setrole <> 0 DESC, s.setdatabase <> 0 DESC LIMIT 1),
    current_setting('search_path')));
SELECT format('GRANT USAGE ON SCHEMA %I TO anon, authenticated, service_role;', nspname)
FROM pg_namespace WHERE nspname IN ('extensions', 'auth', 'public') ORDER BY nspname;
SELECT pg_get_functiondef(p.oid) || ';'
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'auth' AND p.proname IN ('uid', 'role') AND p.pronargs = 0;
SELECT pg_get_functiondef(p.oid) || ';'
FROM pg_proc p
WHERE p.oid IN (
  SELECT t.tgfoid FROM pg_trigger t
  WHERE NOT t.tgisinternal AND t.tgrelid IN (
    'public.websites'::regclass, 'public.delivery_orders'::regclass,
    to_regclass('public.chat_conversations'), to_regclass('public.chat_messages'),
    to_regclass('public.chat_participants'))
  UNION SELECT to_regprocedure('public.update_updated_at_column()'))
AND p.pronamespace = 'public'::regnamespace;
SELECT 'CREATE PUBLICATION supabase_realtime;'
FROM pg_publication WHERE pubname = 'supabase_realtime';
SELECT format('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT %s ON %s TO %s;',
  string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type),
  CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' ELSE 'FUNCTIONS' END,
  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END)
FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE d.defaclnamespace = 'public'::regnamespace AND d.defaclobjtype IN ('r', 'S', 'f')
  AND d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = :'migration_role')
  AND (a.grantee = 0 OR r.rolname IN ('anon', 'authenticated', 'service_role'))
GROUP BY d.defaclobjtype, a.grantee, r.rolname
ORDER BY d.defaclobjtype, r.rolname;
SELECT format('CREATE SCHEMA IF NOT EXISTS %I; CREATE TABLE IF NOT EXISTS %I.%I (%s, UNIQUE (%s));',
  n.nspname, n.nspname, c.relname,
  string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY k.ord),
  string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord))
FROM pg_constraint f
CROSS JOIN LATERAL unnest(f.confkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_class c ON c.oid = f.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.attnum
WHERE f.contype = 'f'
  AND f.conrelid IN ('public.websites'::regclass, 'public.delivery_orders'::regclass,
    to_regclass('public.chat_conversations'), to_regclass('public.chat_messages'),
    to_regclass('public.chat_participants'))
  AND NOT (n.nspname = 'public' AND c.relname IN ('websites', 'delivery_orders',
    'chat_conversations', 'chat_messages', 'chat_participants'))
GROUP BY f.oid, n.nspname, c.relname;
