-- Clear errors for bad job requests. The CHECK constraints of 0002 reject nonsense, but
-- their message is "new row for relation "jobs" violates check constraint ..." with the whole
-- row as detail and no fix, and PostgREST hands the owner UI only message, details and hint.
-- This BEFORE INSERT trigger checks the request columns by the same rules first and raises
-- an error whose MESSAGE names the column and the bad value, whose HINT says what to send,
-- and whose COLUMN and CONSTRAINT fields are set (CONSTRAINT = the CHECK's own name, so code
-- matching on it keeps working). The CHECKs stay as the backstop for UPDATEs.
-- One rule is stricter than its CHECK: a prompt of only spaces, tabs, newlines or carriage
-- returns is blank (btrim in jobs_prompt_not_blank trims spaces only).

-- A value quoted into a message: at most 60 characters, never a control character.
CREATE FUNCTION imagen.jobs_request_quote(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT quote_literal(regexp_replace(
        CASE WHEN char_length(p_value) > 60 THEN left(p_value, 57) || '...' ELSE p_value END,
        '[\x01-\x1F\x7F]', '?', 'g'))
$$;

CREATE FUNCTION imagen.jobs_validate_request() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    col text;         -- the column at fault (NULL: the row is fine)
    code text := 'check_violation';
    con text;         -- the CHECK constraint with the same rule (NULL for NOT NULL)
    msg text;
    hint text;
    bad text;
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
    ELSIF NEW.prompt ~ '[\x01-\x08\x0B\x0C\x0E-\x1F\x7F]' THEN
        bad := substring(NEW.prompt FROM '[\x01-\x08\x0B\x0C\x0E-\x1F\x7F]');
        col := 'prompt'; con := 'jobs_prompt_no_control_chars';
        msg := format('prompt contains the control character U+%s at character %s',
                      lpad(upper(to_hex(ascii(bad))), 4, '0'), strpos(NEW.prompt, bad));
        hint := 'remove control characters from the prompt; tab, newline and carriage return '
                'are allowed';
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
    ELSIF NEW.status IS NULL THEN
        col := 'status'; code := 'not_null_violation';
        msg := 'status is required (NULL given)';
        hint := 'leave status out: every job starts as ''pending''';
    ELSIF NEW.status NOT IN ('pending', 'running', 'done', 'failed', 'cancelled') THEN
        col := 'status'; con := 'jobs_status_known';
        msg := format('status %s is not a job status', imagen.jobs_request_quote(NEW.status));
        hint := 'leave status out: every job starts as ''pending''';
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

-- Named to sort after jobs_insert_guard: BEFORE triggers fire in name order, so a row that
-- claims a worker state is still refused as jobs_insert_pending_only first.
CREATE TRIGGER jobs_insert_validate BEFORE INSERT ON imagen.jobs
    FOR EACH ROW EXECUTE FUNCTION imagen.jobs_validate_request();
