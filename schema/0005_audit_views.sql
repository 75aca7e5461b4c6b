-- Audit views over the event log, for operators and DBAs (and `imagen-actors audit`).
-- security_invoker (PostgreSQL 15+): a view reads the tables with the *caller's* rights and
-- RLS, so granting it to an API role later could never leak other owners' rows.

-- One row per event: where it sits in its job's stream and how long after the previous one.
CREATE VIEW imagen.job_timeline WITH (security_invoker = true) AS
SELECT e.job_id,
       e.seq,
       e.type,
       e.actor,
       e.worker_id,
       e.occurred_at,
       e.occurred_at - lag(e.occurred_at) OVER w AS since_previous,
       (extract(epoch FROM e.occurred_at - lag(e.occurred_at) OVER w) * 1000)::float8
           AS since_previous_ms,
       j.backend,
       e.data ->> 'error' AS error,
       -- GenerationFailed v1 stored only 'retryable'; read it the way events.upcast does.
       coalesce(e.data ->> 'error_class',
                CASE WHEN e.data ? 'retryable' THEN
                    CASE WHEN (e.data ->> 'retryable')::boolean THEN 'transient'
                         ELSE 'permanent' END
                END) AS error_class,
       e.data
FROM imagen.job_events e
JOIN imagen.jobs j ON j.id = e.job_id
WINDOW w AS (PARTITION BY e.job_id ORDER BY e.seq);

COMMENT ON VIEW imagen.job_timeline IS
    'One row per job event with the time since the job''s previous event (docs/audit.md)';

-- One row per job: how long each stage took, in milliseconds (NULL where it did not happen).
--   queue_wait_ms = first JobClaimed          - JobSubmitted
--   generation_ms = last GenerationSucceeded  - the GenerationStarted just before it
--   upload_ms     = JobCompleted              - last GenerationSucceeded
--   total_ms      = JobCompleted              - JobSubmitted
CREATE VIEW imagen.job_stage_latency WITH (security_invoker = true) AS
SELECT j.id AS job_id,
       j.backend,
       j.status,
       j.attempts,
       j.created_at,
       j.finished_at,
       sub.occurred_at AS submitted_at,
       claim.occurred_at AS first_claimed_at,
       gs.occurred_at AS generation_started_at,
       gok.occurred_at AS generation_succeeded_at,
       done.occurred_at AS completed_at,
       (extract(epoch FROM claim.occurred_at - sub.occurred_at) * 1000)::float8 AS queue_wait_ms,
       (extract(epoch FROM gok.occurred_at - gs.occurred_at) * 1000)::float8 AS generation_ms,
       (extract(epoch FROM done.occurred_at - gok.occurred_at) * 1000)::float8 AS upload_ms,
       (extract(epoch FROM done.occurred_at - sub.occurred_at) * 1000)::float8 AS total_ms
FROM imagen.jobs j
LEFT JOIN LATERAL (
    SELECT e.occurred_at FROM imagen.job_events e
    WHERE e.job_id = j.id AND e.type = 'JobSubmitted' ORDER BY e.seq LIMIT 1
) sub ON true
LEFT JOIN LATERAL (
    SELECT e.occurred_at FROM imagen.job_events e
    WHERE e.job_id = j.id AND e.type = 'JobClaimed' ORDER BY e.seq LIMIT 1
) claim ON true
LEFT JOIN LATERAL (
    SELECT e.seq, e.occurred_at FROM imagen.job_events e
    WHERE e.job_id = j.id AND e.type = 'GenerationSucceeded' ORDER BY e.seq DESC LIMIT 1
) gok ON true
LEFT JOIN LATERAL (
    SELECT e.occurred_at FROM imagen.job_events e
    WHERE e.job_id = j.id AND e.type = 'GenerationStarted' AND e.seq < gok.seq
    ORDER BY e.seq DESC LIMIT 1
) gs ON true
LEFT JOIN LATERAL (
    SELECT e.occurred_at FROM imagen.job_events e
    WHERE e.job_id = j.id AND e.type = 'JobCompleted' ORDER BY e.seq DESC LIMIT 1
) done ON true;

COMMENT ON VIEW imagen.job_stage_latency IS
    'One row per job with queue wait, generation, upload and total durations in ms (docs/audit.md)';

-- Operators' role only; the API roles read the tables under RLS, never these views.
REVOKE ALL ON imagen.job_timeline, imagen.job_stage_latency FROM PUBLIC, anon, authenticated;
GRANT SELECT ON imagen.job_timeline, imagen.job_stage_latency TO service_role;
