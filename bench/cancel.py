"""Cancel latency of a running job: imagen.cancel_job to JobCancelled.

One job at a time: INSERT (a 60 s mock generation), wait for GenerationStarted, call
imagen.cancel_job, wait for JobCancelled. Latency = JobCancelled.occurred_at -
JobCancelRequested.occurred_at, both the database's clock. The worker's lease renewal runs
every lease_s / 3 = 20 s; the control NOTIFY is what makes it look at once.

    .venv/bin/python bench/cancel.py [--n 30]
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

from imagen_actors.db.gateway import Gateway

SCRIPT = Path(__file__).name

LATENCY = """
SELECT extract(epoch FROM c.occurred_at - r.occurred_at)::float8 AS s
FROM imagen.job_events r JOIN imagen.job_events c
  ON c.job_id = r.job_id AND c.type = 'JobCancelled'
WHERE r.type = 'JobCancelRequested' AND r.job_id = ANY($1::uuid[])
"""


async def has_event(gw: Gateway, job_id: uuid.UUID, kind: str) -> bool:
    rows = await gw.fetch_sql(
        "SELECT 1 FROM imagen.job_events WHERE job_id = $1 AND type = $2", job_id, kind
    )
    return bool(rows)


async def wait_for(gw: Gateway, job_id: uuid.UUID, kind: str) -> None:
    with trio.fail_after(60):
        while not await has_event(gw, job_id, kind):
            await trio.sleep(0.005)


async def main(n: int, size: int) -> None:
    run = c.Run()
    with c.temp_dir("imagen-bench-cancel-") as tmp, c.private_database(tmp) as (dsn, db):
        async with c.client(dsn) as gw:
            settings = await c.pg_settings(gw)
            cfg = c.bench_config(tmp, dsn, latency_ms=60_000, lease_s=60)
            ids: list[uuid.UUID] = []
            async with c.running_worker(cfg):
                for i in range(n):
                    rows = await gw.fetch_sql(
                        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height)"
                        " VALUES ($1, $2, 'mock', $3, $3) RETURNING id",
                        c.OWNER,
                        f"bench cancel {i}",
                        size,
                    )
                    job_id: uuid.UUID = rows[0]["id"]
                    ids.append(job_id)
                    await wait_for(gw, job_id, "GenerationStarted")
                    await gw.cancel_job(job_id, "bench")
                    await wait_for(gw, job_id, "JobCancelled")
            latency = [r["s"] for r in await gw.fetch_sql(LATENCY, ids)]
    run.header("cancel latency (running job, mock backend)", n, db, settings)
    c.print_rows(
        [
            c.measured(
                "cancel latency p50 (cancel_job -> JobCancelled)",
                c.percentile(latency, 50) * 1000,
                "ms",
                SCRIPT,
                target=c.at_most(1000, "ms"),
            ),
            c.measured("cancel latency p99", c.percentile(latency, 99) * 1000, "ms", SCRIPT),
        ]
    )


if __name__ == "__main__":
    args = c.parser(__doc__.splitlines()[0], default_n=30).parse_args()
    trio.run(main, args.n, args.size)
