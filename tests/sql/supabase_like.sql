-- Prepares a plain PostgreSQL database so that it looks like a Supabase project
-- as far as the chat migrations (004, 008) and the hand-run SQL after them (049
-- calls auth.role()) are concerned. Test support only.
-- Every statement is idempotent: running this file twice is harmless.
-- Roles are cluster-wide, so they are created only when absent.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
END
$$;

-- uuid-ossp lives in schema "extensions", which is on the search_path.
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA extensions;
GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role;

-- As on Supabase, the setting is on the roles (cluster-wide), so databases cloned
-- from a template see it too (ALTER DATABASE settings are not copied by a clone).
DO $$
BEGIN
    EXECUTE format('ALTER ROLE %I SET search_path = "$user", public, extensions',
                   current_user);
    ALTER ROLE anon SET search_path = "$user", public, extensions;
    ALTER ROLE authenticated SET search_path = "$user", public, extensions;
    ALTER ROLE service_role SET search_path = "$user", public, extensions;
END
$$;
SET search_path = "$user", public, extensions;

-- auth.uid(): the "sub" claim of the request's JWT.
CREATE SCHEMA IF NOT EXISTS auth;
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE sql STABLE
AS $$
    select coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$;
-- auth.role(): the "role" claim of the request's JWT, as Supabase defines it (the
-- hand-run 049's policies call it).
CREATE OR REPLACE FUNCTION auth.role() RETURNS text
    LANGUAGE sql STABLE
AS $$
    select coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
$$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.role() TO anon, authenticated, service_role;

-- Realtime publication, empty.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
        CREATE PUBLICATION supabase_realtime;
    END IF;
END
$$;

-- The platform's default privileges for the role that runs the migrations.
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
DO $$
BEGIN
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
                   'GRANT ALL ON TABLES TO anon, authenticated, service_role', current_user);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
                   'GRANT ALL ON SEQUENCES TO anon, authenticated, service_role', current_user);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public '
                   'GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role', current_user);
END
$$;

-- Objects of earlier migrations that 004 relies on.
CREATE OR REPLACE FUNCTION public.update_updated_at_column() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE IF NOT EXISTS public.websites (
    id uuid PRIMARY KEY DEFAULT extensions.uuid_generate_v4(),
    user_id uuid,
    name text
);

CREATE TABLE IF NOT EXISTS public.delivery_orders (
    id uuid PRIMARY KEY DEFAULT extensions.uuid_generate_v4(),
    website_id uuid REFERENCES public.websites(id)
);
