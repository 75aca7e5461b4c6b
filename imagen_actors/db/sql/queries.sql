-- Runtime queries, one named block each. asyncpg placeholders; never assembled from user text.

-- name: lock_and_load_events
-- Locks the job row and returns its whole stream (plus the transaction's clock) in one trip.
-- locked_version comes from the row as re-read after any lock wait; the events come from
-- the statement's snapshot, taken before the wait. When they disagree (another writer
-- committed while we waited) the gateway re-reads the events in a fresh statement.
WITH locked AS (
    SELECT id, version FROM imagen.jobs WHERE id = $1 FOR UPDATE
)
SELECT e.seq, e.type, e.data, e.actor, e.worker_id, e.occurred_at, now() AS db_now,
       l.version AS locked_version
FROM imagen.job_events e JOIN locked l ON e.job_id = l.id
ORDER BY e.seq;

-- name: lock_job
-- Locks the job row: its version as re-read after any lock wait, and the transaction's
-- clock. For a job whose stream the worker already holds at that version (db/known_streams).
SELECT version, now() AS db_now FROM imagen.jobs WHERE id = $1 FOR UPDATE;

-- name: claim_next_and_load_events
-- The oldest claimable pending job of this worker's backends ($1; NULL: every backend that
-- has pending jobs), skipping rows another worker has locked. One probe of jobs_pending_head
-- per backend (its oldest claimable head, locked SKIP LOCKED), then the oldest of those: no
-- other backend's rows are read, however long their backlog (schema 0013).
-- The claim's commit does not wait for its WAL flush (synchronous_commit off for this
-- transaction only): a claim lost in a database crash is a claim that never happened, the
-- job pending again, and the worker finds out at its next write (LeaseLostError) before
-- anything outlives it; every later write of the job waits for its flush as before.
WITH RECURSIVE pending_backends (backend) AS (
    (SELECT j.backend FROM imagen.jobs j WHERE j.status = 'pending' AND $1::text[] IS NULL
     ORDER BY j.backend LIMIT 1)
    UNION ALL
    SELECT (SELECT j.backend FROM imagen.jobs j
            WHERE j.status = 'pending' AND j.backend > p.backend ORDER BY j.backend LIMIT 1)
    FROM pending_backends p WHERE p.backend IS NOT NULL
), offered (backend) AS (
    SELECT unnest($1::text[])
    UNION ALL
    SELECT backend FROM pending_backends WHERE backend IS NOT NULL
), next AS (
    SELECT h.id, h.version
    FROM offered o
    CROSS JOIN LATERAL (
        SELECT j.id, j.version, j.created_at FROM imagen.jobs j
        WHERE j.status = 'pending' AND j.backend = o.backend
          AND (j.run_after IS NULL OR j.run_after <= now())
        ORDER BY j.created_at, j.id
        LIMIT 1
        FOR UPDATE OF j SKIP LOCKED
    ) h
    ORDER BY h.created_at, h.id
    LIMIT 1
)
SELECT e.job_id, e.seq, e.type, e.data, e.actor, e.worker_id, e.occurred_at, now() AS db_now,
       n.version AS locked_version, false AS unserved,
       set_config('synchronous_commit', 'off', true) AS commit_mode
FROM imagen.job_events e JOIN next n ON e.job_id = n.id
ORDER BY e.seq;

-- name: claim_unserved_and_load_events
-- The rarer path (Gateway.claim runs it at most every few seconds): the oldest pending job
-- of a backend that neither this worker ($1) nor any worker seen in the last $2 seconds
-- offers, once it has waited $3 seconds (worker.unserved_backend_grace_s) since it last
-- became pending (updated_at: its last event, submitted or requeued). Nobody can run it, so
-- the claimant fails it. The backends with pending jobs come from a skip scan of
-- jobs_pending_head (one probe per distinct backend); only unserved backends' rows are read.
WITH RECURSIVE pending_backends (backend) AS (
    (SELECT j.backend FROM imagen.jobs j WHERE j.status = 'pending'
     ORDER BY j.backend LIMIT 1)
    UNION ALL
    SELECT (SELECT j.backend FROM imagen.jobs j
            WHERE j.status = 'pending' AND j.backend > p.backend ORDER BY j.backend LIMIT 1)
    FROM pending_backends p WHERE p.backend IS NOT NULL
), unserved (backend) AS (
    SELECT p.backend FROM pending_backends p
    WHERE p.backend IS NOT NULL AND p.backend <> ALL($1::text[])
      AND NOT EXISTS (SELECT 1 FROM imagen.workers w
                      WHERE p.backend = ANY(w.backends)
                        AND w.last_seen_at > now() - make_interval(secs => $2::float8))
), next AS (
    SELECT h.id, h.version
    FROM unserved u
    CROSS JOIN LATERAL (
        SELECT j.id, j.version, j.created_at FROM imagen.jobs j
        WHERE j.status = 'pending' AND j.backend = u.backend
          AND (j.run_after IS NULL OR j.run_after <= now())
          AND j.updated_at <= now() - make_interval(secs => $3::float8)
        ORDER BY j.created_at, j.id
        LIMIT 1
        FOR UPDATE OF j SKIP LOCKED
    ) h
    ORDER BY h.created_at, h.id
    LIMIT 1
)
SELECT e.job_id, e.seq, e.type, e.data, e.actor, e.worker_id, e.occurred_at, now() AS db_now,
       n.version AS locked_version, true AS unserved
FROM imagen.job_events e JOIN next n ON e.job_id = n.id
ORDER BY e.seq;

-- name: load_events_with_clock
SELECT seq, type, data, actor, worker_id, occurred_at, now() AS db_now
FROM imagen.job_events WHERE job_id = $1 ORDER BY seq;

-- name: append_and_project
-- Appends events (parallel arrays) and writes the folded projection in one statement. Each
-- event's hash links it to the one before (schema 0009): the chain starts from the hash of
-- the job's event at seq $20 (the version the caller folded from) and runs through the new
-- events in array order.
WITH RECURSIVE new_events AS (
    SELECT * FROM unnest($2::int[], $3::text[], $4::jsonb[], $5::text[], $6::text[],
                         $7::timestamptz[]) WITH ORDINALITY AS x(s, t, d, a, w, o, i)
), chain (i, hash) AS (
    SELECT 0::bigint, (SELECT hash FROM imagen.job_events WHERE job_id = $1 AND seq = $20)
    UNION ALL
    SELECT n.i, imagen.job_event_hash(c.hash, $1, n.s, n.t, n.a, n.w, n.o, n.d)
    FROM chain c JOIN new_events n ON n.i = c.i + 1
), appended AS (
    INSERT INTO imagen.job_events (job_id, seq, type, data, actor, worker_id, occurred_at, hash)
    SELECT $1, n.s, n.t, n.d, n.a, n.w, n.o, c.hash
    FROM new_events n JOIN chain c ON c.i = n.i
    RETURNING 1
)
UPDATE imagen.jobs SET
    status = $8, image_id = $9, error = $10, attempts = $11, max_attempts = $12,
    worker_id = $13, lease_expires_at = $14, updated_at = $15, started_at = $16,
    finished_at = $17, version = $18, run_after = $19, progress_step = $21,
    progress_total = $22
WHERE id = $1 AND version = $20 AND (SELECT count(*) FROM appended) = cardinality($2::int[]);

-- name: fail_poisoned_job
-- Fails a pending or running job whose stream the worker cannot read, without folding it:
-- appends JobFailed after the job's last event (linked into the chain) and writes the
-- projection a fold of that JobFailed would write. $2 data, $3 actor, $4 worker_id,
-- $5 occurred_at, $6 the error for the row. No row comes back when the job is terminal.
WITH last AS (
    SELECT seq, hash FROM imagen.job_events WHERE job_id = $1 ORDER BY seq DESC LIMIT 1
), appended AS (
    INSERT INTO imagen.job_events (job_id, seq, type, data, actor, worker_id, occurred_at, hash)
    SELECT $1, last.seq + 1, 'JobFailed', $2::jsonb, $3, $4, $5,
           imagen.job_event_hash(last.hash, $1, last.seq + 1, 'JobFailed', $3, $4, $5, $2::jsonb)
    FROM last
    WHERE EXISTS (SELECT 1 FROM imagen.jobs WHERE id = $1 AND status IN ('pending', 'running'))
    RETURNING seq
)
UPDATE imagen.jobs SET
    status = 'failed', error = $6, lease_expires_at = NULL, updated_at = $5, finished_at = $5,
    version = appended.seq
FROM appended
WHERE id = $1
RETURNING version;

-- name: next_run_after
-- Seconds until the earliest backed-off job becomes claimable (database clock), or NULL.
-- On jobs_pending_backoff (schema 0013): reads one index entry, not the pending rows.
SELECT extract(epoch FROM min(run_after) - now())::float8
FROM imagen.jobs WHERE status = 'pending' AND run_after > now();

-- name: load_events
SELECT seq, type, data, actor, worker_id, occurred_at
FROM imagen.job_events WHERE job_id = $1 ORDER BY seq;

-- name: load_job
SELECT * FROM imagen.jobs WHERE id = $1;

-- name: upsert_image
-- Idempotent: a job that ran twice after a crash keeps its first image row.
WITH ins AS (
    INSERT INTO imagen.images (owner_user_id, job_id, prompt, backend, model, seed, width,
                               height, bucket, storage_path, mime, bytes, sha256, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    ON CONFLICT (job_id) DO NOTHING
    RETURNING id
)
SELECT id FROM ins
UNION ALL
SELECT id FROM imagen.images WHERE job_id = $2
LIMIT 1;

-- name: reserve_image_key
-- Returns (storage_path, job_id): the key $3 reserved first in $1 when it has one (a retry
-- keeps its first attempt's key), else $2 with its owner after this statement: $3 when the
-- key was free, else the job that reserved it first (a tombstone of a failed job included:
-- a key is never handed on). DO UPDATE (not DO NOTHING) so the row comes back even when it
-- was reserved by a transaction that committed after this statement's snapshot was taken.
WITH earlier AS (
    SELECT storage_path, job_id FROM imagen.storage_keys
    WHERE job_id = $3 AND bucket = $1
    ORDER BY reserved_at, storage_path
    LIMIT 1
), reserved AS (
    INSERT INTO imagen.storage_keys (bucket, storage_path, job_id)
    SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM earlier)
    ON CONFLICT (bucket, storage_path) DO UPDATE SET bucket = EXCLUDED.bucket
    RETURNING storage_path, job_id
)
SELECT storage_path, job_id FROM earlier
UNION ALL
SELECT storage_path, job_id FROM reserved;

-- name: storage_key_owner
SELECT job_id FROM imagen.storage_keys WHERE bucket = $1 AND storage_path = $2;

-- name: tombstone_image_keys
-- The failed job's objects are deleted; its keys stay reserved to it (never handed on).
UPDATE imagen.storage_keys SET discarded_at = now(), checked_at = now()
WHERE job_id = $1 AND bucket = $2 AND discarded_at IS NULL;

-- name: tombstones_to_recheck
-- Tombstoned keys discarded within $2 seconds whose last check is older than $3 seconds:
-- a worker frozen past its lease may still write its object onto one of them.
SELECT storage_path, job_id FROM imagen.storage_keys
WHERE discarded_at IS NOT NULL AND bucket = $1
  AND discarded_at > now() - make_interval(secs => $2::float8)
  AND checked_at < now() - make_interval(secs => $3::float8)
ORDER BY checked_at
LIMIT $4;

-- name: tombstone_checked
UPDATE imagen.storage_keys SET checked_at = now() WHERE bucket = $1 AND storage_path = $2;

-- name: reserved_image_keys
SELECT storage_path FROM imagen.storage_keys
WHERE job_id = $1 AND bucket = $2
ORDER BY reserved_at, storage_path;

-- name: insert_usage
INSERT INTO mai.imagen_usage (backend, model, seed, prompt_hash, latency_ms,
                              cost_usd_estimate, caller, job_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (job_id) DO UPDATE SET job_id = EXCLUDED.job_id
RETURNING id;

-- name: expired_leases
SELECT id FROM imagen.jobs
WHERE status = 'running' AND lease_expires_at < now()
ORDER BY lease_expires_at
LIMIT $1;

-- name: failed_with_leftovers
-- Failed (or cancelled) jobs whose current run (since their last JobRetried) got as far as a generated image
-- and whose objects were not discarded since they failed: an attempt may have uploaded
-- before the job failed. Driven by job_events_type_time; $2 true looks only at the last
-- hour (a worker's start-up pass looks at all of them).
SELECT f.job_id AS id FROM imagen.job_events f
WHERE f.type IN ('JobFailed', 'JobCancelled')
  AND (NOT $2 OR f.occurred_at > now() - interval '1 hour')
  AND NOT EXISTS (SELECT 1 FROM imagen.job_events l
                  WHERE l.job_id = f.job_id AND l.seq > f.seq
                    AND l.type IN ('JobFailed', 'JobCancelled', 'JobRetried', 'ImageDiscarded'))
  AND EXISTS (SELECT 1 FROM imagen.job_events e
              WHERE e.job_id = f.job_id AND e.seq < f.seq AND e.type = 'GenerationSucceeded'
                AND NOT EXISTS (SELECT 1 FROM imagen.job_events r
                                WHERE r.job_id = f.job_id AND r.type = 'JobRetried'
                                  AND r.seq > e.seq AND r.seq < f.seq))
ORDER BY f.occurred_at
LIMIT $1;

-- name: running_held_by
SELECT id FROM imagen.jobs WHERE status = 'running' AND worker_id = $1;

-- name: insert_job
INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height, style,
                         negative_prompt, seed, steps, opts, max_attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING id;

-- name: status_counts
-- Jobs per status from the counters the projection write keeps (schema 0014): 64 rows,
-- whatever the history. Only statuses that have jobs.
SELECT s.status, s.n::int AS n
FROM (SELECT sum(pending) AS pending, sum(running) AS running, sum(done) AS done,
             sum(failed) AS failed, sum(cancelled) AS cancelled
      FROM imagen.job_status_counts) c
CROSS JOIN LATERAL (VALUES ('cancelled', c.cancelled), ('done', c.done), ('failed', c.failed),
                           ('pending', c.pending), ('running', c.running)) AS s(status, n)
WHERE s.n > 0
ORDER BY s.status;

-- name: running_jobs
SELECT id, worker_id, attempts, max_attempts, lease_expires_at, started_at, backend,
       left(prompt, 60) AS prompt
FROM imagen.jobs WHERE status = 'running' ORDER BY started_at;

-- name: latest_failures
-- On jobs_failed_by_finish (schema 0013).
SELECT id, error, attempts, finished_at, backend
FROM imagen.jobs WHERE status = 'failed' ORDER BY finished_at DESC LIMIT $1;

-- name: unserved_backends
-- Backends of pending jobs that no worker seen in the last $1 seconds offers
-- (worker.backend_absent_after_s): those jobs wait for a host that offers them, then fail
-- once they waited worker.unserved_backend_grace_s. waited_s: the longest wait, since the
-- job last became pending (as the claim measures it). The backends come from a skip scan of
-- jobs_pending_head; only the unserved backends' rows are counted.
WITH RECURSIVE pending_backends (backend) AS (
    (SELECT j.backend FROM imagen.jobs j WHERE j.status = 'pending'
     ORDER BY j.backend LIMIT 1)
    UNION ALL
    SELECT (SELECT j.backend FROM imagen.jobs j
            WHERE j.status = 'pending' AND j.backend > p.backend ORDER BY j.backend LIMIT 1)
    FROM pending_backends p WHERE p.backend IS NOT NULL
)
SELECT p.backend, c.n, c.waited_s
FROM pending_backends p
CROSS JOIN LATERAL (
    SELECT count(*)::int AS n, extract(epoch FROM now() - min(j.updated_at))::float8 AS waited_s
    FROM imagen.jobs j WHERE j.status = 'pending' AND j.backend = p.backend
) c
WHERE p.backend IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM imagen.workers w
                  WHERE p.backend = ANY(w.backends)
                    AND w.last_seen_at > now() - make_interval(secs => $1::float8))
ORDER BY p.backend;

-- name: unhealthy_dependencies
-- The dependencies live workers (seen in the last $1 seconds) report unhealthy: `status`,
-- and the Reaper's max_wait_s rule (a backend some live worker has healthy is not failed).
SELECT w.worker_id, w.backends, d.key AS dependency, d.value ->> 'fault' AS fault,
       d.value ->> 'reason' AS reason, (d.value ->> 'since')::timestamptz AS since
FROM imagen.workers w, jsonb_each(w.health) d
WHERE w.last_seen_at > now() - make_interval(secs => $1::float8)
ORDER BY since, w.worker_id, d.key;

-- name: events_after
-- Follows one job's log from a position (submit --wait).
SELECT seq, type, data, actor, worker_id, occurred_at
FROM imagen.job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq;

-- name: migrations_table
-- Created only where missing: Postgres checks the CREATE privilege before IF NOT EXISTS, so
-- a plain CREATE ... IF NOT EXISTS fails for a role without CREATE even when all is there.
DO $mig$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'imagen' AND c.relname = 'schema_migrations') THEN
        CREATE SCHEMA IF NOT EXISTS imagen;
        CREATE TABLE imagen.schema_migrations (
            name       text PRIMARY KEY,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        );
    END IF;
END
$mig$;

-- name: migrations_readable
-- Whether imagen.schema_migrations exists and this role may read it (the worker's check).
-- Looked up in the catalog: to_regclass would fail on a schema the role may not use.
SELECT t.oid IS NOT NULL AS present,
       coalesce(has_schema_privilege(t.relnamespace, 'USAGE')
                AND has_table_privilege(t.oid, 'SELECT'), false) AS readable,
       current_user::text AS role
FROM (SELECT 1) one
LEFT JOIN (SELECT c.oid, c.relnamespace FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'imagen' AND c.relname = 'schema_migrations') t ON true;

-- name: applied_migrations
SELECT name, checksum FROM imagen.schema_migrations ORDER BY name;

-- name: record_migration
INSERT INTO imagen.schema_migrations (name, checksum) VALUES ($1, $2);

-- name: worker_seen
-- A worker's heartbeat: its backends now; $5 true at start-up (a new started_at); $6 its
-- unhealthy dependencies (name -> {fault, reason, since}; {} when all are up).
INSERT INTO imagen.workers (worker_id, backends, hostname, pid, health)
VALUES ($1, $2, $3, $4, $6)
ON CONFLICT (worker_id) DO UPDATE SET
    backends = EXCLUDED.backends, hostname = EXCLUDED.hostname, pid = EXCLUDED.pid,
    health = EXCLUDED.health,
    last_seen_at = now(),
    started_at = CASE WHEN $5 THEN now() ELSE imagen.workers.started_at END;
