-- No single INSERT can stop the queue, and the log proves itself (issue 13 items 1, 7, 10;
-- issue 15 item 14).
--
-- 1. The door (jobs_validate_request, first defined in 0006, replaced here) now bounds every
--    request column the worker decodes. New rules, checked on INSERT only (a CHECK would also
--    re-check old rows on every worker UPDATE, and could strand a job already queued):
--      opts   at most 64 KiB of JSON, at most 32 levels of nested objects/arrays, and every
--             number within +-1e308 (the worker's JSON decoder takes floats only as 64-bit
--             doubles and refuses deeper nesting than ~990 levels: one such job made every
--             claim fail, so the same oldest job was picked forever);
--      negative_prompt  the same control-character rule as prompt (one definition below);
--      run_after        must be NULL: only a worker's requeue sets it, and JobSubmitted does
--                       not record it, so an inserted value could never be replayed.
-- 2. The hash chain: every imagen.job_events row carries
--      hash = sha256(previous event's hash || convert_to(imagen.job_event_canonical(...), 'UTF8'))
--    computed by the statement that appends it (append_and_project, the seq-1 trigger below),
--    or by a BEFORE INSERT trigger when a statement leaves it NULL. Existing rows are chained
--    here, in seq order. `replay --verify` recomputes the chain with imagen.job_event_hash.

-- The control characters a prompt may not hold (tab, LF and CR are allowed), for every text
-- column with that rule: the message naming the first one, or NULL when there is none.
CREATE FUNCTION imagen.jobs_control_char_problem(p_column text, p_value text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('%s contains the control character U+%s at character %s', p_column,
                  lpad(upper(to_hex(ascii(bad))), 4, '0'), strpos(p_value, bad))
    FROM (SELECT substring(p_value FROM '[\x01-\x08\x0B\x0C\x0E-\x1F\x7F]') AS bad) b
    WHERE bad IS NOT NULL
$$;

CREATE FUNCTION imagen.jobs_control_char_fix(p_column text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('remove control characters from the %s; tab, newline and carriage return '
                  'are allowed', replace(p_column, '_', ' '))
$$;

CREATE OR REPLACE FUNCTION imagen.jobs_validate_request() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    col text;         -- the column at fault (NULL: the row is fine)
    code text := 'check_violation';
    con text;         -- the CHECK with the same rule, or the rule's name where only this trigger
                      -- enforces it (the 0009 rules); NULL for NOT NULL
    msg text;
    hint text;
BEGIN
    IF NEW.owner_user_id IS NULL THEN
        col := 'owner_user_id'; code := 'not_null_violation';
        msg := 'owner_user_id is required: the user the job and its image belong to';
        hint := 'set owner_user_id to the signed-in user''s id (auth.uid())';
    ELSIF NEW.prompt IS NULL THEN
        col := 'prompt'; code := 'not_null_violation';
        msg := 'prompt is required';
        hint := 'send the text to draw: 1 to 4000 characters';
    ELSIF btrim(NEW.prompt, E' \t\n\r') = '' THEN
        col := 'prompt'; con := 'jobs_prompt_not_blank';
        msg := 'prompt is empty or only whitespace';
        hint := 'send the text to draw: 1 to 4000 characters';
    ELSIF char_length(NEW.prompt) > 4000 THEN
        col := 'prompt'; con := 'jobs_prompt_max_4000_chars';
        msg := format('prompt is %s characters long; the limit is 4000', char_length(NEW.prompt));
        hint := 'shorten the prompt to 4000 characters or fewer';
    ELSIF imagen.jobs_control_char_problem('prompt', NEW.prompt) IS NOT NULL THEN
        col := 'prompt'; con := 'jobs_prompt_no_control_chars';
        msg := imagen.jobs_control_char_problem('prompt', NEW.prompt);
        hint := imagen.jobs_control_char_fix('prompt');
    ELSIF NEW.backend IS NULL THEN
        col := 'backend'; code := 'not_null_violation';
        msg := 'backend is required: the worker''s backend instance to draw with';
        hint := 'set backend to a configured instance name such as ''mock'' '
                '(`imagen-actors backends` lists them)';
    ELSIF NEW.backend !~ '^[a-z0-9][a-z0-9._-]{0,63}$' THEN
        col := 'backend'; con := 'jobs_backend_is_identifier';
        msg := format('backend %s is not a backend instance name',
                      imagen.jobs_request_quote(NEW.backend));
        hint := 'use a configured instance name (`imagen-actors backends` lists them): 1 to 64 '
                'lower-case letters, digits, ''.'', ''_'' or ''-'', starting with a letter or '
                'digit';
    ELSIF NEW.width IS NULL THEN
        col := 'width'; code := 'not_null_violation';
        msg := 'width is required (NULL given)';
        hint := 'send width between 64 and 4096 (e.g. 1024), or leave it out for 1024';
    ELSIF NEW.width NOT BETWEEN 64 AND 4096 THEN
        col := 'width'; con := 'jobs_width_between_64_and_4096';
        msg := format('width %s is out of range: it must be between 64 and 4096 pixels',
                      NEW.width);
        hint := 'send width between 64 and 4096 (e.g. 1024), or leave it out for 1024';
    ELSIF NEW.height IS NULL THEN
        col := 'height'; code := 'not_null_violation';
        msg := 'height is required (NULL given)';
        hint := 'send height between 64 and 4096 (e.g. 1024), or leave it out for 1024';
    ELSIF NEW.height NOT BETWEEN 64 AND 4096 THEN
        col := 'height'; con := 'jobs_height_between_64_and_4096';
        msg := format('height %s is out of range: it must be between 64 and 4096 pixels',
                      NEW.height);
        hint := 'send height between 64 and 4096 (e.g. 1024), or leave it out for 1024';
    ELSIF char_length(NEW.style) > 64 THEN
        col := 'style'; con := 'jobs_style_max_64_chars';
        msg := format('style is %s characters long; the limit is 64', char_length(NEW.style));
        hint := 'send a preset name such as ''photo'' (`imagen-actors generate --help` lists '
                'them), or NULL for none';
    ELSIF char_length(NEW.negative_prompt) > 4000 THEN
        col := 'negative_prompt'; con := 'jobs_negative_prompt_max_4000_chars';
        msg := format('negative_prompt is %s characters long; the limit is 4000',
                      char_length(NEW.negative_prompt));
        hint := 'shorten the negative prompt to 4000 characters or fewer, or send NULL';
    ELSIF imagen.jobs_control_char_problem('negative_prompt', NEW.negative_prompt) IS NOT NULL THEN
        col := 'negative_prompt'; con := 'jobs_negative_prompt_no_control_chars';
        msg := imagen.jobs_control_char_problem('negative_prompt', NEW.negative_prompt);
        hint := imagen.jobs_control_char_fix('negative_prompt');
    ELSIF NEW.seed NOT BETWEEN 0 AND 9007199254740991 THEN
        col := 'seed'; con := 'jobs_seed_non_negative';
        msg := format('seed %s is out of range: it must be between 0 and 9007199254740991 '
                      '(2^53-1)', NEW.seed);
        hint := 'send a seed from 0 to 9007199254740991, or NULL for one derived from the job id';
    ELSIF NEW.steps NOT BETWEEN 1 AND 200 THEN
        col := 'steps'; con := 'jobs_steps_between_1_and_200';
        msg := format('steps %s is out of range: it must be between 1 and 200', NEW.steps);
        hint := 'send steps from 1 to 200, or NULL for the backend''s default';
    ELSIF jsonb_typeof(NEW.opts) <> 'object' THEN
        col := 'opts'; con := 'jobs_opts_is_object';
        msg := format('opts must be a JSON object, got a JSON %s', jsonb_typeof(NEW.opts));
        hint := 'send a JSON object of backend options such as {"guidance": 3.5}, or NULL';
    ELSIF octet_length(NEW.opts::text) > 65536 THEN
        col := 'opts'; con := 'jobs_opts_max_64_kib';
        msg := format('opts is %s bytes of JSON; the limit is 65536 (64 KiB)',
                      octet_length(NEW.opts::text));
        hint := 'send only the backend options the job needs (at most 64 KiB of JSON), or NULL';
    ELSIF jsonb_path_exists(NEW.opts,
                            'strict $.**{32} ? (@.type() == "object" || @.type() == "array")') THEN
        col := 'opts'; con := 'jobs_opts_max_depth_32';
        msg := 'opts is nested deeper than 32 levels of objects and arrays';
        hint := 'flatten the options: at most 32 levels of nested objects and arrays, counting '
                'opts itself as 1';
    ELSIF jsonb_path_exists(NEW.opts,
                            'strict $.** ? (@.type() == "number" && (@ > 1e308 || @ < -1e308))')
    THEN
        col := 'opts'; con := 'jobs_opts_numbers_in_range';
        msg := 'opts holds a number beyond +-1e308, which the worker cannot read';
        hint := 'send numbers between -1e308 and 1e308 (a 64-bit float''s range), or put a '
                'huge value in a JSON string';
    ELSIF NEW.status IS NULL THEN
        col := 'status'; code := 'not_null_violation';
        msg := 'status is required (NULL given)';
        hint := 'leave status out: every job starts as ''pending''';
    ELSIF NEW.status NOT IN ('pending', 'running', 'done', 'failed', 'cancelled') THEN
        col := 'status'; con := 'jobs_status_known';
        msg := format('status %s is not a job status', imagen.jobs_request_quote(NEW.status));
        hint := 'leave status out: every job starts as ''pending''';
    ELSIF NEW.run_after IS NOT NULL THEN
        col := 'run_after'; con := 'jobs_insert_pending_only';
        msg := 'run_after is set by the worker (the backoff after a transient failure) and '
               'cannot be inserted';
        hint := 'leave run_after out: a new job is claimable at once';
    ELSIF NEW.max_attempts IS NULL THEN
        col := 'max_attempts'; code := 'not_null_violation';
        msg := 'max_attempts is required (NULL given)';
        hint := 'leave max_attempts out for the default 3, or send 1 to 20';
    ELSIF NEW.max_attempts NOT BETWEEN 1 AND 20 THEN
        col := 'max_attempts'; con := 'jobs_max_attempts_between_1_and_20';
        msg := format('max_attempts %s is out of range: it must be between 1 and 20',
                      NEW.max_attempts);
        hint := 'leave max_attempts out for the default 3, or send 1 to 20';
    END IF;

    IF col IS NULL THEN
        RETURN NEW;
    ELSIF con IS NULL THEN
        RAISE EXCEPTION USING MESSAGE = msg, ERRCODE = code, COLUMN = col, HINT = hint,
            DETAIL = 'column imagen.jobs.' || col, SCHEMA = 'imagen', TABLE = 'jobs';
    END IF;
    RAISE EXCEPTION USING MESSAGE = msg, ERRCODE = code, COLUMN = col, HINT = hint,
        CONSTRAINT = con, DETAIL = 'column imagen.jobs.' || col || ', constraint ' || con,
        SCHEMA = 'imagen', TABLE = 'jobs';
END
$$;

-- ---- the hash chain ---------------------------------------------------------------------

-- The canonical text of one event: a JSON array of its columns in a fixed order, rendered by
-- jsonb's own output (keys sorted, fixed spacing), occurred_at as integer microseconds since
-- the Unix epoch so neither TimeZone nor DateStyle changes it. worker_id NULL stays JSON null.
CREATE FUNCTION imagen.job_event_canonical(
    p_job_id uuid, p_seq int, p_type text, p_actor text, p_worker_id text,
    p_occurred_at timestamptz, p_data jsonb
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_array(p_job_id, p_seq, p_type, p_actor, p_worker_id,
                             (extract(epoch FROM p_occurred_at) * 1000000)::bigint,
                             p_data)::text
$$;

-- The link: sha256 over the previous event's hash (nothing for seq 1) and the canonical text.
CREATE FUNCTION imagen.job_event_hash(
    p_prev bytea, p_job_id uuid, p_seq int, p_type text, p_actor text, p_worker_id text,
    p_occurred_at timestamptz, p_data jsonb
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(coalesce(p_prev, '\x'::bytea)
                  || convert_to(imagen.job_event_canonical(p_job_id, p_seq, p_type, p_actor,
                                                           p_worker_id, p_occurred_at, p_data),
                                'UTF8'))
$$;

ALTER TABLE imagen.job_events ADD COLUMN hash bytea;

-- Chain the rows written before this migration, each job in seq order (by position, so even
-- a stream with a gap is chained and the gap is left for `replay --verify` to report).
CREATE TEMPORARY TABLE job_events_positions ON COMMIT DROP AS
SELECT id, job_id, seq, type, actor, worker_id, occurred_at, data,
       row_number() OVER (PARTITION BY job_id ORDER BY seq) AS n
FROM imagen.job_events;
CREATE INDEX ON job_events_positions (job_id, n);

ALTER TABLE imagen.job_events DISABLE TRIGGER job_events_no_update_delete;
WITH RECURSIVE chain AS (
    SELECT p.id, p.job_id, p.n,
           imagen.job_event_hash(NULL, p.job_id, p.seq, p.type, p.actor, p.worker_id,
                                 p.occurred_at, p.data) AS hash
    FROM job_events_positions p WHERE p.n = 1
    UNION ALL
    SELECT p.id, p.job_id, p.n,
           imagen.job_event_hash(c.hash, p.job_id, p.seq, p.type, p.actor, p.worker_id,
                                 p.occurred_at, p.data)
    FROM chain c JOIN job_events_positions p ON p.job_id = c.job_id AND p.n = c.n + 1
)
UPDATE imagen.job_events e SET hash = chain.hash FROM chain WHERE e.id = chain.id;
ALTER TABLE imagen.job_events ENABLE TRIGGER job_events_no_update_delete;

ALTER TABLE imagen.job_events ALTER COLUMN hash SET NOT NULL,
    ADD CONSTRAINT job_events_hash_is_sha256 CHECK (octet_length(hash) = 32);

-- A row whose statement did not compute its link (an INSERT by hand, or by SQL written
-- before the chain) is linked to the job's latest event here, so every row has one.
CREATE FUNCTION imagen.job_events_link() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
DECLARE
    prev bytea;
BEGIN
    IF NEW.hash IS NULL THEN
        SELECT e.hash INTO prev FROM imagen.job_events e
        WHERE e.job_id = NEW.job_id AND e.seq < NEW.seq
        ORDER BY e.seq DESC LIMIT 1;
        NEW.hash := imagen.job_event_hash(prev, NEW.job_id, NEW.seq, NEW.type, NEW.actor,
                                          NEW.worker_id, NEW.occurred_at, NEW.data);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER job_events_link BEFORE INSERT ON imagen.job_events
    FOR EACH ROW EXECUTE FUNCTION imagen.job_events_link();

-- seq 1 (JobSubmitted) now carries its link too: same event as in 0002, plus its hash.
CREATE OR REPLACE FUNCTION imagen.jobs_after_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, imagen AS $$
DECLARE
    submitted jsonb := jsonb_build_object(
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
    );
BEGIN
    INSERT INTO imagen.job_events (job_id, seq, type, data, actor, worker_id, occurred_at, hash)
    VALUES (
        NEW.id, 1, 'JobSubmitted', submitted, 'database', NULL, NEW.created_at,
        imagen.job_event_hash(NULL, NEW.id, 1, 'JobSubmitted', 'database', NULL,
                              NEW.created_at, submitted)
    );
    PERFORM pg_notify('imagen_jobs', NEW.id::text);
    RETURN NULL;
END
$$;
