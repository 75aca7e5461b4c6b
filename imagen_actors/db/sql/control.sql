-- Job control, as the owner UI calls it (schema/0016).

-- name: cancel_job
SELECT imagen.cancel_job($1::uuid, $2::text);

-- name: retry_job
SELECT imagen.retry_job($1::uuid);
