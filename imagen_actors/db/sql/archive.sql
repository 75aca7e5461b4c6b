-- Retention: `imagen-actors archive` and `forget-owner` (schema 0017).

-- name: archive_page
-- One keyset page (by id, after $1) of up to $3 jobs that may leave: terminal, and for an
-- archive ($2 the cutoff) their stream ended before the cutoff, for a forget ($4 the owner)
-- the owner's. Each with its stream as parallel arrays in seq order, data as jsonb's own
-- text (the canonical text the hash chain is computed over, schema 0009) and occurred_at
-- as the chain's integer microseconds, plus its image row. Walking the primary key visits
-- each live job once over a whole run, with no index that grows with the history.
SELECT j.*, j.opts::text AS archive_opts,
       to_jsonb(i) AS archive_image,
       s.seqs AS archive_seqs, s.types AS archive_types, s.datas AS archive_datas,
       s.actors AS archive_actors, s.worker_ids AS archive_worker_ids,
       s.at_us AS archive_at_us, s.hashes AS archive_hashes
FROM imagen.jobs j
LEFT JOIN imagen.images i ON i.job_id = j.id
CROSS JOIN LATERAL (
    SELECT array_agg(e.seq ORDER BY e.seq) AS seqs,
           array_agg(e.type ORDER BY e.seq) AS types,
           array_agg(e.data::text ORDER BY e.seq) AS datas,
           array_agg(e.actor ORDER BY e.seq) AS actors,
           array_agg(e.worker_id ORDER BY e.seq) AS worker_ids,
           array_agg((extract(epoch FROM e.occurred_at) * 1000000)::bigint ORDER BY e.seq)
               AS at_us,
           array_agg(e.hash ORDER BY e.seq) AS hashes
    FROM imagen.job_events e WHERE e.job_id = j.id
) s
WHERE j.id > $1
  AND j.status IN ('done', 'failed', 'cancelled')
  AND ($2::timestamptz IS NULL
       OR (coalesce(j.finished_at, j.updated_at) < $2 AND j.updated_at < $2))
  AND ($4::uuid IS NULL OR j.owner_user_id = $4)
ORDER BY j.id
LIMIT $3;

-- name: archive_would_move
-- What `archive --dry-run` ($1 cutoff) or `forget-owner --dry-run` ($2 owner) would move.
SELECT count(*)::bigint AS jobs,
       coalesce(sum(j.version), 0)::bigint AS events,
       count(i.id)::bigint AS images,
       min(j.created_at) AS first_job_created_at,
       max(j.created_at) AS last_job_created_at
FROM imagen.jobs j LEFT JOIN imagen.images i ON i.job_id = j.id
WHERE j.status IN ('done', 'failed', 'cancelled')
  AND ($1::timestamptz IS NULL
       OR (coalesce(j.finished_at, j.updated_at) < $1 AND j.updated_at < $1))
  AND ($2::uuid IS NULL OR j.owner_user_id = $2);

-- name: archive_open
SELECT imagen.archive_open($1, $2, $3, $4, $5);

-- name: archive_streams
-- One batch out and recorded, in this one statement's transaction.
SELECT * FROM imagen.archive_streams($1, $2, $3, $4, $5, $6, $7, $8);

-- name: archive_finish
SELECT imagen.archive_finish($1, $2, $3);

-- name: archive_run
SELECT * FROM imagen.archives WHERE id = $1;

-- name: owner_unfinished_jobs
-- The owner's jobs that are not terminal yet (forget-owner waits for or cancels them).
SELECT id, status FROM imagen.jobs
WHERE owner_user_id = $1 AND status IN ('pending', 'running')
ORDER BY created_at;

-- name: owner_objects
-- The stored objects of an owner's jobs, live or archived before (archive leaves objects
-- and key reservations in place): every key the jobs reserved (a failed attempt may have
-- uploaded under one) and every image row.
SELECT k.bucket, k.storage_path FROM imagen.storage_keys k
WHERE k.job_id IN (SELECT j.id FROM imagen.jobs j
                   WHERE j.owner_user_id = $1 AND j.status IN ('done', 'failed', 'cancelled')
                   UNION ALL
                   SELECT a.job_id FROM imagen.archived_jobs a WHERE a.owner_user_id = $1)
UNION
SELECT i.bucket, i.storage_path FROM imagen.images i
WHERE i.owner_user_id = $1
ORDER BY 1, 2;

-- name: owner_release_keys
-- forget-owner, after the owner's jobs are removed (so all are in archived_jobs): the
-- reservations of every job of theirs (the keys are made from the prompt); the objects
-- were deleted first. Returns how many.
WITH gone AS (
    DELETE FROM imagen.storage_keys k
    USING imagen.archived_jobs a
    WHERE a.job_id = k.job_id AND a.owner_user_id = $1
    RETURNING 1
)
SELECT count(*)::bigint FROM gone;

-- name: owner_archive_files
-- The archive files that still hold an owner's jobs (and so their prompts).
SELECT a.id, a.file_name, count(*)::bigint AS jobs
FROM imagen.archived_jobs aj JOIN imagen.archives a ON a.id = aj.archive_id
WHERE aj.owner_user_id = $1 AND a.kind = 'archive'
GROUP BY a.id, a.file_name
ORDER BY a.id;
