-- Which worker offers which backends, so that hosts with different backends can share one
-- queue. A worker claims a job when it has the job's backend, or when no worker seen within
-- its `worker.backend_absent_after_s` offers that backend: then nobody can run the job, and
-- the claiming worker fails it as an unknown backend (a typo in the UI fails in seconds; a
-- GPU host down for a short restart keeps its jobs waiting).
-- Each worker upserts its row at start-up and on every Reaper pass. Rows are never deleted
-- on shutdown: a host that stops stays "seen" until its last_seen_at ages out.
CREATE TABLE imagen.workers (
    worker_id    text PRIMARY KEY,
    backends     text[] NOT NULL,
    hostname     text NOT NULL,
    pid          int NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE imagen.workers IS
    'workers and the backends they offer; last_seen_at is refreshed every Reaper pass';

ALTER TABLE imagen.workers ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON imagen.workers FROM PUBLIC, anon, authenticated;
GRANT ALL ON imagen.workers TO service_role;
