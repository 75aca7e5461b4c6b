-- Health per dependency (issue 14): each worker writes, with its heartbeat, the backends and
-- the object store it finds unhealthy, as {"<name>": {"fault": "dependency"|"configuration",
-- "reason": "...", "since": "<ISO time>"}} ('{}' while everything is up). `status` and any UI
-- read it: "flux-schnell-local down since 12:03: connection refused". Jobs of an unhealthy
-- backend stay pending (attempts untouched) while it is probed; the worker still offers it
-- (`backends`), so they are not failed as unserved.
ALTER TABLE imagen.workers ADD COLUMN health jsonb NOT NULL DEFAULT '{}'::jsonb;

COMMENT ON COLUMN imagen.workers.health IS
    'unhealthy dependencies of this worker: name -> {fault, reason, since}; {} when all are up';

-- The worker's least-privilege role (0011) writes the column with its heartbeat.
DO $grant$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagen_worker') THEN
        GRANT UPDATE (health) ON imagen.workers TO imagen_worker;
    END IF;
END
$grant$;
