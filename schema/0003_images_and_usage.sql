CREATE TABLE imagen.images (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_user_id uuid NOT NULL,
    -- one image per job: a job completed twice after a crash still has exactly one row
    job_id        uuid UNIQUE REFERENCES imagen.jobs (id),
    prompt        text NOT NULL,
    backend       text NOT NULL,
    model         text,
    seed          bigint,
    width         int NOT NULL CHECK (width > 0),
    height        int NOT NULL CHECK (height > 0),
    bucket        text NOT NULL,
    storage_path  text NOT NULL,
    mime          text NOT NULL DEFAULT 'image/png',
    bytes         bigint NOT NULL CHECK (bytes > 0),
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT images_object_unique UNIQUE (bucket, storage_path)
);
CREATE INDEX images_owner_by_recency ON imagen.images (owner_user_id, created_at DESC);

ALTER TABLE imagen.jobs
    ADD CONSTRAINT jobs_image_fk FOREIGN KEY (image_id) REFERENCES imagen.images (id);

CREATE SCHEMA IF NOT EXISTS mai;

CREATE TABLE mai.imagen_usage (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at        timestamptz NOT NULL DEFAULT now(),
    backend           text NOT NULL,
    model             text,
    seed              bigint,
    -- sha256 of the user-facing prompt; the raw prompt is never stored here
    prompt_hash       text NOT NULL CHECK (prompt_hash ~ '^[0-9a-f]{64}$'),
    latency_ms        int NOT NULL CHECK (latency_ms >= 0),
    cost_usd_estimate numeric(12, 6) NOT NULL DEFAULT 0 CHECK (cost_usd_estimate >= 0),
    caller            text NOT NULL,
    job_id            uuid UNIQUE
);
CREATE INDEX imagen_usage_recent ON mai.imagen_usage (created_at DESC);
CREATE INDEX imagen_usage_caller ON mai.imagen_usage (caller);
