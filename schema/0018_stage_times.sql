-- Stage times kept as jobs end, so `audit latency` reads one narrow row per job instead of
-- re-aggregating the window's events (issue 16 item 2: 2.7 s for 7 days of a 1M-job history,
-- the target 2 s).
--
-- 1. imagen.job_stages(job_id): one job's stage times from its own stream (job_events
--    (job_id, seq) index, a handful of rows), by the rules of imagen.job_stage_latency_since
--    (schema 0014): submitted = the first JobSubmitted, first claim = the first JobClaimed,
--    generation = the last GenerationStarted before the last GenerationSucceeded, completed
--    = the last JobCompleted. The one definition of a job's stages from here on.
-- 2. imagen.job_stage_times: that row for every ended job (done, failed, cancelled), written
--    by a trigger on the projection write that ends the job and removed when a retry
--    reopens it; archived and forgotten jobs take theirs with them (ON DELETE CASCADE).
--    Jobs still open are computed live by `audit latency` with job_stages (their status
--    indexes: few rows).
CREATE FUNCTION imagen.job_stages(p_job_id uuid)
RETURNS TABLE (
    submitted_at timestamptz, first_claimed_at timestamptz,
    generation_started_at timestamptz, generation_succeeded_at timestamptz,
    completed_at timestamptz, queue_wait_ms float8, generation_ms float8, upload_ms float8,
    total_ms float8
)
LANGUAGE sql STABLE SET search_path = pg_catalog, imagen AS $$
    WITH ev AS (
        SELECT e.seq, e.type, e.occurred_at FROM imagen.job_events e
        WHERE e.job_id = p_job_id
          AND e.type IN ('JobSubmitted', 'JobClaimed', 'GenerationStarted',
                         'GenerationSucceeded', 'JobCompleted')
    ), t AS (
        SELECT (array_agg(occurred_at ORDER BY seq) FILTER (WHERE type = 'JobSubmitted'))[1]
                   AS sub,
               (array_agg(occurred_at ORDER BY seq) FILTER (WHERE type = 'JobClaimed'))[1]
                   AS claim,
               (array_agg(occurred_at ORDER BY seq DESC)
                    FILTER (WHERE type = 'GenerationStarted'
                              AND seq < (SELECT max(seq) FROM ev
                                         WHERE type = 'GenerationSucceeded')))[1] AS gs,
               (array_agg(occurred_at ORDER BY seq DESC)
                    FILTER (WHERE type = 'GenerationSucceeded'))[1] AS gok,
               (array_agg(occurred_at ORDER BY seq DESC)
                    FILTER (WHERE type = 'JobCompleted'))[1] AS done
        FROM ev
    )
    SELECT sub, claim, gs, gok, done,
           (extract(epoch FROM claim - sub) * 1000)::float8,
           (extract(epoch FROM gok - gs) * 1000)::float8,
           (extract(epoch FROM done - gok) * 1000)::float8,
           (extract(epoch FROM done - sub) * 1000)::float8
    FROM t
$$;

CREATE TABLE imagen.job_stage_times (
    job_id                  uuid PRIMARY KEY REFERENCES imagen.jobs (id) ON DELETE CASCADE,
    backend                 text NOT NULL,
    status                  text NOT NULL,
    attempts                int NOT NULL,
    created_at              timestamptz NOT NULL,
    finished_at             timestamptz,
    submitted_at            timestamptz,
    first_claimed_at        timestamptz,
    generation_started_at   timestamptz,
    generation_succeeded_at timestamptz,
    completed_at            timestamptz,
    queue_wait_ms           float8,
    generation_ms           float8,
    upload_ms               float8,
    total_ms                float8
);
CREATE INDEX job_stage_times_created ON imagen.job_stage_times (created_at);
COMMENT ON TABLE imagen.job_stage_times IS
    'Stage times of every ended job (imagen.job_stages), kept by imagen.jobs_keep_stage_times '
    'for audit latency (docs/schema.md)';

CREATE FUNCTION imagen.jobs_keep_stage_times() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
BEGIN
    IF NEW.status IN ('done', 'failed', 'cancelled') THEN
        INSERT INTO imagen.job_stage_times
        SELECT NEW.id, NEW.backend, NEW.status, NEW.attempts, NEW.created_at, NEW.finished_at,
               s.*
        FROM imagen.job_stages(NEW.id) s
        ON CONFLICT (job_id) DO UPDATE SET
            backend = EXCLUDED.backend, status = EXCLUDED.status,
            attempts = EXCLUDED.attempts, created_at = EXCLUDED.created_at,
            finished_at = EXCLUDED.finished_at, submitted_at = EXCLUDED.submitted_at,
            first_claimed_at = EXCLUDED.first_claimed_at,
            generation_started_at = EXCLUDED.generation_started_at,
            generation_succeeded_at = EXCLUDED.generation_succeeded_at,
            completed_at = EXCLUDED.completed_at, queue_wait_ms = EXCLUDED.queue_wait_ms,
            generation_ms = EXCLUDED.generation_ms, upload_ms = EXCLUDED.upload_ms,
            total_ms = EXCLUDED.total_ms;
    ELSE
        -- Reopened (imagen.retry_job): open jobs are computed live until they end again.
        DELETE FROM imagen.job_stage_times WHERE job_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
-- An AFTER trigger of the statement that appends the ending event and writes the projection
-- (one statement: db/sql append_and_project), so job_stages sees that event. Transitions
-- between open states pay nothing.
CREATE TRIGGER jobs_keep_stage_times AFTER UPDATE OF status ON imagen.jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND (NEW.status IN ('done', 'failed', 'cancelled')
               OR OLD.status IN ('done', 'failed', 'cancelled')))
    EXECUTE FUNCTION imagen.jobs_keep_stage_times();

-- Recompute every ended job's row (after a bulk load with triggers disabled, or to check
-- the table); also how this migration fills it for the jobs that ended before it.
CREATE FUNCTION imagen.job_stage_times_rebuild() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
    LOCK TABLE imagen.job_stage_times IN EXCLUSIVE MODE;
    DELETE FROM imagen.job_stage_times;
    INSERT INTO imagen.job_stage_times
    SELECT l.job_id, l.backend, l.status, l.attempts, l.created_at, l.finished_at,
           l.submitted_at, l.first_claimed_at, l.generation_started_at,
           l.generation_succeeded_at, l.completed_at, l.queue_wait_ms, l.generation_ms,
           l.upload_ms, l.total_ms
    FROM imagen.job_stage_latency_since('-infinity') l
    WHERE l.status IN ('done', 'failed', 'cancelled');
$$;
SELECT imagen.job_stage_times_rebuild();
REVOKE ALL ON FUNCTION imagen.job_stage_times_rebuild() FROM PUBLIC;

REVOKE ALL ON imagen.job_stage_times FROM PUBLIC, anon, authenticated;
GRANT SELECT ON imagen.job_stage_times TO service_role;
REVOKE ALL ON FUNCTION imagen.job_stages(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION imagen.job_stages(uuid) TO service_role;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagen_worker') THEN
        GRANT SELECT ON imagen.job_stage_times TO imagen_worker;
        GRANT EXECUTE ON FUNCTION imagen.job_stages(uuid) TO imagen_worker;
    END IF;
END
$$;
