-- Job control for the owner UI and operators: cancel, retry, live progress, update
-- notifications. Every change goes through events in the job's stream (the functions below
-- append them and write the projection exactly as the fold does), so `replay --verify`
-- stays exact.

ALTER TABLE imagen.jobs
    ADD COLUMN progress_step int,
    ADD COLUMN progress_total int;

COMMENT ON COLUMN imagen.jobs.progress_step IS
    'the running attempt''s step k of progress_total (GenerationProgress, at most ~1/s)';

-- Who is calling, through a SECURITY DEFINER function: SET ROLE (PostgREST, Supabase) shows
-- in the `role` setting; a direct login has none and is its session user.
CREATE FUNCTION imagen.caller_role() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN current_setting('role') = 'none' THEN session_user::text
                ELSE current_setting('role') END
$$;

-- Append events to a job and write its projection columns: the one place SQL functions
-- advance a job (the worker does the same from Python in append_and_project). The hash
-- links are filled by the job_events_link trigger (0009).
CREATE FUNCTION imagen.append_job_event(
    p_job imagen.jobs, p_type text, p_data jsonb, p_actor text, p_at timestamptz
) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
BEGIN
    INSERT INTO imagen.job_events (job_id, seq, type, data, actor, worker_id, occurred_at)
    VALUES (p_job.id, p_job.version + 1, p_type, p_data, p_actor, NULL, p_at);
    RETURN p_job.version + 1;
END
$$;
REVOKE ALL ON FUNCTION imagen.append_job_event(imagen.jobs, text, jsonb, text, timestamptz)
    FROM PUBLIC;

-- cancel_job: pending -> cancelled at once (JobCancelRequested + JobCancelled); running ->
-- JobCancelRequested and a NOTIFY on imagen_job_control for the worker holding it, which
-- stops the work and records JobCancelled; terminal -> nothing (a NOTICE says so).
-- `authenticated` may cancel only its own jobs. Returns the job's status after the call.
CREATE FUNCTION imagen.cancel_job(job_id uuid, reason text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
DECLARE
    j imagen.jobs;
    why text := coalesce(nullif(btrim(reason), ''), 'cancel requested');
    who text := imagen.caller_role();
    at timestamptz := now();
BEGIN
    IF length(why) > 500 THEN
        RAISE EXCEPTION 'cancel reason is % characters long', length(why)
            USING HINT = 'give a reason of at most 500 characters', ERRCODE = '22001';
    END IF;
    SELECT * INTO j FROM imagen.jobs WHERE id = cancel_job.job_id FOR UPDATE;
    IF NOT FOUND OR (who IN ('authenticated', 'anon')
                     AND j.owner_user_id IS DISTINCT FROM auth.uid()) THEN
        -- The same answer for another owner's job as for none: ids are not disclosed.
        RAISE EXCEPTION 'no job % of yours', cancel_job.job_id
            USING HINT = 'check the job id (imagen.jobs.id)', ERRCODE = 'P0002';
    END IF;
    IF j.status IN ('done', 'failed', 'cancelled') THEN
        RAISE NOTICE 'job % is already %: nothing to cancel', j.id, j.status;
        RETURN j.status;
    END IF;
    PERFORM imagen.append_job_event(
        j, 'JobCancelRequested', jsonb_build_object('schema_version', 1, 'reason', why),
        'cancel_job', at);
    j.version := j.version + 1;
    IF j.status = 'pending' THEN
        PERFORM imagen.append_job_event(
            j, 'JobCancelled', jsonb_build_object('schema_version', 1, 'reason', why),
            'cancel_job', at);
        UPDATE imagen.jobs SET status = 'cancelled', error = why, lease_expires_at = NULL,
            finished_at = at, updated_at = at, version = j.version + 1
        WHERE id = j.id;
        RETURN 'cancelled';
    END IF;
    UPDATE imagen.jobs SET updated_at = at, version = j.version WHERE id = j.id;
    PERFORM pg_notify('imagen_job_control',
                      json_build_object('job_id', j.id, 'action', 'cancel')::text);
    RETURN 'running';
END
$$;

-- retry_job: a failed or cancelled job back to pending with a fresh attempt budget, in the
-- same stream (JobRetried). `authenticated` may retry only its own jobs.
CREATE FUNCTION imagen.retry_job(job_id uuid) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
DECLARE
    j imagen.jobs;
    who text := imagen.caller_role();
    at timestamptz := now();
BEGIN
    SELECT * INTO j FROM imagen.jobs WHERE id = retry_job.job_id FOR UPDATE;
    IF NOT FOUND OR (who IN ('authenticated', 'anon')
                     AND j.owner_user_id IS DISTINCT FROM auth.uid()) THEN
        RAISE EXCEPTION 'no job % of yours', retry_job.job_id
            USING HINT = 'check the job id (imagen.jobs.id)', ERRCODE = 'P0002';
    END IF;
    IF j.status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'job % is %: only a failed or cancelled job can be retried',
            j.id, j.status
            USING HINT = 'wait until it ends, or cancel it first', ERRCODE = '55000';
    END IF;
    PERFORM imagen.append_job_event(
        j, 'JobRetried', jsonb_build_object('schema_version', 1, 'reason', 'retried'),
        'retry_job', at);
    UPDATE imagen.jobs SET status = 'pending', attempts = 0, image_id = NULL, error = NULL,
        worker_id = NULL, lease_expires_at = NULL, started_at = NULL, finished_at = NULL,
        run_after = NULL, progress_step = NULL, progress_total = NULL, updated_at = at,
        version = j.version + 1
    WHERE id = j.id;
    -- The retry may generate and store again: its earlier keys are live again (no
    -- tombstone re-check may delete what it writes), and its old leftovers were discarded.
    UPDATE imagen.storage_keys SET discarded_at = NULL, checked_at = NULL
    WHERE storage_keys.job_id = j.id;
    PERFORM pg_notify('imagen_jobs', j.id::text);
    RETURN 'pending';
END
$$;

REVOKE ALL ON FUNCTION imagen.cancel_job(uuid, text), imagen.retry_job(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION imagen.cancel_job(uuid, text), imagen.retry_job(uuid)
    TO authenticated, service_role;
DO $grant$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagen_worker') THEN
        GRANT EXECUTE ON FUNCTION imagen.cancel_job(uuid, text), imagen.retry_job(uuid)
            TO imagen_worker;
    END IF;
END
$grant$;

-- Every committed status change (and progress step) is announced on imagen_job_updates
-- with the job id, owner, status, version and progress: a server-side consumer (the
-- dashboard) need not poll. NOTIFY is delivered at commit, so nothing uncommitted shows.
CREATE FUNCTION imagen.jobs_announce_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status
       OR OLD.progress_step IS DISTINCT FROM NEW.progress_step THEN
        PERFORM pg_notify('imagen_job_updates', json_build_object(
            'id', NEW.id, 'owner_user_id', NEW.owner_user_id, 'status', NEW.status,
            'version', NEW.version, 'progress_step', NEW.progress_step,
            'progress_total', NEW.progress_total)::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_announce_update AFTER INSERT OR UPDATE ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.jobs_announce_update();

-- The worker's least-privilege role (0011) writes the new projection columns too.
DO $grant$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagen_worker') THEN
        GRANT UPDATE (progress_step, progress_total) ON imagen.jobs TO imagen_worker;
    END IF;
END
$grant$;

-- ... and reads the maintained status counts (0014) for `status` and /metrics.
DO $grant$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagen_worker') THEN
        GRANT SELECT ON imagen.job_status_counts TO imagen_worker;
    END IF;
END
$grant$;
