-- Operator queries whose cost does not grow with the history (issue 16 item 2).
--
-- 1. imagen.job_status_counts: jobs per status, kept by a trigger on the projection write.
--    `status` and every /metrics scrape read 64 small rows instead of counting imagen.jobs
--    (259 ms on a 1M-job history). One row per shard, each holding all five counts, and a
--    transaction only ever writes the shard of its own session (pg_backend_pid() % 64): one
--    counter row per transaction, so counter updates can never deadlock each other, and two
--    workers wait on the same counter row only when their sessions share a shard.
CREATE TABLE imagen.job_status_counts (
    shard     int PRIMARY KEY CHECK (shard BETWEEN 0 AND 63),
    pending   bigint NOT NULL DEFAULT 0,
    running   bigint NOT NULL DEFAULT 0,
    done      bigint NOT NULL DEFAULT 0,
    failed    bigint NOT NULL DEFAULT 0,
    cancelled bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE imagen.job_status_counts IS
    'Jobs per status, summed over 64 shards; kept by imagen.jobs_count_status (docs/schema.md)';

-- Recount from imagen.jobs (after a bulk load with triggers disabled, or to check the
-- counters): every count goes to shard 0, the other shards to zero.
CREATE FUNCTION imagen.job_status_counts_rebuild() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
    LOCK TABLE imagen.job_status_counts IN EXCLUSIVE MODE;
    DELETE FROM imagen.job_status_counts;
    INSERT INTO imagen.job_status_counts (shard) SELECT g FROM generate_series(0, 63) g;
    UPDATE imagen.job_status_counts c SET
        pending = n.pending, running = n.running, done = n.done, failed = n.failed,
        cancelled = n.cancelled
    FROM (SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                 count(*) FILTER (WHERE status = 'running') AS running,
                 count(*) FILTER (WHERE status = 'done') AS done,
                 count(*) FILTER (WHERE status = 'failed') AS failed,
                 count(*) FILTER (WHERE status = 'cancelled') AS cancelled
          FROM imagen.jobs) n
    WHERE c.shard = 0;
$$;
SELECT imagen.job_status_counts_rebuild();

CREATE FUNCTION imagen.jobs_count_status() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
DECLARE
    was text := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN OLD.status END;
    now_ text := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN NEW.status END;
BEGIN
    UPDATE imagen.job_status_counts SET
        pending = pending + (now_ IS NOT DISTINCT FROM 'pending')::int
                          - (was IS NOT DISTINCT FROM 'pending')::int,
        running = running + (now_ IS NOT DISTINCT FROM 'running')::int
                          - (was IS NOT DISTINCT FROM 'running')::int,
        done = done + (now_ IS NOT DISTINCT FROM 'done')::int
                    - (was IS NOT DISTINCT FROM 'done')::int,
        failed = failed + (now_ IS NOT DISTINCT FROM 'failed')::int
                        - (was IS NOT DISTINCT FROM 'failed')::int,
        cancelled = cancelled + (now_ IS NOT DISTINCT FROM 'cancelled')::int
                              - (was IS NOT DISTINCT FROM 'cancelled')::int
    WHERE shard = pg_backend_pid() % 64;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_count_status_insert_delete AFTER INSERT OR DELETE ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.jobs_count_status();
-- Transitions that keep the status (a lease extension, a start) pay nothing.
CREATE TRIGGER jobs_count_status_update AFTER UPDATE OF status ON imagen.jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION imagen.jobs_count_status();

REVOKE ALL ON imagen.job_status_counts FROM PUBLIC, anon, authenticated;
GRANT SELECT ON imagen.job_status_counts TO service_role;

-- 2. imagen.job_stage_latency_since(since): the stage durations of the jobs created since
--    `since`, read from that window's events in one pass (job_events_time) instead of five
--    index lookups per job over the whole history (56 s on 1M jobs). An event is never
--    older than its job's INSERT by more than one transaction (now() is the BEGIN of the
--    transaction that wrote it), so the window's events start an hour before `since`.
--    imagen.job_stage_latency keeps its columns and meaning: it is this function over all
--    time (`-infinity`); filter the function, not the view, for a window.
CREATE FUNCTION imagen.job_stage_latency_since(p_since timestamptz)
RETURNS TABLE (
    job_id uuid, backend text, status text, attempts int, created_at timestamptz,
    finished_at timestamptz, submitted_at timestamptz, first_claimed_at timestamptz,
    generation_started_at timestamptz, generation_succeeded_at timestamptz,
    completed_at timestamptz, queue_wait_ms float8, generation_ms float8, upload_ms float8,
    total_ms float8
)
LANGUAGE sql STABLE AS $$
    WITH ev AS (
        SELECT e.job_id, e.seq, e.type, e.occurred_at,
               max(e.seq) FILTER (WHERE e.type = 'GenerationSucceeded')
                   OVER (PARTITION BY e.job_id) AS gok_seq
        FROM imagen.job_events e
        WHERE e.occurred_at >= p_since - interval '1 hour'
          AND e.type IN ('JobSubmitted', 'JobClaimed', 'GenerationStarted',
                         'GenerationSucceeded', 'JobCompleted')
    ), per_job AS (
        SELECT ev.job_id,
               (array_agg(ev.occurred_at ORDER BY ev.seq)
                    FILTER (WHERE ev.type = 'JobSubmitted'))[1] AS sub,
               (array_agg(ev.occurred_at ORDER BY ev.seq)
                    FILTER (WHERE ev.type = 'JobClaimed'))[1] AS claim,
               (array_agg(ev.occurred_at ORDER BY ev.seq DESC)
                    FILTER (WHERE ev.type = 'GenerationStarted' AND ev.seq < ev.gok_seq))[1]
                   AS gs,
               (array_agg(ev.occurred_at ORDER BY ev.seq DESC)
                    FILTER (WHERE ev.type = 'GenerationSucceeded'))[1] AS gok,
               (array_agg(ev.occurred_at ORDER BY ev.seq DESC)
                    FILTER (WHERE ev.type = 'JobCompleted'))[1] AS done
        FROM ev GROUP BY ev.job_id
    )
    SELECT j.id, j.backend, j.status, j.attempts, j.created_at, j.finished_at,
           p.sub, p.claim, p.gs, p.gok, p.done,
           (extract(epoch FROM p.claim - p.sub) * 1000)::float8,
           (extract(epoch FROM p.gok - p.gs) * 1000)::float8,
           (extract(epoch FROM p.done - p.gok) * 1000)::float8,
           (extract(epoch FROM p.done - p.sub) * 1000)::float8
    FROM imagen.jobs j LEFT JOIN per_job p ON p.job_id = j.id
    WHERE j.created_at >= p_since
$$;
COMMENT ON FUNCTION imagen.job_stage_latency_since(timestamptz) IS
    'The imagen.job_stage_latency rows of the jobs created since the argument (docs/audit.md)';

CREATE OR REPLACE VIEW imagen.job_stage_latency WITH (security_invoker = true) AS
SELECT * FROM imagen.job_stage_latency_since('-infinity');

REVOKE ALL ON FUNCTION imagen.job_stage_latency_since(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION imagen.job_stage_latency_since(timestamptz) TO service_role;
