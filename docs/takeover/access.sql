-- Run against PRODUCTION (read-only: SELECTs only), in psql's unaligned tuples-only mode:
--
--   psql "$PRODUCTION_URL" -X -At -f docs/takeover/access.sql > access.sql
--
-- Its output is SQL to run LAST in the local database, after the tables' dump
-- (docs/taking-over-production.md, step 3): the table privileges of the API roles and
-- PUBLIC on the five tables (the dump is taken with --no-privileges, so that a grant to
-- a role that exists only on Supabase cannot stop the load), and which of them are
-- members of the publication supabase_realtime (pg_dump -t leaves membership out).
SELECT format('REVOKE ALL ON public.%I FROM anon, authenticated, service_role, PUBLIC;', c.relname)
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
  AND c.relname IN ('websites', 'delivery_orders', 'chat_conversations', 'chat_messages',
                    'chat_participants')
ORDER BY c.relname;
SELECT format('GRANT %s ON public.%I TO %s;',
  string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type), c.relname,
  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END)
FROM pg_class c
CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
  AND c.relname IN ('websites', 'delivery_orders', 'chat_conversations', 'chat_messages',
                    'chat_participants')
  AND (a.grantee = 0 OR r.rolname IN ('anon', 'authenticated', 'service_role'))
GROUP BY c.relname, a.grantee, r.rolname
ORDER BY c.relname, r.rolname;
SELECT format('ALTER PUBLICATION supabase_realtime ADD TABLE %I.%I;', schemaname, tablename)
FROM pg_publication_tables
WHERE pubname = 'supabase_realtime' AND schemaname = 'public'
  AND tablename IN ('websites', 'delivery_orders', 'chat_conversations', 'chat_messages',
                    'chat_participants')
ORDER BY tablename;
