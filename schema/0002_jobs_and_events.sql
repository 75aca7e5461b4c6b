-- The queue (imagen.jobs, a projection) and its source of truth (imagen.job_events).

CREATE SCHEMA IF NOT EXISTS imagen;

CREATE TABLE imagen.jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_user_id    uuid NOT NULL,
    prompt           text NOT NULL,
    backend          text NOT NULL,
    width            int  NOT NULL DEFAULT 1024,
    height           int  NOT NULL DEFAULT 1024,
    style            text,
    negative_prompt  text,
    seed             bigint,
    steps            int,
    opts             jsonb,
    -- worker-owned columns: written only through transitions (event + projection together)
    status           text NOT NULL DEFAULT 'pending',
    image_id         uuid,
    error            text,
    attempts         int  NOT NULL DEFAULT 0,
    max_attempts     int  NOT NULL DEFAULT 3,
    worker_id        text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    version          int  NOT NULL DEFAULT 1,

    CONSTRAINT jobs_status_known
        CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    CONSTRAINT jobs_prompt_not_blank CHECK (length(btrim(prompt)) > 0),
    CONSTRAINT jobs_prompt_max_4000_chars CHECK (char_length(prompt) <= 4000),
    -- text columns cannot hold NUL in Postgres at all; control characters other than
    -- tab/newline/carriage return are refused so prompts print and slug safely.
    CONSTRAINT jobs_prompt_no_control_chars
        CHECK (prompt !~ '[\x01-\x08\x0B\x0C\x0E-\x1F\x7F]'),
    CONSTRAINT jobs_backend_is_identifier CHECK (backend ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    -- 64..4096 covers every model we drive (SD/Flux need multiples of 8/16; the backend
    -- rounds) and stops a typo like 40960 from allocating a 6 GB tensor.
    CONSTRAINT jobs_width_between_64_and_4096 CHECK (width BETWEEN 64 AND 4096),
    CONSTRAINT jobs_height_between_64_and_4096 CHECK (height BETWEEN 64 AND 4096),
    CONSTRAINT jobs_seed_non_negative CHECK (seed IS NULL OR seed BETWEEN 0 AND 9007199254740991),
    CONSTRAINT jobs_steps_between_1_and_200 CHECK (steps IS NULL OR steps BETWEEN 1 AND 200),
    CONSTRAINT jobs_style_max_64_chars CHECK (style IS NULL OR char_length(style) <= 64),
    CONSTRAINT jobs_negative_prompt_max_4000_chars
        CHECK (negative_prompt IS NULL OR char_length(negative_prompt) <= 4000),
    CONSTRAINT jobs_opts_is_object CHECK (opts IS NULL OR jsonb_typeof(opts) = 'object'),
    CONSTRAINT jobs_attempts_within_max CHECK (attempts >= 0 AND attempts <= max_attempts),
    CONSTRAINT jobs_max_attempts_between_1_and_20 CHECK (max_attempts BETWEEN 1 AND 20),
    CONSTRAINT jobs_running_has_lease
        CHECK (status <> 'running' OR (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT jobs_done_has_image CHECK (status <> 'done' OR image_id IS NOT NULL),
    CONSTRAINT jobs_failed_has_error CHECK (status <> 'failed' OR error IS NOT NULL)
);

-- Claiming scans only pending rows, oldest first.
CREATE INDEX jobs_pending_by_age ON imagen.jobs (created_at, id) WHERE status = 'pending';
-- The owner UI lists a user's jobs newest first.
CREATE INDEX jobs_owner_by_recency ON imagen.jobs (owner_user_id, created_at DESC);
-- The Reaper scans running rows by lease expiry.
CREATE INDEX jobs_running_by_lease ON imagen.jobs (lease_expires_at) WHERE status = 'running';

CREATE TABLE imagen.job_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      uuid NOT NULL REFERENCES imagen.jobs (id),
    seq         int  NOT NULL CHECK (seq >= 1),
    type        text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    actor       text NOT NULL,
    worker_id   text,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_events_job_seq_unique UNIQUE (job_id, seq)
);
CREATE INDEX job_events_type_time ON imagen.job_events (type, occurred_at);
CREATE INDEX job_events_time ON imagen.job_events (occurred_at);

-- A job enters the world only as 'pending' with untouched worker columns: the event log
-- starts with JobSubmitted, and every later state comes from a transition.
CREATE FUNCTION imagen.jobs_insert_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- an unknown status is left to the jobs_status_known CHECK, which names it better
    IF NEW.status IN ('running', 'done', 'failed', 'cancelled') OR NEW.image_id IS NOT NULL OR NEW.worker_id IS NOT NULL
       OR NEW.lease_expires_at IS NOT NULL OR NEW.attempts <> 0 OR NEW.version <> 1
       OR NEW.started_at IS NOT NULL OR NEW.finished_at IS NOT NULL OR NEW.error IS NOT NULL THEN
        RAISE EXCEPTION 'new jobs must be inserted as pending with worker columns unset'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_insert_pending_only',
                  HINT = 'insert only the request columns (owner_user_id, prompt, backend, width, height, ...)';
    END IF;
    NEW.updated_at := NEW.created_at;
    RETURN NEW;
END
$$;
CREATE TRIGGER jobs_insert_guard BEFORE INSERT ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.jobs_insert_guard();

-- seq 1 of every job is JobSubmitted, written in the INSERT's own transaction, and the
-- worker is woken. The data keys match events.JobSubmitted's fields.
CREATE FUNCTION imagen.jobs_after_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
BEGIN
    INSERT INTO imagen.job_events (job_id, seq, type, data, actor, worker_id, occurred_at)
    VALUES (
        NEW.id, 1, 'JobSubmitted',
        jsonb_build_object(
            'schema_version', 1,
            'owner_user_id', NEW.owner_user_id,
            'prompt', NEW.prompt,
            'backend', NEW.backend,
            'width', NEW.width,
            'height', NEW.height,
            'style', NEW.style,
            'negative_prompt', NEW.negative_prompt,
            'seed', NEW.seed,
            'steps', NEW.steps,
            'opts', NEW.opts,
            'max_attempts', NEW.max_attempts
        ),
        'database', NULL, NEW.created_at
    );
    PERFORM pg_notify('imagen_jobs', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_after_insert AFTER INSERT ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.jobs_after_insert();

-- The log is append-only for every role, the owner and superusers included.
CREATE FUNCTION imagen.job_events_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'imagen.job_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a correction as a new event instead';
END
$$;
CREATE TRIGGER job_events_no_update_delete BEFORE UPDATE OR DELETE ON imagen.job_events
    FOR EACH ROW EXECUTE FUNCTION imagen.job_events_immutable();
CREATE TRIGGER job_events_no_truncate BEFORE TRUNCATE ON imagen.job_events
    FOR EACH STATEMENT EXECUTE FUNCTION imagen.job_events_immutable();

-- A transient failure requeues the job with a backoff: it is not claimable before run_after.
ALTER TABLE imagen.jobs ADD COLUMN run_after timestamptz;
