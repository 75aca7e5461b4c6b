-- Every hot query on an index whose size is bounded by the live queue, not by the history
-- (issue 16 items 1 and 2).
--
-- jobs_pending_by_age (created_at, id) WHERE status = 'pending' is replaced by one index per
-- backend's pending head: the claim probes the heads of the worker's own backends only
-- (claim_next_and_load_events), so another host's backlog is never read. While the old index
-- existed the planner kept choosing it for `backend = ANY(...)` (misled by the history's
-- backend statistics) and filtered every foreign pending row: 38-55 ms per claim with
-- 100,000 of them, against 0.06 ms on this index.
DROP INDEX imagen.jobs_pending_by_age;
CREATE INDEX jobs_pending_head ON imagen.jobs (backend, created_at, id) WHERE status = 'pending';

-- next_run_after: the earliest backed-off job, without reading the pending rows.
CREATE INDEX jobs_pending_backoff ON imagen.jobs (run_after)
    WHERE status = 'pending' AND run_after IS NOT NULL;

-- status's latest failures, newest first.
CREATE INDEX jobs_failed_by_finish ON imagen.jobs (finished_at DESC) WHERE status = 'failed';

-- `audit latency --since`: the jobs created in the window.
CREATE INDEX jobs_created_at ON imagen.jobs (created_at);
