-- imagen.job_stages (schema 0018) in plpgsql instead of SQL, same query and result (issue 16
-- item 5: the worker's cost per job). A SQL function with a SET clause is never inlined, and
-- Postgres plans a non-inlined SQL function's query again on every call; the trigger that
-- keeps imagen.job_stage_times calls it once for every job that ends, so that planning was
-- 0.8 ms of server CPU a job, the largest single piece of the hot path's trigger work.
-- plpgsql keeps the plan for the session: 0.2 ms a call. Grants stay (CREATE OR REPLACE).
CREATE OR REPLACE FUNCTION imagen.job_stages(p_job_id uuid)
RETURNS TABLE (
    submitted_at timestamptz, first_claimed_at timestamptz,
    generation_started_at timestamptz, generation_succeeded_at timestamptz,
    completed_at timestamptz, queue_wait_ms float8, generation_ms float8, upload_ms float8,
    total_ms float8
)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, imagen AS $$
BEGIN
    RETURN QUERY
    WITH ev AS (
        SELECT e.seq, e.type, e.occurred_at FROM imagen.job_events e
        WHERE e.job_id = p_job_id
          AND e.type IN ('JobSubmitted', 'JobClaimed', 'GenerationStarted',
                         'GenerationSucceeded', 'JobCompleted')
    ), t AS (
        SELECT (array_agg(ev.occurred_at ORDER BY ev.seq)
                    FILTER (WHERE ev.type = 'JobSubmitted'))[1] AS sub,
               (array_agg(ev.occurred_at ORDER BY ev.seq)
                    FILTER (WHERE ev.type = 'JobClaimed'))[1] AS claim,
               (array_agg(ev.occurred_at ORDER BY ev.seq DESC)
                    FILTER (WHERE ev.type = 'GenerationStarted'
                              AND ev.seq < (SELECT max(x.seq) FROM ev x
                                            WHERE x.type = 'GenerationSucceeded')))[1] AS gs,
               (array_agg(ev.occurred_at ORDER BY ev.seq DESC)
                    FILTER (WHERE ev.type = 'GenerationSucceeded'))[1] AS gok,
               (array_agg(ev.occurred_at ORDER BY ev.seq DESC)
                    FILTER (WHERE ev.type = 'JobCompleted'))[1] AS done
        FROM ev
    )
    SELECT t.sub, t.claim, t.gs, t.gok, t.done,
           (extract(epoch FROM t.claim - t.sub) * 1000)::float8,
           (extract(epoch FROM t.gok - t.gs) * 1000)::float8,
           (extract(epoch FROM t.done - t.gok) * 1000)::float8,
           (extract(epoch FROM t.done - t.sub) * 1000)::float8
    FROM t;
END
$$;
