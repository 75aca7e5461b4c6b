-- Questions about the hosts in imagen.workers (what they offer, who is alive).

-- name: offered_backends
-- Every backend some worker has offered (ever seen), with when it was last offered.
SELECT b AS backend, max(w.last_seen_at) AS last_seen_at
FROM imagen.workers w, unnest(w.backends) AS b
GROUP BY b ORDER BY b;

-- name: live_workers_offering
-- Workers seen within $2 seconds that offer backend $1.
SELECT count(*)::int FROM imagen.workers
WHERE $1 = ANY(backends) AND last_seen_at > now() - make_interval(secs => $2::float8);
