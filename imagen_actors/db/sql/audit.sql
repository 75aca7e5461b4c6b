-- Audit and replay queries (`imagen-actors audit …`, `imagen-actors replay`). Read-only.
-- Every block is also a recipe in docs/audit.md. $n are asyncpg placeholders; NULL = no filter.

-- name: audit_latency
-- p50/p95/p99 per backend and stage of the jobs created since $1 (timestamptz or NULL: all
-- time): the ended ones from imagen.job_stage_times (schema 0018: one row per job, on
-- job_stage_times_created), the open ones computed live from their streams by
-- imagen.job_stages: the running ones and the pending ones that have more than their
-- JobSubmitted (version > 1: a requeued or retried job keeps its first claim); a pending job
-- never claimed has no stage to count, and another host's backlog can be 100,000 of them.
-- $2 backend (text or NULL).
WITH l AS (
    SELECT t.backend, t.queue_wait_ms, t.generation_ms, t.upload_ms, t.total_ms
    FROM imagen.job_stage_times t
    WHERE t.created_at >= coalesce($1::timestamptz, '-infinity')
      AND ($2::text IS NULL OR t.backend = $2::text)
    UNION ALL
    SELECT j.backend, s.queue_wait_ms, s.generation_ms, s.upload_ms, s.total_ms
    FROM imagen.jobs j CROSS JOIN LATERAL imagen.job_stages(j.id) s
    WHERE (j.status = 'running' OR (j.status = 'pending' AND j.version > 1))
      AND j.created_at >= coalesce($1::timestamptz, '-infinity')
      AND ($2::text IS NULL OR j.backend = $2::text)
)
SELECT l.backend,
       s.stage,
       count(*)::int AS n,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY s.ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.ms) AS p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY s.ms) AS p99_ms,
       max(s.ms) AS max_ms
FROM l
CROSS JOIN LATERAL (VALUES (1, 'queue_wait', l.queue_wait_ms),
                           (2, 'generation', l.generation_ms),
                           (3, 'upload', l.upload_ms),
                           (4, 'total', l.total_ms)) AS s(ord, stage, ms)
WHERE s.ms IS NOT NULL
GROUP BY l.backend, s.ord, s.stage
ORDER BY l.backend, s.ord;

-- name: audit_failures
-- Failures grouped by cause (error class and message). A failed attempt counts under its own
-- GenerationFailed; a job that ended failed counts under its last failed attempt's cause, or
-- under the JobFailed's own error when no attempt failed (lease expired, unknown backend).
-- So a job retried twice and then given up appears in one row, not three. $1 since
-- (timestamptz or NULL).
WITH failures AS (
    SELECT e.job_id, e.type, e.occurred_at,
           coalesce(e.data ->> 'error_class',
                    CASE WHEN e.data ? 'retryable' THEN
                        CASE WHEN (e.data ->> 'retryable')::boolean THEN 'transient'
                             ELSE 'permanent' END
                    END, 'unknown') AS error_class,
           coalesce(e.data ->> 'error', '') AS error
    FROM imagen.job_events e
    WHERE e.type IN ('GenerationFailed', 'JobFailed')
      AND ($1::timestamptz IS NULL OR e.occurred_at >= $1::timestamptz)
), last_attempt AS (
    SELECT DISTINCT ON (job_id) job_id, error_class, error
    FROM failures WHERE type = 'GenerationFailed'
    ORDER BY job_id, occurred_at DESC
), causes AS (
    SELECT f.job_id, f.occurred_at, f.type,
           CASE WHEN f.type = 'JobFailed' AND a.job_id IS NOT NULL THEN a.error_class
                ELSE f.error_class END AS error_class,
           CASE WHEN f.type = 'JobFailed' AND a.job_id IS NOT NULL THEN a.error
                ELSE f.error END AS error
    FROM failures f LEFT JOIN last_attempt a ON a.job_id = f.job_id
)
SELECT error_class, error,
       count(*) FILTER (WHERE type = 'GenerationFailed')::int AS attempts_failed,
       count(DISTINCT job_id) FILTER (WHERE type = 'JobFailed')::int AS jobs_failed,
       count(DISTINCT job_id)::int AS jobs,
       max(occurred_at) AS last_seen
FROM causes
GROUP BY 1, 2
ORDER BY count(DISTINCT job_id) DESC, max(occurred_at) DESC;

-- name: audit_stuck
-- Running past the lease (the Reaper should have taken it back), or pending longer than
-- $1 seconds; the $2 most overdue, each row with the count of all stuck jobs (total).
-- overdue_s: seconds past the lease, or the pending job's age. Reads only running and
-- pending rows (jobs_running_by_lease, jobs_pending_head).
WITH stuck AS (
    SELECT j.id, 'lease expired' AS reason, j.status, j.backend, j.worker_id, j.attempts,
           j.max_attempts, j.created_at, j.lease_expires_at, j.run_after,
           extract(epoch FROM now() - j.lease_expires_at)::float8 AS overdue_s
    FROM imagen.jobs j
    WHERE j.status = 'running' AND j.lease_expires_at < now()
    UNION ALL
    SELECT j.id, 'pending too long', j.status, j.backend, j.worker_id, j.attempts,
           j.max_attempts, j.created_at, j.lease_expires_at, j.run_after,
           extract(epoch FROM now() - j.created_at)::float8
    FROM imagen.jobs j
    WHERE j.status = 'pending' AND j.created_at < now() - make_interval(secs => $1::float8)
)
SELECT stuck.*, count(*) OVER ()::int AS total
FROM stuck
ORDER BY overdue_s DESC
LIMIT $2;

-- name: audit_throughput
-- Jobs finished per hour (UTC) by outcome, from the terminal events. $1 since (or NULL).
SELECT date_trunc('hour', e.occurred_at, 'UTC') AS hour,
       CASE e.type WHEN 'JobCompleted' THEN 'done'
                   WHEN 'JobFailed' THEN 'failed'
                   ELSE 'cancelled' END AS outcome,
       count(*)::int AS jobs
FROM imagen.job_events e
WHERE e.type IN ('JobCompleted', 'JobFailed', 'JobCancelled')
  AND ($1::timestamptz IS NULL OR e.occurred_at >= $1::timestamptz)
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: audit_owner
-- One owner's jobs, newest first, with the stored image. $1 owner, $2 limit.
SELECT j.id, j.status, j.backend, j.created_at, j.finished_at, j.attempts, j.error,
       left(j.prompt, 60) AS prompt,
       i.bucket, i.storage_path, i.metadata ->> 'local_path' AS local_path
FROM imagen.jobs j
LEFT JOIN imagen.images i ON i.id = j.image_id
WHERE j.owner_user_id = $1
ORDER BY j.created_at DESC
LIMIT $2;

-- name: replay_page
-- One keyset page of `replay --verify --all` in one statement: up to $2 job rows with ids
-- after $1 and at most $3 (one worker process's share of the ids), each with its whole
-- stream as one JSON text (`stream`, NULL for a job with no events), decoded client-side by one msgspec call per job (cli/replay_stream.py). Each
-- event is [seq, type, actor, worker_id, occurred_at as integer microseconds (the canonical
-- text's own expression), data, hash in base64, occurred_at in UTC without its offset]:
-- json_build_array prints strings as jsonb does (escape_json) and embeds data exactly as
-- jsonb_out prints it, so the client builds each event's canonical text from these pieces
-- and recomputes the link (core/chain.py, the same function as imagen.job_event_hash):
-- computed here, it cost 85 us a job, the bound on the whole run. The stream is cast to
-- text so the connection's json codec leaves it undecoded. replay_jobs builds the same.
WITH page AS (
    SELECT * FROM imagen.jobs WHERE id > $1 AND id <= $3 ORDER BY id LIMIT $2
)
SELECT p.*, s.stream
FROM page p
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_array(
               x.seq, x.type, x.actor, x.worker_id,
               (extract(epoch FROM x.occurred_at) * 1000000)::bigint, x.data,
               encode(x.hash, 'base64'), x.occurred_at AT TIME ZONE 'UTC'))::text AS stream
    FROM (
        -- Sorted once here (job_events (job_id, seq) index); the aggregate keeps this order.
        SELECT * FROM imagen.job_events e WHERE e.job_id = p.id ORDER BY e.seq
    ) x
) s ON true
ORDER BY p.id;

-- name: replay_jobs
-- The jobs $1 (uuid[]) as replay_page reads them, one row per id in $1, for `replay --verify`
-- of one job and for the jobs `--all` saw move: `job_id` is the id asked for; the imagen.jobs
-- columns are NULL when the job has no row (`id` IS NULL), the stream NULL when it has no
-- events.
SELECT k.job_id, j.*, s.stream
FROM unnest($1::uuid[]) AS k(job_id)
LEFT JOIN imagen.jobs j ON j.id = k.job_id
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_array(
               x.seq, x.type, x.actor, x.worker_id,
               (extract(epoch FROM x.occurred_at) * 1000000)::bigint, x.data,
               encode(x.hash, 'base64'), x.occurred_at AT TIME ZONE 'UTC'))::text AS stream
    FROM (
        SELECT * FROM imagen.job_events e WHERE e.job_id = k.job_id ORDER BY e.seq
    ) x
) s ON true;

-- name: replay_events_for
-- One job's events as columns, in seq order: for a stream whose one JSON text the client
-- cannot decode whole (data nested beyond its decoder's recursion limit), so each event is
-- still checked, and the one that cannot be read reported, as replay_page's are.
SELECT seq, type, actor, worker_id, (extract(epoch FROM occurred_at) * 1000000)::bigint AS us,
       data::text AS data_text, hash, occurred_at
FROM imagen.job_events WHERE job_id = $1 ORDER BY seq;

-- name: replay_images_for
-- The image rows of a page of jobs (`replay --verify --objects` reads each object back).
SELECT job_id, bucket, storage_path, sha256 FROM imagen.images WHERE job_id = ANY($1::uuid[]);
