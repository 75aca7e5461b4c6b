-- Which job owns which object key, claimed before the upload rather than found out after it.
-- Keys come from the prompt, seed and date (<date>/<slug>-<seed>.png), so two jobs with the
-- same prompt and explicit seed on the same day want the same key. Looking the key up in
-- imagen.images before uploading left a window: both jobs could see it free, both upload to
-- it (the second overwriting the first's object), and only one images row could follow.
-- The Uploader now reserves its key here in one statement before it uploads; the loser
-- takes the job-specific variant. The Reaper's clean-up of a failed job deletes exactly the
-- keys that job reserved, never a key another job is completing onto.
CREATE TABLE imagen.storage_keys (
    bucket       text NOT NULL,
    storage_path text NOT NULL,
    job_id       uuid NOT NULL REFERENCES imagen.jobs (id) ON DELETE CASCADE,
    reserved_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, storage_path)
);
CREATE INDEX storage_keys_job ON imagen.storage_keys (job_id);

COMMENT ON TABLE imagen.storage_keys IS
    'object keys reserved by jobs before upload; one owner per key (worker-only)';

-- Images stored before this migration own their keys already.
INSERT INTO imagen.storage_keys (bucket, storage_path, job_id, reserved_at)
SELECT bucket, storage_path, job_id, created_at FROM imagen.images WHERE job_id IS NOT NULL
ON CONFLICT DO NOTHING;

-- Worker bookkeeping: invisible to the UI roles, like the rest of the worker's columns.
ALTER TABLE imagen.storage_keys ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON imagen.storage_keys FROM PUBLIC, anon, authenticated;
GRANT ALL ON imagen.storage_keys TO service_role;
