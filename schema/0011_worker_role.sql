-- The worker's own least-privilege role (issue 15 item 1). Until now the worker needed a role
-- that bypasses RLS: the table owner or a superuser (on Supabase's PostgreSQL 15 `postgres`
-- cannot create a BYPASSRLS role, and BYPASSRLS is not inherited through `GRANT service_role`).
-- imagen_worker gets exactly what the worker (and the CLI commands an operator runs with the
-- worker's DSN: status, audit, replay, usage, submit, generate) does, plus one explicit policy
-- per RLS table saying "every row", so it needs no BYPASSRLS. It owns nothing and cannot
-- create anything: the worker checks with a read that the migrations are current.
--
-- The role is NOLOGIN. Log in as it with `ALTER ROLE imagen_worker LOGIN PASSWORD '...'`, or
-- (better: one login per host) `CREATE ROLE imagen_worker_gpu1 LOGIN PASSWORD '...' IN ROLE
-- imagen_worker`. docs/setup-worker.md has the steps.
--
-- A later migration adding a table, column or function the worker uses grants it here too.

DO $role$
BEGIN
    -- Cluster-wide, like the API roles of 0001: create it only where it is missing.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagen_worker') THEN
        CREATE ROLE imagen_worker NOLOGIN NOINHERIT;
    END IF;
END
$role$;

GRANT USAGE ON SCHEMA imagen, mai TO imagen_worker;

-- The migrations check at start-up (a read; the worker never creates the table).
GRANT SELECT ON imagen.schema_migrations TO imagen_worker;

-- The queue: read everything, insert a job only through its request columns (submit,
-- generate; the insert triggers refuse worker columns for every role), and update only the
-- columns a transition writes. FOR UPDATE / SKIP LOCKED needs UPDATE on some column: it has.
GRANT SELECT ON imagen.jobs TO imagen_worker;
GRANT INSERT (owner_user_id, prompt, backend, width, height, style, negative_prompt,
              seed, steps, opts, max_attempts)
    ON imagen.jobs TO imagen_worker;
GRANT UPDATE (status, image_id, error, attempts, max_attempts, worker_id, lease_expires_at,
              updated_at, started_at, finished_at, version, run_after)
    ON imagen.jobs TO imagen_worker;

-- The log: append and read, never UPDATE/DELETE/TRUNCATE (the trigger refuses those for
-- every role anyway; this role has not even the privilege).
GRANT SELECT, INSERT ON imagen.job_events TO imagen_worker;

-- Completion is idempotent: ON CONFLICT DO NOTHING needs INSERT only.
GRANT SELECT, INSERT ON imagen.images TO imagen_worker;

-- Key reservations: ON CONFLICT DO UPDATE SET bucket, and the janitor's tombstone columns.
GRANT SELECT, INSERT ON imagen.storage_keys TO imagen_worker;
GRANT UPDATE (bucket, discarded_at, checked_at) ON imagen.storage_keys TO imagen_worker;

-- The worker registry heartbeat (an upsert).
GRANT SELECT, INSERT ON imagen.workers TO imagen_worker;
GRANT UPDATE (backends, hostname, pid, last_seen_at, started_at) ON imagen.workers
    TO imagen_worker;

-- Usage rows (best effort; ON CONFLICT (job_id) DO UPDATE SET job_id).
GRANT SELECT, INSERT ON mai.imagen_usage TO imagen_worker;
GRANT UPDATE (job_id) ON mai.imagen_usage TO imagen_worker;

-- Identity columns need no sequence privilege; granted so a future serial column works too.
GRANT USAGE ON ALL SEQUENCES IN SCHEMA imagen TO imagen_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA mai TO imagen_worker;

-- The operators' audit views (security_invoker: they read with this role's rights).
GRANT SELECT ON imagen.job_timeline, imagen.job_stage_latency TO imagen_worker;

-- The functions the worker's statements call (the event hash chain) and those the insert
-- door's trigger calls as the inserting role.
GRANT EXECUTE ON FUNCTION
    imagen.job_event_canonical(uuid, int, text, text, text, timestamptz, jsonb),
    imagen.job_event_hash(bytea, uuid, int, text, text, text, timestamptz, jsonb),
    imagen.jobs_request_quote(text),
    imagen.jobs_control_char_problem(text, text),
    imagen.jobs_control_char_fix(text)
    TO imagen_worker;

-- Explicit policies instead of BYPASSRLS: every row, for what the grants above allow.
CREATE POLICY jobs_worker ON imagen.jobs
    FOR ALL TO imagen_worker USING (true) WITH CHECK (true);
CREATE POLICY job_events_worker ON imagen.job_events
    FOR ALL TO imagen_worker USING (true) WITH CHECK (true);
CREATE POLICY images_worker ON imagen.images
    FOR ALL TO imagen_worker USING (true) WITH CHECK (true);
CREATE POLICY storage_keys_worker ON imagen.storage_keys
    FOR ALL TO imagen_worker USING (true) WITH CHECK (true);
CREATE POLICY workers_worker ON imagen.workers
    FOR ALL TO imagen_worker USING (true) WITH CHECK (true);
CREATE POLICY imagen_usage_worker ON mai.imagen_usage
    FOR ALL TO imagen_worker USING (true) WITH CHECK (true);
