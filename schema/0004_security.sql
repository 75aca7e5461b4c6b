-- Owner-scoped row level security for the API roles. The worker connects as a role that
-- bypasses RLS (the table owner, a superuser, or service_role on Supabase).

ALTER TABLE imagen.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE imagen.job_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE imagen.images ENABLE ROW LEVEL SECURITY;
ALTER TABLE mai.imagen_usage ENABLE ROW LEVEL SECURITY;

REVOKE ALL ON ALL TABLES IN SCHEMA imagen FROM PUBLIC, anon, authenticated;
REVOKE ALL ON ALL TABLES IN SCHEMA mai FROM PUBLIC, anon, authenticated;

GRANT USAGE ON SCHEMA imagen TO authenticated, service_role;
GRANT USAGE ON SCHEMA mai TO service_role;

-- authenticated: read own rows; insert own pending jobs naming only request columns.
GRANT SELECT ON imagen.jobs, imagen.images, imagen.job_events TO authenticated;
GRANT INSERT (owner_user_id, prompt, backend, width, height, style, negative_prompt,
              seed, steps, opts)
    ON imagen.jobs TO authenticated;

CREATE POLICY jobs_select_own ON imagen.jobs
    FOR SELECT TO authenticated USING (owner_user_id = auth.uid());
CREATE POLICY jobs_insert_own_pending ON imagen.jobs
    FOR INSERT TO authenticated
    WITH CHECK (owner_user_id = auth.uid() AND status = 'pending');
CREATE POLICY images_select_own ON imagen.images
    FOR SELECT TO authenticated USING (owner_user_id = auth.uid());
CREATE POLICY job_events_select_own ON imagen.job_events
    FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM imagen.jobs j
                   WHERE j.id = job_events.job_id AND j.owner_user_id = auth.uid()));

-- service_role (Supabase's server key) works the whole queue.
GRANT ALL ON ALL TABLES IN SCHEMA imagen TO service_role;
GRANT ALL ON ALL TABLES IN SCHEMA mai TO service_role;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA imagen TO service_role;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA mai TO service_role;
