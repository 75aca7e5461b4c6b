-- A key once reserved belongs to its job for good. The janitor used to release a failed
-- job's reservations after deleting its objects, so a later job with the same prompt, seed
-- and day could take the contract key: a worker frozen mid-upload (SIGSTOP, a paused VM)
-- past its lease then woke and renamed its object onto that key, replacing the other job's
-- image. Now the reservation stays as a tombstone (discarded_at set): another job takes its
-- job-specific variant, a zombie can only ever write onto its own job's key, and the
-- janitor re-checks tombstoned keys for a while (checked_at) and deletes what a zombie left.
ALTER TABLE imagen.storage_keys
    ADD COLUMN discarded_at timestamptz,
    ADD COLUMN checked_at timestamptz;

COMMENT ON COLUMN imagen.storage_keys.discarded_at IS
    'when the janitor deleted the failed job''s object; the key stays reserved (tombstone)';
COMMENT ON COLUMN imagen.storage_keys.checked_at IS
    'when the janitor last made sure nothing was written onto the tombstoned key';

CREATE INDEX storage_keys_tombstones ON imagen.storage_keys (checked_at)
    WHERE discarded_at IS NOT NULL;
