-- Compatibility layer: the same migrations run on vanilla Postgres and on Supabase.
-- On Supabase the auth schema, auth.uid() and the three API roles already exist and
-- belong to Supabase; we create each one only where it is missing and never replace it.

CREATE SCHEMA IF NOT EXISTS auth;

DO $compat$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        -- Supabase's service_role bypasses RLS; mirror that so the worker role behaves the same.
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
END
$compat$;

-- auth.uid() exactly as Supabase defines it: the JWT subject from the legacy per-claim GUC,
-- else from the JSON claims GUC that PostgREST sets per request.
DO $compat$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'auth' AND p.proname = 'uid'
    ) THEN
        EXECUTE $fn$
            CREATE FUNCTION auth.uid() RETURNS uuid
            LANGUAGE sql STABLE
            AS $body$
                SELECT coalesce(
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
                )::uuid
            $body$
        $fn$;
    END IF;
END
$compat$;

GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
