-- Retention (issue 16 item 4): `imagen-actors archive` moves whole streams of terminal jobs
-- (their events, projection row and image row) out of the live tables into a gzip JSONL
-- file, and `imagen-actors forget-owner` removes an owner's finished jobs without a copy.
-- Both go through one function here, imagen.archive_streams, the one sanctioned path around
-- the append-only rule of imagen.job_events, and every use of it is recorded.
--
-- How the rule is passed, and why this way. The 0002 trigger refuses UPDATE, DELETE and
-- TRUNCATE on imagen.job_events for every role. It now lets a DELETE through on exactly one
-- condition: the row's job is recorded in imagen.archived_jobs by the same transaction
-- (the record's xmin is the deleting transaction's id). So an event can only leave in a
-- transaction that also writes who took it, when, into which archive (file, batch, sha256)
-- and the head of its hash chain; roll that back and the DELETE is rolled back with it. The
-- alternatives were worse: a session setting checked by the trigger can be set by anyone
-- with DELETE (it proves nothing); DISABLE TRIGGER takes an ACCESS EXCLUSIVE lock on the log
-- (every worker stops) and needs the owner; session_replication_role needs a superuser
-- (not on Supabase) and switches the foreign keys off too. UPDATE and TRUNCATE stay refused
-- for everyone, and imagen.archived_jobs and imagen.archive_batches are themselves
-- append-only, so the record of a removal cannot be removed.
--
-- What moves, what stays:
--   moves  imagen.job_events rows, the imagen.jobs row, the imagen.images row (the object
--          itself stays in storage: the file keeps its bucket, key and sha256);
--   stays  mai.imagen_usage (billing: cost per month must not change when history is
--          archived; it holds a prompt hash, never the prompt), imagen.storage_keys (a key
--          once reserved belongs to its job for good, and the object is still there: the
--          reservation keeps another job from ever writing onto it; its foreign key to
--          imagen.jobs, which cascaded the reservation away with the row, is dropped
--          here), imagen.job_status_counts (its 0014 trigger counts the DELETEs down, so
--          `status` stays right without a recount).

-- ---- the manifest ------------------------------------------------------------------------

-- One row per run of `archive` (kind 'archive', with its file) or `forget-owner` (kind
-- 'forget', no file: nothing is kept). The counters grow batch by batch in the transaction
-- that deletes the batch; finished_at, bytes and file_sha256 are set when the run ends. A
-- row with finished_at NULL is a run that stopped part way: every batch it recorded is in
-- its file (up to `bytes` as of its last batch) and gone from the live tables; the jobs it
-- had not recorded are still live and the next run takes them.
CREATE TABLE imagen.archives (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                 text NOT NULL CHECK (kind IN ('archive', 'forget')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL DEFAULT imagen.caller_role(),
    finished_at          timestamptz,
    -- archive: jobs whose stream ended before this; forget: NULL
    cutoff               timestamptz,
    -- forget: whose jobs were removed (the id only: the proof that it was done)
    owner_user_id        uuid,
    file_name            text,
    format_version       int,
    jobs                 bigint NOT NULL DEFAULT 0,
    events               bigint NOT NULL DEFAULT 0,
    images               bigint NOT NULL DEFAULT 0,
    first_job_created_at timestamptz,
    last_job_created_at  timestamptz,
    -- bytes of the file holding every recorded batch (the file ends there)
    bytes                bigint NOT NULL DEFAULT 0,
    file_sha256          text CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    CONSTRAINT archives_kind_fields CHECK (
        (kind = 'archive' AND cutoff IS NOT NULL AND file_name IS NOT NULL
         AND format_version IS NOT NULL AND owner_user_id IS NULL)
        OR (kind = 'forget' AND owner_user_id IS NOT NULL AND file_name IS NULL))
);
COMMENT ON TABLE imagen.archives IS
    'runs of `imagen-actors archive` and `forget-owner`: what left the live tables, when, '
    'by whom, to which file (docs/audit.md)';

-- One row per batch: the gzip member of the file it was written as (offset, length, sha256
-- of those bytes, checked on disk before the delete; NULL for forget, which writes nothing).
CREATE TABLE imagen.archive_batches (
    archive_id  bigint NOT NULL REFERENCES imagen.archives (id),
    batch       int NOT NULL CHECK (batch >= 1),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    jobs        int NOT NULL,
    events      int NOT NULL,
    images      int NOT NULL,
    file_offset bigint,
    file_length bigint,
    sha256      text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    PRIMARY KEY (archive_id, batch)
);

-- One row per job that left: where it went and the last hash of its chain (head), so an
-- archive file can be checked against the database even by someone who rewrote every hash
-- in it. owner_user_id lets `forget-owner` name the archive files that still hold an
-- owner's prompts. xact is the transaction that wrote the row (pg_current_xact_id() is the
-- top-level id even inside a savepoint, and 64-bit: it never comes round again); the
-- job_events trigger below lets a job's events be deleted only by that transaction.
CREATE TABLE imagen.archived_jobs (
    job_id        uuid PRIMARY KEY,
    archive_id    bigint NOT NULL REFERENCES imagen.archives (id),
    batch         int NOT NULL,
    owner_user_id uuid NOT NULL,
    created_at    timestamptz NOT NULL,
    status        text NOT NULL,
    events        int NOT NULL,
    head          bytea NOT NULL CHECK (octet_length(head) = 32),
    archived_at   timestamptz NOT NULL DEFAULT now(),
    xact          xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX archived_jobs_owner ON imagen.archived_jobs (owner_user_id);
CREATE INDEX archived_jobs_archive ON imagen.archived_jobs (archive_id, batch);

CREATE FUNCTION imagen.archive_record_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is the record of what left the live tables: % is not allowed',
        TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'the record of an archive or forget-owner run is kept for good';
END
$$;
CREATE TRIGGER archived_jobs_immutable BEFORE UPDATE OR DELETE ON imagen.archived_jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.archive_record_immutable();
CREATE TRIGGER archived_jobs_no_truncate BEFORE TRUNCATE ON imagen.archived_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION imagen.archive_record_immutable();
CREATE TRIGGER archive_batches_immutable BEFORE UPDATE OR DELETE ON imagen.archive_batches
    FOR EACH ROW EXECUTE FUNCTION imagen.archive_record_immutable();
CREATE TRIGGER archive_batches_no_truncate BEFORE TRUNCATE ON imagen.archive_batches
    FOR EACH STATEMENT EXECUTE FUNCTION imagen.archive_record_immutable();

-- ---- the one way out of the log ---------------------------------------------------------

-- DELETE on imagen.job_events passes only for a job that this very transaction recorded in
-- imagen.archived_jobs; UPDATE and TRUNCATE never. SECURITY DEFINER so the check can read
-- the record whichever role deletes.
CREATE OR REPLACE FUNCTION imagen.job_events_immutable() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM imagen.archived_jobs a
        WHERE a.job_id = OLD.job_id AND a.xact = pg_current_xact_id()
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'imagen.job_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a correction as a new event instead; whole finished streams '
                     'leave only through `imagen-actors archive` (imagen.archive_streams)';
END
$$;

-- Deleting an images row makes its foreign key look for jobs pointing at it (jobs.image_id,
-- 0003), which had no index: every image moved out scanned imagen.jobs (archive ran at 500
-- jobs/s on a 5,000-job history and slowed with its size). Done jobs only.
CREATE INDEX jobs_image ON imagen.jobs (image_id) WHERE image_id IS NOT NULL;

-- The reservation outlives the job row (the object outlives it too).
ALTER TABLE imagen.storage_keys DROP CONSTRAINT storage_keys_job_id_fkey;

-- Open a run: its manifest row (the caller then writes batches and finishes it).
CREATE FUNCTION imagen.archive_open(
    p_kind text, p_cutoff timestamptz, p_owner uuid, p_file text, p_format int
) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
    INSERT INTO imagen.archives (kind, cutoff, owner_user_id, file_name, format_version,
                                 created_by)
    VALUES (p_kind, p_cutoff, p_owner, p_file, p_format, imagen.caller_role())
    RETURNING id
$$;

-- Move one batch out, in one transaction (this statement): p_jobs with the versions the
-- file holds them at. Every job must still be terminal, at that version, and match the run
-- (archive: its stream ended before the cutoff; forget: the run's owner), or nothing
-- happens: 40001 (serialization_failure) says the batch went stale between the read and
-- now (a retry_job, a late event) and should be read again. Returns the batch's counts.
CREATE FUNCTION imagen.archive_streams(
    p_archive bigint, p_batch int, p_jobs uuid[], p_versions int[],
    p_offset bigint, p_length bigint, p_sha256 text, p_bytes bigint
) RETURNS TABLE (jobs int, events int, images int)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
#variable_conflict use_column
DECLARE
    run imagen.archives;
    n_jobs int;
    n_events int;
    n_images int;
    stale int;
BEGIN
    SELECT * INTO run FROM imagen.archives a WHERE a.id = p_archive FOR UPDATE;
    IF NOT FOUND OR run.finished_at IS NOT NULL THEN
        RAISE EXCEPTION 'archive run % is not open', p_archive
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'open a run with imagen.archive_open first';
    END IF;
    IF cardinality(p_jobs) IS DISTINCT FROM cardinality(p_versions)
       OR coalesce(cardinality(p_jobs), 0) = 0 THEN
        RAISE EXCEPTION 'archive batch needs one version per job (% jobs, % versions)',
            cardinality(p_jobs), cardinality(p_versions)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Lock the rows, then check them all: a job that moved since the file was written
    -- spoils the batch (the file must hold exactly what leaves).
    PERFORM 1 FROM imagen.jobs j WHERE j.id = ANY (p_jobs) ORDER BY j.id FOR UPDATE;
    SELECT count(*) INTO stale
    FROM unnest(p_jobs, p_versions) AS b(id, version)
    LEFT JOIN imagen.jobs j ON j.id = b.id
    WHERE j.id IS NULL OR j.version <> b.version
       OR j.status NOT IN ('done', 'failed', 'cancelled')
       OR (run.kind = 'archive' AND NOT (coalesce(j.finished_at, j.updated_at) < run.cutoff
                                         AND j.updated_at < run.cutoff))
       OR (run.kind = 'forget' AND j.owner_user_id IS DISTINCT FROM run.owner_user_id);
    IF stale > 0 THEN
        RAISE EXCEPTION '% job(s) of archive batch % changed since they were read', stale,
            p_batch
            USING ERRCODE = 'serialization_failure',
                  HINT = 'read the batch again: a job was retried or got a new event';
    END IF;

    -- The record first: the job_events trigger lets these jobs' events go only now.
    INSERT INTO imagen.archived_jobs (job_id, archive_id, batch, owner_user_id, created_at,
                                      status, events, head)
    SELECT j.id, p_archive, p_batch, j.owner_user_id, j.created_at, j.status, j.version,
           (SELECT e.hash FROM imagen.job_events e WHERE e.job_id = j.id
            ORDER BY e.seq DESC LIMIT 1)
    FROM imagen.jobs j WHERE j.id = ANY (p_jobs);
    GET DIAGNOSTICS n_jobs = ROW_COUNT;

    DELETE FROM imagen.job_events e WHERE e.job_id = ANY (p_jobs);
    GET DIAGNOSTICS n_events = ROW_COUNT;
    -- jobs.image_id and images.job_id point at each other: both go in one statement, the
    -- foreign keys are checked at its end.
    WITH gone_images AS (
        DELETE FROM imagen.images i WHERE i.job_id = ANY (p_jobs) RETURNING 1
    ), gone_jobs AS (
        DELETE FROM imagen.jobs j WHERE j.id = ANY (p_jobs) RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone_images) INTO n_images;

    INSERT INTO imagen.archive_batches (archive_id, batch, jobs, events, images, file_offset,
                                        file_length, sha256)
    VALUES (p_archive, p_batch, n_jobs, n_events, n_images, p_offset, p_length, p_sha256);

    UPDATE imagen.archives a SET
        jobs = a.jobs + n_jobs, events = a.events + n_events, images = a.images + n_images,
        bytes = coalesce(p_bytes, a.bytes),
        first_job_created_at = least(a.first_job_created_at, x.first),
        last_job_created_at = greatest(a.last_job_created_at, x.last)
    FROM (SELECT min(aj.created_at) AS first, max(aj.created_at) AS last
          FROM imagen.archived_jobs aj
          WHERE aj.archive_id = p_archive AND aj.batch = p_batch) x
    WHERE a.id = p_archive;

    RETURN QUERY SELECT n_jobs, n_events, n_images;
END
$$;

-- Close a run: when it ended, and the file's final length and sha256.
CREATE FUNCTION imagen.archive_finish(p_archive bigint, p_bytes bigint, p_sha256 text)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
    UPDATE imagen.archives SET finished_at = now(), bytes = coalesce(p_bytes, bytes),
                               file_sha256 = p_sha256
    WHERE id = p_archive AND finished_at IS NULL
$$;

-- ---- who may ---------------------------------------------------------------------------

-- An operator action: the schema owner (who runs `migrate`) and service_role. Not the
-- worker role (it never removes anything), not the API roles.
ALTER TABLE imagen.archives ENABLE ROW LEVEL SECURITY;
ALTER TABLE imagen.archive_batches ENABLE ROW LEVEL SECURITY;
ALTER TABLE imagen.archived_jobs ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON imagen.archives, imagen.archive_batches, imagen.archived_jobs
    FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION
    imagen.archive_open(text, timestamptz, uuid, text, int),
    imagen.archive_streams(bigint, int, uuid[], int[], bigint, bigint, text, bigint),
    imagen.archive_finish(bigint, bigint, text)
    FROM PUBLIC;

DO $grants$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT SELECT ON imagen.archives, imagen.archive_batches, imagen.archived_jobs
            TO service_role;
        GRANT EXECUTE ON FUNCTION
            imagen.archive_open(text, timestamptz, uuid, text, int),
            imagen.archive_streams(bigint, int, uuid[], int[], bigint, bigint, text, bigint),
            imagen.archive_finish(bigint, bigint, text)
            TO service_role;
    END IF;
    -- The worker's operators read the manifest (`audit`, a job that is no longer live);
    -- they cannot write it.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagen_worker') THEN
        GRANT SELECT ON imagen.archives, imagen.archive_batches, imagen.archived_jobs
            TO imagen_worker;
        CREATE POLICY archives_worker_read ON imagen.archives
            FOR SELECT TO imagen_worker USING (true);
        CREATE POLICY archive_batches_worker_read ON imagen.archive_batches
            FOR SELECT TO imagen_worker USING (true);
        CREATE POLICY archived_jobs_worker_read ON imagen.archived_jobs
            FOR SELECT TO imagen_worker USING (true);
    END IF;
END
$grants$;
