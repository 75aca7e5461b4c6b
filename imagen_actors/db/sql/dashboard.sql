-- Dashboard queries (`imagen-actors serve`). Read-only. Each one stays on an index and is
-- bounded (LIMIT or a time window), so the pages stay fast on a large history; the index a
-- query relies on is named above it (docs/operating.md, "The dashboard").

-- name: dash_queue_live
-- Pending and running jobs per backend: jobs_pending_by_age and jobs_running_by_lease are
-- partial indexes on exactly these rows, so this never reads a finished job.
SELECT 'pending' AS status, backend, count(*)::int AS n
FROM imagen.jobs WHERE status = 'pending' GROUP BY backend
UNION ALL
SELECT 'running' AS status, backend, count(*)::int AS n
FROM imagen.jobs WHERE status = 'running' GROUP BY backend
ORDER BY status, backend;

-- name: dash_queue_finished
-- Jobs that ended since $1, per outcome and backend: job_events_type_time, then one jobs
-- primary-key probe per event for its backend (a join would hash the whole jobs table).
SELECT CASE e.type WHEN 'JobCompleted' THEN 'done'
                   WHEN 'JobFailed' THEN 'failed'
                   ELSE 'cancelled' END AS status,
       (SELECT j.backend FROM imagen.jobs j WHERE j.id = e.job_id) AS backend,
       count(DISTINCT e.job_id)::int AS n
FROM imagen.job_events e
WHERE e.type IN ('JobCompleted', 'JobFailed', 'JobCancelled') AND e.occurred_at >= $1
GROUP BY 1, 2 ORDER BY 1, 2;

-- name: dash_workers
-- Workers, the most recently seen first. The health column (dependency -> fault, reason,
-- since) is read through to_jsonb so the page works before the migration that adds it.
SELECT w.worker_id, w.backends, w.hostname, w.pid, w.started_at, w.last_seen_at,
       coalesce(to_jsonb(w) -> 'health', '{}'::jsonb) AS health,
       extract(epoch FROM now() - w.last_seen_at)::float8 AS seen_s_ago
FROM imagen.workers w ORDER BY w.last_seen_at DESC LIMIT $1;

-- name: dash_running
-- Running jobs with their step progress: jobs_running_by_lease.
SELECT id, status, backend, worker_id, attempts, max_attempts, started_at, lease_expires_at,
       progress_step, progress_total, left(prompt, 80) AS prompt, version
FROM imagen.jobs WHERE status = 'running' ORDER BY lease_expires_at, id LIMIT $1;

-- name: dash_recent_jobs
-- The jobs with the latest events, newest activity first; keyset on the global event
-- position (job_events primary key): $1 = only events before this id (NULL: from the
-- newest), $2 = at most this many events looked at, $3 = at most this many jobs.
WITH recent AS (
    SELECT e.job_id, e.id FROM imagen.job_events e
    WHERE $1::bigint IS NULL OR e.id < $1::bigint
    ORDER BY e.id DESC LIMIT $2
), latest AS (
    SELECT job_id, max(id) AS event_id FROM recent GROUP BY job_id
    ORDER BY max(id) DESC LIMIT $3
)
SELECT l.event_id, j.id, j.status, j.backend, j.attempts, j.max_attempts, j.created_at,
       j.updated_at, j.progress_step, j.progress_total, j.error, left(j.prompt, 80) AS prompt
FROM latest l JOIN imagen.jobs j ON j.id = l.job_id
ORDER BY l.event_id DESC;

-- name: dash_changed_since
-- Jobs with events after position $1 (live updates): job_events primary key, at most $2
-- events, then the jobs primary key. Also returns the newest position seen.
WITH fresh AS (
    SELECT e.job_id, e.id FROM imagen.job_events e WHERE e.id > $1
    ORDER BY e.id LIMIT $2
), latest AS (
    SELECT job_id, max(id) AS event_id FROM fresh GROUP BY job_id
)
SELECT l.event_id, j.id, j.status, j.backend, j.attempts, j.max_attempts, j.created_at,
       j.updated_at, j.progress_step, j.progress_total, j.error, left(j.prompt, 80) AS prompt
FROM latest l JOIN imagen.jobs j ON j.id = l.job_id
ORDER BY l.event_id;

-- name: dash_last_event_id
-- The newest global event position (job_events primary key, one index probe).
SELECT coalesce(max(id), 0)::bigint FROM imagen.job_events;

-- name: dash_control_events
-- Cancellations and retries since $1, newest first, at most $2: job_events_type_time.
SELECT e.job_id, e.type, e.data ->> 'reason' AS reason, e.actor, e.occurred_at
FROM imagen.job_events e
WHERE e.type IN ('JobCancelRequested', 'JobCancelled', 'JobRetried') AND e.occurred_at >= $1
ORDER BY e.occurred_at DESC LIMIT $2;

-- name: dash_latency_by_day
-- p50/p95 per day, backend and stage since $1, over a sample: each day's latest $2 completed
-- jobs (job_events_type_time, one bounded range per day), then each sampled job's stage
-- times as kept when it ended (job_stage_times primary key, schema 0018). Over every job of
-- 14 busy days this took 10 s on a 1M-job history; the sample keeps it bounded.
WITH days AS (
    SELECT d FROM generate_series(date_trunc('day', $1::timestamptz, 'UTC'), now(),
                                  interval '1 day') AS d
), sample AS (
    SELECT c.job_id FROM days CROSS JOIN LATERAL (
        SELECT e.job_id FROM imagen.job_events e
        WHERE e.type = 'JobCompleted' AND e.occurred_at >= days.d
          AND e.occurred_at < days.d + interval '1 day'
        ORDER BY e.occurred_at DESC LIMIT $2
    ) c
)
SELECT date_trunc('day', l.completed_at, 'UTC') AS day, l.backend, s.stage,
       count(*)::int AS n,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY s.ms)::float8 AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.ms)::float8 AS p95_ms
FROM sample
JOIN imagen.job_stage_times l ON l.job_id = sample.job_id
CROSS JOIN LATERAL (VALUES (1, 'queue_wait', l.queue_wait_ms),
                           (2, 'generation', l.generation_ms),
                           (3, 'upload', l.upload_ms),
                           (4, 'total', l.total_ms)) AS s(ord, stage, ms)
WHERE s.ms IS NOT NULL
GROUP BY 1, l.backend, s.ord, s.stage
ORDER BY 1, l.backend, s.ord;

-- name: dash_usage_by_day
-- Images and estimated cost per day and backend since $1: imagen_usage_recent.
SELECT date_trunc('day', created_at, 'UTC') AS day, backend, count(*)::int AS images,
       coalesce(sum(cost_usd_estimate), 0)::float8 AS cost_usd
FROM mai.imagen_usage WHERE created_at >= $1
GROUP BY 1, 2 ORDER BY 1, 2;

-- name: dash_job
-- One job's row, the columns the job page shows (jobs primary key).
SELECT id, owner_user_id, status, backend, width, height, style, seed, steps, attempts,
       max_attempts, worker_id, error, created_at, updated_at, started_at, finished_at,
       lease_expires_at, progress_step, progress_total, version, prompt, negative_prompt
FROM imagen.jobs WHERE id = $1;

-- name: dash_job_live
-- What a job page follows live: one job's state (jobs primary key).
SELECT id, status, attempts, max_attempts, worker_id, error, progress_step, progress_total
FROM imagen.jobs WHERE id = $1;

-- name: dash_job_image
-- A job's image row (images job_id unique index).
SELECT id, bucket, storage_path, mime, bytes, sha256, model, seed, width, height, metadata,
       created_at
FROM imagen.images WHERE job_id = $1;

-- name: dash_job_stages
-- One job's stage durations, from its stream as it is now (imagen.job_stages, schema 0018).
SELECT queue_wait_ms, generation_ms, upload_ms, total_ms FROM imagen.job_stages($1);
