-- Usage report queries (imagen-actors usage).

-- name: usage_by_backend_model
SELECT backend, coalesce(model, '') AS model, count(*)::int AS images,
       coalesce(sum(cost_usd_estimate), 0)::float8 AS cost_usd,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)::float8 AS p50_latency_ms
FROM mai.imagen_usage
WHERE created_at >= $1
GROUP BY backend, model
ORDER BY backend, model;

-- name: usage_totals
SELECT count(*)::int AS images, coalesce(sum(cost_usd_estimate), 0)::float8 AS cost_usd,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)::float8 AS p50_latency_ms
FROM mai.imagen_usage
WHERE created_at >= $1;

-- name: usage_raw
SELECT id, created_at, backend, model, seed, prompt_hash, latency_ms,
       cost_usd_estimate::float8 AS cost_usd, caller, job_id
FROM mai.imagen_usage
WHERE created_at >= $1
ORDER BY created_at DESC
LIMIT $2;
